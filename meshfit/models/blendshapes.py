"""Linear blendshape models (e.g. ICT-FaceKit): neutral + identity and expression deltas, posed.

On disk a model is either

- a folder with ``blendshapes.json``::

      {"neutral": "neutral.obj",
       "identity": ["identity000.obj", ...],
       "expression": ["jawOpen.obj", ...],
       "landmarks": {"vertices": [1225, ...]}}

  naming full meshes in vertex correspondence with the neutral (deltas are taken against it;
  paths relative to the folder; "identity" and "expression" may be empty; "landmarks", optional,
  defines the surface points that 2-D landmark detections see: ``meshfit.io.landmarks``; the
  neutral's texture coordinates, when it has them, are the model's, for a fitted UV texture), or
- an ``.npz`` written by ``BlendshapeModel.save``: arrays ``neutral`` [V, 3], ``faces`` [F, 3],
  ``identity`` [I, V, 3], ``expression`` [E, V, 3] (deltas), string arrays ``identity_names``,
  ``expression_names``, optionally ``landmark_vertices`` [L, 3], ``landmark_weights`` [L, 3] and
  ``landmark_names``, ``uvs`` [T, 2] and ``uv_faces`` [F, 3], and ``format_version``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from meshfit._pytree import pytree_dataclass, static_field
from meshfit.io import atomic_path, load_mesh, parse_landmark_definition
from meshfit.mesh import MeshError
from meshfit.models.rotation import so3_exp

__all__ = ["BlendshapeModel"]

_NPZ_VERSION = 1


@pytree_dataclass
class BlendshapeModel:
    """``vertices = scale * R (neutral + sum_i a_i identity_i + sum_j b_j expression_j) + t``.

    Fields:
        neutral: [V, 3] float. faces: [F, 3] int32.
        identity: [I, V, 3] identity deltas. expression: [E, V, 3] expression deltas.
        identity_names, expression_names: tuples of names (static).
        landmark_vertices, landmark_weights: [L, 3] int32 vertex indices and [L, 3] barycentric
            weights of L landmarks (``landmarks(params)``), or None. landmark_names (static).
        uvs, uv_faces: texture coordinates [T, 2] and their faces [F, 3] (the neutral's), or None.
    Params (``init_params``): identity [I], expression [E], rotation [3] (axis-angle, radians),
    translation [3], log_scale [].
    """

    neutral: jax.Array
    faces: jax.Array
    identity: jax.Array
    expression: jax.Array
    identity_names: tuple = static_field(default=())
    expression_names: tuple = static_field(default=())
    landmark_vertices: jax.Array | None = None
    landmark_weights: jax.Array | None = None
    landmark_names: tuple = static_field(default=())
    uvs: jax.Array | None = None
    uv_faces: jax.Array | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> BlendshapeModel:
        """Read a model folder (with ``blendshapes.json``), the JSON file itself, or an ``.npz``."""
        path = Path(path)
        if path.suffix == ".npz":
            return cls._load_npz(path)
        spec_path = path / "blendshapes.json" if path.is_dir() else path
        if not spec_path.is_file():
            raise FileNotFoundError(
                f"no blendshape model at {path}: expected a folder with blendshapes.json or an .npz"
            )
        try:
            spec = json.loads(spec_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(
                f"{spec_path} is not a blendshape model (a folder with blendshapes.json, the JSON file "
                f"itself, or an .npz); reading it as JSON: {e}"
            ) from e
        unknown = set(spec) - {"neutral", "identity", "expression", "landmarks"}
        if unknown or "neutral" not in spec:
            raise ValueError(
                f"{spec_path}: expected keys 'neutral', 'identity', 'expression', 'landmarks'; "
                f"unknown {sorted(unknown)}" + ("" if "neutral" in spec else ", missing 'neutral'")
            )
        root = spec_path.parent
        neutral = load_mesh(root / spec["neutral"])
        base = np.asarray(neutral.vertices)

        def deltas(names: list[str]) -> np.ndarray:
            out = []
            for name in names:
                m = load_mesh(root / name)
                if m.num_vertices != neutral.num_vertices:
                    raise MeshError(
                        f"{root / name} has {m.num_vertices} vertices but the neutral has "
                        f"{neutral.num_vertices}: shapes must be in vertex correspondence"
                    )
                out.append(np.asarray(m.vertices) - base)
            return np.stack(out) if out else np.zeros((0,) + base.shape, np.float32)

        ids, exps = list(spec.get("identity", [])), list(spec.get("expression", []))
        marks = (None, None, ())
        if "landmarks" in spec:
            idx, w, names = parse_landmark_definition(
                spec["landmarks"], np.asarray(neutral.faces), neutral.num_vertices, str(spec_path)
            )
            marks = (jnp.asarray(idx), jnp.asarray(w), names)
        uv = (None, None)
        if neutral.uvs is not None and neutral.uv_faces is not None:
            uv = (jnp.asarray(neutral.uvs, jnp.float32), jnp.asarray(neutral.uv_faces, jnp.int32))
        return cls(
            neutral.vertices, neutral.faces, jnp.asarray(deltas(ids)), jnp.asarray(deltas(exps)),
            tuple(Path(n).stem for n in ids), tuple(Path(n).stem for n in exps), *marks, *uv,
        )  # fmt: skip

    @staticmethod
    def source_files(path: str | os.PathLike) -> list[Path]:
        """The files ``load(path)`` reads: the .npz, or the spec and every mesh it names (a run that
        writes must never replace a folder holding any of them)."""
        path = Path(path)
        if path.suffix == ".npz" or not (path / "blendshapes.json" if path.is_dir() else path).is_file():
            return [path]
        spec_path = path / "blendshapes.json" if path.is_dir() else path
        try:
            spec = json.loads(spec_path.read_text())
        except (OSError, ValueError):
            return [path]  # load() names the problem
        names = [spec.get("neutral"), *spec.get("identity", []), *spec.get("expression", [])]
        return [path, *(spec_path.parent / n for n in names if isinstance(n, str))]

    @classmethod
    def _load_npz(cls, path: Path) -> BlendshapeModel:
        try:
            # Open the file here: np.load leaks its handle when the zip directory is unreadable.
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"cannot read blendshape model {path}: {e}") from e
        missing = {"format_version", "neutral", "faces", "identity", "expression"} - set(data)
        if missing:
            raise ValueError(f"{path}: not a meshfit blendshape model (missing {sorted(missing)})")
        if int(data["format_version"]) != _NPZ_VERSION:
            raise ValueError(
                f"{path}: format_version {int(data['format_version'])}, this meshfit reads {_NPZ_VERSION}"
            )
        V = data["neutral"].shape[0]
        for k in ("identity", "expression"):
            if data[k].ndim != 3 or data[k].shape[1:] != (V, 3):
                raise ValueError(f"{path}: {k} must be [K, {V}, 3]; got {data[k].shape}")
        marks = (None, None, ())
        if "landmark_vertices" in data:
            idx, w = data["landmark_vertices"], data.get("landmark_weights")
            if (w is None or idx.ndim != 2 or idx.shape[1:] != (3,) or w.shape != idx.shape
                    or not ((idx >= 0) & (idx < V)).all() or not np.isfinite(w).all()):  # fmt: skip
                raise ValueError(f"{path}: landmark_vertices/landmark_weights must be [L, 3] (indices < {V})")
            names = tuple(str(s) for s in data.get("landmark_names", []))
            marks = (jnp.asarray(idx, jnp.int32), jnp.asarray(w, jnp.float32), names)
        uv = (None, None)
        if "uvs" in data or "uv_faces" in data:
            uvs, uv_faces = data.get("uvs"), data.get("uv_faces")
            F = data["faces"].shape[0]
            if (uvs is None or uv_faces is None or uvs.ndim != 2 or uvs.shape[1:] != (2,)
                    or not np.isfinite(uvs).all() or uv_faces.shape != (F, 3)
                    or not ((uv_faces >= 0) & (uv_faces < len(uvs))).all()):  # fmt: skip
                raise ValueError(f"{path}: uvs/uv_faces must be [T, 2] finite and [{F}, 3] indices < T")
            uv = (jnp.asarray(uvs, jnp.float32), jnp.asarray(uv_faces, jnp.int32))
        return cls(
            jnp.asarray(data["neutral"]), jnp.asarray(data["faces"], jnp.int32),
            jnp.asarray(data["identity"]), jnp.asarray(data["expression"]),
            tuple(str(s) for s in data.get("identity_names", [])),
            tuple(str(s) for s in data.get("expression_names", [])), *marks, *uv,
        )  # fmt: skip

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.npz`` form (atomically)."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(
                    fh, format_version=np.int32(_NPZ_VERSION), neutral=np.asarray(self.neutral),
                    faces=np.asarray(self.faces), identity=np.asarray(self.identity),
                    expression=np.asarray(self.expression), identity_names=np.array(self.identity_names, str),
                    expression_names=np.array(self.expression_names, str),
                    **({} if self.landmark_vertices is None else {
                        "landmark_vertices": np.asarray(self.landmark_vertices),
                        "landmark_weights": np.asarray(self.landmark_weights),
                        "landmark_names": np.array(self.landmark_names, str)}),
                    **({} if self.uvs is None else {
                        "uvs": np.asarray(self.uvs), "uv_faces": np.asarray(self.uv_faces)}),
                )  # fmt: skip

    @property
    def num_identity(self) -> int:
        return self.identity.shape[0]

    @property
    def num_expression(self) -> int:
        return self.expression.shape[0]

    def init_params(self) -> dict:
        dt = self.neutral.dtype
        return {
            "identity": jnp.zeros(self.num_identity, dt),
            "expression": jnp.zeros(self.num_expression, dt),
            "rotation": jnp.zeros(3, dt),
            "translation": jnp.zeros(3, dt),
            "log_scale": jnp.zeros((), dt),
        }

    def shape(self, params: dict) -> jax.Array:
        """[V, 3] unposed vertices: neutral + identity and expression deltas."""
        return (
            self.neutral
            + jnp.einsum("i,ivd->vd", params["identity"], self.identity)
            + jnp.einsum("e,evd->vd", params["expression"], self.expression)
        )

    @property
    def num_vertices(self) -> int:
        return self.neutral.shape[0]

    @property
    def num_landmarks(self) -> int:
        return 0 if self.landmark_vertices is None else self.landmark_vertices.shape[0]

    def landmark_points(self, vertices: jax.Array) -> jax.Array:
        """[L, 3] the model's landmarks on posed ``vertices`` [V, 3] (raises without landmarks)."""
        if self.landmark_vertices is None:
            raise ValueError("this blendshape model defines no landmarks (blendshapes.json 'landmarks')")
        return jnp.einsum("lk,lkd->ld", self.landmark_weights, vertices[self.landmark_vertices])

    def vertices(self, params: dict) -> jax.Array:
        """[V, 3] posed vertices (world frame)."""
        R = so3_exp(params["rotation"])
        return jnp.exp(params["log_scale"]) * self.shape(params) @ R.T + params["translation"][None, :]

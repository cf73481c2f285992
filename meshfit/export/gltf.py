"""A fit's result as glTF 2.0 (binary .glb) for engines and DCC tools.

``write_gltf(FIT_OUT, FILE)`` reads a ``meshfit fit`` or ``meshfit predict`` output folder:

- a free mesh: the fitted mesh;
- a rigid fit: the known mesh in its own frame (the fitted mesh taken back through the fit's
  ``object_to_world``) under a node whose transform is the fitted pose;
- a blendshape fit (needs the model): the subject's neutral (the model's neutral plus the fitted
  identity) with the expressions as morph targets, named in ``mesh.extras.targetNames`` (the
  convention Blender, three.js and Babylon read), the fitted weights on the mesh, and the head pose
  on its node;
- a sequence (``meshes/`` and ``params.json`` frames): the first frame's mesh, and an animation of
  the morph weights and the node's translation and rotation over the frames at ``fps``.

Positions in the fit's world units (the cameras'), OpenCV-style world axes as the cameras define
them; glTF's +Y up is not imposed (an engine importer applies its own axis conversion).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from meshfit.io.atomic import atomic_path, check_output_file

__all__ = ["write_gltf"]


def _quat(R: np.ndarray) -> np.ndarray:
    """[x, y, z, w] unit quaternion of a rotation matrix (glTF's order)."""
    from trimesh.transformations import quaternion_from_matrix

    M = np.eye(4)
    M[:3, :3] = R
    w, x, y, z = quaternion_from_matrix(M)
    q = np.array([x, y, z, w], np.float64)
    return (q / np.linalg.norm(q)).astype(np.float32)


def _axis_angle_matrix(w) -> np.ndarray:
    from meshfit.models import so3_exp

    return np.asarray(so3_exp(np.asarray(w, np.float32)), np.float64)


class _Builder:
    """Accessors over one binary buffer (pygltflib's data classes, our arrays)."""

    def __init__(self):
        import pygltflib as g

        self.g = g
        self.doc = g.GLTF2(asset=g.Asset(generator="meshfit", version="2.0"), scene=0)
        self.blob = bytearray()

    def accessor(self, a: np.ndarray, *, target: int | None = None, bounds: bool = False) -> int:
        g = self.g
        a = np.ascontiguousarray(a)
        kinds = {1: g.SCALAR, 2: g.VEC2, 3: g.VEC3, 4: g.VEC4}
        comp = {np.dtype(np.float32): g.FLOAT, np.dtype(np.uint32): g.UNSIGNED_INT}[a.dtype]
        while len(self.blob) % 4:
            self.blob.append(0)
        view = g.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=a.nbytes, target=target)
        self.blob += a.tobytes()
        self.doc.bufferViews.append(view)
        count = a.shape[0] if a.ndim > 1 or a.dtype != np.uint32 else a.size
        acc = g.Accessor(bufferView=len(self.doc.bufferViews) - 1, componentType=comp, count=count,
                         type=kinds[a.shape[1] if a.ndim > 1 else 1])  # fmt: skip
        if bounds:
            acc.min, acc.max = a.min(0).tolist(), a.max(0).tolist()
        self.doc.accessors.append(acc)
        return len(self.doc.accessors) - 1

    def finish(self) -> bytes:
        g = self.g
        self.doc.buffers.append(g.Buffer(byteLength=len(self.blob)))
        self.doc.set_binary_blob(bytes(self.blob))
        return b"".join(self.doc.save_to_bytes())


def _meshfit_glb(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    return head[:4] == b"glTF" and b'"generator":"meshfit"' in head.replace(b" ", b"")


def _kind(params: dict) -> str:
    first = params["frames"][0] if "frames" in params else params
    if "object_to_world" in first:
        return "rigid"
    if "expression" in first or "identity" in params:
        return "blendshapes"
    return "free_mesh"


def write_gltf(fit_out, out, *, model=None, fps: float = 30.0, overwrite: bool = False) -> dict:
    """Write a fit output folder as a .glb file.

    Args:
        fit_out: a ``meshfit fit`` / ``meshfit predict`` output folder (params.json, mesh.obj or
            meshes/).
        out: the .glb to write (whole, then renamed into place; an existing file is replaced
            only with ``overwrite`` and only if it is a glb meshfit wrote).
        model: blendshape fits: the BlendshapeModel (or its path) the fit used.
        fps: a sequence's frame rate (the animation's time step is 1 / fps).
    Returns:
        a summary (path, bytes, kind, frames, morph targets).
    """
    from meshfit.io.meshes import load_mesh
    from meshfit.models import BlendshapeModel

    fit_out, out = Path(fit_out), Path(out)
    params_path = fit_out / "params.json"
    if not params_path.is_file():
        raise FileNotFoundError(f"{fit_out} is not a meshfit fit or predict output (no params.json)")
    try:
        params = json.loads(params_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{params_path} is not valid JSON: {e}") from e
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0; got {fps}")
    out = check_output_file(out, overwrite=overwrite, ours=_meshfit_glb, kind="a glb meshfit wrote")
    kind = _kind(params)
    frames = params.get("frames")
    if frames is not None:
        files = sorted((fit_out / "meshes").glob("*.obj"))
        if len(files) != len(frames):
            raise ValueError(f"{fit_out}: params.json lists {len(frames)} frames, meshes/ holds {len(files)}")
        mesh = load_mesh(files[0])
    else:
        mesh = load_mesh(fit_out / "mesh.obj")
    per_frame = frames if frames is not None else [params]
    b = _Builder()
    g = b.g
    faces = np.asarray(mesh.faces, np.uint32).ravel()
    targets, names, weights = [], [], None
    if kind == "blendshapes":
        if model is None:
            raise ValueError("a blendshape fit's glTF needs its model (CLI: --model FOLDER_OR_NPZ)")
        model = model if isinstance(model, BlendshapeModel) else BlendshapeModel.load(model)
        if model.num_vertices != mesh.num_vertices:
            raise ValueError(
                f"the model has {model.num_vertices} vertices; the fit's mesh has {mesh.num_vertices}: "
                "not its model"
            )
        id_names = list(model.identity_names) or [f"identity{i}" for i in range(model.num_identity)]
        names = list(model.expression_names) or [f"expression{i}" for i in range(model.num_expression)]
        ident = params.get("identity", {})
        missing = sorted(set(id_names) - set(ident)) + sorted(
            set(names) - set(per_frame[0].get("expression", {}))
        )
        if missing:
            raise ValueError(f"params.json has no coefficients {missing} of this model: not its model")
        base = np.asarray(model.neutral, np.float64) + np.einsum(
            "i,ivc->vc", [ident[n] for n in id_names], np.asarray(model.identity, np.float64)
        )
        targets = [np.asarray(d, np.float32) for d in np.asarray(model.expression)]
        weights = np.asarray([[f["expression"][n] for n in names] for f in per_frame], np.float32)
        scale = float(params.get("scale", 1.0))
        poses = [
            (_axis_angle_matrix(f["rotation_axis_angle"]), np.asarray(f["translation"])) for f in per_frame
        ]
    elif kind == "rigid":
        Ms = [np.asarray(f["object_to_world"], np.float64) for f in per_frame]
        scale = float(np.cbrt(np.linalg.det(Ms[0][:3, :3])))
        poses = [(M[:3, :3] / scale, M[:3, 3]) for M in Ms]
        # The known mesh in its own frame: the fitted (first-frame) mesh taken back through its pose.
        R0, t0 = poses[0]
        base = ((np.asarray(mesh.vertices, np.float64) - t0) @ R0) / scale
    else:
        base, scale, poses = np.asarray(mesh.vertices, np.float64), 1.0, [(np.eye(3), np.zeros(3))]
    pos = b.accessor(base.astype(np.float32), target=g.ARRAY_BUFFER, bounds=True)
    idx = b.accessor(faces, target=g.ELEMENT_ARRAY_BUFFER)
    prim = g.Primitive(attributes=g.Attributes(POSITION=pos), indices=idx, mode=g.TRIANGLES)
    if targets:
        prim.targets = [{"POSITION": b.accessor(t, target=g.ARRAY_BUFFER, bounds=True)} for t in targets]
    gmesh = g.Mesh(primitives=[prim], name=kind)
    if targets:
        gmesh.weights = weights[0].tolist()
        gmesh.extras = {"targetNames": names}
    b.doc.meshes.append(gmesh)
    R, t = poses[0]
    node = g.Node(mesh=0, name="fit", rotation=_quat(R).tolist(), scale=[scale] * 3,
                  translation=np.asarray(t, np.float32).tolist())  # fmt: skip
    b.doc.nodes.append(node)
    b.doc.scenes.append(g.Scene(nodes=[0]))
    if frames is not None and len(frames) > 1:
        times = b.accessor((np.arange(len(frames), dtype=np.float32) / fps)[:, None], bounds=True)
        channels, samplers = [], []
        outputs = [("translation", np.asarray([p[1] for p in poses], np.float32)),
                   ("rotation", np.stack([_quat(p[0]) for p in poses]))]  # fmt: skip
        if targets:
            outputs.append(("weights", weights.reshape(-1, 1)))
        for path, values in outputs:
            samplers.append(
                g.AnimationSampler(input=times, output=b.accessor(values), interpolation="LINEAR")
            )
            channels.append(
                g.AnimationChannel(
                    sampler=len(samplers) - 1, target=g.AnimationChannelTarget(node=0, path=path)
                )
            )
        b.doc.animations.append(g.Animation(name="fit", samplers=samplers, channels=channels))
    data = b.finish()
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return {
        "path": str(out),
        "bytes": len(data),
        "kind": kind,
        "frames": len(per_frame),
        "targets": len(targets),
    }

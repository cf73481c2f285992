"""What a regressor predicts, for which object and rig: the ``Task``.

A task pairs a representation (a blendshape rig, or a known mesh placed rigidly) with the
camera rig it is trained for. Its parameters are kept in one *canonical* form, a dict of

- ``coeffs``: [K] blendshape coefficients (identity then expression; K = 0 for a rigid mesh),
- ``R``: [3, 3] object -> world rotation about the object's centre,
- ``offset``: [3] the object's centre minus the rig's centre, in object radii,
- ``log_scale``: [] the object's log scale,

so that ``vertices = s R (x - c) + rig_centre + radius offset``, with x the model's shape in its
own frame and c its bounding-sphere centre. ``model_params`` and ``params_json`` turn it into
the representation's own parameters and into what ``meshfit fit`` writes to params.json.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from meshfit._pytree import pytree_dataclass, static_field
from meshfit.amortize.config import SamplingConfig
from meshfit.camera import Camera
from meshfit.mesh import Mesh, _gpytoolbox, bounding_sphere
from meshfit.models import BlendshapeModel, so3_exp, so3_log

__all__ = ["Task", "rig_centre", "six_d_to_matrix"]


def rig_centre(cameras: Camera) -> np.ndarray:
    """[3] the point closest (least squares) to every camera's optical axis: what a rig looks at.

    Falls back to a point in front of the cameras when the axes are (nearly) parallel."""
    R = np.asarray(cameras.R, np.float64).reshape(-1, 3, 3)
    o = np.asarray(cameras.center, np.float64).reshape(-1, 3)
    d = R[:, 2, :]  # optical axes (camera +z) in world coordinates
    P = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    A, b = P.sum(0), np.einsum("nij,nj->i", P, o)
    if np.linalg.cond(A) > 1e6:
        spread = max(float(np.linalg.norm(o - o.mean(0), axis=1).max()), 1.0)
        return o.mean(0) + spread * d.mean(0) / max(np.linalg.norm(d.mean(0)), 1e-12)
    return np.linalg.solve(A, b)


def six_d_to_matrix(x: jax.Array) -> jax.Array:
    """Rotation matrices [..., 3, 3] from 6-D vectors [..., 6] (Zhou et al. 2019): the two
    3-vectors are the first two columns, made orthonormal by Gram-Schmidt."""
    a, b = x[..., :3], x[..., 3:]
    # Safe norms: a zero vector (an untrained head can give one) must not make NaN gradients.
    na = jnp.sqrt(jnp.maximum(jnp.sum(a * a, -1, keepdims=True), 1e-12))
    e1 = a / na
    b = b - jnp.sum(e1 * b, -1, keepdims=True) * e1
    nb = jnp.sqrt(jnp.maximum(jnp.sum(b * b, -1, keepdims=True), 1e-12))
    e2 = b / nb
    e3 = jnp.cross(e1, e2)
    return jnp.stack([e1, e2, e3], -1)


def _uniform_rotation(key: jax.Array, max_degrees: float) -> jax.Array:
    """[3, 3] a random rotation: uniform on SO(3) for 180 degrees, else its rotation vector
    uniform in the ball of radius ``max_degrees``."""
    if max_degrees >= 180:
        q = jax.random.normal(key, (4,))
        q = q / jnp.linalg.norm(q)
        w, x, y, z = q
        return jnp.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])  # fmt: skip
    k1, k2 = jax.random.split(key)
    axis = jax.random.normal(k1, (3,))
    axis = axis / jnp.linalg.norm(axis)
    angle = np.radians(max_degrees) * jax.random.uniform(k2) ** (1.0 / 3.0)
    return so3_exp(angle * axis)


def _surface_proxy(base: np.ndarray, faces: np.ndarray, num_faces: int | None, *, weld: bool = False):
    """A decimation of the mesh (``base`` [V, 3], ``faces`` [F, 3]) to about ``num_faces`` faces
    (libigl's QSlim through gpytoolbox), each of its vertices bound to the model's nearest triangle
    as ``Task.proxy_vertices`` reads it (barycentrics in the triangle's plane and an offset along
    its normal), so that the proxy follows any deformation of the model (blendshapes).
    QSlim's vertices are kept where it put them: snapped onto the surface, those on an open
    boundary (the face region's rim) would move inwards by up to 1.3% of the diagonal.

    ``weld``: decimate with coincident vertices merged. Seams (vertices repeated for their UVs or
    normals) make a mesh look open and non-manifold to libigl, whose decimation then gives up;
    only a rigid mesh may be welded: a deforming one separates coincident vertices (closed lips).

    Returns (index [P, 3] int32, weights [P, 3] float32, offset [P] float32, faces [G, 3] int32);
    the identity (each vertex its own point) when ``num_faces`` is None or not below F.
    """
    V = base.shape[0]
    if num_faces is None or num_faces >= faces.shape[0]:
        index = np.repeat(np.arange(V, dtype=np.int32)[:, None], 3, 1)
        weights = np.tile(np.asarray([1.0, 0.0, 0.0], np.float32), (V, 1))
        return index, weights, np.zeros(V, np.float32), faces
    gpytoolbox = _gpytoolbox()
    v64, f32 = np.array(base, np.float64), np.array(faces, np.int32)
    if weld:
        import trimesh

        welded = trimesh.Trimesh(v64, f32, process=False)
        welded.merge_vertices()
        v, f = np.array(welded.vertices, np.float64), np.array(welded.faces, np.int32)
    else:
        v, f = v64, f32
    u, g, _, _ = gpytoolbox.decimate(v, f, num_faces=int(num_faces), method="qslim")
    if len(g) == 0:
        raise ValueError(
            f"libigl could not decimate the model to {num_faces} faces (it needs an edge-manifold "
            "mesh): set proxy_faces to null"
        )
    _, tri, _ = gpytoolbox.squared_distance(u, v64, f32, use_cpp=True, use_aabb=True)
    a, b, c = (v64[f32[tri, i]] for i in range(3))
    # Least squares on the two edges (defined on degenerate triangles too), unclipped: a point
    # beyond the rim extrapolates its triangle.
    st = np.einsum("pij,pj->pi", np.linalg.pinv(np.stack([b - a, c - a], -1)), u - a)
    weights = np.stack([1 - st.sum(1), st[:, 0], st[:, 1]], 1)
    inplane = np.einsum("pj,pjd->pd", weights, np.stack([a, b, c], 1))
    n, size = _scaled_normal(a, b, c)
    offset = np.where(size > 0, np.einsum("pd,pd->p", u - inplane, n) / np.maximum(size, 1e-30) ** 2, 0.0)
    return f32[tri], weights.astype(np.float32), offset.astype(np.float32), np.asarray(g, np.int32)


def _scaled_normal(a, b, c):
    """The normal of triangles (a, b, c) [..., 3] scaled to the square root of twice their area
    (so that an offset along it grows with the triangle), and that length [...]; works on numpy
    and jax arrays alike."""
    xp = jnp if isinstance(a, jax.Array) else np
    cross = xp.cross(b - a, c - a)
    size = xp.sqrt(xp.linalg.norm(cross, axis=-1))
    return cross / xp.maximum(size, 1e-30)[..., None], size


@pytree_dataclass
class Task:
    """A representation and the rig a regressor is trained for.

    Fields:
        base: [V, 3] the model's neutral (blendshapes) or template (rigid) vertices, own frame.
        basis: [K, V, 3] coefficient deltas (identity then expression; K = 0 for rigid).
        faces: [F, 3] int32.
        centre: [3] bounding-sphere centre of ``base`` (what R turns about). radius: [] its radius.
        rig: [N] the cameras the network is trained for, at the network's input resolution.
        target: [3] the rig's centre (``rig_centre``), where the object sits at zero offset.
        kind: "blendshapes" or "rigid" (static). planes: (near, far) clip planes of renders
            through the rig: 2 radii about the nearest and farthest depth of its centre (static).
        identity_names, expression_names: coefficient names (static; rigid: empty).
        proxy_index, proxy_weights: [P, 3] int32 / float32, proxy_offset: [P], proxy_faces:
            [G, 3] int32: the mesh training inputs are rasterized from (``proxy_vertices``), a
            decimation of the model bound to its triangles (the model's own mesh when not decimated).
        landmark_index, landmark_weights: [L, 3] int32 / float32, the model's landmarks as
            barycentric points of its vertices (L = 0 when it defines none; always for rigid).
    """

    base: jax.Array
    basis: jax.Array
    faces: jax.Array
    centre: jax.Array
    radius: jax.Array
    rig: Camera
    target: jax.Array
    proxy_index: jax.Array
    proxy_weights: jax.Array
    proxy_offset: jax.Array
    proxy_faces: jax.Array
    landmark_index: jax.Array
    landmark_weights: jax.Array
    kind: str = static_field(default="rigid")
    planes: tuple = static_field(default=(0.01, 100.0))
    identity_names: tuple = static_field(default=())
    expression_names: tuple = static_field(default=())

    @classmethod
    def create(cls, model: BlendshapeModel | Mesh, rig: Camera, *, proxy_faces: int | None = None) -> Task:
        """A task for a blendshape model or a known mesh and a rig [N] (any resolution).

        ``proxy_faces``: rasterize training inputs from a decimation of the model with about this
        many faces (None: the model's own mesh)."""
        if len(rig.batch_shape) != 1:
            raise ValueError(f"the rig must be a [N] batch of cameras; got batch shape {rig.batch_shape}")
        if isinstance(model, BlendshapeModel):
            base = np.asarray(model.neutral, np.float32)
            basis = np.concatenate([np.asarray(model.identity), np.asarray(model.expression)]).astype(
                np.float32
            )
            ids = model.identity_names or tuple(f"identity{i}" for i in range(model.num_identity))
            exps = model.expression_names or tuple(f"expression{i}" for i in range(model.num_expression))
            kind = "blendshapes"
            if model.num_landmarks:
                marks = np.asarray(model.landmark_vertices, np.int32), np.asarray(model.landmark_weights)
            else:
                marks = np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32)
        elif isinstance(model, Mesh):
            base = np.asarray(model.vertices, np.float32)
            basis = np.zeros((0,) + base.shape, np.float32)
            ids, exps, kind = (), (), "rigid"
            marks = np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32)
        else:
            raise TypeError(f"model must be a BlendshapeModel or a Mesh; got {type(model).__name__}")
        c, r = bounding_sphere(base)
        if not r > 0:
            raise ValueError("the model has zero extent")
        target = rig_centre(rig)
        z = np.einsum("nj,j->n", np.asarray(rig.R)[:, 2, :], target) + np.asarray(rig.t)[:, 2]
        far = float(z.max()) + 2 * r
        if not z.min() > 0:
            raise ValueError(
                "the rig's centre is behind one of its cameras: the cameras do not look at one place"
            )
        planes = (max(float(z.min()) - 2 * r, 1e-3 * far), far)
        faces = np.asarray(model.faces, np.int32)
        index, weights, offset, pfaces = _surface_proxy(base, faces, proxy_faces, weld=kind == "rigid")
        return cls(
            jnp.asarray(base), jnp.asarray(basis), jnp.asarray(faces),
            jnp.asarray(c, jnp.float32), jnp.asarray(r, jnp.float32), rig,
            jnp.asarray(target, jnp.float32),
            jnp.asarray(index), jnp.asarray(weights), jnp.asarray(offset), jnp.asarray(pfaces),
            jnp.asarray(marks[0], jnp.int32), jnp.asarray(marks[1], jnp.float32),
            kind, planes, tuple(ids), tuple(exps),
        )  # fmt: skip

    def with_proxy(self, proxy_faces: int | None) -> Task:
        """This task with another proxy: a decimation of the model with about ``proxy_faces``
        faces (None: the model's own mesh)."""
        index, weights, offset, faces = _surface_proxy(
            np.asarray(self.base), np.asarray(self.faces), proxy_faces, weld=self.kind == "rigid"
        )
        return dataclasses.replace(
            self, proxy_index=jnp.asarray(index), proxy_weights=jnp.asarray(weights),
            proxy_offset=jnp.asarray(offset), proxy_faces=jnp.asarray(faces),
        )  # fmt: skip

    # ---- sizes and names ------------------------------------------------------------------
    @property
    def num_coeffs(self) -> int:
        return self.basis.shape[0]

    @property
    def num_vertices(self) -> int:
        return self.base.shape[0]

    @property
    def coeff_names(self) -> tuple[str, ...]:
        return self.identity_names + self.expression_names

    def coeff_ranges(self, sampling: SamplingConfig) -> np.ndarray:
        """[K, 2] the sampling range of each coefficient (per-name ``ranges`` override)."""
        unknown = sorted(set(sampling.ranges) - set(self.coeff_names))
        if unknown:
            raise ValueError(
                f"sampling.ranges names {unknown}, which are not coefficients of the model "
                f"(it has {list(self.coeff_names)})"
            )
        rows = [sampling.identity] * len(self.identity_names) + [sampling.expression] * len(
            self.expression_names
        )
        rows = [sampling.ranges.get(n, r) for n, r in zip(self.coeff_names, rows)]
        return np.asarray(rows, np.float32).reshape(-1, 2)

    def coeff_bounds(self, bounds: dict) -> np.ndarray:
        """[K, 2] the box each output coefficient is confined to (inf where unbounded)."""
        n_id = len(self.identity_names)
        out = np.full((self.num_coeffs, 2), [-np.inf, np.inf], np.float32)
        if "identity" in bounds:
            out[:n_id] = bounds["identity"]
        if "expression" in bounds:
            out[n_id:] = bounds["expression"]
        return out

    # ---- parameters -----------------------------------------------------------------------
    def sample(self, key: jax.Array, sampling: SamplingConfig) -> dict:
        """One random canonical parameter set drawn as ``sampling`` says (jit-friendly)."""
        kc, ka, kr, kt, ks = jax.random.split(key, 5)
        ranges = jnp.asarray(self.coeff_ranges(sampling))
        coeffs = ranges[:, 0] + (ranges[:, 1] - ranges[:, 0]) * jax.random.uniform(kc, (self.num_coeffs,))
        if sampling.expression_active < 1 and self.expression_names:
            n_id = len(self.identity_names)
            active = jax.random.bernoulli(ka, sampling.expression_active, (self.num_coeffs,))
            active = active | (jnp.arange(self.num_coeffs) < n_id)
            # An inactive expression rests at its range's end nearest zero (0 for [0, 1]).
            rest = jnp.clip(0.0, ranges[:, 0], ranges[:, 1])
            coeffs = jnp.where(active, coeffs, rest)
        lo, hi = np.log(sampling.scale[0]), np.log(sampling.scale[1])
        return {
            "coeffs": coeffs,
            "R": _uniform_rotation(kr, sampling.rotation),
            "offset": sampling.translation * jax.random.uniform(kt, (3,), minval=-1.0, maxval=1.0),
            "log_scale": lo + (hi - lo) * jax.random.uniform(ks),
        }

    def shape(self, canon: dict) -> jax.Array:
        """[V, 3] the unposed shape (own frame)."""
        if self.num_coeffs == 0:
            return self.base
        return self.base + jnp.einsum("k,kvd->vd", canon["coeffs"], self.basis)

    def vertices(self, canon: dict) -> jax.Array:
        """[V, 3] world-space vertices of canonical parameters."""
        s = jnp.exp(canon["log_scale"])
        x = self.shape(canon) - self.centre[None]
        return s * x @ canon["R"].T + (self.target + self.radius * canon["offset"])[None]

    def proxy_vertices(self, vertices: jax.Array) -> jax.Array:
        """[..., V, 3] model vertices -> [..., P, 3] the proxy's (``proxy_faces`` index them): each
        a point in the plane of a model triangle (``proxy_weights``) moved along its normal."""
        tri = vertices[..., self.proxy_index, :]  # [..., P, 3, 3]
        n, _ = _scaled_normal(tri[..., 0, :], tri[..., 1, :], tri[..., 2, :])
        inplane = jnp.einsum("...pjd,pj->...pd", tri, self.proxy_weights)
        return inplane + jnp.einsum("...pd,p->...pd", n, self.proxy_offset)

    @property
    def num_landmarks(self) -> int:
        return self.landmark_index.shape[0]

    def landmark_points(self, vertices: jax.Array) -> jax.Array:
        """[..., V, 3] vertices -> [..., L, 3] the model's landmarks on them."""
        return jnp.einsum("...lkd,lk->...ld", vertices[..., self.landmark_index, :], self.landmark_weights)

    def object_centre(self, canon: dict) -> jax.Array:
        """[3] world position of the object's centre."""
        return self.target + self.radius * canon["offset"]

    def model_params(self, canon: dict) -> dict:
        """The representation's own parameters (``BlendshapeModel.vertices`` or a ``RigidModel``
        with R0 = I and the model file's vertices as template) giving the same vertices."""
        s = jnp.exp(canon["log_scale"])
        t = self.object_centre(canon) - s * canon["R"] @ self.centre
        out = {"rotation": so3_log(canon["R"]), "translation": t, "log_scale": canon["log_scale"]}
        if self.kind == "blendshapes":
            n_id = len(self.identity_names)
            out |= {"identity": canon["coeffs"][:n_id], "expression": canon["coeffs"][n_id:]}
        return out

    def params_json(self, canon: dict) -> dict:
        """What ``meshfit fit`` writes to params.json for these parameters (one frame, host)."""
        canon = jax.tree.map(lambda a: np.asarray(a, np.float64), canon)
        s = float(np.exp(canon["log_scale"]))
        R = canon["R"]
        centre = np.asarray(self.target, np.float64) + float(self.radius) * canon["offset"]
        t = centre - s * R @ np.asarray(self.centre, np.float64)
        if self.kind == "rigid":
            M = np.eye(4)
            M[:3, :3], M[:3, 3] = s * R, t
            return {"object_to_world": M.tolist(), "scale": s}
        n_id = len(self.identity_names)
        return {
            "identity": dict(zip(self.identity_names, canon["coeffs"][:n_id].tolist())),
            "expression": dict(zip(self.expression_names, canon["coeffs"][n_id:].tolist())),
            "rotation_axis_angle": np.asarray(so3_log(jnp.asarray(R, jnp.float32)), np.float64).tolist(),
            "translation": t.tolist(),
            "scale": s,
        }

    def from_params_json(self, params: dict) -> dict:
        """Canonical parameters of a params.json written by ``meshfit fit`` or ``predict`` (one
        frame); the inverse of ``params_json``."""
        c = np.asarray(self.centre, np.float64)
        if self.kind == "rigid":
            M = np.asarray(params["object_to_world"], np.float64)
            if M.shape != (4, 4):
                raise ValueError(f"object_to_world must be 4x4; got {M.shape}")
            s = float(params.get("scale", np.cbrt(abs(np.linalg.det(M[:3, :3])))))
            R, t, coeffs = M[:3, :3] / s, M[:3, 3], np.zeros(0)
        else:
            ids, exps = params.get("identity", {}), params.get("expression", {})
            missing = sorted((set(self.identity_names) - set(ids)) | (set(self.expression_names) - set(exps)))
            if missing:
                raise ValueError(f"params name no value for the model's coefficients {missing}")
            coeffs = np.array(
                [ids[n] for n in self.identity_names] + [exps[n] for n in self.expression_names]
            )
            s = float(params["scale"])
            R = np.asarray(so3_exp(jnp.asarray(params["rotation_axis_angle"], jnp.float32)), np.float64)
            t = np.asarray(params["translation"], np.float64)
        centre = s * R @ c + t
        return {
            "coeffs": jnp.asarray(coeffs, jnp.float32),
            "R": jnp.asarray(R, jnp.float32),
            "offset": jnp.asarray((centre - np.asarray(self.target)) / float(self.radius), jnp.float32),
            "log_scale": jnp.asarray(np.log(s), jnp.float32),
        }

    def with_rig(self, rig: Camera) -> Task:
        """The same object with another rig (e.g. the rig at another resolution)."""
        return dataclasses.replace(self, rig=rig)

    @property
    def diagonal(self) -> float:
        """The base shape's bounding-box diagonal (the unit of the reported vertex error)."""
        b = np.asarray(self.base)
        return float(np.linalg.norm(b.max(0) - b.min(0)))

"""The Mesh pytree and per-face / per-vertex geometry: normals, areas, surface sampling.

Shape vocabulary: V vertices, F faces, T texture coordinates, P points, C channels.
Faces are counter-clockwise seen from outside (right-handed normal points out), as in OBJ/glTF.
All geometry functions are pure, jit-able and differentiable in ``vertices``; for batches of
vertex sets use ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meshfit._pytree import is_concrete, pytree_dataclass

__all__ = [
    "Mesh",
    "MeshError",
    "MeshWarning",
    "SurfaceSample",
    "bounding_sphere",
    "face_areas",
    "face_normals",
    "sample_surface",
    "triangulate",
    "vertex_normals",
]


class MeshError(ValueError):
    """A mesh that meshfit cannot use: wrong shapes or dtypes, bad indices, non-finite values."""


class MeshWarning(UserWarning):
    """A usable mesh with a problem worth knowing about (degenerate faces)."""


def _describe(x) -> str:
    return f"{tuple(x.shape)} {x.dtype}"


@pytree_dataclass
class Mesh:
    """A triangle mesh as a JAX pytree. Construct it directly: ``Mesh(vertices, faces)``.

    Fields (all arrays are pytree leaves; shapes define the static topology size):
        vertices: [V, 3] float, object/world units.
        faces: [F, 3] int32, vertex indices, counter-clockwise seen from outside.
        colors: optional [V, C] float in [0, 1], C = 3 (RGB) or 4 (RGBA) per-vertex colours.
        uvs: optional [T, 2] float texture coordinates, (0, 0) = bottom-left of the texture
            (OBJ/OpenGL convention; row 0 of ``texture`` is its top).
        uv_faces: optional [F, 3] int32 indices into ``uvs``, one triple per face, so UV seams
            can split texture coordinates without splitting vertices. Defaults to ``faces``
            when ``uvs`` has one row per vertex.
        texture: optional [H, W, C] float in [0, 1], row 0 at the top of the image.

    Construction checks shapes and dtypes (always) and values (when the arrays are concrete,
    i.e. outside ``jit``): non-finite vertices, out-of-range indices and empty meshes raise
    ``MeshError``; degenerate faces (repeated indices or zero area) warn with ``MeshWarning``.
    Polygons must be triangulated first with ``triangulate``. Differentiate with respect to
    ``mesh.vertices`` (``faces`` is an integer leaf).
    """

    vertices: jax.Array
    faces: jax.Array
    _: dataclasses.KW_ONLY
    colors: jax.Array | None = None
    uvs: jax.Array | None = None
    uv_faces: jax.Array | None = None
    texture: jax.Array | None = None

    def __post_init__(self):
        v = _as_float(self.vertices, "vertices")
        f = _as_index(self.faces, "faces")
        if v.ndim != 2 or v.shape[1] != 3:
            raise MeshError(f"vertices must be [V, 3] float; got {_describe(v)}")
        if f.ndim != 2 or f.shape[1] != 3:
            hint = ""
            if f.ndim == 2 and f.shape[1] > 3:
                hint = " (quads or polygons: convert them with meshfit.triangulate first)"
            raise MeshError(f"faces must be [F, 3] int32; got {_describe(f)}{hint}")
        if v.shape[0] == 0:
            raise MeshError("mesh is empty: vertices has 0 rows")
        if f.shape[0] == 0:
            raise MeshError("mesh is empty: faces has 0 rows")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)
        num_v = v.shape[0]

        if self.colors is not None:
            c = _as_float(self.colors, "colors")
            if c.ndim != 2 or c.shape[0] != num_v or c.shape[1] not in (3, 4):
                raise MeshError(f"colors must be [V, 3] or [V, 4] float with V = {num_v}; got {_describe(c)}")
            object.__setattr__(self, "colors", c)
        if self.uvs is None:
            if self.uv_faces is not None or self.texture is not None:
                raise MeshError("uv_faces and texture need uvs; got uvs=None")
        else:
            uv = _as_float(self.uvs, "uvs")
            if uv.ndim != 2 or uv.shape[1] != 2 or uv.shape[0] == 0:
                raise MeshError(f"uvs must be [T, 2] float with T > 0; got {_describe(uv)}")
            if self.uv_faces is None:
                if uv.shape[0] != num_v:
                    raise MeshError(
                        f"uvs has {uv.shape[0]} rows but the mesh has {num_v} vertices; "
                        "pass uv_faces [F, 3] to index them"
                    )
                uf = f
            else:
                uf = _as_index(self.uv_faces, "uv_faces")
                if uf.shape != f.shape:
                    raise MeshError(
                        f"uv_faces must be [F, 3] int32 like faces {tuple(f.shape)}; got {_describe(uf)}"
                    )
            object.__setattr__(self, "uvs", uv)
            object.__setattr__(self, "uv_faces", uf)
        if self.texture is not None:
            tex = _as_float(self.texture, "texture")
            if tex.ndim != 3 or tex.shape[2] not in (1, 3, 4) or 0 in tex.shape:
                raise MeshError(f"texture must be [H, W, C] float with C in 1, 3, 4; got {_describe(tex)}")
            object.__setattr__(self, "texture", tex)
        if all(is_concrete(x) for x in (self.vertices, self.faces)):
            self._check_values()

    def _check_values(self) -> None:
        v = np.asarray(self.vertices)
        f = np.asarray(self.faces)
        bad = ~np.isfinite(v).all(axis=1)
        if bad.any():
            idx = np.flatnonzero(bad)
            raise MeshError(
                f"vertices contain non-finite values (NaN or inf) at {idx.size} vertices, "
                f"first at index {idx[0]}: {v[idx[0]].tolist()}"
            )
        _check_range(f, v.shape[0], "faces", "vertices")
        if self.uvs is not None and is_concrete(self.uvs) and is_concrete(self.uv_faces):
            uv = np.asarray(self.uvs)
            if not np.isfinite(uv).all():
                raise MeshError("uvs contain non-finite values (NaN or inf)")
            _check_range(np.asarray(self.uv_faces), uv.shape[0], "uv_faces", "uvs")
        for name in ("colors", "texture"):
            x = getattr(self, name)
            if x is not None and is_concrete(x) and not np.isfinite(np.asarray(x)).all():
                raise MeshError(f"{name} contain non-finite values (NaN or inf)")
        repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
        e1 = v[f[:, 1]].astype(np.float64) - v[f[:, 0]]
        e2 = v[f[:, 2]].astype(np.float64) - v[f[:, 0]]
        cross = np.linalg.norm(np.cross(e1, e2), axis=1)
        scale = np.maximum(np.linalg.norm(e1, axis=1), np.linalg.norm(e2, axis=1)) ** 2
        flat = (cross <= 1e-12 * scale) & ~repeated
        if repeated.any() or flat.any():
            first = int(np.flatnonzero(repeated | flat)[0])
            warnings.warn(
                f"mesh has {int(repeated.sum())} faces with repeated vertex indices and "
                f"{int(flat.sum())} zero-area faces (first: face {first} = {f[first].tolist()}); "
                "they render nothing and get zero normals",
                MeshWarning,
                stacklevel=3,
            )

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    def __repr__(self) -> str:
        extras = [n for n in ("colors", "uvs", "texture") if getattr(self, n) is not None]
        more = f", with {', '.join(extras)}" if extras else ""
        return f"Mesh(V={self.vertices.shape[0]}, F={self.faces.shape[0]}{more})"


def _as_float(x, name: str) -> jax.Array:
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise MeshError(f"{name} must be a float array; got {_describe(x)}")
    return jnp.asarray(x)


def _as_index(x, name: str) -> jax.Array:
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise MeshError(f"{name} must be [F, 3] int32; got {_describe(x)}")
    if is_concrete(x) and x.size and np.asarray(x).max() >= 2**31:
        raise MeshError(f"{name} has indices beyond int32 range")
    return jnp.asarray(x, dtype=jnp.int32)


def _check_range(idx: np.ndarray, n: int, name: str, target: str) -> None:
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise MeshError(
            f"{name} index out of range: {name}[{row}] = {idx[row].tolist()} but {target} has "
            f"{n} rows (valid 0..{n - 1}); {int(bad.any(axis=1).sum())} rows are bad"
        )


def triangulate(polygons: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Fan-triangulate polygons: polygon (v0, v1, ..., vk) -> (v0, vi, vi+1) for i = 1..k-1.

    Args:
        polygons: [F, K] int array (K >= 3, e.g. quads) or a list of index lists of any lengths.
    Returns:
        [sum(K_f - 2), 3] int32 triangles, the triangles of polygon f contiguous and in order,
        winding kept. The same polygon list always gives the same triangles, so shapes that
        share a polygon topology (blendshapes) stay in correspondence.
    """
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        rows: Sequence[Sequence[int]] = polygons.tolist()
    else:
        rows = polygons
    tris = []
    for i, poly in enumerate(rows):
        if len(poly) < 3:
            raise MeshError(f"polygon {i} has {len(poly)} vertices; a face needs at least 3")
        tris.extend((poly[0], poly[k], poly[k + 1]) for k in range(1, len(poly) - 1))
    out = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    if out.size and (out.min() < 0 or out.max() >= 2**31):
        raise MeshError("polygon indices must be non-negative int32")
    return out.astype(np.int32)


def _corners(vertices: jax.Array, faces: jax.Array) -> jax.Array:
    """[F, 3, 3]: the three corner positions of each face."""
    return vertices[faces]


def _safe_norm(x: jax.Array, axis: int = -1, keepdims: bool = False) -> jax.Array:
    # The double where keeps the gradient finite for zero-length vectors (degenerate faces):
    # sqrt's derivative at 0 is inf, and where() alone would still multiply it by zero -> NaN.
    sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
    ok = sq > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def _safe_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    norm = _safe_norm(x, axis=axis, keepdims=True)
    return jnp.where(norm > 0, x / jnp.where(norm > 0, norm, 1.0), 0.0)


def face_normals(vertices: jax.Array, faces: jax.Array) -> jax.Array:
    """Unit face normals [F, 3] (right-hand rule over the face's vertex order).

    Degenerate faces get a zero normal (and a finite, zero gradient) rather than NaN.
    """
    c = _corners(vertices, faces)
    n = jnp.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
    return _safe_normalize(n)


def face_areas(vertices: jax.Array, faces: jax.Array) -> jax.Array:
    """Face areas [F] in squared vertex units (differentiable; zero-area faces are safe)."""
    c = _corners(vertices, faces)
    return 0.5 * _safe_norm(jnp.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]))


def vertex_normals(vertices: jax.Array, faces: jax.Array, *, weighting: str = "angle") -> jax.Array:
    """Unit vertex normals [V, 3]: a weighted sum of the normals of the faces around each vertex.

    Args:
        vertices: [V, 3] float.
        faces: [F, 3] int32.
        weighting: "angle" (each face weighted by its corner angle at the vertex, as trimesh
            does; insensitive to tessellation) or "area" (weighted by face area).
    Returns:
        [V, 3] unit normals; zero for vertices that touch no face of non-zero area.
    """
    c = _corners(vertices, faces)
    cross = jnp.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
    if weighting == "area":
        w = jnp.repeat(cross[:, None, :], 3, axis=1)  # |cross| = 2 * area
    elif weighting == "angle":
        # The corner angle is atan2(|a x b|, a . b) of its two unnormalised edges (atan2, not arccos:
        # finite derivative at flat corners), and |a x b| is the face's |cross| at all three corners,
        # so no per-corner normalisation (its gradient costs a third of the normalised form's).
        cos = jnp.sum((jnp.roll(c, -1, axis=1) - c) * (jnp.roll(c, 1, axis=1) - c), axis=-1)
        sin = jnp.broadcast_to(_safe_norm(cross)[:, None], cos.shape)
        # Both 0 (a zero-length edge) is where atan2's derivative is NaN: mask it out.
        ok = (sin > 0) | (cos != 0)
        angle = jnp.where(ok, jnp.arctan2(jnp.where(ok, sin, 1.0), jnp.where(ok, cos, 1.0)), 0.0)
        w = angle[:, :, None] * _safe_normalize(cross)[:, None, :]
    else:
        raise ValueError(f"weighting must be 'angle' or 'area'; got {weighting!r}")
    summed = jax.ops.segment_sum(w.reshape(-1, 3), faces.reshape(-1), num_segments=vertices.shape[0])
    return _safe_normalize(summed)


class SurfaceSample(NamedTuple):
    """Points sampled on a mesh surface.

    points: [P, 3] float, barycentric combinations of the face corners (differentiable in
        the vertices). face_index: [P] int32. barycentric: [P, 3] float weights of corners 0..2.
    """

    points: jax.Array
    face_index: jax.Array
    barycentric: jax.Array


def sample_surface(key: jax.Array, vertices: jax.Array, faces: jax.Array, num_points: int) -> SurfaceSample:
    """Area-weighted uniform samples on the surface (differentiable in ``vertices``).

    Faces are drawn with probability proportional to area (the choice carries no gradient);
    each point is a barycentric combination of its face's corners, so gradients reach the
    vertices as in PyTorch3D's ``sample_points_from_meshes``.

    Args:
        key: PRNG key.
        vertices: [V, 3] float.
        faces: [F, 3] int32.
        num_points: P, static.
    """
    k_face, k_bary = jax.random.split(key)
    areas = jax.lax.stop_gradient(face_areas(vertices, faces))
    total = jnp.sum(areas)
    # An all-degenerate mesh has no surface: sample faces uniformly instead of dividing by 0.
    p = jnp.where(total > 0, areas / jnp.where(total > 0, total, 1.0), 1.0 / faces.shape[0])
    face_index = jax.random.choice(k_face, faces.shape[0], (num_points,), p=p).astype(jnp.int32)
    r = jax.random.uniform(k_bary, (num_points, 2), dtype=vertices.dtype)
    s = jnp.sqrt(r[:, 0])
    bary = jnp.stack([1.0 - s, s * (1.0 - r[:, 1]), s * r[:, 1]], axis=-1)
    corners = vertices[faces[face_index]]  # [P, 3, 3]
    points = jnp.einsum("pk,pkd->pd", bary, corners)
    return SurfaceSample(points, face_index, bary)


def bounding_sphere(vertices) -> tuple[np.ndarray, float]:
    """The sphere meshfit places cameras, clip ranges and metrics by: centre [3] float64 (the
    bounding box's centre, world units) and radius (the farthest vertex's distance from it).

    vertices: [V, 3] array-like (concrete, not traced); V >= 1.
    """
    v = np.asarray(vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise MeshError(f"bounding_sphere needs [V, 3] vertices with V >= 1; got {v.shape}")
    centre = (v.min(0) + v.max(0)) / 2
    return centre, float(np.linalg.norm(v - centre, axis=1).max())


def _gpytoolbox():
    """gpytoolbox (libigl's remeshing and AABB distance queries), imported without the
    DeprecationWarning its scipy.ndimage.filters import raises under scipy >= 1.8."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"gpytoolbox\..*")
        warnings.filterwarnings("ignore", message=r".*scipy\.ndimage\.filters.*", category=DeprecationWarning)
        import gpytoolbox
    return gpytoolbox

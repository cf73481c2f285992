"""Rasterization: per-pixel visible triangle, perspective-correct barycentrics and depth.

Two passes, as in nvdiffrast:

1. **Visibility** (no gradient): which triangle each pixel centre sees. Runs in the native CPU
   kernel (``kernels/rasterize.cc`` through XLA's FFI) when it is built and the arrays live on
   the CPU, else in a pure-JAX tiled implementation that runs on any backend. Both evaluate the
   same per-triangle setup with the same float32 arithmetic and give identical ids.
2. **Barycentrics and depth** (differentiable): recomputed in JAX from the clip-space
   positions of each pixel's triangle, so gradients reach the vertices through them.

Conventions (``meshfit.camera``): clip space is ``Camera.clip_matrix``'s, w = camera z; pixel
(column i, row j) samples NDC x = (2i + 1) / W - 1, y = (2j + 1) / H - 1 (row 0 at y = -1).
Triangles are rasterized two-sided with homogeneous (2DH) edge functions, so triangles that
cross the camera plane need no clipping; fragments outside the near/far range
(NDC z outside [-1, 1]) are discarded. Fill rule: a pixel centre exactly on an edge belongs to
the triangle for which that edge is a *left* edge, or a *top* edge if horizontal (image
coordinates, y down), so triangles sharing an edge never both or neither cover a pixel. Depth
ties go to the lower face index.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.render import _native

__all__ = ["Fragments", "rasterize"]

# Per-triangle setup, one row of NUM_COEFFS float32 per (view, face):
#   [A0, B0, C0, A1, B1, C1, A2, B2, C2,  SA, SB, SC,  ZA, ZB, ZC]
# Edge i (opposite vertex i): u_i = A_i x + B_i y + C_i >= 0 inside (sign-normalised, so the
# triangle may face either way); 1/w = SA x + SB y + SC; NDC z = ZA x + ZB y + ZC; (x, y) NDC.
NUM_COEFFS = 15


class Fragments(NamedTuple):
    """Rasterizer output for B... views of H x W pixels.

    face_id: [B..., H, W] int32, index of the visible face, -1 for background.
    bary: [B..., H, W, 3] float, perspective-correct barycentric weights of the face's corners
        0, 1, 2 (sum to 1; zeros on background). Differentiable in the clip positions.
    depth: [B..., H, W] float, camera-space z (clip w) of the visible surface; 0 on background.
    """

    face_id: jax.Array
    bary: jax.Array
    depth: jax.Array

    @property
    def mask(self) -> jax.Array:
        """[B..., H, W] bool coverage."""
        return self.face_id >= 0


def pixel_ndc(height: int, width: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """NDC x [W] and y [H] of the pixel centres (the exact float32 values both kernels use)."""
    x = (2.0 * jnp.arange(width, dtype=dtype) + 1.0) / jnp.asarray(width, dtype) - 1.0
    y = (2.0 * jnp.arange(height, dtype=dtype) + 1.0) / jnp.asarray(height, dtype) - 1.0
    return x, y


def triangle_setup(
    clip: jax.Array, faces: jax.Array, height: int, width: int, *, backend: str = "auto"
) -> tuple[jax.Array, jax.Array]:
    """Per-triangle edge functions and pixel bounding boxes (float32, no gradient).

    Args:
        clip: [B, V, 4] clip-space positions.
        faces: [F, 3] int32.
    Returns:
        coeffs: [B, F, NUM_COEFFS] float32 (layout above).
        bbox: [B, F, 4] int32 inclusive pixel box (x0, y0, x1, y1); empty (x1 < x0) for triangles
            that cannot cover a pixel (degenerate, behind the camera, outside the frustum).

    The arithmetic (every operation and its order) is mirrored in kernels/rasterize.cc, so the
    native and pure-JAX paths see bit-identical triangles.
    """
    clip = jax.lax.stop_gradient(clip).astype(jnp.float32)
    if _use_native(backend, clip):
        return _native.triangle_setup(clip, faces, height=height, width=width)
    c = clip[:, faces]  # [B, F, 3, 4]
    x, y, z, w = (c[..., k] for k in range(4))
    corner = lambda a, i: a[..., i % 3]  # noqa: E731
    A = [corner(w, i + 2) * corner(y, i + 1) - corner(w, i + 1) * corner(y, i + 2) for i in range(3)]
    B = [corner(w, i + 1) * corner(x, i + 2) - corner(w, i + 2) * corner(x, i + 1) for i in range(3)]
    C = [corner(x, i + 1) * corner(y, i + 2) - corner(x, i + 2) * corner(y, i + 1) for i in range(3)]
    det = (w[..., 0] * C[0] + w[..., 1] * C[1]) + w[..., 2] * C[2]  # det [x; y; w], = u . w
    s = jnp.sign(det)
    A, B, C = [a * s for a in A], [b * s for b in B], [c_ * s for c_ in C]
    adet = jnp.abs(det)
    ok = adet > 0
    inv = jnp.where(ok, 1.0 / jnp.where(ok, adet, 1.0), 0.0)

    def plane(k0, k1, k2):  # ((k0 + k1) + k2) * inv, in this order
        return ((k0 + k1) + k2) * inv

    S = [plane(*E) for E in (A, B, C)]
    Z = [plane(z[..., 0] * E[0], z[..., 1] * E[1], z[..., 2] * E[2]) for E in (A, B, C)]
    coeffs = jnp.stack([A[0], B[0], C[0], A[1], B[1], C[1], A[2], B[2], C[2], *S, *Z], -1)

    # Pixel bounding box: from the projected corners when all are in front of the camera (every
    # pixel centre in [min, max] lies in [floor(min), ceil(max)] despite rounding), else the whole
    # image (the edge functions then do the exact work).
    in_front = jnp.all(w > 0, -1)
    ws = jnp.where(w > 0, w, 1.0)
    px = ((x / ws + 1.0) * width - 1.0) * 0.5
    py = ((y / ws + 1.0) * height - 1.0) * 0.5
    x0 = jnp.where(in_front, jnp.floor(jnp.min(px, -1)), 0.0)
    x1 = jnp.where(in_front, jnp.ceil(jnp.max(px, -1)), width - 1.0)
    y0 = jnp.where(in_front, jnp.floor(jnp.min(py, -1)), 0.0)
    y1 = jnp.where(in_front, jnp.ceil(jnp.max(py, -1)), height - 1.0)
    x0 = jnp.clip(x0, 0, width)
    y0 = jnp.clip(y0, 0, height)
    x1 = jnp.clip(x1, -1, width - 1)
    y1 = jnp.clip(y1, -1, height - 1)
    # Frustum culling: all corners outside one clip plane, or all behind the camera.
    outside = (
        jnp.all(x > w, -1)
        | jnp.all(x < -w, -1)
        | jnp.all(y > w, -1)
        | jnp.all(y < -w, -1)
        | jnp.all(z > w, -1)
        | jnp.all(z < -w, -1)
        | jnp.all(w <= 0, -1)
    )
    finite = jnp.all(jnp.isfinite(c), (-1, -2))
    keep = ok & ~outside & finite
    bbox = jnp.stack([x0, y0, x1, y1], -1).astype(jnp.int32)
    bbox = jnp.where(keep[..., None], bbox, jnp.array([0, 0, -1, -1], jnp.int32))
    return coeffs, bbox


def _covers(
    coef: jax.Array, box: jax.Array, x: jax.Array, y: jax.Array, ix: jax.Array, iy: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Coverage and 1/w of pixel centres (x, y) [..., P] by triangles coef [..., NUM_COEFFS].

    Pixels (ix, iy) outside the triangle's box [..., 4] never count, as in the native kernel,
    which visits only box pixels; the arithmetic order is mirrored in kernels/rasterize.cc.
    """
    inside = (
        (ix >= box[..., 0, None])
        & (ix <= box[..., 2, None])
        & (iy >= box[..., 1, None])
        & (iy <= box[..., 3, None])
    )
    for i in range(3):
        a, b, cc = coef[..., 3 * i, None], coef[..., 3 * i + 1, None], coef[..., 3 * i + 2, None]
        u = (a * x + b * y) + cc
        top_left = (a > 0) | ((a == 0) & (b > 0))
        inside = inside & ((u > 0) | ((u == 0) & top_left))
    invw = (coef[..., 9, None] * x + coef[..., 10, None] * y) + coef[..., 11, None]
    zn = (coef[..., 12, None] * x + coef[..., 13, None] * y) + coef[..., 14, None]
    inside = inside & (invw > 0) & (zn >= -1.0) & (zn <= 1.0)
    return inside, invw


@functools.partial(jax.jit, static_argnames=("height", "width", "tile", "capacity", "max_pairs"))
def _visibility_jax(coeffs, bbox, *, height, width, tile, capacity, max_pairs):
    """Pure-JAX visibility: bin triangles into tiles, then scan each tile's candidate list.

    Returns face_id [B, H, W] int32 and an overflow flag (a tile or the pair list was over
    capacity; the caller then falls back to the exact brute-force pass).
    """
    nb, nf = bbox.shape[:2]
    tx, ty = -(-width // tile), -(-height // tile)
    ntiles = tx * ty
    xs, ys = pixel_ndc(height, width)
    xs = jnp.pad(xs, (0, tx * tile - width), constant_values=2.0)  # padding pixels lie outside NDC
    ys = jnp.pad(ys, (0, ty * tile - height), constant_values=2.0)
    # pixel centres of each tile: [ntiles, tile * tile]
    px = xs.reshape(tx, tile)[None, :, None, :]
    py = ys.reshape(ty, tile)[:, None, :, None]
    px = jnp.broadcast_to(px, (ty, tx, tile, tile)).reshape(ntiles, tile * tile)
    py = jnp.broadcast_to(py, (ty, tx, tile, tile)).reshape(ntiles, tile * tile)
    ix = jnp.arange(tx * tile, dtype=jnp.int32).reshape(tx, tile)[None, :, None, :]
    iy = jnp.arange(ty * tile, dtype=jnp.int32).reshape(ty, tile)[:, None, :, None]
    ix = jnp.broadcast_to(ix, (ty, tx, tile, tile)).reshape(ntiles, tile * tile)
    iy = jnp.broadcast_to(iy, (ty, tx, tile, tile)).reshape(ntiles, tile * tile)

    def one_view(coef, box):
        bx0, by0, bx1, by1 = box[:, 0] // tile, box[:, 1] // tile, box[:, 2] // tile, box[:, 3] // tile
        empty = (box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1])
        nx = jnp.where(empty, 0, bx1 - bx0 + 1)
        ny = jnp.where(empty, 0, by1 - by0 + 1)
        counts = nx * ny
        offsets = jnp.cumsum(counts) - counts
        total = offsets[-1] + counts[-1]
        # expand (face, tile) pairs into a fixed-size list, sorted by tile then face
        p = jnp.arange(max_pairs)
        f = jnp.clip(jnp.searchsorted(offsets, p, side="right") - 1, 0, nf - 1)
        local = p - offsets[f]
        nxf = jnp.maximum(nx[f], 1)
        t = (by0[f] + local // nxf) * tx + (bx0[f] + local % nxf)
        valid = p < total
        tile_of, face_of = jax.lax.sort((jnp.where(valid, t, ntiles), f), num_keys=2)
        starts = jnp.searchsorted(tile_of, jnp.arange(ntiles), side="left")
        ends = jnp.searchsorted(tile_of, jnp.arange(ntiles), side="right")
        n_in_tile = ends - starts
        overflow = (total > max_pairs) | jnp.any(n_in_tile > capacity)

        def body(k, state):
            best_w, best_f = state
            idx = jnp.minimum(starts + k, max_pairs - 1)
            cand = jnp.where(k < n_in_tile, face_of[idx], -1)  # [ntiles]
            cf = coef[jnp.maximum(cand, 0)]  # [ntiles, NUM_COEFFS]
            inside, invw = _covers(cf, box[jnp.maximum(cand, 0)], px, py, ix, iy)
            inside = inside & (cand >= 0)[:, None]
            # faces arrive in increasing index, so '>' keeps the lower index on exact ties
            better = inside & (invw > best_w)
            return jnp.where(better, invw, best_w), jnp.where(better, cand[:, None], best_f)

        init = (jnp.zeros((ntiles, tile * tile), jnp.float32), jnp.full((ntiles, tile * tile), -1, jnp.int32))
        kmax = jnp.minimum(jnp.max(n_in_tile), capacity)
        _, best_f = jax.lax.fori_loop(0, kmax, body, init)
        img = best_f.reshape(ty, tx, tile, tile).transpose(0, 2, 1, 3).reshape(ty * tile, tx * tile)
        return img[:height, :width], overflow

    ids, overflow = jax.vmap(one_view)(coeffs, bbox)
    return ids, jnp.any(overflow)


@functools.partial(jax.jit, static_argnames=("height", "width", "chunk"))
def _visibility_brute_force(coeffs, bbox, *, height, width, chunk=32):
    """Exact visibility with no capacity limit: every face against every pixel, in chunks."""
    nb, nf = bbox.shape[:2]
    xs, ys = pixel_ndc(height, width)
    px = jnp.broadcast_to(xs[None, :], (height, width)).reshape(-1)
    py = jnp.broadcast_to(ys[:, None], (height, width)).reshape(-1)
    ix = jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32)[None, :], (height, width)).reshape(-1)
    iy = jnp.broadcast_to(jnp.arange(height, dtype=jnp.int32)[:, None], (height, width)).reshape(-1)
    pad = (-nf) % chunk
    coeffs = jnp.pad(coeffs, ((0, 0), (0, pad), (0, 0)))
    bbox = jnp.pad(bbox, ((0, 0), (0, pad), (0, 0)), constant_values=-1)  # padding: empty boxes

    def one_view(coef, box):
        def body(i, state):
            best_w, best_f = state
            f = i * chunk + jnp.arange(chunk)
            inside, invw = _covers(coef[f], box[f], px[None], py[None], ix[None], iy[None])  # [chunk, P]
            w = jnp.where(inside, invw, 0.0)
            k = jnp.argmax(w, 0)  # first maximum: the lower face index wins ties
            cw = jnp.max(w, 0)
            better = cw > best_w  # earlier chunks hold lower indices: strict '>' keeps them
            return jnp.where(better, cw, best_w), jnp.where(better, f[k], best_f)

        init = (jnp.zeros(px.shape, jnp.float32), jnp.full(px.shape, -1, jnp.int32))
        _, best_f = jax.lax.fori_loop(0, (nf + pad) // chunk, body, init)
        return best_f.reshape(height, width)

    return jax.vmap(one_view)(coeffs, bbox)


def _warn_overflow(flag) -> None:
    if bool(flag):
        warnings.warn(
            "rasterize: a tile's triangle list exceeded its capacity; fell back to the exact "
            "(slow) pass. Pass a larger tile_capacity, or call rasterize outside jit so it sizes "
            "the lists itself.",
            RuntimeWarning,
            stacklevel=2,
        )


def _exact_capacities(bbox: np.ndarray, tile: int, ntiles_x: int, ntiles_y: int) -> tuple[int, int]:
    """Pair-list size and per-tile capacity that fit concrete bounding boxes (powers of two)."""
    b = bbox.reshape(-1, bbox.shape[-2], 4)
    empty = (b[..., 2] < b[..., 0]) | (b[..., 3] < b[..., 1])
    x0, y0, x1, y1 = (b[..., k] // tile for k in range(4))
    n = np.where(empty, 0, (x1 - x0 + 1) * (y1 - y0 + 1))
    pairs = int(n.sum(-1).max(initial=0))
    per_tile = 0
    for v in range(b.shape[0]):  # count per tile with a 2-D difference array
        grid = np.zeros((ntiles_y + 1, ntiles_x + 1), np.int64)
        keep = ~empty[v]
        np.add.at(grid, (y0[v][keep], x0[v][keep]), 1)
        np.add.at(grid, (y0[v][keep], x1[v][keep] + 1), -1)
        np.add.at(grid, (y1[v][keep] + 1, x0[v][keep]), -1)
        np.add.at(grid, (y1[v][keep] + 1, x1[v][keep] + 1), 1)
        per_tile = max(per_tile, int(grid.cumsum(0).cumsum(1).max(initial=0)))
    pow2 = lambda n: 1 << max(4, math.ceil(math.log2(max(n, 1))))  # noqa: E731
    return pow2(pairs), pow2(per_tile)


def _is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def visibility(
    coeffs: jax.Array,
    bbox: jax.Array,
    *,
    height: int,
    width: int,
    backend: str = "auto",
    tile: int = 16,
    tile_capacity: int | None = None,
) -> jax.Array:
    """Face id per pixel [B, H, W] int32 from ``triangle_setup``'s output (no gradient)."""
    if _use_native(backend, coeffs):
        return _native.visibility(coeffs, bbox, height=height, width=width)
    tx, ty = -(-width // tile), -(-height // tile)
    if tile_capacity is None and not _is_traced(bbox):
        max_pairs, capacity = _exact_capacities(np.asarray(bbox), tile, tx, ty)
    else:
        capacity = tile_capacity or 256
        max_pairs = 1 << math.ceil(math.log2(max(16, 4 * bbox.shape[1] + tx * ty)))
    ids, overflow = _visibility_jax(
        coeffs, bbox, height=height, width=width, tile=tile, capacity=capacity, max_pairs=max_pairs
    )
    if _is_traced(overflow):
        jax.debug.callback(_warn_overflow, overflow)
        return jax.lax.cond(
            overflow,
            lambda: _visibility_brute_force(coeffs, bbox, height=height, width=width),
            lambda: ids,
        )
    if bool(overflow):
        _warn_overflow(True)
        return _visibility_brute_force(coeffs, bbox, height=height, width=width)
    return ids


def _use_native(backend: str, *arrays) -> bool:
    """Whether an op runs its native kernel: forced by backend, or 'auto' and usable here."""
    if backend not in ("auto", "native", "jax"):
        raise ValueError(f"backend must be 'auto', 'native' or 'jax'; got {backend!r}")
    if backend == "jax":
        return False
    usable = _native.usable(*arrays)
    if backend == "native" and not usable:
        reason = _native._load() or "they take float32 arrays on the CPU"
        raise ValueError(f"backend='native' cannot run here: {reason}")
    return usable


def barycentrics(clip: jax.Array, faces: jax.Array, face_id: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Differentiable perspective-correct barycentrics [B, H, W, 3] and depth [B, H, W].

    For pixel NDC (px, py) and a triangle with clip corners (x_i, y_i, w_i), the weights are
    proportional to the cross product of (x_i - px w_i)_i and (y_i - py w_i)_i: the unique
    affine combination of the corners that projects onto the pixel centre.
    """
    nb, height, width = face_id.shape
    xs, ys = pixel_ndc(height, width, clip.dtype)
    covered = face_id >= 0
    fid = jnp.where(covered, face_id, 0)
    corners = faces[fid]  # [B, H, W, 3]
    c = jax.vmap(lambda cl, idx: cl[idx])(clip, corners)  # [B, H, W, 3, 4]
    a = c[..., 0] - xs[None, None, :, None] * c[..., 3]
    b = c[..., 1] - ys[None, :, None, None] * c[..., 3]
    u = jnp.cross(a, b)
    total = jnp.sum(u, -1, keepdims=True)
    # Background pixels divide by a safe 1 (and get zero weights): keeps gradients finite.
    ok = covered[..., None] & (total != 0)
    bary = jnp.where(ok, u / jnp.where(ok, total, 1.0), 0.0)
    depth = jnp.where(covered, jnp.sum(bary * c[..., 3], -1), 0.0)
    return bary, depth


def rasterize(
    clip: jax.Array,
    faces: jax.Array,
    *,
    height: int,
    width: int,
    backend: str = "auto",
    tile_capacity: int | None = None,
) -> Fragments:
    """Rasterize triangles given in clip space (see the module docstring for conventions).

    Args:
        clip: [B..., V, 4] float clip-space positions (``Camera.to_clip``), one set per view.
        faces: [F, 3] int32 vertex indices, shared by all views.
        height, width: image size in pixels.
        backend: "auto" (native CPU kernels when built and the data is float32 on the CPU,
            else pure JAX), "native" or "jax".
        tile_capacity: pure-JAX path only: most triangles per 16 x 16 tile. By default sized
            exactly from the data when called outside ``jit``; under ``jit`` 256, and a tile over
            capacity falls back to an exact slow pass with a warning (never truncates).
    Returns:
        Fragments with leading dimensions B... .
    """
    clip = jnp.asarray(clip)
    faces = jnp.asarray(faces)
    if clip.ndim < 2 or clip.shape[-1] != 4:
        raise ValueError(f"clip must be [..., V, 4] clip-space positions; got {tuple(clip.shape)}")
    if not jnp.issubdtype(clip.dtype, jnp.floating):
        raise ValueError(f"clip must be float; got {clip.dtype}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"faces must be [F, 3] int32; got {tuple(faces.shape)} {faces.dtype}")
    if faces.shape[0] == 0:
        raise ValueError("faces is empty: nothing to rasterize")
    if not isinstance(height, (int, np.integer)) or not isinstance(width, (int, np.integer)):
        raise ValueError(f"height and width must be positive ints; got {height!r}, {width!r}")
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive ints; got {height!r}, {width!r}")
    if not _is_traced(faces):
        f_np = np.asarray(faces)  # numpy: under an outer jit, jnp.max would trace
        fmax, fmin = int(f_np.max()), int(f_np.min())
        if fmin < 0 or fmax >= clip.shape[-2]:
            raise ValueError(f"faces index outside 0..{clip.shape[-2] - 1} (found {fmin}..{fmax})")
    faces = faces.astype(jnp.int32)
    batch = clip.shape[:-2]
    flat = clip.reshape((-1,) + clip.shape[-2:])
    coeffs, bbox = triangle_setup(flat, faces, height, width, backend=backend)
    face_id = visibility(
        coeffs, bbox, height=height, width=width, backend=backend, tile_capacity=tile_capacity
    )
    face_id = jax.lax.stop_gradient(face_id)
    if _use_native(backend, flat):
        bary, depth = _native.barycentrics(flat, faces, face_id)
    else:
        bary, depth = barycentrics(flat, faces, face_id)
    shape = batch + (height, width)
    return Fragments(face_id.reshape(shape), bary.reshape(shape + (3,)), depth.reshape(shape))

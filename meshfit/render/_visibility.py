"""The visibility pass: which triangle each pixel centre sees (face ids, no gradient).

Runs the native kernel (kernels/rasterize.cc) for float32 data on the CPU, else this pure-JAX
twin, which runs on any backend, under ``jit``, ``vmap`` and ``grad``, with no capacity to tune
and nothing ever dropped:

1. **Tiles**: faces are binned into 16 x 16 pixel tiles by their (image-clamped) boxes, as a
   list of (tile, face) pairs of static size ``pair_capacity(F, tiles)`` = max(4 F + tiles, 2^16).
   The faces binned are those touching at most T tiles, T the largest threshold whose pairs fit
   (a histogram of per-face tile counts finds it), so the list cannot overflow. Each tile scans
   its list, as many steps as the busiest tile needs.
2. **Large faces**: faces touching more than T tiles (big on screen, or crossing the camera
   plane, which gives a whole-image box) are tested against every pixel, in chunks, as many
   chunks as there are such faces (none on ordinary meshes: no work).

Both steps evaluate ``_covers`` with the native kernel's float32 arithmetic, and the nearest
fragment wins with ties to the lower face index, so the ids equal the native kernel's. Trip
counts are data-dependent loops, never ``lax.cond``: under ``vmap`` a loop runs as long as its
longest batch member, where a ``cond`` would run both branches for every member.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from meshfit.render import _native
from meshfit.render._backend import use_native
from meshfit.render._pixels import pixel_ndc

__all__ = ["TILE", "pair_capacity", "visibility", "visibility_exhaustive", "visibility_jax"]

TILE = 16  # pixels per side of the pure-JAX path's tiles
_CHUNK = 32  # faces per step of the exhaustive pass


def visibility(
    coeffs: jax.Array, bbox: jax.Array, *, height: int, width: int, backend: str = "auto"
) -> jax.Array:
    """Face id per pixel [B, H, W] int32 (-1 background) from ``triangle_setup``'s coeffs
    [B, F, 15] and boxes [B, F, 4]. Boxes are clamped to the image first on both paths."""
    if use_native(backend, coeffs):
        return _native.visibility(coeffs, bbox, height=height, width=width)
    return visibility_jax(coeffs, bbox, height=height, width=width)


def pair_capacity(num_faces: int, num_tiles: int) -> int:
    """Static size of the (tile, face) pair list: 4 per face (a small face straddling tile
    corners) plus one per tile, at least 2^16, never more than every face in every tile, nor
    2^24 (the threshold search counts pairs in float32, exact up to 2^24)."""
    return min(num_faces * num_tiles, max(4 * num_faces + num_tiles, 1 << 16), 1 << 24)


def _clamp_boxes(bbox: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    """Boxes [..., 4] clamped to the image, and which are empty (cover no pixel)."""
    x0, y0 = jnp.maximum(bbox[..., 0], 0), jnp.maximum(bbox[..., 1], 0)
    x1, y1 = jnp.minimum(bbox[..., 2], width - 1), jnp.minimum(bbox[..., 3], height - 1)
    empty = (x1 < x0) | (y1 < y0)
    return jnp.stack([x0, y0, x1, y1], -1), empty


def _covers(
    coef: jax.Array, box: jax.Array, x: jax.Array, y: jax.Array, ix: jax.Array, iy: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Coverage and 1/w of pixel centres (x, y) [..., P] by triangles coef [..., 15].

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


def _image_pixels(height: int, width: int):
    """NDC and integer coordinates of every pixel centre, flattened row-major: 4 x [H * W]."""
    xs, ys = pixel_ndc(height, width)
    px = jnp.broadcast_to(xs[None, :], (height, width)).reshape(-1)
    py = jnp.broadcast_to(ys[:, None], (height, width)).reshape(-1)
    ix = jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32)[None, :], (height, width)).reshape(-1)
    iy = jnp.broadcast_to(jnp.arange(height, dtype=jnp.int32)[:, None], (height, width)).reshape(-1)
    return px, py, ix, iy


def _exhaustive(coef, box, face_list, count, state, pixels):
    """Tests the first ``count`` faces of ``face_list`` [N] (increasing indices; entries past
    ``count`` unused) against every pixel, continuing from state = (best 1/w, best face) [H * W].
    A fragment wins if nearer, or as near with a lower face index."""
    px, py, ix, iy = pixels
    n = face_list.shape[0]
    pad = (-n) % _CHUNK
    face_list = jnp.pad(face_list, (0, pad))

    def body(i, state):
        best_w, best_f = state
        k = i * _CHUNK + jnp.arange(_CHUNK)
        f = face_list[k]
        inside, invw = _covers(coef[f], box[f], px[None], py[None], ix[None], iy[None])  # [chunk, P]
        inside = inside & (k < count)[:, None]
        w = jnp.where(inside, invw, 0.0)
        j = jnp.argmax(w, 0)  # first maximum: the lower face index within the chunk
        cw, cf = jnp.max(w, 0), f[j]
        better = (cw > best_w) | ((cw == best_w) & (cw > 0) & (cf < best_f))
        return jnp.where(better, cw, best_w), jnp.where(better, cf, best_f)

    return jax.lax.fori_loop(0, (count + _CHUNK - 1) // _CHUNK, body, state)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def visibility_exhaustive(coeffs: jax.Array, bbox: jax.Array, *, height: int, width: int) -> jax.Array:
    """Every face against every pixel: O(F H W), for tests. Same arguments as ``visibility``."""
    nf = coeffs.shape[-2]
    pixels = _image_pixels(height, width)
    box, _ = _clamp_boxes(bbox, height, width)

    def one_view(coef, box):
        state = (jnp.zeros(height * width, jnp.float32), jnp.full(height * width, -1, jnp.int32))
        _, best_f = _exhaustive(coef, box, jnp.arange(nf, dtype=jnp.int32), nf, state, pixels)
        return best_f.reshape(height, width)

    return jax.vmap(one_view)(coeffs, box)


@functools.partial(jax.jit, static_argnames=("height", "width", "max_pairs"))
def visibility_jax(
    coeffs: jax.Array, bbox: jax.Array, *, height: int, width: int, max_pairs: int | None = None
) -> jax.Array:
    """The pure-JAX visibility pass (module docstring): face_id [B, H, W] int32. ``max_pairs``
    (default ``pair_capacity``) sizes the pair list; any value >= 1 gives the same ids."""
    nf = coeffs.shape[-2]
    tile = TILE
    tx, ty = -(-width // tile), -(-height // tile)
    ntiles = tx * ty
    max_pairs = max_pairs or pair_capacity(nf, ntiles)
    box_all, empty_all = _clamp_boxes(bbox, height, width)
    xs, ys = pixel_ndc(height, width)
    xs = jnp.pad(xs, (0, tx * tile - width), constant_values=2.0)  # padding pixels lie outside NDC
    ys = jnp.pad(ys, (0, ty * tile - height), constant_values=2.0)
    # pixel centres of each tile: [ntiles, tile * tile]

    def per_tile(a):  # broadcast over [ty, tx, tile, tile], then [ntiles, tile * tile]
        return jnp.broadcast_to(a, (ty, tx, tile, tile)).reshape(ntiles, tile * tile)

    px = per_tile(xs.reshape(tx, tile)[None, :, None, :])
    py = per_tile(ys.reshape(ty, tile)[:, None, :, None])
    ix = per_tile(jnp.arange(tx * tile, dtype=jnp.int32).reshape(tx, tile)[None, :, None, :])
    iy = per_tile(jnp.arange(ty * tile, dtype=jnp.int32).reshape(ty, tile)[:, None, :, None])
    pixels = _image_pixels(height, width)

    def to_image(a):  # [ntiles, tile * tile] -> [H * W]
        return (
            a.reshape(ty, tx, tile, tile)
            .transpose(0, 2, 1, 3)
            .reshape(ty * tile, tx * tile)[:height, :width]
            .reshape(-1)
        )

    def one_view(coef, box, empty):
        bx0, by0, bx1, by1 = (box[:, k] // tile for k in range(4))
        counts = jnp.where(empty, 0, (bx1 - bx0 + 1) * (by1 - by0 + 1))  # tiles per face, <= ntiles
        # pairs of all faces touching <= t tiles, for each t; bin up to the largest t that fits
        # (float32: exact below 2^24 > max_pairs, and never wraps as int32 would for huge meshes)
        pairs_upto = jnp.cumsum(jnp.zeros(ntiles + 1, jnp.float32).at[counts].add(counts.astype(jnp.float32)))
        threshold = jnp.sum(pairs_upto <= max_pairs) - 1
        binned = counts <= threshold
        counts = jnp.where(binned, counts, 0)
        offsets = jnp.cumsum(counts) - counts
        total = offsets[-1] + counts[-1]  # <= max_pairs by the choice of threshold
        # expand (face, tile) pairs into the fixed-size list, sorted by tile then face
        p = jnp.arange(max_pairs)
        f = jnp.clip(jnp.searchsorted(offsets, p, side="right") - 1, 0, nf - 1)
        local = p - offsets[f]
        nxf = jnp.maximum(bx1[f] - bx0[f] + 1, 1)
        t = (by0[f] + local // nxf) * tx + (bx0[f] + local % nxf)
        tile_of, face_of = jax.lax.sort((jnp.where(p < total, t, ntiles), f), num_keys=2)
        starts = jnp.searchsorted(tile_of, jnp.arange(ntiles), side="left")
        n_in_tile = jnp.searchsorted(tile_of, jnp.arange(ntiles), side="right") - starts

        def body(k, state):
            best_w, best_f = state
            cand = jnp.where(k < n_in_tile, face_of[jnp.minimum(starts + k, max_pairs - 1)], -1)  # [ntiles]
            safe = jnp.maximum(cand, 0)
            inside, invw = _covers(coef[safe], box[safe], px, py, ix, iy)
            inside = inside & (cand >= 0)[:, None]
            # faces arrive in increasing index, so '>' keeps the lower index on exact ties
            better = inside & (invw > best_w)
            return jnp.where(better, invw, best_w), jnp.where(better, cand[:, None], best_f)

        init = (jnp.zeros((ntiles, tile * tile), jnp.float32), jnp.full((ntiles, tile * tile), -1, jnp.int32))
        best_w, best_f = jax.lax.fori_loop(0, jnp.max(n_in_tile), body, init)
        state = (to_image(best_w), to_image(best_f))
        if max_pairs < nf * ntiles:  # static: else every face always fits the list
            large = ~binned & ~empty
            (large_faces,) = jnp.nonzero(large, size=nf, fill_value=0)
            state = _exhaustive(coef, box, large_faces.astype(jnp.int32), jnp.sum(large), state, pixels)
        return state[1].reshape(height, width)

    return jax.vmap(one_view)(coeffs, box_all, empty_all)

"""Texture lookup: bilinear, and trilinear over a mip pyramid (box-filtered)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["mip_pyramid", "texture"]


def mip_pyramid(tex: jax.Array) -> list[jax.Array]:
    """Mip levels of ``tex`` [Ht, Wt, C]: level 0 is the texture, each next halves both sides
    (2 x 2 box filter; odd sizes repeat their last row/column) down to 1 x 1."""
    levels = [tex]
    while max(levels[-1].shape[:2]) > 1:
        t = levels[-1]
        h, w = t.shape[:2]
        if h % 2 and h > 1:
            t = jnp.concatenate([t, t[-1:]], 0)
        if w % 2 and w > 1:
            t = jnp.concatenate([t, t[:, -1:]], 1)
        h2, w2 = max(1, t.shape[0] // 2), max(1, t.shape[1] // 2)
        levels.append(t.reshape(h2, t.shape[0] // h2, w2, t.shape[1] // w2, -1).mean((1, 3)))
    return levels


def _bilinear(tex: jax.Array, uv: jax.Array, wrap: str) -> jax.Array:
    h, w = tex.shape[:2]
    return _taps(tex.reshape(h * w, -1), 0, h, w, uv, wrap)


def _taps(flat: jax.Array, base, h, w, uv: jax.Array, wrap: str) -> jax.Array:
    """Bilinear samples [..., C] of the texture whose rows lie in ``flat`` [P, C] from index
    ``base``, ``h`` x ``w`` texels (ints, or int arrays of uv's pixel shape: a level per pixel)."""
    # UV (0, 0) is the bottom-left corner of the texture; texel (i, j) centre at ((i+.5)/w, 1-(j+.5)/h).
    x = uv[..., 0] * jnp.asarray(w, uv.dtype) - 0.5
    y = (1.0 - uv[..., 1]) * jnp.asarray(h, uv.dtype) - 0.5
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)

    def idx(i, n):
        return jnp.mod(i, n) if wrap == "repeat" else jnp.clip(i, 0, n - 1)

    xa, xb = idx(x0, w), idx(x0 + 1, w)
    ya, yb = base + idx(y0, h) * w, base + idx(y0 + 1, h) * w
    top = flat[ya + xa] * (1 - fx) + flat[ya + xb] * fx
    bottom = flat[yb + xa] * (1 - fx) + flat[yb + xb] * fx
    return top * (1 - fy) + bottom * fy


def _screen_derivatives(uv: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """d(uv)/dx and d(uv)/dy [..., H, W, 2] by finite differences between neighbouring pixels,
    one-sided where a neighbour is off the surface or the image."""

    def diff(axis: int) -> jax.Array:  # axis of uv: -2 (x, columns) or -3 (y, rows)
        m_axis = axis + 1  # the same image axis in the [..., H, W] mask
        n = uv.shape[axis]
        fwd = jnp.roll(uv, -1, axis) - uv
        bwd = uv - jnp.roll(uv, 1, axis)
        rank = uv.ndim - 1
        pos = jnp.arange(n).reshape(tuple(n if d == rank + m_axis else 1 for d in range(rank)))
        ok_f, ok_b = pos < n - 1, pos > 0
        if mask is not None:
            ok_f = ok_f & jnp.roll(mask, -1, m_axis)
            ok_b = ok_b & jnp.roll(mask, 1, m_axis)
        return jnp.where(ok_f[..., None], fwd, jnp.where(ok_b[..., None], bwd, 0.0))

    return diff(-2), diff(-3)


def texture(
    tex: jax.Array,
    uv: jax.Array,
    *,
    filter: str = "bilinear",
    wrap: str = "repeat",
    mask: jax.Array | None = None,
    max_level: int | None = None,
) -> jax.Array:
    """Sample a texture at UV coordinates.

    Args:
        tex: [Ht, Wt, C] float texture, row 0 at the top.
        uv: [..., 2] UVs, (0, 0) = bottom-left of the texture. For "trilinear", an image
            [..., H, W, 2] (e.g. ``interpolate(mesh.uvs, fragments, mesh.uv_faces)``): the mip
            level comes from its screen-space derivatives.
        filter: "nearest", "bilinear" or "trilinear" (bilinear on the two nearest mip levels of
            a box-filtered pyramid, blended).
        wrap: "repeat" or "clamp".
        mask: optional [..., H, W] bool coverage, so derivatives are not taken across silhouettes.
        max_level: coarsest mip level to use (default: down to 1 x 1).
    Returns:
        [..., C] samples; differentiable in ``tex`` and ``uv`` (bilinear weights).
    """
    if tex.ndim != 3:
        raise ValueError(f"tex must be [Ht, Wt, C]; got {tuple(tex.shape)}")
    if uv.shape[-1] != 2:
        raise ValueError(f"uv must be [..., 2]; got {tuple(uv.shape)}")
    if wrap not in ("repeat", "clamp"):
        raise ValueError(f"wrap must be 'repeat' or 'clamp'; got {wrap!r}")
    if filter == "nearest":
        h, w = tex.shape[:2]
        x = jnp.floor(uv[..., 0] * w).astype(jnp.int32)
        y = jnp.floor((1.0 - uv[..., 1]) * h).astype(jnp.int32)
        if wrap == "repeat":
            return tex[jnp.mod(y, h), jnp.mod(x, w)]
        return tex[jnp.clip(y, 0, h - 1), jnp.clip(x, 0, w - 1)]
    if filter == "bilinear":
        return _bilinear(tex, uv, wrap)
    if filter != "trilinear":
        raise ValueError(f"filter must be 'nearest', 'bilinear' or 'trilinear'; got {filter!r}")
    if uv.ndim < 3:
        raise ValueError(f"trilinear filtering needs a UV image [..., H, W, 2]; got {tuple(uv.shape)}")
    levels = mip_pyramid(tex)
    if max_level is not None:
        levels = levels[: max_level + 1]
    dx, dy = _screen_derivatives(jax.lax.stop_gradient(uv), mask)
    size = jnp.asarray(tex.shape[1::-1], uv.dtype).reshape((1,) * (dx.ndim - 1) + (2,))  # (Wt, Ht)
    footprint = jnp.maximum(jnp.linalg.norm(dx * size, axis=-1), jnp.linalg.norm(dy * size, axis=-1))
    lod = jnp.clip(jnp.log2(jnp.maximum(footprint, 1e-12)), 0.0, len(levels) - 1.0)
    return _two_levels(levels, uv, lod, wrap)


def _two_levels(levels: list[jax.Array], uv: jax.Array, lod: jax.Array, wrap: str) -> jax.Array:
    """Bilinear samples [..., C] of the two mip levels about ``lod`` [...], blended: the levels
    laid end to end in one array, so each pixel gathers its 8 taps (and the gradient scatters
    them) instead of sampling every level at every pixel."""
    C = levels[0].shape[-1]
    flat = jnp.concatenate([level.reshape(-1, C) for level in levels])
    heights = jnp.asarray([level.shape[0] for level in levels], jnp.int32)
    widths = jnp.asarray([level.shape[1] for level in levels], jnp.int32)
    starts = [0]
    for level in levels[:-1]:
        starts.append(starts[-1] + level.shape[0] * level.shape[1])
    starts = jnp.asarray(starts, jnp.int32)
    l0 = jnp.clip(jnp.floor(lod).astype(jnp.int32), 0, len(levels) - 1)
    l1 = jnp.minimum(l0 + 1, len(levels) - 1)
    t = (lod - l0.astype(lod.dtype))[..., None]

    def sample(li: jax.Array) -> jax.Array:
        return _taps(flat, starts[li], heights[li], widths[li], uv, wrap)

    return sample(l0) * (1 - t) + sample(l1) * t

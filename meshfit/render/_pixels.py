"""Pixel-centre coordinates: the one convention every render op and kernel samples at."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["pixel_ndc"]


def pixel_ndc(height: int, width: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """NDC x [W] and y [H] of the pixel centres, x_i = (2i + 1) / W - 1 (row 0 at y = -1): the
    exact float32 values the native kernels use (kernels/common.h:PixelNdc)."""
    x = (2.0 * jnp.arange(width, dtype=dtype) + 1.0) / jnp.asarray(width, dtype) - 1.0
    y = (2.0 * jnp.arange(height, dtype=dtype) + 1.0) / jnp.asarray(height, dtype) - 1.0
    return x, y

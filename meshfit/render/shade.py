"""Shading helpers: normal images, Lambert and spherical-harmonics lighting."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meshfit.mesh import _safe_normalize, vertex_normals
from meshfit.render.interpolate import interpolate
from meshfit.render.rasterize import Fragments

__all__ = ["lambert", "normal_image", "sh_irradiance"]

# Ramamoorthi & Hanrahan (2001) irradiance constants for 2nd-order real spherical harmonics.
_C1, _C2, _C3, _C4, _C5 = 0.429043, 0.511664, 0.743125, 0.886227, 0.247708


def normal_image(vertices: jax.Array, faces: jax.Array, fragments: Fragments) -> jax.Array:
    """World-space unit shading normals [B..., H, W, 3] (interpolated angle-weighted vertex
    normals, renormalised); zero on background. vertices: [V, 3], [B..., V, 3], or with size-1
    leading dimensions that broadcast to the fragments' (one mesh seen by several views: its
    normals are computed once)."""
    if vertices.ndim == 2:
        n = vertex_normals(vertices, faces)
    else:
        flat = vertices.reshape((-1,) + vertices.shape[-2:])
        n = jax.vmap(lambda v: vertex_normals(v, faces))(flat).reshape(vertices.shape)
        n = jnp.broadcast_to(n, fragments.mask.shape[:-2] + n.shape[-2:])
    return _safe_normalize(interpolate(n, fragments, faces))


def lambert(
    normals: jax.Array, albedo: jax.Array, light_direction: jax.Array, *, ambient: float = 0.0
) -> jax.Array:
    """Lambertian shading: albedo * (ambient + max(0, n . -light_direction)).

    Args:
        normals: [..., 3] unit normals (zero on background gives ``ambient * albedo``; mask it).
        albedo: [..., C] or broadcastable.
        light_direction: [3] direction the light travels (world space), any length.
    """
    ld = jnp.asarray(light_direction, normals.dtype)
    ld = (ld / jnp.linalg.norm(ld)).reshape((1,) * (normals.ndim - 1) + (3,))
    shade = ambient + jnp.maximum(jnp.sum(normals * -ld, -1, keepdims=True), 0.0)
    albedo = jnp.asarray(albedo, normals.dtype)
    albedo = albedo.reshape((1,) * (shade.ndim - albedo.ndim) + albedo.shape)
    return albedo * shade


def sh_irradiance(normals: jax.Array, coeffs: jax.Array) -> jax.Array:
    """Irradiance from 2nd-order spherical-harmonics lighting (9 coefficients per channel).

    Args:
        normals: [..., 3] unit normals (world space).
        coeffs: [9, C] SH coefficients L00, L1-1, L10, L11, L2-2, L2-1, L20, L21, L22
            (Ramamoorthi & Hanrahan's order), e.g. fitted per channel.
    Returns:
        [..., C] irradiance; multiply by albedo for diffuse shading.
    """
    if coeffs.ndim != 2 or coeffs.shape[0] != 9:
        raise ValueError(f"coeffs must be [9, C]; got {tuple(coeffs.shape)}")
    # The 9 basis functions per pixel, then one matmul: XLA's CPU backend runs the gradient in the
    # coefficients as a GEMM instead of 9 x C reductions over the image (1.5x faster per step).
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    basis = jnp.stack(
        [_C4 * jnp.ones_like(x), 2 * _C2 * y, 2 * _C2 * z, 2 * _C2 * x, 2 * _C1 * x * y, 2 * _C1 * y * z,
         _C3 * z * z - _C5, 2 * _C1 * x * z, _C1 * (x * x - y * y)],
        -1,
    )  # fmt: skip
    return basis @ coeffs.astype(basis.dtype)

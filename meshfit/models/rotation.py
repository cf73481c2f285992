"""Rotations as axis-angle vectors (so(3)) with NaN-safe exponential and logarithm maps."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["so3_exp", "so3_log"]


def _hat(w: jax.Array) -> jax.Array:
    z = jnp.zeros_like(w[..., 0])
    return jnp.stack(
        [
            jnp.stack([z, -w[..., 2], w[..., 1]], -1),
            jnp.stack([w[..., 2], z, -w[..., 0]], -1),
            jnp.stack([-w[..., 1], w[..., 0], z], -1),
        ],
        -2,
    )


def so3_exp(w: jax.Array) -> jax.Array:
    """Rotation matrices [..., 3, 3] from axis-angle vectors [..., 3] (angle = |w|, radians).

    Rodrigues' formula, with Taylor expansions near |w| = 0 so values and gradients stay finite
    (the plain formula divides by |w|; as in jaxlie, the safe branch uses a where on both sides).
    """
    theta_sq = jnp.sum(w * w, -1)
    small = theta_sq < 1e-8
    safe_sq = jnp.where(small, 1.0, theta_sq)
    theta = jnp.sqrt(safe_sq)
    a = jnp.where(small, 1.0 - theta_sq / 6.0, jnp.sin(theta) / theta)
    b = jnp.where(small, 0.5 - theta_sq / 24.0, (1.0 - jnp.cos(theta)) / safe_sq)
    K = _hat(w)
    eye = jnp.broadcast_to(jnp.eye(3, dtype=w.dtype), K.shape)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def so3_log(R: jax.Array) -> jax.Array:
    """Axis-angle vectors [..., 3] of rotation matrices [..., 3, 3] (angle in [0, pi])."""
    cos = jnp.clip((jnp.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    theta = jnp.arccos(cos)
    v = jnp.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = jnp.sin(theta)
    small = theta < 1e-4
    near_pi = theta > jnp.pi - 1e-3
    generic = (
        v * jnp.where(small | near_pi, 1.0, theta / (2.0 * jnp.where(small | near_pi, 1.0, sin)))[..., None]
    )
    # Near pi the antisymmetric part vanishes: the symmetric part (R + R^T) / 2 - cos I equals
    # (1 - cos) a a^T, so its largest column gives the axis (the sign comes from v).
    eye = jnp.broadcast_to(jnp.eye(3, dtype=R.dtype), R.shape)
    sym = 0.5 * (R + jnp.swapaxes(R, -1, -2)) - cos[..., None, None] * eye
    k = jnp.argmax(jnp.diagonal(sym, axis1=-2, axis2=-1), -1)
    col = jnp.take_along_axis(sym, k[..., None, None], -1)[..., 0]
    axis = col / jnp.linalg.norm(col, axis=-1, keepdims=True)
    axis = jnp.where((jnp.sum(axis * v, -1, keepdims=True) < 0), -axis, axis)
    return jnp.where(
        small[..., None], 0.5 * v, jnp.where(near_pi[..., None], theta[..., None] * axis, generic)
    )

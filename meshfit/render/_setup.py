"""Triangle setup: per-triangle edge functions, 1/w and depth planes, and pixel boxes (no gradient).

The setup is what the visibility pass (``_visibility``) consumes; the native kernel
(kernels/rasterize.cc, MeshfitTriangleSetup) computes the same float32 values in the same
operation order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meshfit.render import _native
from meshfit.render._backend import use_native

__all__ = ["NUM_COEFFS", "triangle_setup"]

# Per-triangle setup, one row of NUM_COEFFS float32 per (view, face):
#   [A0, B0, C0, A1, B1, C1, A2, B2, C2,  SA, SB, SC,  ZA, ZB, ZC]
# Edge i (opposite vertex i): u_i = A_i x + B_i y + C_i >= 0 inside (sign-normalised, so the
# triangle may face either way); 1/w = SA x + SB y + SC; NDC z = ZA x + ZB y + ZC; (x, y) NDC.
NUM_COEFFS = 15


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
    if use_native(backend, clip):
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

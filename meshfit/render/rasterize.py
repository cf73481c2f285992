"""Rasterization: per-pixel visible triangle, perspective-correct barycentrics and depth.

Two passes, as in nvdiffrast:

1. **Visibility** (no gradient, ``_setup`` then ``_visibility``): which triangle each pixel
   centre sees. Runs in the native CPU kernel (``kernels/rasterize.cc`` through XLA's FFI) when
   it is loaded and the arrays are float32 on the CPU, else in a pure-JAX tiled implementation
   that runs on any backend. Both evaluate the same per-triangle setup with the same float32
   arithmetic and give identical ids.
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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.render import _native
from meshfit.render._backend import use_native
from meshfit.render._checks import check_faces
from meshfit.render._pixels import pixel_ndc
from meshfit.render._setup import triangle_setup
from meshfit.render._visibility import visibility

__all__ = ["Fragments", "barycentrics", "rasterize"]


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
) -> Fragments:
    """Rasterize triangles given in clip space (see the module docstring for conventions).

    Args:
        clip: [B..., V, 4] float clip-space positions (``Camera.to_clip``), one set per view.
        faces: [F, 3] int32 vertex indices, shared by all views.
        height, width: image size in pixels.
        backend: "auto" (native CPU kernels when built and the data is float32 on the CPU,
            else pure JAX), "native" or "jax". The pure-JAX path has no capacity to tune: it
            sizes itself from F and the image size and never drops a triangle.
    Returns:
        Fragments with leading dimensions B... .
    """
    clip = jnp.asarray(clip)
    faces = jnp.asarray(faces)
    if clip.ndim < 2 or clip.shape[-1] != 4:
        raise ValueError(f"clip must be [..., V, 4] clip-space positions; got {tuple(clip.shape)}")
    if not jnp.issubdtype(clip.dtype, jnp.floating):
        raise ValueError(f"clip must be float; got {clip.dtype}")
    check_faces(faces, clip.shape[-2])
    if faces.shape[0] == 0:
        raise ValueError("faces is empty: nothing to rasterize")
    if not isinstance(height, (int, np.integer)) or not isinstance(width, (int, np.integer)):
        raise ValueError(f"height and width must be positive ints; got {height!r}, {width!r}")
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive ints; got {height!r}, {width!r}")
    faces = faces.astype(jnp.int32)
    batch = clip.shape[:-2]
    flat = clip.reshape((-1,) + clip.shape[-2:])
    coeffs, bbox = triangle_setup(flat, faces, height, width, backend=backend)
    face_id = jax.lax.stop_gradient(visibility(coeffs, bbox, height=height, width=width, backend=backend))
    if use_native(backend, flat):
        bary, depth = _native.barycentrics(flat, faces, face_id)
    else:
        bary, depth = barycentrics(flat, faces, face_id)
    shape = batch + (height, width)
    return Fragments(face_id.reshape(shape), bary.reshape(shape + (3,)), depth.reshape(shape))

"""Attribute interpolation: per-vertex or per-corner attributes -> images."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meshfit.render import _native
from meshfit.render._backend import use_native
from meshfit.render._checks import check_faces
from meshfit.render.rasterize import Fragments

__all__ = ["interpolate"]


def interpolate(
    attr: jax.Array, fragments: Fragments, faces: jax.Array, *, backend: str = "auto"
) -> jax.Array:
    """Interpolate attributes over the visible surface with the perspective-correct barycentrics.

    Args:
        attr: [A, C] attributes shared by all views, or [B..., A, C] one set per view (same
            leading dimensions as the fragments). A is V for per-vertex attributes.
        fragments: from ``rasterize``, leading dimensions B..., images H x W.
        faces: [F, 3] int32 indices into ``attr`` for each face's corners: the mesh faces for
            per-vertex attributes, or e.g. ``mesh.uv_faces`` for per-corner ones (UVs at seams).
        backend: "auto" (the native CPU kernel for float32 [A, C] attributes on the CPU: XLA's
            CPU scatter-add in the backward pass is ~10x slower), "native" or "jax".
    Returns:
        [B..., H, W, C] images, zero on background. Differentiable in ``attr`` and, through the
        barycentrics, in the clip positions given to ``rasterize``.
    """
    attr, faces = jnp.asarray(attr), jnp.asarray(faces)
    if attr.ndim < 2:
        raise ValueError(f"attr must be [A, C] or [B..., A, C]; got {tuple(attr.shape)}")
    check_faces(faces, attr.shape[-2])
    batch = fragments.face_id.shape[:-2]
    if attr.ndim == 2 and attr.dtype == jnp.float32 and use_native(backend, attr, fragments.bary):
        fid = fragments.face_id.reshape((-1,) + fragments.face_id.shape[-2:])
        bary = fragments.bary.reshape(fid.shape + (3,))
        out = _native.interpolate(attr, faces.astype(jnp.int32), fid, bary)
        return out.reshape(batch + out.shape[-3:])
    covered = fragments.face_id >= 0
    idx = faces[jnp.where(covered, fragments.face_id, 0)]  # [B..., H, W, 3]
    if attr.ndim == 2:
        vals = attr[idx]  # [B..., H, W, 3, C]
    else:
        if attr.shape[:-2] != batch:
            raise ValueError(f"attr batch {attr.shape[:-2]} does not match the fragments' {batch}")
        flat_attr = attr.reshape((-1,) + attr.shape[-2:])
        flat_idx = idx.reshape((flat_attr.shape[0],) + idx.shape[len(batch) :])
        vals = jax.vmap(lambda a, i: a[i])(flat_attr, flat_idx).reshape(idx.shape + attr.shape[-1:])
    dtype = jnp.result_type(fragments.bary.dtype, vals.dtype, jnp.float32)  # int attributes -> float
    out = jnp.einsum("...k,...kc->...c", fragments.bary.astype(dtype), vals.astype(dtype))
    return jnp.where(covered[..., None], out, 0.0)

"""The native CPU kernels (kernels/*.cc), called through XLA's FFI.

Each op has a pure-JAX twin in the same package; these run the same arithmetic in C++ with
hand-written backward passes (custom VJPs), because per-pixel gathers and scatters are where
XLA's CPU backend is slowest. Used automatically for float32 data on the CPU when the
extension is built (``pip install`` builds it); everything works without it. Under ``vmap``
(e.g. over frames) each call runs once per batch element ("sequential"), each call itself
multi-threaded. Their gradients are reverse-mode only (custom VJPs; no jvp, no second
derivatives): use ``backend="jax"`` for those.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np

_TARGETS = {
    "meshfit_triangle_setup": "MeshfitTriangleSetup",
    "meshfit_rasterize_visibility": "MeshfitRasterizeVisibility",
    "meshfit_bary_fwd": "MeshfitBaryFwd",
    "meshfit_bary_bwd": "MeshfitBaryBwd",
    "meshfit_antialias_fwd": "MeshfitAntialiasFwd",
    "meshfit_antialias_bwd": "MeshfitAntialiasBwd",
    "meshfit_interp_fwd": "MeshfitInterpFwd",
    "meshfit_interp_bwd": "MeshfitInterpBwd",
}


@functools.cache
def _load() -> str | None:
    """Register the FFI targets once; returns None on success or the reason they are unavailable."""
    spec = importlib.util.find_spec("meshfit.render._rasterize_native")
    if spec is None or spec.origin is None:
        return "the native kernels were not built (reinstall meshfit with a C++ compiler)"
    try:
        lib = ctypes.CDLL(spec.origin)
        for target, symbol in _TARGETS.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    except (OSError, AttributeError) as e:
        return f"cannot load {spec.origin}: {e}"
    return None


def available() -> bool:
    """True when the native kernels are built and registered."""
    return _load() is None


def usable(*arrays) -> bool:
    """Native kernels apply: built, float32 data, running on the CPU."""
    if not available():
        return False
    for x in arrays:
        if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != jnp.float32:
            return False
        if isinstance(x, jax.core.Tracer):
            if jax.default_backend() != "cpu":
                return False
        elif not all(d.platform == "cpu" for d in x.devices()):
            return False
    return True


def _require() -> None:
    reason = _load()
    if reason is not None:
        raise RuntimeError(f"backend='native' unavailable: {reason}")


def _varying_axes(x) -> frozenset:
    """The manual mesh axes an array varies over inside shard_map (empty outside)."""
    t = jax.typeof(x)
    mat = getattr(t, "manual_axis_type", None)
    return frozenset(mat.varying) if mat is not None else frozenset(getattr(t, "vma", ()))


def _varying_like(outputs, *inputs):
    """Mark outputs as varying over the manual mesh axes the inputs vary over (inside
    ``shard_map``): ffi_call does not do it, and custom VJPs check it."""
    vma = frozenset().union(*(_varying_axes(x) for x in inputs))
    if not vma:
        return outputs

    def mark(y):
        missing = tuple(sorted(vma - _varying_axes(y)))
        return jax.lax.pcast(y, missing, to="varying") if missing else y

    return jax.tree.map(mark, outputs)


def _call(target: str, out, *args, vmap_method: str = "sequential", **attrs):
    """One FFI call of a registered kernel, outputs typed like the inputs under shard_map."""
    _require()
    result = jax.ffi.ffi_call(target, out, vmap_method=vmap_method)(*args, **attrs)
    return _varying_like(tuple(result) if isinstance(result, (list, tuple)) else result, *args)


def triangle_setup(
    clip: jax.Array, faces: jax.Array, *, height: int, width: int
) -> tuple[jax.Array, jax.Array]:
    """Native twin of rasterize.triangle_setup: clip [B, V, 4] f32, faces [F, 3] -> coeffs, bbox."""
    shape = clip.shape[:-2] + (faces.shape[0],)
    outs = (jax.ShapeDtypeStruct(shape + (15,), jnp.float32), jax.ShapeDtypeStruct(shape + (4,), jnp.int32))
    return _call(
        "meshfit_triangle_setup",
        outs,
        clip,
        faces.astype(jnp.int32),
        height=np.int32(height),
        width=np.int32(width),
    )


def visibility(coeffs: jax.Array, bbox: jax.Array, *, height: int, width: int) -> jax.Array:
    """Face id per pixel [B, H, W] int32 from triangle setup [B, F, 15] / [B, F, 4] (CPU only)."""
    out = jax.ShapeDtypeStruct(coeffs.shape[:-2] + (height, width), jnp.int32)
    return _call(
        "meshfit_rasterize_visibility", out, coeffs.astype(jnp.float32), bbox.astype(jnp.int32),
        vmap_method="broadcast_all", height=np.int32(height), width=np.int32(width),
    )  # fmt: skip


# ---- barycentrics -------------------------------------------------------------------------------


@jax.custom_vjp
def barycentrics(clip: jax.Array, faces: jax.Array, face_id: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Native twin of rasterize.barycentrics: clip [B, V, 4] f32, faces [F, 3], face_id [B, H, W]."""
    shape = face_id.shape
    outs = (jax.ShapeDtypeStruct(shape + (3,), jnp.float32), jax.ShapeDtypeStruct(shape, jnp.float32))
    return _call("meshfit_bary_fwd", outs, clip, faces, face_id)


def _bary_fwd(clip, faces, face_id):
    return barycentrics(clip, faces, face_id), (clip, faces, face_id)


def _bary_bwd(res, g):
    clip, faces, face_id = res
    g_bary, g_depth = g
    out = jax.ShapeDtypeStruct(clip.shape, jnp.float32)
    return _call("meshfit_bary_bwd", out, clip, faces, face_id, g_bary, g_depth), None, None


barycentrics.defvjp(_bary_fwd, _bary_bwd)


# ---- antialias ------------------------------------------------------------------------------------


@jax.custom_vjp
def antialias(color, face_id, depth, clip, faces):
    """Native twin of antialias.antialias on flat [B, H, W, C] / [B, V, 4] float32 arrays."""
    out = jax.ShapeDtypeStruct(color.shape, jnp.float32)
    return _call("meshfit_antialias_fwd", out, color, face_id, depth, clip, faces)


def _aa_fwd(color, face_id, depth, clip, faces):
    return antialias(color, face_id, depth, clip, faces), (color, face_id, depth, clip, faces)


def _aa_bwd(res, g):
    color, face_id, depth, clip, faces = res
    outs = (jax.ShapeDtypeStruct(color.shape, jnp.float32), jax.ShapeDtypeStruct(clip.shape, jnp.float32))
    g_color, g_clip = _call("meshfit_antialias_bwd", outs, color, face_id, depth, clip, faces, g)
    return g_color, None, None, g_clip, None


antialias.defvjp(_aa_fwd, _aa_bwd)


# ---- attribute interpolation ----------------------------------------------------------------------


@jax.custom_vjp
def interpolate(attr: jax.Array, faces: jax.Array, face_id: jax.Array, bary: jax.Array) -> jax.Array:
    """Native twin of interpolate.interpolate for shared attributes: attr [A, C] f32, faces
    [F, 3], face_id [B, H, W], bary [B, H, W, 3] -> [B, H, W, C]."""
    out = jax.ShapeDtypeStruct(face_id.shape + attr.shape[-1:], jnp.float32)
    return _call("meshfit_interp_fwd", out, attr, faces, face_id, bary)


def _interp_fwd(attr, faces, face_id, bary):
    return interpolate(attr, faces, face_id, bary), (attr, faces, face_id, bary)


def _interp_bwd(res, g):
    attr, faces, face_id, bary = res
    outs = (jax.ShapeDtypeStruct(attr.shape, jnp.float32), jax.ShapeDtypeStruct(bary.shape, jnp.float32))
    g_attr, g_bary = _call("meshfit_interp_bwd", outs, attr, faces, face_id, bary, g)
    return g_attr, None, None, g_bary


interpolate.defvjp(_interp_fwd, _interp_bwd)

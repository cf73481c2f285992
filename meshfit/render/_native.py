"""Loads the native CPU visibility kernel (kernels/rasterize.cc) and calls it through XLA's FFI."""

from __future__ import annotations

import ctypes
import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np

_TARGET = "meshfit_rasterize_visibility"


@functools.cache
def _load() -> str | None:
    """Register the FFI target once; returns None on success or the reason it is unavailable."""
    spec = importlib.util.find_spec("meshfit.render._rasterize_native")
    if spec is None or spec.origin is None:
        return "the native kernel was not built (reinstall meshfit with a C++ compiler)"
    try:
        lib = ctypes.CDLL(spec.origin)
        jax.ffi.register_ffi_target(
            _TARGET, jax.ffi.pycapsule(lib.MeshfitRasterizeVisibility), platform="cpu"
        )
    except (OSError, AttributeError) as e:
        return f"cannot load {spec.origin}: {e}"
    return None


def available() -> bool:
    """True when the native kernel is built and registered."""
    return _load() is None


def visibility(coeffs: jax.Array, bbox: jax.Array, *, height: int, width: int) -> jax.Array:
    """Face id per pixel [B, H, W] int32 from triangle setup [B, F, 15] / [B, F, 4] (CPU only)."""
    reason = _load()
    if reason is not None:
        raise RuntimeError(f"backend='native' unavailable: {reason}")
    out = jax.ShapeDtypeStruct(coeffs.shape[:-2] + (height, width), jnp.int32)
    call = jax.ffi.ffi_call(_TARGET, out, vmap_method="broadcast_all")
    return call(
        coeffs.astype(jnp.float32), bbox.astype(jnp.int32), height=np.int32(height), width=np.int32(width)
    )

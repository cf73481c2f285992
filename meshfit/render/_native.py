"""The native CPU kernels (kernels/*.cc), called through XLA's FFI.

Each op has a pure-JAX twin in the same package; these run the same arithmetic in C++ with
hand-written backward passes (custom VJPs), because per-pixel gathers and scatters are where
XLA's CPU backend is slowest. Used automatically for float32 data on the CPU when the
extension is built (``pip install`` builds it); everything works without it. Under ``vmap``
(e.g. over frames) each call runs once per batch element ("sequential"), each call itself
multi-threaded. Their gradients are reverse-mode only (custom VJPs; no jvp, no second
derivatives): use ``backend="jax"`` for those.

The library is meshfit.render._rasterize_native, or the file named by ``MESHFIT_NATIVE_LIB``
(e.g. a sanitizer build, kernels/sanitize.sh). It records the XLA FFI API version and jaxlib
version it was compiled against; it is refused, with the reason, when its FFI major version
differs from the headers of the jaxlib running it (XLA FFI handlers are versioned by that API).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path

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
    "meshfit_shade_fwd": "MeshfitShadeFwd",
    "meshfit_shade_bwd": "MeshfitShadeBwd",
    "meshfit_colour_fwd": "MeshfitColourFwd",
    "meshfit_colour_bwd": "MeshfitColourBwd",
}


LIBRARY_ENV = "MESHFIT_NATIVE_LIB"


def _library_path() -> str | None:
    """The kernels' shared library: MESHFIT_NATIVE_LIB if set, else the built extension."""
    if os.environ.get(LIBRARY_ENV):
        return os.environ[LIBRARY_ENV]
    spec = importlib.util.find_spec("meshfit.render._rasterize_native")
    return None if spec is None or spec.origin is None else spec.origin


@functools.cache
def runtime_ffi_api() -> str | None:
    """XLA_FFI_API_MAJOR.MINOR of the running jaxlib's FFI headers, or None if unreadable."""
    try:
        header = Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h"
        text = header.read_text()
    except (OSError, AttributeError):
        return None
    major = re.search(r"#define XLA_FFI_API_MAJOR (\d+)", text)
    minor = re.search(r"#define XLA_FFI_API_MINOR (\d+)", text)
    return f"{major[1]}.{minor[1]}" if major and minor else None


def incompatibility(built: str | None, runtime: str | None) -> str | None:
    """Why a library built against FFI API ``built`` ("MAJOR.MINOR") cannot run under ``runtime``,
    or None when it can: the major versions must agree (minor versions are ABI-compatible)."""
    if built is None:
        return "the library does not say which XLA FFI API it was built against (rebuild it)"
    if runtime is None:
        return None  # cannot tell: XLA checks the handlers' API version when they are registered
    if built.split(".")[0] != runtime.split(".")[0]:
        return (
            f"built against XLA FFI API {built}, but the running jaxlib has FFI API {runtime}: "
            "reinstall meshfit so its kernels are compiled against this jaxlib"
        )
    return None


def _library_info(lib) -> dict:
    """What MeshfitBuildInfo() records: {"ffi_api": "0.3", "jaxlib": "0.10.2"} (values or None)."""
    try:
        fn = lib.MeshfitBuildInfo
    except AttributeError:
        return {"ffi_api": None, "jaxlib": None}
    fn.restype = ctypes.c_char_p
    fields = dict(kv.split("=", 1) for kv in fn().decode().split(";") if "=" in kv)
    return {"ffi_api": fields.get("ffi"), "jaxlib": fields.get("jaxlib")}


@functools.cache
def _open() -> tuple[object | None, str | None]:
    """(the loaded library, None) or (None, why it is unavailable)."""
    path = _library_path()
    if path is None:
        return None, "the native kernels were not built (reinstall meshfit with a C++ compiler)"
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return None, f"cannot load {path}: {e}"
    reason = incompatibility(_library_info(lib)["ffi_api"], runtime_ffi_api())
    if reason is not None:
        return None, f"{path}: {reason}"
    return lib, None


@functools.cache
def _load() -> str | None:
    """Register the FFI targets once; returns None on success or the reason they are unavailable."""
    lib, reason = _open()
    if reason is not None:
        return reason
    try:
        for target, symbol in _TARGETS.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    except (AttributeError, ValueError, RuntimeError) as e:
        return f"cannot register the kernels of {_library_path()}: {e}"
    return None


def build_info() -> dict:
    """What the native kernels are and what they were built against, for ``meshfit info``:
    library (path or None), loaded (bool), reason (why not loaded, or None), ffi_api and jaxlib
    (the FFI API version and jaxlib version the library was compiled against, or None), and
    runtime_ffi_api and runtime_jaxlib (those of the jaxlib running now)."""
    lib, _ = _open()
    reason = _load()
    built = _library_info(lib) if lib is not None else {"ffi_api": None, "jaxlib": None}
    if lib is None and _library_path() is not None:  # refused: still say what it was built against
        try:
            built = _library_info(ctypes.CDLL(_library_path()))
        except OSError:
            pass
    return {
        "library": _library_path(),
        "loaded": reason is None,
        "reason": reason,
        **built,
        "runtime_ffi_api": runtime_ffi_api(),
        "runtime_jaxlib": importlib.metadata.version("jaxlib"),
    }


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
def antialias(color, face_id, depth, clip, faces, neighbours):
    """Native twin of antialias.antialias on flat [B, H, W, C] / [B, V, 4] float32 arrays;
    neighbours [F, 3] from antialias.face_neighbours."""
    out = jax.ShapeDtypeStruct(color.shape, jnp.float32)
    return _call("meshfit_antialias_fwd", out, color, face_id, depth, clip, faces, neighbours)


def _aa_fwd(color, face_id, depth, clip, faces, neighbours):
    res = (color, face_id, depth, clip, faces, neighbours)
    return antialias(color, face_id, depth, clip, faces, neighbours), res


def _aa_bwd(res, g):
    color, face_id, depth, clip, faces, neighbours = res
    outs = (jax.ShapeDtypeStruct(color.shape, jnp.float32), jax.ShapeDtypeStruct(clip.shape, jnp.float32))
    g_color, g_clip = _call("meshfit_antialias_bwd", outs, color, face_id, depth, clip, faces, neighbours, g)
    return g_color, None, None, g_clip, None, None


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


# ---- the photometric term's shading -----------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def sh_charbonnier(albedo, normal, coeffs, target, weight, eps: float) -> jax.Array:
    """Native fused shading + error: sum over pixels of ``weight`` [P...] times the Charbonnier
    error (scale ``eps``) per channel between the target [P..., 3] and the gamma-2.2 colour of
    ``albedo`` [P..., 3] under SH ``coeffs`` [9, 3] at the renormalised ``normal`` [P..., 3]
    (pixels with a zero normal or weight are skipped). Differentiable in albedo, normal, coeffs."""
    return _call("meshfit_shade_fwd", jax.ShapeDtypeStruct((), jnp.float32), albedo, normal, coeffs, target,
                 weight, eps=np.float32(eps))  # fmt: skip


def _shade_fwd(albedo, normal, coeffs, target, weight, eps):
    return sh_charbonnier(albedo, normal, coeffs, target, weight, eps), (
        albedo,
        normal,
        coeffs,
        target,
        weight,
    )


def _shade_bwd(eps, res, g):
    albedo, normal, coeffs, target, weight = res
    outs = tuple(jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in (albedo, normal, coeffs))
    ga, gn, gc = _call("meshfit_shade_bwd", outs, albedo, normal, coeffs, target, weight,
                       jnp.asarray(g, jnp.float32), eps=np.float32(eps))  # fmt: skip
    return ga, gn, gc, None, None


sh_charbonnier.defvjp(_shade_fwd, _shade_bwd)


@jax.custom_vjp
def sh_colour(albedo, normal, coeffs) -> jax.Array:
    """Native twin of ``lighting.lit_colour`` under SH light at renormalised normals: albedo,
    normal [P..., 3] f32, coeffs [9, 3] -> display colour [P..., 3]."""
    return _call(
        "meshfit_colour_fwd", jax.ShapeDtypeStruct(albedo.shape, jnp.float32), albedo, normal, coeffs
    )


def _colour_fwd(albedo, normal, coeffs):
    return sh_colour(albedo, normal, coeffs), (albedo, normal, coeffs)


def _colour_bwd(res, g):
    albedo, normal, coeffs = res
    outs = tuple(jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in (albedo, normal, coeffs))
    return _call("meshfit_colour_bwd", outs, albedo, normal, coeffs, g)


sh_colour.defvjp(_colour_fwd, _colour_bwd)

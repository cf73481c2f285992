"""What meshfit is running on (``meshfit info``): versions, JAX's backend and devices, whether the
native CPU kernels loaded (and why not), and whether pyrender can open an OpenGL context."""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["describe", "environment"]


def _opengl() -> dict:
    """pyrender's platform and whether an offscreen context opens (a 1 x 1 renderer)."""
    platform_name = os.environ.get("PYOPENGL_PLATFORM") or "egl (meshfit's default)"
    try:
        from meshfit.synth import _pyrender

        renderer = _pyrender().OffscreenRenderer(1, 1)
        renderer.delete()
        return {"platform": platform_name, "works": True}
    except Exception as e:  # any failure here is the answer, not an error of meshfit's
        return {"platform": platform_name, "works": False, "error": f"{type(e).__name__}: {e}"}


def environment() -> dict:
    """The facts ``describe`` prints, as a dict."""
    import jax

    import meshfit
    from meshfit.render import _native

    reason = _native._load()
    info = {
        "meshfit": meshfit.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "native_kernels": "loaded" if reason is None else f"not loaded: {reason}",
        "opengl": _opengl(),
        "c_runtime": _c_runtime(),
    }
    build = getattr(_native, "build_info", None)
    if reason is None and build is not None:
        info["native_build"] = build()
    return info


def _c_runtime() -> str:
    """Whether the C runtime's shared library (built by pip install) loads."""
    try:
        from meshfit.export.runtime import runtime_library

        return f"loaded ({runtime_library()._name})"
    except (RuntimeError, OSError) as e:
        return f"not loaded: {e}"


def describe() -> str:
    """A few lines for a person (and for bug reports)."""
    e = environment()
    if e["jax_backend"] != "cpu":
        path = f"pure JAX on the {e['jax_backend']} (the native kernels are CPU-only)"
    elif e["native_kernels"] == "loaded":
        path = "native CPU kernels for float32 data (pure JAX for float64)"
    else:
        path = "pure JAX (slower on the CPU)"
    gl = e["opengl"]
    gl_text = f"{gl['platform']}, " + ("works" if gl["works"] else f"does not work: {gl['error']}")
    lines = [
        f"meshfit {e['meshfit']} on Python {e['python']} ({e['platform']})",
        f"jax {e['jax']}: backend {e['jax_backend']}, devices {', '.join(e['jax_devices'])}",
        f"native kernels: {e['native_kernels']}",
        f"rendering runs on: {path}",
        f"OpenGL for pyrender (meshfit synth, tests): {gl_text}",
        f"C runtime for exported models (meshfit.export.Runtime): {e['c_runtime']}",
    ]
    if "native_build" in e:
        b = e["native_build"]
        lines.append(
            f"native build: {b.get('library')} (built against jaxlib {b.get('jaxlib')}, "
            f"FFI {b.get('ffi_api')}; running jaxlib {b.get('runtime_jaxlib')}, "
            f"FFI {b.get('runtime_ffi_api')})"
        )
    return "\n".join(lines)

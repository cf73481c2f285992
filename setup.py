"""Builds meshfit's native CPU kernels (XLA FFI handlers) on `pip install`, if it can.

Everything else about the package lives in pyproject.toml. The kernels include XLA's FFI
headers, which ship inside jaxlib (``jax.ffi.include_dir()``), so jaxlib is a build requirement.
They are loaded with ctypes and registered with ``jax.ffi.register_ffi_target`` at run time
(meshfit/render/_native.py). The extension is optional: where it cannot be built (no C++
compiler, no jaxlib headers) the install still succeeds, with a warning, and meshfit runs its
pure-JAX path (``meshfit info`` says which is in use).

The library records the FFI API version (XLA_FFI_API_MAJOR.MINOR) and the jaxlib version it was
compiled against (``MeshfitBuildInfo()``); _native refuses to load it when the FFI major version
differs from the one of the jaxlib that runs it.
"""

import importlib.metadata
import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCES = ["kernels/rasterize.cc", "kernels/interpolate.cc", "kernels/antialias.cc", "kernels/shade.cc"]


def _jaxlib() -> tuple[str, str]:
    """(FFI include directory, version) of the jaxlib this build sees."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("building meshfit's kernels needs jaxlib (for the XLA FFI headers)")
    return os.path.join(spec.submodule_search_locations[0], "include"), importlib.metadata.version("jaxlib")


class OptionalBuildExt(build_ext):
    """build_ext that points the kernels at jaxlib's headers and warns instead of failing."""

    def build_extension(self, ext):
        try:
            include, version = _jaxlib()
            # -isystem: XLA's headers are third-party code; our own sources build -Wall -Wextra clean.
            ext.extra_compile_args = [*ext.extra_compile_args, "-isystem", include]
            ext.define_macros = [*ext.define_macros, ("MESHFIT_JAXLIB_VERSION", f'"{version}"')]
            super().build_extension(ext)
        except Exception as e:  # no compiler, a failed compile or link, no jaxlib
            if os.environ.get("MESHFIT_REQUIRE_NATIVE", "") not in ("", "0"):
                raise
            bar = "=" * 78
            why = f"{type(e).__name__}: {e}"
            print(
                f"\n{bar}\nWARNING: meshfit's native CPU kernels could not be built ({why}).\n"
                "meshfit is installed without them and runs its pure-JAX path (slower on the CPU).\n"
                "Install a C++17 compiler and reinstall to get them; `meshfit info` shows which path runs.\n"
                f"Set MESHFIT_REQUIRE_NATIVE=1 to make this an error.\n{bar}\n",
                file=sys.stderr,
            )


setup(
    cmdclass={"build_ext": OptionalBuildExt},
    ext_modules=[
        Extension(
            "meshfit.render._rasterize_native",
            sources=SOURCES,
            depends=["kernels/common.h", "kernels/exports.map"],
            language="c++",
            # -ffp-contract=off: no FMA contraction, so the kernel's float32 arithmetic matches
            # the pure-JAX path bit for bit. Only the FFI entry points are exported.
            extra_compile_args=[
                "-std=c++17",
                "-O3",
                "-ffp-contract=off",
                "-Wall",
                "-Wextra",
                "-fvisibility=hidden",
                "-fvisibility-inlines-hidden",
            ],
            extra_link_args=["-pthread", "-Wl,--version-script=kernels/exports.map"],
        ),
        # The dependency-free C runtime for exported models, built as a plain shared library that
        # meshfit.export.runtime loads with ctypes (for the tests: C against JAX).
        Extension(
            "meshfit.export._runtime",
            sources=["kernels/runtime/meshfit_runtime.c"],
            depends=["kernels/runtime/meshfit_runtime.h", "kernels/runtime/exports.map"],
            language="c",
            extra_compile_args=["-std=c99", "-O3", "-Wall", "-Wextra", "-Wpedantic"],
            extra_link_args=["-lm", "-Wl,--version-script=kernels/runtime/exports.map"],
        ),
    ],
)

"""Builds meshfit's native CPU kernels (XLA FFI handlers) on `pip install`.

Everything else about the package lives in pyproject.toml. The kernels include XLA's FFI
headers, which ship inside jaxlib (``jax.ffi.include_dir()``), so jaxlib is a build requirement.
They are loaded with ctypes and registered with ``jax.ffi.register_ffi_target`` at run time
(meshfit/render/_native.py); if the build is missing, meshfit falls back to pure JAX.
"""

import importlib.util
import os

from setuptools import Extension, setup


def _xla_ffi_include() -> str:
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("building meshfit's kernels needs jaxlib (for the XLA FFI headers)")
    return os.path.join(spec.submodule_search_locations[0], "include")


setup(
    ext_modules=[
        Extension(
            "meshfit.render._rasterize_native",
            sources=["kernels/rasterize.cc", "kernels/interpolate.cc", "kernels/antialias.cc"],
            depends=["kernels/common.h"],
            include_dirs=[_xla_ffi_include()],
            language="c++",
            # -ffp-contract=off: no FMA contraction, so the kernel's float32 arithmetic matches
            # the pure-JAX path bit for bit.
            extra_compile_args=[
                "-std=c++17",
                "-O3",
                "-ffp-contract=off",
                "-Wno-attributes",
                "-Wno-return-type",
            ],
            extra_link_args=["-pthread"],
        )
    ]
)

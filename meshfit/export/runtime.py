"""The C runtime (kernels/runtime) from Python, through ctypes: what the tests and benchmarks use
to check that a model file runs in C as it does in JAX.

The library is built by ``pip install`` next to this module (``_runtime*.so``); the environment
variable MESHFIT_RUNTIME_LIB points at another build (a sanitizer build, say).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

from meshfit.export.native import ModelFileError, read_native

__all__ = ["Runtime", "frame_images", "runtime_library"]


def frame_images(views, channels) -> np.ndarray:
    """[N, C, H, W] float32: one frame of a dataset (``meshfit.load_views``) as the runtime reads
    it, the named channels in order (mask; grey: the mean of the RGB channels; depth)."""
    planes = {}
    for name in channels:
        if name == "mask":
            planes[name] = views.mask
        elif name == "grey":
            if views.rgb is None:
                raise ValueError("the model reads grey images: the dataset has no rgb/ folder")
            planes[name] = np.mean(np.asarray(views.rgb, np.float32), -1)
        elif name == "depth":
            if views.depth is None:
                raise ValueError("the model reads depth: the dataset has no depth/ folder")
            planes[name] = views.depth
        else:
            raise ValueError(f"unknown channel {name!r}")
        if planes[name] is None or np.ndim(planes[name]) != 3:
            raise ValueError(f"{name}: expected one frame of [N, H, W] images")
    return np.ascontiguousarray(np.stack([planes[c] for c in channels], 1), np.float32)


@functools.cache
def runtime_library(path: str | None = None) -> ctypes.CDLL:
    """The runtime's shared library: ``path``, else $MESHFIT_RUNTIME_LIB, else the one pip built
    (raises RuntimeError when it was not built)."""
    path = path or os.environ.get("MESHFIT_RUNTIME_LIB")
    if not path:
        found = sorted(Path(__file__).parent.glob("_runtime*.so"))
        if not found:
            raise RuntimeError(
                "meshfit's C runtime library was not built (no C compiler at install time?): "
                "reinstall with a C compiler, or set MESHFIT_RUNTIME_LIB"
            )
        path = str(found[0])
    lib = ctypes.CDLL(path)
    p, size = ctypes.c_void_p, ctypes.c_size_t
    lib.mfr_model_size.restype = size
    lib.mfr_load.argtypes = [p, p, size]
    lib.mfr_arena_size.argtypes = [p]
    lib.mfr_arena_size.restype = size
    lib.mfr_param_count.argtypes = [p]
    lib.mfr_run.argtypes = [p, p, size, p, p, p, p]
    lib.mfr_error_string.restype = ctypes.c_char_p
    lib.mfr_simd.restype = ctypes.c_char_p
    return lib


class Runtime:
    """A model file loaded into the C runtime.

    ``Runtime(path_or_bytes, library=None)`` (``library``: another build of the runtime, e.g. with
    -mavx2 -mfma; ``simd`` says which path it has); ``run(images, present=None, vertices=True)`` ->
    (params [K + 13] float32, vertices [V, 3] or None). images: [N, C, H, W] float32 at the
    cameras' size, channels in the model's order (``info["inputs"]``: mask in [0, 1], grey in
    [0, 1], depth as camera z in world units, 0 where empty).
    """

    def __init__(self, source: str | os.PathLike | bytes, *, library: str | os.PathLike | None = None):
        where = "the model bytes" if isinstance(source, (bytes, bytearray)) else str(source)
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        lib = runtime_library(None if library is None else str(library))
        self.simd = lib.mfr_simd().decode()
        # The runtime reads the model in place: an 8-byte aligned copy that lives with this object.
        self._buffer = np.zeros(-(-len(data) // 8), np.uint64)
        self._buffer.view(np.uint8)[: len(data)] = np.frombuffer(data, np.uint8)
        self._model = ctypes.create_string_buffer(lib.mfr_model_size())
        err = lib.mfr_load(self._model, self._buffer.ctypes.data, len(data))
        if err:
            raise ModelFileError(f"{where}: {lib.mfr_error_string(err).decode()} (runtime error {err})")
        self._lib = lib
        stored = read_native(data)
        self.info, meta = stored.info, stored.tensors["meta"]
        self.views, self.height, self.width, self.channels = (
            int(meta[1]),
            int(meta[2]),
            int(meta[3]),
            int(meta[6]),
        )
        self.vertices = int(meta[14])
        self.arena = np.zeros(-(-lib.mfr_arena_size(self._model) // 4), np.float32)
        self.param_count = lib.mfr_param_count(self._model)

    def run(self, images, present=None, *, vertices: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """One frame through the C runtime (see the class docstring)."""
        shape = (self.views, self.channels, self.height, self.width)
        images = np.ascontiguousarray(images, np.float32)
        if images.shape != shape:
            raise ValueError(f"images must be [N, C, H, W] = {list(shape)}; got {list(images.shape)}")
        pres = None
        if present is not None:
            pres = np.ascontiguousarray(present, np.uint8)
            if pres.shape != (self.views,):
                raise ValueError(f"present must be [{self.views}]; got {list(pres.shape)}")
        params = np.zeros(self.param_count, np.float32)
        verts = np.zeros((self.vertices, 3), np.float32) if vertices else None
        err = self._lib.mfr_run(
            self._model, self.arena.ctypes.data, self.arena.nbytes, images.ctypes.data,
            None if pres is None else pres.ctypes.data, params.ctypes.data,
            None if verts is None else verts.ctypes.data,
        )  # fmt: skip
        if err:
            raise ValueError(f"the runtime failed: {self._lib.mfr_error_string(err).decode()}")
        return params, verts

    def frame(self, views) -> np.ndarray:
        """A dataset's frame (``meshfit.load_views``) as this model's input [N, C, H, W]."""
        return frame_images(views, self.info["inputs"])

"""Exported runtime models: the native model file (its format is specified in
kernels/runtime/meshfit_runtime.h) and the C runtime that runs it, from Python for checks.

``write_native(RUN, FILE, quant=...)`` writes one; ``read_native(FILE)`` reads and checks one;
``Runtime(FILE).run(images)`` runs one in C; ``write_onnx(RUN, FILE)`` writes the network as
ONNX; ``write_gltf(FIT_OUT, FILE)`` a fit as glTF.
"""

from meshfit.export.gltf import write_gltf
from meshfit.export.native import FORMAT_VERSION, ModelFileError, NativeModel, read_native, write_native
from meshfit.export.onnx_model import onnx_model, write_onnx
from meshfit.export.runtime import Runtime

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "NativeModel",
    "Runtime",
    "onnx_model",
    "read_native",
    "write_gltf",
    "write_native",
    "write_onnx",
]

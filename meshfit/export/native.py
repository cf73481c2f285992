"""The native runtime model file: a trained regressor and its decoder in one versioned binary.

The format is specified in one place, ``kernels/runtime/meshfit_runtime.h`` (magic, version,
endianness, header, tensor table, alignment, CRC-32); this module writes it (``write_native``) and
reads it back with the same checks the C loader makes (``read_native``), so that a damaged file is
a named error in Python as it is an error code in C.

Weights are stored in fp32, fp16 or int8 (symmetric, per output channel, with float32 scales);
the blendshape basis in fp32, fp16 or int16 (per shape, with scales). The network has no
normalisation layers (``meshfit.amortize.network``), so there is nothing to fold.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from meshfit.io.atomic import atomic_path, check_output_file

__all__ = ["FORMAT_VERSION", "MAGIC", "ModelFileError", "NativeModel", "read_native", "write_native"]

MAGIC = b"MESHFIT\x1a"
FORMAT_VERSION = 1
HEADER_SIZE = 64
ENTRY_SIZE = 96
NAME_LEN = 56
ALIGN = 64
MAX_TENSORS = 64
ENDIAN_TAG = 0x01020304
# dtype codes, as in the header's table.
DTYPES = {0: np.float32, 1: np.float16, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.uint8}
_CODES = {np.dtype(v): k for k, v in DTYPES.items()}
# meta[] layout (MFR_META_* in the header).
META_COUNT = 16
CHANNEL_CODES = {"mask": 1, "grey": 2, "depth": 3}
QUANTS = ("fp32", "fp16", "int8")


class ModelFileError(ValueError):
    """A runtime model file that cannot be read: the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class NativeModel:
    """A model file's contents: tensors by name (numpy, as stored), its meta JSON, its version."""

    tensors: dict[str, np.ndarray]
    info: dict
    version: int

    def dequantized(self, name: str) -> np.ndarray:
        """A weight or the basis as float32 (int8 weights times their scales per output channel,
        the last axis; the int16 basis times its scales per shape, the first)."""
        t = self.tensors[name]
        if t.dtype == np.int16:
            return t.astype(np.float32) * self.tensors[f"{name}_scale"].reshape((-1,) + (1,) * (t.ndim - 1))
        if t.dtype == np.int8:
            return t.astype(np.float32) * self.tensors[name.rsplit(".", 1)[0] + ".scale"]
        return t.astype(np.float32)


def _quantize(w: np.ndarray, bits: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric quantization with one scale per index of ``axis``: (integers, float32 scales)."""
    q = 2 ** (bits - 1) - 1
    others = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    scale = (np.abs(w).max(others) / q).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0))
    shaped = np.expand_dims(scale, others)
    ints = np.clip(np.rint(w / shaped), -q, q).astype(np.int8 if bits == 8 else np.int16)
    return ints, scale


def _weight(tensors: dict, name: str, w: np.ndarray, quant: str) -> None:
    """A layer's weight [..., out] in the file's storage for ``quant`` (int8: per output channel)."""
    w = np.ascontiguousarray(w, np.float32)
    if quant == "fp32":
        tensors[f"{name}.weight"] = w
    elif quant == "fp16":
        tensors[f"{name}.weight"] = w.astype(np.float16)
    else:
        tensors[f"{name}.weight"], tensors[f"{name}.scale"] = _quantize(w, 8, -1)


def runtime_tensors(reg, quant: str = "fp32", basis: str | None = None) -> tuple[dict, dict]:
    """The tensors and meta JSON of a trained ``meshfit.amortize.Regressor``."""
    from meshfit import __version__

    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {list(QUANTS)}; got {quant!r}")
    basis = basis or {"fp32": "fp32", "fp16": "fp16", "int8": "int16"}[quant]
    if basis not in ("fp32", "fp16", "int16"):
        raise ValueError(f"basis must be fp32, fp16 or int16; got {basis!r}")
    reg.check_exportable("the native runtime")
    task, cfg, p = reg.task, reg.config, reg.params
    net = cfg.network
    small = task.rig  # the rig at the network's resolution
    H, W = reg.rig.height, reg.rig.width
    h, w = small.height, small.width
    if H % h or W % w:
        raise ValueError(
            f"the runtime area-averages the {W}x{H} camera images by whole blocks to the network's {w}x{h}: "
            "the sizes must divide"
        )
    convs = [p["convs"][i] for i in sorted(p["convs"])]
    strides = sum(1 << i for i in range(len(convs)) if i % net.convs_per_stage == 0)
    K = task.num_coeffs
    meta = np.zeros(META_COUNT, np.int32)
    meta[:7] = [0 if task.kind == "blendshapes" else 1, small.batch_shape[0], H, W, h, w, len(cfg.inputs)]
    for i, c in enumerate(cfg.inputs):
        meta[7 + i] = CHANNEL_CODES[c]
    meta[10:16] = [len(convs), strides, net.features, K, task.base.shape[0], task.faces.shape[0]]
    t: dict[str, np.ndarray] = {"meta": meta}
    f32 = lambda a: np.ascontiguousarray(np.asarray(a, np.float32))  # noqa: E731
    t["rig.intrinsics"] = f32(np.stack([small.fx, small.fy, small.cx, small.cy], -1))
    t["rig.rotation"] = f32(small.R)
    t["rig.translation"] = f32(small.t)
    t["task.geometry"] = f32(np.concatenate([task.target, task.centre, [task.radius]]))
    if K:
        t["decode.ranges"] = f32(task.coeff_ranges(cfg.sampling))
        t["decode.bounds"] = f32(task.coeff_bounds(cfg.bounds))
    t["decode.scale"] = f32(cfg.sampling.scale)
    for i, layer in enumerate(convs):
        _weight(t, f"conv{i}", np.asarray(layer["kernel"]), quant)  # [3, 3, I, O], as Flax holds it
        t[f"conv{i}.bias"] = f32(layer["bias"])
    for name in ("embed", "view_head", "confidence", "pool_hidden", "pool_head"):
        _weight(t, name, np.asarray(p[name]["kernel"]), quant)  # [in, out]
        if "bias" in p[name]:
            t[f"{name}.bias"] = f32(p[name]["bias"])
    t["model.base"] = f32(task.base)
    if K:
        b = np.asarray(task.basis, np.float32)
        if basis == "int16":
            t["model.basis"], t["model.basis_scale"] = _quantize(b, 16, 0)
        else:
            t["model.basis"] = b.astype(np.float16 if basis == "fp16" else np.float32)
    t["model.faces"] = np.ascontiguousarray(np.asarray(task.faces, np.int32))
    info = {
        "meshfit": __version__, "format_version": FORMAT_VERSION, "representation": cfg.model,
        "quant": quant, "basis": basis if K else None, "inputs": list(cfg.inputs), "views": reg.names,
        "coefficients": list(task.identity_names) + list(task.expression_names),
        "identity": len(task.identity_names), "image_size": [W, H], "network_size": [w, h],
        "training_step": reg.step, "run": str(reg.path),
        "params": "coefficients [K], R [3, 3] row-major, position [3] (world), scale [1]",
    }  # fmt: skip
    return t, info


def encode(tensors: dict[str, np.ndarray], info: dict) -> bytes:
    """The file's bytes: header, table, 64-byte aligned tensor data, CRC-32 over all but the header."""
    tensors = {**tensors, "meta.json": np.frombuffer(json.dumps(info).encode(), np.uint8)}
    if len(tensors) > MAX_TENSORS:
        raise ValueError(f"{len(tensors)} tensors; the format holds at most {MAX_TENSORS}")
    table, blobs = [], []
    offset = HEADER_SIZE + ENTRY_SIZE * len(tensors)
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype not in _CODES or a.ndim > 4 or len(name.encode()) >= NAME_LEN:
            raise ValueError(f"tensor {name!r}: {a.dtype} {a.shape} cannot be stored")
        offset = -(-offset // ALIGN) * ALIGN
        shape = list(a.shape) + [1] * (4 - a.ndim)
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        table.append(
            struct.pack("<56sII4IQQ", name.encode(), _CODES[a.dtype], a.ndim, *shape, offset, len(raw))
        )
        blobs.append((offset, raw))
        offset += len(raw)
    size = -(-offset // ALIGN) * ALIGN
    body = bytearray(size - HEADER_SIZE)
    body[: ENTRY_SIZE * len(table)] = b"".join(table)
    for at, raw in blobs:
        body[at - HEADER_SIZE : at - HEADER_SIZE + len(raw)] = raw
    header = struct.pack("<8sIIIIIIQ24x", MAGIC, FORMAT_VERSION, ENDIAN_TAG, HEADER_SIZE, ALIGN, len(tensors),
                         zlib.crc32(body), size)  # fmt: skip
    return header + bytes(body)


def _has_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == MAGIC


def write_native(run, out: str | os.PathLike, *, quant: str = "fp32", basis: str | None = None,
                 checkpoint: str = "best", overwrite: bool = False) -> dict:  # fmt: skip
    """Write a trained regressor as a runtime model file (``meshfit export RUN --format native``).

    Args:
        run: a training run folder (``meshfit train --out``) or a loaded
            ``meshfit.amortize.Regressor``. checkpoint: a folder's "best" (default) or "last".
        out: the file to write (written whole, then renamed into place).
        quant: the network's weights: "fp32", "fp16" or "int8" (symmetric, per output channel).
        basis: the blendshape basis: "fp32", "fp16" or "int16" (default: fp16 for fp16, int16
            for int8, else fp32).
        overwrite: replace an existing file (only a meshfit runtime model).
    Returns:
        a summary: bytes in all, of the network's weights and of the model (base, basis, faces).
    """
    from meshfit.amortize import Regressor

    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {list(QUANTS)}; got {quant!r}")
    reg = run if isinstance(run, Regressor) else Regressor.load(run, checkpoint=checkpoint)
    out = check_output_file(out, overwrite=overwrite, ours=_has_magic, kind="a meshfit runtime model")
    tensors, info = runtime_tensors(reg, quant, basis)
    data = encode(tensors, info)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    weights = sum(a.nbytes for k, a in tensors.items() if k.split(".")[0].startswith(
        ("conv", "embed", "view_head", "confidence", "pool_")))  # fmt: skip
    model = sum(a.nbytes for k, a in tensors.items() if k.startswith("model."))
    return {"path": str(out), "bytes": len(data), "network_bytes": weights, "model_bytes": model,
            "quant": quant, "basis": info["basis"], "tensors": len(tensors) + 1}  # fmt: skip


def read_native(source: str | os.PathLike | bytes) -> NativeModel:
    """Read and check a runtime model file (a path or its bytes): raises ModelFileError naming
    what is wrong (truncated, not a model, another version or byte order, damaged, bad table)."""
    where = "the model bytes" if isinstance(source, (bytes, bytearray)) else str(source)
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()

    def fail(msg: str):
        raise ModelFileError(f"{where}: {msg}")

    if len(data) < HEADER_SIZE:
        fail(f"truncated: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, tag, header, align, count, crc, size = struct.unpack_from("<8sIIIIIIQ", data)
    if magic != MAGIC:
        fail(f"not a meshfit runtime model (magic {magic!r}, expected {MAGIC!r})")
    if tag != ENDIAN_TAG:
        fail("written for another byte order" if tag == 0x04030201 else f"bad endianness tag {tag:#x}")
    if version != FORMAT_VERSION:
        fail(f"format version {version}; this meshfit reads version {FORMAT_VERSION}")
    if header != HEADER_SIZE or not 0 < count <= MAX_TENSORS or align == 0 or align & (align - 1):
        fail(f"malformed header (header size {header}, alignment {align}, {count} tensors)")
    if size > len(data):
        fail(f"truncated: {len(data)} bytes of the {size} the header records")
    if zlib.crc32(data[header:size]) != crc:
        fail("the checksum does not match: the file is damaged")
    tensors = {}
    start = header + count * ENTRY_SIZE
    for i in range(count):
        name, code, ndim, *rest = struct.unpack_from("<56sII4IQQ", data, header + i * ENTRY_SIZE)
        shape, offset, nbytes = rest[:4], rest[4], rest[5]
        if b"\0" not in name:
            fail(f"tensor entry {i}: its name has no terminating NUL")
        label = name.split(b"\0")[0].decode("ascii", "replace")
        if code not in DTYPES or ndim > 4 or any(s != 1 for s in shape[ndim:]):
            fail(f"tensor {label!r}: bad dtype code {code} or shape {shape[:ndim]}")
        dt = np.dtype(DTYPES[code]).newbyteorder("<")
        if (
            nbytes != int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            or offset % align
            or not (start <= offset and offset + nbytes <= size)
        ):
            fail(f"tensor {label!r}: offset {offset} and size {nbytes} do not fit the {size}-byte file")
        if label in tensors:
            fail(f"tensor {label!r} appears twice")
        tensors[label] = np.frombuffer(data, dt, count=nbytes // dt.itemsize, offset=offset).reshape(
            shape[:ndim]
        )
    try:
        info = json.loads(tensors.pop("meta.json").tobytes().decode())
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"no readable meta.json ({type(e).__name__})")
    if "meta" not in tensors or tensors["meta"].shape != (META_COUNT,):
        fail("no meta tensor of 16 int32")
    return NativeModel(tensors, info, version)

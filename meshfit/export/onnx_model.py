"""A trained regressor as an ONNX model, for engines that take ONNX (onnxruntime, Unreal's NNE,
Unity Sentis).

Written by a small exporter of our own (``onnx.helper``) rather than a converter such as
jax2onnx: the network is a fixed stack of convolutions and dense layers, and building the graph
from its weights lets us emit **opset 13** (jax2onnx needs opset >= 18 for this network's mean;
Unity Sentis reads opsets 7-15), with only Conv, Relu, Gemm, MatMul, AveragePool, Reshape,
Transpose, Concat, ReduceSum and elementwise ops, which every ONNX runtime implements.

The graph takes what the C runtime takes and computes the same raw outputs:

- inputs ``images`` [N, C, H, W] float32 (the views at the cameras' size, the model's channels:
  mask and grey in [0, 1], depth as camera z in world units, 0 where empty) and ``present`` [N]
  float32 (1 for views given, 0 for missing ones);
- outputs ``per_view`` [N, 10] (rotation 6-D in the camera's axes, the centre's ray offset (2), log
  depth ratio, confidence logit) and ``pooled`` [1, K + 1] (coefficients' raw outputs, log scale's).

Decoding them into a pose and coefficients needs the rig's geometry (a weighted rotation average
and a 3x3 least-squares solve, ``meshfit.amortize.network.decode``); the native runtime does it in
C, an engine does it in its own code from the model file's ``rig.*`` and ``decode.*`` tensors.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from meshfit.io.atomic import atomic_path, check_output_file

__all__ = ["OPSET", "onnx_model", "write_onnx"]

OPSET = 13


def onnx_model(reg):
    """The ``onnx.ModelProto`` of a trained ``meshfit.amortize.Regressor`` (checked)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from meshfit import __version__
    from meshfit.amortize.inputs import ray_channels, view_depths

    reg.check_exportable("ONNX")
    task, cfg, p = reg.task, reg.config, reg.params
    small = task.rig
    N, H, W = small.batch_shape[0], reg.rig.height, reg.rig.width
    h, w = small.height, small.width
    if H % h or W % w:
        raise ValueError(f"the {W}x{H} images must divide into the network's {w}x{h} by whole blocks")
    fy, fx = H // h, W // w
    C = len(cfg.inputs)
    nodes, inits = [], []
    counter = iter(range(1_000_000))

    def const(a, dtype=np.float32) -> str:
        name = f"c{next(counter)}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(a, dtype)), name))
        return name

    def op(kind: str, inputs: list[str], **attrs) -> str:
        out = f"t{next(counter)}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def pool(x: str) -> str:
        return op("AveragePool", [x], kernel_shape=[fy, fx], strides=[fy, fx])

    # The network's input channels, as meshfit.amortize.inputs.image_inputs makes them.
    zero = const(0.0)
    channels = []
    for c, kind in enumerate(cfg.inputs):
        x = op("Slice", ["images", const([c], np.int64), const([c + 1], np.int64), const([1], np.int64)])
        if kind != "depth":
            channels.append(pool(x))
            continue
        cov = op("Cast", [op("Greater", [x, zero])], to=TensorProto.FLOAT)
        num, den = pool(op("Mul", [x, cov])), pool(cov)
        d = op("Where", [op("Greater", [den, zero]), op("Div", [num, op("Max", [den, const(1e-6)])]), zero])
        ref = np.asarray(view_depths(small, task.target), np.float32).reshape(N, 1, 1, 1)
        rel = op("Div", [op("Sub", [d, const(ref)]), const(task.radius)])
        channels.append(op("Where", [op("Greater", [d, zero]), rel, zero]))
    rays = np.transpose(np.asarray(ray_channels(small), np.float32), (0, 3, 1, 2))  # [N, 2, h, w]
    x = op("Concat", [*channels, const(rays)], axis=1)

    convs = [p["convs"][i] for i in sorted(p["convs"])]
    hh, ww = h, w
    for i, layer in enumerate(convs):
        s = 2 if i % cfg.network.convs_per_stage == 0 else 1
        oh, ow = -(-hh // s), -(-ww // s)
        ph, pw = max((oh - 1) * s + 3 - hh, 0), max((ow - 1) * s + 3 - ww, 0)
        kernel = np.transpose(np.asarray(layer["kernel"]), (3, 2, 0, 1))  # HWIO -> OIHW
        x = op("Conv", [x, const(kernel), const(layer["bias"])], kernel_shape=[3, 3], strides=[s, s],
               pads=[ph // 2, pw // 2, ph - ph // 2, pw - pw // 2])  # fmt: skip
        x = op("Relu", [x])
        hh, ww = oh, ow
    # Flax flattens (y, x, channel): back to NHWC before the dense layers.
    flat = op("Reshape", [op("Transpose", [x], perm=[0, 2, 3, 1]), const([N, -1], np.int64)])

    def dense(x: str, name: str) -> str:
        layer = p[name]
        if "bias" in layer:
            return op("Gemm", [x, const(layer["kernel"]), const(layer["bias"])])
        return op("MatMul", [x, const(layer["kernel"])])

    feat = op("Relu", [dense(flat, "embed")])
    nodes.append(
        helper.make_node(
            "Concat", [dense(feat, "view_head"), dense(feat, "confidence")], ["per_view"], axis=1
        )
    )
    weights = op("Reshape", ["present", const([N, 1], np.int64)])
    axes = const([0], np.int64)
    total = op("ReduceSum", [op("Mul", [feat, weights]), axes], keepdims=1)
    pooled = op("Div", [total, op("Max", [op("ReduceSum", [weights, axes], keepdims=1), const(1.0)])])
    hidden = op("Relu", [dense(pooled, "pool_hidden")])
    nodes.append(helper.make_node("Identity", [dense(hidden, "pool_head")], ["pooled"]))
    K = task.num_coeffs
    graph = helper.make_graph(
        nodes, "meshfit_regressor",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [N, C, H, W]),
         helper.make_tensor_value_info("present", TensorProto.FLOAT, [N])],
        [helper.make_tensor_value_info("per_view", TensorProto.FLOAT, [N, 10]),
         helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, K + 1])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="meshfit",
                              producer_version=__version__)  # fmt: skip
    model.ir_version = 7  # readable by onnxruntime >= 1.8 and engines a few years old
    meta = {"inputs": ",".join(cfg.inputs), "views": ",".join(reg.names),
            "coefficients": ",".join(list(task.identity_names) + list(task.expression_names))}  # fmt: skip
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(run, out: str | os.PathLike, *, checkpoint: str = "best", overwrite: bool = False) -> dict:
    """Write a trained regressor as ONNX (``meshfit export RUN --format onnx``).

    run: a training run folder or a loaded Regressor. out: the .onnx file (written whole, then
    renamed into place; an existing file is replaced only with ``overwrite`` and only if it is an
    ONNX model meshfit wrote). Returns a summary (path, bytes, opset).
    """
    import onnx

    from meshfit.amortize import Regressor

    def ours(path: Path) -> bool:
        try:
            return onnx.load(str(path), load_external_data=False).producer_name == "meshfit"
        except Exception:  # not ONNX at all: onnx raises many kinds
            return False

    reg = run if isinstance(run, Regressor) else Regressor.load(run, checkpoint=checkpoint)
    out = check_output_file(out, overwrite=overwrite, ours=ours, kind="an ONNX model meshfit wrote")
    data = onnx_model(reg).SerializeToString()
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return {"path": str(out), "bytes": len(data), "opset": OPSET}

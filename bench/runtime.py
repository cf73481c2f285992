"""Benchmark the exported runtime models: size, parity with JAX, task error per quantization, and
latency per frame on one core, the C runtime against onnxruntime on the same model and input.

    meshfit train amortize_face --model examples/ict_face_region.json \\
        --cameras configs/rig_face4.json --out runs/face_net
    python bench/runtime.py runs/face_net            # ~2 min; --callgrind adds an instruction count

Test frames: ``--frames`` random parameter sets from the run's sampling ranges (a seed of their
own), rendered by pyrender through the rig (``meshfit synth --cameras``). Errors as in
bench/amortize.py (mean vertex error in % of the model's bounding-box diagonal, rotation degrees,
centre in % of the diameter). Latency: the example program (examples/runtime/run_model.c, built
here with ``cc -O3``, and with ``-mavx2 -mfma -mf16c`` for its AVX2 path) times ``mfr_run`` alone,
median of ``--repeat`` runs; onnxruntime runs the ONNX export with one intra-op and one inter-op
thread, median of as many runs, in this process. ``--rounds`` rounds of all of them back to back:
the figure is the median over rounds, the ratio to onnxruntime is taken within each round. The
ONNX graph ends at the network's raw outputs; the C runtime's figures include decoding them into
the parameters (a few hundred flops), and one row adds the decoded vertices.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import meshfit  # noqa: E402
from meshfit.amortize import Regressor  # noqa: E402
from meshfit.amortize.inputs import image_inputs  # noqa: E402
from meshfit.amortize.train import pose_errors  # noqa: E402
from meshfit.export import Runtime, write_native, write_onnx  # noqa: E402
from meshfit.export.runtime import frame_images  # noqa: E402


def _images(reg: Regressor, views) -> np.ndarray:
    return frame_images(views, reg.config.inputs)


def _canon(reg: Regressor, flat: np.ndarray) -> dict:
    """The runtime's parameters [K + 13] as the Task's canonical parameters."""
    K, task = reg.task.num_coeffs, reg.task
    return {
        "coeffs": jnp.asarray(flat[:K]),
        "R": jnp.asarray(flat[K : K + 9]).reshape(3, 3),
        "offset": (jnp.asarray(flat[K + 9 : K + 12]) - task.target) / task.radius,
        "log_scale": jnp.log(jnp.asarray(flat[K + 12])),
    }


def _errors(reg: Regressor, preds: list[dict], truths: list[dict]) -> dict:
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    e = {k: np.asarray(v) for k, v in pose_errors(reg.task, stack(preds), stack(truths)).items()}
    return {
        "vertex_pct_mean": float(e["vertex_pct"].mean()),
        "rotation_deg_median": float(np.median(e["rotation_deg"])),
        "centre_pct_median": float(np.median(e["centre_pct"])),
    }


def _build_example(tmp: Path, simd: bool = False) -> Path:
    exe = tmp / ("run_model_avx2" if simd else "run_model")
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise SystemExit("bench/runtime.py needs a C compiler (cc)")
    subprocess.run(
        [
            cc,
            "-std=c11",
            "-O3",
            *(["-mavx2", "-mfma", "-mf16c"] if simd else []),
            f"-I{REPO / 'kernels/runtime'}",
            str(REPO / "examples/runtime/run_model.c"),
            str(REPO / "kernels/runtime/meshfit_runtime.c"),
            "-lm",
            "-o",
            str(exe),
        ],
        check=True,
    )
    return exe


def _c_latency(exe: Path, model: Path, frame: Path, repeat: int, obj: Path | None = None) -> float:
    """The example program's median ms per frame: parameters, and the vertices when ``obj``."""
    out = subprocess.run(
        [str(exe), str(model), str(frame), *([str(obj)] if obj else []), "--repeat", str(repeat)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(re.search(r"run: ([0-9.]+) ms per frame", out).group(1))


def _callgrind(exe: Path, model: Path, frame: Path, obj: Path | None = None) -> int | None:
    if shutil.which("valgrind") is None:
        return None
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--toggle-collect=mfr_run",
            "--callgrind-out-file=/dev/null",
            str(exe),
            str(model),
            str(frame),
            *([str(obj)] if obj else []),
        ],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Collected : (\d+)", done.stderr)
    return int(m.group(1)) if m else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a training run folder (meshfit train --out)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--repeat", type=int, default=50, help="runs per latency figure (median)")
    p.add_argument("--rounds", type=int, default=5, help="latency rounds, C and onnxruntime back to back")
    p.add_argument("--callgrind", action="store_true", help="also count mfr_run's instructions (valgrind)")
    p.add_argument("--seed", type=int, default=778)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import onnxruntime as ort

    print(f"# {platform.processor() or platform.machine()}, onnxruntime {ort.__version__}, one thread")
    reg = Regressor.load(args.run)
    task, cfg = reg.task, reg.config
    keys = jax.random.split(jax.random.key(args.seed), args.frames)
    truths = [jax.tree.map(jnp.asarray, task.sample(k, cfg.sampling)) for k in keys]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        views = []
        for i, t in enumerate(truths):
            mesh = meshfit.Mesh(np.asarray(task.vertices(t)), task.faces)
            views.append(
                meshfit.load_views(
                    meshfit.synthesize(mesh, tmp / f"{i:03d}", cameras=reg.rig, names=reg.names)
                )
            )
        files = {q: write_native(reg, tmp / f"model_{q}.mfr", quant=q) for q in ("fp32", "fp16", "int8")}
        onnx_info = write_onnx(reg, tmp / "model.onnx")
        # JAX: the network on each frame, as predict runs it.
        present = jnp.ones((1, len(reg.names)))
        jax_preds, jax_raw = [], []
        for v in views:
            inputs, small = image_inputs(task, v.cameras, cfg.inputs, mask=v.mask, rgb=v.rgb, depth=v.depth)
            cams = jax.tree.map(lambda a: a[None], small)
            jax_preds.append(
                jax.tree.map(lambda a: a[0], reg.network.predict_jit(reg.params, inputs[None], cams, present))
            )
            jax_raw.append([np.asarray(x) for x in reg.network.apply(reg.params, inputs[None], present)])
        rows = {"JAX (fp32)": _errors(reg, jax_preds, truths)}
        parity = {}
        for q in files:
            rt = Runtime(tmp / f"model_{q}.mfr")
            outs = [rt.run(_images(reg, v), vertices=False)[0] for v in views]
            rows[f"C runtime, {q}"] = _errors(reg, [_canon(reg, o) for o in outs], truths)
            if q == "fp32":
                ref = [
                    np.concatenate(
                        [
                            np.asarray(j["coeffs"]),
                            np.ravel(j["R"]),
                            np.asarray(task.object_centre(j)),
                            [float(np.exp(j["log_scale"]))],
                        ]
                    )
                    for j in jax_preds
                ]
                parity["c_fp32_vs_jax_max_rel"] = float(
                    max(np.abs(o - r).max() / np.abs(r).max() for o, r in zip(outs, ref))
                )
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        session = ort.InferenceSession(str(tmp / "model.onnx"), so, providers=["CPUExecutionProvider"])
        feeds = [{"images": _images(reg, v), "present": np.ones(len(reg.names), np.float32)} for v in views]
        onnx_out = [session.run(None, f) for f in feeds]
        parity["onnx_vs_jax_max_abs"] = float(
            max(
                max(np.abs(o[0] - r[0][0]).max(), np.abs(o[1] - r[1]).max())
                for o, r in zip(onnx_out, jax_raw)
            )
        )
        # Latency, one core: the C example program, then onnxruntime, on the first frame.
        exe = _build_example(tmp)
        frame = tmp / "frame.f32"
        _images(reg, views[0]).astype("<f4").tofile(frame)
        # (label, program, model file, OBJ or None) for each C measurement: the parameters alone
        # (what onnxruntime's figure covers, and all an engine driving its own morph targets needs),
        # and once with the decoded vertices.
        builds = [(f"C {q}", exe, tmp / f"model_{q}.mfr", None) for q in files]
        cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        if all(f" {f}" in cpu for f in ("avx2", "fma", "f16c")):
            simd = _build_example(tmp, simd=True)
            builds += [(f"C {q}, AVX2 path", simd, tmp / f"model_{q}.mfr", None) for q in files]
            builds.append(("C int8, AVX2 path, + vertices", simd, tmp / "model_int8.mfr", tmp / "out.obj"))
        # Rounds of every C build then onnxruntime, back to back: this machine's speed drifts over
        # minutes (shared host), so each C figure is compared with onnxruntime's in its own round.
        rounds: dict[str, list[float]] = {name: [] for name, *_ in builds}
        rounds["onnxruntime fp32"] = []
        for _ in range(args.rounds):
            for name, program, model, obj in builds:
                rounds[name].append(_c_latency(program, model, frame, args.repeat, obj))
            times = []
            for _ in range(args.repeat + 5):
                t = time.perf_counter()
                session.run(None, feeds[0])
                times.append(time.perf_counter() - t)
            rounds["onnxruntime fp32"].append(1000 * float(np.median(times[5:])))
        latency = {name: float(np.median(ms)) for name, ms in rounds.items()}
        ort_rounds = np.asarray(rounds["onnxruntime fp32"])
        ratios = {name: np.asarray(ms) / ort_rounds for name, ms in rounds.items()}
        counts = (
            {name: _callgrind(program, model, frame, obj) for name, program, model, obj in builds}
            if args.callgrind
            else {}
        )
    net = reg.network.cost
    print(
        f"\nrun: {args.run}, network {net['parameters']:,} parameters, {net['flops'] / 1e6:.1f} MFLOPs per "
        f"{len(reg.names)}-view frame; ONNX opset {onnx_info['opset']}, {onnx_info['bytes'] / 1024:.0f} KiB"
    )
    print("\n| file | bytes | network | model (base, basis, faces) |\n|---|---:|---:|---:|")
    for q, f in files.items():
        print(
            f"| native {q} (basis {f['basis']}) | {f['bytes'] / 1024:.0f} KiB "
            f"| {f['network_bytes'] / 1024:.0f} KiB | {f['model_bytes'] / 1024:.0f} KiB |"
        )
    print(
        f"\nparity: C fp32 vs JAX max relative {parity['c_fp32_vs_jax_max_rel']:.2e}; "
        f"ONNX (onnxruntime) vs JAX max abs {parity['onnx_vs_jax_max_abs']:.2e}"
    )
    print(
        f"\n{args.frames} test frames (pyrender through the rig)\n| runs | vertex error % diag (mean) | "
        "rotation deg (median) | centre % diam (median) |\n|---|---:|---:|---:|"
    )
    for name, r in rows.items():
        print(
            f"| {name} | {r['vertex_pct_mean']:.4f} | {r['rotation_deg_median']:.3f} "
            f"| {r['centre_pct_median']:.3f} |"
        )
    base = rows["C runtime, fp32"]["vertex_pct_mean"]
    print(f"int8 task error / fp32: {rows['C runtime, int8']['vertex_pct_mean'] / base:.3f} (goal <= 1.10)")
    print(
        f"\n| latency per frame, one core (median of {args.rounds} rounds of {args.repeat}) | ms | range ms "
        "| ratio to onnxruntime (median, range over rounds) |"
        + (" instructions (callgrind) |" if counts else "")
        + "\n|---|---:|---:|---:|"
        + ("---:|" if counts else "")
    )
    for name, ms in latency.items():
        r = ratios[name]
        extra = f" {counts[name]:,} |" if counts.get(name) else (" |" if counts else "")
        print(
            f"| {name} | {ms:.3f} | {min(rounds[name]):.3f}–{max(rounds[name]):.3f} "
            f"| {np.median(r):.2f} ({r.min():.2f}–{r.max():.2f}) |{extra}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "files": files,
                    "parity": parity,
                    "errors": rows,
                    "latency_ms": latency,
                    "latency_rounds_ms": rounds,
                    "instructions": counts,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

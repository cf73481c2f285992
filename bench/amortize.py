"""Benchmark amortized fitting: a trained network alone, network + K refinement steps, and the
optimisation alone (the shipped fit config), on test frames rendered by pyrender through the rig.

    meshfit train amortize_face --model examples/ict_face_region.json \\
        --cameras configs/rig_face4.json --out runs/face_net          # ~30 min on 2 cores
    python bench/amortize.py runs/face_net --fit face_blendshapes     # ~10 min
    python bench/amortize.py runs/controller_net --fit rigid_pose
    python bench/amortize.py runs/face_net --timing-only     # times only: no pyrender, any device

Test frames: ``--frames`` random parameter sets drawn from the run's sampling ranges with a seed
of their own (not the validation set's), rendered by ``meshfit synth --cameras`` (pyrender) at
the rig's resolution. Errors: mean vertex distance in % of the model's bounding-box diagonal,
rotation in degrees, the object's centre in % of its diameter (median and 95th percentile over
frames). Times per frame: the network on all frames in one batched call (and one frame alone),
the refinement and the fit after compilation (compile time reported apart). Also where a
training step's time goes (rendering the inputs, the network's forward and backward, the
optimiser), from separately jitted parts of one step.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
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
from meshfit.amortize.predict import _params, predict  # noqa: E402
from meshfit.amortize.run import _checkpoint_tree  # noqa: E402
from meshfit.amortize.train import make_optimizer, pose_errors, sample_batch  # noqa: E402
from meshfit.fitting import FitConfig, fit_views, load_config  # noqa: E402


def _errors(reg: Regressor, params_json: dict, truth: dict) -> dict:
    task = reg.task
    pred = jax.tree.map(lambda a: jnp.asarray(a)[None], task.from_params_json(params_json))
    t = jax.tree.map(lambda a: jnp.asarray(a)[None], truth)
    return {k: float(v[0]) for k, v in pose_errors(task, pred, t).items()}


def _row(name: str, errs: list[dict], seconds: list[float], compile_s: list[float]) -> dict:
    e = {k: np.asarray([x[k] for x in errs]) for k in errs[0]}
    return {
        "method": name,
        **{f"{k}_median": float(np.median(v)) for k, v in e.items()},
        **{f"{k}_p95": float(np.percentile(v, 95)) for k, v in e.items()},
        "vertex_pct_mean": float(e["vertex_pct"].mean()),
        "seconds_per_frame": float(np.mean(seconds)),
        "compile_seconds": float(np.mean(compile_s)) if compile_s else 0.0,
    }


def time_breakdown(reg: Regressor, repeats: int = 5) -> dict:
    """Median ms per training step of its parts, each jitted alone (the fused step is faster)."""
    net, c = reg.network, reg.config
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(c.batch))
    render = jax.jit(lambda k: sample_batch(net, k))
    truth, cams, inputs, _ = render(keys)
    present = jnp.ones(cams.batch_shape, jnp.float32)

    def loss(params):
        pred = net.predict(params, inputs, cams, present, passes=1)  # a correcting network trains one pass
        vp, vt = jax.vmap(net.task.vertices)(pred), jax.vmap(net.task.vertices)(truth)
        return jnp.mean(jnp.linalg.norm(vp - vt, axis=-1))

    grad = jax.jit(jax.grad(loss))
    opt = make_optimizer(c)
    carry = _checkpoint_tree(net, opt, reg.params, 0)
    update = jax.jit(lambda g, s, p: opt.update(g, s, p))
    g = grad(reg.params)
    out = {}
    for name, fn in (("render", lambda: render(keys)), ("network", lambda: grad(reg.params)),
                     ("optimiser", lambda: update(g, carry["opt_state"], reg.params))):  # fmt: skip
        jax.block_until_ready(fn())
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - t)
        out[f"{name}_ms"] = 1000 * float(np.median(times))
    return out


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    """(median ms of ``repeats`` calls after the first, first call's seconds: compile + run)."""
    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)), first


def timing_only(reg: Regressor, frames: int, repeats: int = 20) -> dict:
    """Prediction latency on inputs rendered by meshfit (not pyrender): ``frames`` frames in one
    call and one frame alone, for every number of correction passes; and a training step's parts.
    Needs no OpenGL, so it runs on any JAX device."""
    net = reg.network
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(1), i))(jnp.arange(frames))
    _, cams, inputs, _ = jax.jit(lambda k: sample_batch(net, k))(keys)
    present = jnp.ones(cams.batch_shape, jnp.float32)
    out = {"frames": frames, "passes": {}}
    one = jax.tree.map(lambda a: a[:1], (inputs, cams, present))
    for passes in range(reg.config.correction_passes + 1):
        # The weights are an argument, as in Regressor.predict (closed over, XLA would fold them in).
        fn = jax.jit(functools.partial(net.predict, passes=passes))
        batched, compile_s = _median_ms(functools.partial(fn, reg.params, inputs, cams, present), repeats)
        single, _ = _median_ms(functools.partial(fn, reg.params, *one), repeats)
        out["passes"][passes] = {"per_frame_ms": batched / frames, "single_frame_ms": single,
                                 "compile_seconds": compile_s}  # fmt: skip
    out["breakdown"] = time_breakdown(reg)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a training run folder (meshfit train --out)")
    p.add_argument("--fit", help="the shipped fit config to compare with (face_blendshapes, rigid_pose)")
    p.add_argument("--timing-only", action="store_true",
                   help="only the network's latency and a training step's parts, on inputs rendered by "
                   "meshfit (no pyrender: runs on any device)")  # fmt: skip
    p.add_argument("--frames", type=int, default=16, help="test frames (default 16)")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 20, 50], help="refinement steps K")
    p.add_argument("--fit-fractions", type=float, nargs="*", default=[0.1, 0.25, 0.5, 1.0],
                   help="optimisation runs with these fractions of its steps (time to an error); "
                   "none: the network rows only")  # fmt: skip
    p.add_argument("--refine-config", default=None, metavar="CONFIG",
                   help="the refine stage of this training config (default: the run's own)")  # fmt: skip
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    print(
        f"# {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}"
    )
    if args.fit is None and not args.timing_only:
        p.error("--fit is required (or --timing-only)")
    reg = Regressor.load(args.run)
    task, cfg = reg.task, reg.config
    if args.timing_only:
        t = timing_only(reg, args.frames)
        print(f"run: {args.run}, network on {jax.devices()[0].device_kind}, {args.frames} frames of inputs "
              "rendered by meshfit")  # fmt: skip
        for passes, r in t["passes"].items():
            what = "network" if passes == 0 else f"{passes} correction pass{'es' if passes > 1 else ''}"
            print(f"  {what}: {r['per_frame_ms']:.3f} ms per frame batched, {r['single_frame_ms']:.3f} ms "
                  f"for one frame (compile + first call {r['compile_seconds']:.1f} s)")  # fmt: skip
        b = t["breakdown"]
        print(
            f"  one training step (batch {cfg.batch}), parts jitted alone: render {b['render_ms']:.1f} "
            f"ms, network forward+backward {b['network_ms']:.1f} ms, optimiser {b['optimiser_ms']:.2f} ms"
        )
        if args.json:
            args.json.write_text(json.dumps(t, indent=1) + "\n")
        return 0
    refine = cfg.refine
    if args.refine_config is not None:
        from meshfit.amortize import TrainConfig

        data, _ = load_config(args.refine_config)
        refine = TrainConfig.from_dict(data).refine
    info = json.loads((args.run / "run.json").read_text())
    keys = jax.random.split(jax.random.key(args.seed), args.frames)
    truths = [jax.tree.map(np.asarray, task.sample(k, cfg.sampling)) for k in keys]
    fit_data, _ = load_config(args.fit)
    fit_config = FitConfig.from_dict(fit_data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        views = []
        for i, truth in enumerate(truths):
            mesh = meshfit.Mesh(np.asarray(task.vertices(truth)), task.faces)
            folder = meshfit.synthesize(mesh, Path(tmp) / f"{i:03d}", cameras=reg.rig, names=reg.names)
            views.append(meshfit.load_views(folder))
        # Network alone: every frame in one batched call, and one frame alone.
        stacked = views[0]._replace(
            mask=np.stack([v.mask for v in views]), rgb=np.stack([v.rgb for v in views]),
            depth=np.stack([v.depth for v in views]), frames=[f"{i:03d}" for i in range(args.frames)],
        )  # fmt: skip
        canon, timing = predict(reg, stacked)
        _, single = predict(reg, views[0])
        starts = [_params(reg, [c], False) for c in canon]
        errs = [_errors(reg, s, t) for s, t in zip(starts, truths)]
        row = _row("network", errs, [timing["per_frame_ms"] / 1000], [timing["compile_seconds"]])
        row["single_frame_ms"] = single["per_frame_ms"]
        rows.append(row)
        for k in args.steps:
            stage = dataclasses.replace(refine, steps=k)
            config = FitConfig(model=cfg.model, stages=(stage,), bounds=dict(cfg.bounds))
            errs, secs, comp = [], [], []
            for v, s, t in zip(views, starts, truths):
                r = fit_views(config, v, model=reg.model, progress=False, start=s)
                errs.append(_errors(reg, r.params, t))
                secs.append(sum(h["seconds"] for h in r.history) + timing["per_frame_ms"] / 1000)
                comp.append(sum(h["compile_seconds"] for h in r.history))
            rows.append(_row(f"network + {k} steps", errs, secs, comp))
        for fraction in args.fit_fractions:
            stages = [
                dataclasses.replace(s, steps=max(1, round(s.steps * fraction))) for s in fit_config.stages
            ]
            config = dataclasses.replace(fit_config, stages=tuple(stages))
            errs, secs, comp = [], [], []
            for v, t in zip(views, truths):
                r = fit_views(config, v, model=reg.model, progress=False)
                errs.append(_errors(reg, r.params, t))
                secs.append(sum(h["seconds"] for h in r.history))
                comp.append(sum(h["compile_seconds"] for h in r.history))
            label = "" if fraction == 1 else f", {fraction:g} of its steps"
            rows.append(_row(f"optimisation only ({args.fit}{label})", errs, secs, comp))
    breakdown = time_breakdown(reg)
    net = info["network"]
    print(
        f"\nrun: {args.run} ({info.get('representation')}), checkpoint of step {reg.step}; trained "
        f"{info.get('steps')} steps in {info.get('seconds', 0) / 60:.1f} min "
        f"({info.get('samples_per_s', 0):.1f} samples/s, compile {info.get('compile_seconds', 0):.0f} s); "
        f"network {net['parameters']:,} parameters, {net['flops'] / 1e6:.1f} MFLOPs per frame"
    )
    print(
        f"one training step (batch {cfg.batch}), parts jitted alone: render {breakdown['render_ms']:.0f} ms, "
        f"network forward+backward {breakdown['network_ms']:.0f} ms, "
        f"optimiser {breakdown['optimiser_ms']:.1f} ms"
    )
    print(
        f"{args.frames} test frames (pyrender through the rig); network alone: "
        f"{rows[0]['seconds_per_frame'] * 1000:.2f} ms per frame batched, "
        f"{rows[0]['single_frame_ms']:.2f} ms for one frame"
    )
    print(
        "\n| method | vertex error % diag (mean / median / p95) | rotation deg (median / p95) "
        "| centre % diam (median / p95) | s per frame | compile s |\n|---|---|---|---|---:|---:|"
    )
    for r in rows:
        vertex = f"{r['vertex_pct_mean']:.4f} / {r['vertex_pct_median']:.4f} / {r['vertex_pct_p95']:.4f}"
        rot = f"{r['rotation_deg_median']:.3f} / {r['rotation_deg_p95']:.3f}"
        centre = f"{r['centre_pct_median']:.3f} / {r['centre_pct_p95']:.3f}"
        times = f"{r['seconds_per_frame']:.3f} | {r['compile_seconds']:.1f}"
        print(f"| {r['method']} | {vertex} | {rot} | {centre} | {times} |")
    fits = [r for r in rows if r["method"].startswith("optimisation")]
    for r in rows[1 : len(rows) - len(fits)]:
        # The cheapest optimisation-only run at least as accurate (mean vertex error).
        ok = [f for f in fits if f["vertex_pct_mean"] <= r["vertex_pct_mean"]]
        if ok:
            f = min(ok, key=lambda f: f["seconds_per_frame"])
            print(f"{r['method']}: the cheapest optimisation at least as accurate ({f['method']}) "
                  f"takes {f['seconds_per_frame'] / r['seconds_per_frame']:.1f}x as long")  # fmt: skip
        elif fits:
            print(f"{r['method']}: more accurate than every optimisation-only run")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "breakdown": breakdown, "run": info}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

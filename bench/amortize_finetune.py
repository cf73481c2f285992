"""Benchmark fine-tuning a trained network on an unlabelled capture (``meshfit train --data``):
the network's error on a pyrender sequence before and after training on it with image terms
alone (no labels), for several choices of those terms.

    python bench/amortize_finetune.py runs/bench_face_net --frames 16 --held-out 8 --steps 300

The capture: ``--frames + --held-out`` random parameter sets from the run's sampling ranges (a
seed of their own), rendered by pyrender through the run's rig (``meshfit synth --cameras``) with
landmarks projected from the truth (1 px noise, 5% outliers) when the model defines them. Each
variant fine-tunes the run's best weights for ``--steps`` steps on the first ``--frames`` frames
(``meshfit.amortize.train(data=..., init=RUN)``), then predicts every frame: the error on the
frames it trained on (what a capture session gets: adapt, then predict its frames) and on the
held-out ones (whether it generalises to the capture's other frames). Error: mean vertex
distance in % of the model's bounding-box diagonal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
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
from meshfit.amortize import Regressor, train  # noqa: E402
from meshfit.amortize.predict import predict  # noqa: E402
from meshfit.amortize.train import pose_errors  # noqa: E402

VARIANTS = {
    "silhouette + depth": {"silhouette": 1.0, "depth": 1.0},
    "silhouette + depth + landmarks": {"silhouette": 1.0, "depth": 1.0, "landmarks": 0.01},
    "silhouette + depth + shading": {"silhouette": 1.0, "depth": 1.0, "shading": 0.1},
    "silhouette + landmarks + shading (no depth camera)": {
        "silhouette": 1.0,
        "landmarks": 0.01,
        "shading": 0.1,
    },
}


def _sequence(reg: Regressor, truths: list[dict], folder: Path, landmarks: Path | None) -> Path:
    """A pyrender sequence folder (frames/NNNN/) of the truths through the run's rig."""
    task = reg.task
    for t, canon in enumerate(truths):
        mesh = meshfit.Mesh(np.asarray(task.vertices(canon)), task.faces)
        frame = meshfit.synthesize(
            mesh, folder / "tmp" / f"{t:04d}", cameras=reg.rig, names=reg.names, landmarks=landmarks,
            landmark_noise=1.0 if landmarks else 0.0, landmark_outliers=0.05 if landmarks else 0.0,
            seed=t,
        )  # fmt: skip
        shutil.move(str(frame), folder / "frames" / f"{t:04d}")
        shutil.move(str(folder / "frames" / f"{t:04d}" / "cameras.json"), folder / "cameras.json")
    shutil.rmtree(folder / "tmp")
    return folder


def _landmark_file(task, path: Path) -> Path:
    """The run model's landmarks as a definition file for synth (landmarks on vertices)."""
    idx, w = np.asarray(task.landmark_index), np.asarray(task.landmark_weights)
    if not np.allclose(w, [1.0, 0.0, 0.0]):
        raise SystemExit("this benchmark renders landmarks defined on vertices; the model's are barycentric")
    path.write_text(json.dumps({"landmarks": {"vertices": idx[:, 0].tolist()}}))
    return path


def _errors(reg: Regressor, views, truths: list[dict]) -> np.ndarray:
    canon, _ = predict(reg, views)
    pred = jax.tree.map(lambda *a: jnp.stack(a), *canon)
    truth = jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *truths)
    return np.asarray(pose_errors(reg.task, pred, truth)["vertex_pct"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a training run folder (meshfit train --out)")
    p.add_argument("--frames", type=int, default=16, help="frames fine-tuned on (default 16)")
    p.add_argument("--held-out", type=int, default=8, help="frames of the capture not trained on (default 8)")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps per variant (default 300)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    print(
        f"# {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}"
    )
    reg = Regressor.load(args.run)
    task, cfg = reg.task, reg.config
    has_marks = task.num_landmarks > 0
    T = args.frames + args.held_out
    truths = [
        jax.tree.map(np.asarray, task.sample(k, cfg.sampling))
        for k in jax.random.split(jax.random.key(args.seed), T)
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        landmarks = _landmark_file(task, tmp / "landmarks.json") if has_marks else None
        t0 = time.perf_counter()
        seq = _sequence(reg, truths, tmp / "capture", landmarks)
        print(f"rendered {T} frames in {time.perf_counter() - t0:.0f} s")
        views = meshfit.load_sequence(seq)
        split = lambda a, sl: None if a is None else a[sl]  # noqa: E731
        tune = views._replace(
            **{k: split(getattr(views, k), slice(0, args.frames)) for k in
               ("rgb", "mask", "depth", "landmarks", "landmark_confidence")},
            frames=views.frames[: args.frames],
        )  # fmt: skip
        before = _errors(reg, views, truths)
        rows.append({"variant": "network as trained", "tuned": float(before[: args.frames].mean()),
                     "held_out": float(before[args.frames :].mean()), "seconds": 0.0})  # fmt: skip
        for name in args.variants:
            weights = VARIANTS[name]
            if "landmarks" in weights and not has_marks:
                continue
            zero = {"vertices": 0.0, "silhouette": 0.0, "depth": 0.0, "shading": 0.0, "landmarks": 0.0}
            loss = dataclasses.replace(cfg.loss, **(zero | weights))
            config = dataclasses.replace(
                cfg, steps=args.steps, loss=loss,
                optim=dataclasses.replace(cfg.optim, lr=args.lr, warmup=min(20, args.steps)),
                validation=dataclasses.replace(cfg.validation, samples=8),
                checkpoint=dataclasses.replace(cfg.checkpoint, every=args.steps),
            )  # fmt: skip
            t = time.perf_counter()
            out = tmp / f"tuned_{len(rows)}"
            train(config, reg.model, reg.rig, out, names=reg.names, data=tune, init=args.run, progress=False)
            seconds = time.perf_counter() - t
            after = _errors(Regressor.load(out, checkpoint="last"), views, truths)
            rows.append({"variant": name, "tuned": float(after[: args.frames].mean()),
                         "held_out": float(after[args.frames :].mean()), "seconds": seconds})  # fmt: skip
            print(f"{name}: {rows[-1]}", flush=True)
    print(
        f"\nrun: {args.run}, {args.frames} frames fine-tuned on + {args.held_out} held out, "
        f"{args.steps} steps at lr {args.lr:g} (batch {cfg.batch})\n"
        "\n| variant (loss weights) | mean vertex error % diag, frames tuned on | held-out frames | seconds |"
        "\n|---|---:|---:|---:|"
    )
    for r in rows:
        print(f"| {r['variant']} | {r['tuned']:.4f} | {r['held_out']:.4f} | {r['seconds']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

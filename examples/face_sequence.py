"""Fit a 32-frame performance with the ICT face model in one call: one identity for all frames,
expression and head pose per frame, temporal smoothness; optionally sharded over devices.

    python examples/face_sequence.py                          # 32 frames x 4 views at 128^2
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/face_sequence.py --devices 4
    python examples/face_sequence.py --frames 4 --size 48 --steps 0.1    # a quick run

With ``--devices N`` the fit runs twice, on one device and with the frames split over N
(``jax.shard_map``), and prints how far apart the two fitted sequences are. The stages are
configs/face_blendshapes.yaml's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

import meshfit
from meshfit.config import apply_overrides
from meshfit.fitting import FitConfig, fit_views
from meshfit.synth import pyrender_views

sys.path.insert(0, str(Path(__file__).resolve().parent))
from face_blendshapes import ICT, REPO, ict_model  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ICT), help="folder with the ICT face-region OBJ files")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=128, help="image size (square)")
    ap.add_argument("--steps", type=float, default=1.0, help="scale the number of steps per stage")
    ap.add_argument("--devices", type=int, default=0, help="also fit with the frames sharded over N devices")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    model = ict_model(Path(args.model))
    T, rng = args.frames, np.random.default_rng(args.seed)
    t = np.linspace(0, 2 * np.pi, T, endpoint=False)[:, None]
    phase = rng.uniform(0, 2 * np.pi, (1, model.num_expression))
    truth = {
        "identity": jnp.asarray(rng.uniform(-1, 1, model.num_identity), jnp.float32),
        "log_scale": jnp.zeros(()),
        "expression": jnp.asarray(0.5 + 0.45 * np.sin(t + phase), jnp.float32),  # smooth, in [0, 1]
        "rotation": jnp.asarray(np.radians(8) * np.concatenate([np.sin(t), np.sin(2 * t), 0 * t], 1)),
        "translation": jnp.asarray(0.5 * np.concatenate([np.cos(t), 0 * t, np.sin(t)], 1), jnp.float32),
    }  # fmt: skip
    per_frame = ("expression", "rotation", "translation")
    frame = lambda p, i: {k: (v[i] if k in per_frame else v) for k, v in p.items()}  # noqa: E731

    # Four cameras in front of the face, rendered by pyrender for every frame.
    c0 = np.asarray(model.neutral).mean(0)
    r = float(np.linalg.norm(np.asarray(model.neutral) - c0, axis=1).max())
    eyes = c0 + 3 * r * np.array([[0, 0, 1], [0.5, 0.2, 0.85], [-0.5, 0.2, 0.85], [0, -0.4, 0.9]])
    cams = meshfit.look_at(eyes, target=c0, width=args.size, height=args.size, fov=40.0)
    near, far = 1.5 * r, 4.5 * r
    gt = np.stack([np.asarray(model.vertices(frame(truth, i))) for i in range(T)])
    masks, depths = [], []
    for i in range(T):
        gl = pyrender_views(meshfit.Mesh(gt[i], model.faces), cams, near=near, far=far)
        masks.append(gl.mask)
        depths.append(gl.depth)
    names, frames = [f"{i:03d}" for i in range(len(eyes))], [f"{i:04d}" for i in range(T)]
    views = meshfit.Views(cams, names, None, np.stack(masks), np.stack(depths), frames=frames)
    # configs/face_blendshapes.yaml (pose from silhouettes, then shape and depth), with smoothness.
    data = yaml.safe_load((REPO / "configs" / "face_blendshapes.yaml").read_text())
    scaled = [
        f"stages.{i}.steps={max(1, int(s['steps'] * args.steps))}" for i, s in enumerate(data["stages"])
    ]
    config = FitConfig.from_dict(apply_overrides(data, [*scaled, "smoothness=0.01"]))

    def run(devices):
        t0 = time.perf_counter()
        result = fit_views(config, views, model=model, devices=devices)
        fitted = np.stack([np.asarray(m.vertices) for m in result.meshes])
        history = result.history
        identity = np.asarray(list(result.params["identity"].values()))
        expressions = np.asarray([list(f["expression"].values()) for f in result.params["frames"]])
        return fitted, {
            "seconds": sum(h["seconds"] for h in history),
            "compile_seconds": sum(h["compile_seconds"] for h in history),
            "wall_seconds": time.perf_counter() - t0,
            "vertex_error_mm": float(10 * np.linalg.norm(fitted - gt, axis=-1).mean()),
            "identity_error_max": float(np.abs(identity - np.asarray(truth["identity"])).max()),
            "expression_error_max": float(np.abs(expressions - np.asarray(truth["expression"])).max()),
        }

    fitted, report = run(None)
    print(f"{T} frames on one device: {report}")
    if args.devices:
        sharded, report["sharded"] = run(jax.devices()[: args.devices])
        # Same maths, other summation order: compare the fitted surfaces.
        report["sharded_vertex_difference_mm"] = float(10 * np.abs(sharded - fitted).max())
        print(f"{T} frames over {args.devices} devices: {report['sharded']}")
        diff = report["sharded_vertex_difference_mm"]
        print(f"largest vertex difference, sharded vs one device: {diff:.2e} mm")
    return report


if __name__ == "__main__":
    main()

"""Benchmark a free mesh fitted from RGB views with masks and no depth (issue 11's Spot case).

    python bench/free_mesh_rgb.py                                   # ~6 min on 2 cores
    python bench/free_mesh_rgb.py --configs free_mesh_rgb free_mesh_masks --set stages.1.steps=200
    python bench/free_mesh_rgb.py --configs free_mesh_rgb --no-plate

Data: the shared Spot with its texture, 16 pyrender views at 512^2 (``meshfit synth --texture``,
seed 0: its studio light, black background), masks and colour only; 8 more views (seed 7) are
held out. Each config (default: the shipped ``free_mesh_rgb``) is fitted through
``meshfit.fit_views``; accuracy is ``meshfit eval``'s against the ground truth normalised to the
unit sphere (RMS point-to-mesh, normal consistency); time is the stages' wall seconds after
compilation, with compilation, and the whole call (visual hull, remeshing and the albedo's
projection included). Held out: the fit (shape, albedo, light) rendered by meshfit for the
held-out cameras against pyrender's images, PSNR over whole images (``image_metrics``).
Plate case (unless ``--no-plate``): the same views rendered over crops of a busy backdrop
(the shared Bob's texture), with each view's clean plate and no masks, fitted by the shipped
``free_mesh_plate``. Issue targets: RMS <= 0.002, NC >= 0.98, <= 120 s, held-out PSNR >= 30 dB;
without masks, against the plate: RMS <= 0.003.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import meshfit  # noqa: E402
from meshfit.fitting import fit_views, load_config  # noqa: E402
from meshfit.fitting.config import FitConfig  # noqa: E402
from meshfit.metrics import evaluate, image_metrics  # noqa: E402
from meshfit.render import render_views  # noqa: E402

SPOT = REPO.parent / "shared" / "data" / "spot"


def run(name: str, overrides: list[str], views, held, gt) -> dict:
    data, _ = load_config(name, overrides, kind="fit")
    config = FitConfig.from_dict(data)
    t = time.perf_counter()
    result = fit_views(config, views, progress=False)
    wall = time.perf_counter() - t
    acc = evaluate(result.mesh, gt)
    light = result.params.get("light")
    rendered = render_views(result.mesh, held.cameras, near=result.near, far=result.far, light=light)
    out = {
        "config": name, "overrides": overrides, "faces": int(result.mesh.faces.shape[0]),
        "seconds": sum(h["seconds"] for h in result.history),
        "compile_seconds": sum(h["compile_seconds"] for h in result.history), "wall_seconds": wall,
        "rms_point_to_mesh": acc["rms_point_to_mesh"], "normal_consistency": acc["normal_consistency"],
        "chamfer_l1": acc["chamfer_l1"], "fscore_1pct": acc["fscore_1pct"],
        "held_out_psnr": image_metrics(rendered, held).get("rgb_psnr") if light else None,
        "stages": [{k: h[k] for k in ("name", "steps", "seconds", "faces", "resolution")}
                   for h in result.history],
    }  # fmt: skip
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["free_mesh_rgb"], help="shipped names or YAML files")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override every config")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--no-plate", action="store_true", help="skip the case without masks")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    print(
        f"# {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}"
    )
    gt = meshfit.load_mesh(SPOT / "spot_triangulated.obj", texture=SPOT / "spot_texture.png")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        size = (args.size, args.size)
        train = meshfit.synthesize(gt, Path(tmp) / "train", views=16, size=size, seed=0, textured=True)
        test = meshfit.synthesize(gt, Path(tmp) / "held", views=8, size=size, seed=7, textured=True)
        views, held = meshfit.load_views(train), meshfit.load_views(test)
        views = views._replace(depth=None)  # colour and masks only
        cases = [(name, views) for name in args.configs]
        if not args.no_plate:
            backdrop = REPO.parent / "shared" / "data" / "bob" / "bob_diffuse.png"
            plated = meshfit.synthesize(gt, Path(tmp) / "plate", views=16, size=size, seed=0, textured=True,
                                        plate=backdrop)  # fmt: skip
            cases.append(("free_mesh_plate", meshfit.load_views(plated)._replace(mask=None, depth=None)))
        for name, data in cases:
            r = run(name, args.set, data, held, gt)
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "stages"}))
    print("\n| config | RMS | NC | F@1% | fit s (+compile) | whole call s | held-out PSNR dB | faces |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        psnr = "-" if r["held_out_psnr"] is None else f"{r['held_out_psnr']:.2f}"
        print(f"| {r['config']} | {r['rms_point_to_mesh']:.5f} | {r['normal_consistency']:.4f} | "
              f"{r['fscore_1pct']:.4f} | {r['seconds']:.1f} (+{r['compile_seconds']:.1f}) | "
              f"{r['wall_seconds']:.1f} | {psnr} | {r['faces']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the fitting engine on the issue's cases, through the examples (one per case).

    python bench/fit.py                         # all cases (~6 min on 2 cores)
    python bench/fit.py --cases spot bob        # some of them

Cases: free mesh from a sphere for Spot, Bob and Blub, and Bob from the masks' visual hull
(bob-hull: Bob has genus 1), 16 pyrender views at 512^2, configs/free_mesh.yaml; ICT face
blendshapes with head pose (4 views at 256^2, configs/face_blendshapes.yaml); the controller's
rigid pose (4 views at 256^2, 20 deg / 5 cm off, configs/rigid_pose.yaml). Times are wall
seconds of the optimisation after compilation (each stage's first step, which compiles, is
reported apart); accuracy is meshfit eval's (ground truth normalised to the unit sphere) or the
parameters' errors.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
from pathlib import Path

import jax

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FREE = {"spot": "spot/spot_triangulated.obj", "bob": "bob/bob_tri.obj", "blub": "blub/fish.obj",
        "bob-hull": "bob/bob_tri.obj"}  # fmt: skip


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(case: str, out: Path) -> dict:
    if case in FREE:
        init = "visual_hull" if case.endswith("-hull") else "sphere"
        args = ["--mesh", str(SHARED / FREE[case]), "--init", init, "--out", str(out / case)]
        r = _example("free_mesh").main(args)
        name = f"free mesh: {case.removesuffix('-hull')} from a {init.replace('_', ' ')}"
        return {"case": name, "seconds": r["seconds"], "compile_seconds": r["compile_seconds"],
                "accuracy": f"RMS {r['rms_point_to_mesh']:.5f}, NC {r['normal_consistency']:.4f}, "
                            f"F@1% {r['fscore_1pct']:.4f}, {r['faces']} faces"}  # fmt: skip
    if case == "face":
        r = _example("face_blendshapes").main(["--out", str(out / case)])
        return {"case": "blendshapes + head pose: ICT", "seconds": r["seconds"],
                "compile_seconds": r["compile_seconds"],
                "accuracy": f"vertex error {r['vertex_error_mm']:.4f} mm, coefficients within "
                            f"{max(r['identity_error_max'], r['expression_error_max']):.4f}, "
                            f"rotation {r['rotation_error_deg']:.4f} deg"}  # fmt: skip
    if case == "rigid":
        r = _example("rigid_pose").main(["--out", str(out / case)])
        return {"case": "rigid pose: controller", "seconds": r["seconds"],
                "compile_seconds": r["compile_seconds"],
                "accuracy": f"rotation {r['rotation_error_deg']:.4f} deg, "
                            f"translation {r['translation_error_mm']:.4f} mm"}  # fmt: skip
    raise ValueError(f"unknown case {case!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=[*FREE, "face", "rigid"], choices=[*FREE, "face", "rigid"])
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    print(
        f"# {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            rows.append(run(case, Path(tmp)))
    print("\n| case | fit s (after compile) | compile s | accuracy |\n|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['case']} | {r['seconds']:.1f} | {r['compile_seconds']:.1f} | {r['accuracy']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

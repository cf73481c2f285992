"""Benchmark ``meshfit import`` (meshfit.capture.import_capture): its cost on big photos, and what
undistorting a real lens is worth to a fit.

    python bench/capture.py                                        # both parts (~12 min on 2 cores)
    python bench/capture.py --part memory           # 50 views at 6000x4000, --size 1024 and 2048 (~6 min)
    python bench/capture.py --part memory --views 10 --sizes full     # no --size: 24 MP PNGs out
    python bench/capture.py --part memory --shared-lens --sizes 1024  # one camera for all views
    python bench/capture.py --part fit              # Spot: pinhole vs imported OPENCV / fisheye (~6 min)

memory: a synthetic COLMAP capture written directly (no rendering): ``--views`` cameras on a circle
looking at the origin, each with its own OPENCV lens (k1 = -0.1 - 0.001 i, k2 = 0.02, p1 = 0.0005,
p2 = -0.0005: one undistortion map per view, as COLMAP's per-image cameras give), a few JPEG photos
(a studio-wall background with a shaded disc, quality 92) copied under every view's name, and PNG
masks (COLMAP's ``NAME.jpg.png``). Each import runs in its own process; its peak resident memory
is that process's ``VmHWM`` (``ru_maxrss`` would count the parent's pages copied at the fork), next
to the same process's after only importing meshfit (jax, pycolmap, cv2). The photos were just
written, so they are read from the page cache. Everything is written under a temporary folder and
deleted.

fit: Spot (meshfit/data/spot.obj), 16 pyrender views at 256^2 (seed 0) as the pinhole truth; the
same cameras through an OPENCV lens (k1 -0.25, k2 0.05, p1 0.001, p2 -0.001) and an OPENCV_FISHEYE
lens (k1 0.08, k2 0.01) with meshfit.capture.synthetic.make_capture, imported with their masks.
Each dataset is fitted by ``meshfit fit free_mesh`` from the masks alone (every stage's depth
weight 0), and so is the baseline that ignores the lens (the distorted masks with the pinhole
cameras). Mask IoU is against meshfit's own render of the true mesh through the dataset's cameras;
accuracy is meshfit eval's (RMS point-to-mesh, normal consistency, Chamfer-L1, in units of the
truth's bounding radius) and the fitted bounding radius over the truth's (a lens ignored changes
the object's size, which silhouette-only RMS, dominated by unseen concavities, barely shows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPOT = REPO / "meshfit" / "data" / "spot.obj"
OPENCV = [-0.25, 0.05, 0.001, -0.001]
FISHEYE = [0.08, 0.01]
NO_DEPTH = [f"stages.{i}.weights.depth=0" for i in range(3)]


def _machine() -> str:
    import cv2
    import jax
    import pycolmap

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}, "
        f"Python {platform.python_version()}, jax {jax.__version__}, pycolmap {pycolmap.__version__}, "
        f"OpenCV {cv2.__version__}"
    )


# ---- memory: a big capture, written directly -----------------------------------------------------


def write_big_capture(
    out: Path, views: int, width: int, height: int, *, variants: int = 4, shared_lens: bool = False
) -> dict:
    """A COLMAP binary model + images/ (JPEG) + masks/ (PNG) of a sphere of radius 1 at the origin
    seen by ``views`` cameras on a circle of radius 4 (see the module docstring); ``shared_lens``:
    one COLMAP camera (k1 = -0.1) for every image, so one undistortion map serves all."""
    import cv2
    import pycolmap

    import meshfit
    from meshfit.capture.synthetic import background_plate
    from meshfit.io.lens import lens_from_opencv

    t0 = time.perf_counter()
    angles = 2 * np.pi * np.arange(views) / views
    eyes = np.stack([4 * np.cos(angles), np.full(views, 0.8), 4 * np.sin(angles)], 1)
    cams = meshfit.look_at(eyes.astype(np.float32), width=width, height=height, fov=60.0)
    K = np.asarray(cams.K, np.float64)
    w2c = np.asarray(cams.world_to_camera, np.float64)
    # The sphere's outline: a disc of radius f R / sqrt(d^2 - R^2) around the principal point.
    r = K[0, 0, 0] / np.sqrt(np.sum(eyes[0] ** 2) - 1.0)
    cx, cy = K[0, 0, 2], K[0, 1, 2]
    v, u = np.ogrid[:height, :width]
    disc = (u - cx) ** 2 + (v - cy) ** 2 <= r * r
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    photos = []
    for k in range(variants):
        photo = background_plate(width, height, seed=k)
        shade = np.clip(0.6 + 0.4 * ((u - cx) / r * 0.5 - (v - cy) / r * 0.5), 0.2, 1.0)
        obj = (np.array([200, 120 + 20 * k, 60]) * shade[..., None]).astype(np.uint8)
        photo[disc] = obj[disc]
        path = out / f"photo{k}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        photos.append(path)
        del photo, obj
    mask_path = out / "mask.png"
    cv2.imwrite(str(mask_path), disc.astype(np.uint8) * 255)
    rec = pycolmap.Reconstruction()
    names = []
    for i in range(views):
        name = f"IMG_{i:04d}.jpg"
        names.append(name)
        shutil.copyfile(photos[i % variants], out / "images" / name)
        shutil.copyfile(mask_path, out / "masks" / f"{name}.png")
        cid = 1 if shared_lens else i + 1
        if cid == i + 1:
            k1 = -0.1 if shared_lens else -0.1 - 0.001 * i
            lens = lens_from_opencv(K[i], width, height, [k1, 0.02, 0.0005, -0.0005])
            rec.add_camera_with_trivial_rig(
                pycolmap.Camera(model=lens.model, width=lens.width, height=lens.height,
                                params=list(lens.params), camera_id=cid)
            )  # fmt: skip
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[i][:3, :3]), w2c[i][:3, 3])
        rec.add_image_with_trivial_frame(pycolmap.Image(name=name, camera_id=cid, image_id=i + 1), pose)
    model = out / "sparse" / "0"
    model.mkdir(parents=True)
    rec.write_binary(str(model))
    for p in [*photos, mask_path]:
        p.unlink()
    jpeg = sum(f.stat().st_size for f in (out / "images").iterdir()) / views
    return {"seconds": time.perf_counter() - t0, "jpeg_mb": jpeg / 1e6, "disc_px": float(r)}


_CHILD = """
import json, sys, time
import meshfit.capture, cv2, pycolmap

def hwm():  # this process's peak resident set (ru_maxrss would count the parent's, copied at fork)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))

base = hwm()
if sys.argv[1] != "-":
    t0 = time.perf_counter()
    report = meshfit.capture.import_capture(sys.argv[1], sys.argv[2], size=json.loads(sys.argv[3]),
                                            progress=False)
    seconds = time.perf_counter() - t0
else:
    report, seconds = {"warnings": [], "size": None}, 0.0
peak = hwm()
print(json.dumps({"seconds": seconds, "base_kb": base, "peak_kb": peak, "warnings": report["warnings"],
                  "size": report["size"]}))
"""


def _child(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True)
    if r.returncode:
        sys.stderr.write(r.stderr)
        raise RuntimeError(f"import_capture failed (exit {r.returncode}); its stderr is above")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _du(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def part_memory(args, tmp: Path) -> list[dict]:
    W, H = args.photo
    cap = tmp / "big"
    print(f"\nwriting a {args.views}-view {W}x{H} capture under {cap} ...", flush=True)
    made = write_big_capture(cap, args.views, W, H, shared_lens=args.shared_lens)
    print(
        f"  {made['seconds']:.0f} s; JPEG {made['jpeg_mb']:.1f} MB per photo, object disc radius "
        f"{made['disc_px']:.0f} px",
        flush=True,
    )
    base = _child("-")
    print(
        f"  a process that only imports meshfit.capture: peak RSS {base['peak_kb'] / 1024:.0f} MB", flush=True
    )
    rows = []
    for s in args.sizes:
        size = None if s == "full" else int(s)
        runs = []
        for k in range(args.runs):
            out = tmp / f"out_{s}_{k}"
            r = _child(str(cap), str(out), json.dumps(size))
            r["disk_mb"] = _du(out)
            runs.append(r)
            print(
                f"  --size {s} run {k + 1}: {r['seconds']:.1f} s, peak RSS {r['peak_kb'] / 1024:.0f} MB, "
                f"output {r['size'][0]}x{r['size'][1]}, {r['disk_mb']:.0f} MB on disk, "
                f"{len(r['warnings'])} warnings",
                flush=True,
            )
            for w in r["warnings"][:3]:
                print(f"    warning: {w}")
            shutil.rmtree(out)
        seconds = float(np.median([r["seconds"] for r in runs]))
        rows.append({
            "size": s, "out": "x".join(map(str, runs[0]["size"])), "views": args.views,
            "seconds": seconds, "per_view": seconds / args.views,
            "peak_mb": max(r["peak_kb"] for r in runs) / 1024, "base_mb": runs[0]["base_kb"] / 1024,
            "disk_mb": runs[0]["disk_mb"], "runs": len(runs), "warnings": len(runs[0]["warnings"]),
        })  # fmt: skip
    shutil.rmtree(cap)
    lenses = "one OPENCV lens shared by all views" if args.shared_lens else "one OPENCV lens per view"
    print(f"\n{args.views} views, {W}x{H} JPEG photos + PNG masks, {lenses}")
    print("\n| --size | output | total s | s per view | peak RSS MB | after loading meshfit, MB | "
          "output on disk MB |\n|---|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for r in rows:
        print(f"| {r['size']} | {r['out']} | {r['seconds']:.1f} | {r['per_view']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['base_mb']:.0f} | {r['disk_mb']:.0f} |")  # fmt: skip
    if args.runs > 1:
        print(f"(median of {args.runs} runs; peak RSS the largest)")
    return rows


# ---- fit: pinhole truth vs imported distorted captures ------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a & b).sum(1) / np.maximum((a | b).sum(1), 1)


def _truth_masks(cameras) -> np.ndarray:
    import meshfit
    from meshfit.render.views import render_views

    return np.asarray(render_views(meshfit.load_mesh(SPOT), cameras).mask).astype(bool)


def _fit(data: Path, out: Path) -> dict:
    cmd = ["meshfit", "fit", "free_mesh", "--data", str(data), "--out", str(out), "--gt", str(SPOT),
           *(x for s in NO_DEPTH for x in ("--set", s)), "--quiet"]  # fmt: skip
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.stderr.write(r.stdout + r.stderr)
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {r.returncode}); its output is above")
    import meshfit

    m = json.loads((out / "metrics.json").read_text())
    g = m["ground_truth"]
    # The fitted mesh's size against the truth's (bounding spheres): a lens ignored shrinks or grows it.
    size = meshfit.bounding_sphere(meshfit.load_mesh(out / "mesh.obj").vertices)[1]
    size /= meshfit.bounding_sphere(meshfit.load_mesh(SPOT).vertices)[1]
    return {"rms": g["rms_point_to_mesh"], "nc": g["normal_consistency"], "f1": g["fscore_1pct"],
            "chamfer": g["chamfer_l1"], "size": float(size), "fit_iou": m["images"]["mask_iou_mean"],
            "seconds": m["seconds"], "compile_seconds": m["compile_seconds"], "wall": wall,
            "warnings": m["warnings"]}  # fmt: skip


def part_fit(args, tmp: Path) -> list[dict]:
    import meshfit
    from meshfit.capture import import_capture
    from meshfit.capture.synthetic import make_capture
    from meshfit.io import write_image
    from meshfit.io.lens import lens_from_opencv

    S = args.fit_size
    pin = tmp / "pinhole"
    t0 = time.perf_counter()
    meshfit.synthesize(SPOT, pin, views=16, size=(S, S), seed=0)
    truth = meshfit.load_views(pin)
    print(f"\nsynthesized Spot, 16 views at {S}^2 ({time.perf_counter() - t0:.1f} s)", flush=True)
    datasets = [("pinhole (truth)", pin, _iou(truth.mask, _truth_masks(truth.cameras)))]
    lenses = {
        "OPENCV k1 -0.25, k2 0.05, p1 0.001, p2 -0.001": lambda K: lens_from_opencv(K, S, S, OPENCV),
        "OPENCV_FISHEYE k1 0.08, k2 0.01": lambda K: lens_from_opencv(K, S, S, FISHEYE, fisheye=True),
    }
    truth_pin = _truth_masks(truth.cameras)
    for i, (label, lens_for) in enumerate(lenses.items()):
        cap, imp = tmp / f"capture{i}", tmp / f"imported{i}"
        t0 = time.perf_counter()
        made = make_capture(SPOT, truth.cameras, cap, lens_for)
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = import_capture(cap, imp, masks=cap / "masks", progress=False)
        t_import = time.perf_counter() - t0
        views = meshfit.load_views(imp)
        iou = _iou(views.mask, _truth_masks(views.cameras))
        K = np.asarray(views.cameras.K)[0]
        print(
            f"{label}: capture {t_make:.1f} s, import {t_import:.2f} s; imported pinhole f "
            f"{K[0, 0]:.1f} px (truth {float(truth.cameras.K[0, 0, 0]):.1f}), "
            f"{len(report['warnings'])} warnings",
            flush=True,
        )
        for w in report["warnings"]:
            print(f"  warning: {w}")
        # The baseline that ignores the lens: the distorted photos and masks, the pinhole cameras.
        raw = tmp / f"ignored{i}"
        (raw / "mask").mkdir(parents=True)
        (raw / "rgb").mkdir()
        shutil.copyfile(pin / "cameras.json", raw / "cameras.json")
        masks = []
        for name in made["names"]:
            stem = Path(name).stem
            m = meshfit.read_image(cap / "masks" / f"{name}.png")[..., 0] > 0.5
            masks.append(m)
            write_image(raw / "mask" / f"{stem}.png", m.astype(np.uint8) * 255)
            shutil.copyfile(cap / "images" / name, raw / "rgb" / f"{stem}.png")
        ignored = _iou(np.stack(masks), truth_pin)
        short = label.split(" ")[0]
        datasets.append((f"{short} imported", imp, iou))
        datasets.append((f"{short} lens ignored (distorted masks, pinhole cameras)", raw, ignored))
    rows = []
    for label, data, iou in datasets:
        if args.no_baseline_fits and "ignored" in label:
            r = None
        else:
            print(f"fitting {label} ...", flush=True)
            r = _fit(data, tmp / ("fit_" + data.name))
            print(
                f"  RMS {r['rms']:.5f}, NC {r['nc']:.4f}, Chamfer-L1 {r['chamfer']:.5f}, F@1% {r['f1']:.4f}, "
                f"size {r['size']:.4f}, fit IoU {r['fit_iou']:.4f}, "
                f"{r['seconds']:.1f} s (+{r['compile_seconds']:.1f} s compile, {r['wall']:.0f} s wall)",
                flush=True,
            )
            for w in r["warnings"]:
                print(f"  warning: {w}")
        rows.append({"dataset": label, "iou_mean": float(iou.mean()), "iou_min": float(iou.min()), "fit": r})
    print(f"\nSpot, 16 views at {S}^2, free mesh from a sphere, silhouettes only (depth weight 0)")
    print("\n| dataset | mask IoU vs truth, mean / min | fit RMS | NC | Chamfer-L1 | size / truth | "
          "fit s (+ compile) |\n|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for r in rows:
        f = r["fit"]
        fit = (f"{f['rms']:.5f} | {f['nc']:.4f} | {f['chamfer']:.5f} | {f['size']:.4f} | "
               f"{f['seconds']:.1f} (+{f['compile_seconds']:.1f})" if f else "— | — | — | — | —")  # fmt: skip
        print(f"| {r['dataset']} | {r['iou_mean']:.4f} / {r['iou_min']:.4f} | {fit} |")
    base = rows[0]["fit"]["rms"]
    print()
    for r in rows[1:]:
        if r["fit"]:
            c = r["fit"]["chamfer"] / rows[0]["fit"]["chamfer"]
            print(
                f"{r['dataset']}: RMS / pinhole RMS = {r['fit']['rms'] / base:.3f}, Chamfer-L1 ratio {c:.3f}"
            )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["memory", "fit", "all"], default="all")
    p.add_argument("--views", type=int, default=50, help="memory: number of views")
    p.add_argument("--photo", type=int, nargs=2, default=(6000, 4000), metavar=("W", "H"),
                   help="memory: photo size")  # fmt: skip
    p.add_argument("--sizes", nargs="+", default=["1024", "2048"],
                   help="memory: --size values to import with ('full': no --size)")  # fmt: skip
    p.add_argument("--shared-lens", action="store_true", help="memory: one COLMAP camera for all views")
    p.add_argument("--runs", type=int, default=1, help="memory: imports per size (median time)")
    p.add_argument("--fit-size", type=int, default=256, help="fit: image side")
    p.add_argument(
        "--no-baseline-fits", action="store_true", help="fit: skip fitting the lens-ignored baselines"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    print(f"# {_machine()}", flush=True)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="meshfit-bench-capture-") as tmp:
        if args.part in ("memory", "all"):
            figures["memory"] = part_memory(args, Path(tmp))
        if args.part in ("fit", "all"):
            figures["fit"] = part_fit(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

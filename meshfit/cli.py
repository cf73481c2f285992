"""The ``meshfit`` command line: thin wrappers that parse arguments and call one library function."""

from __future__ import annotations

import argparse
import sys


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"size must be W or WxH with positive integers; got {text!r}")
    return parts[0], parts[1]


def _cmd_synth(args: argparse.Namespace) -> None:
    from meshfit.synth import synthesize

    texture = args.texture if isinstance(args.texture, str) else None
    out = synthesize(
        args.mesh, args.out, views=args.views, size=args.size, seed=args.seed,
        textured=args.texture is not None, texture=texture, distance=args.distance,
        fov=args.fov, overwrite=args.overwrite,
    )  # fmt: skip
    print(f"wrote {args.views} views of {args.mesh} to {out}")


def _cmd_render(args: argparse.Namespace) -> None:
    from meshfit.io import atomic_dir, load_cameras, load_mesh, save_cameras, write_views
    from meshfit.render import render_views

    mesh = load_mesh(args.mesh, texture=args.texture if isinstance(args.texture, str) else None)
    cams, names = load_cameras(args.cameras)
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        views = render_views(mesh, cams, near=args.near, far=args.far, textured=args.texture is not None)
        write_views(tmp, names, rgb=views.rgb, mask=views.mask, depth=views.depth, normal=views.normal)
        save_cameras(tmp / "cameras.json", cams, names=names)
    print(f"wrote {len(names)} views of {args.mesh} rendered by meshfit to {args.out}")


def _cmd_eval(args: argparse.Namespace) -> None:
    import json

    from meshfit.io import load_mesh
    from meshfit.metrics import evaluate

    result = evaluate(load_mesh(args.pred), load_mesh(args.gt), num_samples=args.samples, seed=args.seed)
    print(json.dumps(result, indent=1))


def _cmd_fit(args: argparse.Namespace) -> None:
    from meshfit.config import apply_overrides, load_yaml
    from meshfit.pipeline import fit_folder

    data = apply_overrides(load_yaml(args.config), args.set)
    metrics = fit_folder(
        data,
        args.data,
        args.out,
        model=args.model,
        gt=args.gt,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    _summary(metrics, args.out)


def _summary(metrics: dict, out) -> None:
    from pathlib import Path

    im = metrics["images"]
    print(
        f"fitted in {metrics['seconds']:.1f} s (+{metrics['compile_seconds']:.1f} s compile), "
        f"{metrics['steps']} steps; "
        f"silhouette IoU mean {im['mask_iou_mean']:.4f}, min {im['mask_iou_min']:.4f}"
    )
    if "ground_truth" in metrics:
        g = metrics["ground_truth"]
        print(
            f"against the ground truth (unit-sphere units): RMS point-to-mesh {g['rms_point_to_mesh']:.5f}, "
            f"normal consistency {g['normal_consistency']:.4f}, Chamfer-L1 {g['chamfer_l1']:.5f}, "
            f"F-score@1% {g['fscore_1pct']:.4f}"
        )
    out = Path(out)
    print(f"wrote {out / 'mesh.obj'}, params.json, metrics.json; report: {(out / 'report.html').resolve()}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from pathlib import Path

    from meshfit.config import apply_overrides, load_yaml
    from meshfit.pipeline import check_output_folder, fit_folder
    from meshfit.synth import synthesize

    config = Path(__file__).resolve().parents[1] / "configs" / "free_mesh.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: the demo runs from a source checkout (pip install -e)")
    mesh = Path(__file__).resolve().parent / "data" / "spot.obj"
    out = Path(args.out)
    check_output_folder(out, args.overwrite)
    data = out.parent / (out.name + "_data")
    print(f"1/2 rendering {args.views} views of Spot at {args.size}x{args.size} with pyrender -> {data}")
    synthesize(mesh, data, views=args.views, size=(args.size, args.size), seed=args.seed, overwrite=True)
    print("2/2 fitting a sphere to them (configs/free_mesh.yaml)")
    config_data = apply_overrides(load_yaml(config), args.set)
    metrics = fit_folder(config_data, data, out, gt=mesh, overwrite=args.overwrite, progress=not args.quiet)
    _summary(metrics, out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshfit", description="Differentiable mesh fitting in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render reference views of a mesh with pyrender (OpenGL)")
    p.add_argument("mesh", help="mesh file (OBJ, PLY, STL, OFF, GLB/glTF)")
    p.add_argument("--views", type=int, default=16, help="number of cameras (default 16)")
    p.add_argument("--size", type=_size, default=(256, 256), help="image size W or WxH (default 256)")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--seed", type=int, default=0, help="turns the camera rig (default 0)")
    p.add_argument(
        "--texture", nargs="?", const=True, default=None, metavar="IMAGE",
        help="render the mesh's texture; IMAGE binds one to a mesh without a material",
    )  # fmt: skip
    p.add_argument("--distance", type=float, default=None, help="camera distance from the mesh centre")
    p.add_argument("--fov", type=float, default=45.0, help="horizontal field of view, degrees (default 45)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("render", help="render a mesh with meshfit's rasterizer for the cameras of a dataset")
    p.add_argument("mesh", help="mesh file (OBJ, PLY, STL, OFF, GLB/glTF)")
    p.add_argument("--cameras", required=True, help="cameras.json, transforms.json or a COLMAP model folder")
    p.add_argument(
        "--out", required=True, help="folder to create: rgb/, mask/, depth/, normal/, cameras.json"
    )
    p.add_argument(
        "--texture", nargs="?", const=True, default=None, metavar="IMAGE",
        help="render the mesh's texture; IMAGE binds one to a mesh without a material",
    )  # fmt: skip
    p.add_argument("--near", type=float, default=None, help="near plane (default: from the mesh's bounds)")
    p.add_argument("--far", type=float, default=None, help="far plane (default: from the mesh's bounds)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("eval", help="compare a mesh with the ground truth; prints metrics as JSON")
    p.add_argument("pred", help="predicted mesh file")
    p.add_argument("gt", help="ground-truth mesh file")
    p.add_argument("--samples", type=int, default=30_000, help="surface samples per mesh (default 30000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("fit", help="fit a mesh, blendshape model or pose to a dataset, as a config says")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--data", required=True, help="dataset: cameras + rgb/, mask/, depth/ (synth's layout)")
    p.add_argument("--out", required=True, help="output folder to create")
    p.add_argument("--model", default=None, help="rigid: the known mesh; blendshapes: model folder or .npz; "
                   "free_mesh: optional initial mesh")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. stages.0.steps=100 (repeatable)")  # fmt: skip
    p.add_argument("--gt", default=None, help="ground-truth mesh: add eval's metrics to metrics.json")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("demo", help="render Spot (built in) with pyrender, fit a sphere to it, report")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo; data in OUT_data)")
    p.add_argument("--views", type=int, default=16, help="number of views (default 16)")
    p.add_argument("--size", type=int, default=256, help="image size (default 256)")
    p.add_argument("--seed", type=int, default=0, help="turns the camera rig (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as e:
        print(f"meshfit {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

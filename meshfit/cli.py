"""The ``meshfit`` command line: thin wrappers that parse arguments and call one library function."""

from __future__ import annotations

import argparse
import re
import sys
import warnings


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


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number; got {text!r}")
    return n


def _light(text: str) -> tuple[list[float], float]:
    """``--light X,Y,Z[:INTENSITY]`` -> (direction, intensity)."""
    from meshfit import synth

    direction, _, intensity = text.partition(":")
    try:
        d = [float(x) for x in direction.split(",")]
        i = float(intensity) if intensity else synth.LIGHT_INTENSITY
    except ValueError:
        d, i = [], 0.0
    if len(d) != 3:
        raise ValueError(
            f"--light must be X,Y,Z or X,Y,Z:INTENSITY (the direction the light travels); got {text!r}"
        )
    return d, i


def _mesh_file(text: str) -> str:
    """A MESH argument: a mesh file, or ``spot`` for the Spot packaged with meshfit (the demo's)
    when no file of that name is at hand."""
    from pathlib import Path

    if text == "spot" and not Path(text).exists():
        return str(_packaged_spot())
    return text


def _packaged_spot():
    from pathlib import Path

    return Path(__file__).resolve().parent / "data" / "spot.obj"


def _cmd_synth(args: argparse.Namespace) -> None:
    from meshfit import synth
    from meshfit.synth import synthesize

    texture = args.texture if isinstance(args.texture, str) else None
    if args.plate is not None and args.background is not None:
        raise ValueError("--plate and --background both set what lies behind the mesh; give one")
    background = (0.0, 0.0, 0.0)
    if args.background is not None:
        from meshfit.capture.masks import parse_colour

        try:
            background = tuple(c / 255.0 for c in parse_colour(args.background))
        except ValueError:
            raise ValueError(
                f"--background must be #RRGGBB or R,G,B (0..255); got {args.background!r}"
            ) from None
    cameras = names = None
    if args.cameras is not None:
        from meshfit.io import load_cameras

        given = [f"--{k}" for k in ("views", "size", "distance", "fov") if getattr(args, k) is not None]
        if given:
            raise ValueError(f"--cameras gives the views, their size and placement; drop {', '.join(given)}")
        cameras, names = load_cameras(args.cameras)
    lights = synth.DEFAULT_LIGHTS if not args.light else [_light(text) for text in args.light]
    out = synthesize(
        args.mesh, args.out, views=args.views or 16, size=args.size or (256, 256), seed=args.seed,
        textured=args.texture is not None, texture=texture, distance=args.distance,
        fov=args.fov or 45.0, overwrite=args.overwrite, cameras=cameras, names=names,
        landmarks=args.landmarks, landmark_noise=args.landmark_noise,
        landmark_outliers=args.landmark_outliers, background=background, plate=args.plate,
        lights=lights, ambient=synth.AMBIENT if args.ambient is None else args.ambient,
    )  # fmt: skip
    count = len(names) if names is not None else args.views or 16
    print(f"wrote {count} views of {args.mesh} to {out}")


def _cmd_render(args: argparse.Namespace) -> None:
    from meshfit.io import atomic_dir, check_output_dir, load_cameras, load_mesh, save_cameras, write_views
    from meshfit.render import render_views

    texture = args.texture if isinstance(args.texture, str) else None
    inputs = [args.mesh, args.cameras, texture]
    check_output_dir(args.out, overwrite=args.overwrite, inputs=inputs)
    mesh = load_mesh(args.mesh, texture=texture)
    cams, names = load_cameras(args.cameras)
    with atomic_dir(args.out, overwrite=args.overwrite, inputs=inputs, kind="render") as tmp:
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


def _devices(count: int | None):
    if not count:
        return None
    import jax

    available = jax.devices()
    if count > len(available):
        raise ValueError(
            f"--devices {count}: only {len(available)} jax devices here "
            "(on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N)"
        )
    return available[:count]


def _cmd_import(args: argparse.Namespace) -> None:
    from meshfit.capture import import_capture

    report = import_capture(
        args.capture, args.out, size=args.size, crop=args.crop, images=args.images, masks=args.masks,
        plates=args.plates, chroma=args.chroma, chroma_tolerance=args.chroma_tolerance,
        overwrite=args.overwrite, progress=not args.quiet,
    )  # fmt: skip
    _import_summary(report, args.out)


def _import_summary(report: dict, out) -> None:
    import statistics
    from pathlib import Path

    w, h = report["size"]
    print(
        f"imported {len(report['views'])} views ({report['kind']}, {len(report['cameras'])} distinct "
        f"lens(es) -> pinhole) at {w}x{h} in {report['seconds']:.1f} s -> {out}"
    )
    reproj = [v["reprojection"]["mean_px"] for v in report["views"].values() if "reprojection" in v]
    if reproj:
        print(
            f"COLMAP points reproject {statistics.median(reproj):.3f} px from their observations "
            "(median over views)"
        )
    print(f"checks: {Path(out) / 'import.json'}; masks at a glance: {(Path(out) / 'masks.png').resolve()}")
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)


def _cmd_fit(args: argparse.Namespace) -> None:
    from pathlib import Path

    from meshfit.capture import import_capture, is_capture
    from meshfit.fitting import fit_folder, load_config
    from meshfit.io import check_output_dir

    data, config_path = load_config(args.config, args.set, kind="fit")
    data_dir = args.data
    if is_capture(args.data):
        out = Path(args.out)
        check_output_dir(out, overwrite=args.overwrite, inputs=[args.data, config_path])
        data_dir = out.parent / (out.name + "_data")
        print(f"{args.data} is a capture: importing it with the defaults (meshfit import) -> {data_dir}")
        _import_summary(
            import_capture(args.data, data_dir, overwrite=args.overwrite, progress=not args.quiet), data_dir
        )
    metrics = fit_folder(
        data, data_dir, args.out, model=args.model, gt=args.gt, overwrite=args.overwrite,
        progress=not args.quiet, inputs=(config_path,), command=args.command_line,
        devices=_devices(args.devices), init=args.init,
    )  # fmt: skip
    _summary(metrics, args.out)


def _cmd_train(args: argparse.Namespace) -> None:
    from pathlib import Path

    from meshfit.amortize import train_folder
    from meshfit.fitting import load_config

    data, config_path = load_config(args.config, args.set, kind="train")
    summary = train_folder(
        data, args.model, args.cameras, args.out, resume=args.resume, overwrite=args.overwrite,
        progress=not args.quiet, devices=_devices(args.devices), config_path=config_path,
        command=args.command_line, data=args.data, init=args.init, corrects=args.corrects,
    )  # fmt: skip
    v = summary["validation"]
    print(
        f"trained {summary['steps']} steps in {summary['seconds']:.0f} s "
        f"({summary['samples_per_s']:.1f} samples/s); "
        f"validation: vertex error mean {v['vertex_pct']['mean']:.3f}% of the diagonal, rotation median "
        f"{v['rotation_deg']['median']:.2f} deg, centre median {v['centre_pct']['median']:.2f}% "
        "of the diameter"
    )
    print(f"report: {(Path(args.out) / 'report.html').resolve()}")


def _distributed(args: argparse.Namespace) -> None:
    """Join a multi-process training (``jax.distributed``): before JAX touches a device."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if all(x is None for x in given):
        return
    if any(x is None for x in given):
        raise ValueError("a multi-process run needs --coordinator, --num-processes and --process-id together")
    if not 0 <= args.process_id < args.num_processes:
        raise ValueError(f"--process-id must be in 0..{args.num_processes - 1}; got {args.process_id}")
    import jax

    # CPU processes exchange gradients through gloo (XLA's CPU collectives); GPUs use NCCL.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=args.coordinator, num_processes=args.num_processes, process_id=args.process_id
    )


def _cmd_predict(args: argparse.Namespace) -> None:
    from meshfit.amortize.predict import predict_folder

    metrics = predict_folder(
        args.run, args.data, args.out, refine=args.refine, overwrite=args.overwrite, progress=not args.quiet,
        checkpoint=args.checkpoint, command=args.command_line,
    )  # fmt: skip
    net = metrics["network"]
    print(
        f"network: {net['per_frame_ms']:.1f} ms per frame (+{net['compile_seconds']:.1f} s compile), "
        f"checkpoint of step {net['step']}"
    )
    _summary(metrics, args.out)


def _cmd_export(args: argparse.Namespace) -> None:
    from meshfit.export import write_native, write_onnx

    if args.format == "gltf":
        from meshfit.export import write_gltf

        if args.quant != "fp32" or args.basis is not None:
            raise ValueError("--quant and --basis are for --format native")
        out = write_gltf(args.run, args.out, model=args.model, fps=args.fps, overwrite=args.overwrite)
        what = f", {out['targets']} morph targets" if out["targets"] else ""
        anim = f", {out['frames']} frames at {args.fps:g} fps" if out["frames"] > 1 else ""
        print(f"wrote {out['path']}: {out['bytes'] / 1024:.0f} KiB, {out['kind']}{what}{anim}")
        return
    if args.model is not None:
        raise ValueError("--model is for --format gltf (a training run knows its model)")
    if args.format == "onnx":
        if args.quant != "fp32" or args.basis is not None:
            raise ValueError(
                "--format onnx writes the fp32 network; --quant and --basis are for --format native"
            )
        out = write_onnx(args.run, args.out, checkpoint=args.checkpoint, overwrite=args.overwrite)
        print(f"wrote {out['path']}: {out['bytes'] / 1024:.0f} KiB, ONNX opset {out['opset']}")
        return
    out = write_native(args.run, args.out, quant=args.quant, basis=args.basis, checkpoint=args.checkpoint,
                       overwrite=args.overwrite)  # fmt: skip
    print(
        f"wrote {out['path']}: {out['bytes'] / 1024:.0f} KiB ({out['quant']} network "
        f"{out['network_bytes'] / 1024:.0f} KiB, model {out['model_bytes'] / 1024:.0f} KiB"
        + (f", basis {out['basis']}" if out["basis"] else "")
        + ")"
    )


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"meshfit: warning: {message}", file=sys.stderr)


def _log_to_stderr() -> None:
    """meshfit's notes (a lowered stage resolution, ...) go to stderr, one line each."""
    import logging

    class Stderr(logging.Handler):
        def emit(self, record):  # the stderr of the moment (tests swap it)
            print(f"meshfit: {record.getMessage()}", file=sys.stderr)

    logger = logging.getLogger("meshfit")
    if not any(type(h).__name__ == "Stderr" for h in logger.handlers):
        logger.addHandler(Stderr())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _summary(metrics: dict, out) -> None:
    from pathlib import Path

    im = metrics["images"]
    frames = f" over {metrics['frames']} frames" if "frames" in metrics else ""
    measured = []
    if "mask_iou_mean" in im:
        measured.append(
            f"silhouette IoU{frames} mean {im['mask_iou_mean']:.4f}, min {im['mask_iou_min']:.4f}"
        )
    if "landmarks" in metrics:
        measured.append(f"landmark error median {metrics['landmarks']['error_px_median']:.2f} px")
    print(
        f"fitted in {metrics['seconds']:.1f} s (+{metrics['compile_seconds']:.1f} s compile), "
        f"{metrics['steps']} steps; " + "; ".join(measured)
    )
    if "ground_truth" in metrics:
        g = metrics["ground_truth"]
        print(
            f"against the ground truth (unit-sphere units): RMS point-to-mesh {g['rms_point_to_mesh']:.5f}, "
            f"normal consistency {g['normal_consistency']:.4f}, Chamfer-L1 {g['chamfer_l1']:.5f}, "
            f"F-score@1% {g['fscore_1pct']:.4f}"
        )
    out = Path(out)
    meshes = out / ("meshes/" if "frames" in metrics else "mesh.obj")
    print(f"wrote {meshes}, params.json, metrics.json; report: {(out / 'report.html').resolve()}")
    for w in metrics.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)


def _cmd_demo(args: argparse.Namespace) -> None:
    from pathlib import Path

    from meshfit.fitting import fit_folder, load_config
    from meshfit.io import check_output_dir
    from meshfit.synth import synthesize

    # The shipped config renders 8 of 16 views a step; a demo with fewer views renders them all.
    base, _ = load_config("free_mesh")
    fewer = [f"stages.{i}.views_per_step=null" for i, s in enumerate(base["stages"])
             if (s.get("views_per_step") or 0) > args.views]  # fmt: skip
    config_data, config_path = load_config("free_mesh", [*fewer, *args.set])
    if args.views < 2:
        raise ValueError(f"--views {args.views}: the demo needs at least two views to place the object")
    mesh = _packaged_spot()
    out = Path(args.out)
    data = out.parent / (out.name + "_data")
    check_output_dir(out, overwrite=args.overwrite, inputs=[data])
    try:  # the demo's own data folder, replaced on every run if meshfit made it
        check_output_dir(data, overwrite=True, inputs=[out])
    except ValueError as e:
        raise ValueError(f"the demo writes its data to {data}, which it cannot use: {e}") from e
    print(f"1/2 rendering {args.views} views of Spot at {args.size}x{args.size} with pyrender -> {data}")
    synthesize(mesh, data, views=args.views, size=(args.size, args.size), seed=args.seed, overwrite=True)
    print(f"2/2 fitting a sphere to them ({config_path.name}, shipped with meshfit)")
    metrics = fit_folder(config_data, data, out, gt=mesh, overwrite=args.overwrite, progress=not args.quiet,
                         command=args.command_line)  # fmt: skip
    _summary(metrics, out)


def _cmd_info(args: argparse.Namespace) -> None:
    from meshfit.info import describe

    print(describe())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshfit", description="Differentiable mesh fitting in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render reference views of a mesh with pyrender (OpenGL)")
    p.add_argument("mesh", type=_mesh_file,
                   help="mesh file (OBJ, PLY, STL, OFF, GLB/glTF), or 'spot' (packaged)")  # fmt: skip
    p.add_argument("--views", type=_count, default=None, help="number of cameras (default 16)")
    p.add_argument("--size", type=_size, default=None, help="image size W or WxH (default 256)")
    p.add_argument("--cameras", default=None, metavar="RIG",
                   help="render through these cameras (cameras.json, transforms.json, COLMAP model) "
                   "instead of a sphere of --views")  # fmt: skip
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--seed", type=int, default=0, help="turns the camera rig (default 0)")
    p.add_argument(
        "--texture", nargs="?", const=True, default=None, metavar="IMAGE",
        help="render the mesh's texture; IMAGE binds one to a mesh without a material",
    )  # fmt: skip
    p.add_argument("--distance", type=float, default=None, help="camera distance from the mesh centre")
    p.add_argument("--fov", type=float, default=None, help="horizontal field of view, degrees (default 45)")
    p.add_argument("--landmarks", default=None, metavar="DEF",
                   help="also write landmarks/: the points of a landmark definition (a blendshape model's "
                   "blendshapes.json, or a JSON of its own) projected into every view")  # fmt: skip
    p.add_argument("--landmark-noise", type=float, default=0.0, metavar="PX",
                   help="Gaussian noise on the landmarks, sigma in pixels (default 0)")  # fmt: skip
    p.add_argument("--landmark-outliers", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of landmarks displaced as a detector's mistakes (default 0)")  # fmt: skip
    p.add_argument("--background", default=None, metavar="COLOUR",
                   help="the colour behind the mesh: #RRGGBB or R,G,B (0..255; default black)")  # fmt: skip
    p.add_argument("--plate", default=None, metavar="IMAGE",
                   help="render over crops of this image instead, and write each view's crop to background/ "
                   "as its clean plate")  # fmt: skip
    p.add_argument("--light", action="append", default=None, metavar="X,Y,Z[:INTENSITY]",
                   help="a directional light: the direction it travels (the mesh's frame) and its strength "
                   "(default 3); repeat for up to 4 (default: one key light -0.3,-0.8,-0.5:3)")  # fmt: skip
    p.add_argument("--ambient", type=float, default=None, help="ambient light strength (default 0.3)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier meshfit output at --out")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("render", help="render a mesh with meshfit's rasterizer for the cameras of a dataset")
    p.add_argument("mesh", type=_mesh_file,
                   help="mesh file (OBJ, PLY, STL, OFF, GLB/glTF), or 'spot' (packaged)")  # fmt: skip
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
    p.add_argument("--overwrite", action="store_true", help="replace an earlier meshfit output at --out")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("eval", help="compare a mesh with the ground truth; prints metrics as JSON")
    p.add_argument("pred", help="predicted mesh file")
    p.add_argument("gt", help="ground-truth mesh file")
    p.add_argument("--samples", type=_count, default=30_000, help="surface samples per mesh (default 30000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("fit", help="fit a mesh, blendshape model or pose to a dataset, as a config says")
    p.add_argument("config", help="YAML config file, or a shipped config's name: free_mesh, "
                   "free_mesh_masks, face_blendshapes, rigid_pose")  # fmt: skip
    p.add_argument("--data", required=True, help="dataset: cameras + rgb/, mask/, depth/ (synth's layout), "
                   "a sequence: cameras + frames/NNNN/{mask,depth,rgb}/, or a capture (imported on the fly "
                   "into OUT_data, as meshfit import does)")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder to create")
    p.add_argument("--model", default=None, help="rigid: the known mesh; blendshapes: model folder or .npz; "
                   "free_mesh: optional initial mesh")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. stages.0.steps=100 (repeatable)")  # fmt: skip
    p.add_argument("--gt", default=None, help="ground-truth mesh: add eval's metrics to metrics.json")
    p.add_argument("--devices", type=_count, default=None, metavar="N",
                   help="a sequence: split its frames over N jax devices")  # fmt: skip
    p.add_argument("--init", default=None, metavar="RUN",
                   help="start from a trained network's prediction (meshfit train's run folder)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an earlier meshfit output at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser(
        "train", help="train a network that predicts a blendshape rig or a rigid pose from views"
    )
    p.add_argument("config", help="YAML training config, or a shipped one: amortize_face, amortize_rigid")
    p.add_argument("--model", required=True, help="blendshapes: model folder or .npz; rigid: the known mesh")
    p.add_argument(
        "--cameras", required=True, help="the rig: cameras.json, transforms.json or a COLMAP model"
    )
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, report.html")
    p.add_argument("--resume", action="store_true", help="continue the run at --out from its last checkpoint")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="fine-tune on an unlabelled dataset through the rig (image terms only)")  # fmt: skip
    p.add_argument("--init", default=None, metavar="RUN", help="start from a trained run's best weights")
    p.add_argument("--corrects", default=None, metavar="RUN",
                   help="train a network that corrects RUN's predictions (a config with "
                   "correction_passes, e.g. amortize_face_correct)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. steps=2000 (repeatable)")  # fmt: skip
    p.add_argument("--devices", type=_count, default=None, metavar="N",
                   help="split each batch over N jax devices (data parallel)")  # fmt: skip
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="several processes (hosts): process 0's address (with the next two)")  # fmt: skip
    p.add_argument("--num-processes", type=_count, default=None, metavar="N", help="processes in all")
    p.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, 0..N-1")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier meshfit output at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "predict", help="predict a dataset with a trained network (meshfit train); writes what fit writes"
    )
    p.add_argument("run", help="training run folder (meshfit train --out)")
    p.add_argument(
        "--data", required=True, help="dataset: one frame, or a sequence (every frame in one batched call)"
    )
    p.add_argument("--out", required=True, help="output folder to create")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="refine: STEPS steps of the run's refine stage (default 0)")  # fmt: skip
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="the checkpoint with the lowest validation error (default), or the last")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an earlier meshfit output at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "export", help="a trained network (meshfit train) as a runtime model file for the C runtime"
    )
    p.add_argument("run", help="native, onnx: a training run folder (meshfit train --out); "
                               "gltf: a meshfit fit or predict output folder")  # fmt: skip
    p.add_argument("--format", choices=("native", "onnx", "gltf"), default="native",
                   help="native: the C runtime's model file (kernels/runtime/meshfit_runtime.h); "
                        "onnx: the network as ONNX (opset 13); gltf: a fit as .glb")  # fmt: skip
    p.add_argument("--model", default=None, help="gltf of a blendshape fit: the model folder or .npz it used")
    p.add_argument(
        "--fps", type=float, default=30.0, help="gltf of a sequence: frames per second (default 30)"
    )
    p.add_argument("--quant", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="the network's weights (int8: symmetric, per output channel)")  # fmt: skip
    p.add_argument("--basis", choices=("fp32", "fp16", "int16"), default=None,
                   help="the blendshape basis (default: as --quant; int16 for int8)")  # fmt: skip
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="the checkpoint with the lowest validation error (default), or the last")  # fmt: skip
    p.add_argument("--out", required=True, help="the model file to write")
    p.add_argument("--overwrite", action="store_true", help="replace a model file meshfit wrote at --out")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import", help="a real capture (COLMAP, transforms.json, cameras.json) -> a dataset")
    p.add_argument("capture", help="capture folder: COLMAP model (sparse/0, binary or text) + images/, "
                   "transforms.json, or cameras.json + rgb/ or images/")  # fmt: skip
    p.add_argument("--out", required=True, help="dataset folder to create (cameras.json, rgb/, mask/, ...)")
    p.add_argument("--size", type=_count, default=None, metavar="S",
                   help="longer image side of the output in pixels (area filter; default: keep)")  # fmt: skip
    p.add_argument("--crop", action="store_true", help="crop every view to the object (needs masks)")
    p.add_argument("--images", default=None, metavar="DIR", help="the photos, if not CAPTURE/images")
    masks = p.add_mutually_exclusive_group()
    masks.add_argument("--masks", default=None, metavar="DIR",
                       help="given masks (NAME.png, NAME.jpg.png or by stem); default: CAPTURE/masks, "
                       "else CAPTURE/plates")  # fmt: skip
    masks.add_argument("--plates", default=None, metavar="DIR",
                       help="clean background plates, one per view: masks from the difference")  # fmt: skip
    masks.add_argument("--chroma", default=None, metavar="COLOUR",
                       help="chroma key: green, blue, #RRGGBB or R,G,B")  # fmt: skip
    p.add_argument("--chroma-tolerance", type=float, default=40.0,
                   help="chroma distance (0..255) that is still the screen (default 40)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an earlier meshfit output at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("demo", help="render Spot (built in) with pyrender, fit a sphere to it, report")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo; data in OUT_data)")
    p.add_argument("--views", type=_count, default=16, help="number of views (default 16)")
    p.add_argument("--size", type=_count, default=256, help="image size (default 256)")
    p.add_argument("--seed", type=int, default=0, help="turns the camera rig (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier meshfit output at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("info", help="what meshfit runs on: version, jax devices, native kernels, OpenGL")
    p.set_defaults(func=_cmd_info)
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--light -0.3,-0.8,-0.5`` as ``--light=-0.3,-0.8,-0.5``: argparse takes a value that starts
    with a minus sign and is not one plain number for an option, and stops with "expected one
    argument"; a light travelling down is the common case."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--light" and i + 1 < len(argv) and re.match(r"-[\d.]", argv[i + 1]):
            out.append(f"--light={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    import shlex

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(argv))
    args.command_line = shlex.join(["meshfit", *argv])
    _log_to_stderr()
    if args.command == "train":
        try:
            _distributed(args)
        except ValueError as e:
            print(f"meshfit train: error: {e}", file=sys.stderr)
            return 2
    if args.command in ("fit", "demo", "render", "train", "predict"):
        import jax

        from meshfit.render import _native

        # Only where they would run: on a GPU every op runs its pure-JAX implementation anyway.
        reason = _native._load() if jax.default_backend() == "cpu" else None
        if reason is not None:
            import logging

            logging.getLogger("meshfit").warning(
                f"native kernels not loaded ({reason}): rendering runs on pure JAX, slower on the CPU"
            )
    try:
        with warnings.catch_warnings():
            # A warning is one line for a person ("meshfit: warning: ..."), not a source listing.
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            args.func(args)
    except KeyboardInterrupt as e:
        print(
            f"meshfit {args.command}: {str(e) or 'interrupted; no half-written output was left'}",
            file=sys.stderr,
        )
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, OSError, FloatingPointError) as e:
        print(f"meshfit {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

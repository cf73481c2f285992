"""The file-level edge of a fit (what ``meshfit fit`` calls): check everything, fit, write OUT.

OUT holds ``mesh.obj`` (a sequence: ``meshes/FRAME.obj``), ``params.json``, ``metrics.json``,
``config.yaml`` (the resolved config), ``history.json`` and ``report.html`` with its pictures. It
appears complete or not at all, and ``--overwrite`` replaces only an earlier meshfit output that is
not an input of this run (``meshfit.io.check_output_dir``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import yaml

from meshfit.config import ConfigError, load_yaml, to_dict
from meshfit.fitting.config import FitConfig
from meshfit.fitting.recipes import FitResult, fit_views
from meshfit.io import (
    atomic_dir,
    check_output_dir,
    is_sequence,
    load_mesh,
    load_sequence,
    load_views,
    save_mesh,
)
from meshfit.metrics import evaluate, image_metrics
from meshfit.models import BlendshapeModel
from meshfit.render.views import render_views

__all__ = [
    "CONFIG_DIR",
    "POOR_FIT_IOU",
    "fit_folder",
    "resolve_config",
    "shipped_configs",
    "write_fit_output",
]

# The configs shipped inside the package (``meshfit fit free_mesh`` finds configs/free_mesh.yaml).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# A fit whose rendered silhouettes overlap the masks less than this (mean IoU) is reported as poor.
POOR_FIT_IOU = 0.8


def shipped_configs(kind: str | None = None) -> list[str]:
    """Names of the configs shipped with meshfit: all, or those of ``kind`` "fit" (``meshfit
    fit``) or "train" (``meshfit train``: the ``amortize_*`` ones)."""
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    if kind is None:
        return names
    if kind not in ("fit", "train"):
        raise ValueError(f"kind must be 'fit' or 'train'; got {kind!r}")
    return [n for n in names if n.startswith("amortize_") == (kind == "train")]


def check_config_kind(data, kind: str, source) -> None:
    """A fit config given to ``meshfit train``, or a training config to ``meshfit fit``, is named
    as such (rather than as a list of unknown keys)."""
    if not isinstance(data, dict):
        return
    is_fit = "stages" in data
    is_train = not is_fit and bool({"sampling", "network", "batch", "validation"} & set(data))
    if kind == "fit" and is_train:
        raise ConfigError(f"{source} is a training config (meshfit train), not a fit config")
    if kind == "train" and is_fit:
        raise ConfigError(f"{source} is a fit config (meshfit fit), not a training config")


def resolve_config(name_or_path: str | os.PathLike, kind: str | None = None) -> Path:
    """A config file: the path itself when it exists, else a shipped config by name
    (``free_mesh`` or ``free_mesh.yaml``). ``kind`` ("fit" or "train"): the shipped configs an
    error lists."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder; expected a YAML config file or one of {shipped_configs(kind)}"
        )
    shipped = CONFIG_DIR / (path.stem + ".yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"config not found: {path} (not a file, nor one of the shipped configs {shipped_configs(kind)})"
    )


def _image_metrics(result: FitResult, views) -> tuple[dict, list]:
    """Per-view image metrics of the fitted mesh (for a sequence, per frame and pooled) and the
    renders (a list per frame for a sequence)."""
    if result.meshes is None:
        rendered = render_views(result.mesh, views.cameras, near=result.near, far=result.far,
                                textured=result.mesh.texture is not None, light=result.params.get("light"),
                                gain=result.params.get("gain"))  # fmt: skip
        return image_metrics(rendered, views), rendered
    frames, renders = [], []
    for t, mesh in enumerate(result.meshes):
        pick = lambda a, t=t: None if a is None else a[t]  # noqa: E731
        frame_views = views._replace(rgb=pick(views.rgb), mask=pick(views.mask), depth=pick(views.depth),
                                     frames=None, landmarks=pick(views.landmarks),
                                     landmark_confidence=pick(views.landmark_confidence))  # fmt: skip
        rendered = render_views(mesh, views.cameras, near=result.near, far=result.far,
                                textured=mesh.texture is not None, light=result.params.get("light"),
                                gain=result.params.get("gain"))  # fmt: skip
        frames.append(image_metrics(rendered, frame_views))
        renders.append(rendered)
    pooled = {"frames": [{"frame": name, **f} for name, f in zip(views.frames, frames)]}
    if views.mask is not None:
        pooled["mask_iou_mean"] = float(np.mean([f["mask_iou_mean"] for f in frames]))
        pooled["mask_iou_min"] = float(np.min([f["mask_iou_min"] for f in frames]))
    if all("depth_rmse" in f for f in frames):
        pooled["depth_rmse"] = float(np.sqrt(np.mean([f["depth_rmse"] ** 2 for f in frames])))
    return pooled, renders


def _landmark_metrics(result: FitResult, views, model) -> dict | None:
    """Reprojection error (pixels) of the fitted model's landmarks against the dataset's
    detections: median, mean, the share within 5 px; None without both."""
    if views.landmarks is None or not getattr(model, "num_landmarks", 0):
        return None
    if views.landmarks.shape[-2] != model.num_landmarks:
        return None
    meshes = result.meshes if result.meshes is not None else [result.mesh]
    points = views.landmarks if views.frames is not None else views.landmarks[None]
    conf = views.landmark_confidence if views.frames is not None else views.landmark_confidence[None]
    errors = []
    for mesh, kp, c in zip(meshes, points, conf):
        uv, depth = views.cameras.project(model.landmark_points(jnp.asarray(mesh.vertices)))
        d = np.linalg.norm(np.asarray(uv) - kp, axis=-1)
        errors.append(d[(c > 0) & (np.asarray(depth) > 0) & np.isfinite(d)])
    e = np.concatenate(errors)
    if not e.size:
        return None
    return {"detections": int(e.size), "error_px_median": float(np.median(e)),
            "error_px_mean": float(e.mean()), "within_5px": float(np.mean(e <= 5.0))}  # fmt: skip


def fit_folder(
    config_data: dict,
    data,
    out,
    *,
    model=None,
    gt=None,
    overwrite: bool = False,
    progress: bool = True,
    inputs: tuple = (),
    command: str | None = None,
    devices=None,
    init=None,
) -> dict:
    """Validate, fit and write OUT.

    Everything that can be checked (config, OUT, dataset, model) is checked before the fit.

    Args:
        config_data: plain config data (parsed YAML, overrides applied) for ``FitConfig``.
        data: dataset folder: one frame (``meshfit.io.load_views``) or a sequence with
            ``frames/`` (``meshfit.io.load_sequence``).
        out: the output folder.
        model: path of the known mesh (rigid), the blendshape model (folder, JSON or .npz), or
            an initial mesh (free mesh, optional).
        gt: ground-truth mesh path (one frame): adds ``metrics.evaluate``'s figures.
        inputs: other paths this run reads (the config file): OUT may not be or contain them.
        command: the command line, recorded in metrics.json and the report.
        devices: a sequence only: split its frames over these jax devices.
        init: a training run folder (``meshfit train``): its network's prediction for the data
            starts the fit (``meshfit fit --init RUN``).
    Returns:
        The metrics written to metrics.json; ``warnings`` lists what a person should know
        (a poor fit, a stage resolution lowered to the data's).
    """
    check_config_kind(config_data, "fit", "the config")
    config = FitConfig.from_dict(config_data)
    if model is not None and config.model == "blendshapes":
        inputs = (*inputs, *BlendshapeModel.source_files(model))
    check_output_dir(out, overwrite=overwrite, inputs=[data, model, gt, init, *inputs])
    views = load_sequence(data) if is_sequence(data) else load_views(data)
    loaded = None
    if model is not None:
        loaded = BlendshapeModel.load(model) if config.model == "blendshapes" else load_mesh(model)
    elif config.model != "free_mesh":
        what = "a mesh file" if config.model == "rigid" else "a blendshape folder or .npz"
        raise ValueError(f"a {config.model} fit needs --model ({what})")
    gt_mesh = load_mesh(gt) if gt is not None else None
    if gt_mesh is not None and views.frames is not None:
        raise ValueError("--gt compares one fitted mesh with one ground truth; this dataset is a sequence")
    start = None
    if init is not None:
        from meshfit.amortize.predict import predict_start

        start = predict_start(init, views, loaded, config.model, progress=progress)
    result = fit_views(config, views, model=loaded, progress=progress, devices=devices, start=start)
    return write_fit_output(
        out, result, views, to_dict(config), data=data, overwrite=overwrite,
        inputs=[data, model, gt, init, *inputs], command=command, gt_mesh=gt_mesh,
        smoothness_unused=bool(config.smoothness and views.frames is None), model=loaded,
    )  # fmt: skip


def write_fit_output(
    out, result: FitResult, views, config: dict, *, data, overwrite: bool, inputs, command: str | None,
    gt_mesh=None, smoothness_unused: bool = False, extra: dict | None = None, model=None,
) -> dict:  # fmt: skip
    """Measure ``result`` against ``views`` and write OUT (atomically): mesh.obj or meshes/,
    params.json, metrics.json, config.yaml, history.json, report.html. What ``meshfit fit`` and
    ``meshfit predict`` write. ``extra``: more entries for metrics.json; ``model``: the fitted
    model, whose landmarks (if any) are measured against the dataset's. Returns the metrics."""
    from meshfit.report import write_report

    if result.keyed_masks is not None and views.mask is None:
        views = views._replace(mask=result.keyed_masks)  # measured against the masks the fit used
    images, rendered = _image_metrics(result, views)
    warnings_ = [h["resolution_note"] for h in result.history if "resolution_note" in h]
    if smoothness_unused:
        warnings_.append(
            "smoothness weighs frame-to-frame change; this dataset has one frame, so it was not used"
        )
    if images.get("mask_iou_mean", 1.0) < POOR_FIT_IOU:
        warnings_.append(
            f"poor fit: the fitted silhouettes overlap the masks with mean IoU {images['mask_iou_mean']:.3f} "
            f"(< {POOR_FIT_IOU}); check the model, the cameras and the config"
        )
    metrics = {
        "seconds": sum(h["seconds"] for h in result.history),
        "compile_seconds": sum(h["compile_seconds"] for h in result.history),
        "steps": sum(h["steps"] for h in result.history),
        "stages": [
            {k: v for k, v in h.items() if k not in ("losses", "term_history")} for h in result.history
        ],
        "images": images,
        "warnings": warnings_,
        "data": str(Path(data).resolve()),
        **({"masks": "keyed from the background plates"} if result.keyed_masks is not None else {}),
        "command": command,
        **(extra or {}),
    }
    if views.frames is not None:
        metrics["frames"] = len(views.frames)
    if gt_mesh is not None:
        metrics["ground_truth"] = evaluate(result.mesh, gt_mesh)
    marks = _landmark_metrics(result, views, model)
    if marks is not None:
        metrics["landmarks"] = marks
    with atomic_dir(out, overwrite=overwrite, inputs=inputs, kind="fit") as tmp:
        if result.meshes is None:
            save_mesh(tmp / "mesh.obj", result.mesh)
        else:
            for name, mesh in zip(views.frames, result.meshes):
                save_mesh(tmp / "meshes" / f"{name}.obj", mesh)
        (tmp / "params.json").write_text(json.dumps(result.params, indent=1) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / "history.json").write_text(json.dumps(result.history) + "\n")
        write_report(tmp, result, views, rendered, metrics, config=config, model=model)
    return metrics


def load_config(name_or_path, overrides=(), kind: str | None = None) -> tuple[dict, Path]:
    """Config data from a file or a shipped config name, with ``key=value`` overrides applied
    (``kind``: "fit" or "train", the shipped configs an unknown name's error lists)."""
    from meshfit.config import apply_overrides

    path = resolve_config(name_or_path, kind)
    return apply_overrides(load_yaml(path), list(overrides)), path

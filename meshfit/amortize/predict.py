"""Predicting with a trained regressor: a dataset in, what ``meshfit fit`` writes out.

``predict_folder`` (``meshfit predict RUN --data DIR --out OUT [--refine STEPS]``) reads a
dataset of one frame, or a sequence (every frame predicted in one batched call), checks that its
cameras are the rig the network was trained for, predicts, optionally refines with the fitting
engine (``fit_views`` from the prediction: the same stage runner as ``meshfit fit``), and writes
mesh.obj (or meshes/), params.json, metrics.json, config.yaml, history.json and report.html.
``predict_start`` gives the start of ``meshfit fit --init RUN``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.amortize.inputs import image_inputs
from meshfit.amortize.run import Regressor
from meshfit.amortize.validation import broadcast_rig
from meshfit.camera import Camera, clip_range
from meshfit.config import to_dict
from meshfit.io import Views, check_output_dir, is_sequence, load_sequence, load_views
from meshfit.mesh import Mesh

__all__ = ["check_cameras", "check_rig", "predict", "predict_folder", "predict_start"]

# How far a dataset's camera may be from the trained rig's nearest one, beyond the training
# jitter: a network predicts for the rig it was trained for.
_POSITION_TOLERANCE = 0.1  # object radii
_ANGLE_TOLERANCE = 3.0  # degrees
_FOCAL_TOLERANCE = 0.05  # relative
_CHUNK = 128  # frames per batched call


def check_rig(reg: Regressor, cameras: Camera, names) -> None:
    """Raise ValueError naming the first view whose camera is not one ``reg`` was trained for."""
    check_cameras(
        reg.rig, reg.names, reg.config.jitter, float(reg.task.radius), reg.path / "rig.json", cameras, names
    )


def check_cameras(rig: Camera, rig_names, jitter, radius: float, where, cameras: Camera, names) -> None:
    """Raise ValueError naming the first view whose camera is not one of ``rig`` (position,
    viewing direction, focal length or image shape beyond the training jitter), with how far off."""
    j, r = jitter, radius
    if abs(cameras.width * rig.height - cameras.height * rig.width) > 0.01 * cameras.width * rig.height:
        raise ValueError(
            f"the dataset's images are {cameras.width}x{cameras.height}; the network was trained for "
            f"{rig.width}x{rig.height} ({where})"
        )
    pos_tol = _POSITION_TOLERANCE + 4 * j.translation
    ang_tol = _ANGLE_TOLERANCE + 4 * j.rotation
    centres = np.asarray(rig.center, np.float64)
    axes = np.asarray(rig.R, np.float64)[:, 2]
    focal = np.asarray(rig.fx, np.float64) / rig.width
    for i, name in enumerate(names):
        cam = cameras[i]
        d = np.linalg.norm(centres - np.asarray(cam.center, np.float64), axis=1) / r
        k = int(np.argmin(d))
        angle = np.degrees(np.arccos(np.clip(np.dot(axes[k], np.asarray(cam.R, np.float64)[2]), -1, 1)))
        f_rel = float(cam.fx) / cameras.width / focal[k] - 1
        if d[k] > pos_tol or angle > ang_tol or abs(f_rel) > _FOCAL_TOLERANCE + 4 * j.focal:
            raise ValueError(
                f"view {name!r}: its camera is {d[k]:.2f} object radii, {angle:.1f} degrees and "
                f"{100 * f_rel:+.1f}% focal length from the nearest camera the network was trained for "
                f"({rig_names[k]!r} in {where}; tolerance {pos_tol:.2f} radii, {ang_tol:.1f} degrees): a "
                "network predicts for the rig it was trained for; train one for this rig"
            )


def _check_model(reg: Regressor, model) -> None:
    """A given model must be the run's (same vertex count)."""
    if model is None:
        return
    v = model.num_vertices
    if v != reg.task.num_vertices:
        raise ValueError(
            f"the model has {v} vertices but the network in {reg.path} predicts a model of "
            f"{reg.task.num_vertices}: use the model it was trained for ({reg.path / 'model.*'})"
        )


def predict(reg: Regressor, views: Views) -> tuple[list[dict], dict]:
    """Predict every frame of ``views`` (one frame, or a sequence) in batched calls.

    Returns (canonical parameters per frame, timing: seconds, compile_seconds, per_frame_ms)."""
    check_rig(reg, views.cameras, views.names)
    if views.mask is None:
        raise ValueError("the network reads masks: the dataset has no mask/ folder")
    sequence = views.frames is not None
    lead = (lambda a: a) if sequence else (lambda a: None if a is None else np.asarray(a)[None])
    mask, rgb, depth = lead(views.mask), lead(views.rgb), lead(views.depth)
    T = mask.shape[0]
    fn = reg.network.predict_jit
    canon, compile_s, run_s = [], 0.0, 0.0
    for a in range(0, T, _CHUNK):
        sl = slice(a, a + _CHUNK)
        inputs, small = image_inputs(
            reg.task, views.cameras, reg.config.inputs, mask=np.asarray(mask[sl], np.float32),
            rgb=None if rgb is None else rgb[sl], depth=None if depth is None else depth[sl],
        )  # fmt: skip
        b, n = inputs.shape[:2]
        args = (reg.params, inputs, broadcast_rig(small, b), jnp.ones((b, n), jnp.float32))
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        first = time.perf_counter() - t
        if a == 0:  # measure the call again: the first included compilation
            t = time.perf_counter()
            out = jax.block_until_ready(fn(*args))
            again = time.perf_counter() - t
            compile_s, run_s = max(first - again, 0.0), run_s + again
        else:
            run_s += first
        canon += [jax.tree.map(lambda x, i=i: np.asarray(x[i]), out) for i in range(b)]
    return canon, {"seconds": run_s, "compile_seconds": compile_s, "per_frame_ms": 1000 * run_s / T}


def _params(reg: Regressor, canon: list[dict], sequence: bool) -> dict:
    """params.json of the prediction (a sequence: identity and scale averaged, as a fit shares them)."""
    per = [reg.task.params_json(c) for c in canon]
    if not sequence:
        return per[0]
    if reg.config.model == "rigid":
        return {"frames": per}
    shared = {
        "identity": {k: float(np.mean([p["identity"][k] for p in per])) for k in per[0]["identity"]},
        "scale": float(np.mean([p["scale"] for p in per])),
    }
    frames = [{k: p[k] for k in ("expression", "rotation_axis_angle", "translation")} for p in per]
    return {**shared, "frames": frames}


def predict_start(run, views: Views, model, kind: str, *, progress: bool = True) -> dict:
    """The start of ``meshfit fit --init RUN``: the network's prediction in params.json form."""
    reg = Regressor.load(run)
    if reg.config.model != kind:
        raise ValueError(f"--init {run}: the network predicts a {reg.config.model} model; this fit is {kind}")
    _check_model(reg, model)
    canon, timing = predict(reg, views)
    if progress:
        print(f"--init: {reg.path} predicted the start in {timing['per_frame_ms']:.1f} ms per frame")
    return _params(reg, canon, views.frames is not None)


def predict_folder(run, data, out, *, refine: int = 0, overwrite: bool = False, progress: bool = True,
                   checkpoint: str = "best", command: str | None = None) -> dict:  # fmt: skip
    """What ``meshfit predict`` calls: predict (and refine) ``data`` with the network of ``run``
    and write OUT as ``meshfit fit`` does. Returns the metrics written."""
    from meshfit.fitting import FitConfig, FitResult, fit_views
    from meshfit.fitting.folder import write_fit_output

    if refine < 0:
        raise ValueError(f"--refine takes a number of steps >= 0; got {refine}")
    check_output_dir(out, overwrite=overwrite, inputs=[run, data])
    reg = Regressor.load(run, checkpoint=checkpoint)
    views = load_sequence(data) if is_sequence(data) else load_views(data)
    canon, timing = predict(reg, views)
    sequence = views.frames is not None
    params = _params(reg, canon, sequence)
    task = reg.task
    meshes = [Mesh(np.asarray(task.vertices(c)), task.faces) for c in canon]
    centres = np.stack([np.asarray(task.object_centre(c)) for c in canon])
    near = min(clip_range(views.cameras, c, float(task.radius) * 1.2, margin=2.0)[0] for c in centres)
    far = max(clip_range(views.cameras, c, float(task.radius) * 1.2, margin=2.0)[1] for c in centres)
    entry = {
        "name": "network", "steps": 0, "stopped_early": False, "seconds": timing["seconds"],
        "compile_seconds": timing["compile_seconds"], "losses": [], "term_history": {}, "terms": {},
        "resolution": [task.rig.width, task.rig.height], "faces": int(task.faces.shape[0]),
        "per_frame_ms": timing["per_frame_ms"], "checkpoint_step": reg.step,
    }  # fmt: skip
    model = reg.model
    config = {"network": str(Path(run).resolve()), "checkpoint": checkpoint}
    if refine:
        stage = dataclasses.replace(reg.config.refine, steps=refine)
        fit_config = FitConfig(model=reg.config.model, stages=(stage,), bounds=dict(reg.config.bounds))
        result = fit_views(fit_config, views, model=model, progress=progress, start=params)
        result = result._replace(history=[entry, *result.history])
        config["refine"] = to_dict(fit_config)
    else:
        result = FitResult(meshes[0], params, [entry], near, far, meshes if sequence else None)
    return write_fit_output(
        out, result, views, config, data=data, overwrite=overwrite, inputs=[run, data], command=command,
        extra={"network": {"run": str(Path(run).resolve()), "step": reg.step, **timing}}, model=model,
    )  # fmt: skip

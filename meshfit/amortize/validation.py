"""The validation set: random parameters rendered once by pyrender (OpenGL, ``meshfit synth``'s
renderer and light) through the rig at its own resolution, then turned into network inputs the
way a dataset's images are (``inputs.image_inputs``). An independent renderer, so its error
includes a small domain gap; it is never trained on.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.amortize.config import TrainConfig
from meshfit.amortize.inputs import image_inputs
from meshfit.amortize.task import Task
from meshfit.io import atomic_path
from meshfit.mesh import Mesh

__all__ = ["broadcast_rig", "evaluate", "load_validation", "render_validation", "summarize"]

_FORMAT = 1


def render_validation(task: Task, rig_full, config: TrainConfig, *, progress: bool = False) -> dict:
    """Render ``config.validation.samples`` samples through ``rig_full`` [N] with pyrender.

    Returns {"inputs": [S, N, h, w, C], "truth": canonical parameters [S, ...]}."""
    from meshfit.synth import pyrender_views

    S = config.validation.samples
    keys = jax.random.split(jax.random.key(config.validation.seed), S)
    truth = jax.vmap(lambda k: task.sample(k, config.sampling))(keys)
    verts = np.asarray(jax.vmap(task.vertices)(truth))
    faces = np.asarray(task.faces)
    masks, rgbs, depths = [], [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=S, desc="validation set (pyrender)", leave=False)
    for i in range(S):
        r = pyrender_views(Mesh(verts[i], faces), rig_full, near=task.planes[0], far=task.planes[1])
        masks.append(r.mask.astype(np.float32))
        rgbs.append(r.rgb.astype(np.float32) / 255.0)
        depths.append(r.depth)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    inputs, _ = image_inputs(task, rig_full, config.inputs, mask=np.stack(masks), rgb=np.stack(rgbs),
                             depth=np.stack(depths))  # fmt: skip
    return {"inputs": np.asarray(inputs), "truth": jax.tree.map(np.asarray, truth)}


def save_validation(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, format_version=_FORMAT, inputs=data["inputs"],
                            **{f"truth_{k}": v for k, v in data["truth"].items()})  # fmt: skip


def load_validation(path: Path) -> dict:
    with open(path, "rb") as fh, np.load(fh) as z:
        if int(z["format_version"]) != _FORMAT:
            raise ValueError(
                f"{path}: validation format {int(z['format_version'])}, this meshfit reads {_FORMAT}"
            )
        return {
            "inputs": z["inputs"],
            "truth": {k[len("truth_") :]: z[k] for k in z.files if k.startswith("truth_")},
        }


def broadcast_rig(rig, batch: int):
    """The rig [N] repeated over a batch: [batch, N]."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape), rig)


def evaluate(network, params: dict, data: dict, *, chunk: int = 64) -> dict:
    """Per-sample errors of the network on a validation set (``train.pose_errors``) and the
    predictions: {"errors": {name: [S]}, "pred": canonical [S, ...]}."""
    from meshfit.amortize.train import pose_errors

    task = network.task
    predict = network.predict_jit
    errors, preds = [], []
    S = data["inputs"].shape[0]
    for a in range(0, S, chunk):
        x = jnp.asarray(data["inputs"][a : a + chunk])
        b, n = x.shape[:2]
        pred = predict(params, x, broadcast_rig(task.rig, b), jnp.ones((b, n), jnp.float32))
        truth = jax.tree.map(lambda v, a=a: jnp.asarray(v[a : a + chunk]), data["truth"])
        errors.append(jax.tree.map(np.asarray, pose_errors(task, pred, truth)))
        preds.append(jax.tree.map(np.asarray, pred))
    cat = lambda parts: jax.tree.map(lambda *xs: np.concatenate(xs), *parts)  # noqa: E731
    return {"errors": cat(errors), "pred": cat(preds)}


def summarize(errors: dict) -> dict:
    """Mean, median and 95th percentile of each per-sample error."""
    out = {}
    for k, v in errors.items():
        v = np.asarray(v, np.float64)
        out[k] = {"mean": float(v.mean()), "median": float(np.median(v)), "p95": float(np.percentile(v, 95))}
    return out

"""Training a regressor with meshfit's renderer in the loop.

Every step draws ``batch`` samples inside the jitted step (parameters, rig jitter, appearance:
``inputs.render_inputs``), runs the network on them and takes an AdamW step on

    loss.vertices * mean |v_pred - v_true| / radius
      + loss.silhouette * silhouette MSE of the predicted mesh against the input mask
      + loss.depth * depth MSE (object radii) against the input depth.

Sample i of step s uses the key ``fold_in(fold_in(key(seed), s), i)``: a step's data depend on
nothing but the seed and the step, so a resumed run repeats an uninterrupted one, and a run
whose batch is split over devices (``devices``: a ``jax.sharding`` mesh, batch axis sharded,
parameters replicated, ``jax.shard_map``) sees the same samples as one device.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from meshfit import losses
from meshfit.amortize.config import TrainConfig
from meshfit.amortize.inputs import jitter_rig, prediction_channels, render_inputs
from meshfit.amortize.network import CORRECTION_OUTPUTS, Regressor, decode, decode_correction, network_cost
from meshfit.amortize.task import Task
from meshfit.models import so3_exp
from meshfit.render import antialias, normal_image, rasterize, sh_irradiance

__all__ = [
    "Network",
    "build_network",
    "channels_in",
    "lr_schedule",
    "make_optimizer",
    "make_train_step",
    "outputs_of",
    "pose_errors",
]


@dataclasses.dataclass(frozen=True)
class Network:
    """A regressor as pure functions: ``apply(params, inputs, present)`` -> raw outputs and
    ``predict(params, inputs, cameras, present)`` -> canonical parameters [B, ...].

    graphdef, template: the NNX module split (``nnx.split``; the template holds shapes only,
    ``jax.ShapeDtypeStruct``); params are plain nested dicts
    (``nnx.to_pure_dict``). cost: parameters and FLOPs (``network_cost``)."""

    config: TrainConfig
    task: Task
    graphdef: Any
    template: Any
    cost: dict
    # A correcting network's first network (frozen) and its weights, and the task whose proxy
    # renders the prediction it compares (``config.correction_faces``).
    base: Network | None = dataclasses.field(default=None, compare=False)
    base_params: dict | None = dataclasses.field(default=None, compare=False)
    render_task: Task | None = dataclasses.field(default=None, compare=False)

    @property
    def in_channels(self) -> int:
        return channels_in(self.config)

    @property
    def num_outputs(self) -> int:
        return outputs_of(self.config, self.task)

    def init_params(self) -> dict:
        """The initial weights (the config's seed), made in one compiled call: eagerly, every
        initialiser would compile on its own."""
        return jax.jit(self._make_params)()

    def _make_params(self) -> dict:
        net = Regressor(self.in_channels, self.num_outputs, self._resolution, self.config.network,
                        rngs=nnx.Rngs(self.config.seed))  # fmt: skip
        return nnx.to_pure_dict(nnx.split(net, nnx.Param)[1])

    def abstract_params(self) -> dict:
        """The weights' shapes and dtypes (``jax.ShapeDtypeStruct``), computing nothing."""
        return jax.eval_shape(self._make_params)

    @property
    def _resolution(self) -> tuple[int, int]:
        return self.task.rig.height, self.task.rig.width

    def apply(self, params: dict, inputs: jax.Array, present: jax.Array):
        state = jax.tree.map(lambda a: a, self.template)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state)(inputs, present)

    @functools.cached_property
    def predict_jit(self):
        """``predict`` jitted once per network (evaluating every checkpoint must not recompile)."""
        return jax.jit(self.predict)

    def predict(
        self, params: dict, inputs: jax.Array, cameras, present: jax.Array, passes: int | None = None,
        perturb: jax.Array | None = None,
    ) -> dict:  # fmt: skip
        """Canonical parameters [B, ...] from inputs [B, N, H, W, C] seen by cameras [B, N].
        A correcting network corrects its first network's prediction ``passes`` times (default:
        the config's ``correction_passes``); ``perturb`` [B] keys (training): first move that
        prediction by the config's ``correction_noise_*``."""
        c = self.config
        ranges, bounds = self.task.coeff_ranges(c.sampling), self.task.coeff_bounds(c.bounds)
        if self.base is None:
            per_view, pooled = self.apply(params, inputs, present)
            return decode(self.task, cameras, per_view, pooled, present, ranges=ranges, bounds=bounds,
                          scale_range=c.sampling.scale)  # fmt: skip
        pred = jax.lax.stop_gradient(self.base.predict(self.base_params, inputs, cameras, present))
        if perturb is not None and (c.correction_noise_rotation or c.correction_noise_translation):
            noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 23), (2, 3)))(perturb)
            turn = so3_exp(np.radians(c.correction_noise_rotation) * noise[:, 0])
            pred = {**pred, "R": jnp.einsum("bij,bjk->bik", turn, pred["R"]),
                    "offset": pred["offset"] + c.correction_noise_translation * noise[:, 1]}  # fmt: skip
        s = c.sampling
        for _ in range(c.correction_passes if passes is None else passes):
            verts = jax.vmap(self.task.vertices)(pred)
            drawn = prediction_channels(self.render_task, cameras, verts, c.correction_supersample)
            seen = jnp.concatenate([inputs, drawn], -1)
            per_view, pooled = self.apply(params, seen, present)
            views = (per_view, cameras, present) if c.correction_frame == "cameras" else None
            pred = decode_correction(pred, pooled, ranges=ranges, bounds=bounds, rotation=s.rotation,
                                     translation=s.translation, scale_range=s.scale, views=views)  # fmt: skip
        return pred


def channels_in(config: TrainConfig) -> int:
    """Channels per pixel a config's network reads: its inputs and the two rays (and, correcting,
    the prediction's mask and depth)."""
    return len(config.inputs) + 2 + (2 if config.correction_passes else 0)


def outputs_of(config: TrainConfig, task: Task) -> int:
    """A config's network's pooled outputs."""
    return task.num_coeffs + (CORRECTION_OUTPUTS if config.correction_passes else 1)


def build_network(config: TrainConfig, task: Task, base: tuple[Network, dict] | None = None) -> Network:
    """The Network for a config and a task whose rig is at the network's resolution; a correcting
    network (``config.correction_passes``) takes its first network and that one's weights, ``base``."""
    if bool(config.correction_passes) != (base is not None):
        raise ValueError(
            "a correcting network (correction_passes > 0) is trained on a first network's predictions "
            "(meshfit train --corrects RUN)" if base is None else
            "--corrects: this config's correction_passes is 0; a correcting network's config sets it (e.g. 2)"
        )  # fmt: skip
    if base is not None and base[0].base is not None:
        raise ValueError("--corrects: that run is itself a correcting network; give its first network's run")
    rig = task.rig
    if max(rig.width, rig.height) != config.resolution:
        raise ValueError(
            f"the task's rig is {rig.width}x{rig.height}; the network reads {config.resolution} px"
        )
    for side in (rig.width, rig.height):
        if side % 2**config.network.stages:
            raise ValueError(
                f"the network's input {rig.width}x{rig.height} must divide by 2^network.stages = "
                f"{2**config.network.stages} (choose a resolution that keeps the rig's aspect)"
            )
    in_channels, outputs = channels_in(config), outputs_of(config, task)
    # Only the structure: the weights come from init_params or a checkpoint.
    graphdef, template = nnx.split(
        nnx.eval_shape(
            lambda: Regressor(
                in_channels,
                outputs,
                (rig.height, rig.width),
                config.network,
                rngs=nnx.Rngs(config.seed),
            )
        ),  # fmt: skip
        nnx.Param,
    )
    cost = network_cost(config.network, in_channels, outputs, (rig.height, rig.width), rig.batch_shape[0])
    if base is None:
        return Network(config, task, graphdef, template, cost)
    render = (
        task
        if config.correction_faces in (None, config.proxy_faces)
        else task.with_proxy(config.correction_faces)
    )
    return Network(
        config, task, graphdef, template, cost, base=base[0], base_params=base[1], render_task=render
    )


def lr_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warm-up to ``optim.lr``, then cosine decay to ``optim.final_lr`` x lr at ``steps``."""
    o = config.optim
    warmup = min(o.warmup, max(config.steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        0.0, o.lr, warmup_steps=warmup, decay_steps=max(config.steps, warmup + 1), end_value=o.lr * o.final_lr
    )


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW on ``lr_schedule``, after global-norm clipping."""
    return optax.chain(
        optax.clip_by_global_norm(config.optim.clip),
        optax.adamw(lr_schedule(config), weight_decay=config.optim.weight_decay),
    )


def pose_errors(task: Task, pred: dict, truth: dict) -> dict:
    """Per-sample errors [B]: mean vertex distance (% of the model's bounding-box diagonal),
    rotation (degrees) and centre (% of the object's diameter)."""
    vp = jax.vmap(task.vertices)(pred)
    vt = jax.vmap(task.vertices)(truth)
    vertex = jnp.mean(jnp.linalg.norm(vp - vt, axis=-1), -1) / task.diagonal * 100
    rel = jnp.einsum("bji,bjk->bik", pred["R"], truth["R"])
    cos = jnp.clip((jnp.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    rotation = jnp.degrees(jnp.arccos(cos))
    centre = jnp.linalg.norm(pred["offset"] - truth["offset"], axis=-1) / 2 * 100  # radii -> % of diameter
    return {"vertex_pct": vertex, "rotation_deg": rotation, "centre_pct": centre}


def sample_batch(network: Network, keys: jax.Array) -> tuple[dict, Any, jax.Array, dict]:
    """Draw and render samples, one per key [b]: (truth [b, ...], cameras [b, N], inputs
    [b, N, H, W, C], images by channel)."""
    c, task = network.config, network.task

    def one(key):
        kp, kj = jax.random.split(key)
        return task.sample(kp, c.sampling), jitter_rig(kj, task.rig, c.jitter, task.radius)

    truth, cams = jax.vmap(one)(keys)
    verts = jax.vmap(task.vertices)(truth)
    kimg = jax.vmap(lambda k: jax.random.fold_in(k, 7))(keys)
    inputs, images = render_inputs(kimg, task, cams, verts, c.appearance, c.inputs)
    return truth, cams, inputs, images


def _per_sample_loss(network: Network, params: dict, keys: jax.Array, data=None) -> tuple[jax.Array, dict]:
    """Loss and terms per sample [b] for the samples of ``keys`` [b]: rendered on the fly, or
    with ``data`` (``data_batch``'s dict) frames of an unlabelled dataset, image terms only."""
    c, task = network.config, network.task
    if data is None:
        truth, cams, inputs, images = sample_batch(network, keys)
    else:
        T = data["inputs"].shape[0]
        idx = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 13), (), 0, T))(keys)
        inputs = data["inputs"][idx]
        names = ("mask", "depth", "grey", "landmarks", "landmark_confidence")
        images = {k: data[k][idx] for k in names if k in data}
        cams = jax.tree.map(lambda a: jnp.broadcast_to(a, (keys.shape[0],) + a.shape), data["cameras"])
    present = jax.vmap(lambda k: _present(jax.random.fold_in(k, 11), cams.batch_shape[1], c.view_dropout))(
        keys
    )
    # A correcting network learns one correction of its first network's prediction.
    pred = network.predict(params, inputs, cams, present, passes=1, perturb=keys if data is None else None)
    terms = {}
    vp = jax.vmap(task.vertices)(pred)
    if data is None:
        vt = jax.vmap(task.vertices)(truth)
    if c.loss.vertices and data is None:
        # A smooth distance: sqrt(d^2 + eps) keeps the gradient finite at a perfect prediction.
        dist = jnp.sqrt(jnp.sum((vp - vt) ** 2, -1) + (1e-4 * task.radius) ** 2)
        terms["vertices"] = jnp.mean(dist, -1) / task.radius
    if c.loss.silhouette or c.loss.depth or c.loss.shading:
        terms |= _image_terms(task, cams, vp, images, c)
    if c.loss.landmarks:
        if data is None:
            marks = _noisy_landmarks(keys, task, cams, jax.vmap(task.landmark_points)(vt), c.appearance)
            images |= {"landmarks": marks, "landmark_confidence": jnp.ones(marks.shape[:-1], marks.dtype)}
        points = jax.vmap(task.landmark_points)(vp)
        terms["landmarks"] = jax.vmap(
            lambda cm, p, kp, w: losses.landmark_loss(cm, p, kp, weights=w, scale=c.loss.landmark_scale)
        )(cams, points, images["landmarks"], images["landmark_confidence"])
    total = sum(getattr(c.loss, k) * v for k, v in terms.items())
    return total, terms


def _noisy_landmarks(keys: jax.Array, task: Task, cams, points: jax.Array, appearance) -> jax.Array:
    """[b, N, L, 2] a detector's view of the true landmarks ``points`` [b, L, 3]: their
    projections with Gaussian noise, and outliers anywhere in the image."""
    uv, _ = jax.vmap(lambda cm, p: cm.project(p))(cams, points)

    def noise(k, shape):
        kn, ko, ku = jax.random.split(jax.random.fold_in(k, 17), 3)
        out = jax.random.bernoulli(ko, appearance.landmark_outliers, shape[:-1])[..., None]
        size = jnp.broadcast_to(jnp.asarray([cams.width, cams.height], jnp.float32), shape)
        anywhere = jax.random.uniform(ku, shape) * size - 0.5
        return appearance.landmark_noise * jax.random.normal(kn, shape), out, anywhere

    n, out, anywhere = jax.vmap(lambda k: noise(k, uv.shape[1:]))(keys)
    return jnp.where(out, anywhere, uv + n)


def data_batch(network: Network, views) -> dict:
    """An unlabelled dataset (``meshfit.io.Views``: one frame or a sequence) as training data:
    network inputs [T, N, h, w, C], target mask and depth [T, N, h, w] (camera z, 0 where empty)
    and the cameras [N], at the network's resolution."""
    from meshfit.amortize.inputs import image_inputs, image_targets

    lead = (
        (lambda a: a) if views.frames is not None else (lambda a: None if a is None else np.asarray(a)[None])
    )
    mask, rgb, depth = lead(views.mask), lead(views.rgb), lead(views.depth)
    if mask is None:
        raise ValueError("training on a dataset needs its masks: it has no mask/ folder")
    inputs, cams = image_inputs(network.task, views.cameras, network.config.inputs,
                                mask=np.asarray(mask, np.float32), rgb=rgb, depth=depth)  # fmt: skip
    m, d = image_targets(network.task, views.cameras, mask=np.asarray(mask, np.float32), depth=depth)
    if network.config.loss.depth and depth is None:
        raise ValueError("loss.depth compares with the dataset's depth: it has no depth/ folder")
    out = {"inputs": inputs, "mask": m, "depth": jnp.zeros_like(m) if d is None else d, "cameras": cams}
    if network.config.loss.shading:
        out["grey"] = inputs[..., list(network.config.inputs).index("grey")]
    if network.config.loss.landmarks:
        task = network.task
        if views.landmarks is None:
            raise ValueError(
                "loss.landmarks compares with the dataset's landmarks: it has no landmarks/ folder"
            )
        marks = lead(views.landmarks)
        if marks.shape[-2] != task.num_landmarks:
            raise ValueError(
                f"the dataset's landmark files have {marks.shape[-2]} points; the model defines "
                f"{task.num_landmarks}"
            )
        # Into the pixels of the network's cameras (scaled about the image's corner, Camera.resized).
        scale = np.asarray([cams.width / views.cameras.width, cams.height / views.cameras.height], np.float32)
        conf = lead(views.landmark_confidence)
        found = ~np.isnan(marks).any(-1)
        conf = found.astype(np.float32) if conf is None else np.where(found, conf, 0.0).astype(np.float32)
        out |= {
            "landmarks": jnp.asarray((marks + 0.5) * scale - 0.5),
            "landmark_confidence": jnp.asarray(conf),
        }
    return out


def _present(key: jax.Array, views: int, dropout: float) -> jax.Array:
    """[N] 1/0: which views the network is shown (each hidden with ``dropout``, one always kept)."""
    kd, kk = jax.random.split(key)
    keep = ~jax.random.bernoulli(kd, dropout, (views,))
    keep = keep | (jnp.arange(views) == jax.random.randint(kk, (), 0, views))
    return keep.astype(jnp.float32)


def _image_terms(task: Task, cams, vertices: jax.Array, images: dict, config: TrainConfig) -> dict:
    """Renderer-in-the-loop terms per sample [b] of predicted vertices [b, V, 3] against the
    input images [b, N, H, W]."""
    clip = jax.vmap(lambda cm, v: cm.to_clip(v, *task.planes))(cams, vertices)
    frags = rasterize(clip, task.faces, height=cams.height, width=cams.width)
    out = {}
    if config.loss.silhouette:
        flat = clip.reshape((-1,) + clip.shape[2:])
        fl = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), frags)
        sil = antialias(fl.mask[..., None].astype(clip.dtype), fl, flat, task.faces)[..., 0]
        sil = sil.reshape(frags.mask.shape)
        out["silhouette"] = jax.vmap(losses.silhouette_loss)(sil, images["mask"])
    if config.loss.depth:
        target = images["depth"] / task.radius
        out["depth"] = jax.vmap(losses.depth_loss)(frags.depth / task.radius, target)
    if config.loss.shading:
        out["shading"] = _shading_term(task, vertices, frags, images)
    return out


def _shading_term(task: Task, vertices: jax.Array, frags, images: dict) -> jax.Array:
    """[b] how well the predicted shape's normals explain the grey images [b, N, H, W] under the
    best order-2 SH light (albedo folded in), solved per sample by ridge-regularised least squares
    on linear intensities over the pixels the prediction and the mask both cover."""
    normals = normal_image(vertices[:, None], task.faces, frags)  # [b, N, H, W, 3]
    basis = sh_irradiance(normals, jnp.eye(9, dtype=normals.dtype))  # [b, N, H, W, 9]
    grey = jnp.clip(images["grey"], 0.0, 1.0)
    # Clipped pixels (black, or white where the light saturates) say nothing of the linear light.
    w = (frags.mask & (images["mask"] > 0.99) & (grey > 1e-3) & (grey < 0.999)).astype(grey.dtype)
    y = grey**2.2
    gram = jnp.einsum("bnhwk,bnhwl,bnhw->bkl", basis, basis, w)
    count = jnp.maximum(jnp.sum(w, (1, 2, 3)), 1.0)
    # The ridge keeps the light defined when few pixels or normals constrain it.
    gram = gram + jnp.einsum("b,kl->bkl", 1e-3 * count, jnp.eye(9, dtype=grey.dtype))
    light = jnp.linalg.solve(gram, jnp.einsum("bnhwk,bnhw,bnhw->bk", basis, y, w)[..., None])[..., 0]
    shade = jnp.clip(jnp.einsum("bnhwk,bk->bnhw", basis, light), 1e-6, 1.0) ** (1 / 2.2)
    err = jnp.sqrt((shade - grey) ** 2 + 1e-4) - 1e-2  # Charbonnier, eps 0.01
    return jnp.sum(err * w, (1, 2, 3)) / count


def make_train_step(network: Network, optimizer: optax.GradientTransformation, *, devices=None, data=None):
    """The jitted ``step(carry) -> (carry, metrics)`` over ``carry = {"params", "opt_state",
    "step"}`` (step: int32 [], the steps taken: the one run now draws its samples from it).

    ``devices``: split each batch over these devices (a 1-D ``jax.sharding.Mesh`` named "data",
    the batch sharded, parameters replicated); the batch must divide by their number.
    ``data``: train on these frames of an unlabelled dataset (``data_batch``) with the image
    terms, instead of rendered samples."""
    c = network.config
    base = jax.random.key(c.seed)
    local = lambda params, keys, data: _per_sample_loss(network, params, keys, data)  # noqa: E731
    if devices is not None and len(devices) > 1:
        from jax.sharding import Mesh
        from jax.sharding import PartitionSpec as P

        if c.batch % len(devices):
            raise ValueError(f"batch {c.batch} does not split evenly over {len(devices)} devices")
        mesh = Mesh(np.asarray(devices), ("data",))
        local = jax.shard_map(
            local, mesh=mesh, in_specs=(P(), P("data"), P()), out_specs=(P("data"), P("data"))
        )

    def loss_fn(params, step, data):
        key = jax.random.fold_in(base, step)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(c.batch))
        per, terms = local(params, keys, data)
        return jnp.mean(per), {k: jnp.mean(v) for k, v in terms.items()}

    @jax.jit
    def step_fn(carry, data):
        params, step = carry["params"], carry["step"]
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, step, data)
        updates, opt_state = optimizer.update(grads, carry["opt_state"], params)
        params = optax.apply_updates(params, updates)
        new = {"params": params, "opt_state": opt_state, "step": step + 1}
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads), **terms}

    return lambda carry: step_fn(carry, data)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_jsonl(path: Path, record: dict) -> None:
    """Append one line (flushed: a killed run keeps every line it wrote)."""
    with open(path, "a") as fh:
        fh.write(json.dumps(_jsonable(record)) + "\n")
        fh.flush()


def truncate_jsonl(path: Path, after_step: int) -> None:
    """Drop the lines of steps after ``after_step`` (a resumed run writes them again)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= after_step:
                keep.append(line)
        except ValueError:
            continue  # a line cut short by a kill
    path.write_text("".join(k + "\n" for k in keep))


def timed(fn, *args, repeats: int = 1) -> tuple[Any, float]:
    """Result of ``fn(*args)`` and its median wall time over ``repeats`` (blocking)."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return out, float(np.median(times))

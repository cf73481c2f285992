"""The one stage runner: a ``StageConfig`` applied to a model, a rig and its target images.

Every fit goes through here: the single-frame recipes, sequences (T frames through one rig, some
parameters shared by all frames, the frame axis optionally split over devices with
``jax.shard_map``) and the rigid rotation search. ``prepare_stage`` builds the jitted step once
(targets area-averaged to the stage's resolution, the objective in units of the object's radius,
the stage's optimiser); ``PreparedStage.run`` runs it from given parameters, for any model with
the template's faces (the model is an argument of the step, so a search over base rotations
compiles once).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meshfit.camera import Camera
from meshfit.fitting.config import StageConfig
from meshfit.fitting.gauss_newton import check_gauss_newton, make_gauss_newton_step
from meshfit.fitting.loop import FitState, make_optimizer, make_step, run_stage
from meshfit.objectives import Targets, image_objective

__all__ = ["PreparedStage", "Problem", "downsample_targets", "fit_stage", "prepare_stage", "stage_optimizer"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """What a fit is fitted to, and how its units are measured.

    cameras: [N] rig at the data's resolution. targets: images [N, H, W] (one frame) or
    [T, N, H, W] (a sequence through the same rig). near, far: clip range (world units).
    radius: the object's radius (world units): positions, depth and edge lengths in a config are
    measured in it. bounds: box constraints on coefficients (``{"expression": (0, 1)}``).
    per_frame: in a sequence, the parameters with a leading frame axis (the others are shared).
    smoothness: in a sequence, weight of the mean squared frame-to-frame change of the per-frame
    parameters. devices: in a sequence, split the frame axis over these devices (T must be a
    multiple of their number).
    """

    cameras: Camera
    targets: Targets
    near: float
    far: float
    radius: float
    bounds: dict = dataclasses.field(default_factory=dict)
    per_frame: tuple[str, ...] = ()
    smoothness: float = 0.0
    devices: tuple | None = None

    @property
    def frames(self) -> int | None:
        """T for a sequence, None for one frame."""
        return self.targets.frames


def area_resize(img, h: int, w: int, lead: int) -> jax.Array:
    """Area-average images [lead..., H, W, rest...] to h x w: exactly, by whole blocks, when the
    size divides; otherwise by an antialiased linear resize."""
    img = jnp.asarray(img, jnp.float32)
    H, W = img.shape[lead], img.shape[lead + 1]
    if (H, W) == (h, w):
        return img
    batch, rest = img.shape[:lead], img.shape[lead + 2 :]
    if H % h == 0 and W % w == 0:
        return img.reshape(*batch, h, H // h, w, W // w, *rest).mean((lead + 1, lead + 3))
    return jax.image.resize(img, (*batch, h, w, *rest), "linear", antialias=True)


def downsample_targets(targets: Targets, cameras: Camera, resolution: int | None) -> tuple[Targets, Camera]:
    """Targets and cameras with the longest image side ``resolution`` (no-op if None or larger).

    Images [..., H, W(, C)] (any leading dimensions, e.g. frames x views) are area-averaged
    (exactly, by whole blocks, when the size divides; otherwise by an antialiased linear resize);
    depth is averaged only over fully covered blocks (by the mask, or without one by depth), 0
    elsewhere.
    """
    H, W = cameras.height, cameras.width
    if resolution is None or resolution >= max(H, W):
        return targets, cameras
    s = resolution / max(H, W)
    h, w = max(1, round(H * s)), max(1, round(W * s))
    lead = 1 if targets.frames is None else 2  # (frames,) views

    def area(img):
        return area_resize(img, h, w, lead)

    mask = None if targets.mask is None else area(targets.mask)
    depth = None
    if targets.depth is not None:
        covered = mask if mask is not None else area(targets.depth > 0)
        depth = jnp.where(covered >= 1.0 - 1e-6, area(targets.depth), 0.0)
    rgb = None if targets.rgb is None else area(targets.rgb)
    plate = None if targets.background is None else area_resize(targets.background, h, w, 1)
    # Landmarks stay in the data's pixels: the objective maps its cameras' pixels onto them.
    return Targets(mask, depth, rgb, targets.landmarks, targets.landmark_weights, plate), cameras.resized(
        w, h
    )


def stage_optimizer(
    stage: StageConfig, radius: float, bounds: dict | None = None
) -> optax.GradientTransformation:
    """The stage's optimiser, its updates scaled per parameter: positions by the radius, then
    ``lr_scale``, and over the steps by the linear warm-up (``lr_warmup``) and the cosine decay
    to ``lr_decay``; parameters named in ``bounds`` are projected back into their box after each
    step. The inner state stays the inject_hyperparams one, so divergence recovery can lower lr."""
    scales = {"translation": radius, "u": radius}
    scales = {k: scales.get(k, 1.0) * stage.lr_scale.get(k, 1.0) for k in {*scales, *stage.lr_scale}}
    inner = make_optimizer(stage.optimizer, stage.lr)
    bounds = bounds or {}

    def update(updates, state, params=None):
        # Cosine from 1 to lr_decay over the stage's steps (inject_hyperparams counts them).
        t = jnp.minimum(state.count.astype(jnp.float32) / max(stage.steps - 1, 1), 1.0)
        decay = stage.lr_decay + (1.0 - stage.lr_decay) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
        if stage.lr_warmup:
            decay = decay * jnp.minimum((state.count.astype(jnp.float32) + 1.0) / stage.lr_warmup, 1.0)
        updates, state = inner.update(updates, state, params)
        out = {}
        for k, u in updates.items():
            u = u * (scales.get(k, 1.0) * decay)
            if k in bounds:
                lo, hi = bounds[k]
                u = jnp.clip(params[k] + u, lo, hi) - params[k]
            out[k] = u
        return out, state

    return optax.GradientTransformation(inner.init, update)


def _objective(template, cameras: Camera, problem: Problem, stage: StageConfig):
    """The stage's image objective, with depth measured in object radii and landmark errors in
    the data's pixels."""
    r = problem.radius
    weights = dataclasses.replace(stage.weights, depth=stage.weights.depth / r**2)
    trunc = None if stage.depth_max_error is None else stage.depth_max_error * r
    return image_objective(
        template, cameras, near=problem.near, far=problem.far, weights=weights, depth_max_error=trunc,
        landmark_scale=stage.landmark_scale, pixel_size=problem.cameras.width / cameras.width,
        photometric_scale=stage.photometric_scale,
    )  # fmt: skip


def _take_views(cameras: Camera, targets: Targets, idx, axis: int) -> tuple[Camera, Targets]:
    """The views ``idx`` of a rig and its targets (views on ``axis``); all of them when idx is None."""
    if idx is None:
        return cameras, targets
    return cameras[idx], Targets(*(None if x is None else jnp.take(x, idx, axis=axis) for x in targets))


def _view_params(params: dict, idx) -> dict:
    """Params as the views ``idx`` (all when None) see them: a per-camera ``gain`` [N, 3] is
    normalised to mean 1 over all cameras (so that it cannot trade against the light), then
    taken for those views, as is a per-camera backdrop colour ``background`` [N, 3]."""
    if idx is not None and "background" in params:  # a backdrop colour per camera
        params = {**params, "background": jnp.take(params["background"], idx, axis=0)}
    if "gain" not in params:
        return params
    gain = params["gain"] / jnp.mean(params["gain"], axis=0, keepdims=True)
    return {**params, "gain": gain if idx is None else jnp.take(gain, idx, axis=0)}


@dataclasses.dataclass
class PreparedStage:
    """A compiled-once stage: ``run(model, params)`` fits ``free`` from ``params``.

    cameras, targets: at the stage's resolution. resolution_note: set when the stage asked for
    more pixels than the data has.
    """

    stage: StageConfig
    free: tuple[str, ...]
    cameras: Camera
    targets: Targets
    step: Any
    loss: Any
    views: int
    seed: int
    resolution_note: str | None
    init: Any  # params -> the step's optimiser state

    def run(self, model, params: dict, *, progress: bool = True) -> tuple[dict, dict]:
        """Run the stage; returns (params with the free ones fitted, history entry)."""
        missing = sorted(set(self.free) - set(params))
        if missing:
            raise ValueError(
                f"stage {self.stage.name!r}: parameters {missing} are not in the model's parameters"
            )
        fixed = {k: v for k, v in params.items() if k not in self.free}
        start = {k: params[k] for k in self.free}
        n, k = self.views, self.step_views
        rng = np.random.default_rng(self.seed)

        def batch(i):
            idx = jnp.asarray(np.sort(rng.permutation(n)[:k]), jnp.int32) if k < n else None
            return model, fixed, self.targets, idx

        res = run_stage(
            self.step, FitState(start, self.init(start), jnp.zeros((), jnp.int32)), batch,
            steps=self.stage.steps, patience=self.stage.patience, min_improvement=self.stage.min_improvement,
            progress=self.stage.name if progress else False, keep="best" if k == n else "last",
        )  # fmt: skip
        params = {**params, **res.state.params}
        _, terms = self.loss(params, (model, {}, self.targets, None))
        entry = {
            "name": self.stage.name, "params": sorted(self.free), "steps": res.steps,
            "stopped_early": res.stopped_early,
            "seconds": res.seconds, "compile_seconds": res.compile_seconds, "losses": res.losses,
            "term_history": res.terms, "terms": {k: float(v) for k, v in terms.items()},
            "resolution": [self.cameras.width, self.cameras.height], "faces": int(model.faces.shape[0]),
            "views_per_step": k,
        }  # fmt: skip
        if self.resolution_note:
            entry["resolution_note"] = self.resolution_note
        return params, entry

    @property
    def step_views(self) -> int:
        return min(self.stage.views_per_step or self.views, self.views)


def check_views_per_step(stage: StageConfig, views: int, where: str) -> None:
    """A stage cannot render more views a step than the data has."""
    if stage.views_per_step is not None and stage.views_per_step > views:
        raise ValueError(
            f"{where}: views_per_step is {stage.views_per_step} but the data has {views} views "
            "(set it to null to render every view)"
        )


def check_frames_split(frames: int, devices) -> None:
    """The frame axis must split evenly over the devices (shard_map)."""
    if frames % len(devices):
        raise ValueError(f"{frames} frames do not split evenly over {len(devices)} devices")


def prepare_stage(
    problem: Problem, template, stage: StageConfig, *, free: tuple[str, ...], seed: int = 0
) -> PreparedStage:
    """Build the jitted step of ``stage`` for models with ``template``'s faces.

    The step's batch is (model, fixed params, targets, view indices): each step renders the
    ``views_per_step`` views the host draws (all views when None), for one frame or, in a
    sequence, for every frame (per-frame terms summed and divided by T, plus ``smoothness``).
    """
    tg, cs = downsample_targets(problem.targets, problem.cameras, stage.resolution)
    data_side = max(problem.cameras.width, problem.cameras.height)
    note = None
    if stage.resolution is not None and stage.resolution > data_side:
        note = (
            f"stage {stage.name!r} asked for {stage.resolution} px; the data has {data_side} px, "
            f"so it ran at {data_side}"
        )
    views = cs.batch_shape[0]
    check_views_per_step(stage, views, f"stage {stage.name!r}")
    T = problem.frames
    mesh = None
    if T is not None and problem.devices is not None:
        from jax.sharding import Mesh as DeviceMesh
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        check_frames_split(T, problem.devices)
        mesh = DeviceMesh(np.array(list(problem.devices)), ("frames",))
        tg = Targets(
            *(None if x is None else jax.device_put(x, NamedSharding(mesh, P("frames"))) for x in tg)
        )
    if T is None:

        def loss_fn(q, batch):
            model, fixed, targets, idx = batch
            cams, targets = _take_views(cs, targets, idx, 0)
            objective = _objective(template, cams, problem, stage)
            return objective(_view_params({**fixed, **q}, idx), targets, model)

    else:
        per_frame = problem.per_frame

        def frames_terms(split, targets, model, cams):
            objective = _objective(template, cams, problem, stage)

            def one(frame_params, frame_targets):
                return objective({**split["shared"], **frame_params}, frame_targets, model)

            loss, terms = jax.vmap(one)(split["frames"], targets)
            return jnp.sum(loss), jax.tree.map(jnp.sum, terms)

        if mesh is not None:
            inner = frames_terms
            frames_terms = jax.shard_map(
                lambda s, t, m, c: jax.tree.map(lambda a: jax.lax.psum(a, "frames"), inner(s, t, m, c)),
                mesh=mesh, in_specs=({"shared": P(), "frames": P("frames")}, P("frames"), P(), P()),
                out_specs=P(),
            )  # fmt: skip

        def loss_fn(q, batch):
            model, fixed, targets, idx = batch
            full = {**fixed, **q}
            seen = _view_params(full, idx)
            split = {"shared": {k: v for k, v in seen.items() if k not in per_frame},
                     "frames": {k: full[k] for k in per_frame}}  # fmt: skip
            cams, targets = _take_views(cs, targets, idx, 1)
            total, terms = frames_terms(split, targets, model, cams)
            terms = {k: v / T for k, v in terms.items()}
            total = total / T
            # Frame-to-frame change, positions in object radii; nothing to compare in one frame or
            # in an empty parameter (a rig without expressions).
            moving = [k for k in per_frame if full[k].size and full[k].shape[0] > 1]
            if problem.smoothness and moving:
                scale = {"translation": 1.0 / problem.radius}
                jerk = sum(jnp.mean((jnp.diff(full[k], axis=0) * scale.get(k, 1.0)) ** 2) for k in moving)
                terms["smoothness"] = jerk
                total = total + problem.smoothness * jerk
            return total, terms

    if stage.optimizer == "gauss_newton":
        if mesh is not None:
            raise ValueError(
                f"stage {stage.name!r}: gauss_newton solves a sequence on one device; "
                "it does not split the frames over devices (leave out --devices, or use adam)"
            )
        check_gauss_newton(stage.weights, tuple(free), f"stage {stage.name!r}")
        for term, have in (("depth", tg.depth), ("landmarks", tg.landmarks)):
            if getattr(stage.weights, term) and have is None:
                raise ValueError(f"stage {stage.name!r}: the {term} term needs target {term}; there are none")
        step, init = make_gauss_newton_step(
            template, cs, near=problem.near, far=problem.far, radius=problem.radius, weights=stage.weights,
            depth_max_error=stage.depth_max_error, landmark_scale=stage.landmark_scale,
            pixel_size=problem.cameras.width / cs.width, bounds=problem.bounds, seed=seed, frames=T,
            per_frame=problem.per_frame, smoothness=problem.smoothness,
        )  # fmt: skip
        return PreparedStage(stage, tuple(free), cs, tg, step, jax.jit(loss_fn), views, seed, note, init)
    opt = stage_optimizer(stage, problem.radius, problem.bounds)
    return PreparedStage(
        stage, tuple(free), cs, tg, make_step(loss_fn, opt), jax.jit(loss_fn), views, seed, note, opt.init
    )


def fit_stage(
    problem: Problem, model, params: dict, stage: StageConfig, *, free: tuple[str, ...], seed: int = 0,
    progress: bool = True,
) -> tuple[dict, dict]:  # fmt: skip
    """Prepare and run one stage: returns (params, history entry)."""
    return prepare_stage(problem, model, stage, free=free, seed=seed).run(model, params, progress=progress)

"""Config-driven fits: a dataset of views and a representation in, a fitted mesh and its
parameters out. This is what ``meshfit fit CONFIG --data DIR`` runs.

A ``FitConfig`` names the representation (``free_mesh``, ``blendshapes`` or ``rigid``), how to
start (``InitConfig``) and a list of ``StageConfig`` stages. Each stage is one
``meshfit.fit.run_stage`` over an ``image_objective``: its own image resolution (the targets are
area-averaged, so a coarse mask holds fractional coverage), loss weights, optimiser, learning
rate and set of free parameters; for a free mesh a stage may first remesh the surface
(``gpytoolbox.remesh_botsch``: edge splits, collapses and flips with tangential relaxation, to a
target edge length, outside jit) and set the large-steps lambda.

``fit_views(config, views, model=...)`` runs it and returns a ``FitResult``, touching no file;
``fit_folder(config_data, DATA, OUT, ...)`` is the file-level edge that ``meshfit fit`` calls:
load, validate, fit, write OUT with the report (``meshfit.report``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml

from meshfit.camera import Camera, triangulate_points
from meshfit.config import ConfigError, from_dict, to_dict
from meshfit.fit import FitState, make_optimizer, make_step, run_stage
from meshfit.io import Views, atomic_dir, load_mesh, load_views, save_mesh
from meshfit.mesh import Mesh, _gpytoolbox
from meshfit.metrics import evaluate, image_metrics
from meshfit.models import BlendshapeModel, FreeMeshModel, RigidModel, so3_exp
from meshfit.objectives import LossWeights, Targets, image_objective
from meshfit.render.views import render_views
from meshfit.report import write_report

__all__ = [
    "FitConfig",
    "FitResult",
    "InitConfig",
    "StageConfig",
    "check_output_folder",
    "downsample_targets",
    "estimate_placement",
    "fit_blendshape_frames",
    "fit_folder",
    "fit_views",
    "visual_hull",
]

Representation = Literal["free_mesh", "blendshapes", "rigid"]
_FREE = {"free_mesh": ("u",), "rigid": ("rotation", "translation", "log_scale"),
         "blendshapes": ("identity", "expression", "rotation", "translation", "log_scale")}  # fmt: skip


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One optimisation stage.

    name: label for progress and the report. steps: step budget.
    lr: learning rate, in object radii for positions (translation, free-mesh u: the step is
        scaled by the object's radius, so configs do not depend on units), radians for
        rotations, plain for coefficients.
    lr_scale: per-parameter factors on ``lr`` (e.g. ``{rotation: 0.2}``).
    optimizer: "adam", "adam_uniform" (Nicolet et al.; for free meshes) or "sgd".
    resolution: longest image side for this stage (targets area-averaged; None = the data's).
    weights: the objective's ``LossWeights``; the depth term is measured in object radii too
        (its weight is divided by radius^2).
    depth_max_error: depth errors beyond this (object radii) are truncated: no pull from pixels
        that are far off (``losses.depth_loss``); None = plain quadratic.
    params: parameters optimised (rigid/blendshapes: any of rotation, translation, log_scale,
        identity, expression); empty = all of the representation's but log_scale.
    remesh: free mesh only: before the stage, remesh to this target edge length, as a fraction
        of the object's radius (None = keep the mesh).
    lam: free mesh only: large-steps lambda for this stage.
    views_per_step: render a random subset of this many views per step (stochastic; None = all).
    patience, min_improvement: early stop (``run_stage``).
    """

    name: str = "stage"
    steps: int = 200
    lr: float = 0.01
    lr_scale: dict[str, float] = dataclasses.field(default_factory=dict)
    optimizer: Literal["adam", "adam_uniform", "sgd"] = "adam"
    resolution: int | None = None
    weights: LossWeights = LossWeights()
    depth_max_error: float | None = 0.1
    params: tuple[str, ...] = ()
    remesh: float | None = None
    lam: float = 19.0
    views_per_step: int | None = None
    patience: int = 50
    min_improvement: float = 1e-4

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0; got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if self.resolution is not None and self.resolution < 8:
            raise ValueError(f"resolution must be >= 8 pixels; got {self.resolution}")
        if self.views_per_step is not None and self.views_per_step < 1:
            raise ValueError(f"views_per_step must be >= 1; got {self.views_per_step}")
        if self.remesh is not None and self.remesh <= 0:
            raise ValueError(f"remesh must be a positive edge length; got {self.remesh}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class InitConfig:
    """Where a fit starts.

    rotation: axis-angle in degrees (rigid, blendshapes), object -> world.
    translation: world position of the object's centre (its bounding-box centre); None = the
        centre estimated from the masks.
    scale: initial scale (rigid, blendshapes).
    rotation_search: rigid: also try this many random rotations, refine the 8 whose silhouettes
        match best for a few steps of the first stage, and start from the best of those
        (0 = trust ``rotation``).
    shape: free mesh without an initial mesh: "sphere" (an icosphere placed from the masks) or
        "visual_hull" (the masks' visual hull: the right genus when the silhouettes show it).
    sphere_subdivisions: the icosphere's level (3 = 1280 faces).
    sphere_radius: its radius as a fraction of the radius estimated from the masks.
    hull_resolution: visual hull voxels per side; hull_edge: its remeshed edge length (radii).
    """

    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation: tuple[float, float, float] | None = None
    scale: float = 1.0
    rotation_search: int = 0
    shape: Literal["sphere", "visual_hull"] = "sphere"
    sphere_subdivisions: int = 3
    sphere_radius: float = 0.8
    hull_resolution: int = 64
    hull_edge: float = 0.08


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
    """A whole fit: representation, start, stages, the clip range (None = from the data), and
    ``bounds``: box constraints on blendshape coefficients, ``{expression: [0, 1]}``, enforced by
    projecting after every step."""

    model: Representation
    stages: tuple[StageConfig, ...]
    init: InitConfig = InitConfig()
    seed: int = 0
    near: float | None = None
    far: float | None = None
    bounds: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.stages:
            raise ValueError("stages: at least one stage is needed")
        allowed = set(_FREE[self.model])
        for i, s in enumerate(self.stages):
            for key, names in (("params", s.params), ("lr_scale", s.lr_scale)):
                bad = sorted(set(names) - allowed)
                if bad:
                    raise ValueError(
                        f"stages[{i}].{key}: {bad} are not parameters of a {self.model} fit; "
                        f"expected some of {sorted(allowed)}"
                    )
            if self.model != "free_mesh" and s.remesh is not None:
                raise ValueError(f"stages[{i}].remesh: only a free_mesh fit can remesh")
        for name, (lo, hi) in self.bounds.items():
            if name not in ("identity", "expression") or self.model != "blendshapes":
                raise ValueError(
                    f"bounds.{name}: only blendshape identity and expression coefficients take bounds"
                )
            if not lo < hi:
                raise ValueError(f"bounds.{name}: expected [low, high] with low < high; got [{lo}, {hi}]")

    @classmethod
    def from_dict(cls, data: dict) -> FitConfig:
        """Validate plain data (parsed YAML); errors name the key path."""
        return from_dict(cls, data)


class FitResult(NamedTuple):
    """mesh: the fitted Mesh in the cameras' world frame (rigid/blendshapes: the model's vertex
    order). params: JSON-ready parameters (rigid: ``object_to_world`` 4x4 for the model file's
    frame; blendshapes: coefficients and pose). history: one dict per stage (name, steps, losses,
    final terms, seconds, compile_seconds, faces). near, far: the clip range used."""

    mesh: Mesh
    params: dict
    history: list[dict]
    near: float
    far: float


def downsample_targets(targets: Targets, cameras: Camera, resolution: int | None) -> tuple[Targets, Camera]:
    """Targets and cameras with the longest image side ``resolution`` (no-op if None or larger).

    Images [..., H, W(, C)] (any leading dimensions, e.g. frames x views) are area-averaged
    (exactly, by whole blocks, when the size divides; otherwise by an antialiased linear resize);
    depth is averaged only over fully covered blocks, 0 elsewhere.
    """
    H, W = cameras.height, cameras.width
    if resolution is None or resolution >= max(H, W):
        return targets, cameras
    s = resolution / max(H, W)
    h, w = max(1, round(H * s)), max(1, round(W * s))
    lead = targets.mask.ndim - 2

    def area(img):
        img = jnp.asarray(img, jnp.float32)
        batch, rest = img.shape[:lead], img.shape[lead + 2 :]
        if H % h == 0 and W % w == 0:
            blocks = img.reshape(*batch, h, H // h, w, W // w, *rest)
            return blocks.mean((lead + 1, lead + 3))
        return jax.image.resize(img, (*batch, h, w, *rest), "linear", antialias=True)

    mask = area(targets.mask)
    depth = None
    if targets.depth is not None:
        full = mask >= 1.0 - 1e-6
        depth = jnp.where(full, area(targets.depth), 0.0)
    rgb = None if targets.rgb is None else area(targets.rgb)
    return Targets(mask, depth, rgb), cameras.resized(w, h)


def estimate_placement(cameras: Camera, masks: np.ndarray) -> tuple[np.ndarray, float]:
    """The object's centre [3] and radius from its masks [N, H, W]: the mask centroids
    triangulated, and the median over views of the farthest mask pixel's distance from the
    projected centre, back-projected at the centre's depth."""
    masks = np.asarray(masks) > 0.5
    counts = masks.sum((1, 2))
    if (counts > 0).sum() < 2:
        raise ValueError("need the object in at least two masks to place it; the masks are (nearly) empty")
    ys, xs = np.mgrid[: masks.shape[1], : masks.shape[2]]
    cu = (masks * xs).sum((1, 2)) / np.maximum(counts, 1)
    cv = (masks * ys).sum((1, 2)) / np.maximum(counts, 1)
    uv = jnp.asarray(np.stack([cu, cv], -1)[:, None, :], jnp.float32)
    seen = jnp.asarray((counts > 0)[:, None], jnp.float32)
    centre = np.asarray(triangulate_points(cameras, uv, weights=seen))[0]
    z = np.asarray(cameras.to_camera(jnp.asarray(centre[None], jnp.float32)))[:, 0, 2]
    radii = []
    for i in np.nonzero(counts)[0]:
        d = np.hypot(xs[masks[i]] - cu[i], ys[masks[i]] - cv[i]).max() + 0.5
        radii.append(d * z[i] / float(cameras.fx[i]))
    return centre, float(np.median(radii))


def visual_hull(cameras: Camera, masks: np.ndarray, centre, radius: float, *, resolution: int = 64) -> Mesh:
    """The visual hull of ``masks`` [N, H, W] seen by ``cameras`` [N], as a triangle mesh.

    A voxel grid of ``resolution``^3 over the cube of half-width 1.3 ``radius`` about ``centre``
    keeps the points whose projection lands on the mask in every view that sees them (points
    outside a view's image are not carved by it); the surface is gpytoolbox's marching cubes of
    the smallest bilinear mask value over the views, at 0.5, its largest connected piece.
    """
    masks = np.asarray(masks, np.float32)
    n, H, W = masks.shape
    axis = np.linspace(-1.3 * radius, 1.3 * radius, resolution)
    gx, gy, gz = np.meshgrid(axis + centre[0], axis + centre[1], axis + centre[2])
    grid = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], 1)
    uv, z = (np.asarray(a) for a in cameras.project(jnp.asarray(grid, jnp.float32)))  # [N, P, 2], [N, P]
    value = np.ones(len(grid), np.float32)
    for i in range(n):
        u, v = uv[i, :, 0], uv[i, :, 1]
        seen = (z[i] > 0) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
        u0 = np.clip(np.floor(u).astype(int), 0, W - 2)
        v0 = np.clip(np.floor(v).astype(int), 0, H - 2)
        fu, fv = np.clip(u - u0, 0, 1), np.clip(v - v0, 0, 1)
        m = masks[i]
        sample = ((1 - fv) * ((1 - fu) * m[v0, u0] + fu * m[v0, u0 + 1])
                  + fv * ((1 - fu) * m[v0 + 1, u0] + fu * m[v0 + 1, u0 + 1]))  # fmt: skip
        value = np.where(seen, np.minimum(value, sample), value)
    if not (value > 0.5).any():
        raise ValueError("the visual hull is empty: the masks do not agree on any point (check the cameras)")
    # Close the grid's border so the surface is watertight.
    field = value.reshape(resolution, resolution, resolution)
    field[[0, -1], :, :] = field[:, [0, -1], :] = field[:, :, [0, -1]] = 0.0
    v, f = _gpytoolbox().marching_cubes(field.ravel().astype(np.float64), grid, resolution, resolution,
                                        resolution, 0.5)  # fmt: skip
    # Space no view saw stays uncarved (in the grid's corners): keep the largest piece.
    import trimesh

    parts = trimesh.Trimesh(v, f, process=True).split(only_watertight=False)
    hull = max(parts, key=lambda p: p.area)
    faces = np.asarray(hull.faces, np.int32)
    if hull.volume < 0:  # marching cubes' winding depends on the grid's axis order: face outwards
        faces = faces[:, ::-1].copy()
    return Mesh(np.asarray(hull.vertices, np.float32), faces)


def _clip_range(config: FitConfig, cameras: Camera, centre: np.ndarray, radius: float) -> tuple[float, float]:
    z = np.asarray(cameras.to_camera(jnp.asarray(centre[None], jnp.float32)))[:, 0, 2]
    near = max(float(z.min()) - 2.0 * radius, 1e-3 * float(z.max())) if config.near is None else config.near
    far = config.far if config.far is not None else float(z.max()) + 2.0 * radius
    if not 0 < near < far:
        raise ConfigError(f"near/far must satisfy 0 < near < far; got near={near}, far={far}")
    return near, far


def _bounds(v: np.ndarray) -> tuple[np.ndarray, float]:
    c = (v.min(0) + v.max(0)) / 2
    return c, float(np.linalg.norm(v - c, axis=1).max())


def _targets(views: Views) -> Targets:
    if views.mask is None:
        raise ValueError("fitting needs masks: the dataset has no mask/ folder")
    return Targets(
        jnp.asarray(views.mask, jnp.float32),
        None if views.depth is None else jnp.asarray(views.depth, jnp.float32),
        None if views.rgb is None else jnp.asarray(views.rgb, jnp.float32),
    )


def _optimizer(stage: StageConfig, radius: float, bounds: dict | None = None) -> optax.GradientTransformation:
    """The stage's optimizer, its updates scaled per parameter: positions by the radius, then
    ``lr_scale``; parameters named in ``bounds`` are projected back into their box after each
    step. The inner state stays the inject_hyperparams one, so recovery can lower lr."""
    scales = {"translation": radius, "u": radius}
    scales = {k: scales.get(k, 1.0) * stage.lr_scale.get(k, 1.0) for k in {*scales, *stage.lr_scale}}
    inner = make_optimizer(stage.optimizer, stage.lr)
    bounds = bounds or {}

    def update(updates, state, params=None):
        updates, state = inner.update(updates, state, params)
        out = {}
        for k, u in updates.items():
            u = u * scales.get(k, 1.0)
            if k in bounds:
                lo, hi = bounds[k]
                u = jnp.clip(params[k] + u, lo, hi) - params[k]
            out[k] = u
        return out, state

    return optax.GradientTransformation(inner.init, update)


def _objective(model, cameras, near, far, stage: StageConfig, radius: float):
    """The stage's image objective, with depth measured in object radii."""
    weights = dataclasses.replace(stage.weights, depth=stage.weights.depth / radius**2)
    trunc = None if stage.depth_max_error is None else stage.depth_max_error * radius
    return image_objective(model, cameras, near=near, far=far, weights=weights, depth_max_error=trunc)


def _run(
    model, params, stage: StageConfig, free, cams, targets, near, far, radius, progress, seed, bounds=None
):
    """One stage over ``free`` parameters of ``params``; returns (params, history entry)."""
    tg, cs = downsample_targets(targets, cams, stage.resolution)
    loss_fn = _objective(model, cs, near, far, stage, radius)
    fixed = {k: v for k, v in params.items() if k not in free}
    start = {k: params[k] for k in free}
    opt = _optimizer(stage, radius, bounds)
    n = cs.batch_shape[0]
    k = min(stage.views_per_step or n, n)
    if k < n:
        # Each step sees k of the n views: an index batch drawn on the host, gathered in the step.
        def subset_loss(q, idx):
            sub = _objective(model, cs[idx], near, far, stage, radius)
            return sub({**fixed, **q}, jax.tree.map(lambda x: x[idx], tg))

        rng = np.random.default_rng(seed)
        step = make_step(subset_loss, opt)
        batch = lambda i: jnp.asarray(np.sort(rng.permutation(n)[:k]), jnp.int32)  # noqa: E731
    else:
        step = make_step(lambda q, t: loss_fn({**fixed, **q}, t), opt)
        batch = tg
    res = run_stage(
        step, FitState(start, opt.init(start), jnp.zeros((), jnp.int32)), batch, steps=stage.steps,
        patience=stage.patience, min_improvement=stage.min_improvement,
        progress=stage.name if progress else False,
    )  # fmt: skip
    params = {**params, **res.state.params}
    _, terms = jax.jit(loss_fn)(params, tg)
    entry = {
        "name": stage.name, "steps": res.steps, "stopped_early": res.stopped_early,
        "seconds": res.seconds, "compile_seconds": res.compile_seconds, "losses": res.losses,
        "terms": {k: float(v) for k, v in terms.items()}, "resolution": [cs.width, cs.height],
        "faces": int(model.faces.shape[0]),
    }  # fmt: skip
    return params, entry


def _remesh(vertices: np.ndarray, faces: np.ndarray, edge: float) -> tuple[np.ndarray, np.ndarray]:
    v, f = _gpytoolbox().remesh_botsch(
        np.asarray(vertices, np.float64), np.asarray(faces, np.int32), i=5, h=float(edge), project=True
    )
    return np.asarray(v, np.float32), np.asarray(f, np.int32)


def _fit_free(config, cams, targets, near, far, centre, radius, initial: Mesh | None, progress):
    if initial is None and config.init.shape == "visual_hull":
        hull = visual_hull(cams, targets.mask, centre, radius, resolution=config.init.hull_resolution)
        v, f = _remesh(np.asarray(hull.vertices), np.asarray(hull.faces), config.init.hull_edge * radius)
        initial = Mesh(v, f)
    elif initial is None:
        v, f = _gpytoolbox().icosphere(config.init.sphere_subdivisions)
        v = np.asarray(v) * radius * config.init.sphere_radius + centre
        initial = Mesh(v.astype(np.float32), np.asarray(f, np.int32))
    v, f = np.asarray(initial.vertices), np.asarray(initial.faces)
    history = []
    for i, stage in enumerate(config.stages):
        t = time.perf_counter()
        if stage.remesh is not None:
            v, f = _remesh(v, f, stage.remesh * radius)
        remesh_s = time.perf_counter() - t
        mesh = Mesh(v, f)
        model = FreeMeshModel.from_mesh(mesh, lam=stage.lam)
        params, entry = _run(model, model.init_params(mesh.vertices), stage, ("u",), cams, targets, near, far,
                             radius, progress, config.seed + i)  # fmt: skip
        entry["seconds"] += remesh_s
        entry["remesh_seconds"] = remesh_s
        v = np.asarray(model.vertices(params))
        history.append(entry)
    mesh = Mesh(v, f)
    return mesh, {"vertices": int(v.shape[0]), "faces": int(f.shape[0])}, history


def _initial_pose(config: FitConfig, centre_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start rotation [3, 3] (object -> world) and where the object's centre goes [3]."""
    R = np.asarray(so3_exp(jnp.asarray(np.radians(config.init.rotation), jnp.float32)))
    t = np.asarray(config.init.translation if config.init.translation is not None else centre_world)
    return R, t


def _search_rotation(model: RigidModel, params, stage, cams, targets, near, far, radius, count, seed):
    """Try ``count`` random base rotations about the current centre: score each by its
    silhouettes, refine the best 8 for 40 steps of the first stage, keep the best refined.

    Score and refinement are each compiled once, with the candidate model as an argument."""
    tg, cs = downsample_targets(targets, cams, stage.resolution)
    short = dataclasses.replace(stage, steps=min(stage.steps, 40))
    opt = _optimizer(short, radius)
    silhouette = LossWeights(silhouette=1.0)

    @jax.jit
    def score(m, p):
        return image_objective(m, cs, near=near, far=far, weights=silhouette)(p, tg)[0]

    @jax.jit
    def refined_score(m):
        loss = _objective(m, cs, near, far, short, radius)

        def step(_, carry):
            q, state = carry
            g = jax.grad(lambda q: loss({**params, **q}, tg)[0])(q)
            updates, state = opt.update(g, state, q)
            return optax.apply_updates(q, updates), state

        q0 = {k: params[k] for k in ("rotation", "translation")}
        q, _ = jax.lax.fori_loop(0, short.steps, step, (q0, opt.init(q0)))
        return score(m, {**params, **q})

    rng = np.random.default_rng(seed)
    candidates = [model]
    for _ in range(count):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        angle = 2 * np.arccos(np.clip(abs(q[0]), 0, 1))
        axis = q[1:] / max(np.linalg.norm(q[1:]), 1e-12)
        candidates.append(
            RigidModel(model.template, model.faces, so3_exp(jnp.asarray(angle * axis, jnp.float32)))
        )
    scores = [float(score(m, params)) for m in candidates]
    best = [candidates[i] for i in np.argsort(scores)[:8]]
    return min(best, key=lambda m: float(refined_score(m)))


def _fit_rigid(config, cams, targets, near, far, centre_world, mesh: Mesh, progress):
    v = np.asarray(mesh.vertices)
    c_model, radius = _bounds(v)
    R, t_centre = _initial_pose(config, centre_world)
    # Rotate about the object's centre: the template is centred, and the file frame comes back at the end.
    model = RigidModel.from_mesh(Mesh(v - c_model, mesh.faces), rotation=R)
    params = model.init_params(translation=t_centre, scale=config.init.scale)
    if config.init.rotation_search:
        model = _search_rotation(model, params, config.stages[0], cams, targets, near, far, radius,
                                 config.init.rotation_search, config.seed)  # fmt: skip
    history = []
    for i, stage in enumerate(config.stages):
        free = stage.params or ("rotation", "translation")
        params, entry = _run(
            model, params, stage, free, cams, targets, near, far, radius, progress, config.seed + i
        )
        model, params = model.rebased(params)
        history.append(entry)
    M = np.asarray(model.object_to_world(params), np.float64)
    shift = np.eye(4)
    shift[:3, 3] = -c_model
    out = {"object_to_world": (M @ shift).tolist(), "scale": float(np.exp(params["log_scale"]))}
    fitted = Mesh(np.asarray(model.vertices(params)), mesh.faces)
    return fitted, out, history


def _fit_blendshapes(config, cams, targets, near, far, centre_world, model: BlendshapeModel, progress):
    c_model, radius = _bounds(np.asarray(model.neutral))
    R, t_centre = _initial_pose(config, centre_world)
    t = t_centre - config.init.scale * R @ c_model  # vertices = s R x + t: the centre lands on t_centre
    coeffs = {
        k: jnp.clip(v, *config.bounds[k]) if k in config.bounds else v for k, v in model.init_params().items()
    }
    params = {
        **coeffs,
        "rotation": jnp.asarray(np.radians(config.init.rotation), jnp.float32),
        "translation": jnp.asarray(t, jnp.float32),
        "log_scale": jnp.asarray(np.log(config.init.scale), jnp.float32),
    }
    history = []
    for i, stage in enumerate(config.stages):
        free = stage.params or ("identity", "expression", "rotation", "translation")
        params, entry = _run(
            model,
            params,
            stage,
            free,
            cams,
            targets,
            near,
            far,
            radius,
            progress,
            config.seed + i,
            config.bounds,
        )
        history.append(entry)
    id_names = model.identity_names or [f"identity{i}" for i in range(model.num_identity)]
    exp_names = model.expression_names or [f"expression{i}" for i in range(model.num_expression)]
    out = {
        "identity": dict(zip(id_names, np.asarray(params["identity"]).tolist())),
        "expression": dict(zip(exp_names, np.asarray(params["expression"]).tolist())),
        "rotation_axis_angle": np.asarray(params["rotation"]).tolist(),
        "translation": np.asarray(params["translation"]).tolist(),
        "scale": float(np.exp(params["log_scale"])),
    }  # fmt: skip
    return Mesh(np.asarray(model.vertices(params)), model.faces), out, history


def fit_views(
    config: FitConfig, views: Views, *, model: Mesh | BlendshapeModel | None = None, progress: bool = True
) -> FitResult:
    """Fit ``config.model`` to a dataset.

    Args:
        config: the FitConfig.
        views: cameras and images (``meshfit.io.load_views``); masks are required, rgb and depth
            when a stage weighs the shading or depth terms.
        model: rigid: the known Mesh (required); blendshapes: the BlendshapeModel (required);
            free_mesh: an initial Mesh (default: an icosphere placed from the masks).
        progress: tqdm bars per stage.
    """
    targets = _targets(views)
    cams = views.cameras
    for i, s in enumerate(config.stages):
        w = s.weights
        if w.depth and targets.depth is None:
            raise ValueError(f"stages[{i}] ({s.name}) weighs depth but the dataset has no depth/ folder")
        if w.shading and targets.rgb is None:
            raise ValueError(f"stages[{i}] ({s.name}) weighs shading but the dataset has no rgb/ folder")
    centre, radius = estimate_placement(cams, views.mask)
    if config.model == "rigid":
        if not isinstance(model, Mesh):
            raise ValueError("a rigid fit needs the known mesh (CLI: --model MESH)")
        _, radius = _bounds(np.asarray(model.vertices))
    elif config.model == "blendshapes":
        if not isinstance(model, BlendshapeModel):
            raise ValueError("a blendshape fit needs the model (CLI: --model FOLDER_OR_NPZ)")
        _, radius = _bounds(np.asarray(model.neutral))
    elif model is not None and not isinstance(model, Mesh):
        raise ValueError("a free_mesh fit takes an optional initial Mesh as its model")
    near, far = _clip_range(config, cams, centre, radius)
    if config.model == "free_mesh":
        mesh, params, history = _fit_free(config, cams, targets, near, far, centre, radius, model, progress)
    elif config.model == "rigid":
        mesh, params, history = _fit_rigid(config, cams, targets, near, far, centre, model, progress)
    else:
        mesh, params, history = _fit_blendshapes(config, cams, targets, near, far, centre, model, progress)
    return FitResult(mesh, params, history, near, far)


def fit_blendshape_frames(
    model: BlendshapeModel,
    cameras: Camera,
    targets: Targets,
    params: dict,
    *,
    stages: tuple[StageConfig, ...] | list[StageConfig],
    near: float,
    far: float,
    smoothness: float = 0.0,
    bounds: dict | None = None,
    devices: Any = None,
    progress: bool = True,
) -> tuple[dict, list[dict]]:
    """Fit T frames of a performance at once: one identity and scale shared by all frames,
    expression and head pose per frame, optional temporal smoothness.

    The frames are independent given the shared parameters, so their image terms run under
    ``vmap``; with ``devices`` (a list of jax devices) the frame axis is split over them with
    ``jax.shard_map`` (T must be a multiple of their number): each device renders its frames,
    and the gradient of the shared parameters is summed across devices by the psum's transpose.

    Args:
        model: the BlendshapeModel.
        cameras: [N] cameras, the same rig for every frame.
        targets: masks [T, N, H, W] (depth [T, N, H, W], rgb [T, N, H, W, 3] as the weights need).
        params: start: identity [I], log_scale [] shared; expression [T, E], rotation [T, 3],
            translation [T, 3] per frame.
        stages: StageConfigs (``params`` names the free ones; default all but log_scale;
            lr and depth in units of the model's radius, as in ``fit_views``).
        smoothness: weight of the mean squared frame-to-frame change of expression, rotation
            and translation.
        bounds: box constraints on coefficients, e.g. ``{"expression": (0.0, 1.0)}``.
    Returns:
        (params, history) as in ``fit_views``.
    """
    from jax.sharding import Mesh as DeviceMesh
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    T = targets.mask.shape[0]
    _, radius = _bounds(np.asarray(model.neutral))
    per_frame = ("expression", "rotation", "translation")
    for k in per_frame:
        if params[k].shape[0] != T:
            raise ValueError(f"params[{k!r}] must have {T} frames (the targets'); got {params[k].shape}")
    mesh = None
    if devices is not None:
        devices = list(devices)
        if T % len(devices):
            raise ValueError(f"{T} frames do not split evenly over {len(devices)} devices")
        mesh = DeviceMesh(np.array(devices), ("frames",))
    history = []
    for stage in stages:
        tg, cs = downsample_targets(targets, cameras, stage.resolution)
        frame_loss = _objective(model, cs, near, far, stage, radius)

        def image_terms(q, t, frame_loss=frame_loss):
            loss, terms = jax.vmap(lambda fq, ft: frame_loss({**q["shared"], **fq}, ft))(q["frames"], t)
            return jnp.sum(loss), jax.tree.map(jnp.sum, terms)

        if mesh is not None:
            image_terms = jax.shard_map(
                lambda q, t, f=image_terms: jax.tree.map(lambda a: jax.lax.psum(a, "frames"), f(q, t)),
                mesh=mesh, in_specs=({"shared": P(), "frames": P("frames")}, P("frames")), out_specs=P(),
            )  # fmt: skip
        free = stage.params or ("identity", *per_frame)
        fixed = {k: v for k, v in params.items() if k not in free}

        def loss_fn(q, t, fixed=fixed, image_terms=image_terms):
            full = {**fixed, **q}
            split = {"shared": {k: v for k, v in full.items() if k not in per_frame},
                     "frames": {k: full[k] for k in per_frame}}  # fmt: skip
            total, terms = image_terms(split, t)
            terms = {k: v / T for k, v in terms.items()}
            total = total / T
            if smoothness:
                jerk = sum(jnp.mean(jnp.diff(full[k], axis=0) ** 2) for k in per_frame)
                terms["smoothness"] = jerk
                total = total + smoothness * jerk
            return total, terms

        start = {k: params[k] for k in free}
        if mesh is not None:
            shard = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))  # noqa: E731
            start = {k: shard(v, P("frames") if k in per_frame else P()) for k, v in start.items()}
            tg = Targets(*(None if x is None else shard(x, P("frames")) for x in tg))
        opt = _optimizer(stage, radius, bounds)
        res = run_stage(
            make_step(loss_fn, opt), FitState(start, opt.init(start), jnp.zeros((), jnp.int32)), tg,
            steps=stage.steps, patience=stage.patience, min_improvement=stage.min_improvement,
            progress=stage.name if progress else False,
        )  # fmt: skip
        params = {**params, **res.state.params}
        history.append({
            "name": stage.name, "steps": res.steps, "seconds": res.seconds, "losses": res.losses,
            "compile_seconds": res.compile_seconds, "resolution": [cs.width, cs.height],
        })  # fmt: skip
    return params, history


def check_output_folder(out, overwrite: bool) -> None:
    """Refuse a non-empty OUT unless ``overwrite`` (before a long fit, not after it)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")


def fit_folder(
    config_data: dict, data, out, *, model=None, gt=None, overwrite: bool = False, progress: bool = True
) -> dict:
    """Validate, fit and write OUT (mesh.obj, params.json, metrics.json, config.yaml, report).

    Everything that can be checked (config, dataset, model, OUT) is checked before the fit; OUT
    appears complete or not at all.

    Args:
        config_data: plain config data (parsed YAML, overrides applied) for ``FitConfig``.
        data: dataset folder (``meshfit.io.load_views``). out: the output folder.
        model: path of the known mesh (rigid), the blendshape model (folder, JSON or .npz), or
            an initial mesh (free mesh, optional).
        gt: ground-truth mesh path: adds ``metrics.evaluate``'s figures.
    Returns:
        The metrics written to metrics.json.
    """
    config = FitConfig.from_dict(config_data)
    check_output_folder(out, overwrite)
    views = load_views(data)
    loaded = None
    if model is not None:
        loaded = BlendshapeModel.load(model) if config.model == "blendshapes" else load_mesh(model)
    elif config.model != "free_mesh":
        what = "a mesh file" if config.model == "rigid" else "a blendshape folder or .npz"
        raise ValueError(f"a {config.model} fit needs --model ({what})")
    gt_mesh = load_mesh(gt) if gt is not None else None
    result = fit_views(config, views, model=loaded, progress=progress)
    rendered = render_views(result.mesh, views.cameras, near=result.near, far=result.far)
    metrics = {
        "seconds": sum(h["seconds"] for h in result.history),
        "compile_seconds": sum(h["compile_seconds"] for h in result.history),
        "steps": sum(h["steps"] for h in result.history),
        "stages": [{k: v for k, v in h.items() if k != "losses"} for h in result.history],
        "images": image_metrics(rendered, views),
    }
    if gt_mesh is not None:
        metrics["ground_truth"] = evaluate(result.mesh, gt_mesh)
    resolved = to_dict(config)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_mesh(tmp / "mesh.obj", result.mesh)
        (tmp / "params.json").write_text(json.dumps(result.params, indent=1) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (tmp / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        (tmp / "history.json").write_text(json.dumps(result.history) + "\n")
        write_report(tmp, result, views, rendered, metrics, config=resolved)
    return metrics

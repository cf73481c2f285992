"""Where the object is before any fitting: its centre and radius from the masks, the masks'
visual hull (a starting shape with the right genus), and a rigid pose's rotation search."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from meshfit.camera import Camera
from meshfit.fitting.config import StageConfig
from meshfit.fitting.stage import Problem, prepare_stage
from meshfit.mesh import Mesh, _gpytoolbox
from meshfit.models import RigidModel, so3_exp
from meshfit.objectives import LossWeights
from meshfit.rigs import triangulate_points

__all__ = ["estimate_placement", "place_from_landmarks", "search_rotation", "visual_hull"]


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


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(R, s, t) minimising |s R src + t - dst|^2 over points [P, 3] (Umeyama)."""
    ms, md = src.mean(0), dst.mean(0)
    xs, xd = src - ms, dst - md
    U, S, Vt = np.linalg.svd(xd.T @ xs)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / max(np.sum(xs**2), 1e-30))
    return R, s, md - s * R @ ms


def place_from_landmarks(
    cameras: Camera, detections: np.ndarray, confidence: np.ndarray, model_points: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray]:
    """A similarity pose (R [3, 3], s, t [3]) that puts ``model_points`` [L, 3] (a model's
    landmarks at rest) onto the detections [N, L, 2] (NaN = not found) with ``confidence``
    [N, L]: the landmarks seen in two views or more are triangulated, aligned by Umeyama's
    similarity, and refitted twice without those more than 3x the median residual away (a
    detector's outliers)."""
    det = np.asarray(detections, np.float64)
    w = np.where(np.isfinite(det).all(-1), np.asarray(confidence, np.float64), 0.0)
    seen = (w > 0).sum(0) >= 2
    if seen.sum() < 4:
        raise ValueError(
            "placing the model from its landmarks needs >= 4 landmarks found in >= 2 views; "
            f"{int(seen.sum())} are"
        )
    uv = jnp.asarray(np.where(np.isfinite(det), det, 0.0)[:, seen], jnp.float32)
    points = np.asarray(
        triangulate_points(cameras, uv, weights=jnp.asarray(w[:, seen], jnp.float32)), np.float64
    )
    model_points = np.asarray(model_points, np.float64)[seen]
    keep = np.ones(len(points), bool)
    for _ in range(3):
        R, s, t = _similarity(model_points[keep], points[keep])
        residual = np.linalg.norm(s * model_points @ R.T + t - points, axis=1)
        keep = residual <= 3.0 * np.median(residual) + 1e-12
        if keep.sum() < 4:
            keep = residual <= np.sort(residual)[3]
    return R, s, t


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


def search_rotation(
    problem: Problem, model: RigidModel, params: dict, stage: StageConfig, *, count: int, seed: int = 0,
    keep: int = 8, refine_steps: int = 40,
) -> RigidModel:  # fmt: skip
    """The most promising base rotation for a rigid fit that may start anywhere.

    ``count`` random rotations (uniform on SO(3)) and the model's own are scored by their
    silhouettes at the first stage's resolution; the best ``keep`` are refined for
    ``refine_steps`` steps of ``stage`` (rotation and translation free) and the model with the
    lowest refined silhouette loss is returned. Scoring and refinement each compile once: the
    candidate model is an argument of the step.
    """
    short = dataclasses.replace(stage, steps=min(stage.steps, refine_steps), patience=0, views_per_step=None)
    refine = prepare_stage(problem, model, short, free=("rotation", "translation"), seed=seed)
    scoring = dataclasses.replace(short, steps=0, weights=LossWeights(silhouette=1.0), depth_max_error=None)
    score_stage = prepare_stage(problem, model, scoring, free=("rotation",), seed=seed)

    def score(m, p) -> float:
        loss, _ = score_stage.loss(p, (m, {}, score_stage.targets, None))
        return float(loss)

    rng = np.random.default_rng(seed)
    candidates = [model]
    for _ in range(count):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        angle = 2 * np.arccos(np.clip(abs(q[0]), 0, 1))
        axis = q[1:] / max(np.linalg.norm(q[1:]), 1e-12)
        R = so3_exp(jnp.asarray(angle * axis, jnp.float32))
        candidates.append(dataclasses.replace(model, R0=R))
    scores = [score(m, params) for m in candidates]
    best = [candidates[i] for i in np.argsort(scores)[:keep]]
    refined = []
    for m in best:
        p, _ = refine.run(m, params, progress=False)
        refined.append(score(m, p))
    return best[int(np.argmin(refined))]

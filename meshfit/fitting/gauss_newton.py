"""Levenberg–Marquardt steps for the few parameters of a rigid pose or a blendshape rig.

An Adam step moves every parameter by about its learning rate whatever the curvature, so from a
start that is already close (a network's prediction) it creeps, then jitters at its step size.
The depth, landmark and prior terms are sums of squared residuals, and a rig or a pose has a
handful of parameters (P: 19 for the ICT face region, 6 for a controller), so their Jacobian is
cheap in forward mode once the rasterizer has said which triangle each pixel sees: a pixel's
depth is then the depth of that triangle's plane along the pixel's ray
(``render.rasterize.barycentrics``), a smooth function of the vertices, exactly the depth term's
interior derivative. Each step renders the views once without gradients, takes the objective's
exact gradient in reverse mode and the Gauss–Newton matrix J^T C J in forward mode (J [M, P]
over a random subset of the depth pixels: subsampled Newton), solves the damped normal
equations (Marquardt's diagonal scaling), and accepts the step only if it lowered the objective
with every pixel kept on its triangle's plane (else it raises the damping and stays).
Robust terms are linearised by their IRLS weights: a truncated depth error beyond
``depth_max_error`` weighs 0, a landmark by the Cauchy loss's derivative. Box bounds: a coordinate
at its bound that the step pushes outward is held (an active set) and the rest re-solved.

The silhouette and photometric terms are not sums of residuals this can linearise (their
derivatives live at coverage changes, through the antialiasing's reverse-mode rule), so a
``gauss_newton`` stage weighs only ``GN_TERMS``; Adam stages bring a fit close first.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from meshfit.camera import Camera
from meshfit.render import _native, rasterize
from meshfit.render._backend import use_native
from meshfit.render._pixels import pixel_ndc
from meshfit.render.rasterize import barycentrics

__all__ = ["GN_PARAMS", "GN_TERMS", "MAX_PARAMETERS", "check_gauss_newton", "make_gauss_newton_step"]

GN_TERMS = ("depth", "landmarks", "prior", "pose_prior")
GN_PARAMS = ("rotation", "translation", "log_scale", "identity", "expression")

_DAMPING_START = 1e-3
_DAMPING_MIN, _DAMPING_MAX = 1e-8, 1e8
_ACTIVE_SET_ROUNDS = 3
_EIG_CUTOFF = 1e-6
_DEPTH_ROWS = 16384  # depth pixels in the Gauss–Newton matrix (all of them when fewer)
_MIN_FRAME_ROWS = 2048  # in a sequence, per frame
MAX_PARAMETERS = 4096  # one dense solve


def check_gauss_newton(weights, params: tuple[str, ...], where: str) -> None:
    """A ``gauss_newton`` stage weighs only ``GN_TERMS`` and frees only ``GN_PARAMS``
    (``where`` names the stage in the message)."""
    other = sorted(k for k in vars(weights) if getattr(weights, k) and k not in GN_TERMS)
    if other:
        raise ValueError(
            f"{where}: gauss_newton weighs only the terms {list(GN_TERMS)} (sums of squares it can "
            f"linearise); this stage also weighs {other}: give their weights as 0 or use adam"
        )
    if "u" in params:
        raise ValueError(
            f"{where}: gauss_newton solves for the few parameters of a rigid or blendshape fit; "
            "a free mesh's vertices are thousands (use adam_uniform)"
        )
    bad = sorted(set(params) - set(GN_PARAMS))
    if bad:
        raise ValueError(
            f"{where}: gauss_newton fits the pose and the coefficients ({list(GN_PARAMS)}), not {bad}"
        )


def _solve(A, b, held, moved):
    """delta minimising delta^T A delta / 2 + b^T delta with the coordinates ``held`` fixed at
    ``moved`` (at their bounds).

    A: [P, P] damped normal matrix (symmetric), b: [P] half the gradient, held: [P] bool,
    moved: [P] the held coordinates' steps. In float32 a rig's normal matrix is ill-conditioned
    (identity shapes against scale and depth), so the system is solved Jacobi-scaled by its
    eigenvectors, directions with eigenvalues below float32's resolution left out (they would
    be noise)."""
    free = ~held
    moved = jnp.where(held, moved, 0.0)
    rhs = -(b + A @ moved)
    s = jnp.where(free, jax.lax.rsqrt(jnp.maximum(jnp.diag(A), 1e-30)), 0.0)
    As = A * s[:, None] * s[None, :]
    w, U = jnp.linalg.eigh(As)
    keep = w > _EIG_CUTOFF * jnp.max(w)
    y = U @ jnp.where(keep, (U.T @ (rhs * s)) / jnp.where(keep, w, 1.0), 0.0)
    return jnp.where(free, s * y, moved)


def make_gauss_newton_step(template: Any, cameras: Camera, *, near: float, far: float, radius: float,
                           weights, depth_max_error: float | None, landmark_scale: float | None,
                           pixel_size: float, bounds: dict | None = None, seed: int = 0,
                           frames: int | None = None, per_frame: tuple[str, ...] = (),
                           smoothness: float = 0.0):  # fmt: skip
    """A jitted Levenberg–Marquardt step with ``meshfit.fitting.make_step``'s signature.

    template: a model with ``faces`` (the models stepped share them). cameras: [N] at the stage's
    resolution. near, far: clip range (world units). radius: the object's radius (depth
    residuals and ``depth_max_error`` are in radii). weights: the stage's ``LossWeights`` (only
    ``GN_TERMS``; depth as the config gives it, per radius^2). landmark_scale, pixel_size: as
    ``objectives.image_objective``'s. bounds: ``{name: (low, high)}`` boxes on parameters.
    seed: of the depth pixels drawn for the Gauss–Newton matrix each step.
    frames, per_frame, smoothness: a sequence (as ``stage.Problem``'s): T frames through the
    rig, targets [T, N, ...], the parameters ``per_frame`` with a leading [T] axis, the others
    shared; the objective is the frames' mean plus ``smoothness`` times the mean squared
    frame-to-frame change (translation in radii). All frames' parameters are solved in one dense
    system (its matrix assembled from per-frame blocks), so a sequence may have up to
    ``MAX_PARAMETERS``.

    Returns ``step(state, batch) -> (state, aux)`` over ``FitState(params, damping [], step)``
    with batch (model, fixed params, targets, view indices or None), and ``init(params)`` giving
    the damping's start. aux: "loss" (the stage's objective at the step's input parameters),
    "finite" and each term.
    """
    faces = template.faces
    H, W = cameras.height, cameras.width
    bounds = dict(bounds or {})
    trunc = depth_max_error  # radii
    key = jax.random.key(seed)
    T = 1 if frames is None else frames
    per_frame = tuple(per_frame) if frames is not None else ()
    view_axis = 0 if frames is None else 1

    def take(cams, targets, idx):
        if idx is None:
            return cams, targets
        return cams[idx], type(targets)(
            *(None if x is None else jnp.take(x, idx, axis=view_axis) for x in targets)
        )

    def face_ids(v, cams):
        clip = cams.to_clip(v, near, far)
        return jax.lax.stop_gradient(rasterize(clip, faces, height=H, width=W).face_id)

    def residuals(params, model, cams, targets, face_id, depth=True) -> dict:
        """One frame's residual vectors per term (depth in radii, landmarks in the data's pixels)."""
        v = model.vertices(params)
        out = {}
        if weights.depth and depth:
            clip = cams.to_clip(v, near, far)
            # The native kernel's backward scatters into the vertices far faster than XLA.
            bary = _native.barycentrics if use_native("auto", clip) else barycentrics
            _, d = bary(clip, faces, face_id)
            out["depth"] = ((d - targets.depth) / radius).reshape(-1)
        if weights.landmarks:
            uv, _ = cams.project(model.landmark_points(v))
            found = ~jnp.any(jnp.isnan(targets.landmarks), -1)
            kp = jnp.where(found[..., None], targets.landmarks, 0.0)
            out["landmarks"] = ((uv + 0.5) * pixel_size - 0.5 - kp).reshape(-1)
        for term, names in (("prior", ("identity", "expression")), ("pose_prior", ("rotation", "log_scale"))):
            if getattr(weights, term):
                parts = [jnp.ravel(params[k]) for k in names if k in params and params[k].size]
                out[term] = jnp.concatenate(parts) if parts else jnp.zeros((0,), v.dtype)
        return out

    def weigh(res, params, model, cams, targets, face_id) -> tuple[dict, dict]:
        """One frame's per-residual IRLS weights c (its objective ~ sum c r^2 near here) and its
        terms' values as ``image_objective`` reports them."""
        c, terms = {}, {}
        if weights.depth:
            r = res["depth"]
            valid = ((face_id >= 0) & (targets.depth > 0)).reshape(-1)
            n = jnp.maximum(jnp.sum(valid), 1)
            sq = r**2 if trunc is None else jnp.minimum(r**2, trunc**2)
            inside = valid if trunc is None else valid & (r**2 < trunc**2)
            c["depth"] = jnp.where(inside, weights.depth / n, 0.0)
            terms["depth"] = jnp.sum(jnp.where(valid, sq, 0.0)) / n * radius**2
        if weights.landmarks:
            e = jnp.sum(res["landmarks"].reshape(targets.landmarks.shape) ** 2, -1)
            _, z = cams.project(model.landmark_points(model.vertices(params)))
            found = ~jnp.any(jnp.isnan(targets.landmarks), -1)
            wl = jnp.ones(e.shape, e.dtype) if targets.landmark_weights is None else targets.landmark_weights
            wl = jnp.where(found & (z > 0), wl, 0.0)
            total = jnp.maximum(jnp.sum(wl), 1e-12)
            if landmark_scale is None:
                rho, drho = e, jnp.ones_like(e)
            else:
                rho, drho = jnp.log1p(e / landmark_scale**2), 1.0 / (landmark_scale**2 + e)
            terms["landmarks"] = jnp.sum(wl * rho) / total
            c["landmarks"] = jnp.repeat((weights.landmarks * wl * drho / total).reshape(-1), 2)
        for term, names in (("prior", ("identity", "expression")), ("pose_prior", ("rotation", "log_scale"))):
            if getattr(weights, term):
                present = [params[k] for k in names if k in params and params[k].size]
                w = getattr(weights, term)
                c[term] = (
                    jnp.concatenate([jnp.full(p.size, w / p.size, p.dtype) for p in present])
                    if present else jnp.zeros((0,), res[term].dtype)
                )  # fmt: skip
                terms[term] = sum(jnp.mean(p**2) for p in present) if present else jnp.zeros(())
        return c, terms

    def frame_loss(terms):
        # As image_objective: the depth term is in world units^2, its weight per radius^2.
        return sum(getattr(weights, k) * t / (radius**2 if k == "depth" else 1.0) for k, t in terms.items())

    # Frames: parameters split into the shared ones and each frame's, vmapped over the frames.
    def split(params):
        shared = {k: v for k, v in params.items() if k not in per_frame}
        return shared, {k: v for k, v in params.items() if k in per_frame}

    def per_frames(fn, params, targets, *extra):
        """fn(frame params, frame targets, *frame extras) over every frame, vmapped."""
        if frames is None:
            extra = [jax.tree.map(lambda a: a[0], e) for e in extra]
            return jax.tree.map(lambda a: a[None], fn(params, targets, *extra))
        shared, own = split(params)
        return jax.vmap(lambda o, tg, *e: fn({**shared, **o}, tg, *e))(own, targets, *extra)

    def moving(params):
        return [k for k in per_frame if params[k].size and params[k].shape[0] > 1]

    def smooth_residuals(params) -> jax.Array:
        scale = {"translation": 1.0 / radius}
        parts = [(jnp.diff(params[k], axis=0) * scale.get(k, 1.0)).reshape(-1) for k in moving(params)]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), jnp.float32)

    def smooth_weights(params) -> jax.Array:
        parts = [jnp.full(params[k][1:].size, smoothness / params[k][1:].size) for k in moving(params)]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), jnp.float32)

    def objective(q, fixed, model, cams, targets, fid=None):
        """The stage's objective, its terms, and per frame the residuals, their weights and face
        ids; ``fid`` given: with each pixel kept on that triangle's plane (the smooth model a
        step minimises)."""
        params = {**fixed, **q}

        def one(p, tg, *f):
            fi = face_ids(model.vertices(p), cams) if not f else f[0]
            res = residuals(p, model, cams, tg, fi)
            c, terms = weigh(res, p, model, cams, tg, fi)
            return frame_loss(terms), terms, res, c, fi

        loss, terms, res, c, fid = per_frames(one, params, targets, *(() if fid is None else (fid,)))
        loss, terms = jnp.mean(loss), {k: jnp.mean(v) for k, v in terms.items()}
        if smoothness and frames is not None and moving(params):
            jerk = jnp.sum(smooth_weights(params) * smooth_residuals(params) ** 2) / smoothness
            terms["smoothness"], loss = jerk, loss + smoothness * jerk
        return loss, terms, res, c, fid

    def plane_depth(v, cams, face_id, rows):
        """Depth [K] at the pixels ``rows`` (flat indices into [N, H, W]) of their triangles'
        planes: ``barycentrics``'s formula at K pixels instead of all."""
        clip = cams.to_clip(v, near, far)
        n, rest = rows // (H * W), rows % (H * W)
        xs, ys = pixel_ndc(H, W, clip.dtype)
        px, py = xs[rest % W], ys[rest // W]
        c = clip[n[:, None], faces[face_id.reshape(-1)[rows]]]  # [K, 3, 4]
        u = jnp.cross(c[..., 0] - px[:, None] * c[..., 3], c[..., 1] - py[:, None] * c[..., 3])
        total = jnp.sum(u, -1, keepdims=True)
        return jnp.sum(u / jnp.where(total != 0, total, 1.0) * c[..., 3], -1)

    rows_per_frame = max(_DEPTH_ROWS // T, _MIN_FRAME_ROWS)

    @jax.jit
    def step(state, batch):
        model, fixed, targets, idx = batch
        cams, targets = take(cameras, targets, idx)
        q, damping = state.params, state.opt_state
        x0, unravel = ravel_pytree(q)
        lo, hi = (
            ravel_pytree({k: jnp.full_like(v, bounds[k][i] if k in bounds else inf) for k, v in q.items()})[0]
            for i, inf in ((0, -jnp.inf), (1, jnp.inf))
        )
        loss, terms, res, c, fid = objective(q, fixed, model, cams, targets)

        # The exact gradient over every pixel, in reverse mode: half the gradient of the
        # IRLS-weighted squares at fixed weights and triangles.
        def weighted_squares(x):
            p = {**fixed, **unravel(x)}
            r = per_frames(lambda pf, tg, fi: residuals(pf, model, cams, tg, fi), p, targets, fid)
            total = sum(jnp.sum(c[k] * r[k] ** 2) for k in r) / T
            if smoothness and frames is not None and moving(p):
                total = total + jnp.sum(smooth_weights(p) * smooth_residuals(p) ** 2)
            return 0.5 * total

        b = jax.grad(weighted_squares)(x0)
        # The Gauss–Newton matrix from per-frame blocks: forward mode in each frame's own
        # parameters (the shared ones and its own), scattered into the whole system. Forward
        # mode costs a pass per parameter and residual, so the depth rows enter through a random
        # subset of the weighted pixels, scaled to their number (subsampled Newton: it sets the
        # step's direction; its fixed point is the exact gradient's). Landmark and prior rows are
        # few: all of them.
        index = unravel(jnp.arange(x0.size, dtype=jnp.float32))
        shared_fixed = {k: v for k, v in fixed.items() if k not in per_frame}
        shared_keys = sorted(k for k in q if k not in per_frame)
        own_keys = sorted(k for k in q if k in per_frame)
        # Frame parameters have a leading [T] axis (one frame has none: every parameter is shared).
        sizes = [q[k].size for k in shared_keys] + [q[k][0].size for k in own_keys]
        shapes = [q[k].shape for k in shared_keys] + [q[k].shape[1:] for k in own_keys]

        def local(z):
            parts = jnp.split(z, np.cumsum(sizes)[:-1])
            return {k: a.reshape(sh) for k, a, sh in zip(shared_keys + own_keys, parts, shapes)}

        def block(z, own_fixed, tg, fi, cf, key_t):
            """One frame's [L, L] block of J^T C J in its local parameters z [L]."""

            def params_of(z):
                return {**shared_fixed, **own_fixed, **local(z)}

            A = jnp.zeros((z.size, z.size), z.dtype)
            others = [k for k in sorted(cf) if k != "depth"]
            if others:

                def other_rows(z):
                    r = residuals(params_of(z), model, cams, tg, fi, depth=False)
                    return jnp.concatenate([r[k] for k in others])

                Jo = jax.jacfwd(other_rows)(z)
                co = jnp.concatenate([cf[k] for k in others])
                Jo = jnp.where(co[:, None] > 0, Jo, 0.0)  # an unweighted row must not reach A as 0 * inf
                A = A + Jo.T @ (co[:, None] * Jo)
            if "depth" in cf:
                weighted = cf["depth"] > 0
                n = jnp.sum(weighted)
                draw = jax.random.uniform(key_t, weighted.shape)
                keep = weighted & (draw < rows_per_frame * 0.9 / jnp.maximum(n, 1))
                rows = jnp.nonzero(keep, size=rows_per_frame, fill_value=0)[0]
                used = jnp.arange(rows_per_frame) < jnp.sum(keep)
                cs = jnp.where(used, cf["depth"][rows], 0.0) * n / jnp.maximum(jnp.sum(used), 1)

                def depth_rows(z):
                    return plane_depth(model.vertices(params_of(z)), cams, fi, rows) / radius

                Jd = jax.jacfwd(depth_rows)(z)
                Jd = jnp.where(used[:, None], Jd, 0.0)
                A = A + Jd.T @ (cs[:, None] * Jd)
            return A / T

        params = {**fixed, **q}
        keys_t = jax.random.split(jax.random.fold_in(key, state.step), T)
        own_fixed = {k: v for k, v in fixed.items() if k in per_frame}
        zs = jnp.concatenate(
            [jnp.broadcast_to(jnp.ravel(q[k]), (T, q[k].size)) for k in shared_keys]
            + [q[k].reshape(T, -1) for k in own_keys], axis=1,
        )  # fmt: skip
        gidx = jnp.concatenate(
            [jnp.broadcast_to(jnp.ravel(index[k]), (T, q[k].size)) for k in shared_keys]
            + [index[k].reshape(T, -1) for k in own_keys], axis=1,
        ).astype(jnp.int32)  # fmt: skip
        frame_targets = targets if frames is not None else jax.tree.map(lambda a: a[None], targets)
        blocks = jax.vmap(block)(zs, own_fixed, frame_targets, fid, c, keys_t)
        A = jnp.zeros((x0.size, x0.size), x0.dtype)
        A = A.at[gidx[:, :, None], gidx[:, None, :]].add(blocks)
        if smoothness and frames is not None and moving(params):
            Js = jax.jacfwd(lambda x: smooth_residuals({**fixed, **unravel(x)}))(x0)
            A = A + Js.T @ (smooth_weights(params)[:, None] * Js)
        # Marquardt: damping scaled per parameter by the curvature, floored so a parameter the
        # data cannot see (a rig's unused shape) stays put instead of dividing by zero.
        d = jnp.diag(A)
        d = jnp.maximum(d, 1e-9 * jnp.maximum(jnp.max(d), 1e-30))
        Ad = A + damping * jnp.diag(d)
        # Bounds as an active set: a coordinate at its bound that the gradient pushes outward
        # stays; one the step would carry past its bound stops there, and the others are
        # solved again given it.
        held = ((x0 <= lo) & (b > 0)) | ((x0 >= hi) & (b < 0))
        moved = jnp.zeros_like(x0)
        delta = _solve(Ad, b, held, moved)
        for _ in range(_ACTIVE_SET_ROUNDS):
            cross = ~held & ((x0 + delta < lo) | (x0 + delta > hi))
            moved = jnp.where(cross, jnp.clip(x0 + delta, lo, hi) - x0, moved)
            held = held | cross
            delta = _solve(Ad, b, held, moved)
        cand = unravel(jnp.clip(x0 + delta, lo, hi))
        # Accept by the smooth model the step minimised (pixels on their triangles' planes): the
        # re-rendered objective also jumps as edge pixels change triangle or validity, and near
        # the answer those jumps outweigh what a step gains, so they would reject good steps.
        new_loss = objective(cand, fixed, model, cams, targets, fid)[0]
        finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(b))
        better = jnp.isfinite(new_loss) & (new_loss < loss) & finite
        params = jax.tree.map(lambda a, b: jnp.where(better, a, b), cand, q)
        damping = jnp.clip(jnp.where(better, damping / 3.0, damping * 4.0), _DAMPING_MIN, _DAMPING_MAX)
        new = state._replace(params=params, opt_state=damping, step=state.step + 1)
        return new, {"loss": loss, "finite": finite, **terms}

    def init(params):
        size = sum(np.size(v) for v in jax.tree.leaves(params))
        if size == 0:
            raise ValueError(
                f"gauss_newton has nothing to solve: the stage's parameters {sorted(params)} are empty"
            )
        if size > MAX_PARAMETERS:
            raise ValueError(
                f"gauss_newton solves all {size} parameters in one dense system; at most "
                f"{MAX_PARAMETERS} (fewer frames per fit, or adam)"
            )
        return jnp.asarray(_DAMPING_START, jnp.float32)

    return step, init

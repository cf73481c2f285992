"""Mesh-to-mesh evaluation metrics (``meshfit eval``).

Both meshes are first moved and scaled by the transform that puts the ground truth's bounding
sphere (centre of its bounding box, radius to the farthest vertex) at the origin with radius 1,
so the figures are comparable across objects. Surface metrics use area-weighted samples of each
surface and the exact distance from every sample to the other mesh (an AABB tree);
normal consistency pairs each sample with the nearest sample of the other surface (scipy's
k-d tree).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.mesh import Mesh, _gpytoolbox, bounding_sphere, face_normals, sample_surface

__all__ = ["evaluate", "image_metrics"]


def _samples(mesh: Mesh, vertices: np.ndarray, n: int, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    v = jnp.asarray(vertices, jnp.float32)
    s = sample_surface(key, v, mesh.faces, n)
    normals = np.asarray(face_normals(v, mesh.faces))[np.asarray(s.face_index)]
    return np.asarray(s.points, np.float32), normals


def _distance_to_mesh(points: np.ndarray, vertices: np.ndarray, faces) -> np.ndarray:
    """Exact distance [P] from points to a triangle mesh: gpytoolbox's AABB tree (libigl, C++),
    O(P log F) where meshfit.losses.point_mesh_distance, the differentiable twin, is O(P F)."""
    d2, _, _ = _gpytoolbox().squared_distance(
        np.asarray(points, np.float64), np.asarray(vertices, np.float64), np.asarray(faces, np.int32),
        use_cpp=True,
    )  # fmt: skip
    return np.sqrt(np.maximum(d2, 0.0))


def evaluate(pred: Mesh, gt: Mesh, *, num_samples: int = 30_000, seed: int = 0) -> dict:
    """Compare a predicted mesh with the ground truth.

    Returns a dict (all distances in units of the normalised ground truth, radius 1):
        chamfer_l1: mean over both directions of the mean sample-to-surface distance.
        chamfer_l2: the same with squared distances.
        normal_consistency: mean |cos| between each sample's face normal and its nearest
            sample's on the other surface, over both directions (1 = perfect).
        fscore_1pct, fscore_2pct: F-score at thresholds of 1% and 2% of the ground truth's
            bounding-box diagonal (precision: predicted samples within the threshold of the
            ground truth; recall: the converse).
        hausdorff: the larger of the two directed maxima of sample-to-surface distances.
        rms_point_to_mesh: root mean square of exact distances from each surface's samples to
            the other mesh, both directions pooled.
        vertex_error_mean, vertex_error_max: only for meshes in correspondence (same vertex
            count and faces): distances between corresponding vertices, in the ground truth's
            own file units (not normalised).
        scale: the factor applied (1 / ground-truth radius), to convert back to file units.
    """
    from scipy.spatial import cKDTree

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive whole number; got {num_samples!r}")
    gv = np.asarray(gt.vertices, np.float64)
    pv = np.asarray(pred.vertices, np.float64)
    centre, radius = bounding_sphere(gv)
    if radius <= 0:
        raise ValueError("the ground-truth mesh has zero extent")
    gvn, pvn = (gv - centre) / radius, (pv - centre) / radius
    k1, k2 = jax.random.split(jax.random.key(seed))
    gs, gn = _samples(gt, gvn, num_samples, k1)
    ps, pn = _samples(pred, pvn, num_samples, k2)
    # Exact distances from each surface's samples to the other mesh (not to its samples, whose
    # own spacing would bias every figure upwards).
    d_pg = _distance_to_mesh(ps, gvn, gt.faces)
    d_gp = _distance_to_mesh(gs, pvn, pred.faces)
    _, i_pg = cKDTree(gs).query(ps)
    _, i_gp = cKDTree(ps).query(gs)
    diag = float(np.linalg.norm(gvn.max(0) - gvn.min(0)))
    out = {
        "chamfer_l1": 0.5 * (d_pg.mean() + d_gp.mean()),
        "chamfer_l2": 0.5 * ((d_pg**2).mean() + (d_gp**2).mean()),
        "normal_consistency": 0.5 * (
            np.abs(np.sum(pn * gn[i_pg], 1)).mean() + np.abs(np.sum(gn * pn[i_gp], 1)).mean()
        ),
        "hausdorff": max(d_pg.max(), d_gp.max()),
        "rms_point_to_mesh": np.sqrt(np.mean(np.concatenate([d_pg, d_gp]) ** 2)),
    }  # fmt: skip
    for pct in (1, 2):
        tau = pct / 100 * diag
        precision, recall = (d_pg < tau).mean(), (d_gp < tau).mean()
        out[f"fscore_{pct}pct"] = (
            0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        )
    if pv.shape == gv.shape and np.array_equal(np.asarray(pred.faces), np.asarray(gt.faces)):
        err = np.linalg.norm(pv - gv, axis=1)
        out["vertex_error_mean"] = float(err.mean())
        out["vertex_error_max"] = float(err.max())
    out["scale"] = 1.0 / radius
    return {k: float(v) for k, v in out.items()}


def image_metrics(rendered, views) -> dict:
    """How well a fitted mesh explains a dataset: ``rendered`` is its ``render_views`` for the
    dataset's cameras (``meshfit.render.RenderedViews``), ``views`` the dataset
    (``meshfit.io.Views``). Silhouette IoU per view (mean, min, and the list), and where the data
    has them, depth RMSE over pixels covered in both (world units) and the mean absolute colour
    difference (``rgb_mae``) and PSNR in dB (``rgb_psnr``, peak 1) against the render (a
    photometric fit's is rendered with its fitted albedo and light; otherwise grey under the
    studio light, meaningful only for untextured synthetic data): the MAE over pixels both
    cover, the PSNR over whole images, the render laid over the views' background plates or,
    without them, the target's own background (so a silhouette error counts). Data without
    masks: no IoU, the colour over the fitted silhouette (PSNR: over the plates, if any)."""
    out = {}
    target = rendered.mask
    if views.mask is not None:
        target = np.asarray(views.mask) > 0.5
        inter = (rendered.mask & target).sum((1, 2))
        union = np.maximum((rendered.mask | target).sum((1, 2)), 1)
        iou = inter / union
        out = {"mask_iou_mean": float(iou.mean()), "mask_iou_min": float(iou.min()),
               "mask_iou": iou.round(6).tolist()}  # fmt: skip
    if views.depth is not None:
        both = rendered.mask & (np.asarray(views.depth) > 0)
        if both.any():
            err = rendered.depth[both] - np.asarray(views.depth)[both]
            out["depth_rmse"] = float(np.sqrt(np.mean(err**2)))
    if views.rgb is not None:
        both = rendered.mask & target
        if both.any():
            out["rgb_mae"] = float(np.abs(rendered.rgb[both] - np.asarray(views.rgb)[both]).mean())
        rgb = np.asarray(views.rgb)
        plate = views.background
        if plate is not None and views.frames is None:
            composed = np.where(rendered.mask[..., None], rendered.rgb, np.asarray(plate))
            mse = np.mean((composed - rgb) ** 2)
        elif views.mask is not None:
            # The render over the target's own background (its mean where the target's object
            # hides it), so the whole image compares and silhouette errors count.
            background = rgb[~target].mean(0) if (~target).any() else np.zeros(3)
            behind = np.where(target[..., None], background, rgb)
            composed = np.where(rendered.mask[..., None], rendered.rgb, behind)
            mse = np.mean((composed - rgb) ** 2)
        else:
            mse = np.mean((rendered.rgb[both] - rgb[both]) ** 2) if both.any() else np.nan
        if np.isfinite(mse):
            out["rgb_psnr"] = float(10 * np.log10(1.0 / max(mse, 1e-12)))
    return out

"""Losses for fitting: geometry (Chamfer, Laplacian, edge, normal consistency), images
(silhouette, photometric, depth), landmarks, and priors.

All are pure, jit-able and differentiable; each returns a scalar (mean over its elements) unless
it says otherwise. Batch over frames or meshes with ``jax.vmap``. Shape vocabulary: P, Q points,
V vertices, F faces, E edges, N views, L landmarks, H, W, C images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meshfit.camera import Camera
from meshfit.mesh import _safe_norm, face_normals
from meshfit.topology import LaplacianOp, Topology

__all__ = [
    "chamfer_distance",
    "depth_loss",
    "edge_length_loss",
    "image_gradient_loss",
    "l2_prior",
    "landmark_loss",
    "laplacian_loss",
    "normal_consistency_loss",
    "photometric_loss",
    "point_mesh_distance",
    "silhouette_loss",
    "soft_iou_loss",
    "total_variation_loss",
]


def _penalty(d2: jax.Array, norm: str) -> jax.Array:
    """Squared distances -> the per-point penalty: d^2 ("l2") or d ("l1")."""
    if norm == "l2":
        return d2
    if norm == "l1":
        ok = d2 > 0
        # Double where: sqrt's derivative at 0 is inf (coincident points).
        return jnp.where(ok, jnp.sqrt(jnp.where(ok, d2, 1.0)), 0.0)
    raise ValueError(f"norm must be 'l1' or 'l2'; got {norm!r}")


def _nearest_sq(x: jax.Array, y: jax.Array, chunk: int) -> jax.Array:
    """For each x [P, D], the squared distance to its nearest y [Q, D]; memory O(chunk * Q).

    The argmin is found without gradient and the distance recomputed from it, so gradients reach
    both point sets (and the index choice carries none, as the min's subgradient).
    """
    pad = (-x.shape[0]) % chunk
    xp = jnp.pad(jax.lax.stop_gradient(x), ((0, pad), (0, 0)))
    ys = jax.lax.stop_gradient(y)

    def block(xb):
        d2 = jnp.sum(xb * xb, 1)[:, None] - 2 * xb @ ys.T + jnp.sum(ys * ys, 1)[None, :]
        return jnp.argmin(d2, 1)

    idx = jax.lax.map(block, xp.reshape(-1, chunk, x.shape[1])).reshape(-1)[: x.shape[0]]
    return jnp.sum((x - y[idx]) ** 2, -1)


def chamfer_distance(x: jax.Array, y: jax.Array, *, norm: str = "l2", chunk: int = 1024) -> jax.Array:
    """Symmetric Chamfer distance between point sets: mean_x min_y d + mean_y min_x d.

    Args:
        x: [P, 3] points. y: [Q, 3] points.
        norm: "l2" (squared distances, PyTorch3D's default) or "l1" (distances).
        chunk: rows of the distance matrix held at once.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be [P, D] and [Q, D]; got {tuple(x.shape)} and {tuple(y.shape)}")
    return jnp.mean(_penalty(_nearest_sq(x, y, chunk), norm)) + jnp.mean(
        _penalty(_nearest_sq(y, x, chunk), norm)
    )


def _point_triangle_sq(p: jax.Array, tri: jax.Array) -> jax.Array:
    """Squared distance from points p [..., 3] to triangles tri [..., 3, 3] (broadcast)."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    n = jnp.cross(b - a, c - a)
    nn = jnp.sum(n * n, -1)
    ok = nn > 0
    nn_safe = jnp.where(ok, nn, 1.0)
    # Projection onto the plane, inside test with the edge cross products.
    d_plane = jnp.sum((p - a) * n, -1)
    q = p - (d_plane / nn_safe)[..., None] * n
    inside = ok
    for u, v in ((a, b), (b, c), (c, a)):
        inside = inside & (jnp.sum(jnp.cross(v - u, q - u) * n, -1) >= 0)
    plane_sq = d_plane * d_plane / nn_safe

    def seg_sq(u, v):
        e = v - u
        ee = jnp.sum(e * e, -1)
        t = jnp.clip(jnp.sum((p - u) * e, -1) / jnp.where(ee > 0, ee, 1.0), 0.0, 1.0)
        return jnp.sum((p - u - t[..., None] * e) ** 2, -1)

    edge_sq = jnp.minimum(jnp.minimum(seg_sq(a, b), seg_sq(b, c)), seg_sq(c, a))
    return jnp.where(inside, plane_sq, edge_sq)


def point_mesh_distance(
    points: jax.Array, vertices: jax.Array, faces: jax.Array, *, chunk: int = 256
) -> jax.Array:
    """Squared distance [P] from each point to the nearest point of a triangle mesh surface.

    Exact (every face is considered), O(P * F) work in chunks of points; differentiable in the
    points and the vertices (the nearest face is chosen without gradient).

    Args:
        points: [P, 3]. vertices: [V, 3]. faces: [F, 3] int32.
    """
    tri = vertices[faces]  # [F, 3, 3]
    tri_ng = jax.lax.stop_gradient(tri)
    pad = (-points.shape[0]) % chunk
    pp = jnp.pad(jax.lax.stop_gradient(points), ((0, pad), (0, 0)))

    def block(pb):
        return jnp.argmin(_point_triangle_sq(pb[:, None, :], tri_ng[None]), 1)

    idx = jax.lax.map(block, pp.reshape(-1, chunk, 3)).reshape(-1)[: points.shape[0]]
    return _point_triangle_sq(points, tri[idx])


def laplacian_loss(vertices: jax.Array, laplacian: LaplacianOp) -> jax.Array:
    """Mean squared norm of the Laplacian of the vertex positions, mean_i |(L x)_i|^2.

    With ``uniform_laplacian`` it pulls each vertex to the mean of its neighbours; with
    ``cotangent_laplacian(vertices, faces)`` (weights from the current shape) it measures bending.
    """
    return jnp.mean(jnp.sum((laplacian @ vertices) ** 2, -1))


def _charbonnier(squared: jax.Array, eps: float) -> jax.Array:
    """sqrt(squared + eps^2) - eps: L1 away from 0, smooth at it."""
    return jnp.sqrt(squared + eps * eps) - eps


def total_variation_loss(
    values: jax.Array, edges: jax.Array | None = None, *, eps: float = 0.01
) -> jax.Array:
    """Mean over edges of the Charbonnier norm of the difference of per-vertex ``values``
    [V, C] (e.g. linear albedo), sqrt(|a_i - a_j|^2 + eps^2) - eps: total variation, which keeps
    piecewise-constant values sharp (a cow's spots) where the squared Laplacian would blur them.

    edges: [E, 2] int32 (``Topology.edges``), or None for ``values`` an [H, W, C] grid (a
    texture), whose edges join horizontally and vertically neighbouring texels. eps: the scale
    below which differences count quadratically (values' units).
    """
    if edges is None:
        if values.ndim != 3:
            raise ValueError(f"a grid's values must be [H, W, C]; got {tuple(values.shape)}")
        C = values.shape[-1]
        d = jnp.concatenate([(values[:, 1:] - values[:, :-1]).reshape(-1, C),
                             (values[1:] - values[:-1]).reshape(-1, C)])  # fmt: skip
    else:
        d = values[edges[:, 1]] - values[edges[:, 0]]
    return jnp.mean(_charbonnier(jnp.sum(d * d, -1), eps))


def edge_length_loss(vertices: jax.Array, edges: jax.Array, *, target: float | jax.Array = 0.0) -> jax.Array:
    """Mean squared deviation of edge lengths from ``target`` ([E] or scalar; 0 penalises length).

    Args:
        vertices: [V, 3]. edges: [E, 2] int32 (``Topology.edges``).
    """
    length = _safe_norm(vertices[edges[:, 1]] - vertices[edges[:, 0]])
    return jnp.mean((length - target) ** 2)


def normal_consistency_loss(vertices: jax.Array, faces: jax.Array, topology: Topology) -> jax.Array:
    """Mean over interior edges of 1 - cos(angle between the two adjacent face normals).

    0 for a flat surface, growing with creases; boundary edges are ignored.
    """
    n = face_normals(vertices, faces)
    ef = topology.edge_faces
    interior = ef[:, 1] >= 0
    cos = jnp.sum(n[ef[:, 0]] * n[jnp.maximum(ef[:, 1], 0)], -1)
    count = jnp.maximum(jnp.sum(interior), 1)
    return jnp.sum(jnp.where(interior, 1.0 - cos, 0.0)) / count


def _check_images(pred: jax.Array, target: jax.Array, name: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )


def _masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(x)
    m = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape).astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def silhouette_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error between coverage images [..., H, W] in [0, 1]."""
    _check_images(pred, target, "silhouette_loss")
    return jnp.mean((pred - target) ** 2)


def soft_iou_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """1 - soft IoU of coverage images [N, H, W]: 1 - sum(p t) / sum(p + t - p t), averaged over N."""
    _check_images(pred, target, "soft_iou_loss")
    axes = tuple(range(pred.ndim - 2, pred.ndim))
    inter = jnp.sum(pred * target, axes)
    union = jnp.sum(pred + target - pred * target, axes)
    return jnp.mean(1.0 - inter / jnp.maximum(union, 1e-12))


def photometric_loss(
    pred: jax.Array,
    target: jax.Array,
    *,
    mask: jax.Array | None = None,
    norm: str = "l1",
    eps: float = 0.01,
    scale: float | None = None,
) -> jax.Array:
    """Colour error of images [..., H, W, C] averaged over the pixels where ``mask`` [..., H, W]
    is true (all pixels without a mask): "l1" (mean absolute), "l2" (mean squared) or
    "charbonnier" (sqrt(d^2 + eps^2) - eps: L1 away from 0, smooth at it; robust to the pixels
    a model cannot explain, e.g. specular highlights). ``scale`` (colour units) makes it
    redescending: an error e counts scale * log(1 + e / scale), as e below ``scale`` and
    growing only logarithmically past it, so that what the image model cannot produce
    (eyelashes on a uniform skin albedo) pulls the shape about scale / e as hard."""
    _check_images(pred, target, "photometric_loss")
    diff = pred - target
    if norm == "l1":
        err = jnp.abs(diff)
    elif norm == "l2":
        err = diff * diff
    elif norm == "charbonnier":
        err = _charbonnier(diff * diff, eps)
    else:
        raise ValueError(f"norm must be 'l1', 'l2' or 'charbonnier'; got {norm!r}")
    if scale is not None:
        err = scale * jnp.log1p(err / scale)
    return _masked_mean(err, mask)


def image_gradient_loss(
    pred: jax.Array, target: jax.Array, *, mask: jax.Array | None = None, eps: float = 0.01
) -> jax.Array:
    """Charbonnier error between the image gradients of images [..., H, W, C]: the differences of
    horizontally and of vertically neighbouring pixels, averaged over the pairs whose pixels are
    both in ``mask`` [..., H, W] (all pairs without a mask). Edges (texture, occlusion) weigh
    by their contrast, while an error that is smooth across the image (a shading or gain error)
    barely counts."""
    _check_images(pred, target, "image_gradient_loss")
    diff = pred - target
    dx, dy = diff[..., :, 1:, :] - diff[..., :, :-1, :], diff[..., 1:, :, :] - diff[..., :-1, :, :]
    ex, ey = _charbonnier(dx * dx, eps), _charbonnier(dy * dy, eps)
    if mask is None:
        return (jnp.sum(ex) + jnp.sum(ey)) / (ex.size + ey.size)
    mx = (mask[..., :, 1:] & mask[..., :, :-1])[..., None].astype(diff.dtype)
    my = (mask[..., 1:, :] & mask[..., :-1, :])[..., None].astype(diff.dtype)
    count = (jnp.sum(mx) + jnp.sum(my)) * diff.shape[-1]
    return (jnp.sum(ex * mx) + jnp.sum(ey * my)) / jnp.maximum(count, 1.0)


def depth_loss(
    pred: jax.Array, target: jax.Array, *, mask: jax.Array | None = None, max_error: float | None = None
) -> jax.Array:
    """Mean squared depth error [..., H, W] over pixels where both depths are valid (> 0) and
    ``mask`` (optional) is true; pixels where either is empty are left to the silhouette terms.

    ``max_error`` truncates the quadratic: a pixel further off counts ``max_error^2`` and gives
    no gradient. Far from alignment the overlap of the two silhouettes pairs unrelated surface
    points (an edge-on cheek with the background wall of a nose), and their pull, blind to the
    coverage changes a move causes, drives a pose away; truncation leaves those pixels to the
    silhouette terms until they come close."""
    _check_images(pred, target, "depth_loss")
    valid = (jax.lax.stop_gradient(pred) > 0) & (target > 0)
    if mask is not None:
        valid = valid & mask
    err = (pred - target) ** 2
    if max_error is not None:
        err = jnp.minimum(err, max_error**2)
    return _masked_mean(err, valid)


def landmark_loss(
    cameras: Camera,
    points: jax.Array,
    keypoints: jax.Array,
    *,
    weights: jax.Array | None = None,
    scale: float | None = None,
    pixel_size: float = 1.0,
) -> jax.Array:
    """Reprojection error of 3-D landmarks against 2-D detections, a weighted mean over them.

    Args:
        cameras: a [N] batch of cameras.
        points: [L, 3] landmark positions in world space (e.g. ``model.landmark_points(v)``).
        keypoints: [N, L, 2] detected pixel positions (OpenCV pixel convention), NaN where a
            detector found nothing (such points count 0).
        weights: optional [N, L] confidences (0 drops a detection).
        scale: None: the squared error in pixels^2. A number: the Cauchy (Lorentzian) robust
            loss ``log(1 + r^2 / scale^2)`` of the error r in pixels, so a detection ``scale``
            pixels off counts log 2 and one 10x further off only about 6.6x that: outliers
            (a detector's mistakes) barely pull.
        pixel_size: the size of the cameras' pixels in the keypoints' pixels (the keypoints at
            the data's resolution, the cameras at a coarser stage's: data width / camera width).
    """
    uv, depth = cameras.project(points)
    if uv.shape != keypoints.shape:
        raise ValueError(
            f"keypoints must be {tuple(uv.shape)} (views, landmarks, 2); got {tuple(keypoints.shape)}"
        )
    found = ~jnp.any(jnp.isnan(keypoints), -1)
    kp = jnp.where(found[..., None], keypoints, 0.0)
    uv = (uv + 0.5) * pixel_size - 0.5  # in the keypoints' pixels
    err = jnp.sum((uv - kp) ** 2, -1)
    if scale is not None:
        err = jnp.log1p(err / scale**2)
    w = jnp.ones(err.shape, err.dtype) if weights is None else weights
    w = jnp.where(found & (depth > 0), w, 0.0)  # a landmark behind a camera has no meaningful projection
    return jnp.sum(w * err) / jnp.maximum(jnp.sum(w), 1e-12)


def l2_prior(x: jax.Array, *, scale: float | jax.Array = 1.0) -> jax.Array:
    """Mean of (x / scale)^2: a Gaussian prior on coefficients or pose offsets."""
    return jnp.mean((x / scale) ** 2)

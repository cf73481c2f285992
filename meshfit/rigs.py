"""Rigs of cameras and what several cameras tell together: cameras looking at a target
(``look_at``), on a ring (``orbit_rig``) or spread over a sphere (``sphere_rig``), and the DLT
triangulation of points seen by several of them. Conventions are ``meshfit.camera``'s (OpenCV).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.camera import Camera, CameraError

__all__ = [
    "focal_from_fov",
    "look_at",
    "orbit_rig",
    "rotation_from_quaternion",
    "sphere_rig",
    "triangulate_points",
]


def rotation_from_quaternion(q) -> np.ndarray:
    """[3, 3] float64 rotation of the quaternion ``q`` = (w, x, y, z) (normalised here; COLMAP's order)."""
    q = np.asarray(q, np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def focal_from_fov(fov_deg: float, size: int) -> float:
    """Focal length in pixels for a field of view (degrees) across ``size`` pixels."""
    if not 0 < fov_deg < 180:
        raise CameraError(f"fov must be in (0, 180) degrees; got {fov_deg}")
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2)


def _look_at_rotation(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    fwd = target - eye
    fwd = fwd / np.linalg.norm(fwd, axis=-1, keepdims=True)
    up = np.broadcast_to(up, fwd.shape)
    right = np.cross(fwd, up)
    # Looking along `up` leaves `right` undefined: fall back to another world axis.
    bad = np.linalg.norm(right, axis=-1) < 1e-6
    if bad.any():
        alt = np.where(np.abs(up[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
        right = np.where(bad[..., None], np.cross(fwd, np.broadcast_to(alt, fwd.shape)), right)
    right = right / np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd], axis=-2)  # rows: camera axes in world coords


def look_at(
    eye,
    *,
    target=(0.0, 0.0, 0.0),
    up=(0.0, 1.0, 0.0),
    width: int,
    height: int,
    fov: float = 60.0,
) -> Camera:
    """Cameras at ``eye`` ([B..., 3] world) looking at ``target`` with ``up`` pointing up in the image.

    ``fov`` is the horizontal field of view in degrees; pixels are square and the principal
    point is the image centre ((W - 1) / 2, (H - 1) / 2).
    """
    eye = np.asarray(eye, np.float64)
    target = np.asarray(target, np.float64)
    if eye.shape[-1:] != (3,):
        raise CameraError(f"eye must be [..., 3]; got {eye.shape}")
    if (np.linalg.norm(eye - target, axis=-1) < 1e-12).any():
        raise CameraError("eye and target coincide; the viewing direction is undefined")
    R = _look_at_rotation(eye, target, np.asarray(up, np.float64))
    t = -np.einsum("...ij,...j->...i", R, eye)
    f = focal_from_fov(fov, width)
    batch = eye.shape[:-1]
    full = lambda x: np.full(batch, x, np.float32)  # noqa: E731
    return Camera(
        fx=full(f), fy=full(f), cx=full((width - 1) / 2), cy=full((height - 1) / 2),
        R=R.astype(np.float32), t=t.astype(np.float32), width=width, height=height,
    )  # fmt: skip


def orbit_rig(
    num_views: int,
    *,
    radius: float,
    width: int,
    height: int,
    fov: float = 60.0,
    target=(0.0, 0.0, 0.0),
    up=(0.0, 1.0, 0.0),
    elevation: float = 0.0,
    start_azimuth: float = 0.0,
) -> Camera:
    """``num_views`` cameras evenly spaced on a ring around ``up`` through ``target``.

    ``elevation`` (degrees) lifts the ring above the plane orthogonal to ``up``; azimuths start
    at ``start_azimuth`` degrees and step by 360 / num_views.
    """
    if num_views < 1:
        raise CameraError(f"num_views must be >= 1; got {num_views}")
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    a = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 0.0, 1.0])
    a /= np.linalg.norm(a)
    b = np.cross(a, up)
    az = np.radians(start_azimuth) + 2 * np.pi * np.arange(num_views) / num_views
    el = np.radians(elevation)
    d = np.cos(el) * (np.cos(az)[:, None] * b + np.sin(az)[:, None] * a) + np.sin(el) * up
    eye = np.asarray(target, np.float64) + radius * d
    return look_at(eye, target=target, up=up, width=width, height=height, fov=fov)


def sphere_rig(
    num_views: int,
    *,
    radius: float,
    width: int,
    height: int,
    fov: float = 60.0,
    target=(0.0, 0.0, 0.0),
    up=(0.0, 1.0, 0.0),
    seed: int | None = None,
) -> Camera:
    """``num_views`` cameras spread evenly over a sphere (Fibonacci lattice), looking at ``target``.

    With a ``seed`` the lattice is turned by a random rotation about ``target`` (reproducible),
    so different seeds give different, equally even rigs.
    """
    if num_views < 1:
        raise CameraError(f"num_views must be >= 1; got {num_views}")
    k = np.arange(num_views) + 0.5
    y = 1 - 2 * k / num_views
    r = np.sqrt(np.maximum(0.0, 1 - y * y))
    phi = np.pi * (3 - np.sqrt(5)) * k
    d = np.stack([r * np.cos(phi), y, r * np.sin(phi)], -1)
    if seed is not None:
        d = d @ rotation_from_quaternion(np.random.default_rng(seed).normal(size=4)).T
    eye = np.asarray(target, np.float64) + radius * d
    return look_at(eye, target=target, up=up, width=width, height=height, fov=fov)


def triangulate_points(cameras: Camera, uv: jax.Array, *, weights: jax.Array | None = None) -> jax.Array:
    """DLT triangulation of points seen by N cameras.

    Solves the homogeneous least-squares system of the direct linear transform in normalised
    camera coordinates (K^-1 applied first, for conditioning) with an SVD per point.

    Args:
        cameras: a batch of N cameras (batch shape (N,)).
        uv: [N, P, 2] pixel observations of P points in each camera.
        weights: optional [N, P] float confidences; 0 drops a view for that point. Each point
            needs at least two views with non-zero weight.
    Returns:
        [P, 3] world points.
    """
    if len(cameras.batch_shape) != 1:
        raise CameraError(f"need a batch of N cameras; got batch shape {cameras.batch_shape}")
    n = cameras.batch_shape[0]
    uv = jnp.asarray(uv)
    if uv.ndim != 3 or uv.shape[0] != n or uv.shape[2] != 2:
        raise CameraError(f"uv must be [N={n}, P, 2]; got {tuple(uv.shape)}")
    if weights is None:
        weights = jnp.ones(uv.shape[:2], uv.dtype)
    x = (uv[..., 0] - cameras.cx[:, None]) / cameras.fx[:, None]  # [N, P]
    y = (uv[..., 1] - cameras.cy[:, None]) / cameras.fy[:, None]
    Rt = jnp.concatenate([cameras.R, cameras.t[..., None]], -1)  # [N, 3, 4]
    rows_x = x[..., None] * Rt[:, None, 2, :] - Rt[:, None, 0, :]  # [N, P, 4]
    rows_y = y[..., None] * Rt[:, None, 2, :] - Rt[:, None, 1, :]
    A = jnp.concatenate([rows_x, rows_y], 0) * jnp.concatenate([weights, weights], 0)[..., None]
    A = jnp.swapaxes(A, 0, 1)  # [P, 2N, 4]
    _, _, vt = jnp.linalg.svd(A, full_matrices=False)
    X = vt[:, -1, :]
    return X[:, :3] / X[:, 3:4]

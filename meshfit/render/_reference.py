"""A slow, obviously correct rasterizer for tests: a float64 linear solve per pixel and face.

For each pixel centre (NDC px, py) and triangle with clip corners (x_i, y_i, z_i, w_i) it solves
    sum_i l_i (x_i - px w_i) = 0,   sum_i l_i (y_i - py w_i) = 0,   sum_i l_i = 1
for the barycentrics l of the point of the triangle's plane on the pixel's ray. The pixel sees
the triangle when all l_i >= 0, the point is in front of the camera (w > 0) and inside the depth
range (-1 <= z/w <= 1); the nearest such triangle wins. Independent of rasterize.py's edge
functions, tiling and fill rule; ``ambiguous`` marks pixels where that rule could decide
differently (a pixel centre within ``tol`` of an edge, or two surfaces within ``tol`` in depth).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ReferenceFragments(NamedTuple):
    face_id: np.ndarray  # [B, H, W] int
    bary: np.ndarray  # [B, H, W, 3] float64
    depth: np.ndarray  # [B, H, W] float64
    ambiguous: np.ndarray  # [B, H, W] bool


def rasterize_reference(clip: np.ndarray, faces: np.ndarray, height: int, width: int, tol: float = 1e-5):
    """clip: [B, V, 4], faces: [F, 3] -> ReferenceFragments (numpy, float64)."""
    clip = np.asarray(clip, np.float64)
    faces = np.asarray(faces)
    nb = clip.shape[0]
    xs = (2.0 * np.arange(width) + 1.0) / width - 1.0
    ys = (2.0 * np.arange(height) + 1.0) / height - 1.0
    px, py = np.meshgrid(xs, ys, indexing="xy")
    px, py = px.ravel(), py.ravel()
    n = px.size
    out_f = np.full((nb, n), -1)
    out_b = np.zeros((nb, n, 3))
    out_d = np.full((nb, n), np.inf)
    amb = np.zeros((nb, n), bool)
    for b in range(nb):
        second = np.full(n, np.inf)
        for f, tri in enumerate(faces):
            c = clip[b, tri]  # [3, 4]
            M = np.empty((n, 3, 3))
            M[:, 0, :] = c[None, :, 0] - px[:, None] * c[None, :, 3]
            M[:, 1, :] = c[None, :, 1] - py[:, None] * c[None, :, 3]
            M[:, 2, :] = 1.0
            det = np.linalg.det(M)
            solvable = np.abs(det) > 1e-14
            lam = np.zeros((n, 3))
            if solvable.any():
                rhs = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (int(solvable.sum()), 3))
                lam[solvable] = np.linalg.solve(M[solvable], rhs[..., None])[..., 0]
            w = lam @ c[:, 3]
            z = lam @ c[:, 2]
            zn = np.where(w > 0, z / np.where(w > 0, w, 1.0), np.inf)
            hit = solvable & (lam.min(1) >= 0) & (w > 0) & (zn >= -1) & (zn <= 1)
            near_edge = solvable & (np.abs(lam.min(1)) < tol) & (w > 0)
            closer = hit & (w < out_d[b])
            second = np.where(hit & ~closer, np.minimum(second, w), second)
            second = np.where(closer, out_d[b], second)
            out_f[b] = np.where(closer, f, out_f[b])
            out_b[b] = np.where(closer[:, None], lam, out_b[b])
            out_d[b] = np.where(closer, w, out_d[b])
            amb[b] |= near_edge
        both = np.isfinite(second) & np.isfinite(out_d[b])
        gap = np.abs(np.where(both, second, 0.0) - np.where(both, out_d[b], 0.0))
        amb[b] |= both & (gap < tol * np.maximum(1.0, np.abs(np.where(both, out_d[b], 0.0))))
    out_d[out_f < 0] = 0.0
    shape = (nb, height, width)
    return ReferenceFragments(
        out_f.reshape(shape), out_b.reshape(shape + (3,)), out_d.reshape(shape), amb.reshape(shape)
    )

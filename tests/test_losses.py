"""Losses: known values on tiny inputs, finite-difference gradients, and the bad-shape errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from jax.test_util import check_grads

import meshfit
from meshfit import losses


def _brute_nearest(x, y):
    return ((x[:, None] - y[None]) ** 2).sum(-1).min(1)


def test_chamfer_matches_brute_force_and_is_zero_on_itself():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(70, 3)).astype(np.float32), rng.normal(size=(50, 3)).astype(np.float32)
    ref = _brute_nearest(x, y).mean() + _brute_nearest(y, x).mean()
    np.testing.assert_allclose(
        losses.chamfer_distance(jnp.asarray(x), jnp.asarray(y), chunk=16), ref, rtol=1e-5
    )
    ref1 = np.sqrt(_brute_nearest(x, y)).mean() + np.sqrt(_brute_nearest(y, x)).mean()
    np.testing.assert_allclose(
        losses.chamfer_distance(jnp.asarray(x), jnp.asarray(y), norm="l1"), ref1, rtol=1e-5
    )
    assert float(losses.chamfer_distance(jnp.asarray(x), jnp.asarray(x), norm="l1")) == 0.0
    g = jax.grad(lambda a: losses.chamfer_distance(a, jnp.asarray(x), norm="l1"))(jnp.asarray(x))
    assert np.isfinite(np.asarray(g)).all()  # coincident points: no NaN from sqrt(0)


def test_chamfer_gradients(x64):
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.normal(size=(20, 3))), jnp.asarray(rng.normal(size=(15, 3)))
    for norm in ("l1", "l2"):
        check_grads(
            lambda a, b, norm=norm: losses.chamfer_distance(a, b, norm=norm), (x, y), order=1, modes=["rev"]
        )


def test_point_mesh_distance_exact_cases():
    v = jnp.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    f = jnp.array([[0, 1, 2]])
    pts = jnp.array(
        [[0.2, 0.2, 0.5], [-1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [2.0, -1.0, 1.0], [0.25, -0.5, 0.0]]
    )  # above the interior, beyond a vertex, on the hypotenuse, off a corner, below an edge
    expect = [0.25, 1.0, 0.0, 1.0 + 1.0 + 1.0, 0.25]
    np.testing.assert_allclose(losses.point_mesh_distance(pts, v, f, chunk=2), expect, atol=1e-6)


def _closest_point_ericson(p, a, b, c):
    """Closest point on triangle abc to p by Voronoi regions (Ericson, Real-Time Collision
    Detection, 5.1.5): an independent reference for point_mesh_distance."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = ab @ ap, ac @ ap
    if d1 <= 0 and d2 <= 0:
        return a
    bp = p - b
    d3, d4 = ab @ bp, ac @ bp
    if d3 >= 0 and d4 <= d3:
        return b
    vc = d1 * d4 - d3 * d2
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        return a + d1 / (d1 - d3) * ab
    cp = p - c
    d5, d6 = ab @ cp, ac @ cp
    if d6 >= 0 and d5 <= d6:
        return c
    vb = d5 * d2 - d1 * d6
    if vb <= 0 and d2 >= 0 and d6 <= 0:
        return a + d2 / (d2 - d6) * ac
    va = d3 * d6 - d5 * d4
    if va <= 0 and (d4 - d3) >= 0 and (d5 - d6) >= 0:
        return b + (d4 - d3) / ((d4 - d3) + (d5 - d6)) * (c - b)
    denom = 1.0 / (va + vb + vc)
    return a + ab * vb * denom + ac * vc * denom


def test_point_mesh_distance_against_reference(x64):
    s = trimesh.creation.icosphere(subdivisions=1)
    v, f = jnp.asarray(s.vertices * [1.0, 0.7, 1.2]), jnp.asarray(s.faces)
    pts = jnp.asarray(np.random.default_rng(2).normal(size=(40, 3)) * 1.2)
    ours = np.sqrt(np.asarray(losses.point_mesh_distance(pts, v, f)))
    tri = np.asarray(v)[np.asarray(f)]
    ref = [min(np.linalg.norm(p - _closest_point_ericson(p, *t)) for t in tri) for p in np.asarray(pts)]
    np.testing.assert_allclose(ours, ref, atol=1e-7)
    check_grads(lambda p, vv: jnp.sum(losses.point_mesh_distance(p, vv, f)), (pts, v), order=1, modes=["rev"])


def test_laplacian_edge_and_normal_losses(grid, icosphere, x64):
    v, f = grid
    flat = jnp.asarray(v, jnp.float64)
    topo = meshfit.Topology.from_faces(f, len(v))
    cot = meshfit.cotangent_laplacian(flat, jnp.asarray(f))
    interior = (v[:, 0] > 0) & (v[:, 0] < 4) & (v[:, 1] > 0) & (v[:, 1] < 4)
    # flat grid: no bending, no creases
    assert float(losses.normal_consistency_loss(flat, jnp.asarray(f), topo)) < 1e-12
    assert float(jnp.abs((cot @ flat)[interior]).max()) < 1e-9
    bumped = flat.at[12, 2].set(0.5)
    assert float(losses.normal_consistency_loss(bumped, jnp.asarray(f), topo)) > 0.01
    assert float(losses.laplacian_loss(bumped, meshfit.uniform_laplacian(topo))) > float(
        losses.laplacian_loss(flat, meshfit.uniform_laplacian(topo))
    )
    e = np.asarray(topo.edges)
    v64 = v.astype(np.float64)
    lengths = np.linalg.norm(v64[e[:, 1]] - v64[e[:, 0]], axis=1)
    np.testing.assert_allclose(losses.edge_length_loss(flat, topo.edges), np.mean(lengths**2), rtol=1e-9)
    np.testing.assert_allclose(
        losses.edge_length_loss(flat, topo.edges, target=jnp.asarray(lengths)), 0, atol=1e-12
    )
    sv, sf = jnp.asarray(icosphere[0], jnp.float64), jnp.asarray(icosphere[1])
    stopo = meshfit.Topology.from_faces(icosphere[1], len(icosphere[0]))
    for fn in (
        lambda x: losses.normal_consistency_loss(x, sf, stopo),
        lambda x: losses.laplacian_loss(x, meshfit.cotangent_laplacian(x, sf)),
        lambda x: losses.edge_length_loss(x, stopo.edges, target=0.3),
    ):
        check_grads(fn, (sv,), order=1, modes=["rev"])


def test_image_losses():
    pred = jnp.array([[[1.0, 0.5], [0.0, 0.0]]])
    target = jnp.array([[[1.0, 1.0], [0.0, 1.0]]])
    np.testing.assert_allclose(losses.silhouette_loss(pred, target), (0.25 + 1.0) / 4)
    np.testing.assert_allclose(losses.soft_iou_loss(pred, target), 1 - 1.5 / 3.0)
    assert float(losses.soft_iou_loss(target, target)) == 0.0
    rgb = jnp.ones((1, 2, 2, 3))
    mask = jnp.array([[[True, False], [False, False]]])
    np.testing.assert_allclose(losses.photometric_loss(rgb * 0.5, rgb, mask=mask), 0.5)
    np.testing.assert_allclose(losses.photometric_loss(rgb * 0.5, rgb, norm="l2"), 0.25)
    d_pred = jnp.array([[[2.0, 0.0], [3.0, 4.0]]])
    d_true = jnp.array([[[1.0, 5.0], [0.0, 4.5]]])
    np.testing.assert_allclose(losses.depth_loss(d_pred, d_true), (1.0 + 0.25) / 2)  # only both-valid pixels
    # Truncated: the 1.0-off pixel counts 0.6^2 and pulls no more; the 0.5-off one still does.
    np.testing.assert_allclose(losses.depth_loss(d_pred, d_true, max_error=0.6), (0.36 + 0.25) / 2)
    g = jax.grad(lambda d: losses.depth_loss(d, d_true, max_error=0.6))(d_pred)
    np.testing.assert_allclose(g, [[[0.0, 0.0], [0.0, -0.5]]])
    with pytest.raises(ValueError, match="differ in shape"):
        losses.silhouette_loss(pred, target[..., :1])
    with pytest.raises(ValueError, match="norm must be"):
        losses.photometric_loss(rgb, rgb, norm="l3")
    # Robust scale: e counts s log(1 + e / s); a pixel 0.7 off pulls ~s / 0.7 as hard as one 0.01 off.
    off = jnp.array([0.01, 0.7]).reshape(1, 1, 2, 1) * jnp.ones((1, 1, 2, 3))
    robust = losses.photometric_loss(rgb[:, :1] - off, rgb[:, :1], scale=0.05)
    np.testing.assert_allclose(robust, np.mean(0.05 * np.log1p([0.2, 14.0])), rtol=1e-6)
    g = jax.grad(lambda p: losses.photometric_loss(p, rgb[:, :1], scale=0.05))(rgb[:, :1] - off)
    pull = np.abs(np.asarray(g))[0, 0, :, 0]
    np.testing.assert_allclose(pull[1] / pull[0], (1 + 0.2) / (1 + 14.0), rtol=1e-5)


def test_image_gradient_loss():
    rng = np.random.default_rng(3)
    target = jnp.asarray(rng.uniform(0.2, 0.8, (2, 6, 7, 3)), jnp.float32)
    # An offset or a smooth ramp (a gain or shading error) has no gradient error; an edge does.
    ramp = 0.002 * jnp.arange(7.0)[None, None, :, None]
    assert float(losses.image_gradient_loss(target + 0.2, target)) < 1e-7
    assert float(losses.photometric_loss(target + 0.2, target)) > 0.1
    assert (
        float(losses.image_gradient_loss(target + ramp, target))
        < 2e-4
        < float(losses.photometric_loss(target + ramp, target))
    )
    edge = target.at[:, :, 3:, :].add(0.3)
    # One step of 0.3 per row, along x only: (0.3 - eps) over one x-pair in 6 of the 6*6 + 5*7.
    np.testing.assert_allclose(
        losses.image_gradient_loss(edge, target), (np.hypot(0.3, 0.01) - 0.01) * 6 / (36 + 35), rtol=1e-5
    )
    # Pairs with a pixel outside the mask do not count, whatever is there.
    mask = jnp.zeros((2, 6, 7), bool).at[:, :, :3].set(True)
    assert float(losses.image_gradient_loss(edge, target, mask=mask)) < 1e-7
    wider = mask.at[:, :, 3].set(True)  # the step's pairs in, of 6 * 3 x-pairs and 5 * 4 y-pairs
    np.testing.assert_allclose(
        losses.image_gradient_loss(edge, target, mask=wider), (np.hypot(0.3, 0.01) - 0.01) * 6 / 38, rtol=1e-5
    )
    with pytest.raises(ValueError, match="image_gradient_loss: prediction .* differ in shape"):
        losses.image_gradient_loss(target, target[..., :1])


def test_landmark_loss_and_prior():
    cams = meshfit.sphere_rig(3, radius=4.0, width=64, height=64, seed=0)
    pts = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (5, 3)), jnp.float32)
    uv, _ = cams.project(pts)
    assert float(losses.landmark_loss(cams, pts, uv)) < 1e-8
    shifted = uv.at[1].add(3.0)  # view 1 off by (3, 3) px: 18 px^2 on a third of the detections
    np.testing.assert_allclose(losses.landmark_loss(cams, pts, shifted), 18.0 / 3, rtol=1e-4)
    w = jnp.ones((3, 5)).at[1].set(0.0)
    assert float(losses.landmark_loss(cams, pts, shifted, weights=w)) < 1e-8
    with pytest.raises(ValueError, match="keypoints must be"):
        losses.landmark_loss(cams, pts, uv[:, :4])
    np.testing.assert_allclose(losses.l2_prior(jnp.array([1.0, 3.0]), scale=2.0), (0.25 + 2.25) / 2)

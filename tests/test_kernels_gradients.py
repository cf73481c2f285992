"""The native kernels' hand-written backward passes, in float32 as they run, against central
differences and against the float64 JAX gradient of the same function on the same inputs.

(The float64 finite-difference tests in test_render.py route everything to the JAX path: float64
never reaches the kernels, so these are the tests of the native VJPs.)

Tolerances, from float32's unit roundoff u = 2^-24 ~ 6e-8 and what the data makes of it:
- interpolate is linear in attr and bary: each output is 3 products summed, each gradient entry a
  sum over the pixels that touch it, so the error is a few ulps grown like sqrt(terms): 5e-8
  measured as a relative error norm; bound 1e-6.
- barycentrics u / sum(u) lose about log10(k) digits, k = |u| / |sum(u)|, which grows as a triangle
  turns edge-on; Spot at 48 x 40 has slivers with k ~ 1e3, so ~1e3 u ~ 1e-4 (1.4e-4 measured);
  bound 1e-3.
- antialias's gradient flows through the edge crossing t = f / (f - o) of two well-separated
  edge values: 2e-6 measured; bound 2e-5.
Central differences are taken of the float64 JAX forward (h = 1e-7: truncation ~h^2, rounding
~1e-16 / h, both far below float32 error) along random directions d and compared with <g, d>,
relative to |g| |d|; and of the native float32 forward itself on a well-conditioned small mesh,
with steps and bounds given in that test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meshfit
from meshfit.render import _native, antialias, interpolate, rasterize
from meshfit.render.rasterize import barycentrics
from tests.helpers import SPOT, require_native

H, W = 40, 48
TOLERANCE = {"barycentrics": 1e-3, "interpolate": 1e-6, "antialias": 2e-5}


def _relative(a, b) -> float:
    return float(jnp.linalg.norm(jnp.ravel(a) - jnp.ravel(b)) / jnp.linalg.norm(jnp.ravel(b)))


@pytest.fixture(scope="module")
def spot_scene():
    """Packaged Spot from 2 views: float32 clip positions and its fixed (native) fragments."""
    m = meshfit.load_mesh(SPOT)
    v = np.asarray(m.vertices, np.float64)
    centre, radius = meshfit.bounding_sphere(v)
    cams = meshfit.sphere_rig(2, radius=3.2 * radius, target=centre, width=W, height=H, fov=50.0, seed=4)
    clip = cams.to_clip(m.vertices, 2.0 * radius, 4.4 * radius)
    return m, clip, rasterize(clip, m.faces, height=H, width=W, backend="jax")


def _losses(m, frags, seed=0):
    """The three ops as scalar losses of float arrays, on the native or the JAX path."""
    rng = np.random.default_rng(seed)
    w_bary = rng.normal(size=frags.face_id.shape + (3,))
    w_depth = rng.normal(size=frags.face_id.shape)
    w_color = rng.normal(size=frags.face_id.shape + (3,))
    faces = m.faces

    def bary(clip, native):
        b, d = (_native.barycentrics if native else barycentrics)(clip, faces, frags.face_id)
        return jnp.sum(b * w_bary.astype(clip.dtype)) + jnp.sum(d * w_depth.astype(clip.dtype))

    def interp(attr, bary_img, native):
        f2 = frags._replace(bary=bary_img)
        out = interpolate(attr, f2, faces, backend="native" if native else "jax")
        return jnp.sum(out * w_color.astype(attr.dtype))

    def aa(clip, color, native):
        f2 = frags._replace(depth=frags.depth.astype(clip.dtype))
        out = antialias(color, f2, clip, faces, backend="native" if native else "jax")
        return jnp.sum(out * w_color.astype(clip.dtype))

    return bary, interp, aa


def _check(name, loss, args32, argnums, seed=0):
    """Native float32 VJP vs the float64 JAX gradient and float64 central differences."""
    g32 = jax.grad(loss, argnums=argnums)(*args32, True)
    with jax.enable_x64(True):
        args64 = [jnp.asarray(np.asarray(a), jnp.float64) for a in args32]
        g64 = jax.grad(loss, argnums=argnums)(*args64, False)
        tol = TOLERANCE[name]
        rng = np.random.default_rng(seed)
        for i, (a, b) in enumerate(zip(g32, g64)):
            assert float(jnp.abs(b).max()) > 0, f"{name}: zero gradient for argument {argnums[i]}"
            assert _relative(a, b) < tol, f"{name} arg {argnums[i]}: {_relative(a, b):.2e} vs float64"
            for _ in range(3):
                d = jnp.asarray(rng.normal(size=a.shape))
                h = 1e-7
                plus = list(args64)
                minus = list(args64)
                plus[argnums[i]] = args64[argnums[i]] + h * d
                minus[argnums[i]] = args64[argnums[i]] - h * d
                fd = (loss(*plus, False) - loss(*minus, False)) / (2 * h)
                err = abs(float(fd) - float(jnp.sum(a * d))) / float(jnp.linalg.norm(b) * jnp.linalg.norm(d))
                assert err < tol, f"{name} arg {argnums[i]}: {err:.2e} vs central differences"


def test_native_barycentrics_vjp(spot_scene):
    require_native()
    m, clip, frags = spot_scene
    bary, _, _ = _losses(m, frags)
    _check("barycentrics", bary, [clip], (0,))


def test_native_interpolate_vjp(spot_scene):
    require_native()
    m, clip, frags = spot_scene
    _, interp, _ = _losses(m, frags)
    attr = jnp.asarray(np.random.default_rng(3).uniform(size=(m.num_vertices, 3)), jnp.float32)
    _check("interpolate", interp, [attr, frags.bary], (0, 1))


def test_native_antialias_vjp(spot_scene):
    require_native()
    m, clip, frags = spot_scene
    _, _, aa = _losses(m, frags)
    color = interpolate(jnp.asarray(np.random.default_rng(4).uniform(size=(m.num_vertices, 3)), jnp.float32),
                        frags, m.faces)  # fmt: skip
    _check("antialias", aa, [clip, color], (0, 1))


def test_native_vjps_match_float32_central_differences():
    """The native forward's own float32 central differences match its VJP on a well-conditioned
    mesh (a frontal icosphere: no sliver, so the float32 differences themselves are meaningful)."""
    require_native()
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=2)
    v = jnp.asarray(s.vertices, jnp.float32)
    faces = jnp.asarray(s.faces, jnp.int32)
    cam = meshfit.look_at(np.array([[0.0, 0.0, 4.0]]), width=32, height=32, fov=40.0)
    clip = cam.to_clip(v, 2.0, 6.0)
    frags = rasterize(clip, faces, height=32, width=32, backend="native")
    m = meshfit.Mesh(v, faces)
    bary, interp, aa = _losses(m, frags, seed=7)
    color = interpolate(
        jnp.asarray(np.random.default_rng(5).uniform(size=(len(v), 3)), jnp.float32), frags, faces
    )
    rng = np.random.default_rng(6)
    # (loss, input, step h, bound on |fd - <g, d>| / |g| for unit d). h = 1e-2 for the smooth ops:
    # truncation h^2 |L'''| / 6 and rounding u |L| / h are both ~1e-5 |g| here (2e-5 measured).
    # antialias: h = 1e-4 (1/1000 pixel) so no pair's crossing passes t = 1/2 or 1 (kinks and
    # jumps); rounding u |L| / h ~ 1e-2 then dominates (1e-3 |g| measured).
    cases = [
        (lambda x: bary(x, True), clip, 1e-2, 1e-4),
        (
            lambda x: interp(x, frags.bary, True),
            jnp.asarray(rng.uniform(size=(len(v), 3)), jnp.float32),
            1e-2,
            1e-4,
        ),
        (lambda x: aa(x, color, True), clip, 1e-4, 5e-3),
    ]
    for fn, x, h, bound in cases:
        g = jax.grad(fn)(x)
        assert float(jnp.linalg.norm(g)) > 0
        for _ in range(3):
            d = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
            d = d / jnp.linalg.norm(d)
            fd = (fn(x + h * d) - fn(x - h * d)) / (2 * h)
            err = abs(float(fd) - float(jnp.sum(g * d))) / float(jnp.linalg.norm(g))
            assert err < bound, (float(fd), float(jnp.sum(g * d)), err)

"""The rasterizer: native == pure JAX == reference, against pyrender's OpenGL, fill rule,
near plane, and the differentiable ops (interpolate, texture, antialias, soft silhouette)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import meshfit
from meshfit.render import (
    antialias,
    interpolate,
    lambert,
    mip_pyramid,
    normal_image,
    rasterize,
    sh_irradiance,
    soft_silhouette,
    texture,
)
from meshfit.render._reference import rasterize_reference
from meshfit.render._setup import triangle_setup
from meshfit.render._visibility import visibility_exhaustive, visibility_jax
from meshfit.render.rasterize import barycentrics
from meshfit.synth import pyrender_views
from tests.helpers import SPOT, require_native, shared

BACKENDS = ["jax", "native"]


def _backend(name: str) -> str:
    """A backend to test: "native" requires the kernels (fails in CI, skips elsewhere)."""
    if name == "native":
        require_native()
    return name


def _framing(v, views=3, W=64, H=48, seed=0, dist=3.2, fov=50.0):
    v = np.asarray(v, np.float64)
    c = (v.min(0) + v.max(0)) / 2
    r = float(np.linalg.norm(v - c, axis=1).max())
    cams = meshfit.sphere_rig(views, radius=dist * r, target=c, width=W, height=H, fov=fov, seed=seed)
    return cams, (dist - 1.2) * r, (dist + 1.2) * r


def _random_soup(n=60, seed=0):
    """Overlapping, intersecting random triangles in a unit box: a hard visibility case."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-0.6, 0.6, (n, 1, 3))
    v = (centres + rng.normal(0, 0.25, (n, 3, 3))).reshape(-1, 3).astype(np.float32)
    return v, np.arange(3 * n, dtype=np.int32).reshape(-1, 3)


# ---- visibility: three implementations agree -------------------------------------------------


@pytest.mark.parametrize("case", ["soup", "icosphere", "spot"])
def test_native_and_jax_and_brute_force_identical(case, icosphere):
    require_native()
    if case == "soup":
        v, f = _random_soup()
    elif case == "icosphere":
        v, f = icosphere
    else:
        m = meshfit.load_mesh(SPOT)
        v, f = np.asarray(m.vertices), np.asarray(m.faces)
    cams, near, far = _framing(v, views=3, W=67, H=45)
    clip = cams.to_clip(jnp.asarray(v), near, far)
    a = rasterize(clip, f, height=45, width=67, backend="native")
    b = rasterize(clip, f, height=45, width=67, backend="jax")
    np.testing.assert_array_equal(a.face_id, b.face_id)
    coeffs, bbox = triangle_setup(clip, jnp.asarray(f), 45, 67)
    np.testing.assert_array_equal(visibility_exhaustive(coeffs, bbox, height=45, width=67), a.face_id)
    # the JAX path's large-face step alone (a one-pair list bins nothing)
    forced = visibility_jax(coeffs, bbox, height=45, width=67, max_pairs=1)
    np.testing.assert_array_equal(forced, a.face_id)
    # setup is bit-identical on both paths; barycentrics differ by float32 rounding only
    nat_setup = triangle_setup(clip, jnp.asarray(f), 45, 67, backend="native")
    jax_setup = triangle_setup(clip, jnp.asarray(f), 45, 67, backend="jax")
    for x, y in zip(nat_setup, jax_setup):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(a.bary, b.bary, atol=3e-4)  # float32 in another order: 1.7e-4 seen (slivers)
    assert a.mask.any()


def test_native_small_and_large_calls_identical_to_jax():
    """The native kernel resolves small calls on the calling thread and large ones on its pool,
    four pixels at a time: both equal the JAX path, also on tiles cut by the image's edges."""
    require_native()
    v, f = _random_soup(n=40, seed=3)
    for views, W, H in ((1, 37, 29), (6, 250, 203)):  # 2.6k box pixels to test; 0.4M (the pool: > 2^18)
        cams, near, far = _framing(v, views=views, W=W, H=H, seed=1, dist=2.4)
        clip = cams.to_clip(jnp.asarray(v), near, far)
        a = rasterize(clip, f, height=H, width=W, backend="native")
        b = rasterize(clip, f, height=H, width=W, backend="jax")
        np.testing.assert_array_equal(a.face_id, b.face_id)
        assert 0.2 < float(a.mask.mean()) < 0.95


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_reference_rasterizer(backend):
    backend = _backend(backend)
    v, f = _random_soup(40, seed=3)
    cams, near, far = _framing(v, views=2, W=40, H=30, seed=2, dist=2.5)
    clip = cams.to_clip(jnp.asarray(v), near, far)
    got = rasterize(clip, f, height=30, width=40, backend=backend)
    ref = rasterize_reference(np.asarray(clip), f, 30, 40)
    clear = ~ref.ambiguous
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(np.asarray(got.face_id)[clear], ref.face_id[clear])
    cov = clear & (ref.face_id >= 0)
    np.testing.assert_allclose(np.asarray(got.bary)[cov], ref.bary[cov], atol=1e-4)
    np.testing.assert_allclose(np.asarray(got.depth)[cov], ref.depth[cov], rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_plane_crossing_and_behind_camera(backend):
    """A ground plane running under and behind the camera, and a triangle entirely behind it."""
    backend = _backend(backend)
    v = np.array(
        [[-5, -1, -5], [5, -1, -5], [0, -1, 8], [-0.5, -0.5, -2], [0.5, -0.5, -2], [0, 0.5, -2]], np.float32
    )
    f = np.array([[0, 1, 2], [3, 4, 5]], np.int32)
    cam = meshfit.look_at(np.array([[0.0, 0.0, 0.0]]), target=(0, 0, 1), width=32, height=24, fov=90.0)
    clip = cam.to_clip(jnp.asarray(v), 0.1, 50.0)
    assert (np.asarray(clip)[0, :2, 3] < 0).all() and np.asarray(clip)[0, 2, 3] > 0  # crosses w = 0
    ref = rasterize_reference(np.asarray(clip), f, 24, 32)
    got = rasterize(clip, f, height=24, width=32, backend=backend)
    ids = np.asarray(got.face_id)
    assert (ids != 1).all()  # the triangle behind the camera is never drawn
    assert (ids[0, -1] == 0).all() and (ids[0, :12] == -1).all()  # floor below the horizon
    clear = ~ref.ambiguous
    np.testing.assert_array_equal(ids[clear], ref.face_id[clear])
    np.testing.assert_allclose(np.asarray(got.depth)[clear], ref.depth[clear], rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fill_rule_no_cracks_no_double_cover(backend):
    """A fan of triangles around a vertex at a pixel centre, edges through pixel centres: every
    pixel of the covered square belongs to exactly one triangle. (W = H = 16 keeps every
    coordinate dyadic, so edge functions are exact and pixels on edges really are on them.)"""
    W = H = 16
    # pixel centre (i, j) is at NDC ((2i + 1) / W - 1, (2j + 1) / H - 1); build in NDC with w = 1
    ndc = lambda i, j: [(2 * i + 1) / W - 1, (2 * j + 1) / H - 1, 0.0, 1.0]  # noqa: E731
    ring = [(2, 2), (8, 2), (14, 2), (14, 8), (14, 14), (8, 14), (2, 14), (2, 8)]
    v = np.array([ndc(8, 8)] + [ndc(i, j) for i, j in ring], np.float32)
    f = np.array([[0, 1 + k, 1 + (k + 1) % 8] for k in range(8)], np.int32)
    backend = _backend(backend)
    total = np.zeros((H, W), int)
    for k in range(8):
        total += np.asarray(rasterize(v[None], f[k : k + 1], height=H, width=W, backend=backend).mask[0])
    union = np.asarray(rasterize(v[None], f, height=H, width=W, backend=backend).mask[0])
    assert total.max() == 1  # no double cover
    np.testing.assert_array_equal(total, union)
    # the square's interior has no cracks; of its border, top and left rows are in, the others out
    np.testing.assert_array_equal(union[3:14, 3:14], 1)
    assert union[2, 2:14].all() and union[2:14, 2].all() and not union[14].any() and not union[:, 14].any()
    assert union.sum() == 12 * 12


def test_bad_inputs_raise_clear_errors():
    v = jnp.zeros((1, 4, 4))
    with pytest.raises(ValueError, match=r"clip must be \[..., V, 4\]"):
        rasterize(jnp.zeros((1, 4, 3)), jnp.zeros((1, 3), jnp.int32), height=4, width=4)
    with pytest.raises(ValueError, match="faces must be"):
        rasterize(v, jnp.zeros((1, 4), jnp.int32), height=4, width=4)
    with pytest.raises(ValueError, match=r"faces index outside 0..3"):
        rasterize(v, jnp.array([[0, 1, 4]]), height=4, width=4)
    with pytest.raises(ValueError, match="empty"):
        rasterize(v, jnp.zeros((0, 3), jnp.int32), height=4, width=4)
    with pytest.raises(ValueError, match="backend"):
        rasterize(v, jnp.array([[0, 1, 2]]), height=4, width=4, backend="gpu")
    require_native()
    with jax.enable_x64(True), pytest.raises(ValueError, match="float32"):
        rasterize(
            jnp.zeros((1, 4, 4), jnp.float64), jnp.array([[0, 1, 2]]), height=4, width=4, backend="native"
        )


def test_jax_path_under_jit_and_vmap(icosphere):
    """jit and vmap give the eager ids, including the large-face step (a mesh crossing the camera
    plane, so every face gets a whole-image box), with nothing to size by hand."""
    v, f = icosphere
    cams, near, far = _framing(v, views=2, W=32, H=32)
    clip = cams.to_clip(jnp.asarray(v), near, far)
    eager = rasterize(clip, f, height=32, width=32, backend="jax")
    jitted = jax.jit(lambda c: rasterize(c, f, height=32, width=32, backend="jax"))(clip)
    np.testing.assert_array_equal(jitted.face_id, eager.face_id)
    vm = jax.vmap(lambda c: rasterize(c[None], f, height=32, width=32, backend="jax"))(clip)
    np.testing.assert_array_equal(vm.face_id[:, 0], eager.face_id)
    coeffs, bbox = triangle_setup(clip, jnp.asarray(f), 32, 32)
    forced = jax.vmap(lambda c, b: visibility_jax(c[None], b[None], height=32, width=32, max_pairs=1)[0])
    np.testing.assert_array_equal(forced(coeffs, bbox), eager.face_id)
    inside = meshfit.look_at(np.array([[0.1, 0.05, 0.0]]), target=(0, 0, 1), width=32, height=32, fov=90.0)
    clip_in = inside.to_clip(jnp.asarray(v), 0.05, 5.0)
    ref = rasterize_reference(np.asarray(clip_in), f, 32, 32)
    got = jax.jit(lambda c: rasterize(c, f, height=32, width=32, backend="jax"))(clip_in)
    np.testing.assert_array_equal(np.asarray(got.face_id)[~ref.ambiguous], ref.face_id[~ref.ambiguous])
    assert (np.asarray(got.face_id) >= 0).all()  # inside a closed sphere every pixel sees a face


def test_jax_path_takes_its_fast_route_on_spot_under_jit_and_grad():
    """The packaged Spot (5.9k faces) at 128^2 through backend="jax" under jit + grad: no
    warning (pytest makes warnings errors), the native ids, a finite non-zero gradient."""
    m = meshfit.load_mesh(SPOT)
    cams, near, far = _framing(m.vertices, views=2, W=128, H=128, seed=5)

    def loss(v, backend):
        clip = cams.to_clip(v, near, far)
        frags = rasterize(clip, m.faces, height=128, width=128, backend=backend)
        sil = antialias(frags.mask[..., None].astype(jnp.float32), frags, clip, m.faces, backend=backend)
        return jnp.sum(sil) + jnp.sum(frags.depth), frags.face_id

    (_, ids), g = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(m.vertices, "jax")
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0
    require_native()
    clip = cams.to_clip(m.vertices, near, far)
    np.testing.assert_array_equal(
        ids, rasterize(clip, m.faces, height=128, width=128, backend="native").face_id
    )


def test_native_forward_and_backward_match_jax():
    """The native forward and hand-written backward passes equal the JAX ops on the same float32
    inputs, to float32 rounding (bounds measured on the packaged Spot, with ~3x margin)."""
    require_native()
    m = meshfit.load_mesh(SPOT)
    cams, near, far = _framing(m.vertices, views=2, W=48, H=40, seed=4)
    color = jnp.asarray(np.random.default_rng(0).uniform(size=(m.num_vertices, 3)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(2, 40, 48, 3)), jnp.float32)

    def loss(v, backend):
        clip = cams.to_clip(v, near, far)
        frags = rasterize(clip, m.faces, height=40, width=48, backend=backend)
        img = antialias(
            interpolate(color, frags, m.faces, backend=backend), frags, clip, m.faces, backend=backend
        )
        return jnp.sum(img * w) + jnp.sum(frags.depth * w[..., 0]), (frags, img)

    (_, (fn, imn)), gn = jax.value_and_grad(loss, has_aux=True)(m.vertices, "native")
    (_, (fj, imj)), gj = jax.value_and_grad(loss, has_aux=True)(m.vertices, "jax")
    np.testing.assert_array_equal(fn.face_id, fj.face_id)
    # barycentrics u / sum(u): the two paths round differently; Spot's slivers amplify (6e-5 seen)
    np.testing.assert_allclose(fn.bary, fj.bary, atol=2e-4)
    np.testing.assert_allclose(fn.depth, fj.depth, rtol=2e-6)  # 6e-7 seen: a few float32 ulps
    np.testing.assert_allclose(imn, imj, atol=2e-4)  # colours in [0, 1] weighted by those barycentrics
    assert float(jnp.abs(imn - interpolate(color, fn, m.faces)).max()) > 0.01  # antialias did something
    # the whole vertex gradient, as a relative error norm (2.4e-4 seen)
    assert float(jnp.linalg.norm(gn - gj) / jnp.linalg.norm(gj)) < 1e-3
    # Interpolation alone, gradients to the attributes and (through bary) to the vertices.
    frags = rasterize(cams.to_clip(m.vertices, near, far), m.faces, height=40, width=48)

    def interp_loss(c, fb, b):
        return jnp.sum(interpolate(c, frags._replace(bary=fb), m.faces, backend=b) * w)

    gi = {b: jax.grad(interp_loss, argnums=(0, 1))(color, frags.bary, b) for b in ("native", "jax")}
    np.testing.assert_allclose(interpolate(color, frags, m.faces, backend="native"),
                               interpolate(color, frags, m.faces, backend="jax"), atol=3e-7)  # fmt: skip
    for a, b in zip(gi["native"], gi["jax"]):  # sums of products in another order
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))
    for b in ("native", "jax"):
        with pytest.raises(ValueError, match="faces index outside"):
            interpolate(color[:10], frags, m.faces, backend=b)


def test_frames_by_views_batches_and_vmap_agree(icosphere):
    """[frames, views] leading dimensions, and vmap over frames, give what one flat batch gives,
    values and gradients, on whichever backend runs here."""
    v, f = icosphere
    cams, near, far = _framing(v, views=3, W=24, H=20)
    frames = jnp.stack([jnp.asarray(v), jnp.asarray(v) * 1.1])  # [2, V, 3]

    def sil(clip):
        frags = rasterize(clip, f, height=20, width=24)
        return antialias(frags.mask[..., None].astype(jnp.float32), frags, clip, f)[..., 0]

    clip = jax.vmap(lambda x: cams.to_clip(x, near, far))(frames)  # [2, 3, V, 4]
    nested = sil(clip)
    assert nested.shape == (2, 3, 20, 24)
    flat = sil(clip.reshape((6,) + clip.shape[2:])).reshape(nested.shape)
    mapped = jax.vmap(sil)(clip)
    np.testing.assert_allclose(nested, flat, atol=1e-6)
    np.testing.assert_allclose(mapped, flat, atol=1e-6)
    g_nested = jax.grad(lambda c: jnp.sum(sil(c) ** 2))(clip)
    g_mapped = jax.grad(lambda c: jnp.sum(jax.vmap(sil)(c) ** 2))(clip)
    np.testing.assert_allclose(g_mapped, g_nested, atol=1e-5)


# ---- against pyrender's OpenGL ---------------------------------------------------------------


@pytest.mark.parametrize("name, size", [("spot", 256), ("bob", 256), ("blub", 512), ("controller", 512)])
def test_matches_pyrender(name, size):
    m = meshfit.load_mesh(shared(name))
    cams, near, far = _framing(m.vertices, views=3, W=size, H=size, seed=11)
    gl = pyrender_views(m, cams, near=near, far=far, face_ids=True)
    frags = rasterize(cams.to_clip(m.vertices, near, far), m.faces, height=size, width=size)
    ours = np.asarray(frags.mask)
    for i in range(3):
        both = ours[i] & gl.mask[i]
        iou = both.sum() / (ours[i] | gl.mask[i]).sum()
        assert iou >= 0.995, f"view {i}: IoU {iou:.4f}"
        same = both & (np.asarray(frags.face_id[i]) == gl.face_id[i])
        assert same.sum() >= 0.995 * both.sum()
        rel = np.abs(np.asarray(frags.depth[i]) - gl.depth[i]) / np.where(gl.mask[i], gl.depth[i], 1)
        assert rel[same].max() < 1e-4
        assert np.quantile(rel[both], 0.999) < 1e-4


# ---- differentiable ops ----------------------------------------------------------------------


def _fixed_visibility_setup(x64_dtype=jnp.float64):
    m = meshfit.load_mesh(SPOT)
    faces = jnp.asarray(m.faces)
    cams, near, far = _framing(m.vertices, views=2, W=24, H=20, seed=1)
    verts = jnp.asarray(m.vertices, x64_dtype)
    clip = cams.to_clip(verts, near, far).astype(x64_dtype)
    frags = rasterize(clip, faces, height=20, width=24)
    return m, faces, cams, near, far, verts, frags


def test_interpolate_gradients_match_finite_differences(x64):
    m, faces, cams, near, far, verts, frags = _fixed_visibility_setup()
    attr = jnp.asarray(np.random.default_rng(0).normal(size=(m.num_vertices, 2)))
    weights = jnp.asarray(np.random.default_rng(1).normal(size=frags.face_id.shape + (2,)))

    def loss(v, a):
        clip = cams.to_clip(v, near, far)
        bary, depth = barycentrics(clip, faces, frags.face_id)
        f2 = frags._replace(bary=bary, depth=depth)
        return jnp.sum(interpolate(a, f2, faces) * weights) + jnp.sum(depth * weights[..., 0])

    check_grads(loss, (verts, attr), order=1, modes=["rev"], atol=1e-5, rtol=1e-4)
    g = jax.grad(loss)(verts, attr)
    assert np.abs(np.asarray(g)).max() > 0


def test_interpolate_per_corner_and_batched_attributes():
    m = meshfit.load_mesh(shared("spot"))
    cams, near, far = _framing(m.vertices, views=2, W=32, H=32)
    frags = rasterize(cams.to_clip(m.vertices, near, far), m.faces, height=32, width=32)
    uv = interpolate(m.uvs, frags, m.uv_faces)
    assert uv.shape == (2, 32, 32, 2)
    assert float(uv[frags.mask].min()) >= 0 and float(uv[frags.mask].max()) <= 1
    assert float(jnp.abs(uv[~frags.mask]).max()) == 0
    per_view = jnp.stack([m.vertices, 2 * m.vertices])
    pos = interpolate(per_view, frags, m.faces)
    np.testing.assert_allclose(pos[1], 2 * interpolate(m.vertices, frags, m.faces)[1], rtol=1e-5, atol=1e-6)


def test_texture_sampling_and_gradients(x64):
    tex = jnp.asarray(np.random.default_rng(0).uniform(size=(8, 16, 3)))
    # bilinear reproduces texel centres exactly: texel (i, j) centre at ((i + .5) / W, 1 - (j + .5) / H)
    uv = jnp.array([[(3 + 0.5) / 16, 1 - (5 + 0.5) / 8]])
    np.testing.assert_allclose(texture(tex, uv), tex[5:6, 3], rtol=1e-12)
    np.testing.assert_allclose(texture(tex, uv, filter="nearest"), tex[5:6, 3])
    pts = jnp.asarray(np.random.default_rng(2).uniform(0.05, 0.95, (30, 2)))
    check_grads(lambda t, u: jnp.sum(texture(t, u) ** 2), (tex, pts), order=1, modes=["rev"])
    levels = mip_pyramid(tex)
    assert [lv.shape[:2] for lv in levels] == [(8, 16), (4, 8), (2, 4), (1, 2), (1, 1)]
    np.testing.assert_allclose(levels[-1][0, 0], tex.mean((0, 1)), rtol=1e-12)
    # trilinear: a UV image that minifies the texture 4x reads mip level 2
    H, W = 4, 4
    ys, xs = np.mgrid[0:H, 0:W]
    uv_img = jnp.asarray(np.stack([(xs + 0.5) / W, 1 - (ys + 0.5) / H], -1))
    tri = texture(tex, uv_img, filter="trilinear")
    np.testing.assert_allclose(tri, texture(levels[2], uv_img), atol=1e-12)
    check_grads(lambda t: jnp.sum(texture(t, uv_img * 0.9 + 0.03, filter="trilinear")), (tex,), order=1)


@pytest.mark.parametrize("wrap", ["repeat", "clamp"])
def test_trilinear_gathers_the_two_levels_it_blends(x64, wrap):
    """Trilinear sampling reads only the two mip levels about each pixel's level of detail: the
    same values and gradients (texture and UVs) as blending every level by its tent weight, on
    an odd-sized texture, with UVs past the border and levels of detail from 0 to the coarsest."""
    from meshfit.render.texture import _bilinear, _screen_derivatives

    rng = np.random.default_rng(5)
    tex = jnp.asarray(rng.uniform(size=(37, 20, 3)))
    ys, xs = np.mgrid[0:6, 0:9]
    scale = np.geomspace(0.02, 60.0, 6)[:, None]  # rows from magnified to minified past 1 x 1
    uv = jnp.asarray(
        np.stack([xs * scale / 9 - 0.3, 1.1 - ys * scale / 6], -1) + rng.normal(0, 0.01, (6, 9, 2))
    )

    def every_level(t, u):
        levels = mip_pyramid(t)
        dx, dy = _screen_derivatives(jax.lax.stop_gradient(u), None)
        size = jnp.asarray(t.shape[1::-1], u.dtype).reshape(1, 1, 2)
        footprint = jnp.maximum(jnp.linalg.norm(dx * size, axis=-1), jnp.linalg.norm(dy * size, axis=-1))
        lod = jnp.clip(jnp.log2(jnp.maximum(footprint, 1e-12)), 0.0, len(levels) - 1.0)
        return sum(jnp.clip(1.0 - jnp.abs(lod - i), 0.0, 1.0)[..., None] * _bilinear(level, u, wrap)
                   for i, level in enumerate(levels))  # fmt: skip

    probe = jnp.asarray(rng.normal(size=(6, 9, 3)))
    ours = lambda t, u: jnp.sum(texture(t, u, filter="trilinear", wrap=wrap) * probe)  # noqa: E731
    ref = lambda t, u: jnp.sum(every_level(t, u) * probe)  # noqa: E731
    np.testing.assert_allclose(
        texture(tex, uv, filter="trilinear", wrap=wrap), every_level(tex, uv), atol=1e-12
    )
    for g, g_ref in zip(jax.grad(ours, (0, 1))(tex, uv), jax.grad(ref, (0, 1))(tex, uv)):
        np.testing.assert_allclose(g, g_ref, atol=1e-10)


def test_antialias_gradients_match_finite_differences(x64):
    m, faces, cams, near, far, verts, frags = _fixed_visibility_setup()
    color = jnp.asarray(np.random.default_rng(3).uniform(size=(m.num_vertices, 3)))

    def aa(v):
        clip = cams.to_clip(v, near, far)
        bary, depth = barycentrics(clip, faces, frags.face_id)
        f2 = frags._replace(bary=bary, depth=depth)
        return antialias(interpolate(color, f2, faces), f2, clip, faces)

    # small steps: a finite difference must not move a pixel centre across an edge
    check_grads(
        lambda v: jnp.sum(aa(v) ** 2), (verts,), order=1, modes=["rev"], eps=1e-7, atol=1e-5, rtol=1e-3
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_antialiased_coverage_matches_the_supersampled_area(backend):
    """A finely tessellated sphere's silhouette: the faces next to it are slivers narrower than a
    pixel, so the edge a pixel pair crosses first is rarely the silhouette itself. The walk to
    the visibility edge gives the area 8x8 supersampling measures (blending at the first edge
    crossed left it 2.5% short); with the edge's gradient to the scale (2 A / s, the disc's)."""
    import trimesh

    backend = _backend(backend)
    s = trimesh.creation.icosphere(subdivisions=4)
    v0, f = jnp.asarray(s.vertices, jnp.float32), jnp.asarray(s.faces, jnp.int32)

    def view(size):
        return meshfit.look_at(np.array([[0.3, 0.2, 6.0]]), width=size, height=size, fov=30.0)

    fine = view(768).to_clip(v0, 1.0, 20.0)
    supersampled = float(jnp.sum(rasterize(fine, f, height=768, width=768).mask)) / 64

    def coverage(scale):
        clip = view(96).to_clip(v0 * scale, 1.0, 20.0)
        frags = rasterize(clip, f, height=96, width=96)
        return jnp.sum(antialias(frags.mask[..., None].astype(jnp.float32), frags, clip, f, backend=backend))

    area, grad = jax.value_and_grad(coverage)(1.0)
    np.testing.assert_allclose(float(area), supersampled, rtol=1e-3)
    np.testing.assert_allclose(float(grad), 2 * supersampled, rtol=0.05)


def test_face_neighbours_match_the_topology():
    """The face across each edge, traced or not, against Topology's edge_faces; -1 on a
    boundary; a non-manifold edge's faces paired two by two."""
    import trimesh

    from meshfit.render.antialias import face_neighbours
    from meshfit.topology import Topology

    s = trimesh.creation.icosphere(subdivisions=1)
    f = np.asarray(s.faces, np.int32)[:-3]  # an open mesh: boundary edges
    got = np.asarray(face_neighbours(f))
    np.testing.assert_array_equal(np.asarray(jax.jit(face_neighbours)(jnp.asarray(f))), got)
    t = Topology.from_faces(f, len(s.vertices))
    ef, fe = np.asarray(t.edge_faces), np.asarray(t.face_edges)
    for i in range(len(f)):
        for k in range(3):  # face_edges[i, k] joins corners k, k+1: opposite corner k+2
            a, b = ef[fe[i, k]]
            assert got[i, (k + 2) % 3] == (b if a == i else a)
    assert (got == -1).sum() == len(t.boundary_edges())
    fan = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [1, 0, 5]], np.int32)  # four faces on edge 0-1
    nb = np.asarray(face_neighbours(fan))[:, 2]
    assert sorted(nb.tolist()) == [0, 1, 2, 3] and all(nb[nb[i]] == i for i in range(4))


def test_gradients_finite_for_degenerate_cases():
    v = jnp.array(
        [
            [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0],  # zero-area sliver
            [0.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.5, 1.0],  # edge-on (in the plane x = 0)
            [0.3, 0.3, 0.0], [0.3001, 0.3, 0.0], [0.3, 0.3001, 0.0],  # sub-pixel
            [-3.0, -1.0, 5.5], [3.0, -1.0, 5.5], [0.0, 1.0, 7.0],  # crosses the camera plane
            [-1.0, -1.0, 0.5], [1.0, -1.0, 0.5], [0.0, 1.0, 0.5],  # an ordinary triangle
        ],
        jnp.float32,
    )  # fmt: skip
    f = jnp.arange(15, dtype=jnp.int32).reshape(5, 3)
    cam = meshfit.look_at(np.array([[0.0, 0.0, 6.0]]), width=32, height=32, fov=60.0)

    def loss(vv):
        clip = cam.to_clip(vv, 0.1, 20.0)
        frags = rasterize(clip, f, height=32, width=32)
        sil = antialias(frags.mask[..., None].astype(jnp.float32), frags, clip, f)
        soft = soft_silhouette(clip, f, height=32, width=32, sigma=2.0, chunk=8)
        return jnp.sum(sil**2) + jnp.sum(frags.depth**2) + jnp.sum(soft)

    g = jax.grad(loss)(v)
    assert np.isfinite(np.asarray(g)).all()
    assert float(jnp.abs(g[12:]).max()) > 0


def test_soft_silhouette_approaches_the_hard_mask(icosphere):
    v, f = icosphere
    cams, near, far = _framing(v, views=1, W=32, H=32)
    clip = cams.to_clip(jnp.asarray(v), near, far)
    hard = np.asarray(rasterize(clip, f, height=32, width=32).mask, np.float32)
    sharp = np.asarray(soft_silhouette(clip, f, height=32, width=32, sigma=0.02, chunk=16))
    assert ((sharp > 0.5) == (hard > 0.5)).mean() > 0.99
    soft = soft_silhouette(clip, f, height=32, width=32, sigma=20.0, chunk=16)
    assert float(soft.min()) >= 0 and float(soft.max()) <= 1
    # wide blur: a pixel far outside still pulls the mesh (non-zero gradient)
    g = jax.grad(lambda c: soft_silhouette(c, f, height=32, width=32, sigma=20.0, chunk=16)[0, 0, 0])(clip)
    assert float(jnp.abs(g).max()) > 0


def test_shading_helpers(icosphere):
    v, f = icosphere
    cams, near, far = _framing(v, views=1, W=32, H=32)
    frags = rasterize(cams.to_clip(jnp.asarray(v), near, far), f, height=32, width=32)
    n = normal_image(jnp.asarray(v), jnp.asarray(f), frags)
    norms = np.linalg.norm(np.asarray(n), axis=-1)
    np.testing.assert_allclose(norms[np.asarray(frags.mask)], 1.0, rtol=1e-5)
    # normals face the camera where visible (smoothed normals of a coarse sphere may not, at the rim)
    to_cam = np.asarray(cams.center)[0] - np.asarray(interpolate(jnp.asarray(v), frags, jnp.asarray(f)))
    assert (np.sum(np.asarray(n) * to_cam, -1)[np.asarray(frags.mask)] > 0).mean() > 0.9
    lit = lambert(n, jnp.ones(3), jnp.array([0.0, 0.0, -1.0]), ambient=0.1)
    assert float(lit.max()) <= 1.1 + 1e-6
    # constant SH lighting (only L00) gives the same irradiance for every normal
    sh = jnp.zeros((9, 3)).at[0].set(1.0)
    irr = sh_irradiance(n[frags.mask], sh)
    np.testing.assert_allclose(irr, 0.886227, rtol=1e-5)


def test_silhouette_fit_recovers_pose_and_scale():
    """Recover a perturbed translation, rotation and scale of Spot from 4 silhouettes."""
    import optax
    from jax.scipy.spatial.transform import Rotation

    m = meshfit.load_mesh(SPOT)
    v0 = m.vertices - jnp.mean(m.vertices, 0, keepdims=True)
    f = m.faces
    cams, near, far = _framing(np.asarray(v0), views=4, W=64, H=64, seed=3)

    def transform(p, v):
        rot = Rotation.from_rotvec(p["r"]).as_matrix()
        return p["s"] * v @ rot.T + p["t"][None]

    def silhouettes(p):
        clip = cams.to_clip(transform(p, v0), near, far)
        frags = rasterize(clip, f, height=64, width=64)
        return antialias(frags.mask[..., None].astype(jnp.float32), frags, clip, f)[..., 0]

    target_p = {"r": jnp.zeros(3), "t": jnp.zeros(3), "s": jnp.ones(())}
    target = silhouettes(target_p)
    p = {"r": jnp.array([0.12, -0.1, 0.08]), "t": jnp.array([0.06, -0.05, 0.04]), "s": jnp.array(1.1)}
    opt = optax.adam(0.01)
    state = opt.init(p)

    @jax.jit
    def step(p, state):
        loss, g = jax.value_and_grad(lambda q: jnp.mean((silhouettes(q) - target) ** 2))(p)
        upd, state = opt.update(g, state)
        return optax.apply_updates(p, upd), state, loss

    for _ in range(150):
        p, state, loss = step(p, state)
    assert float(jnp.linalg.norm(p["r"])) < 0.02
    assert float(jnp.linalg.norm(p["t"])) < 0.01
    assert abs(float(p["s"]) - 1.0) < 0.01


def test_bad_faces_inside_jit_raise_instead_of_crashing():
    clip = jnp.array([[[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]]])
    bad = jnp.array([[0, 1, 500_000_000]], jnp.int32)
    fn = jax.jit(lambda c, f: rasterize(c, f, height=8, width=8).face_id)
    with pytest.raises(Exception, match="faces index outside"):
        jax.block_until_ready(fn(clip, bad))
    frags = rasterize(clip, jnp.array([[0, 1, 2]]), height=8, width=8)
    with pytest.raises(ValueError, match="faces index outside"):
        antialias(frags.mask[..., None].astype(jnp.float32), frags, clip, bad)
    with pytest.raises(ValueError, match="float image"):
        antialias(frags.mask[..., None], frags, clip, jnp.array([[0, 1, 2]]))


@pytest.mark.parametrize("half", [0.5, 0.625])
def test_antialias_backends_agree_on_pixel_aligned_edges(half):
    """Edges exactly on pixel boundaries (t = 1/2) or through pixel centres (t = 0 or 1): the
    native and JAX antialias agree in value and gradient (same tie conventions)."""
    require_native()
    sq = jnp.array(
        [[-half, -half, 0, 1], [half, -half, 0, 1], [half, half, 0, 1], [-half, half, 0, 1]], jnp.float32
    )
    f = jnp.array([[0, 1, 2], [0, 2, 3]], jnp.int32)
    w = jnp.arange(64, dtype=jnp.float32).reshape(1, 8, 8, 1)

    def loss(c, backend):
        frags = rasterize(c[None], f, height=8, width=8, backend=backend)
        color = frags.mask[..., None].astype(jnp.float32)
        return jnp.sum(antialias(color, frags, c[None], f, backend=backend) * w)

    np.testing.assert_allclose(loss(sq, "native"), loss(sq, "jax"), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(loss)(sq, "native"), jax.grad(loss)(sq, "jax"), atol=1e-3)
    if half == 0.625:  # the right edge runs through pixel centres: it is blended and pulls
        assert float(jnp.abs(jax.grad(loss)(sq, "jax")[1:3, 0]).max()) > 1.0

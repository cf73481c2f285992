"""Camera: projection, conventions (checked against pyrender's OpenGL), rigs, DLT, camera files."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meshfit
from meshfit import Camera, CameraError
from meshfit.synth import pyrender_views
from tests.helpers import shared

DATA = Path(__file__).parent / "data"


def _rig(n=3, w=64, h=48, seed=0, radius=3.0):
    return meshfit.sphere_rig(n, radius=radius, width=w, height=h, fov=50.0, seed=seed)


# ---- basics ----------------------------------------------------------------------------------


def test_project_unproject_round_trip():
    cams = _rig(4)
    pts = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (50, 3)), jnp.float32)
    uv, z = cams.project(pts)
    assert uv.shape == (4, 50, 2) and z.shape == (4, 50)
    back = cams.unproject(uv, z)
    np.testing.assert_allclose(back, np.broadcast_to(pts, (4, 50, 3)), atol=2e-5)
    single = cams[1]
    uv1, z1 = single.project(pts)
    np.testing.assert_allclose(uv1, uv[1], atol=1e-4)
    jit_uv, _ = jax.jit(lambda c, p: c.project(p))(cams, pts)
    np.testing.assert_allclose(jit_uv, uv, atol=1e-4)


def test_look_at_puts_target_at_principal_point_and_up_up():
    cam = meshfit.look_at(np.array([0.0, 0.5, 4.0]), target=(0, 0.5, 0), up=(0, 1, 0), width=64, height=48)
    uv, z = cam.project(jnp.array([[0.0, 0.5, 0.0], [0.0, 1.5, 0.0], [1.0, 0.5, 0.0]]))
    np.testing.assert_allclose(uv[0], [31.5, 23.5], atol=1e-5)  # image centre: (W - 1) / 2, (H - 1) / 2
    np.testing.assert_allclose(z[0], 4.0, rtol=1e-6)
    assert uv[1, 1] < uv[0, 1]  # world up goes up in the image (smaller v)
    assert uv[2, 0] > uv[0, 0]  # looking down -z with y up, world +x is to the right
    np.testing.assert_allclose(cam.center, [0, 0.5, 4], atol=1e-6)


def test_look_at_straight_down_the_up_axis_is_well_defined():
    cam = meshfit.look_at(np.array([0.0, 5.0, 0.0]), width=32, height=32)
    R = np.asarray(cam.R)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(cam.project(jnp.zeros((1, 3)))[0][0], [15.5, 15.5], atol=1e-5)


def test_camera_validation_errors():
    R, t = np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    with pytest.raises(CameraError, match="proper rotation"):
        Camera(fx=10.0, fy=10.0, cx=1.0, cy=1.0, R=2 * R, t=t, width=4, height=4)
    with pytest.raises(CameraError, match="proper rotation"):
        Camera(fx=10.0, fy=10.0, cx=1.0, cy=1.0, R=np.diag([1.0, 1.0, -1.0]), t=t, width=4, height=4)
    with pytest.raises(CameraError, match="positive"):
        Camera(fx=-1.0, fy=10.0, cx=1.0, cy=1.0, R=R, t=t, width=4, height=4)
    with pytest.raises(CameraError, match="t must be"):
        Camera(fx=10.0, fy=10.0, cx=1.0, cy=1.0, R=R, t=np.zeros(4), width=4, height=4)
    with pytest.raises(CameraError, match="image size"):
        Camera(fx=10.0, fy=10.0, cx=1.0, cy=1.0, R=R, t=t, width=0, height=4)
    with pytest.raises(CameraError, match="non-finite"):
        Camera(fx=np.nan, fy=10.0, cx=1.0, cy=1.0, R=R, t=t, width=4, height=4)
    with pytest.raises(CameraError, match="no skew"):
        Camera.from_matrices(np.array([[10.0, 1.0, 2.0], [0, 10, 2], [0, 0, 1]]), np.eye(4), 4, 4)


def test_projection_matrix_maps_image_edges_to_ndc():
    cam = _rig(1, w=64, h=48)[0]
    near, far = 0.5, 10.0
    # points at the left/top image edge (u = v = -0.5) and the right/bottom edge, at near and far
    uv = jnp.array([[-0.5, -0.5], [63.5, 47.5]])
    for depth, ndc_z in ((near, -1.0), (far, 1.0)):
        pts = cam.unproject(uv, jnp.full((2,), depth))
        clip = jnp.concatenate([pts, jnp.ones((2, 1))], 1) @ cam.clip_matrix(near, far).T
        ndc = np.asarray(clip[:, :3] / clip[:, 3:])
        np.testing.assert_allclose(ndc, [[-1, -1, ndc_z], [1, 1, ndc_z]], atol=1e-4)
        np.testing.assert_allclose(clip[:, 3], depth, rtol=1e-5)


def test_opengl_round_trip_and_pyrender_projection():
    import pyrender

    cams = _rig(3, w=64, h=48)
    P, pose = cams.to_opengl(0.1, 20.0)
    back = Camera.from_opengl(P, pose, 64, 48)
    np.testing.assert_allclose(back.K, cams.K, atol=1e-4)
    np.testing.assert_allclose(back.world_to_camera, cams.world_to_camera, atol=1e-5)
    ref = pyrender.IntrinsicsCamera(
        float(cams.fx[0]),
        float(cams.fy[0]),
        float(cams.cx[0]) + 0.5,
        float(cams.cy[0]) + 0.5,
        znear=0.1,
        zfar=20.0,
    ).get_projection_matrix(64, 48)
    np.testing.assert_allclose(P[0], ref, rtol=1e-6)


# ---- against pyrender's OpenGL images --------------------------------------------------------


def _ray_hits(cam: Camera, pixels: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space depth where each pixel centre's ray meets the plane of its triangle, and the
    barycentric coordinates of the hit (float64, independent of any rasterizer)."""
    o = np.asarray(cam.center, np.float64)
    p1 = np.asarray(cam.unproject(jnp.asarray(pixels, jnp.float32), jnp.ones(len(pixels))), np.float64)
    d = p1 - o
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    s = np.sum(n * (tri[:, 0] - o), 1) / np.sum(n * d, 1)
    hit = o + s[:, None] * d
    e0, e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], hit - tri[:, 0]
    d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
    d20, d21 = (e2 * e0).sum(1), (e2 * e1).sum(1)
    den = d00 * d11 - d01 * d01
    b1, b2 = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
    z = hit @ np.asarray(cam.R, np.float64).T + np.asarray(cam.t, np.float64)
    return z[:, 2], np.stack([1 - b1 - b2, b1, b2], 1)


@pytest.mark.parametrize("name", ["spot", "controller"])
def test_camera_matches_pyrender_per_pixel(name):
    """Each covered pyrender pixel: the ray meshfit casts through that pixel centre hits the face
    OpenGL drew there, at OpenGL's depth (1e-4 relative); silhouettes agree in both directions."""
    m = meshfit.load_mesh(shared(name))
    v = np.asarray(m.vertices, np.float64)
    f = np.asarray(m.faces)
    c = (v.min(0) + v.max(0)) / 2
    r = float(np.linalg.norm(v - c, axis=1).max())
    W, H = 160, 120  # not square, so a swapped axis shows
    cams = meshfit.sphere_rig(3, radius=3.2 * r, target=c, width=W, height=H, fov=50.0, seed=7)
    out = pyrender_views(m, cams, near=2.0 * r, far=4.4 * r, face_ids=True)
    for i in range(3):
        cov = out.mask[i]
        assert cov.mean() > 0.05
        fid = out.face_id[i]
        assert (fid[cov] >= 0).all() and (fid[~cov] == -1).all()
        jj, ii = np.nonzero(cov)
        z, bary = _ray_hits(cams[i], np.stack([ii, jj], 1), v[f[fid[cov]]])
        inside = (bary > -1e-3).all(1)
        assert inside.mean() > 0.999, "rays through pixel centres must hit the faces OpenGL drew"
        rel = np.abs(out.depth[i][cov] - z) / z
        assert np.max(rel[inside]) < 1e-4
        # Vertices project into the drawn silhouette (within the pixel they fall in or a neighbour).
        uv, _ = cams[i].project(m.vertices)
        ij = np.rint(np.asarray(uv)).astype(int)
        pad = np.pad(cov, 1)
        hit = np.zeros(len(v), bool)
        for dy in range(3):
            for dx in range(3):
                hit |= pad[ij[:, 1] + dy, ij[:, 0] + dx]
        assert hit.all()


def test_half_pixel_convention_on_a_tilted_plane():
    """A big tilted square: coverage of every pixel centre and its depth follow analytically from
    meshfit's camera; a half-pixel slip in the conversion to OpenGL would break both."""
    v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    ang = np.radians(35)
    rot = np.array([[1, 0, 0], [0, np.cos(ang), -np.sin(ang)], [0, np.sin(ang), np.cos(ang)]], np.float32)
    v = v @ rot.T
    m = meshfit.Mesh(v, meshfit.triangulate(np.array([[0, 1, 2, 3]])))
    cam = meshfit.look_at(np.array([[0.3, 0.2, 2.2]]), target=(0, 0, 0), width=67, height=41, fov=75.0)
    out = pyrender_views(m, cam, near=0.5, far=5.0)
    jj, ii = np.mgrid[0:41, 0:67]
    pix = np.stack([ii.ravel(), jj.ravel()], 1)
    tri = np.repeat(v[None, [0, 1, 2]].astype(np.float64), len(pix), 0)
    z, bary = _ray_hits(cam[0], pix, tri)
    # point in the square, with a margin: distance to the square's border in plane units
    local = (cam[0].unproject(jnp.asarray(pix, jnp.float32), jnp.asarray(z, jnp.float32)) @ rot)[:, :2]
    margin = 1 - np.abs(np.asarray(local, np.float64)).max(1)
    inside = margin > 0
    clear = np.abs(margin) > 1e-3
    mask = out.mask[0].ravel()
    assert inside.sum() > 100 and (~inside).sum() > 100
    np.testing.assert_array_equal(mask[clear], inside[clear])
    rel = np.abs(out.depth[0].ravel()[mask & clear] - z[mask & clear]) / z[mask & clear]
    assert rel.max() < 1e-4


# ---- rigs ------------------------------------------------------------------------------------


def test_orbit_rig_ring_geometry():
    cams = meshfit.orbit_rig(8, radius=2.0, width=32, height=32, target=(1, 0, 0), elevation=30.0)
    centres = np.asarray(cams.center)
    np.testing.assert_allclose(np.linalg.norm(centres - [1, 0, 0], axis=1), 2.0, rtol=1e-5)
    np.testing.assert_allclose(centres[:, 1], 2.0 * np.sin(np.radians(30)), atol=1e-5)
    uv, _ = cams.project(jnp.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(uv[:, 0], 15.5, atol=1e-4)


def test_sphere_rig_even_and_seeded():
    a = _rig(20, seed=1)
    b = _rig(20, seed=1)
    c = _rig(20, seed=2)
    np.testing.assert_array_equal(a.R, b.R)
    assert np.abs(np.asarray(a.center) - np.asarray(c.center)).max() > 0.1
    d = np.asarray(a.center) / 3.0
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-5)
    gaps = np.linalg.norm(d[:, None] - d[None], axis=-1) + 10 * np.eye(20)
    assert gaps.min(1).min() > 0.5 * gaps.min(1).max()  # evenly spread, no clumps
    np.testing.assert_allclose(np.abs(d.mean(0)), 0, atol=0.05)


# ---- DLT triangulation -----------------------------------------------------------------------


def test_triangulation_recovers_points_from_noisy_views():
    cams = _rig(6, w=640, h=480, seed=4)
    rng = np.random.default_rng(5)
    pts = rng.uniform(-0.5, 0.5, (40, 3)).astype(np.float32)
    uv, _ = cams.project(jnp.asarray(pts))
    noisy = np.asarray(uv) + rng.normal(0, 0.3, uv.shape)
    est = meshfit.triangulate_points(cams, jnp.asarray(noisy, jnp.float32))
    err = np.linalg.norm(np.asarray(est) - pts, axis=1)
    assert np.median(err) < 3e-3 and err.max() < 1e-2
    exact = meshfit.triangulate_points(cams, uv)
    np.testing.assert_allclose(exact, pts, atol=1e-4)
    # a wildly wrong observation in one view is ignored when its weight is zero
    bad = np.array(uv)
    bad[2] += 50.0
    w = np.ones((6, 40), np.float32)
    w[2] = 0
    np.testing.assert_allclose(
        meshfit.triangulate_points(cams, jnp.asarray(bad), weights=jnp.asarray(w)), pts, atol=1e-4
    )


def test_triangulation_shape_errors():
    cams = _rig(3)
    with pytest.raises(CameraError, match=r"uv must be \[N=3, P, 2\]"):
        meshfit.triangulate_points(cams, jnp.zeros((2, 5, 2)))


# ---- camera files ----------------------------------------------------------------------------


def test_cameras_json_round_trip(tmp_path):
    cams = _rig(5, w=80, h=60)
    meshfit.save_cameras(tmp_path / "cameras.json", cams, near=0.5)
    data = json.loads((tmp_path / "cameras.json").read_text())
    assert data["convention"] == "opencv"
    e = data["cameras"][0]
    assert e["name"] == "000" and e["width"] == 80 and e["height"] == 60 and e["near"] == 0.5
    assert len(e["K"]) == 3 and len(e["world_to_camera"]) == 4
    loaded = meshfit.load_cameras(tmp_path)  # a folder works too
    assert loaded.names == [f"{i:03d}" for i in range(5)]
    np.testing.assert_allclose(loaded.cameras.K, cams.K, rtol=1e-6)
    np.testing.assert_allclose(loaded.cameras.world_to_camera, cams.world_to_camera, atol=1e-6)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(convention="opengl"), "convention must be 'opencv'"),
        (lambda d: d["cameras"][0].pop("K"), r"cameras\[0\] lacks \['K'\]"),
        (lambda d: d["cameras"][1].update(K=[[1, 0], [0, 1]]), r"cameras\[1\]\.K must be 3x3"),
        (lambda d: d["cameras"][1].update(width=99), "share one image size"),
        (lambda d: d["cameras"][0]["world_to_camera"][0].__setitem__(0, 3.0), "proper rotation"),
    ],
)
def test_cameras_json_errors(tmp_path, mutate, message):
    meshfit.save_cameras(tmp_path / "cameras.json", _rig(2))
    d = json.loads((tmp_path / "cameras.json").read_text())
    mutate(d)
    (tmp_path / "cameras.json").write_text(json.dumps(d))
    with pytest.raises(CameraError, match=message):
        meshfit.load_cameras(tmp_path / "cameras.json")


def test_truncated_cameras_json(tmp_path):
    meshfit.save_cameras(tmp_path / "cameras.json", _rig(2))
    text = (tmp_path / "cameras.json").read_text()
    (tmp_path / "cameras.json").write_text(text[: len(text) // 2])
    with pytest.raises(CameraError, match="not valid JSON"):
        meshfit.load_cameras(tmp_path / "cameras.json")


def test_colmap_import():
    cs = meshfit.load_cameras(DATA / "colmap")
    assert cs.names == ["img_a.png", "img_b.png"]  # sorted by name
    a, b = cs.cameras[0], cs.cameras[1]
    np.testing.assert_allclose(a.K, [[60, 0, 32.0], [0, 60, 24.0], [0, 0, 1]])  # half pixel removed
    np.testing.assert_allclose(a.R, [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(a.t, [0, 0, 4])
    np.testing.assert_allclose(b.K, [[50, 0, 31.5], [0, 52, 23.5], [0, 0, 1]])
    np.testing.assert_allclose(b.R, np.eye(3))
    np.testing.assert_allclose(b.t, [0.1, 0.2, 3.0], rtol=1e-6)
    assert cs.cameras.width == 64 and cs.cameras.height == 48


def test_colmap_distortion_is_an_error(tmp_path):
    (tmp_path / "cameras.txt").write_text("1 OPENCV 64 48 50 50 32 24 0.1 0 0 0\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 3 1 a.png\n\n")
    with pytest.raises(CameraError, match="has lens distortion.*meshfit import"):
        meshfit.load_cameras(tmp_path)


def test_transforms_json_import():
    cs = meshfit.load_cameras(DATA / "nerfstudio" / "transforms.json")
    assert cs.names == ["images/frame_00002.png", "images/frame_00001.png"]
    cams = cs.cameras
    np.testing.assert_allclose(cams.K[0], [[50, 0, 31.5], [0, 52, 23.5], [0, 0, 1]])
    # both cameras look at the world origin: it lands on the principal point
    uv, z = cams.project(jnp.zeros((1, 3)))
    np.testing.assert_allclose(uv[:, 0], [[31.5, 23.5], [31.5, 23.5]], atol=1e-5)
    np.testing.assert_allclose(z[:, 0], [4.0, 3.0], rtol=1e-6)
    # OpenGL y up becomes OpenCV y down: a point above the origin appears above the centre
    uv_up, _ = cams.project(jnp.array([[0.0, 1.0, 0.0]]))
    assert (uv_up[:, 0, 1] < 23.5).all()


def test_blender_transforms_reads_size_from_image(tmp_path):
    from PIL import Image

    (tmp_path / "r_0.png").parent.mkdir(exist_ok=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "r_0.png")
    d = {
        "camera_angle_x": 2 * np.arctan(0.5),
        "frames": [{"file_path": "r_0", "transform_matrix": np.eye(4).tolist()}],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(d))
    cams = meshfit.load_cameras(tmp_path).cameras
    assert (cams.width, cams.height) == (40, 30)
    np.testing.assert_allclose(cams.fx, [40.0], rtol=1e-6)
    np.testing.assert_allclose(cams.cx, [19.5])


# ---- properties (hypothesis) -------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    eye=st.tuples(*[st.floats(-5, 5) for _ in range(3)]).filter(lambda e: 0.5 < np.linalg.norm(e) < 8),
    fov=st.floats(20, 120),
    size=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    uv=st.tuples(st.floats(-10, 310), st.floats(-10, 310)),
    depth=st.floats(0.1, 50),
)
def test_unproject_then_project_is_identity(eye, fov, size, uv, depth):
    cam = meshfit.look_at(np.array([eye]), width=size[0], height=size[1], fov=fov)
    pts = cam.unproject(jnp.array([[uv]], jnp.float32), jnp.array([[depth]], jnp.float32))
    uv2, z = cam.project(pts[0])
    np.testing.assert_allclose(uv2[0, 0], uv, atol=2e-3 * (1 + abs(max(uv, key=abs))))
    np.testing.assert_allclose(z[0, 0], depth, rtol=1e-4)
    # and the OpenGL round trip keeps the camera
    P, pose = cam.to_opengl(0.05, 100.0)
    back = Camera.from_opengl(P, pose, size[0], size[1])
    np.testing.assert_allclose(back.K, cam.K, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(back.world_to_camera, cam.world_to_camera, atol=1e-5)


def test_resized_cameras_keep_image_edges_and_points():
    cam = _rig(2, w=64, h=48)
    small = cam.resized(16, 12)
    pts = jnp.asarray(np.random.default_rng(3).uniform(-0.5, 0.5, (10, 3)), jnp.float32)
    uv, _ = cam.project(pts)
    uv_s, _ = small.project(pts)
    # the same point lands at the same fraction of the image, measured from the top-left corner
    frac_s = (np.asarray(uv_s) + 0.5) / np.array([16.0, 12.0])
    np.testing.assert_allclose(frac_s, (np.asarray(uv) + 0.5) / np.array([64.0, 48.0]), atol=1e-5)
    with pytest.raises(CameraError, match="positive"):
        cam.resized(0, 12)

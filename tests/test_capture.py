"""Real captures: lens models, COLMAP models, ``meshfit import`` against captures whose truth is known."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

import meshfit
from meshfit.camera import CameraError
from meshfit.capture import chroma_mask, import_capture, is_capture
from meshfit.capture.synthetic import distort_image, make_capture
from meshfit.cli import main
from meshfit.io import DatasetError, read_image
from meshfit.io.cameras import read_camera_records
from meshfit.io.lens import Lens, lens_from_opencv
from meshfit.render.views import render_views
from tests.helpers import SPOT

cv2 = pytest.importorskip("cv2")

K256 = np.array([[260.0, 0, 127.5], [0, 260.0, 127.5], [0, 0, 1]])
BARREL = [-0.25, 0.05, 0.001, -0.001]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a & b).sum((1, 2)) / np.maximum((a | b).sum((1, 2)), 1)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    """A pinhole dataset of Spot: 6 views at 256² (pyrender)."""
    folder = tmp_path_factory.mktemp("truth")
    meshfit.synthesize(SPOT, folder / "data", views=6, size=(256, 256), seed=3)
    cams, names = meshfit.load_cameras(folder / "data")
    return cams, names, meshfit.load_mesh(SPOT), folder / "data"


def _capture(truth, folder, lens_for, **kw):
    cams, names, _, _ = truth
    make_capture(SPOT, cams, folder, lens_for, names=[n + ".png" for n in names], **kw)
    return folder


# ---- lenses ----------------------------------------------------------------------------------


def test_lens_agrees_with_opencv():
    d = np.array([-0.2, 0.05, 0.001, -0.002, 0.01])
    lens = lens_from_opencv(K256, 256, 256, d)
    assert lens.model == "FULL_OPENCV" and lens.distorted
    P = lens.pinhole
    mx, my = lens.undistortion_map(P, 256, 256)
    ox, oy = cv2.initUndistortRectifyMap(K256, d, None, P, (256, 256), cv2.CV_32FC1)
    np.testing.assert_allclose(mx, ox, atol=2e-3)
    np.testing.assert_allclose(my, oy, atol=2e-3)
    # no black border: every output pixel samples inside the source image
    assert mx.min() >= -1e-3 and mx.max() <= 255 + 1e-3 and my.min() >= -1e-3 and my.max() <= 255 + 1e-3
    # ... and the view is as wide as that allows (OpenCV's alpha=0 camera, within a pixel's worth)
    best, _ = cv2.getOptimalNewCameraMatrix(K256, d, (256, 256), 0)
    assert abs(P[0, 0] - best[0, 0]) / best[0, 0] < 0.01
    pts = np.array([[10.0, 20.0], [128.0, 30.0], [250.0, 240.0]])
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    ref = cv2.undistortPoints(pts.reshape(-1, 1, 2), K256, d, None, P, criteria=crit)[:, 0]
    np.testing.assert_allclose(lens.undistort_points(pts, P), ref, atol=1e-3)
    # distort then undistort is the identity
    back = lens.project((lens.undistort_points(pts, P) - P[:2, 2]) / P[[0, 1], [0, 1]])
    np.testing.assert_allclose(back, pts, atol=1e-6)


@pytest.mark.parametrize("model, params, opencv", [
    ("SIMPLE_RADIAL", (260.0, 128.0, 128.0, -0.2), [-0.2, 0, 0, 0]),
    ("RADIAL", (260.0, 128.0, 128.0, -0.2, 0.04), [-0.2, 0.04, 0, 0]),
])  # fmt: skip
def test_colmap_radial_models_are_opencvs(model, params, opencv):
    """COLMAP's SIMPLE_RADIAL / RADIAL are OpenCV's model with k1 (, k2) only; COLMAP's principal
    point (pixel corners) is OpenCV's plus half a pixel."""
    lens = Lens(model, 256, 256, params)
    P = lens.pinhole
    mx, my = lens.undistortion_map(P, 256, 256)
    ox, oy = cv2.initUndistortRectifyMap(K256, np.array(opencv, float), None, P, (256, 256), cv2.CV_32FC1)
    np.testing.assert_allclose(mx, ox, atol=2e-3)
    np.testing.assert_allclose(my, oy, atol=2e-3)


def test_fisheye_lens_agrees_with_opencv():
    d = np.array([0.08, 0.01, -0.002, 0.001])
    lens = lens_from_opencv(K256, 256, 256, d, fisheye=True)
    P = lens.pinhole
    mx, my = lens.undistortion_map(P, 256, 256)
    ox, oy = cv2.fisheye.initUndistortRectifyMap(K256, d, np.eye(3), P, (256, 256), cv2.CV_32FC1)
    np.testing.assert_allclose(mx, ox, atol=2e-3)
    np.testing.assert_allclose(my, oy, atol=2e-3)


@pytest.mark.parametrize("fisheye", [False, True])
def test_big_undistortion_maps_interpolate_to_a_hundredth_of_a_pixel(fisheye):
    W, H = 1280, 960  # above a megapixel: the lens is evaluated every MAP_STEP pixels
    K = np.array([[1000.0, 0, 639.5], [0, 1000.0, 479.5], [0, 0, 1]])
    d = [0.08, 0.01, 0.0, 0.0] if fisheye else [-0.3, 0.1, 0.001, -0.001, -0.02]
    lens = lens_from_opencv(K, W, H, d, fisheye=fisheye)
    fast = lens.undistortion_map(lens.pinhole, W, H)
    exact = lens.undistortion_map(lens.pinhole, W, H, step=1)
    assert max(np.abs(fast[0] - exact[0]).max(), np.abs(fast[1] - exact[1]).max()) < 0.01


def test_pinhole_lens_is_not_resampled_and_pixel_convention_is_exact():
    lens = Lens("PINHOLE", 64, 48, (50.0, 52.0, 32.0, 24.0))
    assert not lens.distorted
    np.testing.assert_array_equal(lens.pinhole, [[50, 0, 31.5], [0, 52, 23.5], [0, 0, 1]])
    with pytest.raises(CameraError, match="needs 4 parameters"):
        Lens("PINHOLE", 64, 48, (50.0, 32.0))
    with pytest.raises(CameraError, match="unknown camera model"):
        Lens("PINHOLE_PLUS", 64, 48, (50.0, 52.0, 32.0, 24.0))


def test_distortion_in_cameras_json_and_transforms_json(tmp_path):
    cams = {"convention": "opencv", "cameras": [{
        "name": "a", "width": 256, "height": 256, "K": K256.tolist(), "world_to_camera": np.eye(4).tolist(),
        "distortion": [-0.1, 0.01, 0.0, 0.0, 0.0]}]}  # fmt: skip
    (tmp_path / "cameras.json").write_text(json.dumps(cams))
    (r,) = read_camera_records(tmp_path).records
    assert r.lens.model == "OPENCV" and r.lens.params[:4] == (260.0, 260.0, 128.0, 128.0)
    with pytest.raises(CameraError, match="has lens distortion.*meshfit import"):
        meshfit.load_cameras(tmp_path)
    cams["cameras"][0]["distortion"] = {"model": "fisheye", "k1": 0.1, "k5": 1}
    (tmp_path / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(CameraError, match=r"unknown coefficients \['k5'\]"):
        read_camera_records(tmp_path)
    frames = [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]
    tf = {"fl_x": 260.0, "fl_y": 260.0, "cx": 128.0, "cy": 128.0, "w": 256, "h": 256, "k1": -0.1, "p2": 0.01,
          "camera_model": "OPENCV_FISHEYE", "frames": frames}  # fmt: skip
    (tmp_path / "cameras.json").unlink()
    (tmp_path / "transforms.json").write_text(json.dumps(tf))
    with pytest.raises(CameraError, match="p1, p2 are not fisheye coefficients"):
        read_camera_records(tmp_path)
    (tmp_path / "transforms.json").write_text(json.dumps({**tf, "p2": 0.0}))
    (r,) = read_camera_records(tmp_path).records
    assert r.lens.model == "OPENCV_FISHEYE" and r.lens.params[4] == -0.1
    tf["camera_model"] = "OPENCV"
    (tmp_path / "transforms.json").write_text(json.dumps(tf))
    (r,) = read_camera_records(tmp_path).records
    assert r.lens.model == "OPENCV" and r.lens.params[4:] == (-0.1, 0.0, 0.0, 0.01)


# ---- importing captures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lens, binary, rigs",
    [
        ("opencv", True, True),
        ("opencv", False, False),
        ("fisheye", True, False),
        ("full_opencv", False, True),
    ],
)
def test_import_undistorts_to_the_truth(truth, tmp_path, lens, binary, rigs):
    """Masks of the imported capture agree with renders of the true mesh through the imported
    cameras (IoU >= 0.98 at 256²), much better than keeping the distorted photos."""
    coefficients = {"opencv": (BARREL, False), "fisheye": ([0.08, 0.01, 0.0, 0.0], True),
                    "full_opencv": ([-0.3, 0.1, 0.0, 0.0, -0.02], False)}[lens]  # fmt: skip
    cap = _capture(truth, tmp_path / "cap", lambda K: lens_from_opencv(K, 256, 256, coefficients[0],
                   fisheye=coefficients[1]), binary=binary, rigs=rigs, plates=False)  # fmt: skip
    assert is_capture(cap)
    report = import_capture(cap, tmp_path / "data", progress=False)
    assert report["kind"] == f"COLMAP {'binary' if binary else 'text'} model" and report["warnings"] == []
    views = meshfit.load_views(tmp_path / "data")
    cams, names, mesh, _ = truth
    assert views.names == names and (views.cameras.width, views.cameras.height) == (256, 256)
    iou = _iou(render_views(mesh, views.cameras).mask, views.mask)
    distorted = np.stack([read_image(cap / "masks" / f"{n}.png.png")[..., 0] > 0.5 for n in names])
    kept = _iou(render_views(mesh, cams).mask, distorted)
    assert iou.min() >= 0.98, (iou, kept)
    assert iou.mean() > kept.mean() + 0.01
    for v in report["views"].values():  # the synthetic points are exact: COLMAP's reprojection is 0
        assert v["reprojection"]["mean_px"] < 1e-3 and v["hull"]["seen"] > 0.5
    assert (tmp_path / "data" / "masks.png").is_file() and not is_capture(tmp_path / "data")


def test_import_masks_from_plates_crop_and_size(truth, tmp_path):
    cap = _capture(truth, tmp_path / "cap", lambda K: lens_from_opencv(K, 256, 256, BARREL), masks=False)
    report = import_capture(
        cap, tmp_path / "data", plates=cap / "plates", crop=True, size=160, progress=False
    )
    assert report["mask_source"] == "plates"
    views = meshfit.load_views(tmp_path / "data")
    assert max(views.cameras.width, views.cameras.height) == 160
    iou = _iou(render_views(truth[2], views.cameras).mask, views.mask)
    assert iou.min() >= 0.95, iou
    # The plates come along, through the same lens, crop and size: where the object is not, the
    # photo is its plate (a photometric fit lays its render over them).
    assert views.background is not None and views.background.shape == views.rgb.shape
    from scipy.ndimage import binary_dilation

    away = ~np.stack([binary_dilation(m, iterations=3) for m in views.mask])
    assert np.median(np.abs(views.rgb - views.background)[away]) < 2 / 255
    # the capture's own plates/ folder is found without --plates
    import_capture(cap, tmp_path / "again", progress=False)
    assert json.loads((tmp_path / "again" / "import.json").read_text())["mask_source"] == "plates"


def test_chroma_key_mask():
    rng = np.random.default_rng(0)
    img = np.empty((120, 160, 3), np.uint8)
    img[:] = (0, 177, 64)
    img = np.clip(img * rng.uniform(0.6, 1.1, size=(120, 160, 1)), 0, 255).astype(np.uint8)  # uneven light
    yy, xx = np.mgrid[:120, :160]
    disc = (xx - 80) ** 2 + (yy - 60) ** 2 < 35**2
    img[disc] = rng.integers(0, 255, size=(int(disc.sum()), 3))
    img[disc & (xx < 80)] = (200, 60, 40)
    m = chroma_mask(img, (0, 177, 64))
    assert _iou(m[None], disc[None])[0] > 0.97


def test_landmarks_and_depth_go_through_the_lens(truth, tmp_path):
    """A cameras.json capture with distortion: depth (nearest) and landmark points (inverse lens)
    land where the imported pinhole cameras put the truth."""
    cams, names, mesh, data = truth
    cap = tmp_path / "cap"
    lens = lens_from_opencv(K256, 256, 256, BARREL)
    K = np.asarray(cams.K, np.float64)
    entries = []
    idx = np.arange(0, len(mesh.vertices), 97)
    for i, n in enumerate(names):
        lens_i = lens_from_opencv(K[i], 256, 256, BARREL)
        rgb = (read_image(data / "rgb" / f"{n}.png") * 255).astype(np.uint8)
        meshfit.write_image(cap / "images" / f"{n}.png", distort_image(rgb, K[i], lens_i))
        mask = read_image(data / "mask" / f"{n}.png")[..., 0] > 0.5
        meshfit.write_image(
            cap / "masks" / f"{n}.png", distort_image(mask, K[i], lens_i, kind="mask").astype(np.uint8) * 255
        )
        (cap / "depth").mkdir(exist_ok=True)
        np.save(
            cap / "depth" / f"{n}.npy",
            distort_image(np.load(data / "depth" / f"{n}.npy"), K[i], lens_i, kind="depth"),
        )
        X = np.asarray(mesh.vertices)[idx]
        w2c = np.asarray(cams.world_to_camera[i], np.float64)
        Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
        uv = lens_i.project(Xc[:, :2] / Xc[:, 2:3])
        (cap / "landmarks").mkdir(exist_ok=True)
        (cap / "landmarks" / f"{n}.json").write_text(json.dumps({"points": [None, *uv.tolist()]}))
        entries.append({"name": n, "width": 256, "height": 256, "K": K[i].tolist(),
                        "world_to_camera": w2c.tolist(), "distortion": BARREL})  # fmt: skip
    (cap / "cameras.json").write_text(json.dumps({"convention": "opencv", "cameras": entries}))
    assert lens.distorted and is_capture(cap)
    import_capture(cap, tmp_path / "data", size=200, progress=False)
    views = meshfit.load_views(tmp_path / "data")
    r = render_views(mesh, views.cameras)
    both = r.mask & (views.depth > 0)
    rel = np.abs(views.depth[both] - r.depth[both]) / r.depth[both]
    assert np.median(rel) < 2e-3
    for i, n in enumerate(names):
        lm = json.loads((tmp_path / "data" / "landmarks" / f"{n}.json").read_text())["points"]
        assert lm[0] is None
        uv, _ = views.cameras[i].project(np.asarray(mesh.vertices)[idx].astype(np.float32))
        np.testing.assert_allclose(np.array(lm[1:]), np.asarray(uv), atol=0.02)


def test_fit_takes_a_capture(truth, tmp_path, capsys):
    """meshfit fit --data CAPTURE imports the capture on the fly into OUT_data, then fits."""
    cap = _capture(truth, tmp_path / "cap", lambda K: lens_from_opencv(K, 256, 256, BARREL), plates=False)
    sets = [
        f"stages.{i}.{k}" for i in range(3) for k in ("steps=3", "views_per_step=null", "weights.depth=0")
    ]
    args = [a for s in sets for a in ("--set", s)]
    rc = main(["fit", "free_mesh", "--data", str(cap), "--out", str(tmp_path / "fit"), "--quiet", *args])
    assert rc == 0, capsys.readouterr().err
    assert "is a capture: importing it" in capsys.readouterr().out
    assert (tmp_path / "fit_data" / "import.json").is_file() and (tmp_path / "fit" / "mesh.obj").is_file()


def test_fit_from_an_imported_capture_matches_the_pinhole_fit(truth, tmp_path):
    """A free-mesh fit from masks alone (no depth) is as good from the imported distorted capture
    as from the pinhole renders: RMS point-to-mesh within 10%."""
    from meshfit.fitting import FitConfig, fit_views, load_config
    from meshfit.metrics import evaluate

    cap = _capture(truth, tmp_path / "cap", lambda K: lens_from_opencv(K, 256, 256, BARREL), plates=False)
    import_capture(cap, tmp_path / "data", progress=False)
    sets = ["stages.0.steps=300", "stages.0.resolution=128", "stages.1.steps=150", "stages.1.resolution=256",
            "stages.1.views_per_step=null", "stages.2.steps=0", "stages.2.views_per_step=null",
            "stages.2.resolution=256", "stages.2.remesh=null"]  # fmt: skip
    sets += [f"stages.{i}.weights.depth=0" for i in range(3)]
    config = FitConfig.from_dict(load_config("free_mesh", sets)[0])
    rms = {}
    for label, folder in (("pinhole", truth[3]), ("capture", tmp_path / "data")):
        views = meshfit.load_views(folder)._replace(depth=None)
        result = fit_views(config, views, progress=False)
        rms[label] = evaluate(result.mesh, truth[2], num_samples=10_000)["rms_point_to_mesh"]
    assert rms["capture"] <= 1.1 * rms["pinhole"], rms


# ---- bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_capture(truth, tmp_path_factory):
    folder = tmp_path_factory.mktemp("small") / "cap"
    return _capture(truth, folder, lambda K: lens_from_opencv(K, 256, 256, BARREL), plates=False, points=20)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate:cameras.bin", "cameras.bin is truncated"),
        ("truncate:images.bin", "images.bin is truncated"),
        ("truncate:points3D.bin", "points3D.bin is truncated"),
        ("huge:images.bin", "images.bin is truncated or corrupt: it says"),
        ("garbage:images.bin", "images.bin"),
        ("empty:images.bin", "images.bin is truncated"),
        ("missing-photo", "the photo of view '002.png' is not on disk"),
        ("wrong-size-photo", "is 100x60 but its camera says 256x256"),
        ("no-mask", "has no mask for view '001.png'"),
        ("no-images", "has no posed images"),
    ],
)
def test_bad_captures_are_named_and_nothing_is_written(small_capture, tmp_path, damage, message):
    cap = _copy(small_capture, tmp_path / "cap")
    kind, _, name = damage.partition(":")
    model = cap / "sparse" / "0"
    if kind == "truncate":
        data = (model / name).read_bytes()
        (model / name).write_bytes(data[: len(data) - 5])
    elif kind == "huge":
        data = bytearray((model / name).read_bytes())
        data[:8] = struct.pack("<Q", 10**12)
        (model / name).write_bytes(bytes(data))
    elif kind == "garbage":
        (model / name).write_bytes(b"\x07" * 8 + b"\xff" * 200)
    elif kind == "empty":
        (model / name).write_bytes(b"")
    elif kind == "missing-photo":
        (cap / "images" / "002.png").unlink()
    elif kind == "wrong-size-photo":
        meshfit.write_image(cap / "images" / "003.png", np.zeros((60, 100, 3), np.uint8))
    elif kind == "no-mask":
        (cap / "masks" / "001.png.png").unlink()
    elif kind == "no-images":
        import pycolmap

        rec = pycolmap.Reconstruction(str(model))
        for image_id in list(rec.reg_image_ids()):
            rec.deregister_frame(rec.image(image_id).frame_id)
        rec.write_binary(str(model))
    with pytest.raises((CameraError, DatasetError, FileNotFoundError), match=message):
        import_capture(cap, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cap"]  # no partial folder left beside it


def test_unknown_camera_model_names_the_file(tmp_path):
    (tmp_path / "cameras.txt").write_text("1 OPENCV_SUPER 64 48 50 50 32 24\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 3 1 a.png\n\n")
    with pytest.raises(CameraError, match=r"cameras.txt line 1: .* with a COLMAP model"):
        read_camera_records(tmp_path)


def test_import_cli_errors(small_capture, tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "camera file not found" in capsys.readouterr().err
    assert main(["import", str(small_capture), "--out", str(tmp_path / "o"), "--chroma", "purple"]) == 2
    assert "chroma key colour" in capsys.readouterr().err
    assert main(["import", str(small_capture), "--out", str(tmp_path / "o"), "--crop", "--masks",
                 str(tmp_path / "none")]) == 2  # fmt: skip
    assert "--masks" in capsys.readouterr().err
    assert main(["import", str(small_capture), "--out", str(small_capture)]) == 2
    assert "input" in capsys.readouterr().err
    assert main(["import", str(small_capture), "--out", str(tmp_path / "o"), "--size", "160", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "imported 6 views (COLMAP binary model" in out and "masks.png" in out
    assert main(["import", str(small_capture), "--out", str(tmp_path / "o")]) == 2  # exists, no --overwrite
    assert main(["import", str(small_capture), "--out", str(tmp_path / "o"), "--overwrite", "--quiet"]) == 0


def test_rig_sensors_in_folders_chroma_key_and_one_plate_per_sensor(truth, tmp_path):
    """COLMAP rig layout (images/cam0/000.png, images/cam1/000.png: one stem, two sensors), a
    green screen keyed by --chroma, and one background plate per sensor serving all its photos."""
    cams, names, mesh, _ = truth
    rig = [f"cam{i % 3}/{i // 3:03d}.png" for i in range(len(names))]
    cap = _capture(truth, tmp_path / "cap", lambda K: lens_from_opencv(K, 256, 256, BARREL), masks=False,
                   plates=False, background=(0, 177, 64))  # fmt: skip
    for i, name in enumerate(rig):  # move the photos into the rig layout, and the model with them
        (cap / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (cap / "images" / f"{names[i]}.png").rename(cap / "images" / name)
    import pycolmap

    rec = pycolmap.Reconstruction(str(cap / "sparse" / "0"))
    for image in rec.images.values():
        image.name = rig[names.index(image.name[:-4])]
    rec.write_binary(str(cap / "sparse" / "0"))
    keyed = import_capture(cap, tmp_path / "keyed", chroma="green", progress=False)
    assert keyed["mask_source"] == "chroma" and sorted(keyed["views"]) == sorted(
        n.replace("/", "_")[:-4] for n in rig
    )
    plate = np.clip(
        np.float32([0, 177, 64]) * np.linspace(0.85, 1.05, 256, dtype=np.float32)[None, :, None], 0, 255
    )
    for sensor in ("cam0", "cam1", "cam2"):
        meshfit.write_image(cap / "plates" / f"{sensor}.png", plate.astype(np.uint8).repeat(256, 0))
    plated = import_capture(cap, tmp_path / "plated", progress=False)  # CAPTURE/plates/ found by itself
    assert plated["mask_source"] == "plates"
    for folder in ("keyed", "plated"):
        views = meshfit.load_views(tmp_path / folder)
        assert _iou(render_views(mesh, views.cameras).mask, views.mask).min() >= 0.95, folder


def test_resized_photos_exif_and_points(truth, tmp_path):
    """Photos that are a half-size copy of what COLMAP calibrated get scaled intrinsics (said on the
    terminal) and still reproject COLMAP's points exactly; EXIF orientation is ignored for COLMAP;
    a model without points3D is read without its observations."""
    from PIL import Image

    cap = _capture(truth, tmp_path / "cap", lambda K: lens_from_opencv(K, 256, 256, BARREL), plates=False)
    for f in list((cap / "images").iterdir()) + list((cap / "masks").iterdir()):
        img = Image.open(f)
        img.resize(
            (128, 128), Image.Resampling.BOX if f.parent.name == "images" else Image.Resampling.NEAREST
        ).save(f)
    exif = Image.Exif()
    exif[0x0112] = 3  # turned 180 degrees, says EXIF: COLMAP calibrated the stored pixels
    stored = Image.open(cap / "images" / "000.png").convert("RGB")
    stored.save(cap / "images" / "000.png", exif=exif.tobytes())
    report = import_capture(cap, tmp_path / "data", progress=False)
    assert any("000: EXIF orientation 3 ignored" in w for w in report["warnings"])
    assert sum("intrinsics scaled" in w for w in report["warnings"]) == len(truth[1])
    assert all(v["reprojection"]["mean_px"] < 1e-3 for v in report["views"].values())
    views = meshfit.load_views(tmp_path / "data")
    assert views.cameras.width == 128
    assert _iou(render_views(truth[2], views.cameras).mask, views.mask).min() >= 0.96
    (cap / "sparse" / "0" / "points3D.bin").unlink()
    report = import_capture(cap, tmp_path / "nopoints", progress=False)
    assert not any("reprojection" in v for v in report["views"].values())


@pytest.mark.parametrize("damage, message", [
    ("model-id", "unknown camera model id 99"),
    ("frames", "frames.bin is truncated"),
    ("mask-size", "is 100x60; its photo is 256x256"),
    ("plate-size", "plate .*004.png is 128x128; its photo"),
])  # fmt: skip
def test_more_bad_captures(small_capture, tmp_path, damage, message):
    cap = _copy(small_capture, tmp_path / "cap")
    model = cap / "sparse" / "0"
    kw = {}
    if damage == "model-id":
        data = bytearray((model / "cameras.bin").read_bytes())
        data[12:16] = struct.pack("<i", 99)
        (model / "cameras.bin").write_bytes(bytes(data))
    elif damage == "frames":
        data = (model / "frames.bin").read_bytes()
        (model / "frames.bin").write_bytes(data[:-3])
    elif damage == "mask-size":
        meshfit.write_image(cap / "masks" / "002.png.png", np.zeros((60, 100), np.uint8))
    elif damage == "plate-size":
        shutil.rmtree(cap / "masks")
        (cap / "plates").mkdir()
        for n in ("000", "001", "002", "003", "004", "005"):
            meshfit.write_image(
                cap / "plates" / f"{n}.png",
                np.zeros((128, 128, 3) if n == "004" else (256, 256, 3), np.uint8),
            )
        kw = {"plates": cap / "plates"}
    with pytest.raises((CameraError, DatasetError), match=message):
        import_capture(cap, tmp_path / "out", progress=False, **kw)
    assert not (tmp_path / "out").exists()


def test_transforms_json_capture_with_distortion_masks_and_depth(truth, tmp_path):
    """A nerfstudio capture: transforms.json (OpenGL camera-to-world, pixel-corner principal point,
    k1/k2/p1/p2), per-frame mask_path and 16-bit millimetre depth_file_path."""
    from PIL import Image

    cams, names, mesh, data = truth
    cap = tmp_path / "cap"
    K = np.asarray(cams.K, np.float64)
    frames = []
    for i, n in enumerate(names):
        lens = lens_from_opencv(K[i], 256, 256, BARREL)
        rgb = (read_image(data / "rgb" / f"{n}.png") * 255).astype(np.uint8)
        meshfit.write_image(cap / "images" / f"frame_{i:05d}.png", distort_image(rgb, K[i], lens))
        mask = read_image(data / "mask" / f"{n}.png")[..., 0] > 0.5
        mask = distort_image(mask, K[i], lens, kind="mask")
        meshfit.write_image(cap / "segmentation" / f"frame_{i:05d}.png", mask.astype(np.uint8) * 255)
        depth = distort_image(np.load(data / "depth" / f"{n}.npy"), K[i], lens, kind="depth")
        (cap / "depth").mkdir(exist_ok=True)
        Image.fromarray(np.rint(depth * 1000).astype(np.uint16)).save(cap / "depth" / f"frame_{i:05d}.png")
        c2w = np.linalg.inv(np.asarray(cams.world_to_camera[i], np.float64)) @ np.diag([1.0, -1.0, -1.0, 1.0])
        stem = f"frame_{i:05d}"
        frames.append({
            "file_path": f"images/{stem}.png", "mask_path": f"segmentation/{stem}.png",
            "depth_file_path": f"depth/{stem}.png", "transform_matrix": c2w.tolist(),
        })  # fmt: skip
    f = K[0, 0, 0]
    tf = {"camera_model": "OPENCV", "fl_x": f, "fl_y": f, "cx": K[0, 0, 2] + 0.5, "cy": K[0, 1, 2] + 0.5,
          "w": 256, "h": 256, "frames": frames}  # fmt: skip
    tf.update(zip(("k1", "k2", "p1", "p2"), BARREL))
    (cap / "transforms.json").write_text(json.dumps(tf))
    report = import_capture(cap, tmp_path / "data", progress=False)
    assert report["kind"] == "transforms.json" and report["mask_source"] == "masks"
    views = meshfit.load_views(tmp_path / "data")
    r = render_views(mesh, views.cameras)
    assert _iou(r.mask, views.mask).min() >= 0.98
    both = r.mask & (views.depth > 0)
    assert np.median(np.abs(views.depth[both] - r.depth[both]) / r.depth[both]) < 2e-3  # mm quantisation

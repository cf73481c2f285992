"""2-D landmarks: definitions (model side), detection files (dataset side), the robust
reprojection term, synth's landmark output, and fits that use them."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meshfit
from meshfit import losses
from meshfit.cli import main
from meshfit.fitting import FitConfig
from meshfit.io import LandmarkError, parse_landmark_definition, read_landmarks, write_landmarks
from meshfit.models import BlendshapeModel
from tests.test_fitting import _tiny_blendshapes

FACES = np.array([[0, 1, 2], [1, 2, 3]], np.int32)


def test_landmark_definitions():
    idx, w, names = parse_landmark_definition({"vertices": [3, 0], "names": ["a", "b"]}, FACES, 4, "d.json")
    np.testing.assert_array_equal(idx, [[3, 3, 3], [0, 0, 0]])
    np.testing.assert_array_equal(w, [[1, 0, 0], [1, 0, 0]])
    assert names == ("a", "b")
    idx, w, _ = parse_landmark_definition({"faces": [1], "barycentric": [[0.2, 0.3, 0.5]]}, FACES, 4, "d")
    np.testing.assert_array_equal(idx, [[1, 2, 3]])
    np.testing.assert_allclose(w, [[0.2, 0.3, 0.5]])
    for spec, match in [
        ({"vertices": [4]}, r"\[4\] out of range for a mesh of 4 vertices"),
        ({"vertices": [1.5]}, "must be integers"),
        ({"vertices": []}, "non-empty list"),
        ({"vertices": [1], "faces": [0]}, "not both"),
        ({"faces": [2], "barycentric": [[1, 0, 0]]}, r"\[2\] out of range for 2 faces"),
        ({"faces": [0], "barycentric": [[0.5, 0.6, 0.0]]}, "sum to 1"),
        ({"faces": [0], "barycentric": [[1, 0]]}, "1 rows of 3 finite numbers"),
        ({"vertex": [1]}, r"unknown keys \['vertex'\]"),
        ({"vertices": [1], "names": ["a", "b"]}, "1 strings"),
        ([1, 2], "must be an object"),
    ]:
        with pytest.raises(LandmarkError, match=match):
            parse_landmark_definition(spec, FACES, 4, "d.json")


def test_blendshape_model_carries_its_landmarks(tmp_path):
    model = _tiny_blendshapes()
    meshfit.save_mesh(tmp_path / "neutral.obj", meshfit.Mesh(np.asarray(model.neutral), model.faces))
    spec = {"neutral": "neutral.obj", "landmarks": {"vertices": [5, 7, 9]}}
    (tmp_path / "blendshapes.json").write_text(json.dumps(spec))
    loaded = BlendshapeModel.load(tmp_path)
    assert loaded.num_landmarks == 3
    np.testing.assert_allclose(loaded.landmark_points(loaded.neutral), np.asarray(model.neutral)[[5, 7, 9]])
    loaded.save(tmp_path / "m.npz")
    again = BlendshapeModel.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.landmark_vertices, loaded.landmark_vertices)
    assert _tiny_blendshapes().num_landmarks == 0
    with pytest.raises(ValueError, match="defines no landmarks"):
        model.landmark_points(model.neutral)
    spec["landmarks"] = {"vertices": [10_000]}
    (tmp_path / "blendshapes.json").write_text(json.dumps(spec))
    with pytest.raises(LandmarkError, match="blendshapes.json: landmarks.vertices"):
        BlendshapeModel.load(tmp_path)


def test_detection_files_round_trip_and_errors(tmp_path):
    pts = np.array([[[1.5, 2.0], [np.nan, np.nan]], [[3.0, 4.0], [5.0, 6.0]]])
    write_landmarks(tmp_path, ["a", "b"], pts, np.array([[0.5, 0.0], [1.0, 0.25]]))
    got, conf = read_landmarks(tmp_path, ["a", "b", "c"])  # c has no file: nothing found there
    np.testing.assert_array_equal(got[:2], pts)
    assert np.isnan(got[2]).all()
    np.testing.assert_array_equal(conf, [[0.5, 0.0], [1.0, 0.25], [0.0, 0.0]])
    assert read_landmarks(tmp_path / "nothing", ["a"]) is None
    bad = tmp_path / "landmarks" / "b.json"
    for content, match in [
        ({"points": [[1, 2]]}, "b.json has 1 points; the other views have 2"),
        ({"points": [[1, 2], [np.inf, 1]]}, "cannot read|points\\[1\\]"),
        ({"points": [[1, 2], [1, 2, 3]]}, r"points\[1\] must be \[x, y\]"),
        ({"points": [[1, 2], None], "confidence": [1.0, 2.0]}, "confidences must be in"),
        ({"points": [[1, 2], None], "confidence": [1.0]}, "2 numbers, one per point"),
        ({"points": [[1, 2], None], "scores": [1, 1]}, r"unknown keys \['scores'\]"),
        ([[1, 2]], "expected"),
    ]:
        bad.write_text(json.dumps(content).replace("Infinity", "1e999"))
        with pytest.raises(LandmarkError, match=match):
            read_landmarks(tmp_path, ["a", "b"])
    with pytest.raises(LandmarkError, match="holds no landmark file of these views"):
        read_landmarks(tmp_path, ["x", "y"])


def test_robust_landmark_loss():
    cams = meshfit.sphere_rig(3, radius=4.0, width=64, height=64, seed=0)
    pts = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (5, 3)), jnp.float32)
    uv, _ = cams.project(pts)
    off = uv.at[:, 0, 0].add(2.0)  # landmark 0 off by 2 px in every view
    # Cauchy: an error of one scale counts log 2; averaged over 5 landmarks.
    np.testing.assert_allclose(losses.landmark_loss(cams, pts, off, scale=2.0), np.log(2.0) / 5, rtol=1e-4)
    # A gross outlier pulls far less than under the squared error: the gradient on the points.
    far = uv.at[1, 3].add(80.0)
    g_l2 = jax.grad(lambda p: losses.landmark_loss(cams, p, far))(pts)
    g_cauchy = jax.grad(lambda p: losses.landmark_loss(cams, p, far, scale=2.0))(pts)
    assert np.abs(g_cauchy).max() < 1e-3 * np.abs(g_l2).max()
    # Missing detections (NaN) count nothing and give no NaN.
    missing = uv.at[0, 2].set(jnp.nan)
    assert float(losses.landmark_loss(cams, pts, missing, scale=2.0)) < 1e-8
    assert np.isfinite(jax.grad(lambda p: losses.landmark_loss(cams, p, missing))(pts)).all()
    # Coarser cameras see full-resolution detections through pixel_size.
    half = cams.resized(32, 32)
    np.testing.assert_allclose(losses.landmark_loss(half, pts, off, scale=2.0, pixel_size=2.0),
                               np.log(2.0) / 5, rtol=1e-3)  # fmt: skip
    # Gradient against central finite differences (float64 would be exact; float32: 2%).
    f = lambda p: losses.landmark_loss(cams, p, far, scale=2.0)  # noqa: E731
    g = np.asarray(jax.grad(f)(pts))
    e = np.zeros((5, 3), np.float32)
    e[2, 1] = 1e-3
    fd = (float(f(pts + e)) - float(f(pts - e))) / 2e-3
    np.testing.assert_allclose(g[2, 1], fd, rtol=0.02)


def _landmark_model(tmp_path) -> tuple[BlendshapeModel, str]:
    """The tiny model with 12 landmarks, saved with its definition; returns (model, npz path)."""
    base = _tiny_blendshapes()
    marks = jnp.asarray(np.repeat(np.arange(0, 162, 14)[:12, None], 3, 1), jnp.int32)
    weights = jnp.asarray(np.tile([1.0, 0.0, 0.0], (12, 1)), jnp.float32)
    model = BlendshapeModel(base.neutral, base.faces, base.identity, base.expression, (), (), marks, weights)
    path = tmp_path / "model.npz"
    model.save(path)
    (tmp_path / "marks.json").write_text(
        json.dumps({"landmarks": {"vertices": np.asarray(marks)[:, 0].tolist()}})
    )
    return model, str(path)


def test_synth_writes_landmarks_and_a_fit_uses_them(tmp_path):
    """synth projects a definition's points (noise and outliers as asked); a fit from a wrong
    start with landmarks alone recovers the pose; metrics.json measures the landmarks; a dataset
    whose files count other points, or a model without landmarks, is a named error."""
    model, path = _landmark_model(tmp_path)
    a = jnp.asarray
    truth = {**model.init_params(), "rotation": a([0.1, -0.5, 0.1]), "translation": a([0.1, 0.0, -0.1])}
    posed = meshfit.Mesh(np.asarray(model.vertices(truth)), model.faces)
    meshfit.synthesize(
        posed, tmp_path / "data", views=4, size=(64, 64), seed=0, landmarks=tmp_path / "marks.json"
    )
    views = meshfit.load_views(tmp_path / "data")
    uv, depth = views.cameras.project(model.landmark_points(jnp.asarray(posed.vertices)))
    found = ~np.isnan(views.landmarks[..., 0])
    assert found.mean() > 0.9
    np.testing.assert_allclose(
        views.landmarks[found], np.asarray(uv)[found], atol=2e-3
    )  # written to 3 decimals
    noisy = meshfit.synthesize(posed, tmp_path / "noisy", views=4, size=(64, 64), seed=0,
                               landmarks=tmp_path / "marks.json", landmark_noise=1.0,
                               landmark_outliers=0.25)  # fmt: skip
    scene = json.loads((noisy / "scene.json").read_text())["landmarks"]
    assert scene["count"] == 12 and len(scene["outliers"]) > 4
    # Landmarks alone, from the rest pose 0.5 rad away: the pose comes back.
    stage = {"steps": 150, "lr": 0.03, "params": ["rotation", "translation"], "weights": {"landmarks": 1.0},
             "patience": 0}  # fmt: skip
    cfg = {"model": "blendshapes", "stages": [stage]}
    result = meshfit.fit_views(FitConfig.from_dict(cfg), views, model=model, progress=False)
    np.testing.assert_allclose(result.params["rotation_axis_angle"], truth["rotation"], atol=0.02)
    # The CLI: metrics.json measures the landmarks.
    config = tmp_path / "c.json"
    config.write_text(json.dumps(cfg))
    rc = main(["fit", str(config), "--data", str(tmp_path / "data"), "--model", path, "--out",
               str(tmp_path / "fit"), "--quiet"])  # fmt: skip
    assert rc == 0
    marks = json.loads((tmp_path / "fit" / "metrics.json").read_text())["landmarks"]
    assert marks["error_px_median"] < 0.5 and marks["detections"] == int(found.sum())
    # Errors.
    with pytest.raises(ValueError, match="defines none"):
        meshfit.fit_views(FitConfig.from_dict(cfg), views, model=_tiny_blendshapes(), progress=False)
    fewer = views._replace(
        landmarks=views.landmarks[:, :5], landmark_confidence=views.landmark_confidence[:, :5]
    )
    with pytest.raises(ValueError, match="landmark files have 5 points; the model defines 12"):
        meshfit.fit_views(FitConfig.from_dict(cfg), fewer, model=model, progress=False)
    with pytest.raises(ValueError, match="no landmarks/ folder"):
        meshfit.fit_views(
            FitConfig.from_dict(cfg), views._replace(landmarks=None), model=model, progress=False
        )
    rigid = {"model": "rigid", "stages": [{"weights": {"landmarks": 1.0}}]}
    with pytest.raises(ValueError, match="a rigid fit has none"):
        meshfit.fit_views(FitConfig.from_dict(rigid), views, model=posed, progress=False)
    with pytest.raises(ValueError, match="landmark noise and outliers need a landmark definition"):
        meshfit.synthesize(posed, tmp_path / "x", views=2, landmark_noise=1.0)


def test_a_fit_without_masks_is_placed_by_its_landmarks(tmp_path):
    """No mask/ and no depth/ (a face photographed with its surroundings): a blendshape fit is
    placed from the landmarks alone and fits them; the report draws them; fits that need masks
    say so."""
    import shutil

    from meshfit.fitting import place_from_landmarks

    model, path = _landmark_model(tmp_path)
    a = jnp.asarray
    truth = {**model.init_params(), "expression": a([0.6, 0.0, 0.3]), "rotation": a([0.2, 2.5, -0.1]),
             "translation": a([0.3, -0.2, 0.1]), "log_scale": a(np.log(1.3))}  # fmt: skip
    posed = meshfit.Mesh(np.asarray(model.vertices(truth)), model.faces)
    data = tmp_path / "data"
    meshfit.synthesize(posed, data, views=4, size=(64, 64), seed=3, landmarks=tmp_path / "marks.json",
                       landmark_noise=0.3)  # fmt: skip
    shutil.rmtree(data / "mask")
    shutil.rmtree(data / "depth")
    views = meshfit.load_views(data)
    assert views.mask is None and views.depth is None
    # The placement alone: 2.5 rad away from the rest pose, found within a few degrees.
    R, s, t = place_from_landmarks(views.cameras, views.landmarks, views.landmark_confidence,
                                   np.asarray(model.landmark_points(model.neutral)))  # fmt: skip
    R_true = np.asarray(meshfit.models.so3_exp(truth["rotation"]))
    angle = np.degrees(np.arccos(np.clip((np.trace(R.T @ R_true) - 1) / 2, -1, 1)))
    assert angle < 5 and abs(s / 1.3 - 1) < 0.05, (angle, s)
    stage = {"steps": 100, "lr": 0.01, "weights": {"landmarks": 1.0}, "patience": 0}
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps({"model": "blendshapes", "bounds": {"expression": [0, 1]}, "stages": [stage]})
    )
    rc = main(
        ["fit", str(config), "--data", str(data), "--model", path, "--out", str(tmp_path / "fit"), "--quiet"]
    )
    assert rc == 0
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert "mask_iou_mean" not in metrics["images"] and metrics["landmarks"]["error_px_median"] < 0.5
    assert "Landmarks: green crosses" in (tmp_path / "fit" / "report.html").read_text()
    # What needs masks says so.
    silhouette = {"model": "blendshapes", "stages": [{"weights": {"silhouette": 1.0, "landmarks": 1.0}}]}
    with pytest.raises(ValueError, match="weighs the silhouette but the dataset has no mask/ folder"):
        meshfit.fit_views(FitConfig.from_dict(silhouette), views, model=model, progress=False)
    with pytest.raises(ValueError, match="a rigid fit needs masks"):
        meshfit.fit_views(FitConfig.from_dict({"model": "rigid", "stages": [{}]}),
                          views, model=posed, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="placed from its landmarks.*or its background.*it has neither"):
        meshfit.fit_views(FitConfig.from_dict(silhouette | {"stages": [{"weights": {"prior": 1.0}}]}),
                          views._replace(landmarks=None), model=model, progress=False)  # fmt: skip


def test_a_sequence_without_masks_is_placed_per_frame_and_bad_detections_are_named(tmp_path):
    """T frames through one rig with only landmarks: every frame is placed from its own
    detections and the per-frame poses come back; detections in the wrong units are an error."""
    model, _ = _landmark_model(tmp_path)
    cams = meshfit.sphere_rig(3, radius=4.0, width=48, height=48, fov=40.0, seed=2)
    rng = np.random.default_rng(1)
    rotations = rng.normal(0, 0.3, (3, 3)).astype(np.float32)
    marks = []
    for rot in rotations:
        p = {**model.init_params(), "rotation": jnp.asarray(rot)}
        marks.append(np.asarray(cams.project(model.landmark_points(model.vertices(p)))[0]))
    marks = np.stack(marks)  # [T, N, L, 2]
    views = meshfit.Views(cams, ["a", "b", "c"], None, None, None, frames=["0", "1", "2"], landmarks=marks,
                          landmark_confidence=np.ones(marks.shape[:3], np.float32))  # fmt: skip
    stage = {"steps": 60, "lr": 0.01, "params": ["rotation", "translation"], "weights": {"landmarks": 1.0},
             "patience": 0}  # fmt: skip
    result = meshfit.fit_views(FitConfig.from_dict({"model": "blendshapes", "stages": [stage]}), views,
                               model=model, progress=False)  # fmt: skip
    fitted = np.array([f["rotation_axis_angle"] for f in result.params["frames"]])
    np.testing.assert_allclose(fitted, rotations, atol=0.01)
    # Normalised coordinates where pixels were expected: named, not fitted.
    data = tmp_path / "d"
    meshfit.save_cameras(data / "cameras.json", cams, names=["a", "b", "c"])
    write_landmarks(data, ["a", "b", "c"], marks[0] * 1000.0)
    with pytest.raises(meshfit.io.DatasetError, match="more than an image's size outside their image"):
        meshfit.load_views(data)

"""Fitting appearance with the shape: the photometric term (per-vertex albedo under fitted SH
light), its gradients, its errors, and a fit from RGB and landmarks without masks or depth."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meshfit
from meshfit.cli import main
from meshfit.fitting import FitConfig
from meshfit.objectives import LossWeights, Targets, image_objective
from tests.test_landmarks import _landmark_model


def _scene():
    model, _ = _landmark_model_in_memory()
    cams = meshfit.sphere_rig(3, radius=4.0, width=48, height=48, fov=40.0, seed=2)
    rng = np.random.default_rng(0)
    truth = {**model.init_params(), "expression": jnp.asarray([0.5, 0.2, 0.0])}
    truth["albedo"] = jnp.asarray(rng.uniform(0.3, 0.8, (model.num_vertices, 3)), jnp.float32)
    light = np.zeros((9, 3), np.float32)
    light[0], light[1], light[3] = 1.0, 0.3, -0.2
    truth["light"] = jnp.asarray(light)
    return model, cams, truth


def _landmark_model_in_memory():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        return _landmark_model(Path(tmp))


def test_photometric_term_is_zero_at_the_truth_and_has_true_gradients():
    model, cams, truth = _scene()
    w = LossWeights(photometric=1.0)
    objective = image_objective(model, cams, near=1.0, far=8.0, weights=w)
    # The target: the same render (the term's own image formation) with the truth.
    render = image_objective(model, cams, near=1.0, far=8.0, weights=w)
    from meshfit.render import interpolate, normal_image, rasterize, sh_irradiance

    v = model.vertices(truth)
    frags = rasterize(cams.to_clip(v, 1.0, 8.0), model.faces, height=48, width=48)
    linear = interpolate(truth["albedo"], frags, model.faces) * sh_irradiance(
        normal_image(v, model.faces, frags), truth["light"]
    )
    rgb = jnp.where(frags.mask[..., None], jnp.clip(linear, 1e-6, 1) ** (1 / 2.2), 0.25)
    targets = Targets(None, rgb=rgb)
    loss, terms = render(truth, targets)
    assert float(loss) < 1e-7 and set(terms) == {"photometric"}
    # Off the truth it grows, and its gradient in the light matches central differences.
    off = {**truth, "light": truth["light"].at[0, 0].add(0.2)}
    assert float(objective(off, targets)[0]) > 1e-3
    g = jax.grad(lambda p: objective(p, targets)[0])(off)["light"]
    e = jnp.zeros((9, 3)).at[2, 0].set(1e-3)
    fd = (
        objective({**off, "light": off["light"] + e}, targets)[0]
        - objective({**off, "light": off["light"] - e}, targets)[0]
    ) / 2e-3
    assert abs(float(fd)) > 1e-4
    np.testing.assert_allclose(g[2, 0], fd, rtol=0.05)
    assert np.isfinite(np.asarray(jax.grad(lambda p: objective(p, targets)[0])(off)["expression"])).all()
    with pytest.raises(ValueError, match="fits params 'albedo'"):
        objective(model.init_params(), targets)
    with pytest.raises(ValueError, match="needs target colour images"):
        objective(truth, Targets(None, depth=jnp.zeros((3, 48, 48))))


def test_photometric_config_rules():
    with pytest.raises(ValueError, match="photometric term fits a blendshape model's appearance"):
        FitConfig.from_dict({"model": "rigid", "stages": [{"weights": {"photometric": 1.0}}]})
    stage = {"params": ["albedo", "light"], "weights": {"photometric": 1.0}}
    cfg = FitConfig.from_dict({"model": "blendshapes", "stages": [stage]})
    assert cfg.stages[0].params == ("albedo", "light")


def test_synth_background_colour(tmp_path):
    out = meshfit.synthesize(meshfit.Mesh(*_unit_box()), tmp_path / "d", views=2, size=(32, 32),
                             background=(0.2, 0.4, 0.6))  # fmt: skip
    views = meshfit.load_views(out)
    np.testing.assert_allclose(views.rgb[~views.mask].mean(0), [0.2, 0.4, 0.6], atol=2 / 255)
    with pytest.raises(ValueError, match="background is an RGB colour"):
        meshfit.synthesize(meshfit.Mesh(*_unit_box()), tmp_path / "e", views=2, background=(2, 0, 0))


def _unit_box():
    import trimesh

    b = trimesh.creation.box()
    return np.asarray(b.vertices, np.float32), np.asarray(b.faces, np.int32)


def test_fit_from_rgb_and_landmarks_without_masks(tmp_path):
    """pyrender images (synth's studio light, not SH) over a background, landmarks, no masks, no
    depth: the shipped face_rgb recipe on a small model runs through the CLI, writes the light
    and the albedo, and the photometric stage lowers its own error."""
    model, path = _landmark_model(tmp_path)
    a = jnp.asarray
    truth = {**model.init_params(), "expression": a([0.6, 0.0, 0.3]), "rotation": a([0.2, 0.4, -0.1])}
    posed = meshfit.Mesh(np.asarray(model.vertices(truth)), model.faces)
    data = tmp_path / "data"
    meshfit.synthesize(posed, data, views=4, size=(64, 64), seed=3, landmarks=tmp_path / "marks.json",
                       background=(0.3, 0.3, 0.3))  # fmt: skip
    shutil.rmtree(data / "mask")
    shutil.rmtree(data / "depth")
    rc = main(["fit", "face_rgb", "--data", str(data), "--model", path, "--out", str(tmp_path / "fit"),
               "--set", "stages.0.steps=60", "--set", "stages.1.steps=60", "--set", "stages.2.steps=40",
               "--quiet"])  # fmt: skip
    assert rc == 0
    params = json.loads((tmp_path / "fit" / "params.json").read_text())
    assert params["light"]["model"] == "sh" and np.asarray(params["light"]["coefficients"]).shape == (9, 3)
    mesh = meshfit.load_mesh(tmp_path / "fit" / "mesh.obj")
    assert mesh.colors is not None and mesh.colors.shape == (model.num_vertices, 3)
    history = json.loads((tmp_path / "fit" / "history.json").read_text())
    photometric = history[1]["term_history"]["photometric"]
    assert photometric[-1] < 0.7 * photometric[0]

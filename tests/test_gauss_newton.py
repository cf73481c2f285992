"""The gauss_newton stage optimiser (``meshfit.fitting.gauss_newton``): what it converges to in a
few steps, that it reports the same objective as the Adam stages, its bounds, and its errors."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meshfit
from meshfit.config import ConfigError
from meshfit.fitting import FitConfig, FitState, Problem, StageConfig, fit_views, prepare_stage
from meshfit.objectives import LossWeights, Targets
from tests.test_fitting import _box_with_nose, _coefficients, _frames_problem, _tiny_blendshapes


def _rig_problem(size=64):
    """A tiny blendshape rig (with 4 landmarks) rendered through 3 cameras, and its truth; one
    expression lies at its bound 0."""
    m = _tiny_blendshapes()
    model = dataclasses.replace(
        m, landmark_vertices=jnp.asarray([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]], jnp.int32),
        landmark_weights=jnp.full((4, 3), 1 / 3, jnp.float32),
    )  # fmt: skip
    truth = {**model.init_params(), "identity": jnp.asarray([0.5, -0.4]),
             "expression": jnp.asarray([0.7, 0.0, 0.4]), "rotation": jnp.asarray([0.05, -0.08, 0.03]),
             "translation": jnp.asarray([0.03, -0.02, 0.04])}  # fmt: skip
    cams = meshfit.sphere_rig(3, radius=4.0, width=size, height=size, fov=40.0, seed=2)
    v = model.vertices(truth)
    r = meshfit.render.render_views(meshfit.Mesh(np.asarray(v), model.faces), cams, near=2.0, far=6.0)
    landmarks = np.asarray(cams.project(model.landmark_points(v))[0])
    views = meshfit.Views(cams, ["a", "b", "c"], r.rgb, r.mask, r.depth, landmarks=landmarks)
    # In params.json form (the tiny rig's shapes are unnamed).
    start = {"identity": {"identity0": 0.4, "identity1": -0.3},
             "expression": {"expression0": 0.6, "expression1": 0.1, "expression2": 0.5},
             "rotation_axis_angle": [0.0, 0.0, 0.0], "translation": [0.0] * 3, "scale": 1.0}  # fmt: skip
    return model, views, truth, start


def _vertex_error(model, params, truth) -> float:
    fitted = {
        "identity": jnp.asarray(list(params["identity"].values()), jnp.float32),
        "expression": jnp.asarray(list(params["expression"].values()), jnp.float32),
        "rotation": jnp.asarray(params["rotation_axis_angle"], jnp.float32),
        "translation": jnp.asarray(params["translation"], jnp.float32),
        "log_scale": jnp.asarray(np.log(params["scale"]), jnp.float32),
    }
    return float(jnp.mean(jnp.linalg.norm(model.vertices(fitted) - model.vertices(truth), axis=-1)))


def _config(optimizer: str, steps: int, **stage) -> FitConfig:
    return FitConfig.from_dict({
        "model": "blendshapes", "near": 2.0, "far": 6.0, "bounds": {"expression": [0.0, 1.0]},
        "stages": [{"name": "refine", "optimizer": optimizer, "steps": steps, "patience": 0, "lr": 0.01,
                    "weights": {"depth": 1.0}, **stage}],
    })  # fmt: skip


def test_gauss_newton_converges_in_a_few_steps_where_adam_creeps():
    model, views, truth, start = _rig_problem()
    before = _vertex_error(model, start, truth)
    gn = fit_views(_config("gauss_newton", 6), views, model=model, progress=False, start=start)
    adam = fit_views(_config("adam", 6), views, model=model, progress=False, start=start)
    e_gn, e_adam = _vertex_error(model, gn.params, truth), _vertex_error(model, adam.params, truth)
    assert e_gn < 2e-3 * before and e_gn < 0.05 * e_adam, (before, e_gn, e_adam)
    losses = gn.history[-1]["losses"]
    assert losses[-1] < 1e-3 * losses[0], losses
    expression = np.asarray(list(gn.params["expression"].values()))
    assert expression.min() >= 0.0 and expression[1] < 1e-3  # the truth's 0 is at the bound


def test_gauss_newton_stops_a_coefficient_at_its_bound():
    """A step that would carry a coefficient past its bound takes it to the bound (and solves the
    others given it), rather than leaving it where it was."""
    model, views, truth, start = _rig_problem()
    start = {**start, "expression": {**start["expression"], "expression1": 0.6}}
    config = dataclasses.replace(_config("gauss_newton", 4), bounds={"expression": (0.1, 1.0)})
    fit = fit_views(config, views, model=model, progress=False, start=start)
    expression = np.asarray(list(fit.params["expression"].values()))
    # The truth's 0 lies below the box: the fit ends on its edge (a held coordinate stayed at 0.6).
    np.testing.assert_allclose(expression[1], 0.1, atol=1e-6)
    assert abs(expression[0] - 0.7) < 0.05 and abs(expression[2] - 0.4) < 0.05, expression


def test_gauss_newton_reports_the_stage_objective():
    """Every term it can weigh (depth, landmarks, prior, pose prior) has the value the Adam
    stages' objective gives, at the parameters it is given."""
    model, views, truth, _ = _rig_problem(size=48)
    weights = LossWeights(depth=3.0, landmarks=0.01, prior=0.1, pose_prior=0.2)
    problem = Problem(views.cameras, Targets(jnp.asarray(views.mask), jnp.asarray(views.depth),
                      landmarks=jnp.asarray(views.landmarks)), near=2.0, far=6.0, radius=0.9)  # fmt: skip
    params = {**truth, "identity": truth["identity"] + 0.05, "rotation": truth["rotation"] + 0.02}
    for scale in (2.0, None):
        stage = StageConfig(
            optimizer="gauss_newton", weights=weights, landmark_scale=scale, depth_max_error=0.05
        )
        ps = prepare_stage(problem, model, stage, free=tuple(params))
        state = FitState(params, ps.init(params), jnp.zeros((), jnp.int32))
        _, aux = ps.step(state, (model, {}, ps.targets, None))
        loss, terms = ps.loss(params, (model, {}, ps.targets, None))
        assert set(terms) == {"depth", "landmarks", "prior", "pose_prior"}
        for k in terms:
            np.testing.assert_allclose(aux[k], terms[k], rtol=2e-4, err_msg=k)
        np.testing.assert_allclose(aux["loss"], loss, rtol=2e-4)


def test_gauss_newton_fits_landmarks_alone():
    """Landmark reprojection alone (no depth): the pose and shape that reproject the truth's
    landmarks, from a perturbed start."""
    model, views, truth, start = _rig_problem(size=48)
    cfg = _config("gauss_newton", 10, weights={"landmarks": 1.0}, params=["rotation", "translation"])
    fit = fit_views(cfg, views._replace(depth=None), model=model, progress=False, start=start)
    losses = fit.history[-1]["losses"]
    assert losses[-1] < 0.05 * losses[0], losses


def test_gauss_newton_recovers_a_rigid_pose():
    m = _box_with_nose()
    mesh = meshfit.Mesh(np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int32))
    cams = meshfit.sphere_rig(4, radius=4.0, width=64, height=64, fov=40.0, seed=0)
    R = np.asarray(meshfit.models.so3_exp(jnp.asarray([0.1, -0.05, 0.08], jnp.float32)))
    t = np.asarray([0.04, -0.03, 0.02], np.float32)
    r = meshfit.render.render_views(meshfit.Mesh(np.asarray(m.vertices, np.float32) @ R.T + t, mesh.faces),
                                    cams, near=2.0, far=6.0)  # fmt: skip
    views = meshfit.Views(cams, ["a", "b", "c", "d"], None, r.mask, r.depth)
    cfg = {"model": "rigid", "near": 2.0, "far": 6.0, "stages": [
        {"optimizer": "gauss_newton", "steps": 8, "patience": 0, "weights": {"depth": 1.0}}]}  # fmt: skip
    start = {"object_to_world": np.eye(4).tolist()}
    fit = fit_views(FitConfig.from_dict(cfg), views, model=mesh, progress=False, start=start)
    M = np.asarray(fit.params["object_to_world"])
    err = np.degrees(np.linalg.norm(np.asarray(meshfit.models.so3_log(jnp.asarray(M[:3, :3] @ R.T)))))
    assert err < 0.05, err
    np.testing.assert_allclose(M[:3, 3], t, atol=2e-4)


def test_gauss_newton_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"stages\[0\].*gauss_newton weighs only.*\['silhouette'\]"):
        FitConfig.from_dict({"model": "rigid", "stages": [{"optimizer": "gauss_newton"}]})
    with pytest.raises(ConfigError, match=r"stages\[0\].optimizer: gauss_newton .* free mesh"):
        FitConfig.from_dict({"model": "free_mesh", "stages": [{"optimizer": "gauss_newton",
                                                                "weights": {"depth": 1.0}}]})  # fmt: skip
    with pytest.raises(ConfigError, match=r"\['photometric'\]"):
        FitConfig.from_dict({"model": "rigid", "stages": [
            {"optimizer": "gauss_newton", "weights": {"depth": 1.0, "photometric": 1.0}}]})  # fmt: skip
    with pytest.raises(ConfigError, match="optimizer"):
        FitConfig.from_dict({"model": "rigid", "stages": [{"optimizer": "gauss_newtn"}]})
    from meshfit.amortize import TrainConfig

    with pytest.raises(ConfigError, match=r"refine.*gauss_newton weighs only"):
        refine = {"optimizer": "gauss_newton", "weights": {"silhouette": 1.0, "depth": 1.0}}
        TrainConfig.from_dict({"model": "rigid", "refine": refine})
    # What needs the data: depth it does not have, and a sequence.
    model, views, _, start = _rig_problem(size=32)
    with pytest.raises(ValueError, match=r"stages\[0\] \(refine\) weighs depth but the dataset has no depth"):
        fit_views(_config("gauss_newton", 2), views._replace(depth=None), model=model, progress=False,
                  start=start)  # fmt: skip
    seq = views._replace(mask=views.mask[None], depth=views.depth[None], rgb=None, landmarks=None,
                         frames=["0"])  # fmt: skip
    with pytest.raises(ValueError, match="gauss_newton solves a sequence on one device"):
        fit_views(_config("gauss_newton", 2), seq, model=model, progress=False, devices=jax.devices()[:1])


def test_gauss_newton_fits_a_sequence_with_shared_identity():
    """T frames in one system: the shared identity, each frame's expression and pose, and the
    smoothness term between frames."""
    model, views, config, truth = _frames_problem()
    stage = {"name": "gn", "optimizer": "gauss_newton", "steps": 8, "patience": 0, "weights": {"depth": 1.0}}
    cfg = FitConfig.from_dict({**config, "bounds": {"expression": [0.0, 1.0]}, "stages": [stage]})
    fit = fit_views(cfg, views, model=model, progress=False)
    # meshfit's own renders: zero residual at the truth, reached in a few steps (Adam: 150 steps
    # to 0.05 in test_fitting.py).
    np.testing.assert_allclose(_coefficients(fit.params, "identity"), truth["identity"], atol=1e-3)
    np.testing.assert_allclose(_coefficients(fit.params, "expression"), truth["expression"], atol=1e-3)
    smooth = fit_views(dataclasses.replace(cfg, smoothness=10.0), views, model=model, progress=False)
    terms = smooth.history[-1]["term_history"]
    assert "smoothness" in terms and terms["smoothness"][-1] > 0
    losses = smooth.history[-1]["losses"]
    assert losses[-1] < 0.1 * losses[0]


def test_shipped_amortize_configs_refine_with_gauss_newton():
    from meshfit.amortize import TrainConfig
    from meshfit.fitting import load_config

    for name in ("amortize_face", "amortize_face_small", "amortize_rigid"):
        refine = TrainConfig.from_dict(load_config(name)[0]).refine
        assert refine.optimizer == "gauss_newton" and refine.weights.depth > 0, name

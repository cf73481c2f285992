"""Config-driven fits: ``meshfit fit`` end to end on tiny data, its errors, and multi-frame
blendshape fitting (with the frame axis sharded over forced CPU devices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import meshfit
from meshfit.cli import main
from meshfit.config import ConfigError
from meshfit.fitting import FitConfig, downsample_targets, estimate_placement, fit_views
from meshfit.models import BlendshapeModel
from meshfit.objectives import Targets
from tests.helpers import REPO


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    """Spot (built in), 4 views at 48^2."""
    out = tmp_path_factory.mktemp("data") / "spot"
    meshfit.synthesize(REPO / "meshfit" / "data" / "spot.obj", out, views=4, size=(48, 48), seed=1)
    return out


def _config(path, name, overrides=()):
    data = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    path.write_text(yaml.safe_dump(data))
    return [str(path)] + [a for o in overrides for a in ("--set", o)]


def test_fit_free_mesh_cli_end_to_end(tmp_path, spot_data, capsys):
    out = tmp_path / "fit"
    args = _config(tmp_path / "c.yaml", "free_mesh",
                   ["stages.0.steps=150", "stages.1.steps=40", "stages.2.steps=10",
                    "stages.1.views_per_step=2", "stages.2.views_per_step=2"])  # fmt: skip
    gt = REPO / "meshfit" / "data" / "spot.obj"
    rc = main(["fit", *args, "--data", str(spot_data), "--out", str(out), "--gt", str(gt), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    for name in ("mesh.obj", "params.json", "metrics.json", "config.yaml", "report.html", "loss.png",
                 "turntable.gif", "overlays/000.png"):  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["resolution"] for s in metrics["stages"]] == [[48, 48]] * 3
    assert metrics["steps"] == 200
    # From the initial sphere towards the silhouettes, in 200 steps at 48^2.
    from meshfit.metrics import evaluate, image_metrics

    cfg = yaml.safe_load((REPO / "configs" / "free_mesh.yaml").read_text())
    cfg["stages"] = [{**cfg["stages"][0], "steps": 0}]
    views = meshfit.load_views(spot_data)
    start = fit_views(FitConfig.from_dict(cfg), views, progress=False)
    rendered = meshfit.render.render_views(start.mesh, views.cameras, near=start.near, far=start.far)
    iou0 = image_metrics(rendered, views)["mask_iou_mean"]
    rms0 = evaluate(start.mesh, meshfit.load_mesh(gt))["rms_point_to_mesh"]
    assert metrics["images"]["mask_iou_mean"] > max(0.8, iou0 + 0.15), (iou0, metrics["images"])
    assert metrics["ground_truth"]["rms_point_to_mesh"] < 0.5 * rms0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["stages"][1]["steps"] == 40 and resolved["stages"][1]["remesh"] == 0.05
    assert "report:" in capsys.readouterr().out


def _box_with_nose():
    import trimesh

    box = trimesh.creation.box((1.0, 0.6, 0.3))
    nose = trimesh.creation.box((0.3, 0.3, 0.3))
    nose.apply_translation((0.6, 0.1, 0.1))
    return trimesh.util.concatenate([box, nose])


def test_fit_rigid_cli_recovers_a_pose(tmp_path):
    """A small asymmetric mesh moved by a known pose; the fit starts 10 degrees off."""
    m = _box_with_nose()
    meshfit.save_mesh(tmp_path / "obj.obj", meshfit.Mesh(np.asarray(m.vertices, np.float32), m.faces))
    R = np.asarray(meshfit.models.so3_exp(jnp.asarray([0.3, -0.2, 0.5])), np.float32)
    moved = np.asarray(m.vertices) @ R.T + (0.2, -0.1, 0.3)
    meshfit.synthesize(meshfit.Mesh(moved.astype(np.float32), m.faces), tmp_path / "data", views=4,
                       size=(64, 64), seed=0)  # fmt: skip
    exp, log = meshfit.models.so3_exp, meshfit.models.so3_log
    start = np.degrees(np.asarray(log(exp(jnp.asarray([0.1, 0.12, 0.0])) @ jnp.asarray(R))))
    args = _config(tmp_path / "c.yaml", "rigid_pose", [
        f"init.rotation=[{start[0]}, {start[1]}, {start[2]}]", "init.rotation_search=0",
        "stages.0.steps=80", "stages.0.lr=0.01", "stages.1.steps=80", "stages.1.weights.depth=1.0",
        "stages.2.steps=60", "stages.2.weights.depth=1.0",
    ])  # fmt: skip
    rc = main(["fit", *args, "--data", str(tmp_path / "data"), "--model", str(tmp_path / "obj.obj"),
               "--out", str(tmp_path / "fit"), "--quiet"])  # fmt: skip
    assert rc == 0
    M = np.asarray(json.loads((tmp_path / "fit" / "params.json").read_text())["object_to_world"])
    err = np.degrees(
        np.linalg.norm(np.asarray(meshfit.models.so3_log(jnp.asarray(M[:3, :3] @ R.T, jnp.float32))))
    )
    assert err < 1.0, err
    np.testing.assert_allclose(M[:3, 3], (0.2, -0.1, 0.3), atol=0.01)


def test_fit_cli_errors_name_the_problem(tmp_path, spot_data, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: free_mesh\nstages:\n  - {steps: 10, weights: {silhouete: 1.0}}\n")
    assert main(["fit", str(bad), "--data", str(spot_data), "--out", str(tmp_path / "o")]) == 2
    assert "stages[0].weights.silhouete: unknown key" in capsys.readouterr().err
    args = _config(tmp_path / "r.yaml", "rigid_pose")
    assert main(["fit", *args, "--data", str(spot_data), "--out", str(tmp_path / "o")]) == 2
    assert "needs --model" in capsys.readouterr().err
    args = _config(tmp_path / "f.yaml", "free_mesh", ["stages.0.lr=-1"])
    assert main(["fit", *args, "--data", str(spot_data), "--out", str(tmp_path / "o")]) == 2
    assert "lr must be a finite number > 0; got -1.0" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    args = _config(tmp_path / "f.yaml", "free_mesh")
    assert main(["fit", *args, "--data", str(spot_data), "--out", str(tmp_path / "full")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # A mistyped shipped name lists the shipped configs of that command only.
    assert main(["fit", "face_rg", "--data", str(spot_data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "config not found: face_rg" in err and "'face_rgb'" in err and "amortize" not in err
    with pytest.raises(ConfigError, match=r"stages\[0\].params: \['expression'\]"):
        FitConfig.from_dict({"model": "rigid", "stages": [{"params": ["expression"]}]})


def _tiny_blendshapes() -> BlendshapeModel:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=2)
    n = np.asarray(s.vertices, np.float32)
    # An asymmetric base (an ellipsoid with a nose), so the pose is observable.
    v = n * (1.0, 0.7, 0.5) + n * 0.4 * np.exp(-np.sum((n - (0.6, 0.0, 0.8)) ** 2, 1, keepdims=True) / 0.1)
    ids = np.stack([v * (0.25, 0, 0), n * 0.2 * v[:, 1:2] ** 2])
    bump = lambda c: n * 0.3 * np.exp(-np.sum((v - c) ** 2, 1, keepdims=True) / 0.2)  # noqa: E731
    exps = np.stack([bump((0, 0, 1)), bump((0.7, 0.7, 0)), bump((-0.7, 0, 0.7))])
    return BlendshapeModel(jnp.asarray(v), jnp.asarray(s.faces, jnp.int32), jnp.asarray(ids, jnp.float32),
                           jnp.asarray(exps, jnp.float32))  # fmt: skip


def _frames_problem(T=4, size=32):
    """A tiny performance: T frames x 3 views of a blendshape rig (meshfit's renders), and the truth."""
    model = _tiny_blendshapes()
    rng = np.random.default_rng(0)
    truth = {"identity": jnp.asarray([0.6, -0.5], jnp.float32), "log_scale": jnp.zeros(()),
             "expression": jnp.asarray(rng.uniform(0, 1, (T, 3)), jnp.float32),
             "rotation": jnp.asarray(rng.normal(0, 0.05, (T, 3)), jnp.float32),
             "translation": jnp.asarray(rng.normal(0, 0.03, (T, 3)), jnp.float32)}  # fmt: skip
    cams = meshfit.sphere_rig(3, radius=4.0, width=size, height=size, fov=40.0, seed=2)
    masks, depths = [], []
    for t in range(T):
        frame = {k: (v[t] if k in ("expression", "rotation", "translation") else v) for k, v in truth.items()}
        r = meshfit.render.render_views(meshfit.Mesh(np.asarray(model.vertices(frame)), model.faces), cams,
                                        near=2.0, far=6.0)  # fmt: skip
        masks.append(r.mask)
        depths.append(r.depth)
    views = meshfit.Views(cams, ["a", "b", "c"], None, np.stack(masks), np.stack(depths),
                          frames=[f"{t:04d}" for t in range(T)])  # fmt: skip
    # Depth outweighs the silhouette: at 32^2 an antialiased silhouette against hard masks is
    # not minimal at the truth, but depth is.
    config = {"model": "blendshapes", "near": 2.0, "far": 6.0,
              "stages": [{"name": "fit", "steps": 150, "lr": 0.02, "patience": 0,
                          "weights": {"silhouette": 1.0, "depth": 20.0}}]}  # fmt: skip
    return model, views, config, truth


def _coefficients(params, key):
    if key == "identity":
        return np.asarray(list(params["identity"].values()))
    return np.asarray([list(f[key].values()) for f in params["frames"]])


def test_multi_frame_blendshapes_recover_shared_identity():
    model, views, config, truth = _frames_problem()
    result = fit_views(FitConfig.from_dict(config), views, model=model, progress=False)
    history = result.history
    assert history[0]["losses"][-1] < 0.1 * history[0]["losses"][0]
    np.testing.assert_allclose(_coefficients(result.params, "identity"), truth["identity"], atol=0.05)
    np.testing.assert_allclose(_coefficients(result.params, "expression"), truth["expression"], atol=0.1)
    assert len(result.meshes) == 4 and result.mesh is result.meshes[0]
    bounded = {**config, "bounds": {"expression": [0.0, 0.3]}, "stages": [{"steps": 10}]}
    out = fit_views(FitConfig.from_dict(bounded), views, model=model, progress=False)
    e = _coefficients(out.params, "expression")
    assert e.max() <= 0.3 + 1e-6 and e.min() >= 0.0


def test_multi_frame_cli_end_to_end(tmp_path, capsys):
    """A sequence folder (one cameras.json, frames/NNNN/{mask,depth}/) through meshfit fit."""
    model, views, config, truth = _frames_problem(T=3)
    data = tmp_path / "perf"
    meshfit.io.save_cameras(data / "cameras.json", views.cameras, names=views.names)
    for t, name in enumerate(views.frames):
        meshfit.io.write_views(data / "frames" / name, views.names, mask=views.mask[t], depth=views.depth[t])
    model.save(tmp_path / "rig.npz")
    stage = {**config["stages"][0], "steps": 60, "views_per_step": 2}
    cfg = {**config, "smoothness": 0.01, "stages": [stage]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(["fit", str(tmp_path / "c.yaml"), "--data", str(data), "--model", str(tmp_path / "rig.npz"),
               "--out", str(tmp_path / "fit"), "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "fit"
    for name in ("meshes/0000.obj", "meshes/0002.obj", "params.json", "metrics.json", "report.html",
                 "sequence.png"):  # fmt: skip
        assert (out / name).is_file(), name
    params = json.loads((out / "params.json").read_text())
    assert len(params["frames"]) == 3 and set(params["identity"]) == {"identity0", "identity1"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == 3 and len(metrics["images"]["frames"]) == 3
    assert metrics["stages"][0]["views_per_step"] == 2
    assert "smoothness" in metrics["stages"][0]["terms"]


SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    from tests.test_fitting import _frames_problem
    from meshfit.fitting import FitConfig, fit_views
    assert len(jax.devices()) == 4
    model, views, config, truth = _frames_problem()
    config = FitConfig.from_dict({**config, "smoothness": 0.1,
                                  "stages": [{**config["stages"][0], "steps": 30}]})
    one = fit_views(config, views, model=model, progress=False)
    four = fit_views(config, views, model=model, progress=False, devices=jax.devices())
    for a, b in zip(one.meshes, four.meshes):
        # Same maths, sums in another order: once a rounding difference flips a silhouette pixel
        # (rasterization is discontinuous) the two trajectories part by up to ~1e-2 radii (measured
        # 7.5e-3 at 30 steps), both fitting equally well.
        np.testing.assert_allclose(np.asarray(b.vertices), np.asarray(a.vertices), atol=2e-2)
    (l1,), (l4,) = [[h["losses"] for h in r.history] for r in (one, four)]
    np.testing.assert_allclose(l4[:5], l1[:5], rtol=1e-5)  # before any flip: the same function
    np.testing.assert_allclose(l4[-1], l1[-1], rtol=0.02)
    print("OK")
    """
)


def test_multi_frame_sharded_over_four_devices_matches_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def test_demo_runs_on_built_in_data(tmp_path, capsys):
    steps = [a for i in range(3) for a in ("--set", f"stages.{i}.steps=5")]
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--size", "32", "--views", "4", "--quiet", *steps])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "report:" in out and "RMS point-to-mesh" in out
    assert (tmp_path / "demo" / "report.html").is_file() and (
        tmp_path / "demo_data" / "cameras.json"
    ).is_file()


def test_downsampled_targets_average_coverage_and_keep_full_depth():
    cams = meshfit.sphere_rig(2, radius=4.0, width=8, height=8, seed=0)
    mask = np.zeros((2, 8, 8), np.float32)
    mask[:, :3, :4] = 1.0  # a block edge inside a 2x2 block at rows 2-3
    depth = np.where(mask > 0, 2.0, 0.0).astype(np.float32)
    tg, cs = downsample_targets(Targets(jnp.asarray(mask), jnp.asarray(depth)), cams, 4)
    assert (cs.width, cs.height) == (4, 4) and tg.mask.shape == (2, 4, 4)
    np.testing.assert_allclose(tg.mask[0, :, 0], [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(tg.depth[0, :, 0], [2.0, 0.0, 0.0, 0.0])  # partial blocks: no depth
    np.testing.assert_allclose(cs.fx, cams.fx / 2)
    same, _ = downsample_targets(Targets(jnp.asarray(mask)), cams, None)
    assert same.mask.shape == (2, 8, 8)


def test_estimate_placement_finds_a_sphere():
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    mesh = meshfit.Mesh(np.asarray(s.vertices + (0.2, -0.1, 0.3), np.float32), np.asarray(s.faces, np.int32))
    cams = meshfit.sphere_rig(6, radius=3.0, target=(0.2, -0.1, 0.3), width=96, height=96, fov=40.0, seed=1)
    views = meshfit.render.render_views(mesh, cams)
    centre, radius = estimate_placement(cams, views.mask)
    np.testing.assert_allclose(centre, (0.2, -0.1, 0.3), atol=0.01)
    assert abs(radius - 0.5) < 0.03
    with pytest.raises(ValueError, match="at least two masks"):
        estimate_placement(cams, np.zeros_like(views.mask))


def test_stage_config_checks_its_values():
    for bad, message in [({"lr": 0}, "lr must be a finite number > 0"),
                         ({"views_per_step": 0}, "views_per_step"),
                         ({"remesh": -1.0}, "remesh"), ({"resolution": 4}, "resolution"),
                         ({"photometric_scale": 0.0}, "photometric_scale must be a finite"),
                         ({"photometric_scale": 0.05}, "does not weigh the photometric term")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            FitConfig.from_dict({"model": "free_mesh", "stages": [bad]})
    with pytest.raises(ConfigError, match=r"stages\[0\].lr_scale: \['u'\]"):
        FitConfig.from_dict({"model": "rigid", "stages": [{"lr_scale": {"u": 2.0}}]})
    with pytest.raises(ConfigError, match="only a free_mesh fit can remesh"):
        FitConfig.from_dict({"model": "rigid", "stages": [{"remesh": 0.05}]})
    with pytest.raises(ConfigError, match=r"lr_scale.rotation: expected a number"):
        FitConfig.from_dict({"model": "rigid", "stages": [{"lr_scale": {"rotation": "fast"}}]})
    with pytest.raises(ConfigError, match="bounds.expression: only blendshape"):
        FitConfig.from_dict({"model": "rigid", "stages": [{}], "bounds": {"expression": [0, 1]}})
    with pytest.raises(ConfigError, match=r"low < high"):
        FitConfig.from_dict({"model": "blendshapes", "stages": [{}], "bounds": {"expression": [1, 0]}})
    with pytest.raises(ConfigError, match="at least one stage"):
        FitConfig.from_dict({"model": "rigid", "stages": []})


def test_fit_is_deterministic_for_a_seed(spot_data):

    stage = {"views_per_step": 2, "patience": 0, "optimizer": "adam_uniform"}
    cfg = {"model": "free_mesh", "seed": 3,
           "stages": [{**stage, "steps": 15, "lr": 0.02}, {**stage, "steps": 5, "remesh": 0.1}]}  # fmt: skip
    views = meshfit.load_views(spot_data)
    a = fit_views(FitConfig.from_dict(cfg), views, progress=False)
    b = fit_views(FitConfig.from_dict(cfg), views, progress=False)
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    c = fit_views(FitConfig.from_dict({**cfg, "seed": 4}), views, progress=False)
    assert not np.array_equal(np.asarray(a.mesh.vertices), np.asarray(c.mesh.vertices))


def test_rigid_rotation_search_finds_a_far_pose(tmp_path):
    """The shipped rigid config from the identity, the truth 95 degrees away: the rotation search."""
    m = _box_with_nose()
    meshfit.save_mesh(tmp_path / "obj.obj", meshfit.Mesh(np.asarray(m.vertices, np.float32), m.faces))
    R = np.asarray(meshfit.models.so3_exp(jnp.asarray([1.3, -0.9, 0.5])), np.float32)
    moved = (np.asarray(m.vertices) @ R.T + (0.2, -0.1, 0.3)).astype(np.float32)
    meshfit.synthesize(meshfit.Mesh(moved, m.faces), tmp_path / "data", views=4, size=(64, 64), seed=0)
    rc = main(["fit", str(REPO / "configs" / "rigid_pose.yaml"), "--data", str(tmp_path / "data"),
               "--model", str(tmp_path / "obj.obj"), "--out", str(tmp_path / "fit"), "--quiet"])  # fmt: skip
    assert rc == 0
    M = np.asarray(json.loads((tmp_path / "fit" / "params.json").read_text())["object_to_world"])
    log = meshfit.models.so3_log
    assert np.degrees(np.linalg.norm(np.asarray(log(jnp.asarray(M[:3, :3] @ R.T, jnp.float32))))) < 0.5
    np.testing.assert_allclose(M[:3, 3], (0.2, -0.1, 0.3), atol=0.005)


def test_fit_blendshapes_cli_recovers_coefficients_and_pose(tmp_path):
    """A tiny blendshape model saved as .npz, posed and rendered by synth, fitted by the CLI."""
    model = _tiny_blendshapes()
    model.save(tmp_path / "model.npz")
    a = jnp.asarray
    truth = {**model.init_params(), "identity": a([0.5, -0.4]), "expression": a([0.7, 0.2, 0.4]),
             "rotation": a([0.05, -0.1, 0.08]), "translation": a([0.1, 0.05, -0.1])}  # fmt: skip
    posed = meshfit.Mesh(np.asarray(model.vertices(truth)), model.faces)
    meshfit.synthesize(posed, tmp_path / "data", views=4, size=(64, 64), seed=0)
    steps = ["stages.0.steps=100", "stages.1.steps=150", "stages.2.steps=100"]
    args = _config(tmp_path / "c.yaml", "face_blendshapes", steps)
    data, fit = tmp_path / "data", tmp_path / "fit"
    rc = main(["fit", *args, "--data", str(data), "--model", str(tmp_path / "model.npz"), "--out", str(fit),
               "--gt", str(data / "mesh.obj"), "--quiet"])  # fmt: skip
    assert rc == 0
    p = json.loads((tmp_path / "fit" / "params.json").read_text())
    np.testing.assert_allclose(list(p["identity"].values()), truth["identity"], atol=0.05)
    np.testing.assert_allclose(list(p["expression"].values()), truth["expression"], atol=0.05)
    np.testing.assert_allclose(p["rotation_axis_angle"], truth["rotation"], atol=0.01)
    m = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert m["ground_truth"]["vertex_error_mean"] < 0.01  # in correspondence: the model's vertex order


def test_shipped_ict_model_spec_loads():
    from tests.helpers import shared

    shared("ict_neutral")
    model = BlendshapeModel.load(REPO / "examples" / "ict_face_region.json")
    assert (model.num_identity, model.num_expression, model.num_vertices) == (4, 8, 9409)


def test_visual_hull_keeps_the_genus_of_a_torus():
    import trimesh

    from meshfit.fitting import visual_hull

    t = trimesh.creation.torus(major_radius=0.6, minor_radius=0.25)
    mesh = meshfit.Mesh(np.asarray(t.vertices, np.float32), np.asarray(t.faces, np.int32))
    cams = meshfit.sphere_rig(12, radius=3.0, width=64, height=64, fov=45.0, seed=0)
    masks = meshfit.render.render_views(mesh, cams).mask
    centre, radius = estimate_placement(cams, masks)
    hull = visual_hull(cams, masks, centre, radius, resolution=48)
    tm = trimesh.Trimesh(np.asarray(hull.vertices), np.asarray(hull.faces))
    assert tm.is_watertight and tm.euler_number == 0  # genus 1, one piece
    # The hull contains the object and is not much bigger.
    assert abs(tm.volume / t.volume - 1) < 0.35, tm.volume / t.volume
    with pytest.raises(ValueError, match="visual hull is empty"):
        visual_hull(cams, np.zeros_like(masks), centre, radius, resolution=16)


def test_fit_views_keeps_blendshape_coefficients_in_bounds():
    model = _tiny_blendshapes()
    truth = {**model.init_params(), "expression": jnp.asarray([0.9, 0.8, 0.7])}
    cams = meshfit.sphere_rig(3, radius=4.0, width=32, height=32, fov=40.0, seed=2)
    r = meshfit.render.render_views(meshfit.Mesh(np.asarray(model.vertices(truth)), model.faces), cams)
    views = meshfit.Views(cams, ["a", "b", "c"], r.rgb, r.mask, r.depth)
    cfg = {"model": "blendshapes", "bounds": {"expression": [0.0, 0.3]},
           "stages": [{"steps": 20, "lr": 0.05, "params": ["expression"], "patience": 0}]}  # fmt: skip
    result = meshfit.fit_views(FitConfig.from_dict(cfg), views, model=model, progress=False)
    expression = np.array(list(result.params["expression"].values()))
    assert expression.max() <= 0.3 + 1e-6 and expression.min() >= 0.0
    assert expression.max() > 0.29  # pushed against the bound the truth lies beyond


def test_expressions_only_rig_fits(tmp_path, capsys):
    """An artist's rig has no identity shapes: the ICT expressions with an empty identity list fit
    from 4 views to <= 0.1% of the bounding-box diagonal (issue 8: the prior was NaN before)."""
    from tests.helpers import shared

    folder = shared("ict_face/face_region")
    expressions = ["jawOpen", "eyeBlink_L", "mouthSmile_R", "browInnerUp_L", "mouthFunnel"]
    spec = {"neutral": str(folder / "neutral.obj"), "identity": [],
            "expression": [str(folder / f"{n}.obj") for n in expressions]}  # fmt: skip
    (tmp_path / "blendshapes.json").write_text(json.dumps(spec))
    model = BlendshapeModel.load(tmp_path)
    assert model.num_identity == 0
    rng = np.random.default_rng(3)
    axis = rng.normal(size=3)
    truth = {**model.init_params(), "expression": jnp.asarray(rng.uniform(0, 1, 5), jnp.float32),
             "rotation": jnp.asarray(np.radians(10) * axis / np.linalg.norm(axis), jnp.float32),
             "translation": jnp.asarray(rng.normal(0, 1.0, 3), jnp.float32)}  # fmt: skip
    posed = meshfit.Mesh(np.asarray(model.vertices(truth)), model.faces)
    meshfit.synthesize(posed, tmp_path / "data", views=4, size=(128, 128), seed=0)
    rc = main(["fit", "face_blendshapes", "--data", str(tmp_path / "data"), "--model", str(tmp_path),
               "--out", str(tmp_path / "fit"), "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    fitted = meshfit.load_mesh(tmp_path / "fit" / "mesh.obj")
    err = np.linalg.norm(np.asarray(fitted.vertices) - np.asarray(posed.vertices), axis=1).mean()
    v = np.asarray(posed.vertices)
    diagonal = float(np.linalg.norm(v.max(0) - v.min(0)))
    assert err <= 1e-3 * diagonal, (err, diagonal)
    params = json.loads((tmp_path / "fit" / "params.json").read_text())
    assert params["identity"] == {} and set(params["expression"]) == set(expressions)


def test_rigid_sequence_recovers_a_pose_per_frame():
    """A tracked object through one rig: one pose per frame (scale shared), from silhouettes and depth."""
    m = _box_with_nose()
    mesh = meshfit.Mesh(np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int32))
    rng = np.random.default_rng(1)
    cams = meshfit.sphere_rig(4, radius=4.0, width=48, height=48, fov=40.0, seed=0)
    poses, masks, depths = [], [], []
    for _ in range(3):
        R = np.asarray(meshfit.models.so3_exp(jnp.asarray(rng.normal(0, 0.15, 3), jnp.float32)))
        t = rng.normal(0, 0.05, 3)
        r = meshfit.render.render_views(meshfit.Mesh((np.asarray(m.vertices) @ R.T + t).astype(np.float32),
                                                     mesh.faces), cams, near=2.0, far=6.0)  # fmt: skip
        poses.append((R, t))
        masks.append(r.mask)
        depths.append(r.depth)
    views = meshfit.Views(cams, ["a", "b", "c", "d"], None, np.stack(masks), np.stack(depths),
                          frames=["0", "1", "2"])  # fmt: skip
    silhouette = {"steps": 120, "lr": 0.02, "patience": 0, "weights": {"silhouette": 1.0}}
    depth = {"steps": 80, "lr": 0.005, "patience": 0, "weights": {"silhouette": 1.0, "depth": 1.0}}
    config = {"model": "rigid", "stages": [silhouette, depth]}
    result = fit_views(FitConfig.from_dict(config), views, model=mesh, progress=False)
    for (R, t), frame in zip(poses, result.params["frames"]):
        M = np.asarray(frame["object_to_world"])
        err = np.degrees(
            np.linalg.norm(np.asarray(meshfit.models.so3_log(jnp.asarray(M[:3, :3] @ R.T, jnp.float32))))
        )
        assert err < 1.0, err
        np.testing.assert_allclose(M[:3, 3], t, atol=0.01)

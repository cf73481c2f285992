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
from meshfit.render import render_views
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
    from meshfit.render import antialias, interpolate, normal_image, rasterize, sh_irradiance

    v = model.vertices(truth)
    clip = cams.to_clip(v, 1.0, 8.0)
    frags = rasterize(clip, model.faces, height=48, width=48)
    linear = interpolate(truth["albedo"], frags, model.faces) * sh_irradiance(
        normal_image(v, model.faces, frags), truth["light"]
    )
    rgb = jnp.where(frags.mask[..., None], jnp.clip(linear, 1e-6, 1) ** (1 / 2.2), 0.25)
    targets = Targets(None, rgb=rgb)
    loss, terms = render(truth, targets)
    assert float(loss) < 1e-7 and set(terms) == {"photometric"}
    # With masks (the model is all there is) it antialiases the occlusion edges inside the
    # outline (the nose over a cheek): zero against the antialiased image, not the sharp one.
    mask = frags.mask.astype(jnp.float32)
    assert float(render(truth, Targets(mask, rgb=antialias(rgb, frags, clip, model.faces)))[0]) < 1e-7
    assert float(render(truth, Targets(mask, rgb=rgb))[0]) > 1e-5
    # The gradient term compares the same image: zero at the truth, growing off it.
    both = image_objective(
        model, cams, near=1.0, far=8.0, weights=LossWeights(photometric=1, photometric_gradient=1)
    )
    for t in (targets, Targets(mask, rgb=antialias(rgb, frags, clip, model.faces))):
        loss, terms = both(truth, t)
        assert float(loss) < 1e-7 and set(terms) == {"photometric", "photometric_gradient"}
    moved = {**truth, "expression": truth["expression"].at[0].add(0.3)}
    assert float(both(moved, targets)[1]["photometric_gradient"]) > 1e-4
    with pytest.raises(ValueError, match="photometric_gradient compares the photometric term's image"):
        LossWeights(silhouette=1, photometric_gradient=1)
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
    # A robust scale: a huge one is plain Charbonnier, a small one weighs the large errors less.
    plain = float(objective(off, targets)[0])
    loose = image_objective(model, cams, near=1.0, far=8.0, weights=w, photometric_scale=1e4)
    np.testing.assert_allclose(float(loose(off, targets)[0]), plain, rtol=1e-4)
    tight = image_objective(model, cams, near=1.0, far=8.0, weights=w, photometric_scale=0.01)
    assert 0 < float(tight(off, targets)[0]) < 0.9 * plain
    with pytest.raises(ValueError, match=r"fits an albedo \(params 'albedo' \[V, 3\] or 'texture'"):
        objective(model.init_params(), targets)
    with pytest.raises(ValueError, match="needs target colour images"):
        objective(truth, Targets(None, depth=jnp.zeros((3, 48, 48))))


def test_photometric_config_rules():
    with pytest.raises(ValueError, match="albedo_start: model .* is for rigid fits"):
        FitConfig.from_dict(
            {"model": "free_mesh", "albedo_start": "model", "stages": [{"weights": {"photometric": 1}}]}
        )
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
               "--set", "stages.0.steps=60", "--set", "stages.1.steps=60", "--set", "stages.2.steps=20",
               "--set", "stages.3.steps=30", "--quiet"])  # fmt: skip
    assert rc == 0
    params = json.loads((tmp_path / "fit" / "params.json").read_text())
    light = params["light"]
    assert light["model"] == "directional" and abs(np.linalg.norm(light["direction"]) - 1) < 1e-5
    mesh = meshfit.load_mesh(tmp_path / "fit" / "mesh.obj")
    assert mesh.colors is not None and mesh.colors.shape == (model.num_vertices, 3)
    history = json.loads((tmp_path / "fit" / "history.json").read_text())
    photometric = history[1]["term_history"]["photometric"]
    assert photometric[-1] < 0.7 * photometric[0]
    # the shading stages keep the albedo uniform (only the light is fitted with the shape); the
    # last stage fits a per-vertex albedo
    assert history[1]["params"] == history[2]["params"] and "albedo" not in history[1]["params"]
    assert "albedo" in history[3]["params"]


# ---- free meshes, per-camera gains, the appearance's start and outputs ------------------------


def _coloured_sphere(subdivisions: int = 3):
    """An icosphere whose linear albedo varies smoothly with position, as a Mesh."""
    from meshfit.mesh import _gpytoolbox

    v, f = _gpytoolbox().icosphere(subdivisions)
    v = np.asarray(v, np.float32)
    colours = 0.45 + 0.35 * np.stack([np.sin(2 * v[:, 0]), np.cos(3 * v[:, 1]), v[:, 2]], -1)
    return meshfit.Mesh(v, np.asarray(f, np.int32), colors=np.clip(colours, 0.05, 0.95).astype(np.float32))


_SH = {"model": "sh", "coefficients": [[1.4, 1.3, 1.2], [0.4, 0.4, 0.3], [0.3, 0.2, 0.2], [-0.2, -0.1, -0.1],
                                      [0.0] * 3, [0.0] * 3, [0.05] * 3, [0.0] * 3, [0.0] * 3]}  # fmt: skip


def test_albedo_from_views_inverts_the_render_with_gains():
    from meshfit.fitting.appearance import albedo_from_views
    from meshfit.render.lighting import light_from_json

    mesh = _coloured_sphere()
    cams = meshfit.sphere_rig(6, radius=4.0, width=96, height=96, fov=40.0, seed=1)
    gain = np.array(
        [[1.2, 1.0, 0.9], [0.8, 0.9, 1.1], [1.0] * 3, [1.1, 1.1, 1.0], [0.9, 1.0, 1.0], [1.0] * 3]
    )
    r = render_views(mesh, cams, near=2.0, far=6.0, light=_SH, gain=gain)
    albedo = albedo_from_views(mesh.vertices, mesh.faces, cams, r.rgb, near=2.0, far=6.0,
                               light=light_from_json(_SH), tolerance=0.02, gain=gain)  # fmt: skip
    err = np.abs(albedo - mesh.colors).max(-1)
    # Nearest-pixel sampling leaves little but at grazing views: most vertices within 1%.
    assert np.median(err) < 0.01 and np.percentile(err, 90) < 0.05
    # Without the gains the views disagree and the average is off.
    plain = albedo_from_views(mesh.vertices, mesh.faces, cams, r.rgb, near=2.0, far=6.0,
                              light=light_from_json(_SH), tolerance=0.02)  # fmt: skip
    assert np.median(np.abs(plain - mesh.colors).max(-1)) > 2 * np.median(err)


def test_render_views_with_a_fitted_light_checks_its_input():
    mesh = _coloured_sphere(1)
    cams = meshfit.sphere_rig(2, radius=4.0, width=16, height=16, fov=40.0)
    with pytest.raises(ValueError, match="'model' must be 'sh' or 'directional'"):
        render_views(mesh, cams, light={"model": "spot"})
    with pytest.raises(ValueError, match="'coefficients' must be finite numbers of shape"):
        render_views(mesh, cams, light={"model": "sh", "coefficients": [[1, 2, 3]]})
    with pytest.raises(ValueError, match=r"gain must be \[2, 3\]"):
        render_views(mesh, cams, light=_SH, gain=np.ones((3, 3)))
    lit = render_views(mesh, cams, light={"model": "directional", "direction": [0, 0, 1],
                                                  "colour": [0, 0, 0], "ambient": [1, 1, 1]})  # fmt: skip
    # Ambient 1 alone: the display colour is the albedo, gamma-encoded.
    m = lit.mask
    expected = render_views(mesh, cams, light=_SH).rgb  # another light: differs
    assert np.abs(lit.rgb[m] - expected[m]).max() > 0.05
    assert lit.rgb[m].min() >= 0.05 ** (1 / 2.2) - 0.01 and lit.rgb[m].max() <= 0.95 ** (1 / 2.2) + 0.01


def test_total_variation_loss_value_and_gradient():
    from meshfit.losses import total_variation_loss

    edges = jnp.asarray([[0, 1], [1, 2]], jnp.int32)
    a = jnp.asarray([[0.0, 0, 0], [0.3, 0.4, 0], [0.3, 0.4, 0]])
    eps = 0.01
    np.testing.assert_allclose(
        total_variation_loss(a, edges, eps=eps), (np.hypot(0.5, eps) - eps) / 2, rtol=1e-6
    )
    g = jax.grad(lambda x: total_variation_loss(x, edges, eps=eps))(a)
    e = jnp.zeros_like(a).at[1, 0].set(1e-3)
    fd = (total_variation_loss(a + e, edges, eps=eps) - total_variation_loss(a - e, edges, eps=eps)) / 2e-3
    np.testing.assert_allclose(g[1, 0], fd, rtol=1e-2)
    assert np.isfinite(
        np.asarray(jax.grad(lambda x: total_variation_loss(x, edges))(jnp.zeros((3, 3))))
    ).all()
    # A texture [H, W, C]: the same as its texel graph's edges (right and down neighbours).
    tex = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 5, 3)), jnp.float32)
    idx = np.arange(20).reshape(4, 5)
    grid = np.concatenate([np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1),
                           np.stack([idx[:-1].ravel(), idx[1:].ravel()], 1)])  # fmt: skip
    np.testing.assert_allclose(
        total_variation_loss(tex), total_variation_loss(tex.reshape(20, 3), jnp.asarray(grid)), rtol=1e-6
    )
    with pytest.raises(ValueError, match=r"a grid's values must be \[H, W, C\]"):
        total_variation_loss(tex[0])


def test_adam_uniform_is_uniform_for_vertices_only():
    from meshfit.fitting.loop import make_optimizer

    opt = make_optimizer("adam_uniform", 0.1)
    params = {"u": jnp.zeros((2, 3)), "albedo": jnp.zeros(2)}
    grads = {"u": jnp.asarray([[1.0, 0, 0], [0.1, 0, 0]]), "albedo": jnp.asarray([1e-3, 1.0])}
    updates, _ = opt.update(grads, opt.init(params), params)
    # u: one step size for the array (the direction of the gradient kept); albedo: per entry.
    np.testing.assert_allclose(updates["u"][:, 0], [-0.1, -0.01], rtol=1e-4)
    np.testing.assert_allclose(updates["albedo"], [-0.1, -0.1], rtol=1e-3)


def _sgd_step_sizes(stage) -> list[float]:
    """The sizes of a stage optimiser's steps on a unit gradient, one per step of the stage."""
    from meshfit.fitting.stage import stage_optimizer

    opt = stage_optimizer(stage, radius=1.0)
    params = {"x": jnp.zeros(())}
    state = opt.init(params)
    steps = []
    for _ in range(stage.steps):
        u, state = opt.update({"x": jnp.ones(())}, state, params)
        steps.append(-float(u["x"]))
    return steps


def test_lr_decay_ends_the_stage_at_its_fraction():
    from meshfit.fitting import StageConfig

    steps = _sgd_step_sizes(StageConfig(steps=5, lr=0.1, optimizer="sgd", lr_decay=0.2))
    np.testing.assert_allclose([steps[0], steps[-1]], [0.1, 0.02], rtol=1e-5)
    assert all(a > b for a, b in zip(steps, steps[1:]))
    with pytest.raises(ValueError, match=r"lr_decay is the last step's lr as a fraction of lr, in \(0, 1\]"):
        StageConfig(lr_decay=0.0)


def test_lr_warmup_rises_linearly_then_decays():
    from meshfit.fitting import StageConfig

    steps = _sgd_step_sizes(StageConfig(steps=8, lr=0.1, optimizer="sgd", lr_warmup=4, lr_decay=0.5))
    decay = [0.5 + 0.25 * (1 + np.cos(np.pi * i / 7)) for i in range(8)]
    ramp = [min((i + 1) / 4, 1.0) for i in range(8)]
    np.testing.assert_allclose(steps, 0.1 * np.asarray(decay) * ramp, rtol=1e-5)
    with pytest.raises(ValueError, match=r"lr_warmup is a number of steps \(>= 0\); got -1"):
        StageConfig(lr_warmup=-1)


def _rgb_dataset(tmp_path, mesh, *, views=6, size=64, gain=None):
    """meshfit's own render of ``mesh`` (vertex albedo under _SH light, optional per-camera gains)
    as a dataset folder with masks."""
    from meshfit.io import save_cameras, write_views

    cams = meshfit.sphere_rig(views, radius=4.0, width=size, height=size, fov=40.0, seed=4)
    r = render_views(mesh, cams, near=2.0, far=6.0, light=_SH, gain=gain)
    names = [f"{i:03d}" for i in range(views)]
    out = tmp_path / "data"
    write_views(out, names, rgb=r.rgb, mask=r.mask)
    save_cameras(out / "cameras.json", cams, names=names, near=2.0, far=6.0)
    return out


def test_per_camera_gains_are_fitted_and_written(tmp_path):
    mesh = _coloured_sphere()
    truth = np.array(
        [[1.3, 1.1, 1.0], [0.8, 0.9, 1.0], [1.0, 1.0, 1.0], [0.9, 1.0, 1.1], [1.0] * 3, [1.0] * 3]
    )
    data = _rgb_dataset(tmp_path, mesh, gain=truth)
    config = FitConfig.from_dict(
        {
            "model": "free_mesh",
            "gain": True,
            "stages": [
                {
                    "steps": 150,
                    "lr": 0.02,
                    "params": ["albedo", "light", "gain"],
                    "weights": {"photometric": 1.0},
                }
            ],
        }
    )
    start = meshfit.Mesh(mesh.vertices, mesh.faces)
    result = meshfit.fit_views(config, meshfit.load_views(data), model=start, progress=False)
    fitted = np.asarray(result.params["gain"])
    np.testing.assert_allclose(fitted.mean(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(fitted, truth / truth.mean(0), atol=0.02)
    with pytest.raises(ValueError, match="gain: the per-camera gains are fitted by the photometric term"):
        FitConfig.from_dict({"model": "free_mesh", "gain": True, "stages": [{"weights": {"silhouette": 1}}]})


def test_free_mesh_photometric_fit_through_the_cli(tmp_path):
    """The shipped free_mesh_rgb recipe, shortened, on a small coloured shape: the fitted albedo
    goes to mesh.obj, the light to params.json, the PSNR of the re-render to metrics.json, the
    report shows the colour difference, and the photometric stage lowers its own error."""
    mesh = _coloured_sphere(4)
    stretched = meshfit.Mesh(np.asarray(mesh.vertices) * [1.0, 0.7, 0.85], mesh.faces, colors=mesh.colors)
    data = _rgb_dataset(tmp_path, stretched)
    out = tmp_path / "fit"
    steps = ["--set", "stages.0.steps=40", "--set", "stages.1.steps=60", "--set", "stages.2.steps=10",
             "--set", "stages.1.views_per_step=4", "--set", "stages.2.views_per_step=4",
             "--set", "stages.2.remesh=0.1"]  # fmt: skip
    assert main(["fit", "free_mesh_rgb", "--data", str(data), "--out", str(out), "--quiet", *steps]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["light"]["model"] == "sh"
    fitted = meshfit.load_mesh(out / "mesh.obj")
    assert fitted.colors is not None and fitted.colors.shape == (params["vertices"], 3)
    history = json.loads((out / "history.json").read_text())
    photometric = history[1]["term_history"]["photometric"]
    assert photometric[-1] < 0.8 * photometric[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"]["rgb_psnr"] > 22.0
    assert "colour difference" in (out / "report.html").read_text()


# ---- background plates: fits without masks -----------------------------------------------------


def _plate_image(path):
    """A busy backdrop: coloured stripes and blobs, as an 8-bit PNG."""
    from meshfit.io import write_image

    y, x = np.mgrid[0:96, 0:128] / 16.0
    img = 0.5 + 0.4 * np.stack([np.sin(x + 0.5 * y), np.cos(0.7 * y), np.sin(0.3 * x * y)], -1)
    write_image(path, np.clip(img, 0, 1))
    return path


def test_synth_plate_writes_background_and_renders_over_it(tmp_path):
    mesh = _coloured_sphere(2)
    plate = _plate_image(tmp_path / "backdrop.png")
    out = meshfit.synthesize(mesh, tmp_path / "d", views=3, size=(40, 32), plate=plate)
    views = meshfit.load_views(out)
    assert views.background.shape == (3, 32, 40, 3)
    outside = ~views.mask
    np.testing.assert_array_equal(views.rgb[outside], views.background[outside])
    assert np.abs(views.background[0] - views.background[1]).max() > 0.1  # another crop per view
    assert json.loads((out / "scene.json").read_text())["plate"] == str(plate)
    rc = main(["synth", str(tmp_path / "d" / "mesh.obj"), "--out", str(tmp_path / "e"), "--plate", str(plate),
               "--background", "#ffffff"])  # fmt: skip
    assert rc == 2 and not (tmp_path / "e").exists()
    # A plate of another size than its camera, or a missing one, is a named dataset error.
    from meshfit.io import write_image

    write_image(out / "background" / "001.png", np.zeros((8, 8, 3)))
    with pytest.raises(meshfit.io.DatasetError, match=r"background/001.png is 8x8 but its camera"):
        meshfit.load_views(out)
    (out / "background" / "001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"background has no file for view '001'"):
        meshfit.load_views(out)


def test_free_mesh_fit_against_background_plates_without_masks(tmp_path):
    """No mask/ folder, but each view's clean plate: the object is placed from where the views
    differ from their plates, and the photometric term (the render laid over the plate,
    antialiased) fits the outline and the colour from a sphere; the shipped free_mesh_plate
    config, shortened."""
    mesh = _coloured_sphere(4)
    stretched = meshfit.Mesh(np.asarray(mesh.vertices) * [1.0, 0.7, 0.85], mesh.faces, colors=mesh.colors)
    data = meshfit.synthesize(stretched, tmp_path / "data", views=6, size=(64, 64), seed=4,
                              plate=_plate_image(tmp_path / "backdrop.png"))  # fmt: skip
    shutil.rmtree(data / "mask")
    shutil.rmtree(data / "depth")
    out = tmp_path / "fit"
    steps = ["--set", "stages.0.steps=40", "--set", "stages.1.steps=60", "--set", "stages.2.steps=10",
             "--set", "stages.1.views_per_step=4", "--set", "stages.2.views_per_step=4",
             "--set", "stages.2.remesh=0.1", "--set", "init.shape=sphere"]  # fmt: skip
    assert main(["fit", "free_mesh_plate", "--data", str(data), "--out", str(out), "--quiet", *steps,
                 "--gt", str(data / "mesh.obj")]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert "mask_iou_mean" not in metrics["images"] and metrics["images"]["rgb_psnr"] > 22.0
    assert metrics["ground_truth"]["rms_point_to_mesh"] < 0.025
    history = json.loads((out / "history.json").read_text())
    photometric = history[0]["term_history"]["photometric"]  # the sphere grows to the outline
    assert photometric[-1] < 0.3 * photometric[0]
    # What cannot work without masks says so, and leaves nothing behind.
    rc = main(["fit", "free_mesh_rgb", "--data", str(data), "--out", str(tmp_path / "x"), "--quiet",
               "--set", "plates=true"])  # fmt: skip
    assert rc == 2 and not (tmp_path / "x").exists()
    rc = main(["fit", "free_mesh_plate", "--data", str(data), "--out", str(tmp_path / "x"), "--quiet",
               "--set", "plates=false"])  # fmt: skip
    assert rc == 2 and not (tmp_path / "x").exists()
    shutil.rmtree(data / "background")
    rc = main(["fit", "free_mesh_plate", "--data", str(data), "--out", str(tmp_path / "y"), "--quiet"])
    assert rc == 2 and not (tmp_path / "y").exists()


def test_free_mesh_rgb_keys_its_masks_from_background_plates(tmp_path, capsys):
    """plates: key (free_mesh_rgb): without a mask/ folder the plates key the masks, as
    ``meshfit import --plates`` does; they carve the visual hull and are the silhouettes'
    targets, and the photometric term compares the surface's interior, as with given masks."""
    from meshfit.fitting.recipes import _plate_masks

    mesh = _coloured_sphere(4)
    stretched = meshfit.Mesh(np.asarray(mesh.vertices) * [1.0, 0.7, 0.85], mesh.faces, colors=mesh.colors)
    data = meshfit.synthesize(stretched, tmp_path / "data", views=6, size=(64, 64), seed=4,
                              plate=_plate_image(tmp_path / "backdrop.png"))  # fmt: skip
    views = meshfit.load_views(data)
    keyed = _plate_masks(views._replace(mask=None))
    iou = (keyed & views.mask).sum((1, 2)) / (keyed | views.mask).sum((1, 2))
    assert keyed.shape == views.mask.shape and iou.min() > 0.95
    shutil.rmtree(data / "depth")
    steps = ["--set", "stages.0.steps=40", "--set", "stages.1.steps=60", "--set", "stages.2.steps=10",
             "--set", "stages.1.views_per_step=4", "--set", "stages.2.views_per_step=null",
             "--set", "stages.2.remesh=0.1", "--set", "init.hull_resolution=48",
             "--set", "init.hull_edge=0.1"]  # fmt: skip

    shutil.rmtree(data / "mask")
    out = tmp_path / "fit"
    assert main(["fit", "free_mesh_rgb", "--data", str(data), "--out", str(out), "--quiet", *steps,
                 "--gt", str(data / "mesh.obj")]) == 0  # fmt: skip
    # Seen 0.0236, as with the rendered masks (at 64^2 the keyed ones are the same pixels).
    assert json.loads((out / "metrics.json").read_text())["ground_truth"]["rms_point_to_mesh"] < 0.03
    history = json.loads((out / "history.json").read_text())
    assert "silhouette" in history[0]["term_history"]  # the keyed masks are its targets
    metrics = json.loads((out / "metrics.json").read_text())  # and what the output measures
    assert metrics["masks"] == "keyed from the background plates"
    assert metrics["images"]["mask_iou_min"] > 0.9 and metrics["images"]["rgb_psnr"] > 22.0
    # plates: true weighs the silhouette against masks that are not there: a named error.
    capsys.readouterr()
    rc = main(["fit", "free_mesh_rgb", "--data", str(data), "--out", str(tmp_path / "x"), "--quiet", *steps,
               "--set", "plates=true"])  # fmt: skip
    assert rc == 2 and not (tmp_path / "x").exists()
    assert "plates: key keys masks from its background/ plates" in capsys.readouterr().err
    rc = main(["fit", "free_mesh_rgb", "--data", str(data), "--out", str(tmp_path / "x"), "--quiet", *steps,
               "--set", "plates=false"])  # fmt: skip
    assert rc == 2 and "plates: false leaves its background/ plates unused" in capsys.readouterr().err
    # A sequence's frames are keyed one by one against the rig's plates.
    seq = views._replace(rgb=np.stack([views.rgb, views.background]), frames=["0000", "0001"], mask=None)
    with pytest.raises(ValueError, match=r"frame 0001: views \['000', '001', .*\] do not differ"):
        _plate_masks(seq)
    seq = views._replace(rgb=np.stack([views.rgb, views.rgb[::-1]]), frames=["0000", "0001"], mask=None)
    np.testing.assert_array_equal(_plate_masks(seq)[0], keyed)


def test_free_mesh_fit_in_front_of_a_uniform_backdrop_fits_its_colour(tmp_path):
    """No masks and no plates, a uniform backdrop (a studio's paper): background_colour fits its
    colour per camera, started at the views' border pixels, places the object from where the
    views differ from it, and fits the outline from colour, as plates do."""
    from meshfit.io import write_image

    mesh = _coloured_sphere(4)
    stretched = meshfit.Mesh(np.asarray(mesh.vertices) * [1.0, 0.7, 0.85], mesh.faces, colors=mesh.colors)
    backdrop = np.array([0.35, 0.55, 0.3])
    write_image(tmp_path / "paper.png", np.broadcast_to(backdrop, (32, 32, 3)))
    data = meshfit.synthesize(stretched, tmp_path / "data", views=6, size=(64, 64), seed=4,
                              plate=tmp_path / "paper.png")  # fmt: skip
    for folder in ("mask", "depth", "background"):
        shutil.rmtree(data / folder)
    out = tmp_path / "fit"
    steps = ["--set", "stages.0.steps=40", "--set", "stages.1.steps=60", "--set", "stages.2.steps=10",
             "--set", "stages.1.views_per_step=4", "--set", "stages.2.views_per_step=4",
             "--set", "stages.2.remesh=0.1", "--set", "init.shape=sphere"]  # fmt: skip
    rc = main(["fit", "free_mesh_plate", "--data", str(data), "--out", str(out), "--quiet", *steps,
               "--set", "background_colour=true", "--gt", str(data / "mesh.obj")])  # fmt: skip
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"]["rgb_psnr"] > 22.0
    assert metrics["ground_truth"]["rms_point_to_mesh"] < 0.025
    colour = np.asarray(json.loads((out / "params.json").read_text())["background_colour"])
    assert colour.shape == (6, 3)
    np.testing.assert_allclose(colour, np.broadcast_to(backdrop, (6, 3)), atol=0.02)
    # Without the flag the same data cannot be placed; with plates it is their job.
    rc = main(["fit", "free_mesh_plate", "--data", str(data), "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2 and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="background_colour: the backdrop.s colour is fitted by"):
        FitConfig.from_dict({"model": "free_mesh", "background_colour": True, "stages": [{}]})


def test_plates_need_the_photometric_term_and_an_object():
    from meshfit.fitting.recipes import _check_without_masks, _plate_masks
    from meshfit.io import Views

    cams = meshfit.sphere_rig(2, radius=4.0, width=16, height=16, fov=40.0)
    plate = np.full((2, 16, 16, 3), 0.5, np.float32)
    views = Views(cams, ["a", "b"], plate.copy(), None, None, background=plate)
    config = FitConfig.from_dict({"model": "free_mesh", "stages": [{"weights": {"silhouette": 1.0}}]})
    with pytest.raises(ValueError, match=r"weighs the silhouette but the dataset has no mask/ folder"):
        _check_without_masks(config, views, None)
    config = FitConfig.from_dict({"model": "free_mesh", "stages": [{"weights": {"laplacian": 1.0}}]})
    with pytest.raises(ValueError, match="with background/ plates the photometric term fits the outline"):
        _check_without_masks(config, views, None)
    config = FitConfig.from_dict({"model": "rigid", "stages": [{"weights": {"depth": 1.0}}]})
    with pytest.raises(ValueError, match="a rigid fit needs masks"):
        _check_without_masks(config, views, None)
    with pytest.raises(ValueError, match=r"views \['a', 'b'\] do not differ from their background plates"):
        _plate_masks(views)
    with pytest.raises(ValueError, match=r"config\.plates: expected true or false or 'key'; got 'kee'"):
        FitConfig.from_dict({"model": "free_mesh", "plates": "kee", "stages": [{}]})
    config = FitConfig.from_dict(
        {"model": "free_mesh", "plates": "key", "stages": [{"weights": {"silhouette": 1}}]}
    )
    with pytest.raises(ValueError, match=r"no mask/ folder nor background/ plates to key them from"):
        _check_without_masks(config, views._replace(background=None), None)


def test_rigid_pose_by_colour_where_the_silhouette_says_nothing(tmp_path):
    """A coloured sphere turned 0.3 rad: every silhouette is the same circle, so only colour
    can find the rotation; with the known mesh's colours as its albedo (albedo_start: model)
    and the light fitted, the photometric term does."""
    from meshfit.models import so3_exp

    mesh = _coloured_sphere(4)
    axis_angle = np.array([0.1, -0.25, 0.15], np.float32)
    R = np.asarray(so3_exp(jnp.asarray(axis_angle)))
    turned = meshfit.Mesh(np.asarray(mesh.vertices) @ R.T, mesh.faces, colors=mesh.colors)
    data = _rgb_dataset(tmp_path, turned, views=4, size=64)
    config = FitConfig.from_dict({"model": "rigid", "albedo_start": "model", "stages": [
        {"steps": 40, "lr": 0.02, "params": ["light"], "weights": {"photometric": 1.0}},
        {"steps": 150, "lr": 0.05, "lr_decay": 0.1, "params": ["rotation", "translation", "light"],
         "weights": {"photometric": 1.0, "silhouette": 1.0}}]})  # fmt: skip
    result = meshfit.fit_views(config, meshfit.load_views(data), model=mesh, progress=False)
    M = np.asarray(result.params["object_to_world"])[:3, :3]
    angle = np.degrees(np.arccos(np.clip((np.trace(M @ R.T) - 1) / 2, -1, 1)))
    assert angle < 1.0, (
        f"rotation off by {angle:.2f} deg (started {np.degrees(np.linalg.norm(axis_angle)):.0f})"
    )
    assert result.params["light"]["model"] == "sh"
    with pytest.raises(ValueError, match="albedo_start: model needs a mesh with vertex colours"):
        meshfit.fit_views(config, meshfit.load_views(data), model=meshfit.Mesh(mesh.vertices, mesh.faces),
                          progress=False)  # fmt: skip


def test_fused_shading_kernel_matches_the_jax_path():
    """The native fused shading + Charbonnier kernel against its pure-JAX twin: value and the
    three gradients, with zero normals, zero weights and colours clipped at both ends; one
    gradient entry of each against central differences; wrong shapes are named."""
    from meshfit.render.lighting import sh_charbonnier_error
    from tests.helpers import require_native

    require_native()
    rng = np.random.default_rng(3)
    shape = (2, 17, 23)
    albedo = jnp.asarray(rng.uniform(0.0, 1.2, shape + (3,)), jnp.float32)
    normals = (
        jnp.asarray(rng.normal(size=shape + (3,)), jnp.float32).at[0, 1, 2].set(0.0).at[1, 0, 0].set(0.0)
    )
    target = jnp.asarray(rng.uniform(0, 1, shape + (3,)), jnp.float32)
    weight = jnp.asarray(rng.uniform(size=shape) > 0.2, jnp.float32).at[0, 1, 2].set(1.0)
    coeffs = jnp.asarray(rng.normal(0, 0.4, (9, 3)), jnp.float32).at[0].add(1.0)
    args = (albedo, normals, coeffs)

    def f(backend):
        return lambda a, n, c: sh_charbonnier_error(a, n, c, target, weight, backend=backend)

    np.testing.assert_allclose(f("native")(*args), f("jax")(*args), rtol=1e-5)
    grads = {b: jax.grad(f(b), argnums=(0, 1, 2))(*args) for b in ("native", "jax")}
    for g_native, g_jax in zip(grads["native"], grads["jax"]):
        np.testing.assert_allclose(g_native, g_jax, rtol=1e-4, atol=1e-4 * float(jnp.abs(g_jax).max()))
    # Central differences on a few pixels (a sum over every pixel would drown them in float32).
    few = jnp.zeros(shape).at[1, 3, 4].set(1.0).at[0, 5, 6].set(1.0)

    def g(a, n, c):
        return sh_charbonnier_error(a, n, c, target, few, backend="native")

    grads_few = jax.grad(g, argnums=(0, 1, 2))(*args)
    h = 1e-3
    top = np.unravel_index(int(jnp.argmax(jnp.abs(grads_few[2]))), (9, 3))
    picks = [(1, 3, 4, int(jnp.argmax(jnp.abs(grads_few[0][1, 3, 4])))),
             (0, 5, 6, int(jnp.argmax(jnp.abs(grads_few[1][0, 5, 6])))),
             tuple(int(k) for k in top)]  # fmt: skip
    for i, index in enumerate(picks):
        e = jnp.zeros_like(args[i]).at[index].set(h)
        plus = [a + e if j == i else a for j, a in enumerate(args)]
        minus = [a - e if j == i else a for j, a in enumerate(args)]
        fd = (g(*plus) - g(*minus)) / (2 * h)
        assert abs(float(fd)) > 1e-3
        np.testing.assert_allclose(grads_few[i][index], fd, rtol=0.02)
    with pytest.raises(Exception, match="albedo must be weight's dimensions"):
        sh_charbonnier_error(
            albedo[:, :5], normals, coeffs, target, weight, backend="native"
        ).block_until_ready()


def test_colour_kernel_matches_the_jax_path():
    """The native colour kernel (the plate path's render) against lit_colour: image and the
    gradients of a weighted sum of it, zero normals and clipping included; wrong shapes named."""
    from meshfit.render.lighting import sh_colour
    from tests.helpers import require_native

    require_native()
    rng = np.random.default_rng(4)
    shape = (2, 9, 11, 3)
    albedo = jnp.asarray(rng.uniform(0.0, 1.2, shape), jnp.float32)
    normals = jnp.asarray(rng.normal(size=shape), jnp.float32).at[1, 2, 3].set(0.0)
    coeffs = jnp.asarray(rng.normal(0, 0.4, (9, 3)), jnp.float32).at[0].add(1.0)
    probe = jnp.asarray(rng.normal(size=shape), jnp.float32)
    args = (albedo, normals, coeffs)
    images = {b: sh_colour(*args, backend=b) for b in ("native", "jax")}
    np.testing.assert_allclose(images["native"], images["jax"], atol=1e-6)
    grads = {b: jax.grad(lambda *a, b=b: jnp.sum(sh_colour(*a, backend=b) * probe), argnums=(0, 1, 2))(*args)
             for b in ("native", "jax")}  # fmt: skip
    for g_native, g_jax in zip(grads["native"], grads["jax"]):
        np.testing.assert_allclose(g_native, g_jax, rtol=1e-4, atol=1e-4 * float(jnp.abs(g_jax).max()))
    with pytest.raises(Exception, match="normal must have albedo's dimensions"):
        sh_colour(albedo, normals[:, :3], coeffs, backend="native").block_until_ready()


def _textured_spot_dataset(tmp_path, views=6, size=64):
    """Spot (the shared, textured one) turned a little, rendered with its texture under _SH light,
    and held-out views of it; returns (mesh, data folder, R, held-out cameras and images)."""
    from meshfit.io import save_cameras, write_views
    from meshfit.models import so3_exp
    from tests.helpers import shared

    spot = shared("spot")
    mesh = meshfit.load_mesh(spot, texture=spot.with_name("spot_texture.png"))
    R = np.asarray(so3_exp(jnp.asarray([0.05, -0.08, 0.04], jnp.float32)))
    posed = meshfit.Mesh(np.asarray(mesh.vertices) @ R.T, mesh.faces, uvs=mesh.uvs, uv_faces=mesh.uv_faces,
                         texture=mesh.texture)  # fmt: skip
    cams = meshfit.sphere_rig(views, radius=3.5, width=size, height=size, fov=40.0, seed=4)
    r = render_views(posed, cams, near=1.5, far=6.0, textured=True, light=_SH)
    names = [f"{i:03d}" for i in range(views)]
    out = tmp_path / "data"
    write_views(out, names, rgb=r.rgb, mask=r.mask)
    save_cameras(out / "cameras.json", cams, names=names, near=1.5, far=6.0)
    held = meshfit.sphere_rig(4, radius=3.5, width=size, height=size, fov=40.0, seed=9)
    return mesh, out, R, held, render_views(posed, held, near=1.5, far=6.0, textured=True, light=_SH).rgb


def _texture_config(appearance: str) -> dict:
    albedo = "texture" if appearance == "texture" else "albedo"
    return {"model": "rigid", "appearance": appearance, "texture_size": 64, "stages": [
        {"name": "appearance", "steps": 40, "lr": 0.05, "params": [albedo, "light"],
         "weights": {"photometric": 1.0}},
        {"name": "pose", "steps": 150, "lr": 0.02, "lr_decay": 0.1,
         "weights": {"photometric": 1.0, "silhouette": 1.0, "albedo_tv": 0.001}}]}  # fmt: skip


def test_rigid_fit_with_a_uv_texture(tmp_path, capsys):
    """appearance: texture: Spot's albedo as a 64^2 UV texture (baked from the views, then fitted
    with the pose and the light) renders held-out views closer to the truth than a per-vertex
    albedo does (Spot's spots are sharper than its 2,930 vertices), and finds the pose better;
    ``meshfit fit`` writes mesh.obj with its material and texture."""
    import yaml

    mesh, data, R, held, truth = _textured_spot_dataset(tmp_path, views=8)
    psnr, angle = {}, {}
    for appearance in ("texture", "vertex"):
        config = FitConfig.from_dict(_texture_config(appearance))
        result = meshfit.fit_views(config, meshfit.load_views(data), model=mesh, progress=False)
        M = np.asarray(result.params["object_to_world"])[:3, :3]
        angle[appearance] = np.degrees(np.arccos(np.clip((np.trace(M @ R.T) - 1) / 2, -1, 1)))
        fit = render_views(result.mesh, held, near=1.5, far=6.0, textured=appearance == "texture",
                           light=result.params["light"]).rgb  # fmt: skip
        psnr[appearance] = 10 * np.log10(1 / np.mean((fit - truth) ** 2))
    assert result.mesh.texture is None  # the vertex fit
    # Seen 25.6 dB and 0.25 deg against 24.5 dB and 0.70 deg (started 5.8 deg off; before the
    # occlusion edges inside the outline were antialiased, 29.5 dB / 0.11 deg against 19.1 dB /
    # 2.5 deg: the antialiased edges pin the per-vertex fit's pose).
    assert psnr["texture"] > psnr["vertex"] + 0.5 and psnr["texture"] > 24.5, psnr
    assert angle["texture"] < 0.5 and angle["texture"] < angle["vertex"], angle
    # Through the CLI: the texture is written beside mesh.obj and read back with it.
    cfg = tmp_path / "texture.yaml"
    cfg.write_text(yaml.safe_dump({**_texture_config("texture"), "texture_size": 32}))
    model = tmp_path / "spot.obj"
    meshfit.save_mesh(model, mesh)
    rc = main(["fit", str(cfg), "--data", str(data), "--model", str(model), "--out", str(tmp_path / "fit"),
               "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    for name in ("mesh.obj", "mesh.mtl", "mesh.png", "report.html"):
        assert (tmp_path / "fit" / name).is_file(), name
    fitted = meshfit.load_mesh(tmp_path / "fit" / "mesh.obj")
    assert fitted.texture.shape[:2] == (32, 32) and fitted.uvs is not None
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert metrics["images"]["rgb_psnr"] > 22.0  # the textured render (32^2 texels), whole images


def test_blendshape_fit_with_a_uv_texture(tmp_path, capsys):
    """A blendshape model with texture coordinates (Spot as the neutral, two shape deltas):
    appearance: texture fits its albedo as a UV texture, which renders held-out views closer to
    the truth than a per-vertex albedo does; ``meshfit fit`` writes it beside mesh.obj."""
    import yaml

    from meshfit.io import save_cameras, write_views
    from meshfit.models import BlendshapeModel
    from tests.helpers import shared

    spot = shared("spot")
    mesh = meshfit.load_mesh(spot, texture=spot.with_name("spot_texture.png"))
    v = np.asarray(mesh.vertices)
    c = v.mean(0)
    deltas = np.stack([(v - c) * [1.0, 0.0, 0.0],  # longer
                       0.5 * np.exp(-np.sum((v - v[np.argmax(v[:, 1])]) ** 2, 1, keepdims=True) / 0.05)
                       * [0.0, 1.0, 0.0]]).astype(np.float32)  # a hump on top  # fmt: skip
    model = BlendshapeModel(jnp.asarray(v), jnp.asarray(mesh.faces, jnp.int32), jnp.zeros((0,) + v.shape),
                            jnp.asarray(deltas), (), ("long", "hump"), uvs=jnp.asarray(mesh.uvs),
                            uv_faces=jnp.asarray(mesh.uv_faces, jnp.int32))  # fmt: skip
    truth = np.array([0.6, 0.4], np.float32)
    # A 64^2 texture, which the fitted one can hold (Spot's own 1024^2 would not fit in it).
    small = np.asarray(jax.image.resize(jnp.asarray(mesh.texture), (64, 64, 3), "linear", antialias=True))
    posed = meshfit.Mesh(v + np.einsum("e,evd->vd", truth, deltas), mesh.faces, uvs=mesh.uvs,
                         uv_faces=mesh.uv_faces, texture=small)  # fmt: skip
    cams = meshfit.sphere_rig(8, radius=3.5, width=64, height=64, fov=40.0, seed=4)
    r = render_views(posed, cams, near=1.5, far=6.0, textured=True, light=_SH)
    data = tmp_path / "data"
    write_views(data, [f"{i:03d}" for i in range(8)], rgb=r.rgb, mask=r.mask)
    save_cameras(data / "cameras.json", cams, names=[f"{i:03d}" for i in range(8)], near=1.5, far=6.0)
    held = meshfit.sphere_rig(4, radius=3.5, width=64, height=64, fov=40.0, seed=9)
    held_truth = render_views(posed, held, near=1.5, far=6.0, textured=True, light=_SH).rgb

    def config(appearance, size=64):
        albedo = "texture" if appearance == "texture" else "albedo"
        return {"model": "blendshapes", "appearance": appearance, "texture_size": size, "stages": [
            {"name": "shape", "steps": 100, "lr": 0.02, "weights": {"silhouette": 1.0}},
            {"name": "appearance", "steps": 60, "lr": 0.05, "params": [albedo, "light"],
             "weights": {"photometric": 1.0, "albedo_tv": 0.001}}]}  # fmt: skip

    psnr, error = {}, {}
    for appearance in ("texture", "vertex"):
        result = meshfit.fit_views(FitConfig.from_dict(config(appearance)), meshfit.load_views(data),
                                   model=model, progress=False)  # fmt: skip
        error[appearance] = np.abs(np.array(list(result.params["expression"].values())) - truth).max()
        fit = render_views(result.mesh, held, near=1.5, far=6.0, textured=appearance == "texture",
                           light=result.params["light"]).rgb  # fmt: skip
        psnr[appearance] = 10 * np.log10(1 / np.mean((fit - held_truth) ** 2))
    assert result.mesh.texture is None and result.mesh.colors is not None  # the vertex fit
    # Seen 24.9 dB against 24.0 dB; the coefficients within 0.04 (from the silhouettes at 64^2).
    assert psnr["texture"] > psnr["vertex"] + 0.5, psnr
    assert error["texture"] < 0.06, error
    # Through the CLI, the model as an .npz (its UVs kept): mesh.obj, its material and texture.
    model.save(tmp_path / "model.npz")
    cfg = tmp_path / "texture.yaml"
    cfg.write_text(yaml.safe_dump(config("texture", 32)))
    rc = main(["fit", str(cfg), "--data", str(data), "--model", str(tmp_path / "model.npz"),
               "--out", str(tmp_path / "fit"), "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    fitted = meshfit.load_mesh(tmp_path / "fit" / "mesh.obj")
    assert fitted.texture.shape[:2] == (32, 32)
    np.testing.assert_allclose(np.asarray(fitted.uvs)[fitted.uv_faces], np.asarray(mesh.uvs)[mesh.uv_faces],
                               atol=1e-6)  # fmt: skip
    # A model without texture coordinates cannot take a texture: a named error, nothing written.
    bare = tmp_path / "bare.npz"
    BlendshapeModel(model.neutral, model.faces, model.identity, model.expression).save(bare)
    rc = main(["fit", str(cfg), "--data", str(data), "--model", str(bare), "--out", str(tmp_path / "x"),
               "--quiet"])  # fmt: skip
    assert rc == 2 and not (tmp_path / "x").exists()
    assert (
        "texture needs texture coordinates; the blendshape model's neutral has none"
        in capsys.readouterr().err
    )


def test_texture_appearance_errors_name_the_problem(tmp_path):
    from meshfit.config import ConfigError

    with pytest.raises(ConfigError, match="appearance: texture needs texture coordinates.*free_mesh"):
        FitConfig.from_dict({"model": "free_mesh", "appearance": "texture", "stages": [{}]})
    with pytest.raises(ConfigError, match=r"stages\[0\]: 'albedo' is not fitted with appearance: texture"):
        FitConfig.from_dict({"model": "rigid", "appearance": "texture", "stages": [
            {"params": ["albedo"], "weights": {"photometric": 1.0}}]})  # fmt: skip
    with pytest.raises(ConfigError, match="texture_size must be in 8..4096"):
        FitConfig.from_dict({"model": "rigid", "appearance": "texture", "texture_size": 4, "stages": [{}]})
    mesh, data, _, _, _ = _textured_spot_dataset(tmp_path, views=2, size=32)
    config = FitConfig.from_dict({**_texture_config("texture"), "albedo_start": "model"})
    views = meshfit.load_views(data)
    with pytest.raises(ValueError, match="appearance: texture needs texture coordinates; the mesh has none"):
        meshfit.fit_views(config, views, model=meshfit.Mesh(mesh.vertices, mesh.faces), progress=False)
    tiled = meshfit.Mesh(mesh.vertices, mesh.faces, uvs=np.asarray(mesh.uvs) * 3, uv_faces=mesh.uv_faces)
    with pytest.raises(ValueError, match="tiled or UDIM layouts are not supported"):
        meshfit.fit_views(config, views, model=tiled, progress=False)
    with pytest.raises(ValueError, match="albedo_start: model needs the mesh's texture image"):
        bare = meshfit.Mesh(mesh.vertices, mesh.faces, uvs=mesh.uvs, uv_faces=mesh.uv_faces)
        meshfit.fit_views(config, views, model=bare, progress=False)

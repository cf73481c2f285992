"""Amortized fitting: configs, the canonical parameterisation, decoding, training inputs against
pyrender, training (loss decreases, resume after kill -9 repeats an uninterrupted run, sharded =
one device) and predict (fit's outputs, clear errors on bad runs, rigs and models)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meshfit
from meshfit.amortize import Regressor, TrainConfig, train
from meshfit.amortize.config import AppearanceConfig
from meshfit.amortize.inputs import image_inputs, render_inputs
from meshfit.amortize.network import VIEW_OUTPUTS, decode
from meshfit.amortize.task import Task, six_d_to_matrix
from meshfit.amortize.train import pose_errors
from meshfit.config import ConfigError
from meshfit.fitting import shipped_configs
from meshfit.models import BlendshapeModel, RigidModel, so3_exp
from tests.helpers import require_native

REPO = Path(__file__).resolve().parents[1]


def _blob() -> meshfit.Mesh:
    """A small lopsided closed mesh (no symmetry: its pose is defined)."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=2)
    v = np.asarray(s.vertices) * [1.0, 0.6, 0.4]
    v[:, 0] += 0.3 * np.maximum(v[:, 1], 0) ** 2  # a bent top
    return meshfit.Mesh(v.astype(np.float32), np.asarray(s.faces, np.int32))


def _blend_model() -> BlendshapeModel:
    m = _blob()
    v = np.asarray(m.vertices)
    ident = np.stack([0.1 * v * [1, 0, 0], 0.1 * v * [0, 1, 0]])
    expr = np.stack([0.1 * np.stack([np.zeros(len(v)), np.maximum(v[:, 1], 0), np.zeros(len(v))], 1)])
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return BlendshapeModel(m.vertices, m.faces, f32(ident), f32(expr), ("wide", "tall"), ("lift",))


def _rig(size: int = 64) -> meshfit.Camera:
    return meshfit.sphere_rig(3, radius=4.0, width=size, height=size, fov=40, seed=2)


# Positions far off and turns small: a pose a few steps can learn (the loss halves in 24 steps).
TINY = {
    "steps": 24, "batch": 4, "resolution": 16, "inputs": ["mask", "grey"],
    "sampling": {"translation": 0.5, "rotation": 10},
    "network": {"width": 4, "stages": 2, "convs_per_stage": 1, "features": 16},
    "checkpoint": {"every": 8, "keep": 2}, "validation": {"samples": 4}, "log_every": 4,
    "optim": {"lr": 0.01, "warmup": 2},
}  # fmt: skip


# ---- configs ----------------------------------------------------------------------------------


def test_shipped_configs_load():
    assert {"amortize_face", "amortize_face_small", "amortize_rigid"} <= set(shipped_configs("train"))
    for name in shipped_configs("train"):
        cfg = TrainConfig.load(REPO / "configs" / f"{name}.yaml")
        assert cfg.resolution % 2**cfg.network.stages == 0
    rig, names = meshfit.load_cameras(REPO / "configs" / "rig_face4.json")
    assert rig.batch_shape == (4,) and len(names) == 4


@pytest.mark.parametrize(
    "data, match",
    [
        ({"model": "rigid", "stepz": 3}, r"config\.stepz: unknown key"),
        ({"model": "rigid", "inputs": ["mask", "colour"]}, "unknown channels"),
        ({"model": "rigid", "resolution": 40}, "multiple of 2"),
        ({"model": "rigid", "bounds": {"expression": [0, 1]}}, "only blendshape"),
        ({"model": "rigid", "sampling": {"rotation": 720}}, "0..180"),
        ({"model": "rigid", "loss": {"vertices": 0}}, "nothing to train"),
        ({"model": "rigid", "loss": {"depth": 1}}, "add depth to inputs"),
        ({"model": "blendshapes", "sampling": {"expression": [1, 0]}}, "low <= high"),
        ({"model": "rigid", "optim": {"lr": -1}}, "lr must be"),
        ({"model": "rigid", "correction_faces": 500}, "need correction_passes > 0"),
        ({"model": "rigid", "correction_passes": 1, "correction_supersample": 0}, "correction_supersample"),
        ({"model": "rigid", "correction_passes": 1, "correction_faces": 20}, "correction_faces must be"),
        ({"model": "rigid", "correction_noise_rotation": 2}, "need correction_passes > 0"),
        ({"model": "rigid", "correction_passes": 1, "correction_noise_rotation": 90}, "small misalignments"),
    ],
)
def test_config_errors_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(data)


# ---- the canonical parameterisation and decoding ----------------------------------------------


@pytest.mark.parametrize("kind", ["blendshapes", "rigid"])
def test_params_round_trip(kind):
    model = _blend_model() if kind == "blendshapes" else _blob()
    task = Task.create(model, _rig())
    sampling = TrainConfig.from_dict(
        {"model": kind, "sampling": {"rotation": 90, "scale": [0.8, 1.2]}}
    ).sampling
    canon = task.sample(jax.random.key(3), sampling)
    v = np.asarray(task.vertices(canon))
    # The representation's own parameters give the same vertices.
    p = task.model_params(canon)
    if kind == "blendshapes":
        np.testing.assert_allclose(model.vertices(p), v, atol=1e-5)
    else:
        rigid = RigidModel.from_mesh(model)
        np.testing.assert_allclose(rigid.vertices(p), v, atol=1e-5)
    # params.json, and back.
    back = task.from_params_json(json.loads(json.dumps(task.params_json(canon))))
    np.testing.assert_allclose(task.vertices(back), v, atol=1e-5)
    if kind == "rigid":
        M = np.asarray(task.params_json(canon)["object_to_world"])
        ref = np.asarray(model.vertices) @ M[:3, :3].T + M[:3, 3]
        np.testing.assert_allclose(ref, v, atol=1e-5)


def test_unknown_coefficient_range_is_named():
    task = Task.create(_blend_model(), _rig())
    cfg = TrainConfig.from_dict({"model": "blendshapes", "sampling": {"ranges": {"jawOpen": [0, 1]}}})
    with pytest.raises(ValueError, match=r"\['jawOpen'\].*not coefficients"):
        task.coeff_ranges(cfg.sampling)


def test_six_d_gives_rotations():
    x = jax.random.normal(jax.random.key(0), (50, 6))
    R = np.asarray(six_d_to_matrix(x))
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    assert np.isfinite(np.asarray(jax.grad(lambda y: six_d_to_matrix(y).sum())(jnp.zeros(6)))).all()


def _decode(task, cams, per_view, pooled, present, cfg):
    return decode(task, cams, per_view, pooled, present, ranges=task.coeff_ranges(cfg.sampling),
                  bounds=task.coeff_bounds(cfg.bounds), scale_range=cfg.sampling.scale)  # fmt: skip


def test_decode_zero_output_is_the_rest_pose():
    task = Task.create(_blend_model(), _rig(16))
    cfg = TrainConfig.from_dict({"model": "blendshapes", "bounds": {"expression": [0, 1]}})
    cams = jax.tree.map(lambda a: a[None], task.rig)
    out = _decode(task, cams, jnp.zeros((1, 3, VIEW_OUTPUTS)), jnp.zeros((1, 4)), jnp.ones((1, 3)), cfg)
    np.testing.assert_allclose(out["R"][0], np.eye(3), atol=1e-6)
    np.testing.assert_allclose(out["offset"][0], 0.0, atol=1e-5)
    np.testing.assert_allclose(
        out["coeffs"][0], [0.0, 0.0, 0.5], atol=1e-6
    )  # identity [-1, 1], expression [0, 1]


def test_a_correction_in_the_cameras_axes_is_one_in_the_world():
    """correction_frame cameras: a turn and a centre shift each view gives in its own axes
    (R_cam v) decode to the same world correction, with any subset of the views; zero outputs
    leave the prediction as it is."""
    from meshfit.amortize.network import CORRECTION_OUTPUTS, decode_correction

    task = Task.create(_blob(), _rig(16))
    cams = jax.tree.map(lambda a: a[None], task.rig)
    pred = {"coeffs": jnp.zeros((1, 0)), "R": jnp.eye(3)[None], "offset": jnp.zeros((1, 3)),
            "log_scale": jnp.zeros((1,))}  # fmt: skip
    turn, shift = np.array([0.3, -0.2, 0.5]), np.array([-0.4, 0.1, 0.2])
    per_view = np.zeros((1, 3, VIEW_OUTPUTS), np.float32)
    per_view[0, :, 0:3] = np.einsum("nij,j->ni", np.asarray(task.rig.R), turn)
    per_view[0, :, 3:6] = np.einsum("nij,j->ni", np.asarray(task.rig.R), shift)
    pooled = jnp.zeros((1, CORRECTION_OUTPUTS))
    kw = {"ranges": np.zeros((0, 2), np.float32), "bounds": np.zeros((0, 2), np.float32), "rotation": 20.0,
          "translation": 0.1, "scale_range": (1.0, 1.0)}  # fmt: skip
    world = decode_correction(pred, pooled.at[0, 1:4].set(turn).at[0, 4:7].set(shift), **kw)
    for present in ([1, 1, 1], [0, 1, 0], [1, 0, 1]):
        views = (jnp.asarray(per_view), cams, jnp.asarray([present], jnp.float32))
        out = decode_correction(pred, pooled, views=views, **kw)
        np.testing.assert_allclose(out["R"], world["R"], atol=1e-5)
        np.testing.assert_allclose(out["offset"], world["offset"], atol=1e-5)
    still = decode_correction(
        pred, pooled, views=(jnp.zeros((1, 3, VIEW_OUTPUTS)), cams, jnp.ones((1, 3))), **kw
    )
    np.testing.assert_allclose(still["R"], pred["R"], atol=1e-6)
    np.testing.assert_allclose(still["offset"], pred["offset"], atol=1e-6)


def test_decode_recovers_a_pose_every_view_agrees_on():
    """Per-view outputs made from a known pose (rotation in each camera's axes, the centre's ray
    and depth) decode to that pose, with any subset of the views."""
    task = Task.create(_blob(), _rig(16))
    cfg = TrainConfig.from_dict({"model": "rigid"})
    cams = task.rig
    R = np.asarray(so3_exp(jnp.array([0.3, -0.5, 0.2])))
    centre = np.asarray(task.target) + np.array([0.1, -0.05, 0.08])
    Rc, tc = np.asarray(cams.R), np.asarray(cams.t)
    R_view = np.einsum("nij,jk,nlk->nil", Rc, R, Rc)  # R_cam R R_cam^T
    pc = np.einsum("nij,j->ni", Rc, centre) + tc
    ref = np.einsum("nij,j->ni", Rc, np.asarray(task.target)) + tc
    per_view = np.zeros((1, 3, VIEW_OUTPUTS), np.float32)
    per_view[0, :, :6] = np.concatenate([R_view[:, :, 0], R_view[:, :, 1]], 1) - [1, 0, 0, 0, 1, 0]
    per_view[0, :, 6:8] = pc[:, :2] / pc[:, 2:] - ref[:, :2] / ref[:, 2:]
    per_view[0, :, 8] = np.log(pc[:, 2] / ref[:, 2])
    batch = jax.tree.map(lambda a: a[None], cams)
    for present in ([1, 1, 1], [0, 1, 0], [1, 0, 1]):
        out = _decode(
            task, batch, jnp.asarray(per_view), jnp.zeros((1, 1)), jnp.asarray([present], jnp.float32), cfg
        )
        np.testing.assert_allclose(out["R"][0], R, atol=1e-5)
        np.testing.assert_allclose(task.object_centre(jax.tree.map(lambda a: a[0], out)), centre, atol=1e-5)


# ---- training inputs against pyrender -----------------------------------------------------------


@pytest.mark.parametrize("proxy", [None, 160])
def test_training_inputs_match_pyrender_views(proxy):
    """The training renderer (meshfit's, supersampled) with synth's studio light and no noise makes
    the inputs that pyrender's images make through image_inputs, up to edge pixels; also from a
    proxy with half the faces."""
    from meshfit.synth import pyrender_views

    mesh = _blob()
    rig = _rig(128)
    task = Task.create(mesh, rig.resized(32, 32), proxy_faces=proxy)
    assert task.proxy_faces.shape[0] == (proxy or mesh.faces.shape[0])
    clean = AppearanceConfig(studio=1.0, background=(0.0, 0.0), background_gradient=0.0, noise=0.0,
                             depth_noise=0.0, mask_noise=0.0, occluders=0.0)  # fmt: skip
    cams = jax.tree.map(lambda a: a[None], task.rig)
    v = jnp.asarray(mesh.vertices)[None]
    keys = jax.random.split(jax.random.key(0), 1)
    ours, _ = jax.jit(render_inputs, static_argnums=(4, 5))(
        keys, task, cams, v, clean, ("mask", "grey", "depth")
    )
    r = pyrender_views(mesh, rig, near=task.planes[0], far=task.planes[1])
    theirs, _ = image_inputs(task, rig, ("mask", "grey", "depth"), mask=r.mask.astype(np.float32),
                             rgb=r.rgb / 255.0, depth=r.depth)  # fmt: skip
    ours, theirs = np.asarray(ours[0]), np.asarray(theirs)
    assert ours.shape == theirs.shape == (3, 32, 32, 5)
    np.testing.assert_allclose(ours[..., 3:], theirs[..., 3:], atol=1e-6)  # rays
    m_ours, m_theirs = ours[..., 0], theirs[..., 0]
    assert np.abs(m_ours - m_theirs).mean() < 0.02
    inside = (m_ours == 1) & (m_theirs == 1)
    assert inside.sum() > 200
    assert np.abs(ours[..., 1] - theirs[..., 1])[inside].mean() < 0.03  # grey shading
    dz = np.abs(ours[..., 2] - theirs[..., 2])[inside]
    assert dz.max() < (0.02 if proxy is None else 0.05)  # depth, object radii


def test_proxy_follows_the_blendshapes():
    """The decimated proxy stays on the model's surface whatever its coefficients (its vertices are
    bound to the model's triangles); without decimation it is the model's own mesh."""
    from meshfit.mesh import _gpytoolbox

    gpytoolbox = _gpytoolbox()
    model = _blend_model()
    canon = Task.create(model, _rig(16)).sample(jax.random.key(3), TrainConfig(model="blendshapes").sampling)
    canon["coeffs"] = canon["coeffs"] * 4  # deformations well beyond the sampled ones
    whole = Task.create(model, _rig(16))
    v = whole.vertices(canon)
    np.testing.assert_allclose(whole.proxy_vertices(v), v, atol=1e-6)
    assert np.array_equal(whole.proxy_faces, whole.faces)
    task = Task.create(model, _rig(16), proxy_faces=160)
    assert 150 <= task.proxy_faces.shape[0] <= 160 and task.proxy_index.shape[0] < task.num_vertices
    again = whole.with_proxy(160)  # another proxy of the same task: what Task.create would make
    for name in ("proxy_index", "proxy_weights", "proxy_offset", "proxy_faces"):
        np.testing.assert_array_equal(getattr(again, name), getattr(task, name))
    np.testing.assert_allclose(np.asarray(task.proxy_weights).sum(1), 1.0, atol=1e-5)

    def gap(task, canon):  # [P] distance of the proxy's vertices to the posed model, in radii
        v = task.vertices(canon)
        p = np.asarray(task.proxy_vertices(v), np.float64)
        d2, _, _ = gpytoolbox.squared_distance(
            p, np.asarray(v, np.float64), np.asarray(task.faces), use_cpp=True
        )
        return np.sqrt(d2) / float(task.radius)

    rest = {**canon, "coeffs": jnp.zeros_like(canon["coeffs"])}
    assert gap(task, rest).max() < 0.03 and gap(task, canon).max() < 0.03
    with pytest.raises(ConfigError, match="proxy_faces must be at least 100"):
        TrainConfig.from_dict({"model": "blendshapes", "proxy_faces": 10})


def test_training_inputs_are_per_sample():
    """A sample's images depend on its key only, not on the batch it is drawn in."""
    mesh = _blob()
    task = Task.create(mesh, _rig(16))
    v = jnp.broadcast_to(jnp.asarray(mesh.vertices), (3,) + mesh.vertices.shape)
    cams = jax.tree.map(lambda a: jnp.broadcast_to(a, (3,) + a.shape), task.rig)
    keys = jax.random.split(jax.random.key(1), 3)
    render = jax.jit(
        render_inputs, static_argnums=(4, 5)
    )  # as training calls it (eagerly, every op compiles alone)
    a, _ = render(keys, task, cams, v, AppearanceConfig(), ("mask", "grey"))
    b, _ = render(
        keys[1:2], task, jax.tree.map(lambda x: x[1:2], cams), v[1:2], AppearanceConfig(), ("mask", "grey")
    )
    np.testing.assert_allclose(a[1], b[0], atol=1e-6)
    assert not np.allclose(a[0], a[1])


def test_training_inputs_under_spherical_harmonic_light():
    """appearance.sh: samples lit by a random order-2 SH light instead of a directional one. Only
    the grey channel changes, its shading stays in range, and a config without it draws exactly
    the samples it drew before (its draws are skipped)."""
    mesh = _blob()
    task = Task.create(mesh, _rig(16))
    v = jnp.broadcast_to(jnp.asarray(mesh.vertices), (4,) + mesh.vertices.shape)
    cams = jax.tree.map(lambda a: jnp.broadcast_to(a, (4,) + a.shape), task.rig)
    keys = jax.random.split(jax.random.key(2), 4)
    render = jax.jit(render_inputs, static_argnums=(4, 5))
    clean = dict(studio=0.0, noise=0.0, depth_noise=0.0, mask_noise=0.0, occluders=0.0)
    channels = ("mask", "grey", "depth")
    _, plain = render(keys, task, cams, v, AppearanceConfig(**clean), channels)
    _, lit = render(keys, task, cams, v, AppearanceConfig(**clean, sh=1.0), channels)
    for k in ("mask", "depth"):
        np.testing.assert_array_equal(plain[k], lit[k])
    inside = np.asarray(plain["mask"]) == 1
    grey_sh, grey = np.asarray(lit["grey"]), np.asarray(plain["grey"])
    assert np.isfinite(grey_sh).all() and grey_sh.min() >= 0.0 and grey_sh.max() <= 1.0
    assert np.abs(grey_sh - grey)[inside].mean() > 0.02  # another light
    assert grey_sh[inside].std() > 0.02  # shaded, not flat
    with pytest.raises(ConfigError, match="sh must be a probability"):
        TrainConfig.from_dict({"model": "rigid", "appearance": {"sh": 1.5}})


# ---- training -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny rigid training (24 steps) written to a run folder, and its rig."""
    require_native()
    root = tmp_path_factory.mktemp("amortize")
    rig = _rig(64)
    cfg = TrainConfig.from_dict({"model": "rigid", **TINY})
    summary = train(cfg, _blob(), rig, root / "run", progress=False)
    return root, rig, summary


def test_training_lowers_the_loss(tiny_run):
    root, _, summary = tiny_run
    lines = [json.loads(x) for x in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert len(losses) == 6 and np.mean(losses[-2:]) < 0.7 * losses[0], losses
    assert [x["step"] for x in lines if "validation" in x] == [8, 16, 24]
    for name in (
        "run.json",
        "config.yaml",
        "rig.json",
        "model.obj",
        "validation.npz",
        "report.html",
        "curves.png",
    ):
        assert (root / "run" / name).is_file(), name
    assert summary["network"]["parameters"] > 0 and summary["validation"]["vertex_pct"]["mean"] > 0
    reg = Regressor.load(root / "run", checkpoint="last")
    assert reg.step == 24


_TRAIN = textwrap.dedent(
    """
    import sys, time
    import meshfit.amortize.run as run
    from meshfit.amortize import TrainConfig, train
    from tests.test_amortize import TINY, _blob, _rig
    if sys.argv[2] == "slow":  # slow steps, so that the kill lands mid-run
        make = run.make_train_step
        def slow(*a, **k):
            step = make(*a, **k)
            return lambda carry: (time.sleep(0.3), step(carry))[1]
        run.make_train_step = slow
    cfg = TrainConfig.from_dict({"model": "rigid", **TINY})
    train(cfg, _blob(), _rig(64), sys.argv[1], resume=sys.argv[3] == "resume", progress=False)
    """
)


def test_resume_after_kill_repeats_the_uninterrupted_run(tiny_run, tmp_path):
    """kill -9 after the first checkpoint, --resume: the same weights as the uninterrupted run."""
    root, _, _ = tiny_run
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "killed.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", _TRAIN, str(run), "slow", "new"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        deadline = time.time() + 240
        while not (run / "checkpoints" / "last" / "8" / "commit_success.txt").exists():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.time() < deadline, "no checkpoint within 4 minutes"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "checkpoints" / "last" / "24").exists()
    done = subprocess.run([sys.executable, "-c", _TRAIN, str(run), "fast", "resume"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    a = Regressor.load(root / "run", checkpoint="last")
    b = Regressor.load(run, checkpoint="last")
    assert a.step == b.step == 24
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a.params, b.params)


def test_resume_refuses_another_config(tiny_run, tmp_path):
    root, rig, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    cfg = TrainConfig.from_dict({"model": "rigid", **TINY, "batch": 8})
    with pytest.raises(ValueError, match=r"differs from the run's in \['batch'\]"):
        train(cfg, _blob(), rig, run, resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="not a meshfit training run"):
        train(cfg, _blob(), rig, tmp_path / "nothing", resume=True, progress=False)


_SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    from meshfit.amortize import TrainConfig, Task
    from meshfit.amortize.run import _checkpoint_tree
    from meshfit.amortize.train import build_network, make_optimizer, make_train_step
    from tests.test_amortize import TINY, _blob, _rig
    assert len(jax.devices()) == 2
    loss = {"vertices": 1, "silhouette": 1}
    cfg = TrainConfig.from_dict({"model": "rigid", **TINY, "batch": 8, "loss": loss})
    net = build_network(cfg, Task.create(_blob(), _rig(64).resized(16, 16)))
    opt = make_optimizer(cfg)
    out = []
    for devices in (None, jax.devices()):
        carry = _checkpoint_tree(net, opt, net.init_params(), 0)
        step = make_train_step(net, opt, devices=devices)
        for _ in range(2):
            carry, metrics = step(carry)
        out.append((carry["params"], float(metrics["loss"])))
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-5)
    # Adam divides by the gradient's size: rounding in near-zero gradients shows at ~1e-6.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), out[0][0], out[1][0])
    print("OK")
    """
)


def test_sharded_training_equals_one_device():
    """The batch split over 2 (forced host) devices with shard_map trains as one device does."""
    require_native()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _SHARDED], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_processes_train_as_one(tiny_run, tmp_path):
    """meshfit train in 2 local processes (jax.distributed, gloo CPU collectives, one device each,
    the batch split between them) ends with the weights of the one-process run."""
    root, _, _ = tiny_run
    ref = root / "run"
    port = _free_port()
    cli = "import sys; from meshfit.cli import main; sys.exit(main())"
    args = [str(ref / "config.yaml"), "--model", str(ref / "model.obj"), "--cameras", str(ref / "rig.json"),
            "--out", str(tmp_path / "run"), "--quiet", "--coordinator", f"localhost:{port}",
            "--num-processes", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("XLA_FLAGS", None)
    logs = [tmp_path / f"p{i}.log" for i in range(2)]
    procs = []
    for i in range(2):
        with open(logs[i], "w") as err:
            cmd = [sys.executable, "-c", cli, "train", *args, "--process-id", str(i)]
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=err, stderr=subprocess.STDOUT))
    for proc, log in zip(procs, logs):
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    a = Regressor.load(ref, checkpoint="last")
    b = Regressor.load(tmp_path / "run", checkpoint="last")
    assert b.step == 24 and json.loads((tmp_path / "run" / "run.json").read_text())["processes"] == 2
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), a.params, b.params)


# ---- predict --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def posed_data(tiny_run):
    """A dataset of the blob at a random pose, rendered by pyrender through the run's rig."""
    root, rig, _ = tiny_run
    reg = Regressor.load(root / "run")
    canon = reg.task.sample(jax.random.key(9), reg.config.sampling)
    mesh = meshfit.Mesh(np.asarray(reg.task.vertices(canon)), reg.task.faces)
    data = meshfit.synthesize(mesh, root / "data", cameras=rig)
    return data, reg.task.params_json(canon)


def test_predict_writes_what_fit_writes(tiny_run, posed_data, tmp_path):
    from meshfit.amortize.predict import predict_folder

    root, _, _ = tiny_run
    data, _ = posed_data
    metrics = predict_folder(root / "run", data, tmp_path / "pred", refine=3, progress=False)
    for name in ("mesh.obj", "params.json", "metrics.json", "config.yaml", "history.json", "report.html"):
        assert (tmp_path / "pred" / name).is_file(), name
    assert [s["name"] for s in metrics["stages"]] == ["network", "refine"]
    assert metrics["network"]["per_frame_ms"] > 0
    params = json.loads((tmp_path / "pred" / "params.json").read_text())
    assert np.asarray(params["object_to_world"]).shape == (4, 4)
    fitted = meshfit.load_mesh(tmp_path / "pred" / "mesh.obj")
    assert fitted.num_vertices == _blob().num_vertices  # the model's vertex order


def test_a_correcting_network_learns_to_correct_a_run(tiny_run, posed_data, tmp_path):
    """--corrects RUN: the first network's prediction, rendered beside the views, is corrected;
    zero passes are the first network's prediction; the run keeps the first network's weights,
    predicts through predict_folder, and refuses export and mismatched configs. (What the
    correction gains is measured by bench/amortize.py on trained networks: a tiny first network
    trained for 24 steps is too far off for a tiny corrector to learn much in a test's time.)"""
    from meshfit.amortize.predict import predict_folder
    from meshfit.export.native import write_native

    root, rig, _ = tiny_run
    first = Regressor.load(root / "run")
    # (the prediction rendered from a coarser proxy, one sample per pixel: the cheap setting)
    cfg = TrainConfig.from_dict(
        {
            "model": "rigid",
            **TINY,
            "correction_passes": 2,
            "correction_faces": 160,
            "correction_supersample": 1,
            "correction_noise_rotation": 5.0,
            "correction_noise_translation": 0.05,
            "correction_frame": "cameras",
        }
    )
    with pytest.raises(ValueError, match="--corrects RUN"):
        train(cfg, _blob(), rig, tmp_path / "no", progress=False)
    other = TrainConfig.from_dict({"model": "rigid", **TINY, "correction_passes": 2, "inputs": ["mask"]})
    with pytest.raises(ValueError, match="inputs"):
        train(other, _blob(), rig, tmp_path / "no", corrects=root / "run", progress=False)
    with pytest.raises(ValueError, match="correction_passes is 0"):
        train(first.config, _blob(), rig, tmp_path / "no", corrects=root / "run", progress=False)

    shutil.copytree(root / "run", tmp_path / "first")
    train(cfg, _blob(), rig, tmp_path / "corr", corrects=tmp_path / "first", progress=False)
    shutil.rmtree(tmp_path / "first")
    reg = Regressor.load(tmp_path / "corr")  # needs nothing of the first run's folder
    assert reg.network.render_task.proxy_faces.shape[0] <= 160 < reg.task.proxy_faces.shape[0]
    views = meshfit.load_views(posed_data[0])
    mask = np.asarray(views.mask, np.float32)[None]
    x, cams = image_inputs(reg.task, views.cameras, reg.config.inputs, mask=mask, rgb=views.rgb[None])
    cams = jax.tree.map(lambda a: a[None], cams)
    present = jnp.ones(x.shape[:2], jnp.float32)
    base = first.network.predict(first.params, x, cams, present)
    same = reg.network.predict(reg.params, x, cams, present, passes=0)
    np.testing.assert_allclose(same["R"], base["R"], atol=1e-6)
    # Training moves the first network's prediction by the configured noise before correcting it.
    keys = jax.random.split(jax.random.key(0), 1)
    moved0 = reg.network.predict(reg.params, x, cams, present, passes=0, perturb=keys)
    rel = np.einsum("bji,bjk->bik", np.asarray(moved0["R"]), np.asarray(base["R"]))
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert 0.1 < float(angle[0]) < 30, angle
    assert 1e-3 < float(np.abs(moved0["offset"] - base["offset"]).max()) < 0.5
    moved = reg.network.predict(reg.params, x, cams, present)
    assert float(jnp.abs(moved["offset"] - base["offset"]).max()) > 1e-4
    metrics = predict_folder(tmp_path / "corr", posed_data[0], tmp_path / "pred", progress=False)
    assert (tmp_path / "pred" / "mesh.obj").is_file() and metrics["network"]["per_frame_ms"] > 0
    with pytest.raises(ValueError, match="correcting network"):
        write_native(tmp_path / "corr", tmp_path / "m.mfr")
    assert not (tmp_path / "m.mfr").exists()


def test_export_cli_runs_in_c_as_predict_does(tiny_run, posed_data, tmp_path, capsys):
    """meshfit export RUN --format native: the C runtime gives predict's vertices; onnx writes a
    checked model; a quantization ONNX does not have is refused."""
    from meshfit.amortize.predict import predict
    from meshfit.cli import main
    from meshfit.export import Runtime, runtime

    try:
        runtime.runtime_library()
    except RuntimeError as e:
        pytest.fail(str(e))
    root, _, _ = tiny_run
    data, _ = posed_data
    run = str(root / "run")
    assert main(["export", run, "--out", str(tmp_path / "m.mfr")]) == 0
    assert main(["export", run, "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert (
        main(["export", run, "--format", "onnx", "--quant", "int8", "--out", str(tmp_path / "q.onnx")]) == 2
    )
    assert "--quant and --basis are for --format native" in capsys.readouterr().err
    assert main(["export", run, "--out", str(tmp_path / "m.mfr")]) == 2  # exists
    views = meshfit.load_views(data)
    reg = Regressor.load(root / "run")
    canon, _ = predict(reg, views)
    rt = Runtime(tmp_path / "m.mfr")
    _, verts = rt.run(rt.frame(views))
    np.testing.assert_allclose(verts, reg.task.vertices(canon[0]), atol=1e-4 * reg.task.diagonal)


def test_predict_refuses_other_cameras(tiny_run, posed_data, tmp_path):
    from meshfit.amortize.predict import predict_folder

    root, rig, _ = tiny_run
    data, _ = posed_data
    other = tmp_path / "data"
    shutil.copytree(data, other)
    moved = meshfit.sphere_rig(3, radius=4.0, width=64, height=64, fov=40, seed=5)
    meshfit.save_cameras(other / "cameras.json", moved, names=["000", "001", "002"])
    with pytest.raises(ValueError, match="view '000'.*trained for"):
        predict_folder(root / "run", other, tmp_path / "out", progress=False)


def test_predict_names_a_missing_or_corrupt_checkpoint(tiny_run, posed_data, tmp_path):
    from meshfit.amortize.predict import predict_folder

    root, _, _ = tiny_run
    data, _ = posed_data
    run = tmp_path / "run"
    shutil.copytree(root / "run", run, ignore=shutil.ignore_patterns("checkpoints"))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        predict_folder(run, data, tmp_path / "a", progress=False)
    shutil.rmtree(run)
    shutil.copytree(root / "run", run)
    for f in (run / "checkpoints").rglob("*"):
        if f.is_file() and f.stat().st_size > 100 and "METADATA" not in f.name and "sha256" not in f.name:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    with pytest.raises(ValueError, match=r"cannot read the checkpoint of step 24 .*(truncated|changed)"):
        predict_folder(run, data, tmp_path / "b", progress=False)
    (run / "run.json").write_text("{")
    with pytest.raises(ValueError, match="run.json is not valid JSON"):
        predict_folder(run, data, tmp_path / "c", progress=False)
    assert not any((tmp_path / x).exists() for x in "abc")


def test_fit_init_refuses_another_model(tiny_run, posed_data, tmp_path):
    import trimesh

    from meshfit.fitting import fit_folder, load_config

    root, _, _ = tiny_run
    data, _ = posed_data
    other = tmp_path / "other.obj"
    trimesh.creation.icosphere(subdivisions=1).export(other)
    config, _ = load_config("rigid_pose", ["stages.0.steps=2", "stages.1.steps=2", "stages.2.steps=2"])
    with pytest.raises(ValueError, match="vertices but the network"):
        fit_folder(config, data, tmp_path / "fit", model=other, init=root / "run", progress=False)
    metrics = fit_folder(config, data, tmp_path / "fit", model=root / "run" / "model.obj", init=root / "run",
                         progress=False)  # fmt: skip
    assert metrics["steps"] > 0


def test_predict_a_sequence_in_one_call(tiny_run, tmp_path):
    """A sequence folder (frames/NNNN/...) is predicted frame by frame in one batched call, with
    what a fit of a sequence writes (meshes/, per-frame parameters)."""
    from meshfit.amortize.predict import predict_folder

    root, rig, _ = tiny_run
    reg = Regressor.load(root / "run")
    seq = tmp_path / "seq"
    for t in range(3):
        canon = reg.task.sample(jax.random.key(20 + t), reg.config.sampling)
        mesh = meshfit.Mesh(np.asarray(reg.task.vertices(canon)), reg.task.faces)
        frame = meshfit.synthesize(mesh, tmp_path / f"f{t}", cameras=rig)
        for kind in ("rgb", "mask", "depth"):
            shutil.copytree(frame / kind, seq / "frames" / f"{t:04d}" / kind)
        shutil.copy(frame / "cameras.json", seq / "cameras.json")
    metrics = predict_folder(root / "run", seq, tmp_path / "out", progress=False)
    assert metrics["frames"] == 3
    assert sorted(p.name for p in (tmp_path / "out" / "meshes").iterdir()) == [
        "0000.obj",
        "0001.obj",
        "0002.obj",
    ]
    params = json.loads((tmp_path / "out" / "params.json").read_text())
    assert len(params["frames"]) == 3 and "object_to_world" in params["frames"][0]


def test_synth_through_given_cameras(tmp_path, capsys):
    """meshfit synth --cameras renders through a rig file, with its names and size."""
    from meshfit.cli import main

    rig = meshfit.sphere_rig(2, radius=4.0, width=40, height=30, fov=40, seed=1)
    meshfit.save_cameras(tmp_path / "rig.json", rig, names=["left", "right"])
    mesh = tmp_path / "blob.obj"
    meshfit.save_mesh(mesh, _blob())
    assert (
        main(["synth", str(mesh), "--cameras", str(tmp_path / "rig.json"), "--out", str(tmp_path / "d")]) == 0
    )
    views = meshfit.load_views(tmp_path / "d")
    assert views.names == ["left", "right"] and views.mask.shape == (2, 30, 40) and views.mask.any()
    np.testing.assert_allclose(views.cameras.R, rig.R, atol=1e-6)
    code = main(
        [
            "synth",
            str(mesh),
            "--cameras",
            str(tmp_path / "rig.json"),
            "--views",
            "3",
            "--out",
            str(tmp_path / "e"),
        ]
    )
    assert code == 2 and "drop --views" in capsys.readouterr().err


def test_a_config_of_the_other_kind_is_named(tmp_path, capsys):
    from meshfit.cli import main

    rig = REPO / "configs" / "rig_face4.json"
    rc = main(["train", "face_blendshapes", "--model", str(REPO / "examples" / "ict_face_region.json"),
               "--cameras", str(rig), "--out", str(tmp_path / "a")])  # fmt: skip
    assert rc == 2 and "is a fit config (meshfit fit)" in capsys.readouterr().err
    rc = main(["fit", "amortize_face", "--data", str(tmp_path), "--out", str(tmp_path / "b")])
    assert rc == 2 and "is a training config (meshfit train)" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _landmark_model() -> BlendshapeModel:
    """The blend model with 12 landmarks (vertices spread over the blob, barycentric corners)."""
    m = _blend_model()
    idx = np.repeat(np.arange(0, m.num_vertices, m.num_vertices // 12)[:12, None], 3, 1).astype(np.int32)
    w = np.tile(np.asarray([1.0, 0.0, 0.0], np.float32), (12, 1))
    return dataclasses.replace(m, landmark_vertices=jnp.asarray(idx), landmark_weights=jnp.asarray(w))


def test_landmarks_alone_train_the_pose(tmp_path):
    """loss.landmarks without the vertex term (the truth's landmarks projected with noise and
    outliers): the landmark term falls and the vertex error with it; a model without landmarks,
    and a dataset without them, are named."""
    require_native()
    model, rig = _landmark_model(), _rig(64)
    noisy = {"landmark_noise": 0.25, "landmark_outliers": 0.1}
    cfg = TrainConfig.from_dict({**TINY, "model": "blendshapes", "loss": {"vertices": 0, "landmarks": 1},
                                 "appearance": noisy})  # fmt: skip
    train(cfg, model, rig, tmp_path / "run", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    marks = [x["landmarks"] for x in lines if "landmarks" in x]
    val = [x["validation"]["vertex_pct"]["mean"] for x in lines if "validation" in x]
    assert len(marks) == 6 and np.mean(marks[-2:]) < 0.7 * marks[0], marks
    assert val[-1] < 0.8 * val[0], val
    with pytest.raises(ValueError, match="loss.landmarks: the model defines no landmarks"):
        train(cfg, _blend_model(), rig, tmp_path / "none", progress=False)


@pytest.mark.parametrize("light", ["directional", "sh"])
def test_shading_term_sees_the_pose(light):
    """loss.shading (the light solved per sample, never told): small at the true pose, larger at a
    turned one, whichever light made the images; finite gradients; needs the grey input."""
    from meshfit.amortize.train import _image_terms, build_network, sample_batch

    look = {
        "studio": 0.0,
        "sh": 1.0 if light == "sh" else 0.0,
        "occluders": 0.0,
        "mask_noise": 0.0,
        "noise": 0.0,
    }
    loss = {"vertices": 1, "shading": 1}
    cfg = TrainConfig.from_dict(
        {**TINY, "model": "rigid", "resolution": 32, "loss": loss, "appearance": look}
    )
    network = build_network(cfg, Task.create(_blob(), _rig(32)))
    task = network.task
    truth, cams, _, images = sample_batch(network, jax.random.split(jax.random.key(4), 4))
    term = lambda canon: _image_terms(task, cams, jax.vmap(task.vertices)(canon), images, cfg)["shading"]  # noqa: E731
    turned = {**truth, "R": jnp.einsum("ij,bjk->bik", so3_exp(jnp.asarray([0.0, 0.35, 0.0])), truth["R"])}
    at_truth, at_turned = np.asarray(term(truth)), np.asarray(term(turned))
    assert at_truth.mean() < 0.5 * at_turned.mean() and (at_truth < at_turned).all(), (at_truth, at_turned)
    grad = jax.grad(lambda c: jnp.sum(term(c)))(turned)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grad))
    assert np.abs(np.asarray(grad["R"])).max() > 0
    with pytest.raises(ConfigError, match="loss.shading compares with the grey input"):
        TrainConfig.from_dict({"model": "rigid", "inputs": ["mask"], "loss": {"shading": 1}})


def test_dataset_landmarks_reach_the_network_cameras(tmp_path):
    """--data with loss.landmarks: the dataset's detections (its own resolution, NaN = missing)
    become points in the network's input pixels, where its cameras project the same 3-D points."""
    from meshfit.amortize.train import build_network, data_batch

    model, rig = _landmark_model(), _rig(64)
    cfg = TrainConfig.from_dict(
        {**TINY, "model": "blendshapes", "inputs": ["mask"], "loss": {"vertices": 0, "landmarks": 1}}
    )
    task = Task.create(model, rig.resized(16, 16))
    network = build_network(cfg, task)
    points = task.landmark_points(task.vertices(task.sample(jax.random.key(0), cfg.sampling)))
    uv, _ = rig.project(points)  # [N, L, 2] at 64^2
    marks = np.array(uv, np.float32)
    marks[1, 3] = np.nan
    views = meshfit.io.Views(rig, ["a", "b", "c"], None, np.ones((3, 64, 64), bool), None, landmarks=marks)
    batch = data_batch(network, views)
    want, _ = task.rig.project(points)
    found = np.asarray(batch["landmark_confidence"][0]) > 0
    assert batch["landmarks"].shape == (1, 3, 12, 2) and found.sum() == 35 and not found[1, 3]
    np.testing.assert_allclose(np.asarray(batch["landmarks"][0])[found], np.asarray(want)[found], atol=1e-4)
    with pytest.raises(ValueError, match="11 points; the model defines 12"):
        data_batch(network, views._replace(landmarks=marks[:, :11]))
    with pytest.raises(ValueError, match="it has no landmarks/ folder"):
        data_batch(network, views._replace(landmarks=None))


def test_fine_tuning_on_unlabelled_data_lowers_its_error(tiny_run, tmp_path):
    """train(data=...) from a trained run, silhouettes only (no labels): the network's error on
    that (pyrender) dataset falls."""
    from meshfit.amortize.predict import predict

    root, rig, _ = tiny_run
    reg = Regressor.load(root / "run")
    seq = tmp_path / "seq"
    truths = []
    for t in range(4):
        canon = reg.task.sample(jax.random.key(40 + t), reg.config.sampling)
        truths.append(canon)
        mesh = meshfit.Mesh(np.asarray(reg.task.vertices(canon)), reg.task.faces)
        frame = meshfit.synthesize(mesh, tmp_path / f"f{t}", cameras=rig)
        for kind in ("rgb", "mask", "depth"):
            shutil.copytree(frame / kind, seq / "frames" / f"{t:04d}" / kind)
        shutil.copy(frame / "cameras.json", seq / "cameras.json")
    views = meshfit.load_sequence(seq)

    def error(run) -> float:
        r = Regressor.load(run, checkpoint="last")
        canon, _ = predict(r, views)
        pred = jax.tree.map(lambda *a: jnp.stack(a), *canon)
        truth = jax.tree.map(lambda *a: jnp.stack(a), *truths)
        return float(np.mean(pose_errors(r.task, pred, truth)["vertex_pct"]))

    cfg = TrainConfig.from_dict({**TINY, "model": "rigid", "loss": {"vertices": 0, "silhouette": 1},
                                 "optim": {"lr": 0.003, "warmup": 2}})  # fmt: skip
    with pytest.raises(ValueError, match="no labels: give the image terms a weight"):
        train(TrainConfig.from_dict({**TINY, "model": "rigid"}), _blob(), rig, tmp_path / "x", data=views,
              init=root / "run", progress=False)  # fmt: skip
    train(cfg, _blob(), rig, tmp_path / "tuned", data=views, init=root / "run", progress=False)
    before, after = error(root / "run"), error(tmp_path / "tuned")
    assert after < 0.8 * before, (before, after)

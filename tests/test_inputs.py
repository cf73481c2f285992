"""Nothing a user gave us is lost, and every bad input is named: the command line tried as a new
user would (issue 8, section 2). Each test here failed on the main before it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import meshfit
from meshfit.cli import main
from meshfit.config import ConfigError, apply_overrides, load_yaml
from meshfit.fitting import FitConfig
from meshfit.io import MARKER, atomic_dir, load_cameras, load_views
from tests.helpers import REPO, SPOT


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    """Spot (built in), 4 views at 32^2."""
    out = tmp_path_factory.mktemp("data") / "spot"
    meshfit.synthesize(SPOT, out, views=4, size=(32, 32), seed=1)
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _tiny_fit(data, out, *extra) -> list[str]:
    steps = [a for i in range(3) for a in ("--set", f"stages.{i}.steps=2")]
    views = [a for i in (1, 2) for a in ("--set", f"stages.{i}.views_per_step=null")]
    return ["fit", "free_mesh", "--data", str(data), "--out", str(out), "--quiet", *steps, *views, *extra]


# ---- nothing lost ---------------------------------------------------------------------------------


def test_overwrite_never_removes_the_input(tmp_path, spot_data, capsys):
    data = _copy(spot_data, tmp_path / "X")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    assert main(_tiny_fit(data, data, "--overwrite")) == 2
    assert "is the input" in capsys.readouterr().err
    assert main(_tiny_fit(data, tmp_path, "--overwrite")) == 2  # a parent of the input
    assert "contains the input" in capsys.readouterr().err
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_overwrite_replaces_only_what_meshfit_made(tmp_path, spot_data, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert main(_tiny_fit(spot_data, mine, "--overwrite")) == 2
    assert "was not written by meshfit" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "precious"
    out = tmp_path / "fit"
    assert main(_tiny_fit(spot_data, out)) == 0
    assert (out / MARKER).is_file()
    assert main(_tiny_fit(spot_data, out)) == 2  # non-empty, no --overwrite
    assert main(_tiny_fit(spot_data, out, "--overwrite")) == 0  # meshfit's own: replaced


def test_synth_overwrite_keeps_the_source_mesh(tmp_path, capsys):
    d = tmp_path / "DIR"
    d.mkdir()
    (d / "spot.obj").write_bytes(SPOT.read_bytes())
    rc = main(["synth", str(d / "spot.obj"), "--out", str(d), "--overwrite", "--views", "2", "--size", "16"])
    assert rc == 2 and "contains the input" in capsys.readouterr().err
    assert (d / "spot.obj").read_bytes() == SPOT.read_bytes()


def test_synth_renders_the_packaged_spot_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called spot here
    assert main(["synth", "spot", "--out", "s", "--views", "2", "--size", "16"]) == 0
    written = meshfit.load_mesh(tmp_path / "s" / "mesh.obj")
    assert len(written.vertices) == len(meshfit.load_mesh(SPOT).vertices)


def test_output_is_checked_before_any_work(tmp_path, spot_data, capsys):
    (tmp_path / "file").write_text("x")
    t = time.perf_counter()
    assert main(_tiny_fit(spot_data, tmp_path / "file")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    # /proc takes no folders, whoever asks (root included: os.access would say yes).
    assert main(_tiny_fit(spot_data, "/proc/meshfit-out")) == 2
    assert "/proc is not a writable folder" in capsys.readouterr().err
    assert time.perf_counter() - t < 5.0  # refused before loading, compiling or fitting anything


def test_stale_partial_outputs_are_removed_and_the_umask_is_honoured(tmp_path):
    dead = tmp_path / ".out.partial-999999999-abcd"  # no such process
    dead.mkdir()
    (dead / "half.obj").write_text("v 0 0 0\n")
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a.txt").write_text("a")
            meshfit.write_image(tmp / "b.png", np.zeros((2, 2)))
    finally:
        os.umask(old)
    assert not dead.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "b.png").stat().st_mode & 0o777 == 0o644


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, spot_data):
    # A shell's background job ignores SIGINT and its children inherit that (pytest started with
    # `&` in a script), so the fit is given Python's own handler, as a terminal's Ctrl-C finds it.
    run = "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    run += "runpy.run_module('meshfit.cli', run_name='__main__')"
    cmd = [sys.executable, "-c", run, *_tiny_fit(spot_data, tmp_path / "out")]
    cmd[cmd.index("stages.0.steps=2")] = "stages.0.steps=100000"
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    time.sleep(12)  # importing jax and compiling the first stage takes a few seconds
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no OUT, no partial folder


# ---- bad input is named -----------------------------------------------------------------------------


def test_duplicate_camera_names_are_refused(tmp_path, spot_data):
    data = _copy(spot_data, tmp_path / "d")
    cams = json.loads((data / "cameras.json").read_text())
    cams["cameras"][1]["name"] = cams["cameras"][0]["name"]
    (data / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(meshfit.CameraError, match=r"view names must be distinct.*'000'"):
        load_views(data)


@pytest.mark.parametrize("value", [128.5, "128", True])
def test_image_sizes_must_be_whole_numbers(tmp_path, spot_data, value):
    cams = json.loads((spot_data / "cameras.json").read_text())
    cams["cameras"][0]["width"] = value
    (tmp_path / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(meshfit.CameraError, match=r"cameras\[0\]\.width must be a positive whole number"):
        load_cameras(tmp_path / "cameras.json")


def test_degenerate_intrinsics_are_refused(tmp_path, spot_data):
    cams = json.loads((spot_data / "cameras.json").read_text())
    cams["cameras"][2]["K"][1][1] = 1e-30
    (tmp_path / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(meshfit.CameraError, match="degenerate intrinsics: fy"):
        load_cameras(tmp_path / "cameras.json")


def test_truncated_obj_is_refused(tmp_path):
    text = SPOT.read_text()
    faces_start = text.index("\nf ")
    cut = faces_start + (len(text) - faces_start) // 2
    cut = text.index(" ", text.index("\nf ", cut) + 3) + 1  # mid-record: "f 12/3 "
    (tmp_path / "cut.obj").write_text(text[:cut])
    with pytest.raises(meshfit.MeshIOError, match="truncated"):
        meshfit.load_mesh(tmp_path / "cut.obj")


def test_a_folder_or_a_non_mesh_file_given_as_a_mesh(tmp_path):
    with pytest.raises(meshfit.MeshIOError, match="is a folder"):
        meshfit.load_mesh(tmp_path)
    (tmp_path / "noise.obj").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(meshfit.MeshIOError, match="is not a readable OBJ file"):
        meshfit.load_mesh(tmp_path / "noise.obj")


def test_grey_masks_and_bad_depth_are_named(tmp_path, spot_data):
    from meshfit.io import DatasetError

    data = _copy(spot_data, tmp_path / "d")
    m = meshfit.read_image(data / "mask" / "001.png")[..., 0]
    meshfit.write_image(data / "mask" / "001.png", (m > 0.5).astype(np.uint8) * 127)
    with pytest.raises(DatasetError, match=r"001.png: mask values reach only 127 of 255"):
        load_views(data)
    data = _copy(spot_data, tmp_path / "e")
    depth = np.load(data / "depth" / "002.npy")
    for bad, message in [
        ((depth * 1000).astype(np.uint16), "holds uint16 values"),
        (np.where(depth > 0, np.nan, 0).astype(np.float32), "non-finite"),
        (-depth, "negative depths"),
        (depth[None], r"must be an \[H, W\] depth map"),
    ]:
        np.save(data / "depth" / "002.npy", bad)
        with pytest.raises(DatasetError, match=message):
            load_views(data)


def test_config_values_are_checked():
    base = {"model": "free_mesh", "stages": [{}]}
    cases = [
        ({"stages": [{"weights": {}}]}, "every term is 0"),
        ({"stages": [{"weights": {"silhouette": 0.0}}]}, "every term is 0"),
        ({"stages": [{"weights": {"silhouette": -1.0}}]}, r"weights.silhouette must be a finite number >= 0"),
        ({"stages": [{"lr": float("nan")}]}, r"stages\[0\].lr: expected a finite number"),
        ({"init": {"rotation_search": 8}}, "only a rigid fit searches rotations"),
        ({"init": {"sphere_subdivisions": 9}}, "sphere_subdivisions must be in 0..6"),
        ({"stages": [{"remesh": 0.0001}]}, "remesh must be >= 0.005"),
        ({"stages": [{"steps": 10**7}]}, "steps must be in 0..100000"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=message):
            FitConfig.from_dict({**base, **change})
    # Given weights name the terms wanted: the rest are 0, not the silhouette's default 1.
    cfg = FitConfig.from_dict({**base, "stages": [{"weights": {"depth": 1.0}}]})
    assert cfg.stages[0].weights.silhouette == 0.0 and cfg.stages[0].weights.depth == 1.0
    assert FitConfig.from_dict(base).stages[0].weights.silhouette == 1.0


def test_floats_as_people_write_them(tmp_path):
    (tmp_path / "c.yaml").write_text("model: free_mesh\nstages:\n  - {lr: 1e-3, min_improvement: 5E-5}\n")
    cfg = FitConfig.from_dict(apply_overrides(load_yaml(tmp_path / "c.yaml"), ["stages.0.lam=2e1"]))
    assert cfg.stages[0].lr == 1e-3 and cfg.stages[0].min_improvement == 5e-5 and cfg.stages[0].lam == 20.0
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_overrides({}, ["stages=[1, 2"])


def test_cli_messages_not_tracebacks(tmp_path, spot_data, capsys):
    weights = ["--set", "stages.0.weights={silhouette: 0, depth: 0}"]
    cases = [
        (_tiny_fit(spot_data, tmp_path / "a", *weights), "every term is 0"),
        (_tiny_fit(spot_data, tmp_path / "a", "--set", "stages.0={steps: [1"), "not valid YAML"),
        (
            _tiny_fit(spot_data, tmp_path / "a", "--set", "stages.0.views_per_step=9"),
            "views_per_step is 9 but the data has 4 views",
        ),
        (["eval", str(SPOT), str(SPOT), "--samples", "0"], None),
        (["synth", str(SPOT), "--out", str(tmp_path / "s"), "--size", "100000"], "size must be 1..8192"),
        (["synth", str(SPOT), "--out", str(tmp_path / "s"), "--fov", "200"], "fov is a horizontal field"),
        (["synth", str(tmp_path), "--out", str(tmp_path / "s")], "is a folder; expected a mesh file"),
        (
            ["fit", "no_such_config", "--data", str(spot_data), "--out", str(tmp_path / "a")],
            "config not found",
        ),
    ]
    for argv, message in cases:
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: usage error
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2, (argv, err)
        assert "Traceback" not in err
        if message is not None:
            assert message in err, (argv, err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "s").exists()


def test_resolution_above_the_data_is_said(tmp_path, spot_data):
    out = tmp_path / "fit"
    assert main(_tiny_fit(spot_data, out)) == 0  # the shipped stages ask for 128..512 px; data has 32
    metrics = json.loads((out / "metrics.json").read_text())
    assert any("asked for 128 px; the data has 32 px" in w for w in metrics["warnings"])
    assert metrics["stages"][0]["resolution_note"].startswith("stage 'coarse' asked for 128 px")


def test_a_rigid_fit_of_the_wrong_mesh_is_reported_poor(tmp_path, spot_data, capsys):
    import trimesh

    box = trimesh.creation.box((0.2, 2.0, 0.2))  # Spot's size, nothing like its shape
    meshfit.save_mesh(tmp_path / "box.obj", meshfit.Mesh(np.asarray(box.vertices, np.float32), box.faces))
    steps = [a for i in range(3) for a in ("--set", f"stages.{i}.steps=3")]
    steps += ["--set", "init.rotation_search=0"]
    rc = main(["fit", "rigid_pose", "--data", str(spot_data), "--model", str(tmp_path / "box.obj"),
               "--out", str(tmp_path / "fit"), "--quiet", *steps])  # fmt: skip
    assert rc == 0
    assert "warning: poor fit" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert any(w.startswith("poor fit") for w in metrics["warnings"])


def test_report_leads_with_the_figures_and_shows_every_view(tmp_path, spot_data):
    out = tmp_path / "fit"
    assert main(_tiny_fit(spot_data, out, "--gt", str(SPOT))) == 0
    page = (out / "report.html").read_text()
    assert page.index("RMS point-to-mesh") < page.index("<h2>Stages")
    assert "meshfit fit free_mesh" in page or "fit free_mesh" in page
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"{i:03d}.png" for i in range(4)]
    from PIL import Image

    with Image.open(out / "overlays" / "000.png") as im:
        assert im.size[1] >= 256 and im.size[0] == 5 * im.size[1]  # upscaled; colour and depth panels
    history = json.loads((out / "history.json").read_text())
    assert set(history[0]["term_history"]) == {"silhouette", "depth"}


def test_shipped_config_and_yaml_round_trip():
    for name in meshfit.fitting.shipped_configs("fit"):
        data = load_yaml(meshfit.fitting.resolve_config(name))
        cfg = FitConfig.from_dict(data)
        assert FitConfig.from_dict(yaml.safe_load(yaml.safe_dump(meshfit.config.to_dict(cfg)))) == cfg
    assert (REPO / "configs" / "free_mesh.yaml").resolve() == meshfit.fitting.resolve_config("free_mesh")


# ---- found by review (issue 8, second pass) -----------------------------------------------------------


def test_overwrite_never_replaces_a_folder_holding_a_blendshape_models_meshes(tmp_path, spot_data, capsys):
    """A model JSON names meshes elsewhere: the folders holding them are inputs too."""
    shapes = _copy(spot_data, tmp_path / "shapes")  # a meshfit output (it has the marker)
    (tmp_path / "rig.json").write_text(
        json.dumps({"neutral": "shapes/mesh.obj", "identity": [], "expression": []})
    )
    steps = [a for i in range(3) for a in ("--set", f"stages.{i}.steps=1")]
    rc = main(["fit", "face_blendshapes", "--data", str(spot_data), "--model", str(tmp_path / "rig.json"),
               "--out", str(shapes), "--overwrite", "--quiet", *steps])  # fmt: skip
    assert rc == 2 and "contains the input" in capsys.readouterr().err
    assert (shapes / "mesh.obj").is_file()


def test_a_diverging_fit_is_a_message_and_hands_on_no_nan(tmp_path, spot_data, capsys):
    rc = main(_tiny_fit(spot_data, tmp_path / "a", "--set", "stages.0.lr=1e30"))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc == 0:  # the run kept its best (finite) parameters
        metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
        assert np.isfinite(metrics["images"]["mask_iou_mean"])
    else:
        assert rc == 2 and "non-finite" in err


def test_hostile_camera_files_are_named(tmp_path):
    base = {"fl_x": 50.0, "w": 64, "h": 64,
            "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}  # fmt: skip
    cases = [
        ({**base, "fl_x": None, "camera_angle_x": 0}, "camera_angle_x must be a field of view"),
        ({**base, "fl_x": "abc"}, "fl_x must be a finite number"),
        ({**base, "frames": [{"file_path": "a", "transform_matrix": np.zeros((4, 4)).tolist()}]}, "singular"),
    ]
    for data, message in cases:
        (tmp_path / "transforms.json").write_text(
            json.dumps({k: v for k, v in data.items() if v is not None})
        )
        with pytest.raises(meshfit.CameraError, match=message):
            load_cameras(tmp_path / "transforms.json")
    colmap = tmp_path / "colmap"
    colmap.mkdir()
    (colmap / "cameras.txt").write_text("1 PINHOLE 64 64 50\n")
    (colmap / "images.txt").write_text("1 1 0 0 0 0 0 4 1 a.png\n\n")
    with pytest.raises(meshfit.CameraError, match=r"camera 1 \(PINHOLE\) needs 4 parameters"):
        load_cameras(colmap)
    (colmap / "cameras.txt").write_text("1 PINHOLE 64 64 50 50 32 32\n")
    (colmap / "images.txt").write_text("1 0 0 0 0 0 0 4 1 a.png\n\n")
    with pytest.raises(meshfit.CameraError, match="has no rotation"):
        load_cameras(colmap)


def test_truncated_off_and_foreign_bytes_are_refused(tmp_path):
    import trimesh

    trimesh.creation.icosphere(2).export(tmp_path / "a.off")
    text = (tmp_path / "a.off").read_text()
    (tmp_path / "b.off").write_text(text[: int(0.8 * len(text))])
    with pytest.raises(meshfit.MeshIOError, match="header declares 162 vertices and 320 faces"):
        meshfit.load_mesh(tmp_path / "b.off")
    meshfit.write_image(tmp_path / "x.png", np.zeros((4, 4)))
    (tmp_path / "x.obj").write_bytes((tmp_path / "x.png").read_bytes())
    with pytest.raises(meshfit.MeshIOError, match="is not a readable OBJ file: its bytes are not mesh data"):
        meshfit.load_mesh(tmp_path / "x.obj")


def test_palette_masks_read_as_their_colours(tmp_path, spot_data):
    from PIL import Image

    data = _copy(spot_data, tmp_path / "d")
    mask = meshfit.read_image(data / "mask" / "000.png")[..., 0] > 0.5
    Image.fromarray(mask.astype(np.uint8) * 255).convert("P").save(data / "mask" / "000.png")
    with Image.open(data / "mask" / "000.png") as im:
        assert im.mode == "P"
    np.testing.assert_array_equal(load_views(data).mask[0], mask)


def test_one_view_or_one_frame_smoothness(tmp_path, spot_data, capsys):
    one = _copy(spot_data, tmp_path / "one")
    cams = json.loads((one / "cameras.json").read_text())
    cams["cameras"] = cams["cameras"][:1]
    (one / "cameras.json").write_text(json.dumps(cams))
    assert main(_tiny_fit(one, tmp_path / "a")) == 2
    assert "at least two views" in capsys.readouterr().err
    assert main(_tiny_fit(spot_data, tmp_path / "b", "--set", "smoothness=0.1")) == 0
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert any("smoothness" in w for w in metrics["warnings"])

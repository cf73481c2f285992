"""Every example runs, for a few steps on small images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.helpers import shared

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rigid_pose_example(tmp_path):
    report = _load("rigid_pose").main(
        ["--mesh", str(shared("controller")), "--size", "64", "--steps", "0.3", "--out", str(tmp_path)]
    )
    assert (tmp_path / "mesh.obj").exists() and (tmp_path / "params.json").exists()
    assert report["rotation_error_deg"] < 5.0  # from 20 degrees, in a few steps at 64^2


def test_free_mesh_example(tmp_path):
    args = ["--mesh", str(shared("spot")), "--size", "48", "--views", "4", "--steps", "0.3"]
    report = _load("free_mesh").main([*args, "--out", str(tmp_path)])
    assert (tmp_path / "mesh.obj").exists()
    assert report["rms_point_to_mesh"] < 0.05  # the sphere starts 0.27 away; a few steps at 48^2


def test_face_blendshapes_example(tmp_path):
    args = ["--model", str(shared("ict_neutral").parent), "--size", "64", "--steps", "0.2"]
    report = _load("face_blendshapes").main([*args, "--out", str(tmp_path)])
    assert (tmp_path / "params.json").exists()
    assert report["rotation_error_deg"] < 3.0 and report["vertex_error_mm"] < 3.0, (
        report
    )  # from 10 deg, 10 mm


def test_face_sequence_example():
    report = _load("face_sequence").main(
        ["--model", str(shared("ict_neutral").parent), "--frames", "2", "--size", "48", "--steps", "0.3"]
    )
    assert report["vertex_error_mm"] < 5.0, report

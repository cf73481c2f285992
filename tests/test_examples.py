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

"""`meshfit eval`: metrics on known cases (identical, shifted, scaled meshes) and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

import meshfit
from meshfit.cli import main
from meshfit.metrics import evaluate


@pytest.fixture(scope="module")
def sphere():
    s = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    return meshfit.Mesh(np.asarray(s.vertices + [5.0, 0, 0], np.float32), np.asarray(s.faces, np.int32))


def test_identical_meshes_score_perfectly(sphere):
    m = evaluate(sphere, sphere, num_samples=4000)
    assert m["chamfer_l1"] < 1e-6 and m["rms_point_to_mesh"] < 1e-6 and m["hausdorff"] < 1e-5
    assert m["fscore_1pct"] > 0.95 and m["normal_consistency"] > 0.99
    assert m["vertex_error_mean"] == 0.0 and m["vertex_error_max"] == 0.0
    np.testing.assert_allclose(m["scale"], 0.5, rtol=1e-5)


def test_offset_surface_distances_are_normalised(sphere):
    # grow the radius by 5% in file units: 0.1 / 2.0 = 0.05 in the normalised frame
    v = np.asarray(sphere.vertices)
    grown = meshfit.Mesh(((v - [5, 0, 0]) * 1.05 + [5, 0, 0]).astype(np.float32), sphere.faces)
    m = evaluate(grown, sphere, num_samples=4000)
    np.testing.assert_allclose(m["rms_point_to_mesh"], 0.05, rtol=0.05)
    np.testing.assert_allclose(m["chamfer_l1"], 0.05, rtol=0.05)
    np.testing.assert_allclose(m["vertex_error_mean"], 0.1, rtol=1e-3)  # file units
    # thresholds: 1% and 2% of the normalised bounding-box diagonal (2 sqrt 3): 0.035 and 0.069
    assert m["fscore_1pct"] < 0.05 and m["fscore_2pct"] > 0.95
    assert 0.045 < m["hausdorff"] < 0.055


def test_eval_cli(tmp_path, sphere, capsys):
    meshfit.save_mesh(tmp_path / "a.ply", sphere)
    assert main(["eval", str(tmp_path / "a.ply"), str(tmp_path / "a.ply"), "--samples", "2000"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"chamfer_l1", "chamfer_l2", "normal_consistency", "fscore_1pct", "fscore_2pct",
                        "hausdorff", "rms_point_to_mesh", "vertex_error_mean"}  # fmt: skip
    assert main(["eval", str(tmp_path / "missing.obj"), str(tmp_path / "a.ply")]) == 2

"""`meshfit render` / render_views: meshfit's images of a `meshfit synth` dataset match OpenGL's."""

from __future__ import annotations

import numpy as np
import pytest

import meshfit
from meshfit.cli import main
from tests.helpers import shared


@pytest.mark.parametrize("textured", [False, True])
def test_render_cli_matches_synth(tmp_path, textured):
    src = tmp_path / "synth"
    tex = ["--texture", str(shared("spot").with_name("spot_texture.png"))] if textured else []
    assert (
        main(["synth", str(shared("spot")), "--views", "3", "--size", "96x80", "--out", str(src), *tex]) == 0
    )
    out = tmp_path / "ours"
    argv = ["render", str(src / "mesh.obj"), "--cameras", str(src / "cameras.json"), "--out", str(out)]
    assert main(argv + (["--texture"] if textured else [])) == 0
    for name in ("000", "001", "002"):
        m_gl = meshfit.read_image(src / "mask" / f"{name}.png")[..., 0] > 0.5
        m = meshfit.read_image(out / "mask" / f"{name}.png")[..., 0] > 0.5
        assert (m & m_gl).sum() / (m | m_gl).sum() >= 0.995
        d_gl, d = np.load(src / "depth" / f"{name}.npy"), np.load(out / "depth" / f"{name}.npy")
        both = m & m_gl
        assert np.quantile(np.abs(d[both] - d_gl[both]) / d_gl[both], 0.99) < 1e-4
        rgb_gl = meshfit.read_image(src / "rgb" / f"{name}.png")
        rgb = meshfit.read_image(out / "rgb" / f"{name}.png")
        # same lighting model; textures differ a little more: GL and meshfit pick mip levels differently
        assert np.abs(rgb - rgb_gl)[both].mean() < (6 if textured else 2) / 255
        normal = meshfit.read_image(out / "normal" / f"{name}.png") * 2 - 1
        np.testing.assert_allclose(np.linalg.norm(normal[m], axis=-1), 1.0, atol=0.02)
        assert (normal[~m] == -1).all()  # background written black
    assert meshfit.load_cameras(out).names == ["000", "001", "002"]


def test_render_cli_errors(tmp_path, capsys):
    assert (
        main(
            [
                "render",
                str(shared("spot")),
                "--cameras",
                str(tmp_path / "none.json"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

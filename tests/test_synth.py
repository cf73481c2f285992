"""`meshfit synth`: the documented files, agreement with meshfit's cameras, determinism, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import meshfit
from meshfit.cli import main
from tests.helpers import shared


@pytest.fixture(scope="module")
def spot_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "spot"
    tex = shared("spot").with_name("spot_texture.png")
    argv = ["synth", str(shared("spot")), "--views", "3", "--size", "96x72", "--out", str(out), "--seed", "5"]
    assert main([*argv, "--texture", str(tex)]) == 0
    return out


def test_synth_writes_the_documented_files(spot_dataset):
    names = ["000", "001", "002"]
    for sub, ext in (("rgb", "png"), ("mask", "png"), ("depth", "npy")):
        assert sorted(p.name for p in (spot_dataset / sub).iterdir()) == [f"{n}.{ext}" for n in names]
    cs = meshfit.load_cameras(spot_dataset / "cameras.json")
    assert cs.names == names and (cs.cameras.width, cs.cameras.height) == (96, 72)
    rgb = meshfit.read_image(spot_dataset / "rgb" / "000.png")
    assert rgb.shape == (72, 96, 3)
    depth = np.load(spot_dataset / "depth" / "000.npy")
    assert depth.shape == (72, 96) and depth.dtype == np.float32
    info = json.loads((spot_dataset / "scene.json").read_text())
    assert info["seed"] == 5 and info["textured"] is True
    # the ground truth keeps the source's vertex order and frame
    gt = meshfit.load_mesh(spot_dataset / "mesh.obj")
    src = meshfit.load_mesh(shared("spot"))
    np.testing.assert_allclose(gt.vertices, src.vertices, atol=1e-6)
    np.testing.assert_array_equal(gt.faces, src.faces)
    assert gt.texture is not None


def test_masks_and_depth_agree_with_meshfit_projection(spot_dataset):
    cs = meshfit.load_cameras(spot_dataset)
    m = meshfit.load_mesh(spot_dataset / "mesh.obj")
    uv, z = cs.cameras.project(m.vertices)
    uv, z = np.asarray(uv), np.asarray(z)
    for i, name in enumerate(cs.names):
        mask = meshfit.read_image(spot_dataset / "mask" / f"{name}.png")[..., 0] > 0.5
        depth = np.load(spot_dataset / "depth" / f"{name}.npy")
        assert ((depth > 0) == mask).all()
        assert 0.05 < mask.mean() < 0.9
        # every vertex lands on the silhouette or inside it (its pixel or a neighbour is covered)
        ij = np.rint(uv[i]).astype(int)
        pad = np.pad(mask, 1)
        near = np.zeros(len(ij), bool)
        for dy in range(3):
            for dx in range(3):
                near |= pad[ij[:, 1] + dy, ij[:, 0] + dx]
        assert near.all()
        # depth: no covered pixel is nearer than the nearest vertex or farther than the farthest
        assert depth[mask].min() >= z[i].min() * (1 - 1e-4) and depth[mask].max() <= z[i].max() * (1 + 1e-4)
        # vertices in front (the minimum depth over their pixel neighbourhood) match to 1%, all views
        x0 = np.clip(ij, 1, [94, 70])
        patch = np.stack([depth[x0[:, 1] + dy, x0[:, 0] + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)
        front = (patch > 0).all(1) & (np.abs(patch.min(1) - z[i]) < 0.05 * z[i])
        assert front.sum() > 100
        rel = np.abs(np.median(patch[front], 1) - z[i][front]) / z[i][front]
        assert np.median(rel) < 5e-3


def test_synth_is_deterministic_for_a_seed(tmp_path, spot_dataset):
    out = tmp_path / "again"
    tex = shared("spot").with_name("spot_texture.png")
    argv = ["synth", str(shared("spot")), "--views", "3", "--size", "96x72", "--out", str(out), "--seed", "5"]
    assert main([*argv, "--texture", str(tex)]) == 0
    a = json.loads((spot_dataset / "cameras.json").read_text())
    b = json.loads((out / "cameras.json").read_text())
    assert a == b
    for sub in ("rgb", "mask"):
        np.testing.assert_array_equal(
            meshfit.read_image(out / sub / "001.png"), meshfit.read_image(spot_dataset / sub / "001.png")
        )
    np.testing.assert_array_equal(
        np.load(out / "depth" / "002.npy"), np.load(spot_dataset / "depth" / "002.npy")
    )


def test_other_seed_other_rig_and_untextured(tmp_path):
    out = tmp_path / "s"
    assert (
        main(["synth", str(shared("spot")), "--views", "2", "--size", "32", "--out", str(out), "--seed", "6"])
        == 0
    )
    cams = meshfit.load_cameras(out).cameras
    other = meshfit.sphere_rig(2, radius=1.0, width=32, height=32, seed=5)
    dirs = np.asarray(cams.R)[:, 2]
    assert np.abs(dirs - np.asarray(other.R)[:, 2]).max() > 0.1
    rgb = meshfit.read_image(out / "rgb" / "000.png")
    mask = meshfit.read_image(out / "mask" / "000.png")[..., 0] > 0.5
    assert (rgb[~mask] == 0).all() and rgb[mask].mean() > 0.1
    assert meshfit.load_mesh(out / "mesh.obj").texture is None


def test_synth_renders_vertex_colours(tmp_path):
    # A Mesh built in Python holds its colours as a read-only JAX array; they must reach pyrender
    # (trimesh used to drop them with a log line, and the mesh came out grey).
    src = meshfit.load_mesh(shared("spot"))
    red = np.tile(np.asarray([[0.9, 0.1, 0.1]], np.float32), (src.num_vertices, 1))
    mesh = meshfit.Mesh(src.vertices, src.faces, colors=red)
    rig = meshfit.sphere_rig(2, radius=3.0, width=32, height=32, seed=1)
    meshfit.synthesize(mesh, tmp_path / "s", cameras=rig, names=["a", "b"], seed=0)
    rgb = meshfit.read_image(tmp_path / "s" / "rgb" / "a.png")
    mask = meshfit.read_image(tmp_path / "s" / "mask" / "a.png")[..., 0] > 0.5
    r, g, b = rgb[mask].mean(0)
    assert r > 2 * g and r > 2 * b


def test_synth_glb_controller(tmp_path):
    out = tmp_path / "c"
    assert (
        main(
            [
                "synth",
                str(shared("controller")),
                "--views",
                "2",
                "--size",
                "48",
                "--out",
                str(out),
                "--texture",
            ]
        )
        == 0
    )
    assert (out / "mask" / "001.png").exists()


def test_synth_refuses_a_non_empty_folder_and_leaves_nothing_on_error(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert main(["synth", str(shared("spot")), "--views", "1", "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    assert main(["synth", str(bad), "--views", "1", "--out", str(tmp_path / "o")]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert (
        main(["synth", str(shared("blub")), "--views", "1", "--out", str(tmp_path / "o"), "--texture"]) == 2
    )
    assert "has no texture" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.obj", "full"]


def test_cli_rejects_bad_size():
    with pytest.raises(SystemExit):
        main(["synth", "x.obj", "--out", "o", "--size", "0x5"])


def test_load_views_reads_the_dataset_and_names_bad_files(spot_dataset, tmp_path):
    import shutil

    views = meshfit.load_views(spot_dataset)
    assert views.rgb.shape == (3, 72, 96, 3) and views.mask.shape == (3, 72, 96) and views.mask.dtype == bool
    assert views.depth.shape == (3, 72, 96)
    np.testing.assert_array_equal(views.mask, views.depth > 0)
    broken = tmp_path / "broken"
    shutil.copytree(spot_dataset, broken)
    (broken / "mask" / "001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask has no file for view '001'"):
        meshfit.load_views(broken)
    shutil.rmtree(broken / "mask")
    meshfit.write_image(broken / "rgb" / "002.png", np.zeros((10, 10, 3)))
    with pytest.raises(ValueError, match=r"002.png is 10x10 but its camera in .* says 96x72"):
        meshfit.load_views(broken)


def test_synth_lights_are_lambert_sums_with_ambient(tmp_path):
    # Two lights from opposite sides and a dim ambient: every covered pixel of a sphere is
    # sum_i I_i (1 - 0.04) / pi max(0, n . -d_i) + ambient, times the base colour, gamma 2.2
    # (the model render.lighting.studio_lighting writes for the default light).
    import trimesh

    from meshfit.render.lighting import BASE_COLOR

    s = trimesh.creation.icosphere(subdivisions=4)
    mesh = meshfit.Mesh(np.asarray(s.vertices, np.float32), np.asarray(s.faces, np.int32))
    lights = [((-0.3, -0.8, -0.5), 3.0), ((0.6, 0.2, 0.4), 1.2)]
    out = meshfit.synthesize(mesh, tmp_path / "s", views=2, size=(64, 64), seed=3, lights=lights, ambient=0.1)
    info = json.loads((out / "scene.json").read_text())
    assert [x["intensity"] for x in info["lights"]] == [3.0, 1.2] and info["ambient"] == 0.1
    unit = np.array([0.6, 0.2, 0.4]) / np.sqrt(0.56)
    np.testing.assert_allclose(info["lights"][1]["direction"], unit, atol=1e-6)
    views = meshfit.load_views(out)
    ij = np.stack(np.meshgrid(np.arange(64), np.arange(64)), -1).reshape(1, -1, 2).astype(np.float32)
    for n in range(2):
        mask = np.asarray(views.mask[n]).reshape(-1)
        depth = np.asarray(views.depth[n]).reshape(1, -1)
        points = np.asarray(views.cameras[n : n + 1].unproject(ij, depth))[0]
        normals = points / np.linalg.norm(points, axis=1, keepdims=True)
        linear = 0.1 + sum(i * 0.96 / np.pi * np.maximum(0, normals @ (-np.asarray(d) / np.linalg.norm(d)))
                           for d, i in lights)  # fmt: skip
        expected = np.clip(linear[:, None] * np.asarray(BASE_COLOR), 0, 1) ** (1 / 2.2)
        err = np.abs(np.asarray(views.rgb[n]).reshape(-1, 3) - expected)[mask]
        assert mask.sum() > 500 and np.median(err) < 0.01 and np.percentile(err, 95) < 0.03


def test_synth_light_options_and_their_errors(tmp_path, capsys):
    out = tmp_path / "lit"
    argv = ["synth", str(shared("spot")), "--views", "1", "--size", "24", "--out", str(out)]
    # A value with a leading minus is the light's, not an option (argparse alone refuses it).
    assert main([*argv, "--light", "-1,0,0", "--light", "0,1,0:1.5", "--ambient", "0"]) == 0
    info = json.loads((out / "scene.json").read_text())
    assert info["lights"] == [{"direction": [-1.0, 0.0, 0.0], "intensity": 3.0},
                              {"direction": [0.0, 1.0, 0.0], "intensity": 1.5}]  # fmt: skip
    assert info["ambient"] == 0.0
    for bad, message in (
        (["--light", "0,1"], "--light must be X,Y,Z"),
        (["--light", "0,0,0"], "non-zero 3-vector"),
        (["--light", "0,1,0:-2"], "intensity must be a finite number >= 0"),
        (["--light", "0,1,0:x"], "--light must be X,Y,Z"),
        (["--light", "1,0,0"] * 5, "1 to 4 directional lights"),
        (["--ambient", "nan"], "ambient must be a finite number >= 0"),
    ):
        assert main([*argv[:-1], str(tmp_path / "bad"), *bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

"""Mesh files through trimesh (vertex order kept, UV seams kept), writers, images, bad files."""

from __future__ import annotations

import numpy as np
import pytest

import meshfit
from meshfit import MeshError, MeshIOError
from tests.helpers import shared


@pytest.mark.parametrize(
    "name, num_v, num_f, num_uv",
    [
        ("spot", 2930, 5856, 3225),
        ("bob", 5344, 10688, 5647),
        ("blub", 10786, 21568, None),
        ("controller", 3739, 5945, 3739),
        ("ict_neutral", 9409, 18460, None),
        ("ict_head", 26719, 52220, None),  # 12 parts (face, eyes, teeth, ...) with materials: merged
    ],
)
def test_shared_meshes_load_in_file_order(name, num_v, num_f, num_uv):
    m = meshfit.load_mesh(shared(name))
    assert (m.num_vertices, m.num_faces) == (num_v, num_f)
    assert (m.uvs.shape[0] if m.uvs is not None else None) == num_uv
    if name != "controller":
        first = next(ln for ln in shared(name).read_text().splitlines() if ln.startswith("v "))
        np.testing.assert_allclose(m.vertices[0], [float(x) for x in first.split()[1:4]], rtol=1e-6)


def test_obj_of_several_parts_keeps_the_file_vertex_order(tmp_path):
    obj = "mtllib none.mtl\no a\nusemtl A\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nv 1 1 1\nf 1 2 3\n"
    obj += "o b\nusemtl B\nf 2 4 5\nf 1 3 4\n"
    (tmp_path / "parts.obj").write_text(obj)
    m = meshfit.load_mesh(tmp_path / "parts.obj")
    np.testing.assert_array_equal(m.vertices[4], [1, 1, 1])
    assert sorted(map(tuple, np.sort(m.faces, 1).tolist())) == [(0, 1, 2), (0, 2, 3), (1, 3, 4)]


def test_uv_seams_are_kept_without_splitting_vertices():
    m = meshfit.load_mesh(shared("spot"), texture=shared("spot").with_name("spot_texture.png"))
    assert m.texture.shape == (1024, 1024, 3)
    uf = np.asarray(m.uv_faces)
    assert not np.array_equal(uf, np.asarray(m.faces))  # seams: corners of one vertex with different UVs
    lines = shared("spot").read_text().splitlines()
    vt = np.array([[float(x) for x in ln.split()[1:3]] for ln in lines if ln.startswith("vt ")])
    f_vt = np.array(
        [[int(c.split("/")[1]) - 1 for c in ln.split()[1:]] for ln in lines if ln.startswith("f ")]
    )
    np.testing.assert_allclose(np.asarray(m.uvs)[uf], vt[f_vt], atol=1e-6)  # each corner keeps its file UV


def test_uvs_of_an_obj_with_more_uvs_than_vertices_and_no_material():
    """ICT-FaceKit's layout: quads, seams (9,547 ``vt`` for 9,409 ``v``), no .mtl. A load that
    keeps the vertex order still has every corner's file UV."""
    path = shared("ict_face/face_region/neutral_uv.obj")
    m = meshfit.load_mesh(path)
    plain = meshfit.load_mesh(shared("ict_face/face_region/neutral.obj"))
    np.testing.assert_array_equal(m.faces, plain.faces)
    np.testing.assert_array_equal(m.vertices, plain.vertices)
    assert m.uvs.shape == (9547, 2) and m.uv_faces.shape == m.faces.shape
    lines = path.read_text().splitlines()
    vt = np.array([[float(x) for x in ln.split()[1:3]] for ln in lines if ln.startswith("vt ")], np.float32)
    pairs = {(int(v) - 1, tuple(vt[int(t) - 1])) for ln in lines if ln.startswith("f ")
             for v, t in (c.split("/")[:2] for c in ln.split()[1:])}  # fmt: skip
    uvs = np.asarray(m.uvs, np.float32)
    corners = zip(np.asarray(m.faces).ravel(), np.asarray(m.uv_faces).ravel())
    assert all((int(v), tuple(uvs[t])) in pairs for v, t in corners)


def test_materials_give_textures():
    assert meshfit.load_mesh(shared("bob")).texture.shape == (2048, 2048, 3)
    assert meshfit.load_mesh(shared("controller")).texture.shape == (1024, 1024, 3)


def test_ict_shapes_stay_in_correspondence():
    a = meshfit.load_mesh(shared("ict_face/face_region/neutral.obj"))
    b = meshfit.load_mesh(shared("ict_face/face_region/jawOpen.obj"))
    np.testing.assert_array_equal(a.faces, b.faces)
    delta = np.linalg.norm(np.asarray(b.vertices) - np.asarray(a.vertices), axis=1)
    assert 0 < np.count_nonzero(delta > 1e-4) < a.num_vertices  # a local deformation, not a reorder


def _textured_quad():
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 2]], np.int32)
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5], [0.2, 0.7]], np.float32)
    uf = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 2]], np.int32)  # vertex 1 has two UVs: a seam
    tex = np.random.default_rng(0).uniform(size=(8, 8, 3)).astype(np.float32)
    return meshfit.Mesh(v, f, uvs=uvs, uv_faces=uf, texture=tex)


def test_obj_round_trip_keeps_seams_and_texture(tmp_path):
    m = _textured_quad()
    meshfit.save_mesh(tmp_path / "q.obj", m)
    assert (tmp_path / "q.mtl").exists() and (tmp_path / "q.png").exists()
    back = meshfit.load_mesh(tmp_path / "q.obj")
    np.testing.assert_allclose(back.vertices, m.vertices)
    np.testing.assert_array_equal(back.faces, m.faces)
    np.testing.assert_allclose(np.asarray(back.uvs)[back.uv_faces], np.asarray(m.uvs)[m.uv_faces], atol=1e-6)
    np.testing.assert_allclose(back.texture, m.texture, atol=1 / 255)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb", ".off", ".stl"])
def test_round_trip_keeps_vertex_order(tmp_path, suffix, icosphere):
    v, f = icosphere
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(v))  # an unusual order that a merging loader would change
    inv = np.argsort(perm)
    colors = rng.uniform(size=(len(v), 3)).astype(np.float32) if suffix in (".ply", ".obj") else None
    m = meshfit.Mesh(v[perm], inv[f].astype(np.int32), colors=colors)
    meshfit.save_mesh(tmp_path / f"m{suffix}", m)
    back = meshfit.load_mesh(tmp_path / f"m{suffix}")
    if suffix == ".stl":  # STL stores triangle soup: positions per face corner survive
        np.testing.assert_allclose(
            np.asarray(back.vertices)[back.faces], np.asarray(m.vertices)[m.faces], atol=1e-6
        )
        return
    np.testing.assert_allclose(back.vertices, m.vertices, atol=1e-6)
    np.testing.assert_array_equal(back.faces, m.faces)
    if colors is not None:
        np.testing.assert_allclose(back.colors, colors, atol=1 / 255 + 1e-6)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="mesh file not found"):
        meshfit.load_mesh(tmp_path / "nope.obj")
    (tmp_path / "a.xyz").write_text("1 2 3\n")
    with pytest.raises(MeshIOError, match="unsupported mesh format"):
        meshfit.load_mesh(tmp_path / "a.xyz")


def test_truncated_binary_files(tmp_path, icosphere):
    m = meshfit.Mesh(*icosphere)
    for suffix in (".ply", ".glb"):
        meshfit.save_mesh(tmp_path / f"m{suffix}", m)
        data = (tmp_path / f"m{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
        with pytest.raises(MeshIOError, match="is not a readable"):
            meshfit.load_mesh(tmp_path / f"cut{suffix}")


def test_obj_with_bad_index_and_without_faces(tmp_path):
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 9\n")
    with pytest.raises(MeshError):
        meshfit.load_mesh(tmp_path / "bad.obj")
    (tmp_path / "pts.obj").write_text("v 0 0 0\nv 1 0 0\n")
    with pytest.raises(MeshIOError, match="no faces|not a triangle mesh"):
        meshfit.load_mesh(tmp_path / "pts.obj")


def test_failed_write_leaves_no_file(tmp_path):
    m = _textured_quad()
    with pytest.raises(MeshIOError, match="UV seams"):
        meshfit.save_mesh(tmp_path / "q.glb", m)
    assert list(tmp_path.iterdir()) == []


def test_image_round_trip_and_errors(tmp_path):
    img = np.random.default_rng(0).uniform(size=(5, 7, 3)).astype(np.float32)
    meshfit.write_image(tmp_path / "a.png", img)
    np.testing.assert_allclose(meshfit.read_image(tmp_path / "a.png"), img, atol=0.5 / 255 + 1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        meshfit.write_image(tmp_path / "b.png", np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"image must be"):
        meshfit.write_image(tmp_path / "c.png", np.zeros((2, 2, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]

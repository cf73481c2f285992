"""Mesh: validation, triangulation, normals/areas against trimesh, gradients, surface sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from jax.test_util import check_grads

import meshfit
from meshfit import Mesh, MeshError, MeshWarning
from tests.helpers import shared

TRI_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
TRI_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)


# ---- validation: one test per bad input ------------------------------------------------------


def test_valid_mesh_builds():
    m = Mesh(TRI_V, TRI_F)
    assert m.num_vertices == 4 and m.num_faces == 4
    assert m.vertices.dtype == jnp.float32 and m.faces.dtype == jnp.int32


def test_nan_vertices_rejected():
    v = TRI_V.copy()
    v[2, 1] = np.nan
    with pytest.raises(MeshError, match=r"non-finite.*index 2"):
        Mesh(v, TRI_F)


def test_inf_vertices_rejected():
    v = TRI_V.copy()
    v[3, 0] = np.inf
    with pytest.raises(MeshError, match="non-finite"):
        Mesh(v, TRI_F)


def test_face_index_too_large_rejected():
    f = TRI_F.copy()
    f[1, 2] = 4
    with pytest.raises(MeshError, match=r"out of range: faces\[1\] = \[0, 1, 4\].*4 rows"):
        Mesh(TRI_V, f)


def test_negative_face_index_rejected():
    f = TRI_F.copy()
    f[0, 0] = -1
    with pytest.raises(MeshError, match="out of range"):
        Mesh(TRI_V, f)


def test_wrong_vertex_shape_rejected():
    with pytest.raises(MeshError, match=r"vertices must be \[V, 3\] float; got \(4, 2\)"):
        Mesh(TRI_V[:, :2], TRI_F)


def test_integer_vertices_rejected():
    with pytest.raises(MeshError, match="vertices must be a float array"):
        Mesh(TRI_V.astype(np.int32), TRI_F)


def test_float_faces_rejected():
    with pytest.raises(MeshError, match=r"faces must be \[F, 3\] int32; got \(4, 3\) float32"):
        Mesh(TRI_V, TRI_F.astype(np.float32))


def test_quads_rejected_with_hint():
    with pytest.raises(MeshError, match="triangulate"):
        Mesh(TRI_V, np.array([[0, 1, 2, 3]], np.int32))


def test_empty_vertices_rejected():
    with pytest.raises(MeshError, match="empty: vertices"):
        Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32))


def test_empty_faces_rejected():
    with pytest.raises(MeshError, match="empty: faces"):
        Mesh(TRI_V, np.zeros((0, 3), np.int32))


def test_colors_wrong_shape_rejected():
    with pytest.raises(MeshError, match="colors must be"):
        Mesh(TRI_V, TRI_F, colors=np.ones((3, 3), np.float32))


def test_uvs_without_index_mismatch_rejected():
    with pytest.raises(MeshError, match="pass uv_faces"):
        Mesh(TRI_V, TRI_F, uvs=np.zeros((5, 2), np.float32))


def test_uv_faces_out_of_range_rejected():
    with pytest.raises(MeshError, match=r"uv_faces index out of range"):
        Mesh(TRI_V, TRI_F, uvs=np.zeros((5, 2), np.float32), uv_faces=TRI_F + 2)


def test_texture_without_uvs_rejected():
    with pytest.raises(MeshError, match="need uvs"):
        Mesh(TRI_V, TRI_F, texture=np.ones((4, 4, 3), np.float32))


def test_repeated_index_face_warns():
    f = np.vstack([TRI_F, [[1, 1, 2]]]).astype(np.int32)
    with pytest.warns(MeshWarning, match="1 faces with repeated vertex indices"):
        Mesh(TRI_V, f)


def test_zero_area_face_warns():
    v = np.vstack([TRI_V, [[2, 0, 0]]]).astype(np.float32)  # collinear with vertices 0 and 1
    f = np.vstack([TRI_F, [[0, 1, 4]]]).astype(np.int32)
    with pytest.warns(MeshWarning, match="1 zero-area faces"):
        Mesh(v, f)


def test_mesh_is_a_pytree_through_jit_and_tree_map():
    m = Mesh(TRI_V, TRI_F)

    @jax.jit
    def scale(mesh):
        return Mesh(mesh.vertices * 2.0, mesh.faces)  # built from tracers: no value checks

    out = scale(m)
    np.testing.assert_allclose(out.vertices, 2 * TRI_V)
    shapes = jax.tree.map(lambda x: x.shape, m)  # unflatten with non-array leaves must not validate
    assert shapes.vertices == (4, 3)
    g = jax.grad(lambda v: jnp.sum(meshfit.face_areas(v, m.faces)))(m.vertices)
    assert g.shape == (4, 3)


# ---- triangulation ---------------------------------------------------------------------------


def test_triangulate_quads_and_polygons():
    quads = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(meshfit.triangulate(quads), [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    mixed = [[0, 1, 2], [3, 4, 5, 6, 7]]
    np.testing.assert_array_equal(meshfit.triangulate(mixed), [[0, 1, 2], [3, 4, 5], [3, 5, 6], [3, 6, 7]])
    assert meshfit.triangulate(mixed).dtype == np.int32


def test_triangulate_rejects_short_polygon():
    with pytest.raises(MeshError, match="polygon 1 has 2 vertices"):
        meshfit.triangulate([[0, 1, 2], [3, 4]])


def test_triangulated_quad_mesh_keeps_normal_direction():
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    f = meshfit.triangulate(np.array([[0, 1, 2, 3]]))
    n = meshfit.face_normals(jnp.asarray(v), jnp.asarray(f))
    np.testing.assert_allclose(n, [[0, 0, 1], [0, 0, 1]], atol=1e-7)


# ---- geometry against trimesh on the shared meshes --------------------------------------------


@pytest.mark.parametrize("name", ["spot", "bob", "blub", "ict_neutral"])
def test_normals_and_areas_match_trimesh(name):
    path = shared(name)
    tm = trimesh.load(path, process=False, maintain_order=True)
    m = meshfit.load_mesh(path)
    np.testing.assert_array_equal(m.faces, tm.faces)
    np.testing.assert_allclose(
        meshfit.face_normals(m.vertices, m.faces), tm.face_normals, atol=1e-4
    )  # float32 vs float64
    np.testing.assert_allclose(meshfit.face_areas(m.vertices, m.faces), tm.area_faces, rtol=1e-4, atol=1e-9)
    # trimesh's own angle-weighted vertex normals (not normals stored in the file).
    ref = trimesh.geometry.weighted_vertex_normals(
        len(tm.vertices), tm.faces, tm.face_normals, tm.face_angles
    )
    np.testing.assert_allclose(meshfit.vertex_normals(m.vertices, m.faces), ref, atol=2e-4)


def test_area_weighted_vertex_normals_on_sphere_point_outward(icosphere):
    v, f = icosphere
    n = np.asarray(meshfit.vertex_normals(jnp.asarray(v), jnp.asarray(f), weighting="area"))
    radial = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert (np.sum(n * radial, axis=1) > 0.99).all()


def test_vertex_normals_rejects_unknown_weighting(icosphere):
    v, f = icosphere
    with pytest.raises(ValueError, match="weighting must be"):
        meshfit.vertex_normals(v, f, weighting="cosine")


# ---- gradients -------------------------------------------------------------------------------


def test_geometry_gradients_match_finite_differences(x64, icosphere):
    v, f = icosphere
    v = jnp.asarray(v, jnp.float64) * jnp.array([[1.0, 0.7, 1.3]])
    f = jnp.asarray(f)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(v.shape[0], 3)))
    check_grads(lambda x: jnp.sum(meshfit.face_areas(x, f) ** 2), (v,), order=2, modes=["rev"])
    check_grads(lambda x: jnp.sum(meshfit.face_normals(x, f)[:, 0]), (v,), order=1, modes=["rev", "fwd"])
    for weighting in ("angle", "area"):
        check_grads(
            lambda x, weighting=weighting: jnp.sum(meshfit.vertex_normals(x, f, weighting=weighting) * w),
            (v,),
            order=1,
            modes=["rev"],
        )


def test_degenerate_faces_have_finite_gradients():
    v = jnp.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0]], jnp.float32)  # face 0 is a sliver
    f = jnp.array([[0, 1, 2], [0, 0, 3], [0, 1, 3]], jnp.int32)
    fns = [
        lambda x: jnp.sum(meshfit.face_normals(x, f)),
        lambda x: jnp.sum(meshfit.face_areas(x, f)),
        lambda x: jnp.sum(meshfit.vertex_normals(x, f)),
        lambda x: jnp.sum(meshfit.vertex_normals(x, f, weighting="area")),
    ]
    for fn in fns:
        g = jax.grad(fn)(v)
        assert np.isfinite(np.asarray(g)).all()
    assert np.isfinite(np.asarray(jax.jacfwd(lambda x: meshfit.face_normals(x, f))(v))).all()


# ---- surface sampling ------------------------------------------------------------------------


def test_sample_surface_is_area_weighted_and_on_the_surface():
    # Two triangles with areas 1.5 and 0.5: three quarters of the samples land on the first.
    v = jnp.array([[0, 0, 0], [3, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]], jnp.float32)
    f = jnp.array([[0, 1, 2], [3, 4, 5]], jnp.int32)
    s = meshfit.sample_surface(jax.random.key(0), v, f, 20000)
    frac = float(jnp.mean(s.face_index == 0))
    assert abs(frac - 0.75) < 0.015
    b = np.asarray(s.barycentric)
    assert (b >= -1e-6).all() and np.allclose(b.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(
        s.points, np.einsum("pk,pkd->pd", b, np.asarray(v)[np.asarray(f)[s.face_index]]), atol=1e-6
    )
    # uniform within a face: the mean of samples on face 0 is its centroid
    np.testing.assert_allclose(
        np.asarray(s.points)[np.asarray(s.face_index) == 0].mean(0), [1, 1 / 3, 0], atol=0.03
    )


def test_sample_surface_deterministic_and_differentiable(icosphere):
    v, f = jnp.asarray(icosphere[0]), jnp.asarray(icosphere[1])
    key = jax.random.key(3)
    a = meshfit.sample_surface(key, v, f, 64)
    b = jax.jit(meshfit.sample_surface, static_argnums=3)(key, v, f, 64)
    np.testing.assert_array_equal(a.face_index, b.face_index)
    g = jax.grad(lambda x: jnp.sum(meshfit.sample_surface(key, x, f, 64).points[:, 0]))(v)
    # d(sum of x)/d(vertex x) = total barycentric weight the vertex receives; sums to P.
    np.testing.assert_allclose(float(jnp.sum(g[:, 0])), 64.0, rtol=1e-5)
    assert float(jnp.abs(g[:, 1:]).max()) == 0.0

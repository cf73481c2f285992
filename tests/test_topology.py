"""Topology (edges, adjacency, one-rings) and the uniform / cotangent Laplacians."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import meshfit
from meshfit import Topology
from tests.helpers import shared


def test_closed_mesh_counts(icosphere):
    v, f = icosphere
    t = Topology.from_faces(f, len(v))
    assert t.num_edges == 3 * len(f) // 2
    assert len(v) - t.num_edges + len(f) == 2  # Euler characteristic of a sphere
    assert t.boundary_edges().size == 0
    e = np.asarray(t.edges)
    assert (e[:, 0] < e[:, 1]).all()
    assert set(np.asarray(t.degrees()).tolist()) == {5, 6}


def test_face_edges_and_edge_faces_agree(icosphere):
    v, f = icosphere
    t = Topology.from_faces(f, len(v))
    e, fe, ef = np.asarray(t.edges), np.asarray(t.face_edges), np.asarray(t.edge_faces)
    for fi, face in enumerate(f):
        for k in range(3):
            a, b = sorted((face[k], face[(k + 1) % 3]))
            assert tuple(e[fe[fi, k]]) == (a, b)
            assert fi in ef[fe[fi, k]]
    assert (ef[:, 0] != ef[:, 1]).all()


def test_boundary_and_one_ring_on_grid(grid):
    v, f = grid  # 5 x 5 vertices, 16 cells, 32 triangles
    t = Topology.from_faces(f, len(v))
    assert t.num_edges == 2 * 5 * 4 + 16
    assert t.boundary_edges().size == 16
    assert (np.asarray(t.edge_faces)[t.boundary_edges(), 1] == -1).all()
    # vertex 6 (row 1, col 1) is interior: neighbours along the grid lines and one diagonal each way
    np.testing.assert_array_equal(t.one_ring(6), [0, 1, 5, 7, 11, 12])
    np.testing.assert_array_equal(t.one_ring(0), [1, 5, 6])


def test_topology_rejects_bad_faces():
    with pytest.raises(meshfit.MeshError, match="faces index outside"):
        Topology.from_faces(np.array([[0, 1, 5]]), 3)
    with pytest.raises(meshfit.MeshError, match="faces must be"):
        Topology.from_faces(np.array([[0.0, 1.0, 2.0]]), 3)


def test_uniform_laplacian_is_degree_minus_adjacency(icosphere):
    v, f = icosphere
    t = Topology.from_faces(f, len(v))
    L = meshfit.uniform_laplacian(t)
    dense = np.asarray(L.to_dense())
    adj = np.zeros((len(v), len(v)))
    for a, b, c in f:
        adj[[a, b, c], [b, c, a]] = adj[[b, c, a], [a, b, c]] = 1
    np.testing.assert_array_equal(dense, np.diag(adj.sum(1)) - adj)
    x = np.random.default_rng(0).normal(size=(len(v), 3)).astype(np.float32)
    np.testing.assert_allclose(jax.jit(lambda x: L @ x)(x), dense @ x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(L @ jnp.ones(len(v)), 0, atol=1e-6)  # rows sum to zero


def _dense_cotangent(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Textbook cotangent Laplacian, one face and one angle at a time."""
    L = np.zeros((len(v), len(v)))
    for face in f:
        for k in range(3):
            i, j, o = face[(k + 1) % 3], face[(k + 2) % 3], face[k]
            a, b = v[i] - v[o], v[j] - v[o]
            cot = np.dot(a, b) / np.linalg.norm(np.cross(a, b))
            L[i, j] -= cot / 2
            L[j, i] -= cot / 2
            L[i, i] += cot / 2
            L[j, j] += cot / 2
    return L


def test_cotangent_laplacian_matches_dense_reference(grid, icosphere):
    for v, f in (grid, icosphere):
        v64 = v.astype(np.float64)
        L = meshfit.cotangent_laplacian(jnp.asarray(v), jnp.asarray(f))
        dense = np.asarray(L.to_dense())
        ref = _dense_cotangent(v64, f)
        np.testing.assert_allclose(dense, ref, atol=1e-5)
        np.testing.assert_allclose(dense, dense.T, atol=1e-6)
        np.testing.assert_allclose(dense.sum(1), 0, atol=1e-5)
        x = np.random.default_rng(2).normal(size=(len(v), 2)).astype(np.float32)
        np.testing.assert_allclose(L @ jnp.asarray(x), ref @ x, atol=1e-4)


def test_cotangent_laplacian_has_linear_precision(grid):
    # The cotangent Laplacian of a linear function vanishes at interior vertices of a flat mesh.
    v, f = grid
    L = meshfit.cotangent_laplacian(jnp.asarray(v), jnp.asarray(f))
    lin = 2.0 * v[:, 0] - 3.0 * v[:, 1] + 1.0
    out = np.asarray(L @ jnp.asarray(lin))
    interior = (v[:, 0] > 0) & (v[:, 0] < 4) & (v[:, 1] > 0) & (v[:, 1] < 4)
    np.testing.assert_allclose(out[interior], 0, atol=1e-4)
    assert np.abs(out[~interior]).max() > 0.1  # and the test can tell


def test_cotangent_laplacian_gradient_and_degenerate_safety(x64, icosphere):
    v, f = jnp.asarray(icosphere[0], jnp.float64), jnp.asarray(icosphere[1])
    check_grads(lambda x: jnp.sum((meshfit.cotangent_laplacian(x, f) @ x) ** 2), (v,), order=1, modes=["rev"])
    vd = jnp.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], jnp.float64)
    fd = jnp.array([[0, 1, 2]], jnp.int32)
    g = jax.grad(lambda x: jnp.sum(meshfit.cotangent_laplacian(x, fd) @ x))(vd)
    assert np.isfinite(np.asarray(g)).all()


def test_laplacian_rejects_wrong_rows(icosphere):
    v, f = icosphere
    L = meshfit.uniform_laplacian(Topology.from_faces(f, len(v)))
    with pytest.raises(ValueError, match="42 rows"):
        L @ jnp.ones(10)


def test_topology_of_a_shared_mesh():
    m = meshfit.load_mesh(shared("ict_neutral"))
    t = Topology.from_faces(m.faces, m.num_vertices)
    # open face region: genus 0 with 4 boundary loops -> Euler characteristic -2
    assert m.num_vertices - t.num_edges + m.num_faces == -2
    assert t.boundary_edges().size > 0
    assert int(np.asarray(t.edge_face_count).max()) == 2

"""Mesh connectivity (edges, adjacency, one-rings) and Laplacians as jit-able matvecs.

Connectivity depends only on the faces, so ``Topology.from_faces`` runs once in NumPy, outside
``jit``, and the result (a pytree of int32 arrays) is passed into jitted code. Laplacians are
``LaplacianOp`` pytrees applied with segment sums: memory O(E), never a dense V x V matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meshfit._pytree import pytree_dataclass, static_field
from meshfit.mesh import MeshError

__all__ = ["LaplacianOp", "Topology", "cotangent_laplacian", "uniform_laplacian"]


@pytree_dataclass
class Topology:
    """Connectivity of a triangle mesh (E unique undirected edges).

    Fields:
        edges: [E, 2] int32, vertex pairs with edges[:, 0] < edges[:, 1], sorted
            lexicographically.
        face_edges: [F, 3] int32, face_edges[f, k] is the edge from corner k to corner k+1 (mod 3).
        edge_faces: [E, 2] int32, the faces on each side of an edge; -1 in column 1 for a
            boundary edge. For a non-manifold edge (more than two faces) the first two faces.
        edge_face_count: [E] int32, number of faces using each edge (1 on the boundary, 2 inside).
        ring_offsets: [V + 1] int32 and ring_indices: [2E] int32, the one-ring neighbours of
            vertex v are ring_indices[ring_offsets[v]:ring_offsets[v + 1]] (ascending; CSR).
        num_vertices: V (static).
    """

    edges: jax.Array
    face_edges: jax.Array
    edge_faces: jax.Array
    edge_face_count: jax.Array
    ring_offsets: jax.Array
    ring_indices: jax.Array
    num_vertices: int = static_field()

    @classmethod
    def from_faces(cls, faces, num_vertices: int) -> Topology:
        """Connectivity of ``faces`` ([F, 3] int, concrete) over ``num_vertices`` vertices."""
        f = np.asarray(faces)
        if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
            raise MeshError(f"faces must be [F, 3] int32; got {f.shape} {f.dtype}")
        if f.size and (f.min() < 0 or f.max() >= num_vertices):
            raise MeshError(f"faces index outside 0..{num_vertices - 1}")
        num_faces = f.shape[0]
        half = np.stack([f, np.roll(f, -1, axis=1)], axis=-1).reshape(-1, 2)  # [3F, 2]
        und = np.sort(half, axis=1)
        edges, inverse, counts = np.unique(und, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        face_edges = inverse.reshape(num_faces, 3)
        face_of_half = np.repeat(np.arange(num_faces), 3)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        edge_faces = np.full((edges.shape[0], 2), -1, dtype=np.int64)
        edge_faces[:, 0] = face_of_half[order[starts]]
        two = counts >= 2
        edge_faces[two, 1] = face_of_half[order[starts[two] + 1]]

        nbr_src = np.concatenate([edges[:, 0], edges[:, 1]])
        nbr_dst = np.concatenate([edges[:, 1], edges[:, 0]])
        o = np.lexsort((nbr_dst, nbr_src))
        ring_indices = nbr_dst[o]
        ring_offsets = np.zeros(num_vertices + 1, dtype=np.int64)
        np.add.at(ring_offsets, nbr_src + 1, 1)
        ring_offsets = np.cumsum(ring_offsets)
        i32 = lambda a: jnp.asarray(a, dtype=jnp.int32)  # noqa: E731
        return cls(
            edges=i32(edges.reshape(-1, 2)),
            face_edges=i32(face_edges),
            edge_faces=i32(edge_faces),
            edge_face_count=i32(counts),
            ring_offsets=i32(ring_offsets),
            ring_indices=i32(ring_indices),
            num_vertices=int(num_vertices),
        )

    @property
    def num_edges(self) -> int:
        return self.edges.shape[0]

    def boundary_edges(self) -> np.ndarray:
        """Indices [B] of the edges used by exactly one face (concrete NumPy)."""
        return np.flatnonzero(np.asarray(self.edge_face_count) == 1)

    def one_ring(self, v: int) -> np.ndarray:
        """The neighbours of vertex ``v`` (concrete NumPy, ascending)."""
        o = np.asarray(self.ring_offsets)
        return np.asarray(self.ring_indices)[o[v] : o[v + 1]]

    def degrees(self) -> jax.Array:
        """[V] int32 number of neighbours of each vertex."""
        return jnp.diff(self.ring_offsets)


@pytree_dataclass
class LaplacianOp:
    """A symmetric graph Laplacian ``L = D - W`` stored as K weighted pairs (i, j, w_ij).

    Each pair contributes ``w * (x_i - x_j)`` to row i and ``w * (x_j - x_i)`` to row j, so
    rows sum to zero and L is symmetric; pairs may repeat (their weights add). With positive
    weights L is positive semi-definite. Apply it with ``L @ x`` or ``L.matvec(x)``.

    Fields: i, j: [K] int32; w: [K] float; num_vertices: V (static).
    """

    i: jax.Array
    j: jax.Array
    w: jax.Array
    num_vertices: int = static_field()

    def matvec(self, x: jax.Array) -> jax.Array:
        """``L x`` for x: [V] or [V, C] float; returns the same shape."""
        if x.shape[0] != self.num_vertices:
            raise ValueError(f"x must have {self.num_vertices} rows; got {tuple(x.shape)}")
        w = self.w.reshape((-1,) + (1,) * (x.ndim - 1))
        d = w * (x[self.i] - x[self.j])
        n = self.num_vertices
        return jax.ops.segment_sum(d, self.i, num_segments=n) - jax.ops.segment_sum(d, self.j, num_segments=n)

    def __matmul__(self, x: jax.Array) -> jax.Array:
        return self.matvec(x)

    def diagonal(self) -> jax.Array:
        """[V] the diagonal of L (the weighted degrees)."""
        n = self.num_vertices
        return jax.ops.segment_sum(self.w, self.i, num_segments=n) + jax.ops.segment_sum(
            self.w, self.j, num_segments=n
        )

    def to_dense(self) -> jax.Array:
        """[V, V] dense matrix, for tests and small meshes only."""
        n = self.num_vertices
        a = jnp.zeros((n, n), self.w.dtype)
        a = a.at[self.i, self.j].add(-self.w).at[self.j, self.i].add(-self.w)
        return a + jnp.diag(self.diagonal())


def uniform_laplacian(topology: Topology) -> LaplacianOp:
    """Combinatorial Laplacian ``L = D - A``: weight 1 per unique edge, (Lx)_i = deg_i x_i - sum x_j."""
    e = topology.edges
    return LaplacianOp(e[:, 0], e[:, 1], jnp.ones(e.shape[0], jnp.float32), topology.num_vertices)


def cotangent_laplacian(vertices: jax.Array, faces: jax.Array) -> LaplacianOp:
    """Cotangent Laplacian: w_ij = (cot a_ij + cot b_ij) / 2 over the angles opposite edge ij.

    No mass matrix (L x approximates 2 A_i times the Laplace-Beltrami operator at vertex i, up
    to sign). Weights depend on ``vertices`` and are differentiable; obtuse angles give negative
    weights, as usual for this operator. Degenerate corners get weight 0 instead of inf.

    Args:
        vertices: [V, 3] float.
        faces: [F, 3] int32.
    Returns:
        LaplacianOp with K = 3F pairs (each interior edge appears once per adjacent face).
    """
    c = vertices[faces]  # [F, 3, 3]
    # The angle at corner k is opposite the edge (k+1, k+2).
    a = jnp.roll(c, -1, axis=1) - c
    b = jnp.roll(c, -2, axis=1) - c
    dot = jnp.sum(a * b, axis=-1)
    cross_sq = jnp.sum(jnp.cross(a, b) ** 2, axis=-1)
    ok = cross_sq > 0
    # Double where: keep sqrt's infinite derivative at 0 out of the gradient of degenerate faces.
    cot = jnp.where(ok, dot / jnp.sqrt(jnp.where(ok, cross_sq, 1.0)), 0.0)
    i = jnp.roll(faces, -1, axis=1).reshape(-1)
    j = jnp.roll(faces, -2, axis=1).reshape(-1)
    return LaplacianOp(i, j, 0.5 * cot.reshape(-1), vertices.shape[0])

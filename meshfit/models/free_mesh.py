"""Free triangle meshes with the large-steps parameterisation (Nicolet et al. 2021).

Vertex positions x are not optimised directly: the optimiser moves u, and x = (I + lam L)^-1 u
with L the uniform (combinatorial) Laplacian. Gradients reaching u are smoothed by the inverse,
so steps spread over the surface instead of tangling it. JAX has no sparse Cholesky; the solve
is a jitted conjugate-gradient iteration on L's segment-sum matvec (``jax.scipy.sparse.linalg.cg``,
differentiated implicitly: the backward pass is one more solve). Pair it with
``meshfit.optim.adam_uniform``, the optimiser the paper uses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meshfit._pytree import pytree_dataclass, static_field
from meshfit.mesh import Mesh
from meshfit.topology import LaplacianOp, Topology, uniform_laplacian

__all__ = ["FreeMeshModel"]


@pytree_dataclass
class FreeMeshModel:
    """A free mesh with fixed connectivity and large-steps parameters.

    Fields:
        faces: [F, 3] int32.
        laplacian: uniform Laplacian of the connectivity (``LaplacianOp``).
        lam: smoothing strength lambda (static; Nicolet et al. use 10-100; larger = smoother steps).
        tol, maxiter: conjugate-gradient tolerance (relative residual) and iteration cap (static).
    Params: {"u": [V, 3]} with vertices = (I + lam L)^-1 u.
    """

    faces: jax.Array
    laplacian: LaplacianOp
    lam: float = static_field(default=19.0)
    tol: float = static_field(default=1e-6)
    maxiter: int = static_field(default=500)

    @classmethod
    def from_mesh(
        cls, mesh: Mesh, *, lam: float = 19.0, tol: float = 1e-6, maxiter: int = 500
    ) -> FreeMeshModel:
        if lam < 0:
            raise ValueError(f"lam must be >= 0; got {lam}")
        topo = Topology.from_faces(mesh.faces, mesh.num_vertices)
        return cls(mesh.faces, uniform_laplacian(topo), float(lam), float(tol), int(maxiter))

    def system(self, x: jax.Array) -> jax.Array:
        """(I + lam L) x for x [V, 3]."""
        return x + self.lam * (self.laplacian @ x)

    def init_params(self, vertices: jax.Array) -> dict:
        """Parameters that reproduce ``vertices`` [V, 3]."""
        return {"u": self.system(jnp.asarray(vertices))}

    @property
    def num_vertices(self) -> int:
        return self.laplacian.num_vertices

    def vertices(self, params: dict) -> jax.Array:
        """[V, 3] vertex positions: the CG solve of (I + lam L) x = u (warm-started at u)."""
        u = params["u"]
        x, _ = jax.scipy.sparse.linalg.cg(self.system, u, x0=u, tol=self.tol, maxiter=self.maxiter)
        return x

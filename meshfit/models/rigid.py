"""Rigid 6-DoF pose (and optional scale) of a known mesh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meshfit._pytree import pytree_dataclass
from meshfit.mesh import Mesh
from meshfit.models.rotation import so3_exp

__all__ = ["RigidModel"]


@pytree_dataclass
class RigidModel:
    """A known mesh placed in the world by a rotation, translation and optional scale.

    ``vertices(params) = scale * template @ R^T + t`` with ``R = exp(params["rotation"]) @ R0``:
    the rotation is an axis-angle *increment* on a base rotation ``R0``, so the parameters stay
    near zero during a fit and never meet the axis-angle singularity at pi (re-base with
    ``rebased`` between stages if a fit turns far).

    Fields:
        template: [V, 3] float, mesh vertices in the object's own frame.
        faces: [F, 3] int32.
        R0: [3, 3] base rotation (object -> world).
        uvs, uv_faces: the mesh's texture coordinates [T, 2] and their faces [F, 3], or None
            (a photometric fit with a UV texture samples its albedo through them).
    Params (``init_params``): rotation [3] (radians), translation [3] (world units),
    log_scale [] (scale = exp(log_scale); held at 0 unless the fit frees it).
    """

    template: jax.Array
    faces: jax.Array
    R0: jax.Array
    uvs: jax.Array | None = None
    uv_faces: jax.Array | None = None

    @classmethod
    def from_mesh(cls, mesh: Mesh, *, rotation=None) -> RigidModel:
        R0 = np.eye(3, dtype=np.float32) if rotation is None else np.asarray(rotation, np.float32)
        if R0.shape != (3, 3):
            raise ValueError(f"rotation must be [3, 3]; got {R0.shape}")
        return cls(mesh.vertices, mesh.faces, jnp.asarray(R0), mesh.uvs, mesh.uv_faces)

    def init_params(self, *, translation=(0.0, 0.0, 0.0), scale: float = 1.0) -> dict:
        dt = self.template.dtype
        return {
            "rotation": jnp.zeros(3, dt),
            "translation": jnp.asarray(translation, dt),
            "log_scale": jnp.asarray(np.log(scale), dt),
        }

    def rotation(self, params: dict) -> jax.Array:
        """[3, 3] object -> world rotation."""
        return so3_exp(params["rotation"]) @ self.R0

    def object_to_world(self, params: dict) -> jax.Array:
        """[4, 4] similarity transform object -> world (scale folded into the 3 x 3 block)."""
        A = jnp.exp(params["log_scale"]) * self.rotation(params)
        top = jnp.concatenate([A, params["translation"][:, None]], 1)
        return jnp.concatenate([top, jnp.array([[0.0, 0.0, 0.0, 1.0]], A.dtype)], 0)

    @property
    def num_vertices(self) -> int:
        return self.template.shape[0]

    def vertices(self, params: dict) -> jax.Array:
        """[V, 3] world-space vertices."""
        s = jnp.exp(params["log_scale"])
        return s * self.template @ self.rotation(params).T + params["translation"][None, :]

    def rebased(self, params: dict) -> tuple[RigidModel, dict]:
        """Fold the current rotation into R0 and zero the increment (same vertices)."""
        model = RigidModel(self.template, self.faces, self.rotation(params), self.uvs, self.uv_faces)
        return model, {**params, "rotation": jnp.zeros_like(params["rotation"])}

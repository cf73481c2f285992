"""Input checks shared by the render ops, made while shapes and values are concrete."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_faces"]


def check_faces(faces: jax.Array, num_vertices: int) -> None:
    """faces [F, 3] int, with indices in 0..num_vertices-1 when concrete.

    Under ``jit`` the values are traced and cannot be checked here: the native kernels check
    them again and raise; the pure-JAX path then clamps out-of-range indices (JAX's gather
    semantics), so out-of-range faces under ``jit`` on that path give wrong images, not errors.
    """
    if faces.ndim != 2 or faces.shape[1] != 3 or not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"faces must be [F, 3] int32; got {tuple(faces.shape)} {faces.dtype}")
    if not isinstance(faces, jax.core.Tracer) and faces.size:
        f = np.asarray(faces)  # numpy: under an outer jit, jnp.max would trace
        if f.min() < 0 or f.max() >= num_vertices:
            raise ValueError(f"faces index outside 0..{num_vertices - 1} (found {f.min()}..{f.max()})")

"""Shared test set-up: strict numerics, small meshes, the shared real meshes."""

from __future__ import annotations

import os
import tempfile

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# One compilation cache for the test workers and the processes tests start (training runs that are
# killed and resumed, or split over processes, compile the same steps): the suite's time is mostly
# XLA compiling. Keyed by the program and the jaxlib version, so it never hands out a stale program.
_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"meshfit-tests-jax-cache-{os.getuid()}")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture
def icosphere():
    """A closed genus-0 mesh: (vertices [42, 3] float32, faces [80, 3] int32)."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=1)
    return np.asarray(s.vertices, np.float32), np.asarray(s.faces, np.int32)


@pytest.fixture
def grid():
    """A flat open n x n vertex grid in the z = 0 plane, slightly jittered: (vertices, faces)."""
    n = 5
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="xy")
    v = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1)
    interior = (v[:, 0] > 0) & (v[:, 0] < n - 1) & (v[:, 1] > 0) & (v[:, 1] < n - 1)
    v[interior, :2] += rng.uniform(-0.2, 0.2, (interior.sum(), 2))
    f = []
    for j in range(n - 1):
        for i in range(n - 1):
            a, b, c, d = j * n + i, j * n + i + 1, (j + 1) * n + i + 1, (j + 1) * n + i
            f += [(a, b, c), (a, c, d)]
    return v.astype(np.float32), np.asarray(f, np.int32)


@pytest.fixture
def x64():
    """Run a test in float64 (finite-difference gradient checks)."""
    with jax.enable_x64(True):
        yield

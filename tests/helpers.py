"""Test helpers: where the shared real meshes are, and what must not skip in CI.

In CI (``CI`` set, as ``.ci/run`` does) or with ``MESHFIT_STRICT_TESTS=1`` nothing skips for a
missing prerequisite: absent shared data or unloadable native kernels fail the test, so a broken
kernel build or a missing data copy can never pass green. Elsewhere those tests skip, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MESHFIT_SHARED_DATA", REPO.parent / "shared" / "data"))
SPOT = REPO / "meshfit" / "data" / "spot.obj"  # packaged with meshfit: never missing

SHARED_MESHES = {
    "spot": "spot/spot_triangulated.obj",
    "bob": "bob/bob_tri.obj",
    "blub": "blub/fish.obj",
    "hammer": "hammer/hammer.obj",
    "controller": "controller_generic/left.glb",
    "ict_neutral": "ict_face/face_region/neutral.obj",
    "ict_head": "ict_face/full/generic_neutral_mesh.obj",
}


def strict() -> bool:
    """Whether a missing prerequisite fails instead of skipping (CI, or MESHFIT_STRICT_TESTS=1)."""
    return bool(os.environ.get("CI")) or os.environ.get("MESHFIT_STRICT_TESTS", "") not in ("", "0")


def missing(reason: str) -> None:
    """Fail (strict) or skip the calling test because ``reason`` is missing."""
    if strict():
        pytest.fail(f"{reason} (tests are strict in CI: nothing may skip)", pytrace=False)
    pytest.skip(reason)


def shared(name: str) -> Path:
    """Path of a shared real mesh (or any path under ../shared/data)."""
    p = SHARED_DATA / SHARED_MESHES.get(name, name)
    if not p.exists():
        missing(f"shared test data not found: {p}")
    return p


def require_native() -> None:
    """Skip outside CI, fail in CI, when meshfit's native kernels cannot be loaded."""
    from meshfit.render import _native

    if not _native.available():
        missing(f"native kernels unavailable: {_native._load()}")

"""Test helpers: where the shared real meshes are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MESHFIT_SHARED_DATA", REPO.parent / "shared" / "data"))

SHARED_MESHES = {
    "spot": "spot/spot_triangulated.obj",
    "bob": "bob/bob_tri.obj",
    "blub": "blub/fish.obj",
    "hammer": "hammer/hammer.obj",
    "controller": "controller_generic/left.glb",
    "ict_neutral": "ict_face/face_region/neutral.obj",
}


def shared(name: str) -> Path:
    """Path of a shared real mesh; skips the test where ../shared/data is absent (not in CI)."""
    p = SHARED_DATA / SHARED_MESHES.get(name, name)
    if not p.exists():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"shared test data missing in CI: {p}")
        pytest.skip(f"shared data not found: {p}")
    return p

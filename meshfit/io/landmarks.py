"""2-D landmarks: the model-side definition (which surface points they are) and per-view detections.

A **landmark definition** (in a blendshape model's ``blendshapes.json`` under ``"landmarks"``, or a
JSON file of its own holding that object) names L points of the surface, by vertex or by
barycentric point of a face::

    {"vertices": [1225, 1888, ...], "names": ["jaw0", ...]}          # names optional
    {"faces": [812, ...], "barycentric": [[0.2, 0.3, 0.5], ...]}

**Detections** are one JSON file per view in a dataset's ``landmarks/`` folder, ``NAME.json`` by
the view's stem (a sequence: ``frames/NNNN/landmarks/``)::

    {"points": [[412.5, 300.1], null, ...], "confidence": [0.9, 0.0, ...]}

``points``: L pixel positions (OpenCV convention: pixel centres at integers, x right, y down) at
the cameras' resolution, ``null`` for a point the detector did not find; ``confidence``
(optional): L weights in [0, 1]. A view without a file has no detections.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meshfit.io.atomic import atomic_path

__all__ = [
    "LandmarkError",
    "load_landmark_definition",
    "parse_landmark_definition",
    "read_landmark_file",
    "read_landmarks",
    "write_landmark_file",
    "write_landmarks",
]

MAX_LANDMARKS = 100_000


class LandmarkError(ValueError):
    """A landmark definition or detection file that meshfit cannot use (the message names it)."""


def parse_landmark_definition(
    spec, faces: np.ndarray, num_vertices: int, where: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(vertex indices [L, 3] int32, barycentric weights [L, 3] float32, names) of a definition.

    A landmark on a vertex is that vertex three times with weights (1, 0, 0). ``where`` names the
    file in errors.
    """
    if not isinstance(spec, dict):
        raise LandmarkError(
            f"{where}: landmarks must be an object with 'vertices', or 'faces' and 'barycentric'"
        )
    unknown = set(spec) - {"vertices", "faces", "barycentric", "names"}
    if unknown:
        raise LandmarkError(
            f"{where}: landmarks: unknown keys {sorted(unknown)} (expected 'vertices', or 'faces' and "
            "'barycentric', and optionally 'names')"
        )
    faces = np.asarray(faces)
    if "vertices" in spec:
        if "faces" in spec or "barycentric" in spec:
            raise LandmarkError(f"{where}: landmarks: give 'vertices' or 'faces' + 'barycentric', not both")
        ids = _int_list(spec["vertices"], f"{where}: landmarks.vertices")
        bad = [i for i in ids if not 0 <= i < num_vertices]
        if bad:
            raise LandmarkError(
                f"{where}: landmarks.vertices: {bad[:5]} out of range for a mesh of {num_vertices} vertices"
            )
        idx = np.repeat(np.asarray(ids, np.int32)[:, None], 3, 1)
        bary = np.zeros((len(ids), 3), np.float32)
        bary[:, 0] = 1.0
    elif "faces" in spec and "barycentric" in spec:
        fids = _int_list(spec["faces"], f"{where}: landmarks.faces")
        bad = [f for f in fids if not 0 <= f < len(faces)]
        if bad:
            raise LandmarkError(f"{where}: landmarks.faces: {bad[:5]} out of range for {len(faces)} faces")
        try:
            bary = np.asarray(spec["barycentric"], np.float64)
        except (TypeError, ValueError) as e:
            raise LandmarkError(f"{where}: landmarks.barycentric must be [L, 3] numbers") from e
        if bary.shape != (len(fids), 3) or not np.isfinite(bary).all():
            raise LandmarkError(
                f"{where}: landmarks.barycentric must be {len(fids)} rows of 3 finite numbers (one per "
                f"face); got shape {bary.shape}"
            )
        if (bary < -1e-6).any() or (np.abs(bary.sum(1) - 1) > 1e-4).any():
            raise LandmarkError(f"{where}: landmarks.barycentric rows must be >= 0 and sum to 1")
        idx = faces[np.asarray(fids, np.int64)].astype(np.int32).reshape(-1, 3)
        bary = bary.astype(np.float32)
    else:
        raise LandmarkError(f"{where}: landmarks need 'vertices', or 'faces' and 'barycentric'")
    names = spec.get("names", ())
    if names and (
        not isinstance(names, list) or len(names) != len(idx) or not all(isinstance(n, str) for n in names)
    ):
        raise LandmarkError(f"{where}: landmarks.names must be {len(idx)} strings, one per landmark")
    return idx, bary, tuple(names)


def load_landmark_definition(
    path: str | os.PathLike, faces: np.ndarray, num_vertices: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``parse_landmark_definition`` of a JSON file: a blendshape model's ``blendshapes.json``
    (its ``"landmarks"``), ``{"landmarks": {...}}``, or the definition object itself."""
    path = Path(path)
    if path.is_dir():
        path = path / "blendshapes.json"
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LandmarkError(f"cannot read the landmark definition {path}: {e}") from e
    if isinstance(spec, dict) and "landmarks" in spec:
        spec = spec["landmarks"]
    return parse_landmark_definition(spec, faces, num_vertices, str(path))


def _int_list(values, what: str) -> list[int]:
    if not isinstance(values, list) or not values:
        raise LandmarkError(f"{what} must be a non-empty list of integers")
    if len(values) > MAX_LANDMARKS:
        raise LandmarkError(f"{what}: {len(values)} landmarks (at most {MAX_LANDMARKS})")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise LandmarkError(f"{what} must be integers")
    return values


def _is_number(c) -> bool:
    return isinstance(c, (int, float)) and not isinstance(c, bool)


def read_landmark_file(path: str | os.PathLike, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One view's detections: (points [L, 2] float32, NaN where not found; confidence [L] float32,
    0 where not found). ``count``: the number of points every file must have."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LandmarkError(f"cannot read landmarks {path}: {e}") from e
    if not isinstance(data, dict) or "points" not in data:
        raise LandmarkError(f'{path}: expected {{"points": [[x, y] or null, ...], "confidence": [...]}}')
    unknown = set(data) - {"points", "confidence"}
    if unknown:
        raise LandmarkError(f"{path}: unknown keys {sorted(unknown)} (expected 'points', 'confidence')")
    pts = data["points"]
    if not isinstance(pts, list):
        raise LandmarkError(f"{path}: 'points' must be a list of [x, y] pairs or null")
    if count is not None and len(pts) != count:
        raise LandmarkError(f"{path} has {len(pts)} points; the other views have {count}")
    xy = np.full((len(pts), 2), np.nan, np.float32)
    for i, p in enumerate(pts):
        if p is None:
            continue
        if not isinstance(p, list) or len(p) != 2 or not all(_is_number(c) and math.isfinite(c) for c in p):
            raise LandmarkError(f"{path}: points[{i}] must be [x, y] (two finite numbers) or null; got {p!r}")
        xy[i] = p
    conf = np.where(np.isnan(xy[:, 0]), 0.0, 1.0).astype(np.float32)
    if "confidence" in data:
        c = data["confidence"]
        if not isinstance(c, list) or len(c) != len(pts) or not all(_is_number(v) for v in c):
            raise LandmarkError(f"{path}: 'confidence' must be {len(pts)} numbers, one per point")
        c = np.asarray(c, np.float64)
        if not (np.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()):
            raise LandmarkError(f"{path}: confidences must be in [0, 1]")
        conf = np.where(np.isnan(xy[:, 0]), 0.0, c).astype(np.float32)
    return xy, conf


def read_landmarks(folder: str | os.PathLike, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Detections of the views ``names`` from ``folder/landmarks/``: (points [N, L, 2] float32, NaN
    where missing; confidence [N, L] float32, 0 where missing), or None without the folder.

    Every file must have the same number of points; a view without a file has none found.
    """
    root = Path(folder) / "landmarks"
    if not root.is_dir():
        return None
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    count = None
    for i, name in enumerate(names):
        path = root / f"{Path(name).stem}.json"
        if path.is_file():
            found[i] = read_landmark_file(path, count)
            count = len(found[i][0])
    if not found:
        raise LandmarkError(
            f"{root} holds no landmark file of these views (looked for "
            f"{', '.join(Path(n).stem + '.json' for n in names[:3])}{', ...' if len(names) > 3 else ''})"
        )
    points = np.full((len(names), count, 2), np.nan, np.float32)
    conf = np.zeros((len(names), count), np.float32)
    for i, (xy, c) in found.items():
        points[i], conf[i] = xy, c
    return points, conf


def write_landmarks(
    folder: str | os.PathLike, names: Sequence[str], points: np.ndarray, confidence: np.ndarray | None = None
) -> None:
    """Write ``folder/landmarks/NAME.json`` per view: points [N, L, 2] (NaN = not found) and
    optional confidence [N, L]. Each file atomically."""
    points = np.asarray(points, np.float64)
    if points.ndim != 3 or points.shape[0] != len(names) or points.shape[2] != 2:
        raise ValueError(f"points must be [{len(names)}, L, 2]; got {points.shape}")
    for n, name in enumerate(names):
        write_landmark_file(Path(folder) / "landmarks" / f"{Path(name).stem}.json", points[n],
                            None if confidence is None else np.asarray(confidence)[n])  # fmt: skip


def write_landmark_file(
    path: str | os.PathLike, points: np.ndarray, confidence: np.ndarray | None = None
) -> None:
    """One view's detections, points [L, 2] (NaN = not found), confidence [L] optional; atomically."""
    path = Path(path)
    points = np.asarray(points, np.float64)
    entry = {"points": [None if not np.isfinite(p).all() else [round(float(p[0]), 3), round(float(p[1]), 3)]
                        for p in points]}  # fmt: skip
    if confidence is not None:
        entry["confidence"] = [round(float(c), 4) for c in np.asarray(confidence)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(entry) + "\n")

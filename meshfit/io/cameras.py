"""Camera files: meshfit's ``cameras.json``, COLMAP text models, nerfstudio/Blender ``transforms.json``.

``cameras.json`` is meshfit's interchange format, plain JSON meant to be read by other tools::

    {"convention": "opencv",
     "cameras": [{"name": "000", "width": W, "height": H,
                  "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
                  "world_to_camera": [[r00, r01, r02, tx], [r10, r11, r12, ty],
                                      [r20, r21, r22, tz], [0, 0, 0, 1]]}, ...]}

OpenCV convention: x right, y down, z forward; the centre of the top-left pixel is (0, 0);
``world_to_camera`` maps world points to camera space (row-major 4x4). Extra keys (e.g.
``near``, ``far``) are allowed and ignored by the loader. View names must be distinct: they pair
each camera with its images.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from meshfit.camera import Camera, CameraError
from meshfit.io.atomic import atomic_path
from meshfit.rigs import rotation_from_quaternion

__all__ = ["CameraSet", "load_cameras", "save_cameras"]


class CameraSet(NamedTuple):
    """Cameras read from a file: a batch of N cameras and the N view / image names."""

    cameras: Camera
    names: list[str]


def save_cameras(
    path: str | os.PathLike, cameras: Camera, *, names: Sequence[str] | None = None, **extra
) -> None:
    """Write ``cameras.json`` (format in the module docstring) for a single camera or a [N] batch.

    ``extra`` keys (JSON-serialisable, e.g. ``near=0.1``) are stored in every camera entry.
    """
    if len(cameras.batch_shape) > 1:
        raise CameraError(
            f"save_cameras takes one camera or a [N] batch; got batch shape {cameras.batch_shape}"
        )
    cams = cameras if cameras.batch_shape else _stack([cameras])
    n = cams.batch_shape[0]
    names = [f"{i:03d}" for i in range(n)] if names is None else list(names)
    if len(names) != n or len(set(names)) != n:
        raise CameraError(f"need {n} distinct names; got {names}")
    K = np.asarray(cams.K, np.float64)
    w2c = np.asarray(cams.world_to_camera, np.float64)
    entries = [
        {"name": names[i], "width": cams.width, "height": cams.height, "K": K[i].tolist(),
         "world_to_camera": w2c[i].tolist(), **extra}
        for i in range(n)
    ]  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"convention": "opencv", "cameras": entries}, indent=1) + "\n")


def _stack(cams: Sequence[Camera]) -> Camera:
    import jax

    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *cams)


def load_cameras(path: str | os.PathLike) -> CameraSet:
    """Read cameras from ``cameras.json``, a nerfstudio/Blender ``transforms.json``, or a COLMAP
    text model (a folder with ``cameras.txt`` and ``images.txt``, also found under ``sparse/0``).

    A folder is searched for those names in that order. All cameras must share one image size.
    Returns a ``CameraSet`` with cameras in OpenCV convention, batch shape (N,).
    """
    path = Path(path)
    if path.is_dir():
        for candidate in ("cameras.json", "transforms.json"):
            if (path / candidate).is_file():
                return load_cameras(path / candidate)
        for folder in (path, path / "sparse" / "0", path / "sparse"):
            if (folder / "cameras.txt").is_file() and (folder / "images.txt").is_file():
                return _load_colmap(folder)
        raise FileNotFoundError(
            f"no cameras in {path}: expected cameras.json, transforms.json or COLMAP cameras.txt + images.txt"
        )
    if not path.is_file():
        raise FileNotFoundError(f"camera file not found: {path}")
    if path.name in ("cameras.txt", "images.txt"):
        return _load_colmap(path.parent)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CameraError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise CameraError(f"{path}: expected a JSON object at the top level")
    if "frames" in data:
        return _load_transforms(path, data)
    if "cameras" in data:
        return _load_cameras_json(path, data)
    raise CameraError(f"{path}: neither a cameras.json ('cameras' key) nor a transforms.json ('frames' key)")


def _matrix(value, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise CameraError(f"{where} must be a {shape[0]}x{shape[1]} list of numbers") from e
    if m.shape != shape:
        raise CameraError(f"{where} must be {shape[0]}x{shape[1]}; got shape {m.shape}")
    return m


def _number(value, where: str) -> float:
    """A finite number from JSON (not a string, not true)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CameraError(f"{where} must be a finite number; got {value!r}")
    return float(value)


def _angle(value: float, where: str) -> float:
    """A field of view in radians, in (0, pi)."""
    if not 0 < value < math.pi:
        raise CameraError(f"{where} must be a field of view in radians, in (0, pi); got {value}")
    return value


def _pixels(value, where: str) -> int:
    """An image side: a positive whole number (128 or 128.0; not 128.5, "128" or true)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CameraError(f"{where} must be a positive whole number of pixels; got {value!r}")
    if not (math.isfinite(value) and value == int(value) and value >= 1):
        raise CameraError(f"{where} must be a positive whole number of pixels; got {value!r}")
    return int(value)


def _unique(names: list[str], path: Path) -> list[str]:
    """View names pair cameras with image files: a repeated name would pair the wrong ones."""
    stems = [Path(n).stem for n in names]  # images are found by the name's stem
    repeated = sorted({n for n, s in zip(names, stems) if stems.count(s) > 1})
    if repeated:
        raise CameraError(f"{path}: view names must be distinct (by file stem); repeated: {repeated}")
    return names


def _size(entries: list[tuple[int, int]], path: Path) -> tuple[int, int]:
    sizes = sorted(set(entries))
    if len(sizes) != 1:
        raise CameraError(f"{path}: all cameras must share one image size; found {sizes}")
    return sizes[0]


def _camera_set(path: Path, Ks: list, w2cs: list, names: list[str], sizes: list) -> CameraSet:
    """The batch of cameras read from ``path``; errors name the file."""
    w, h = _size(sizes, path)
    try:
        cams = Camera.from_matrices(np.stack(Ks).astype(np.float32), np.stack(w2cs).astype(np.float32), w, h)
    except CameraError as e:
        raise CameraError(f"{path}: {e}") from e
    return CameraSet(cams, _unique(names, path))


def _load_cameras_json(path: Path, data: dict) -> CameraSet:
    if data.get("convention") != "opencv":
        raise CameraError(f"{path}: convention must be 'opencv'; got {data.get('convention')!r}")
    entries = data["cameras"]
    if not isinstance(entries, list) or not entries:
        raise CameraError(f"{path}: 'cameras' must be a non-empty list")
    Ks, w2cs, names, sizes = [], [], [], []
    for i, e in enumerate(entries):
        where = f"{path}: cameras[{i}]"
        missing = {"width", "height", "K", "world_to_camera"} - set(e)
        if missing:
            raise CameraError(f"{where} lacks {sorted(missing)}")
        Ks.append(_matrix(e["K"], (3, 3), f"{where}.K"))
        w2cs.append(_matrix(e["world_to_camera"], (4, 4), f"{where}.world_to_camera"))
        names.append(str(e.get("name", f"{i:03d}")))
        sizes.append((_pixels(e["width"], f"{where}.width"), _pixels(e["height"], f"{where}.height")))
    return _camera_set(path, Ks, w2cs, names, sizes)


def _load_transforms(path: Path, data: dict) -> CameraSet:
    """nerfstudio / Blender-NeRF ``transforms.json``: camera->world in OpenGL axes, pixel centres at +0.5."""
    frames = data["frames"]
    if not isinstance(frames, list) or not frames:
        raise CameraError(f"{path}: 'frames' must be a non-empty list")
    Ks, w2cs, names, sizes = [], [], [], []
    for i, fr in enumerate(frames):
        where = f"{path}: frames[{i}]"
        get = lambda k, fr=fr: fr.get(k, data.get(k))  # per-frame values override global ones
        if any(get(k) not in (None, 0, 0.0) for k in ("k1", "k2", "k3", "k4", "p1", "p2")):
            raise CameraError(f"{where}: lens distortion is not supported; undistort the images first")
        w, h = get("w"), get("h")
        if w is None or h is None:
            img = path.parent / fr.get("file_path", "")
            for cand in (img, img.with_suffix(".png")):
                if cand.is_file():
                    from PIL import Image

                    with Image.open(cand) as im:
                        w, h = im.size
                    break
            else:
                raise CameraError(f"{where}: no w/h and image {img} not found to read its size")
        w, h = _pixels(w, f"{where}.w"), _pixels(h, f"{where}.h")
        number = lambda k, where=where, get=get: _number(get(k), f"{where}.{k}")  # noqa: E731
        if get("fl_x") is not None:
            fx = number("fl_x")
            fy = number("fl_y") if get("fl_y") is not None else fx
        elif get("camera_angle_x") is not None:
            fx = 0.5 * w / math.tan(0.5 * _angle(number("camera_angle_x"), f"{where}.camera_angle_x"))
            fy = fx
            if get("camera_angle_y") is not None:
                fy = 0.5 * h / math.tan(0.5 * _angle(number("camera_angle_y"), f"{where}.camera_angle_y"))
        else:
            raise CameraError(f"{where}: no focal length (fl_x or camera_angle_x)")
        cx = number("cx") - 0.5 if get("cx") is not None else (w - 1) / 2
        cy = number("cy") - 0.5 if get("cy") is not None else (h - 1) / 2
        if "transform_matrix" not in fr:
            raise CameraError(f"{where} lacks transform_matrix")
        c2w = _matrix(fr["transform_matrix"], (4, 4), f"{where}.transform_matrix")
        c2w = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera axes -> OpenCV
        if abs(np.linalg.det(c2w[:3, :3])) < 1e-6:
            raise CameraError(f"{where}.transform_matrix is singular: its rotation part is not a rotation")
        Ks.append(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]))
        w2cs.append(np.linalg.inv(c2w))
        names.append(str(fr.get("file_path", f"{i:03d}")))
        sizes.append((w, h))
    return _camera_set(path, Ks, w2cs, names, sizes)


# COLMAP camera models we accept, with the index of their distortion parameters.
_COLMAP_MODELS = {
    "SIMPLE_PINHOLE": ("f", 3),
    "PINHOLE": ("fxfy", 4),
    "SIMPLE_RADIAL": ("f", 3),
    "RADIAL": ("f", 3),
    "OPENCV": ("fxfy", 4),
    "FULL_OPENCV": ("fxfy", 4),
}


def _colmap_lines(path: Path) -> list[str]:
    # Keep blank lines: in images.txt an image with no 2-D points has an empty second line.
    return [ln.rstrip("\n") for ln in path.read_text().splitlines() if not ln.startswith("#")]


def _load_colmap(folder: Path) -> CameraSet:
    """COLMAP text model: cameras.txt + images.txt (world->camera quaternion, OpenCV axes)."""
    intr = {}
    for ln in _colmap_lines(folder / "cameras.txt"):
        if not ln.strip():
            continue
        parts = ln.split()
        try:
            cam_id, model, w, h = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = [float(p) for p in parts[4:]]
        except (IndexError, ValueError) as e:
            raise CameraError(f"{folder / 'cameras.txt'}: cannot parse line {ln!r}") from e
        if model not in _COLMAP_MODELS:
            raise CameraError(f"{folder / 'cameras.txt'}: camera {cam_id} model {model} is not supported")
        kind, ndist = _COLMAP_MODELS[model]
        if len(params) < ndist:
            raise CameraError(
                f"{folder / 'cameras.txt'}: camera {cam_id} ({model}) needs at least {ndist} parameters; "
                f"got {len(params)} in line {ln!r}"
            )
        if any(abs(p) > 0 for p in params[ndist:]):
            raise CameraError(
                f"{folder / 'cameras.txt'}: camera {cam_id} ({model}) has lens distortion; "
                "meshfit cameras are pinhole: run `colmap image_undistorter` first"
            )
        fx, fy = (params[0], params[0]) if kind == "f" else (params[0], params[1])
        cx, cy = params[ndist - 2], params[ndist - 1]
        # COLMAP puts the centre of the top-left pixel at (0.5, 0.5); meshfit at (0, 0).
        intr[cam_id] = (np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]]), (w, h))
    lines = _colmap_lines(folder / "images.txt")
    records = []
    i = 0
    while i < len(lines):
        ln = lines[i].strip()
        i += 1
        if not ln:
            continue
        i += 1  # the POINTS2D line that follows each image line (possibly empty)
        parts = ln.split(maxsplit=9)
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(p) for p in parts[1:8])
            cam_id, name = int(parts[8]), parts[9]
        except (IndexError, ValueError) as e:
            raise CameraError(f"{folder / 'images.txt'}: cannot parse line {ln!r}") from e
        if cam_id not in intr:
            raise CameraError(f"{folder / 'images.txt'}: image {name} uses unknown camera {cam_id}")
        if not np.isfinite([qw, qx, qy, qz]).all() or np.linalg.norm([qw, qx, qy, qz]) < 1e-12:
            raise CameraError(
                f"{folder / 'images.txt'}: image {name} has no rotation (quaternion {[qw, qx, qy, qz]})"
            )
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = rotation_from_quaternion([qw, qx, qy, qz]), (tx, ty, tz)
        records.append((name, intr[cam_id][0], w2c, intr[cam_id][1]))
    if not records:
        raise CameraError(f"{folder / 'images.txt'} lists no images")
    records.sort(key=lambda r: r[0])
    names, Ks, w2cs, sizes = (list(col) for col in zip(*records))
    return _camera_set(folder / "images.txt", Ks, w2cs, names, sizes)

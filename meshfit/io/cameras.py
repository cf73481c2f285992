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

import dataclasses
import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from meshfit.camera import Camera, CameraError
from meshfit.io.atomic import atomic_path
from meshfit.io.lens import Lens, lens_from_opencv

__all__ = ["CameraRecord", "CameraSet", "load_cameras", "read_camera_records", "save_cameras"]


class CameraSet(NamedTuple):
    """Cameras read from a file: a batch of N cameras and the N view / image names."""

    cameras: Camera
    names: list[str]


@dataclasses.dataclass
class CameraRecord:
    """One view as a camera file describes it, lens distortion included (``read_camera_records``).

    name: the view / image name. lens: intrinsics and distortion (``meshfit.io.lens.Lens``).
    world_to_camera: [4, 4] float64, OpenCV axes. entry: the file's own entry for the view (a
    transforms.json frame, a cameras.json camera; for COLMAP ``points2D`` [P, 2] in meshfit pixels
    and ``points3D`` [P, 3] world points of the view's triangulated observations).
    """

    name: str
    lens: Lens
    world_to_camera: np.ndarray
    entry: dict


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


class CameraRecords(NamedTuple):
    """What ``read_camera_records`` found: the views, the file they came from, its kind, and the
    names of images the file lists without a pose (COLMAP's unregistered images)."""

    records: list[CameraRecord]
    source: Path
    kind: str
    unposed: list[str]


def read_camera_records(path: str | os.PathLike) -> CameraRecords:
    """Read every view of a camera file with its lens, distortion included.

    ``path``: ``cameras.json`` (optionally with a ``distortion`` entry per camera: OpenCV's
    ``[k1, k2, p1, p2, k3]``, or ``{"k1": ..., "p2": ...}``, or ``{"model": "fisheye", "k1": ...,
    "k4": ...}``), a nerfstudio/Blender ``transforms.json`` (its ``k1..k4, p1, p2`` and
    ``camera_model``), or a COLMAP model, binary or text, with or without rigs and frames (a folder
    with ``cameras.bin|txt`` and ``images.bin|txt``, also found under ``sparse/0`` or ``sparse``;
    read by pycolmap). A folder is searched in that order. Views keep the file's sizes: they may
    differ.
    """
    path = Path(path)
    if path.is_dir():
        for candidate in ("cameras.json", "transforms.json"):
            if (path / candidate).is_file():
                return read_camera_records(path / candidate)
        found = _colmap_model(path)
        if found is not None:
            return _read_colmap(*found)
        raise FileNotFoundError(
            f"no cameras in {path}: expected cameras.json, transforms.json or a COLMAP model "
            "(cameras.bin + images.bin, or cameras.txt + images.txt, in it or in sparse/0)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"camera file not found: {path}")
    if path.suffix in (".bin", ".txt") and path.stem in _COLMAP_FILES + _COLMAP_RIG_FILES:
        found = _colmap_model(path.parent)
        if found is None:
            raise FileNotFoundError(f"{path.parent} holds no whole COLMAP model (cameras + images)")
        return _read_colmap(*found)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CameraError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise CameraError(f"{path}: expected a JSON object at the top level")
    if "frames" in data:
        return CameraRecords(_load_transforms(path, data), path, "transforms.json", [])
    if "cameras" in data:
        return CameraRecords(_load_cameras_json(path, data), path, "cameras.json", [])
    raise CameraError(f"{path}: neither a cameras.json ('cameras' key) nor a transforms.json ('frames' key)")


def load_cameras(path: str | os.PathLike) -> CameraSet:
    """Read pinhole cameras from ``cameras.json``, a nerfstudio/Blender ``transforms.json``, or a
    COLMAP model, binary or text (a folder with ``cameras`` and ``images``, also under ``sparse/0``).

    A folder is searched for those names in that order. All cameras must share one image size and
    be pinhole: a lens with distortion is refused, naming ``meshfit import``, which undistorts a
    capture into a dataset. Returns a ``CameraSet`` with cameras in OpenCV convention, batch
    shape (N,), in the file's order (COLMAP: sorted by image name).
    """
    records, source, _, _ = read_camera_records(path)
    for r in records:
        if r.lens.distorted:
            raise CameraError(
                f"{source}: view {r.name!r} has lens distortion ({r.lens.describe()}); meshfit's cameras "
                "are pinhole: `meshfit import CAPTURE --out DATASET` undistorts a capture (and "
                "`meshfit fit --data CAPTURE` imports it on the fly)"
            )
    w, h = _size([(r.lens.width, r.lens.height) for r in records], source)
    Ks = [r.lens.K() for r in records]
    return _camera_set(source, Ks, [r.world_to_camera for r in records], [r.name for r in records], [(w, h)])


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


def _distinct(names: list[str], path: Path) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CameraError(f"{path}: view names must be distinct; repeated: {repeated}")


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


def _distortion(value, K: np.ndarray, w: int, h: int, where: str) -> Lens:
    """A cameras.json ``distortion`` entry (see ``read_camera_records``) as a Lens."""
    if isinstance(value, list):
        coefficients = [_number(c, f"{where}[{i}]") for i, c in enumerate(value)]
        return lens_from_opencv(K, w, h, coefficients)
    if not isinstance(value, dict):
        raise CameraError(f"{where} must be a list [k1, k2, p1, p2, k3] or an object of named coefficients")
    model = value.get("model", "opencv")
    names = {"opencv": ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), "fisheye": ("k1", "k2", "k3", "k4")}
    if model not in names:
        raise CameraError(f"{where}.model must be 'opencv' or 'fisheye'; got {model!r}")
    unknown = sorted(set(value) - set(names[model]) - {"model"})
    if unknown:
        raise CameraError(
            f"{where}: unknown coefficients {unknown} for the {model} model {list(names[model])}"
        )
    coefficients = [_number(value.get(k, 0.0), f"{where}.{k}") for k in names[model]]
    if model == "opencv" and not any(coefficients[5:]):
        coefficients = coefficients[:5]
    return lens_from_opencv(K, w, h, coefficients, fisheye=model == "fisheye")


def _record(name: str, K: np.ndarray, w2c: np.ndarray, size: tuple[int, int], where: str, *,
            lens: Lens | None = None, entry: dict | None = None) -> CameraRecord:  # fmt: skip
    """A view, its pinhole part checked as a Camera is (errors prefixed with ``where``)."""
    try:
        Camera.from_matrices(K.astype(np.float32), w2c.astype(np.float32), *size)
        if lens is None:
            lens = Lens("PINHOLE", *size, (K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5))
    except CameraError as e:
        raise CameraError(f"{where}: {e}") from e
    return CameraRecord(name, lens, w2c, entry or {})


def _load_cameras_json(path: Path, data: dict) -> list[CameraRecord]:
    if data.get("convention") != "opencv":
        raise CameraError(f"{path}: convention must be 'opencv'; got {data.get('convention')!r}")
    entries = data["cameras"]
    if not isinstance(entries, list) or not entries:
        raise CameraError(f"{path}: 'cameras' must be a non-empty list")
    records = []
    for i, e in enumerate(entries):
        where = f"{path}: cameras[{i}]"
        if not isinstance(e, dict):
            raise CameraError(f"{where} must be an object")
        missing = {"width", "height", "K", "world_to_camera"} - set(e)
        if missing:
            raise CameraError(f"{where} lacks {sorted(missing)}")
        K = _matrix(e["K"], (3, 3), f"{where}.K")
        w2c = _matrix(e["world_to_camera"], (4, 4), f"{where}.world_to_camera")
        size = (_pixels(e["width"], f"{where}.width"), _pixels(e["height"], f"{where}.height"))
        record = _record(str(e.get("name", f"{i:03d}")), K, w2c, size, where, entry=e)
        if e.get("distortion") is not None:
            record.lens = _distortion(e["distortion"], K, *size, f"{where}.distortion")
        records.append(record)
    _distinct([r.name for r in records], path)
    return records


def _load_transforms(path: Path, data: dict) -> list[CameraRecord]:
    """nerfstudio / Blender-NeRF ``transforms.json``: camera->world in OpenGL axes, pixel centres at
    +0.5, nerfstudio's distortion ``k1..k4, p1, p2`` for ``camera_model`` OPENCV or OPENCV_FISHEYE."""
    frames = data["frames"]
    if not isinstance(frames, list) or not frames:
        raise CameraError(f"{path}: 'frames' must be a non-empty list")
    records = []
    for i, fr in enumerate(frames):
        where = f"{path}: frames[{i}]"
        if not isinstance(fr, dict):
            raise CameraError(f"{where} must be an object")
        get = lambda k, fr=fr: fr.get(k, data.get(k))  # per-frame values override global ones
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
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        record = _record(str(fr.get("file_path", f"{i:03d}")), K, np.linalg.inv(c2w), (w, h), where, entry=fr)
        k = {n: number(n) if get(n) is not None else 0.0 for n in ("k1", "k2", "k3", "k4", "p1", "p2")}
        model = get("camera_model") or "OPENCV"
        if model == "OPENCV_FISHEYE":
            if k["p1"] or k["p2"]:
                raise CameraError(f"{where}: p1, p2 are not fisheye coefficients (OPENCV_FISHEYE has k1..k4)")
            record.lens = lens_from_opencv(K, w, h, [k["k1"], k["k2"], k["k3"], k["k4"]], fisheye=True)
        elif model in ("OPENCV", "PINHOLE", "PERSPECTIVE"):
            if k["k4"]:
                raise CameraError(
                    f"{where}: k4 is a fisheye coefficient; camera_model {model} has k1, k2, k3, p1, p2"
                )
            if any(k.values()):
                record.lens = lens_from_opencv(K, w, h, [k["k1"], k["k2"], k["p1"], k["p2"], k["k3"]])
        else:
            raise CameraError(f"{where}: camera_model {model!r} is not supported (OPENCV or OPENCV_FISHEYE)")
        records.append(record)
    _distinct([r.name for r in records], path)
    return records


# A COLMAP model: these files, binary or text; rigs and frames since COLMAP 3.12.
_COLMAP_FILES = ("cameras", "images", "points3D")
_COLMAP_RIG_FILES = ("rigs", "frames")
# The smallest record of each binary file (its count is checked against the file size before
# pycolmap reads it: pycolmap trusts counts and reads past a file's end without a word).
_COLMAP_MIN_RECORD = {"cameras": 48, "images": 73, "points3D": 51, "rigs": 16, "frames": 68}


def _colmap_model(path: Path) -> tuple[Path, str] | None:
    for folder in (path, path / "sparse" / "0", path / "sparse"):
        for ext in (".bin", ".txt"):
            if (folder / f"cameras{ext}").is_file() and (folder / f"images{ext}").is_file():
                return folder, ext
    return None


def _check_colmap_binary(folder: Path) -> None:
    """Walk the records of a binary model's files and check that they fill each file exactly.

    pycolmap trusts the counts and sizes inside the files and reads past a file's end without a
    word (a truncated camera becomes one with garbage parameters), so a truncated or padded file is
    named here first. Layouts: COLMAP's ``reconstruction_io_binary``; rigs are checked by their
    record count and by the round trip in ``_read_colmap``.
    """
    import pycolmap

    def walk(name: str, record=None) -> None:
        f = folder / f"{name}.bin"
        if not f.is_file():
            return
        data = f.read_bytes()
        if len(data) < 8:
            raise CameraError(f"{f} is truncated: {len(data)} bytes, not even the record count")
        (count,) = struct.unpack_from("<Q", data)
        if count * _COLMAP_MIN_RECORD[name] > len(data) - 8:
            raise CameraError(
                f"{f} is truncated or corrupt: it says {count} records, which need at least "
                f"{count * _COLMAP_MIN_RECORD[name]} bytes after the count; the file has {len(data) - 8}"
            )
        if record is None:
            return
        at = 8
        for k in range(count):
            at = record(data, at)
            if at > len(data):
                raise CameraError(f"{f} is truncated or corrupt: record {k + 1} of {count} runs past its end")
        if at != len(data):
            raise CameraError(f"{f} is corrupt: {len(data) - at} bytes follow its last record")

    def camera(data: bytes, at: int) -> int:
        if at + 24 > len(data):
            return at + 24
        (model,) = struct.unpack_from("<i", data, at + 4)
        try:
            n = len(pycolmap.Camera.create_from_model_id(0, pycolmap.CameraModelId(model), 1.0, 1, 1).params)
        except (ValueError, TypeError) as e:
            raise CameraError(f"{folder / 'cameras.bin'}: unknown camera model id {model}") from e
        return at + 24 + 8 * n

    def image(data: bytes, at: int) -> int:
        end = data.find(b"\0", at + 64)
        if end < 0 or end + 9 > len(data):
            return len(data) + 1
        (n,) = struct.unpack_from("<Q", data, end + 1)
        return end + 9 + 24 * n

    def point(data: bytes, at: int) -> int:
        if at + 51 > len(data):
            return at + 51
        (n,) = struct.unpack_from("<Q", data, at + 43)
        return at + 51 + 8 * n

    def frame(data: bytes, at: int) -> int:
        if at + 68 > len(data):
            return at + 68
        (n,) = struct.unpack_from("<I", data, at + 64)
        return at + 68 + 16 * n

    walk("cameras", camera)
    walk("images", image)
    walk("points3D", point)
    walk("frames", frame)
    walk("rigs")


def _check_colmap_text(folder: Path) -> None:
    import pycolmap

    known = set(pycolmap.CameraModelId.__members__) - {"INVALID"}
    for n, line in enumerate((folder / "cameras.txt").read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 4 or parts[1] not in known:
            raise CameraError(
                f"{folder / 'cameras.txt'} line {n}: {line.strip()!r} is not 'CAMERA_ID MODEL WIDTH HEIGHT "
                f"PARAMS...' with a COLMAP model ({', '.join(sorted(known))})"
            )
        cam = pycolmap.Camera.create_from_model_name(0, parts[1], 1.0, 1, 1)
        if len(parts) - 4 != len(cam.params):
            raise CameraError(
                f"{folder / 'cameras.txt'} line {n}: camera {parts[0]} ({parts[1]}) needs {len(cam.params)} "
                f"parameters ({cam.params_info}); got {len(parts) - 4}"
            )


def _check_colmap_images_text(folder: Path) -> None:
    """pycolmap normalises a zero quaternion into some rotation: refuse it first."""
    lines = [
        ln
        for ln in (folder / "images.txt").read_text(errors="replace").splitlines()
        if not ln.startswith("#")
    ]
    for ln in lines[::2]:  # an image line, then its POINTS2D line (possibly empty)
        parts = ln.split()
        if not parts:
            continue
        try:
            q = [float(x) for x in parts[1:5]]
        except ValueError as e:
            raise CameraError(f"{folder / 'images.txt'}: cannot parse line {ln!r}") from e
        if len(q) < 4 or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-12:
            name = parts[9] if len(parts) > 9 else parts[0]
            raise CameraError(f"{folder / 'images.txt'}: image {name} has no rotation (quaternion {q})")


def _read_colmap(folder: Path, ext: str) -> CameraRecords:
    """A COLMAP model read by pycolmap: posed images sorted by name, with their triangulated points."""
    import pycolmap

    kind = "COLMAP binary model" if ext == ".bin" else "COLMAP text model"
    if ext == ".bin":
        _check_colmap_binary(folder)
    else:
        _check_colmap_text(folder)
        _check_colmap_images_text(folder)
    has_points = (folder / f"points3D{ext}").is_file()
    with tempfile.TemporaryDirectory(prefix="meshfit-colmap-") as tmp:
        source = folder
        if not (folder / f"points3D{ext}").is_file():
            # Hand-made models often have no points; pycolmap wants the file.
            source = Path(tmp) / "model"
            source.mkdir()
            for name in _COLMAP_FILES + _COLMAP_RIG_FILES:
                if (folder / f"{name}{ext}").is_file():
                    shutil.copy(folder / f"{name}{ext}", source / f"{name}{ext}")
            (source / f"points3D{ext}").write_bytes(bytes(8) if ext == ".bin" else b"")
        try:
            rec = pycolmap.Reconstruction(str(source))
        except (ValueError, RuntimeError, MemoryError) as e:
            raise CameraError(f"cannot read the {kind} in {folder}: {e}") from e
        if ext == ".bin":
            # pycolmap reads a truncated record as garbage; what it read, written back, is as long
            # as the file only when every record was whole.
            back = Path(tmp) / "back"
            back.mkdir()
            rec.write_binary(str(back))
            for name in _COLMAP_FILES + _COLMAP_RIG_FILES:
                f = source / f"{name}.bin"
                if f.is_file() and f.stat().st_size != (back / f"{name}.bin").stat().st_size:
                    raise CameraError(
                        f"{folder / f.name} is truncated or corrupt: its records do not fill the file"
                    )
    records, unposed = [], []
    for image in sorted(rec.images.values(), key=lambda im: im.name):
        if not image.has_pose:
            unposed.append(image.name)
            continue
        where = f"{folder}/images{ext}: image {image.name}"
        w2c = np.eye(4)
        w2c[:3] = np.asarray(image.cam_from_world().matrix(), np.float64)
        cam = image.camera
        try:
            lens = Lens.from_colmap(cam)
        except CameraError as e:
            raise CameraError(f"{folder}/cameras{ext}: camera {image.camera_id}: {e}") from e
        xy, xyz = [], []
        for p in image.points2D:
            if not p.has_point3D():
                continue
            if not rec.exists_point3D(p.point3D_id):
                if has_points:
                    raise CameraError(
                        f"{folder}/images{ext}: image {image.name} observes point {p.point3D_id}, which "
                        f"points3D{ext} does not hold"
                    )
                continue  # no points file: the observations' ids point nowhere, as in hand-made models
            xy.append(p.xy)
            xyz.append(rec.points3D[p.point3D_id].xyz)
        entry = {
            "camera_id": int(image.camera_id),
            "points2D": np.asarray(xy, np.float64).reshape(-1, 2) - 0.5,
            "points3D": np.asarray(xyz, np.float64).reshape(-1, 3),
        }
        records.append(
            _record(image.name, lens.K(), w2c, (lens.width, lens.height), where, lens=lens, entry=entry)
        )
    if not records:
        raise CameraError(
            f"the {kind} in {folder} has no posed images"
            + (f" ({len(unposed)} unregistered)" if unposed else "")
        )
    _distinct([r.name for r in records], folder / f"images{ext}")
    return CameraRecords(records, folder / f"images{ext}", kind, unposed)

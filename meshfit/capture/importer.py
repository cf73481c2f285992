"""``meshfit import``: a real capture in, a checked meshfit dataset out.

A capture is a camera file with its photos: a COLMAP model (binary or text, ``sparse/0`` and
``images/``), a nerfstudio/Blender ``transforms.json``, or ``cameras.json`` with ``rgb/`` or
``images/`` (optionally with lens ``distortion``). Per view, streamed one at a time so memory does
not grow with the number of views::

    photo (EXIF orientation as the camera says) -> mask (given, from a plate, or a chroma key)
      -> undistorted into a pinhole camera (meshfit.io.lens) -> [cropped to the object] -> [resized]
      -> DATASET/rgb/NAME.png, mask/NAME.png, depth/NAME.npy, landmarks/NAME.json
         (with plates: background/NAME.png, the plate through the same lens, crop and size)

Images are resampled bilinearly and downsized with an area filter; masks are resampled as coverage
and thresholded at one half (0 or 255, no grey seam); depth is resampled by nearest neighbour (a
depth edge never mixes foreground and background); landmark points go through the inverse lens
model. ``DATASET/import.json`` records the checks (empty masks, masks touching the border, views
that see nothing of the other views' visual hull, COLMAP reprojection errors) and
``DATASET/masks.png`` shows every mask over its photo.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meshfit.camera import Camera, CameraError
from meshfit.capture.masks import chroma_mask, parse_colour, plate_mask
from meshfit.io import (
    DatasetError,
    atomic_dir,
    atomic_path,
    check_output_dir,
    read_landmark_file,
    save_cameras,
    write_image,
    write_landmark_file,
)
from meshfit.io.cameras import CameraRecord, read_camera_records
from meshfit.io.lens import Lens

__all__ = ["import_capture", "is_capture"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# A mask that covers less than this fraction of its view is reported as (nearly) empty.
EMPTY_MASK = 1e-4
# --crop adds this fraction of the largest object box on every side.
CROP_MARGIN = 0.08


def _cv2():
    import cv2

    return cv2


# ---- finding a capture's files -----------------------------------------------------------------


@dataclasses.dataclass
class _Source:
    """One view of the capture: its camera record and the files found for it."""

    name: str  # the dataset's view name
    record: CameraRecord
    image: Path
    mask: Path | None = None
    plate: Path | None = None
    depth: Path | None = None
    depth_scale: float = 1.0
    landmarks: Path | None = None


def _find(folder: Path | None, name: str) -> Path | None:
    """``folder/name`` as it is, with an image suffix added (COLMAP's ``a.jpg.png`` masks), or by stem."""
    if folder is None:
        return None
    candidates = [folder / name, *(folder / (name + s) for s in _IMAGE_SUFFIXES)]
    stem = Path(name).with_suffix("")
    candidates += [folder / (str(stem) + s) for s in _IMAGE_SUFFIXES]
    if len(Path(name).parts) == 1:  # a bare stem only for a name without folders (rigs reuse stems)
        candidates += [folder / (Path(name).stem + s) for s in _IMAGE_SUFFIXES]
    return next((c for c in candidates if c.is_file()), None)


def _find_plate(folder: Path, record: CameraRecord) -> Path | None:
    """A view's plate: by its name, else its sensor's (the first folder of a rig image's name, or
    the COLMAP camera id): one plate serves every photo a fixed camera took."""
    found = _find(folder, record.name)
    keys = []
    if len(Path(record.name).parts) > 1:
        keys.append(Path(record.name).parts[0])
    if "camera_id" in record.entry:
        keys.append(str(record.entry["camera_id"]))
    for key in keys:
        if found is None:
            found = next(
                (folder / (key + s) for s in _IMAGE_SUFFIXES if (folder / (key + s)).is_file()), None
            )
    return found


def _view_name(record_name: str) -> str:
    stem = Path(record_name).with_suffix("")
    return "_".join(p for p in stem.parts if p not in (".", "..", "/")) or "view"


def _capture_root(capture: Path) -> Path:
    """The capture's own folder: above the camera file, and above COLMAP's ``sparse/N``."""
    root = capture if capture.is_dir() else capture.parent
    if root.name == "sparse":
        return root.parent
    if root.parent.name == "sparse":
        return root.parent.parent
    return root


def is_capture(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a capture to import rather than a meshfit dataset: its cameras have lens
    distortion, or its photos are not in the dataset layout (no ``rgb/``, ``mask/`` or ``frames/``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    try:
        records = read_camera_records(folder).records
    except (FileNotFoundError, CameraError):
        return False
    if any(r.lens.distorted for r in records):
        return True
    return not any((folder / k).is_dir() for k in ("rgb", "mask", "frames"))


def _sources(capture: Path, *, images, masks, plates, chroma) -> tuple[list[_Source], dict]:
    records, source, kind, unposed = read_camera_records(capture)
    root = _capture_root(capture)
    if kind.startswith("COLMAP"):
        image_dirs = [Path(images)] if images else [root / "images", root]
    elif kind == "transforms.json":
        image_dirs = [Path(images)] if images else [source.parent]
    else:
        image_dirs = [Path(images)] if images else [root / "rgb", root / "images", root]
    explicit = masks is not None or plates is not None or chroma
    per_frame = any("mask_path" in r.entry for r in records)
    if not explicit and not per_frame:
        masks = next((root / d for d in ("masks", "mask") if (root / d).is_dir()), None)
        plates = root / "plates" if masks is None and (root / "plates").is_dir() else None
    for what, folder in (("--masks", masks), ("--plates", plates), ("--images", images)):
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"{what} {folder}: no such folder")
    out, seen = [], {}
    for r in records:
        name = _view_name(r.name)
        if name in seen:
            raise DatasetError(f"{source}: views {seen[name]!r} and {r.name!r} both become {name!r}")
        seen[name] = r.name
        image = next((p for d in image_dirs if (p := _find(d, r.name)) is not None), None)
        if image is None:
            looked = ", ".join(str(d) for d in image_dirs)
            raise FileNotFoundError(
                f"{source}: the photo of view {r.name!r} is not on disk (looked in {looked})"
            )
        s = _Source(name, r, image)
        if "mask_path" in r.entry and not explicit:
            s.mask = source.parent / r.entry["mask_path"]
        elif masks is not None:
            s.mask = _find(Path(masks), r.name)
        if masks is not None and s.mask is None:
            raise FileNotFoundError(
                f"{masks} has no mask for view {r.name!r} (looked for {r.name}.png and by stem)"
            )
        if plates is not None:
            s.plate = _find_plate(Path(plates), r)
            if s.plate is None:
                raise FileNotFoundError(
                    f"{plates} has no background plate for view {r.name!r} (by its name, its rig "
                    "sensor's folder or its COLMAP camera id)"
                )
        if "depth_file_path" in r.entry:
            s.depth = source.parent / r.entry["depth_file_path"]
            s.depth_scale = float(r.entry.get("depth_unit_scale_factor", 1e-3))
        elif (root / "depth" / f"{Path(r.name).stem}.npy").is_file():
            s.depth = root / "depth" / f"{Path(r.name).stem}.npy"
        lm = root / "landmarks" / f"{Path(r.name).stem}.json"
        s.landmarks = lm if lm.is_file() else None
        for f in (s.mask, s.depth):
            if f is not None and not f.is_file():
                raise FileNotFoundError(f"{source}: view {r.name!r} names {f}, which is not on disk")
        out.append(s)
    info = {"source": str(source), "kind": kind, "unposed": unposed}
    return out, info


# ---- per view --------------------------------------------------------------------------------


def _read_photo(path: Path, lens: Lens, *, colmap: bool = False) -> tuple[np.ndarray, Lens, str | None]:
    """The photo as uint8 [H, W, 3], the lens for its actual size, and a note for the checks.

    EXIF orientation: COLMAP calibrates the stored pixels (it ignores EXIF), so for a COLMAP model
    they are used as stored. Otherwise the photo is turned as EXIF says only when that is what
    makes it the camera's size (a 90-degree turn); when both readings fit the camera (180 degrees,
    a mirror, a square sensor) the stored pixels are used and the note says so.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            note = None
            if orientation not in (0, 1):
                stored_fits = _same_aspect(im.size, lens)
                oriented = ImageOps.exif_transpose(im)
                if colmap:
                    note = f"EXIF orientation {orientation} ignored, as COLMAP ignores it"
                elif _same_aspect(oriented.size, lens) and not stored_fits:
                    im = oriented
                    note = f"turned as EXIF orientation {orientation} says (the camera has the turned size)"
                else:
                    note = f"EXIF orientation {orientation} ignored: the camera fits the stored pixels"
            arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    except OSError as e:
        raise DatasetError(f"cannot read image {path}: {e}") from e
    h, w = arr.shape[:2]
    if (w, h) != (lens.width, lens.height):
        if not _same_aspect((w, h), lens):
            raise DatasetError(
                f"{path} is {w}x{h} but its camera says {lens.width}x{lens.height} "
                "(not a resized copy either: the aspect differs)"
            )
        resized = f"the photo is {w}x{h}, its camera {lens.width}x{lens.height}: intrinsics scaled"
        note = resized if note is None else f"{note}; {resized}"
        lens = lens.rescaled(w, h)
    return arr, lens, note


def _same_aspect(size: tuple[int, int], lens: Lens) -> bool:
    w, h = size
    return abs(w / lens.width - h / lens.height) <= 1.5 / min(lens.width, lens.height)


class _Undistorter:
    """Resamples one view's images from its lens into its pinhole camera; keeps the last map."""

    def __init__(self):
        self._key = None
        self._maps = None

    def maps(self, lens: Lens):
        key = (lens.model, lens.width, lens.height, lens.params)
        if key != self._key:
            cv2 = _cv2()
            mx, my = lens.undistortion_map(lens.pinhole, lens.width, lens.height)
            # Fixed point: remap's bilinear weights are 1/32 pixel steps even from float maps.
            self._maps = cv2.convertMaps(mx, my, cv2.CV_16SC2)
            self._key = key
        return self._maps

    def __call__(self, lens: Lens, image: np.ndarray, kind: str) -> np.ndarray:
        if not lens.distorted:
            return image
        cv2 = _cv2()
        m1, m2 = self.maps(lens)
        if kind == "depth":
            return cv2.remap(image, m1, m2, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if kind == "mask":
            cover = cv2.remap(
                image.astype(np.float32), m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            return cover > 0.5
        return cv2.remap(image, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _read_mask_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    from meshfit.io.dataset import _read_mask

    m = _read_mask(path)
    if (m.shape[1], m.shape[0]) != size:
        raise DatasetError(f"mask {path} is {m.shape[1]}x{m.shape[0]}; its photo is {size[0]}x{size[1]}")
    return m


def _read_depth_file(path: Path, scale: float, size: tuple[int, int]) -> np.ndarray:
    if path.suffix == ".npy":
        from meshfit.io.dataset import _read_depth

        d = _read_depth(path)
    else:
        from PIL import Image

        with Image.open(path) as im:
            d = np.asarray(im).astype(np.float32) * np.float32(scale)
        if d.ndim != 2:
            raise DatasetError(f"depth image {path} must have one channel; got shape {d.shape}")
    if (d.shape[1], d.shape[0]) != size:
        raise DatasetError(f"depth {path} is {d.shape[1]}x{d.shape[0]}; its photo is {size[0]}x{size[1]}")
    return d


def _scale_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of an image resampled by (sx, sy), pixel centres kept (u' = (u + 0.5) s - 0.5)."""
    K = K.copy()
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def _reprojection(record: CameraRecord, lens: Lens) -> dict | None:
    xy, xyz = record.entry.get("points2D"), record.entry.get("points3D")
    if xy is None or len(xy) == 0:
        return None
    cam = (record.world_to_camera[:3, :3] @ xyz.T).T + record.world_to_camera[:3, 3]
    front = cam[:, 2] > 1e-9
    proj = lens.project(cam[front, :2] / cam[front, 2:3])
    err = np.linalg.norm(proj - xy[front], axis=1)
    err = err[np.isfinite(err)]
    if not len(err):
        return None
    return {"points": int(len(err)), "mean_px": float(err.mean()), "median_px": float(np.median(err)),
            "max_px": float(err.max())}  # fmt: skip


# ---- the whole import ---------------------------------------------------------------------------


def _output_size(w: int, h: int, size: int | None) -> tuple[int, int]:
    if size is None or size >= max(w, h):
        return w, h
    s = size / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _crop_boxes(boxes: list, shapes: list) -> list[tuple[int, int, int, int]]:
    """One crop size for every view (the largest object box plus a margin), centred on each view's
    object and kept inside its image: [(x0, y0, w, h)]."""
    sizes = [(b[2] - b[0], b[3] - b[1]) for b in boxes if b is not None]
    if not sizes:
        raise DatasetError("--crop needs the object in at least one mask; every mask is empty")
    bw = max(s[0] for s in sizes)
    bh = max(s[1] for s in sizes)
    margin = CROP_MARGIN * max(bw, bh)
    out = []
    for b, (H, W) in zip(boxes, shapes):
        cw, ch = min(W, math.ceil(bw + 2 * margin)), min(H, math.ceil(bh + 2 * margin))
        cx, cy = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) if b is not None else (W / 2, H / 2)
        x0 = int(np.clip(round(cx - cw / 2), 0, W - cw))
        y0 = int(np.clip(round(cy - ch / 2), 0, H - ch))
        out.append((x0, y0, cw, ch))
    if len({(c[2], c[3]) for c in out}) > 1:
        raise DatasetError("--crop: the views have different sizes; crop them to one size first")
    return out


def _thumbnail(rgb: np.ndarray, mask: np.ndarray | None, side: int = 192) -> np.ndarray:
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    thumb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    if mask is not None:
        m = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
        tint = np.array([1.0, 0.2, 0.6], np.float32)
        thumb = np.where(m[..., None], 0.55 * thumb + 0.45 * tint, 0.6 * thumb)
        edge = m ^ cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        thumb[edge] = (1.0, 1.0, 0.2)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[: thumb.shape[0], : thumb.shape[1]] = np.rint(thumb * 255)
    return canvas


def _contact_sheet(thumbs: list[np.ndarray], names: list[str], path: Path) -> None:
    from meshfit.report import _label

    cols = min(8, len(thumbs))
    rows = math.ceil(len(thumbs) / cols)
    side = thumbs[0].shape[0]
    sheet = np.zeros((rows * side, cols * side, 3), np.uint8)
    labelled = _label(np.concatenate(thumbs, 1), names)
    for i in range(len(thumbs)):
        r, c = divmod(i, cols)
        sheet[r * side : (r + 1) * side, c * side : (c + 1) * side] = labelled[:, i * side : (i + 1) * side]
    write_image(path, sheet)


def _hull_checks(cameras: Camera, masks: np.ndarray, names: list[str]) -> dict:
    """Per view, how much of the other views' visual hull it sees (a voxel carving): ``seen`` is the
    fraction of the others' hull voxels inside its image, ``agree`` the fraction of those on its mask."""
    from meshfit.fitting.placement import estimate_placement

    centre, radius = estimate_placement(cameras, masks)
    axis = np.linspace(-1.3 * radius, 1.3 * radius, 40)
    grid = np.stack(np.meshgrid(axis, axis, axis), -1).reshape(-1, 3) + centre
    uv, z = (np.asarray(a) for a in cameras.project(grid.astype(np.float32)))
    n, H, W = masks.shape
    u, v = np.rint(uv[..., 0]).astype(int), np.rint(uv[..., 1]).astype(int)
    inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    on = np.zeros_like(inside)
    for i in range(n):
        on[i, inside[i]] = masks[i][v[i, inside[i]], u[i, inside[i]]]
    carved = inside & ~on  # view i says: not the object
    carves = carved.sum(0)
    result = {}
    for i in range(n):
        hull = (carves - carved[i] == 0) & ((inside.sum(0) - inside[i]) >= 2)
        total = int(hull.sum())
        seen = hull & inside[i]
        result[names[i]] = {
            "seen": float(seen.sum() / total) if total else 0.0,
            "agree": float((seen & on[i]).sum() / max(int(seen.sum()), 1)),
        }
    return result


def import_capture(
    capture: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: int | None = None,
    crop: bool = False,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    plates: str | os.PathLike | None = None,
    chroma: str | Sequence[int] | None = None,
    chroma_tolerance: float = 40.0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Import a real capture into a meshfit dataset folder (the module docstring has the steps).

    Args:
        capture: the capture folder (or its camera file): COLMAP model + ``images/``,
            ``transforms.json``, or ``cameras.json`` + ``rgb/`` or ``images/``.
        out: the dataset folder to create (``meshfit.io.load_views`` reads it).
        size: the output's longer image side in pixels (area-filtered); None keeps the size.
        crop: crop every view to the object (from its mask) with one common size; the cameras'
            principal points move with the crop.
        images: the photos' folder when not the capture's ``images/`` (COLMAP) or the default.
        masks: a folder of given masks (``NAME.png``, COLMAP's ``NAME.jpg.png``, or by stem);
            the capture's own ``masks/`` or ``mask/`` is used when no mask source is given.
        plates: a folder of clean background plates: one per view (``NAME.*`` or by stem), or one
            per rig sensor (its folder's name) or COLMAP camera (its id); the capture's own
            ``plates/`` is used when neither masks nor a mask source are given.
        chroma: a chroma key colour (``green``, ``blue``, ``#RRGGBB``) with ``chroma_tolerance``.
        overwrite: replace an earlier meshfit output at ``out``.
        progress: a progress bar on stderr.
    Returns:
        The report written to ``out/import.json``: ``views`` (per view: size notes, mask coverage,
        border contact, hull visibility, reprojection error), ``warnings`` (what a person should
        look at), ``cameras`` (each lens and its pinhole replacement), timings.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    capture = Path(capture)
    given = [m for m in (masks, plates, chroma) if m is not None]
    if len(given) > 1:
        raise ValueError("give one mask source: --masks, --plates or --chroma")
    if size is not None and size < 8:
        raise ValueError(f"--size {size}: the output's longer side must be at least 8 pixels")
    key = parse_colour(chroma) if isinstance(chroma, str) else (tuple(chroma) if chroma is not None else None)
    inputs = [capture, images, masks, plates]
    check_output_dir(out, overwrite=overwrite, inputs=inputs)
    sources, info = _sources(capture, images=images, masks=masks, plates=plates, chroma=key is not None)
    colmap = info["kind"].startswith("COLMAP")
    has_masks = key is not None or any(s.mask is not None or s.plate is not None for s in sources)
    undistort = _Undistorter()

    def mask_of(s: _Source, photo: np.ndarray, lens: Lens) -> np.ndarray | None:
        size = (photo.shape[1], photo.shape[0])
        if s.mask is not None:
            m = _read_mask_file(s.mask, size)
        elif s.plate is not None:
            plate, _, _ = _read_photo(s.plate, lens, colmap=colmap)
            if plate.shape != photo.shape:
                raise DatasetError(
                    f"plate {s.plate} is {plate.shape[1]}x{plate.shape[0]}; "
                    f"its photo {s.image} is {size[0]}x{size[1]}"
                )
            m = plate_mask(photo, plate)
        elif key is not None:
            m = chroma_mask(photo, key, tolerance=chroma_tolerance)
        else:
            return None
        return undistort(lens, m, "mask")

    bar = lambda it, desc: tqdm(it, desc=desc, unit="view", disable=not progress, leave=False)  # noqa: E731
    boxes, shapes, cached = [], [], {}
    if crop:
        if not has_masks:
            raise ValueError("--crop needs masks: give --masks, --plates or --chroma (or a masks/ folder)")
        for s in bar(sources, "masks"):
            photo, lens, _ = _read_photo(s.image, s.record.lens, colmap=colmap)
            m = mask_of(s, photo, lens)
            ys, xs = np.nonzero(m)
            boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None)
            shapes.append(m.shape)
            cached[s.name] = (np.packbits(m), m.shape)
            del photo
        crops = _crop_boxes(boxes, shapes)
    report_views, warnings, lenses = {}, [], {}
    Ks, w2cs, out_sizes, small_masks, thumbs = [], [], [], [], []
    with atomic_dir(out, overwrite=overwrite, inputs=inputs, kind="import") as tmp:
        for i, s in enumerate(bar(sources, "import")):
            photo, lens, note = _read_photo(s.image, s.record.lens, colmap=colmap)
            entry = {"source": str(s.image)}
            if note:
                entry["note"] = note
                warnings.append(f"view {s.name}: {note}")
            if s.name in cached:
                packed, shape = cached.pop(s.name)
                m = np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)
            else:
                m = mask_of(s, photo, lens)
            depth = None
            if s.depth is not None:
                depth = undistort(
                    lens, _read_depth_file(s.depth, s.depth_scale, (lens.width, lens.height)), "depth"
                )
            rgb = undistort(lens, photo, "rgb")
            del photo
            plate = None
            if (
                s.plate is not None
            ):  # kept as the view's clean plate: a photometric fit lays its render over it
                plate = undistort(lens, _read_photo(s.plate, lens, colmap=colmap)[0], "rgb")
            K = lens.pinhole
            lenses.setdefault(lens.describe(), K.tolist())
            if crop:
                x0, y0, cw, ch = crops[i]
                rgb, m = rgb[y0 : y0 + ch, x0 : x0 + cw], m[y0 : y0 + ch, x0 : x0 + cw]
                plate = None if plate is None else plate[y0 : y0 + ch, x0 : x0 + cw]
                depth = None if depth is None else depth[y0 : y0 + ch, x0 : x0 + cw]
                K = K.copy()
                K[0, 2] -= x0
                K[1, 2] -= y0
                entry["crop"] = [x0, y0, cw, ch]
            h, w = rgb.shape[:2]
            W2, H2 = _output_size(w, h, size)
            if (W2, H2) != (w, h):
                cv2 = _cv2()
                rgb = cv2.resize(rgb, (W2, H2), interpolation=cv2.INTER_AREA)
                if plate is not None:
                    plate = cv2.resize(plate, (W2, H2), interpolation=cv2.INTER_AREA)
                if m is not None:
                    m = cv2.resize(m.astype(np.float32), (W2, H2), interpolation=cv2.INTER_AREA) > 0.5
                if depth is not None:
                    depth = cv2.resize(depth, (W2, H2), interpolation=cv2.INTER_NEAREST)
                K = _scale_K(K, W2 / w, H2 / h)
            if out_sizes and (W2, H2) != out_sizes[0]:
                raise DatasetError(
                    f"view {s.name} comes out {W2}x{H2} but view {sources[0].name} "
                    f"{out_sizes[0][0]}x{out_sizes[0][1]}: "
                    "a dataset has one image size (--size S makes the longer side S for all)"
                )
            out_sizes.append((W2, H2))
            (tmp / "rgb").mkdir(exist_ok=True)
            write_image(tmp / "rgb" / f"{s.name}.png", rgb)
            if plate is not None:
                (tmp / "background").mkdir(exist_ok=True)
                write_image(tmp / "background" / f"{s.name}.png", plate)
            if m is not None:
                (tmp / "mask").mkdir(exist_ok=True)
                write_image(tmp / "mask" / f"{s.name}.png", m.astype(np.uint8) * 255)
                coverage = float(m.mean())
                border = bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
                entry.update(mask_coverage=coverage, mask_touches_border=border)
                if coverage < EMPTY_MASK:
                    warnings.append(f"view {s.name}: the mask is empty (check its mask source)")
                elif border:
                    warnings.append(
                        f"view {s.name}: the mask touches the image border (the object may be cut off)"
                    )
                small_masks.append(_small(m))
            if depth is not None:
                (tmp / "depth").mkdir(exist_ok=True)
                with atomic_path(tmp / "depth" / f"{s.name}.npy") as f, open(f, "wb") as fh:
                    np.save(fh, depth.astype(np.float32))
            if s.landmarks is not None:
                pts, conf = read_landmark_file(s.landmarks)
                pts = pts.astype(np.float64)
                pts = lens.undistort_points(pts, lens.pinhole) if lens.distorted else pts.copy()
                if crop:
                    pts -= entry["crop"][:2]
                sx, sy = W2 / w, H2 / h
                pts = (pts + 0.5) * (sx, sy) - 0.5
                write_landmark_file(tmp / "landmarks" / f"{s.name}.json", pts, conf)
            err = _reprojection(s.record, s.record.lens)  # COLMAP's points are at its cameras' size
            if err is not None:
                entry["reprojection"] = err
            thumbs.append(_thumbnail(rgb, m))
            Ks.append(K)
            w2cs.append(s.record.world_to_camera)
            report_views[s.name] = entry
        names = [s.name for s in sources]
        try:
            cams = Camera.from_matrices(np.stack(Ks).astype(np.float32), np.stack(w2cs).astype(np.float32),
                                        *out_sizes[0])  # fmt: skip
        except CameraError as e:
            raise CameraError(f"the imported cameras are not valid: {e}") from e
        save_cameras(tmp / "cameras.json", cams, names=names)
        if has_masks and len(small_masks) == len(names) and sum(m.any() for m in small_masks) >= 2:
            try:
                hull = _hull_checks(_small_cameras(cams, small_masks[0].shape), np.stack(small_masks), names)
            except ValueError as e:
                warnings.append(f"visual hull check skipped: {e}")
                hull = {}
            for name, h in hull.items():
                report_views[name]["hull"] = h
                if h["seen"] < 0.05:
                    warnings.append(
                        f"view {name}: sees nothing of the other views' visual hull (check its pose)"
                    )
                elif h["agree"] < 0.5:
                    warnings.append(
                        f"view {name}: its mask covers only {100 * h['agree']:.0f}% of where the "
                        "others' hull projects"
                    )
        elif not has_masks:
            warnings.append("no masks: give --masks, --plates or --chroma to fit this capture")
        reproj = [v["reprojection"]["mean_px"] for v in report_views.values() if "reprojection" in v]
        if reproj:
            worst = max(
                report_views, key=lambda n: report_views[n].get("reprojection", {}).get("mean_px", -1)
            )
            if report_views[worst]["reprojection"]["mean_px"] > 2.0:
                warnings.append(
                    f"view {worst}: COLMAP points reproject "
                    f"{report_views[worst]['reprojection']['mean_px']:.2f} px "
                    "from their observations on average (a poor calibration?)"
                )
        if info["unposed"]:
            warnings.append(f"{len(info['unposed'])} images have no pose in the model and were left out")
        _contact_sheet(thumbs, names, tmp / "masks.png")
        used = {"masks": any(s.mask for s in sources), "plates": any(s.plate for s in sources),
                "chroma": key is not None}  # fmt: skip
        mask_source = next((k for k, on in used.items() if on), None)
        report = {
            **info, "views": report_views, "warnings": warnings, "cameras": lenses,
            "size": list(out_sizes[0]), "crop": crop,
            "mask_source": mask_source,
            "seconds": time.perf_counter() - t0,
        }  # fmt: skip
        with atomic_path(tmp / "import.json") as f:
            f.write_text(json.dumps(report, indent=1) + "\n")
    return report


# Masks for the hull check are downsized to this longer side: the check needs shape, not detail.
_CHECK_SIDE = 256


def _small(m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    s = min(1.0, _CHECK_SIDE / max(h, w))
    if s == 1.0:
        return m
    cv2 = _cv2()
    return (
        cv2.resize(
            m.astype(np.float32), (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
        )
        > 0.5
    )


def _small_cameras(cams: Camera, shape: tuple[int, int]) -> Camera:
    H, W = shape
    if (W, H) == (cams.width, cams.height):
        return cams
    return cams.resized(W, H)

"""Datasets in the ``meshfit synth`` layout: cameras plus ``rgb/``, ``mask/``, ``depth/`` per view.

One frame::

    DIR/cameras.json        (or transforms.json, or a COLMAP text model)
    DIR/rgb/NAME.png        colour, optional
    DIR/mask/NAME.png       the object's coverage: 0 background, 255 object (required to fit)
    DIR/depth/NAME.npy      float32 camera-space z in the cameras' units, 0 where empty, optional
    DIR/landmarks/NAME.json 2-D landmark detections, optional (``meshfit.io.landmarks``)
    DIR/background/NAME.png the view's clean background plate (the camera without the object),
                            optional: a photometric fit without masks compares against it

A performance (many frames through one rig) keeps one camera file and a folder per frame::

    DIR/cameras.json
    DIR/frames/0000/{rgb,mask,depth,landmarks}/NAME.*
    DIR/frames/0001/...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from meshfit.camera import Camera
from meshfit.io.atomic import atomic_path
from meshfit.io.cameras import load_cameras
from meshfit.io.images import read_image, write_image
from meshfit.io.landmarks import read_landmarks

__all__ = ["DatasetError", "Views", "is_sequence", "load_sequence", "load_views", "write_views"]


class DatasetError(ValueError):
    """A dataset file that is missing, mis-sized or holds values meshfit cannot use."""


def write_views(folder: str | os.PathLike, names: Sequence[str], **images: np.ndarray) -> None:
    """Write per-view images in the dataset layout: ``folder/KIND/NAME.png`` (or ``.npy``).

    Each keyword is a KIND with [N, H, W(, C)] arrays: ``rgb`` (float in [0, 1] or uint8),
    ``mask`` (bool, written 0/255), ``normal`` (unit vectors, written as (n + 1) / 2, black where
    zero), ``depth`` (float32 camera-space z, written as .npy, 0 where empty). Each file is written
    atomically; to make a whole dataset appear at once, write into ``meshfit.io.atomic_dir``.
    """
    folder = Path(folder)
    for kind, arr in images.items():
        if len(arr) != len(names):
            raise ValueError(f"{kind}: {len(arr)} images for {len(names)} names")
    for kind, arr in images.items():
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for name, img in zip(names, arr):
            if kind == "depth":
                with atomic_path(folder / kind / f"{name}.npy") as tmp, open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(img, np.float32))
            elif kind == "mask":
                write_image(folder / kind / f"{name}.png", np.asarray(img, bool).astype(np.uint8) * 255)
            elif kind == "normal":
                n = np.asarray(img)
                on_surface = np.any(n != 0, axis=-1, keepdims=True)
                encoded = np.where(on_surface, (n + 1.0) / 2.0, 0.0)
                write_image(folder / kind / f"{name}.png", encoded)
            else:
                write_image(folder / kind / f"{name}.png", img)


class Views(NamedTuple):
    """A multi-view dataset in memory: one frame, or T frames through the same rig.

    cameras: [N] batch. names: the N view names.
    rgb: [(T,) N, H, W, 3] float32 in [0, 1] or None.
    mask: [(T,) N, H, W] bool or None.
    depth: [(T,) N, H, W] float32 camera-space z (0 = empty) or None.
    frames: the T frame names of a sequence (``load_sequence``), None for one frame.
    landmarks: [(T,) N, L, 2] float32 detected pixel positions (NaN = not found) or None.
    landmark_confidence: [(T,) N, L] float32 weights in [0, 1] (0 = not found) or None.
    background: [N, H, W, 3] float32 clean background plates in [0, 1] (one per view, shared by
        a sequence's frames) or None.
    """

    cameras: Camera
    names: list[str]
    rgb: np.ndarray | None
    mask: np.ndarray | None
    depth: np.ndarray | None
    frames: list[str] | None = None
    landmarks: np.ndarray | None = None
    landmark_confidence: np.ndarray | None = None
    background: np.ndarray | None = None


def _read_mask(path: Path) -> np.ndarray:
    img = read_image(path)
    # A colour mask: any channel; an alpha-only image: its alpha.
    m = img[..., :3].max(-1) if img.shape[-1] >= 3 else img[..., 0]
    top = float(m.max(initial=0.0))
    if 0 < top <= 0.5:
        raise DatasetError(
            f"{path}: mask values reach only {round(top * 255)} of 255; masks must be 0 for background "
            "and 255 (white) for the object"
        )
    return m > 0.5


def _read_depth(path: Path) -> np.ndarray:
    try:
        d = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"cannot read depth {path}: not a NumPy .npy array of numbers") from e
    if d.ndim != 2:
        raise DatasetError(f"{path} must be an [H, W] depth map; got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.floating):
        raise DatasetError(
            f"{path} holds {d.dtype} values; depth must be float32 camera-space z in the cameras' "
            "units (integer millimetres? divide by 1000 and save as float32), 0 where empty"
        )
    bad = ~np.isfinite(d)
    if bad.any():
        raise DatasetError(f"{path} has {int(bad.sum())} non-finite values (NaN/inf); write 0 where empty")
    if (d < 0).any():
        raise DatasetError(
            f"{path} has {int((d < 0).sum())} negative depths; depth is camera-space z (> 0), 0 where empty"
        )
    return d.astype(np.float32)


def _read_images(
    folder: Path, names: list[str], width: int, height: int, where: Path, kinds=("rgb", "mask", "depth")
) -> dict:
    def find(kind: str, name: str, suffixes: tuple[str, ...]) -> Path:
        stem = Path(name).stem
        for suffix in suffixes:
            if (folder / kind / f"{stem}{suffix}").is_file():
                return folder / kind / f"{stem}{suffix}"
        looked = ", ".join(stem + x for x in suffixes)
        raise FileNotFoundError(f"{folder / kind} has no file for view {name!r} (looked for {looked})")

    def check(path: Path, shape: tuple[int, ...]) -> None:
        if shape[:2] != (height, width):
            raise DatasetError(
                f"{path} is {shape[1]}x{shape[0]} but its camera in {where} says {width}x{height}"
            )

    images = {}
    for kind in kinds:
        if not (folder / kind).is_dir():
            images[kind] = None
            continue
        out = []
        for name in names:
            if kind == "depth":
                path = find(kind, name, (".npy",))
                img = _read_depth(path)
            else:
                path = find(kind, name, (".png", ".jpg", ".jpeg"))
                img = _read_mask(path) if kind == "mask" else read_image(path)
                if kind in ("rgb", "background"):
                    if img.shape[-1] not in (1, 3, 4):
                        raise DatasetError(
                            f"{path}: expected a grey, RGB or RGBA image; got {img.shape[-1]} channels"
                        )
                    img = np.repeat(img, 3, -1) if img.shape[-1] == 1 else img[..., :3]
            check(path, img.shape)
            out.append(img)
        images[kind] = np.stack(out)
    return images


def _check_landmarks(marks, cams: Camera, folder: Path) -> None:
    """Detections far outside their image (more than an image's size beyond its edges) are a
    unit or convention mistake (normalised coordinates, another resolution), not a detection."""
    if marks is None:
        return
    points = marks[0]
    limit = np.array([cams.width, cams.height], np.float32)
    far = np.isfinite(points).all(-1) & ((points < -limit).any(-1) | (points > 2 * limit).any(-1))
    if far.any():
        n, k = (int(i[0]) for i in np.nonzero(far))
        raise DatasetError(
            f"{folder / 'landmarks'}: {int(far.sum())} points lie more than an image's size outside their "
            f"image (view {n}, point {k}: {points[n, k].tolist()} in a {cams.width}x{cams.height} image); "
            "landmarks are pixels at the cameras' resolution"
        )


def load_views(folder: str | os.PathLike, *, cameras: str | os.PathLike | None = None) -> Views:
    """Read a one-frame dataset folder: cameras (``load_cameras``) and ``rgb/``, ``mask/``, ``depth/``,
    ``landmarks/``, ``background/`` (each optional).

    Each view's files are found by the stem of its name (``000`` -> ``rgb/000.png``,
    ``mask/000.png``, ``depth/000.npy``; ``images/frame_01.jpg`` -> ``rgb/frame_01.*``). A missing
    folder gives None for that kind. Errors name the file: a missing file in a present folder, an
    image whose size differs from its camera's, a mask that is not 0/255, depth that is not
    float, is negative or non-finite, a landmark file that is malformed or counts other points.

    Args:
        folder: the dataset folder.
        cameras: the camera file or model folder, if not in ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    cam_source = Path(cameras) if cameras is not None else folder
    cams, names = load_cameras(cam_source)
    images = _read_images(
        folder, names, cams.width, cams.height, cam_source, ("rgb", "mask", "depth", "background")
    )
    marks = read_landmarks(folder, names)
    _check_landmarks(marks, cams, folder)
    return Views(cams, names, images["rgb"], images["mask"], images["depth"], None,
                 *(marks if marks is not None else (None, None)), images["background"])  # fmt: skip


def is_sequence(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a performance (a ``frames/`` folder of per-frame image folders)."""
    return (Path(folder) / "frames").is_dir()


def load_sequence(folder: str | os.PathLike, *, cameras: str | os.PathLike | None = None) -> Views:
    """Read a performance: one rig (``folder``'s cameras) and ``frames/NNNN/`` image folders.

    Returns Views with a leading frame axis on rgb, mask and depth, and ``frames`` the frame folder
    names in sorted order. Every frame must have the same kinds of images; the background
    plates (``folder/background/``) are the rig's, shared by every frame.
    """
    folder = Path(folder)
    if not (folder / "frames").is_dir():
        raise FileNotFoundError(f"{folder} has no frames/ folder (the multi-frame layout)")
    cam_source = Path(cameras) if cameras is not None else folder
    cams, names = load_cameras(cam_source)
    frames = sorted(p.name for p in (folder / "frames").iterdir() if p.is_dir())
    if not frames:
        raise DatasetError(f"{folder / 'frames'} holds no frame folders")
    per_frame = [
        _read_images(folder / "frames" / f, names, cams.width, cams.height, cam_source) for f in frames
    ]
    stacked = {}
    for kind in ("rgb", "mask", "depth"):
        have = [f for f, imgs in zip(frames, per_frame) if imgs[kind] is not None]
        if have and len(have) != len(frames):
            lacking = sorted(set(frames) - set(have))
            raise DatasetError(f"{folder / 'frames'}: frames {lacking} have no {kind}/ folder but others do")
        stacked[kind] = np.stack([imgs[kind] for imgs in per_frame]) if have else None
    marks = [read_landmarks(folder / "frames" / f, names) for f in frames]
    for f, m in zip(frames, marks):
        _check_landmarks(m, cams, folder / "frames" / f)
    have = [f for f, m in zip(frames, marks) if m is not None]
    points = confidence = None
    if have:
        if len(have) != len(frames):
            lacking = sorted(set(frames) - set(have))
            raise DatasetError(
                f"{folder / 'frames'}: frames {lacking} have no landmarks/ folder but others do"
            )
        counts = {m[0].shape[1] for m in marks}
        if len(counts) > 1:
            raise DatasetError(f"{folder / 'frames'}: frames give different landmark counts {sorted(counts)}")
        points, confidence = np.stack([m[0] for m in marks]), np.stack([m[1] for m in marks])
    plates = _read_images(folder, names, cams.width, cams.height, cam_source, ("background",))["background"]
    return Views(
        cams, names, stacked["rgb"], stacked["mask"], stacked["depth"], frames, points, confidence, plates
    )

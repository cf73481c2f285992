"""Image files: PNG/JPEG in, [H, W, C] float32 in [0, 1] out, and back (atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from meshfit.io.atomic import atomic_path

__all__ = ["float_to_uint8", "image_to_float", "read_image", "write_image"]


def image_to_float(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32)


def float_to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(np.asarray(a, np.float64) * 255.0), 0, 255).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as [H, W, C] float32 in [0, 1] (row 0 = top)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            # Palette and grey+alpha images: their pixel values, not palette indices.
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("LA", "PA", "1"):
                im = im.convert("RGBA" if im.mode != "1" else "L")
            return image_to_float(np.asarray(im))
    except OSError as e:
        raise OSError(f"cannot read image {path}: {e}") from e


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (float in [0, 1], or uint8) as PNG/JPEG."""
    from PIL import Image

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"image must be [H, W], [H, W, 1|3|4]; got {a.shape}")
    if a.dtype != np.uint8 and not np.isfinite(a).all():
        raise ValueError(f"image for {path} contains non-finite values")
    with atomic_path(path) as tmp:
        Image.fromarray(float_to_uint8(a)).save(
            tmp, format=Image.registered_extensions()[Path(path).suffix.lower()]
        )

"""Object masks for real photos: from a clean background plate or a chroma key, then cleaned up.

Both return [H, W] bool at the photo's resolution. The clean-up (``clean_mask``) is the same for
both: a morphological opening removes specks, a closing bridges cracks, holes enclosed by the object
are filled, and connected pieces smaller than ``keep`` of the largest are dropped.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CHROMA_KEYS", "chroma_mask", "clean_mask", "parse_colour", "plate_mask"]

# Named chroma keys: the studio greens and blues.
CHROMA_KEYS = {"green": (0, 177, 64), "blue": (0, 71, 187)}
# Smallest plate difference (0..255) taken as the object: JPEG noise and flicker stay below it.
NOISE_FLOOR = 10.0


def _cv2():
    import cv2

    return cv2


def parse_colour(text: str) -> tuple[int, int, int]:
    """``green``, ``blue``, ``#00b140`` or ``0,177,64`` -> an (R, G, B) triple of 0..255."""
    t = text.strip().lower()
    if t in CHROMA_KEYS:
        return CHROMA_KEYS[t]
    try:
        if t.startswith("#") and len(t) == 7:
            rgb = tuple(int(t[i : i + 2], 16) for i in (1, 3, 5))
        else:
            rgb = tuple(int(x) for x in t.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"chroma key colour must be green, blue, #RRGGBB or R,G,B (0..255); got {text!r}")
    return rgb  # type: ignore[return-value]


def _kernel(shape: tuple[int, int], fraction: float):
    r = max(1, round(fraction * float(np.hypot(*shape))))
    return _cv2().getStructuringElement(_cv2().MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def clean_mask(mask: np.ndarray, *, keep: float = 0.05) -> np.ndarray:
    """[H, W] bool -> the cleaned mask (module docstring): open, close, fill holes, keep the pieces
    at least ``keep`` times the largest's area."""
    cv2 = _cv2()
    m = mask.astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, _kernel(m.shape, 0.002))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _kernel(m.shape, 0.004))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    kept = np.flatnonzero(areas >= keep * areas.max()) + 1
    m = np.isin(labels, kept).astype(np.uint8)
    # Holes: background not connected to the image border (flood the border from outside).
    padded = np.pad(m, 1)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8), (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return m.astype(bool) | holes


def _half_coverage(diff: np.ndarray, core: np.ndarray) -> np.ndarray:
    """Edge pixels of ``core`` kept only where the object covers at least half of them: their
    difference from the plate reaches half that of the object's interior nearby (a pixel mixing
    object and plate differs from the plate in proportion to its coverage)."""
    cv2 = _cv2()
    interior = cv2.erode(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    weight = cv2.boxFilter(interior, -1, (9, 9), normalize=False)
    local = cv2.boxFilter(diff * interior, -1, (9, 9), normalize=False) / np.maximum(weight, 1.0)
    edge = core & (interior == 0) & (weight > 0)
    return core & ~(edge & (diff < 0.5 * local))


def plate_mask(image: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """The object in ``image`` [H, W, 3] uint8 against its camera's clean background ``plate``
    (the same size): the colour difference (largest over channels) above six robust standard
    deviations (median absolute deviation) of the background's own difference, at least
    ``NOISE_FLOOR``, at most Otsu's threshold (whose lower class estimates the background); edge
    pixels kept where the object covers half of them; then ``clean_mask``. Dark parts of the object
    against a dark plate are the weak spot: only holes enclosed by the object are recovered."""
    cv2 = _cv2()
    if image.shape != plate.shape:
        raise ValueError(
            f"the plate is {plate.shape[1]}x{plate.shape[0]}, the image {image.shape[1]}x{image.shape[0]}"
        )
    diff = cv2.absdiff(image, plate).max(axis=2)
    otsu, _ = cv2.threshold(diff, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    background = diff[diff <= otsu].astype(np.float32)  # Otsu's lower class: mostly the plate
    med = float(np.median(background))
    noise = 1.4826 * float(np.median(np.abs(background - med)))
    threshold = min(float(otsu), max(med + 6.0 * noise, NOISE_FLOOR))
    return clean_mask(_half_coverage(diff.astype(np.float32), diff > threshold))


def chroma_mask(image: np.ndarray, key: tuple[int, int, int], *, tolerance: float = 40.0) -> np.ndarray:
    """The object in ``image`` [H, W, 3] uint8 (RGB) shot against a screen of colour ``key``:
    pixels whose chroma (Cr, Cb of YCrCb, brightness ignored so shadows on the screen stay
    background) is farther than ``tolerance`` (0..255 units) from the key's, then ``clean_mask``."""
    cv2 = _cv2()
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    key_ycc = cv2.cvtColor(np.uint8([[key]]), cv2.COLOR_RGB2YCrCb).astype(np.float32)[0, 0]
    distance = np.hypot(ycc[..., 1] - key_ycc[1], ycc[..., 2] - key_ycc[2])
    return clean_mask(distance > tolerance)

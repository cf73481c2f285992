"""Captures whose truth is known: a mesh photographed through real lenses, as COLMAP would deliver it.

``make_capture`` renders a mesh with pyrender through pinhole cameras wide enough to cover a lens's
whole field of view, resamples each render through the lens (so the photo is distorted exactly as
the lens model says), puts it over a textured background, and writes what a capture holds:
``images/``, optional ``masks/`` and ``plates/`` (the empty background), and a COLMAP model
written by pycolmap (binary or text, with or without rigs and frames) with triangulated points.
Tests and ``bench/capture.py`` use it to check ``import_capture`` against the truth.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from meshfit.camera import Camera
from meshfit.io import load_mesh, write_image
from meshfit.io.lens import Lens, border_pixels

__all__ = ["background_plate", "distort_image", "make_capture"]


def background_plate(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """[H, W, 3] uint8: a smooth random colour field with fine noise, like a lit studio wall."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 200, size=(6, 8, 3)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field += rng.normal(0, 2.0, size=field.shape).astype(np.float32)
    return np.clip(field, 0, 255).astype(np.uint8)


def _opencv(lens: Lens) -> tuple[np.ndarray, np.ndarray, bool]:
    """An OpenCV-model lens as OpenCV's own K (pixel centres at integers), coefficients, fisheye."""
    p = np.asarray(lens.params, np.float64)
    K = np.array([[p[0], 0, p[2] - 0.5], [0, p[1], p[3] - 0.5], [0, 0, 1]])
    if lens.model == "OPENCV_FISHEYE":
        return K, p[4:8], True
    if lens.model in ("OPENCV", "FULL_OPENCV"):
        return K, p[4:], False
    raise ValueError(f"synthetic captures distort with OpenCV's models; got {lens.model}")


def _opencv_rays(lens: Lens, uv: np.ndarray) -> np.ndarray:
    """[P, 2] normalised rays of distorted pixels by OpenCV (independent of meshfit.io.lens)."""
    import cv2

    K, d, fisheye = _opencv(lens)
    pts = np.asarray(uv, np.float64).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-14)
    if fisheye:
        return cv2.fisheye.undistortPoints(pts, K, d, criteria=crit)[:, 0]
    return cv2.undistortPoints(pts, K, d, criteria=crit)[:, 0]


def _opencv_project(lens: Lens, cam_points: np.ndarray) -> np.ndarray:
    """[P, 2] distorted pixels (OpenCV/meshfit convention) of camera-space points [P, 3]."""
    import cv2

    K, d, fisheye = _opencv(lens)
    pts = np.asarray(cam_points, np.float64).reshape(-1, 1, 3)
    zero = np.zeros(3)
    if fisheye:
        return cv2.fisheye.projectPoints(pts, zero, zero, K, d)[0][:, 0]
    return cv2.projectPoints(pts, zero, zero, K, d)[0][:, 0]


def distort_image(image: np.ndarray, K: np.ndarray, lens: Lens, *, kind: str = "rgb") -> np.ndarray:
    """Resample a pinhole image ``image`` [h, w(, C)] with intrinsics ``K`` (meshfit convention)
    into what ``lens`` (its own size; an OpenCV model) photographs: each output pixel takes the
    pinhole pixel on its ray, as OpenCV computes it (not meshfit's lens code, which the imports
    under test use). ``kind``: ``rgb`` (bilinear), ``mask`` (coverage thresholded at 1/2), ``depth``
    (nearest)."""
    import cv2

    u, v = np.meshgrid(np.arange(lens.width, dtype=np.float64), np.arange(lens.height, dtype=np.float64))
    rays = _opencv_rays(lens, np.stack([u.ravel(), v.ravel()], 1))
    src = rays * K[[0, 1], [0, 1]] + K[:2, 2]
    src = np.nan_to_num(src, nan=-1e6).astype(np.float32).reshape(lens.height, lens.width, 2)
    interp = {"rgb": cv2.INTER_LINEAR, "mask": cv2.INTER_LINEAR, "depth": cv2.INTER_NEAREST}[kind]
    img = image.astype(np.float32) if kind == "mask" else image
    out = cv2.remap(img, src[..., 0], src[..., 1], interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out > 0.5 if kind == "mask" else out


def _wide_camera(K: np.ndarray, lens: Lens, margin: int = 4) -> tuple[np.ndarray, int, int]:
    """A pinhole camera with ``K``'s focal lengths whose image covers every ray of ``lens``."""
    border = border_pixels(lens.width, lens.height, 4 * max(lens.width, lens.height))
    src = _opencv_rays(lens, border) * K[[0, 1], [0, 1]] + K[:2, 2]
    lo = np.floor(np.nanmin(src, 0)) - margin
    hi = np.ceil(np.nanmax(src, 0)) + margin
    wide = K.copy()
    wide[:2, 2] -= lo
    size = (hi - lo + 1).astype(int)
    return wide, int(size[0]), int(size[1])


def make_capture(
    mesh: str | os.PathLike,
    cameras: Camera,
    out: str | os.PathLike,
    lens_for: Callable[[np.ndarray], Lens],
    *,
    names: Sequence[str] | None = None,
    masks: bool = True,
    plates: bool = True,
    binary: bool = True,
    rigs: bool = True,
    points: int = 300,
    background: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> dict:
    """Write a capture of ``mesh`` seen by ``cameras`` [N] (their poses; their pinhole intrinsics
    are what ``lens_for(K)`` distorts: an OpenCV model, applied by OpenCV) to ``out`` (module
    docstring for the layout); ``names`` may hold folders (``cam0/000.png``: a rig's sensors);
    ``background``: an (R, G, B) screen instead of the textured wall.

    Returns the truth: ``lenses`` (per view), ``names``, ``image_size``.
    """
    import pycolmap

    from meshfit.camera import clip_range
    from meshfit.mesh import bounding_sphere
    from meshfit.synth import pyrender_views

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = load_mesh(mesh)
    n = cameras.batch_shape[0]
    names = [f"{i:03d}.png" for i in range(n)] if names is None else list(names)
    K = np.asarray(cameras.K, np.float64)
    w2c = np.asarray(cameras.world_to_camera, np.float64)
    rec = pycolmap.Reconstruction()
    lenses = []
    centre, radius = bounding_sphere(m.vertices)
    near, far = clip_range(cameras, np.asarray(centre), float(radius))
    rng = np.random.default_rng(seed)
    surface = np.asarray(m.vertices, np.float64)[
        rng.choice(len(m.vertices), min(points, len(m.vertices)), False)
    ]
    for i in range(n):
        lens = lens_for(K[i])
        lenses.append(lens)
        wide_K, ww, wh = _wide_camera(K[i], lens)
        wide = Camera.from_matrices(wide_K[None].astype(np.float32), w2c[i][None].astype(np.float32), ww, wh)
        r = pyrender_views(m, wide, near=near, far=far)
        rgb = distort_image(r.rgb[0], wide_K, lens)
        mask = distort_image(r.mask[0], wide_K, lens, kind="mask")
        if background is None:
            plate = background_plate(lens.width, lens.height, seed=seed + i)
        else:  # a lit screen: its colour, a little uneven
            shade = np.linspace(0.85, 1.05, lens.width, dtype=np.float32)[None, :, None]
            plate = np.clip(np.float32(background) * shade, 0, 255).astype(np.uint8).repeat(lens.height, 0)
        cover = distort_image(r.mask[0].astype(np.float32), wide_K, lens, kind="rgb")[..., None]
        photo = np.clip(cover * rgb + (1 - cover) * plate, 0, 255).astype(np.uint8)
        write_image(out / "images" / names[i], photo)
        if masks:
            write_image(out / "masks" / (names[i] + ".png"), mask.astype(np.uint8) * 255)
        if plates:
            write_image(out / "plates" / names[i], plate)
        cam = pycolmap.Camera(
            model=lens.model, width=lens.width, height=lens.height, params=list(lens.params), camera_id=i + 1
        )
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[i][:3, :3]), w2c[i][:3, 3])
        image = pycolmap.Image(name=names[i], camera_id=i + 1, image_id=i + 1)
        cam_pts = surface @ w2c[i][:3, :3].T + w2c[i][:3, 3]
        xy = _opencv_project(lens, cam_pts) + 0.5  # COLMAP's pixel convention
        image.points2D = [pycolmap.Point2D(p) for p in xy]
        rec.add_camera_with_trivial_rig(cam)
        rec.add_image_with_trivial_frame(image, pose)
    for j, X in enumerate(surface):
        track = pycolmap.Track()
        for i in range(n):
            track.add_element(i + 1, j)
        rec.add_point3D(X, track)
    model = out / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    (rec.write_binary if binary else rec.write_text)(str(model))
    if not rigs:  # what COLMAP before 3.12 wrote
        for name in ("rigs", "frames"):
            (model / f"{name}{'.bin' if binary else '.txt'}").unlink()
    return {"lenses": lenses, "names": names, "image_size": (lenses[0].width, lenses[0].height)}

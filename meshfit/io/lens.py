"""Real lenses: a camera's intrinsics with distortion, and their undistortion into a pinhole camera.

COLMAP's camera models are the vocabulary and pycolmap (COLMAP's own bindings) evaluates them, so
every model COLMAP writes is understood the same way COLMAP understood it: SIMPLE_PINHOLE, PINHOLE,
SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV, OPENCV_FISHEYE, the fisheye variants, FOV, THIN_PRISM_FISHEYE,
... OpenCV's ``k1, k2, p1, p2, k3[, k4, k5, k6]`` (``cameras.json``) is COLMAP's FULL_OPENCV and
OpenCV's fisheye ``k1..k4`` is OPENCV_FISHEYE: the same equations.

Inside a ``Lens`` the parameters keep COLMAP's order and pixel convention (the centre of the top-left
pixel at (0.5, 0.5)); what leaves this module is in meshfit's (that centre at (0, 0)).

**The pinhole camera an undistorted image gets** (``Lens.pinhole``): the same image size, the same
ratio of focal lengths, and the shortest focal length (the widest view) for which every output pixel
looks through the lens onto the source image, with the principal point centring that view. So an
undistorted image has no black border and its mask no invented background; what is lost is the
part of the source outside the largest rectangle inscribed in its undistorted outline. A lens
without distortion keeps its own pinhole intrinsics and its images are not resampled.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np

from meshfit.camera import CameraError

__all__ = ["Lens", "border_pixels", "lens_from_opencv"]

# Above a megapixel the undistortion map evaluates the lens every MAP_STEP pixels and interpolates.
MAP_STEP = 8
# Rows of the undistortion map interpolated per block: bounds the float64 temporaries
# (float64 temporaries) whatever the image size.
_MAP_ROWS = 256


def _pycolmap():
    import pycolmap

    return pycolmap


@dataclasses.dataclass(frozen=True)
class Lens:
    """One camera's intrinsics and distortion.

    model: a COLMAP camera model name (``OPENCV``, ``OPENCV_FISHEYE``, ...).
    width, height: the image size the parameters refer to, pixels.
    params: the model's parameters in COLMAP's order and pixel convention.
    """

    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def __post_init__(self):
        try:
            cam = self.colmap
        except (ValueError, TypeError) as e:
            raise CameraError(f"camera model {self.model!r}: {e}") from e
        if not np.isfinite(self.params).all():
            raise CameraError(f"{self.model} camera has non-finite parameters {list(self.params)}")
        expected = _pycolmap().Camera.create_from_model_name(0, self.model, 1.0, 1, 1)
        if len(self.params) != len(expected.params) or not cam.verify_params():
            raise CameraError(
                f"{self.model} camera needs {len(expected.params)} parameters ({expected.params_info}); "
                f"got {list(self.params)}"
            )
        fx, fy = self.focal
        if min(fx, fy) <= 0:
            raise CameraError(f"{self.model} camera has focal length {fx, fy}; it must be positive")

    @cached_property
    def colmap(self):
        """This lens as a ``pycolmap.Camera``."""
        pycolmap = _pycolmap()
        if self.model not in pycolmap.CameraModelId.__members__:
            known = sorted(m for m in pycolmap.CameraModelId.__members__ if m != "INVALID")
            raise ValueError(f"unknown camera model; COLMAP knows {known}")
        return pycolmap.Camera(
            model=self.model, width=self.width, height=self.height, params=list(self.params)
        )

    @classmethod
    def from_colmap(cls, camera) -> Lens:
        return cls(camera.model_name, int(camera.width), int(camera.height), tuple(map(float, camera.params)))

    @property
    def distorted(self) -> bool:
        return not self.colmap.is_undistorted()

    @property
    def focal(self) -> tuple[float, float]:
        idx = list(self.colmap.focal_length_idxs())
        f = [self.params[i] for i in idx]
        return (f[0], f[-1])

    def K(self) -> np.ndarray:
        """[3, 3] pinhole intrinsics in meshfit's pixel convention (for an undistorted lens)."""
        fx, fy = self.focal
        cx, cy = (self.params[i] for i in self.colmap.principal_point_idxs())
        return np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1.0]])

    def rescaled(self, width: int, height: int) -> Lens:
        """The same lens for the image resampled to ``width`` x ``height`` (COLMAP's rescale)."""
        cam = self.colmap
        cam = _pycolmap().Camera(model=cam.model, width=cam.width, height=cam.height, params=cam.params)
        cam.rescale(width, height)
        return Lens.from_colmap(cam)

    def describe(self) -> str:
        return f"{self.model} {self.width}x{self.height} {self.colmap.params_info}=" + ", ".join(
            f"{p:.6g}" for p in self.params
        )

    # ---- undistortion ---------------------------------------------------------------------------

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """[P, 2] normalised camera coordinates (x/z, y/z) of source pixels ``uv`` [P, 2] (meshfit
        convention); NaN where the lens has no ray for a pixel."""
        return self.colmap.cam_from_img(np.asarray(uv, np.float64) + 0.5)

    def project(self, xy: np.ndarray) -> np.ndarray:
        """[P, 2] source pixels (meshfit convention) seeing normalised coordinates ``xy`` [P, 2]."""
        xy = np.asarray(xy, np.float64)
        return self.colmap.img_from_cam(np.concatenate([xy, np.ones_like(xy[:, :1])], 1)) - 0.5

    @cached_property
    def pinhole(self) -> np.ndarray:
        """[3, 3] intrinsics (meshfit convention) of the undistorted image: see the module docstring."""
        if not self.distorted:
            return self.K()
        W, H = self.width, self.height
        n = max(W, H) + 1
        border = border_pixels(W, H, n)
        rays = self.rays(border)
        left, right, top, bottom = (rays[k * n : (k + 1) * n] for k in range(4))
        bounds = [
            np.nanmax(left[:, 0]),
            np.nanmin(right[:, 0]),
            np.nanmax(top[:, 1]),
            np.nanmin(bottom[:, 1]),
        ]
        x0, x1, y0, y1 = bounds
        if not (np.isfinite(bounds).all() and x1 > x0 and y1 > y0):
            raise CameraError(f"lens {self.describe()} maps its own image border to no usable pinhole view")
        fx, fy = self.focal
        scale = max((W - 1) / (fx * (x1 - x0)), (H - 1) / (fy * (y1 - y0)))
        for _ in range(60):  # the inscribed rectangle from the edges is exact for monotone lenses
            K = np.array([
                [scale * fx, 0, (W - 1) / 2 - scale * fx * (x0 + x1) / 2],
                [0, scale * fy, (H - 1) / 2 - scale * fy * (y0 + y1) / 2],
                [0, 0, 1.0],
            ])  # fmt: skip
            src = self.project((border - K[:2, 2]) / K[[0, 1], [0, 1]])
            if (
                np.isfinite(src).all()
                and (src >= -1e-3).all()
                and (src[:, 0] <= W - 1 + 1e-3).all()
                and (src[:, 1] <= H - 1 + 1e-3).all()
            ):
                return K
            scale *= 1.005
        raise CameraError(f"lens {self.describe()}: found no pinhole view without a black border")

    def undistortion_map(
        self, K: np.ndarray, width: int, height: int, *, step: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per output pixel of the pinhole camera ``K`` (``width`` x ``height``), the source pixel it
        sees: two [height, width] float32 maps for ``cv2.remap`` (meshfit/OpenCV pixel centres).

        ``step``: evaluate the lens every ``step`` pixels (and on the last row and column) and
        interpolate bilinearly in float64 between; None picks 1 (exact) up to 1 MP and
        ``MAP_STEP`` above, where the interpolation error stays far below a hundredth of a pixel
        (``tests/test_capture.py``) and a 24 MP map costs a tenth of the exact one.
        """
        if step is None:
            step = 1 if width * height <= 1 << 20 else MAP_STEP
        cu = np.unique(np.r_[np.arange(0, width, step), width - 1]).astype(np.float64)
        cv = np.unique(np.r_[np.arange(0, height, step), height - 1]).astype(np.float64)
        xy = np.stack(
            np.broadcast_arrays(((cu - K[0, 2]) / K[0, 0])[None, :], ((cv - K[1, 2]) / K[1, 1])[:, None]), -1
        )
        coarse = np.nan_to_num(self.project(xy.reshape(-1, 2)), nan=-1e6).reshape(len(cv), len(cu), 2)
        if step == 1:
            return coarse[..., 0].astype(np.float32), coarse[..., 1].astype(np.float32)

        def weights(coarse_at: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
            fine = np.arange(n, dtype=np.float64)
            k = np.clip(np.searchsorted(coarse_at, fine, side="right") - 1, 0, len(coarse_at) - 2)
            return k, (fine - coarse_at[k]) / (coarse_at[k + 1] - coarse_at[k])

        kx, fx = weights(cu, width)
        ky, fy = weights(cv, height)
        rows = coarse[:, kx] * (1 - fx)[None, :, None] + coarse[:, kx + 1] * fx[None, :, None]  # [nv, W, 2]
        maps = np.empty((2, height, width), np.float32)
        for r0 in range(0, height, _MAP_ROWS):
            r = slice(r0, min(r0 + _MAP_ROWS, height))
            g = fy[r][:, None, None]
            block = rows[ky[r]] * (1 - g) + rows[ky[r] + 1] * g
            maps[0, r], maps[1, r] = block[..., 0], block[..., 1]
        return maps[0], maps[1]

    def undistort_points(self, uv: np.ndarray, K: np.ndarray) -> np.ndarray:
        """[P, 2] source pixels -> the same points in the pinhole image of ``K`` (NaN stays NaN)."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        out = np.full_like(uv, np.nan)
        ok = np.isfinite(uv).all(1)
        if ok.any():
            xy = self.rays(uv[ok])
            out[ok] = xy * K[[0, 1], [0, 1]] + K[:2, 2]
        return out


def border_pixels(width: int, height: int, n: int) -> np.ndarray:
    """[4 n, 2] points along an image's outermost pixel centres (meshfit convention): ``n`` each on
    the left, right, top and bottom edges, in that order."""
    t = np.linspace(0.0, 1.0, n)
    u, v = t * (width - 1), t * (height - 1)
    zeros, right, bottom = np.zeros(n), np.full(n, width - 1.0), np.full(n, height - 1.0)
    return np.concatenate([
        np.stack([zeros, v], 1), np.stack([right, v], 1), np.stack([u, zeros], 1), np.stack([u, bottom], 1),
    ])  # fmt: skip


def lens_from_opencv(K: np.ndarray, width: int, height: int, coefficients, *, fisheye: bool = False) -> Lens:
    """A Lens from OpenCV-style intrinsics ``K`` [3, 3] (meshfit pixel convention) and distortion
    coefficients: ``k1, k2, p1, p2[, k3[, k4, k5, k6]]``, or with ``fisheye`` ``k1, k2, k3, k4``."""
    c = [float(x) for x in coefficients]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5
    if fisheye:
        if len(c) > 4:
            raise CameraError(f"fisheye distortion has at most 4 coefficients k1..k4; got {len(c)}")
        return Lens("OPENCV_FISHEYE", width, height, (fx, fy, cx, cy, *(c + [0.0] * (4 - len(c)))))
    if len(c) not in (4, 5, 8):
        raise CameraError(
            f"OpenCV distortion is k1, k2, p1, p2[, k3[, k4, k5, k6]]: 4, 5 or 8 values; got {len(c)}"
        )
    c = c + [0.0] * (8 - len(c))
    if not any(c[4:]):
        return Lens("OPENCV", width, height, (fx, fy, cx, cy, *c[:4]))
    return Lens("FULL_OPENCV", width, height, (fx, fy, cx, cy, *c))

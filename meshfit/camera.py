"""The Camera pytree: pinhole intrinsics + world->camera pose, in the OpenCV convention.

**The one convention** (everything in meshfit uses it; converters exist for the others):

- Camera space: x right, y down, z forward (the camera looks along +z). A point X_world maps
  to X_cam = R @ X_world + t (``world_to_camera`` = [[R, t], [0, 0, 0, 1]]).
- Pixels: u = fx * x / z + cx, v = fy * y / z + cy, with u along image columns (left to right)
  and v along rows (top to bottom). The *centre* of the top-left pixel is (0, 0): pixel (i, j)
  (column i, row j, i.e. ``image[j, i]``) samples the scene at u = i, v = j, and covers
  [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]. COLMAP, nerfstudio and OpenGL put that centre at
  (0.5, 0.5); their loaders/converters subtract the half pixel.
- Depth: camera-space z (not the distance along the ray).

Batched cameras (a rig of N views, or [frames, views]) carry leading batch dimensions on every
array field; width and height are static and shared by the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meshfit._pytree import is_concrete, pytree_dataclass, static_field

__all__ = ["MIN_FOCAL", "Camera", "CameraError", "clip_range"]

# Shortest focal length accepted, as a fraction of the image side: a 179.9 degree field of view.
MIN_FOCAL = 1e-3

# OpenCV camera axes -> OpenGL camera axes (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0])


class CameraError(ValueError):
    """Invalid camera parameters or camera files."""


@pytree_dataclass
class Camera:
    """Pinhole camera(s), OpenCV convention (see the module docstring).

    Fields (batch shape B... = ``fx.shape``, () for a single camera):
        fx, fy: [B...] float, focal lengths in pixels.
        cx, cy: [B...] float, principal point in pixels (centre of the top-left pixel = 0, 0).
        R: [B..., 3, 3] float, world->camera rotation (proper: R^T R = I, det R = +1).
        t: [B..., 3] float, world->camera translation (X_cam = R X_world + t).
        width, height: image size in pixels (static ints, shared by the batch).

    Intrinsics given as Python scalars are broadcast to the batch shape of ``R``.
    """

    fx: jax.Array
    fy: jax.Array
    cx: jax.Array
    cy: jax.Array
    R: jax.Array
    t: jax.Array
    width: int = static_field()
    height: int = static_field()

    def __post_init__(self):
        if not (isinstance(self.width, (int, np.integer)) and isinstance(self.height, (int, np.integer))):
            raise CameraError(f"width and height must be ints; got {self.width!r}, {self.height!r}")
        if self.width <= 0 or self.height <= 0:
            raise CameraError(f"image size must be positive; got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        R = jnp.asarray(self.R)
        if R.ndim < 2 or R.shape[-2:] != (3, 3):
            raise CameraError(f"R must be [..., 3, 3]; got {tuple(R.shape)}")
        batch = R.shape[:-2]
        t = jnp.asarray(self.t, dtype=R.dtype)
        if t.shape != batch + (3,):
            raise CameraError(f"t must be {batch + (3,)} to match R {tuple(R.shape)}; got {tuple(t.shape)}")
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t)
        for name in ("fx", "fy", "cx", "cy"):
            x = jnp.asarray(getattr(self, name), dtype=R.dtype)
            if x.shape != batch:
                if x.ndim == 0:
                    x = jnp.broadcast_to(x, batch)
                else:
                    raise CameraError(f"{name} must have the batch shape {batch}; got {tuple(x.shape)}")
            object.__setattr__(self, name, x)
        if all(is_concrete(getattr(self, n)) for n in ("fx", "fy", "cx", "cy", "R", "t")):
            self._check_values()

    def _check_values(self) -> None:
        for name in ("fx", "fy", "cx", "cy", "R", "t"):
            if not np.isfinite(np.asarray(getattr(self, name))).all():
                raise CameraError(f"camera {name} contains non-finite values")
        if (np.asarray(self.fx) <= 0).any() or (np.asarray(self.fy) <= 0).any():
            raise CameraError("focal lengths fx, fy must be positive")
        # A focal length this short sees (nearly) 180 degrees: projections blow up and every
        # estimate derived from the images with them (the object's size, say).
        for name, f, size in (("fx", self.fx, self.width), ("fy", self.fy, self.height)):
            short = float(np.min(np.asarray(f)))
            if short < MIN_FOCAL * size:
                fov = np.degrees(2 * np.arctan(0.5 * size / short))
                raise CameraError(
                    f"degenerate intrinsics: {name} = {short:.3g} px across {size} px is a {fov:.2f} degree "
                    f"field of view; focal lengths must be at least {MIN_FOCAL} x the image size"
                )
        R = np.asarray(self.R, dtype=np.float64)
        err = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max(initial=0.0)
        det = np.linalg.det(R) if R.size else np.ones(())
        if err > 1e-3 or (np.asarray(det) < 0).any():
            raise CameraError(
                f"R must be a proper rotation (orthonormal, det +1); max |R^T R - I| = {err:.2g}, "
                f"min det = {np.min(det):.3g}"
            )

    # ---- batch handling -------------------------------------------------------------------
    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.R.shape[:-2])

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("a single camera has no len(); it has batch_shape ()")
        return self.batch_shape[0]

    def __getitem__(self, index) -> Camera:
        """Index the batch dimensions, like an array: ``rig[0]``, ``rig[2:5]``."""
        if not self.batch_shape:
            raise TypeError("cannot index a single camera")
        return jax.tree.map(lambda x: x[index], self)

    def resized(self, width: int, height: int) -> Camera:
        """The same cameras for images resampled to ``width`` x ``height`` (a resolution pyramid).

        Pixel coordinates scale about the image's top-left *corner* (-0.5, -0.5):
        u' = s_x (u + 0.5) - 0.5, so fx' = s_x fx and cx' = s_x (cx + 0.5) - 0.5 (and likewise y).
        """
        if width < 1 or height < 1:
            raise CameraError(f"image size must be positive; got {width}x{height}")
        sx, sy = width / self.width, height / self.height
        return Camera(
            fx=self.fx * sx, fy=self.fy * sy, cx=sx * (self.cx + 0.5) - 0.5, cy=sy * (self.cy + 0.5) - 0.5,
            R=self.R, t=self.t, width=int(width), height=int(height),
        )  # fmt: skip

    # ---- matrices ---------------------------------------------------------------------------
    @property
    def K(self) -> jax.Array:
        """[B..., 3, 3] intrinsic matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]."""
        z = jnp.zeros_like(self.fx)
        o = jnp.ones_like(self.fx)
        rows = [
            jnp.stack([self.fx, z, self.cx], -1),
            jnp.stack([z, self.fy, self.cy], -1),
            jnp.stack([z, z, o], -1),
        ]
        return jnp.stack(rows, -2)

    @property
    def world_to_camera(self) -> jax.Array:
        """[B..., 4, 4] rigid transform [[R, t], [0, 0, 0, 1]]."""
        top = jnp.concatenate([self.R, self.t[..., None]], -1)
        bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], self.R.dtype), top.shape[:-2] + (1, 4))
        return jnp.concatenate([top, bottom], -2)

    @property
    def center(self) -> jax.Array:
        """[B..., 3] camera centre in world space (-R^T t)."""
        return -jnp.einsum("...ji,...j->...i", self.R, self.t)

    @classmethod
    def from_matrices(cls, K, world_to_camera, width: int, height: int) -> Camera:
        """Camera from K [B..., 3, 3] and world_to_camera [B..., 4, 4] (OpenCV convention)."""
        K = jnp.asarray(K)
        w2c = jnp.asarray(world_to_camera)
        if K.shape[-2:] != (3, 3) or w2c.shape[-2:] != (4, 4) or K.shape[:-2] != w2c.shape[:-2]:
            raise CameraError(
                f"K must be [..., 3, 3] and world_to_camera [..., 4, 4] with the same batch; "
                f"got {tuple(K.shape)} and {tuple(w2c.shape)}"
            )
        if is_concrete(K) and is_concrete(w2c):
            k = np.asarray(K)
            if np.abs(k[..., [0, 1, 2, 2], [1, 0, 0, 1]]).max(initial=0) > 1e-9 or not np.allclose(
                k[..., 2, 2], 1
            ):
                raise CameraError(
                    f"K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew); got {k.tolist()}"
                )
            if not np.allclose(np.asarray(w2c)[..., 3, :], [0, 0, 0, 1]):
                raise CameraError("world_to_camera must have last row [0, 0, 0, 1]")
        return cls(
            fx=K[..., 0, 0], fy=K[..., 1, 1], cx=K[..., 0, 2], cy=K[..., 1, 2],
            R=w2c[..., :3, :3], t=w2c[..., :3, 3], width=width, height=height,
        )  # fmt: skip

    # ---- projection -------------------------------------------------------------------------
    def to_camera(self, points: jax.Array) -> jax.Array:
        """World points [..., P, 3] -> camera-space points [B..., P, 3] (broadcast over the batch)."""
        return jnp.einsum("...ij,...pj->...pi", self.R, points) + self.t[..., None, :]

    def project(self, points: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Project world points [..., P, 3] into every camera.

        Returns:
            uv: [B..., P, 2] pixel coordinates (OpenCV convention, see module docstring).
            depth: [B..., P] camera-space z. Points with depth <= 0 are behind the camera and
                their uv is meaningless; mask them with ``depth > 0``.
        """
        pc = self.to_camera(points)
        z = pc[..., 2]
        # Keep z = 0 from producing inf/NaN (and NaN gradients); callers mask on depth anyway.
        zs = jnp.where(jnp.abs(z) > 1e-12, z, 1e-12)
        u = self.fx[..., None] * pc[..., 0] / zs + self.cx[..., None]
        v = self.fy[..., None] * pc[..., 1] / zs + self.cy[..., None]
        return jnp.stack([u, v], -1), z

    def unproject(self, uv: jax.Array, depth: jax.Array) -> jax.Array:
        """Pixels [B..., P, 2] at camera-space depths [B..., P] -> world points [B..., P, 3]."""
        x = (uv[..., 0] - self.cx[..., None]) / self.fx[..., None] * depth
        y = (uv[..., 1] - self.cy[..., None]) / self.fy[..., None] * depth
        pc = jnp.stack([x, y, depth], -1) - self.t[..., None, :]
        return jnp.einsum("...ji,...pj->...pi", self.R, pc)

    # ---- clip space and OpenGL --------------------------------------------------------------
    def projection_matrix(self, near: float, far: float) -> jax.Array:
        """[B..., 4, 4] camera (OpenCV) -> clip space, OpenGL-style depth range.

        clip = P @ [x, y, z, 1] with w_clip = z (> 0 in front of the camera) and, after the
        perspective divide, NDC x = -1 / +1 at the left / right image *edges* (u = -0.5 and
        W - 0.5), NDC y = -1 / +1 at the top / bottom edges (so image row 0 is y = -1; no flip
        between NDC and the stored image), and NDC z = -1 at ``near``, +1 at ``far``.
        """
        if not 0 < near < far:
            raise CameraError(f"need 0 < near < far; got near={near}, far={far}")
        W, H = self.width, self.height
        z = jnp.zeros_like(self.fx)
        o = jnp.ones_like(self.fx)
        rows = [
            jnp.stack([2 * self.fx / W, z, (2 * self.cx + 1) / W - 1, z], -1),
            jnp.stack([z, 2 * self.fy / H, (2 * self.cy + 1) / H - 1, z], -1),
            jnp.stack([z, z, o * (far + near) / (far - near), o * (-2 * far * near / (far - near))], -1),
            jnp.stack([z, z, o, z], -1),
        ]
        return jnp.stack(rows, -2)

    def clip_matrix(self, near: float, far: float) -> jax.Array:
        """[B..., 4, 4] world -> clip space: ``projection_matrix(near, far) @ world_to_camera``."""
        return self.projection_matrix(near, far) @ self.world_to_camera

    def to_clip(self, points: jax.Array, near: float, far: float) -> jax.Array:
        """World points [..., P, 3] -> clip-space positions [B..., P, 4] (``clip_matrix``'s space),
        the input ``meshfit.render.rasterize`` takes."""
        M = self.clip_matrix(near, far)
        return jnp.einsum("...ij,...pj->...pi", M[..., :, :3], points) + M[..., None, :, 3]

    def to_opengl(self, near: float, far: float) -> tuple[np.ndarray, np.ndarray]:
        """OpenGL (and pyrender) matrices for this camera (single or batched, concrete).

        Returns:
            projection: [B..., 4, 4] OpenGL projection (camera y up, looking along -z, window
                origin bottom-left, pixel centres at +0.5), equal to pyrender's
                ``IntrinsicsCamera(fx, fy, cx + 0.5, cy + 0.5, near, far)``.
            camera_to_world: [B..., 4, 4] OpenGL camera pose (pyrender's ``pose``).
        """
        fx, fy = np.asarray(self.fx, np.float64), np.asarray(self.fy, np.float64)
        cx, cy = np.asarray(self.cx, np.float64) + 0.5, np.asarray(self.cy, np.float64) + 0.5
        W, H = self.width, self.height
        P = np.zeros(fx.shape + (4, 4))
        P[..., 0, 0] = 2 * fx / W
        P[..., 0, 2] = 1 - 2 * cx / W
        P[..., 1, 1] = 2 * fy / H
        P[..., 1, 2] = 2 * cy / H - 1
        P[..., 2, 2] = (far + near) / (near - far)
        P[..., 2, 3] = 2 * far * near / (near - far)
        P[..., 3, 2] = -1
        w2c = np.asarray(self.world_to_camera, np.float64)
        w2c_gl = np.eye(4)
        w2c_gl[:3, :3] = _CV_TO_GL
        pose = np.linalg.inv(w2c_gl @ w2c)
        return P, pose

    @classmethod
    def from_opengl(cls, projection, camera_to_world, width: int, height: int) -> Camera:
        """Inverse of ``to_opengl``: OpenGL projection [B..., 4, 4] + camera pose [B..., 4, 4]."""
        P = np.asarray(projection, np.float64)
        pose = np.asarray(camera_to_world, np.float64)
        if P.shape[-2:] != (4, 4) or pose.shape[-2:] != (4, 4):
            raise CameraError(f"expected [..., 4, 4] matrices; got {P.shape} and {pose.shape}")
        if np.abs(P[..., 0, 1]).max(initial=0) > 1e-9 or not np.allclose(P[..., 3, :], [0, 0, -1, 0]):
            raise CameraError("projection must be a perspective OpenGL matrix without skew")
        cx = (1 - P[..., 0, 2]) * width / 2 - 0.5
        cy = (P[..., 1, 2] + 1) * height / 2 - 0.5
        w2c = np.linalg.inv(pose)
        w2c[..., :3, :] = _CV_TO_GL @ w2c[..., :3, :]
        return cls(
            fx=P[..., 0, 0] * width / 2, fy=P[..., 1, 1] * height / 2, cx=cx, cy=cy,
            R=w2c[..., :3, :3], t=w2c[..., :3, 3], width=width, height=height,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Camera(batch_shape={self.batch_shape}, size={self.width}x{self.height})"


def clip_range(cameras: Camera, centre, radius: float, *, margin: float = 1.05) -> tuple[float, float]:
    """Near and far planes (camera-space z) that enclose the sphere (``centre`` [3], ``radius``,
    world units) grown by ``margin`` in every camera of the batch.

    near is kept at >= 1e-3 far (depth precision) when the sphere reaches the camera plane.
    Raises CameraError when the sphere lies entirely behind the cameras.
    """
    centre = jnp.asarray(np.asarray(centre, np.float32)[None])
    z = np.asarray(cameras.to_camera(centre))[..., 0, 2].ravel()
    far = float(z.max()) + margin * radius
    if not far > 0:
        raise CameraError("the object lies entirely behind the cameras (check the camera poses)")
    near = max(float(z.min()) - margin * radius, 1e-3 * far)
    return near, far

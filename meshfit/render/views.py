"""Whole images of a mesh from a rig of cameras with meshfit's renderer (the twin of synth's
pyrender_views): colour, coverage, depth and normals, with the same lighting conventions."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.camera import Camera
from meshfit.mesh import Mesh
from meshfit.render.interpolate import interpolate
from meshfit.render.rasterize import rasterize
from meshfit.render.shade import lambert, normal_image
from meshfit.render.texture import texture

__all__ = ["RenderedViews", "depth_range", "render_views", "studio_lighting"]

# The lighting meshfit synth uses (pyrender, PBR with metallic 0 and roughness 1): a fixed
# world-space directional light plus ambient, in linear colour, written with gamma 1/2.2 as
# pyrender's shader does (textures are decoded from sRGB first). Its diffuse term is
# (1 - F0) * intensity / pi with the glTF dielectric F0 = 0.04; its specular term is not modelled.
LIGHT_DIRECTION = (-0.3, -0.8, -0.5)
LIGHT_INTENSITY = 3.0
AMBIENT = 0.3
BASE_COLOR = (0.75, 0.75, 0.75)
_DIFFUSE = (1.0 - 0.04) * LIGHT_INTENSITY / np.pi
_GAMMA = 2.2


def _srgb_to_linear(c: jax.Array) -> jax.Array:
    return jnp.where(c <= 0.04045, c / 12.92, ((jnp.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4)


def studio_lighting(normals: jax.Array, albedo: jax.Array) -> jax.Array:
    """Display colour [..., C] in [0, 1] of linear ``albedo`` [..., C] (C = 3, or 1 for grey)
    with unit world ``normals`` [..., 3], lit as ``meshfit synth`` lights its scenes
    (``LIGHT_DIRECTION`` + ``AMBIENT``, gamma 2.2). Differentiable; mask the background yourself."""
    linear = lambert(normals, albedo * _DIFFUSE, jnp.asarray(LIGHT_DIRECTION)) + AMBIENT * albedo
    return jnp.clip(linear, 1e-12, 1.0) ** (1.0 / _GAMMA)


class RenderedViews(NamedTuple):
    """Images of N views (numpy): rgb [N, H, W, 3] float in [0, 1], mask [N, H, W] bool,
    depth [N, H, W] float32 camera-space z (0 where empty), normal [N, H, W, 3] world-space unit
    normals (0 where empty)."""

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    normal: np.ndarray


def depth_range(mesh: Mesh, cameras: Camera) -> tuple[float, float]:
    """Near and far planes that enclose the mesh's bounding sphere in every camera."""
    v = np.asarray(mesh.vertices, np.float64)
    centre = (v.min(0) + v.max(0)) / 2
    radius = float(np.linalg.norm(v - centre, axis=1).max())
    z = np.asarray(cameras.to_camera(jnp.asarray(centre[None], jnp.float32)))[..., 0, 2]
    near = max(float(z.min()) - 1.05 * radius, 1e-3 * max(float(z.max()), 1e-6))
    far = float(z.max()) + 1.05 * radius
    if far <= near:
        raise ValueError("the mesh is entirely behind the cameras")
    return near, far


def render_views(
    mesh: Mesh,
    cameras: Camera,
    *,
    near: float | None = None,
    far: float | None = None,
    textured: bool = False,
    chunk: int = 8,
) -> RenderedViews:
    """Render ``mesh`` from a [N] batch of cameras, ``chunk`` views at a time.

    Colour: the texture (trilinear) when ``textured``, else vertex colours, else light grey,
    lit by ``LIGHT_DIRECTION`` with ``AMBIENT`` (Lambert, in linear colour, gamma 2.2 out).
    Pixels sample their centres (no antialiasing), like ``meshfit.synth.pyrender_views``, so
    the two compare pixel for pixel.
    """
    if len(cameras.batch_shape) != 1:
        raise ValueError(f"cameras must be a [N] batch; got batch shape {cameras.batch_shape}")
    if textured and mesh.texture is None:
        raise ValueError("textured rendering needs a mesh with a texture")
    if near is None or far is None:
        auto_near, auto_far = depth_range(mesh, cameras)
        near = auto_near if near is None else near
        far = auto_far if far is None else far
    H, W = cameras.height, cameras.width

    @jax.jit
    def one_chunk(cams):
        clip = cams.to_clip(mesh.vertices, near, far)
        frags = rasterize(clip, mesh.faces, height=H, width=W)
        normals = normal_image(mesh.vertices, mesh.faces, frags)
        if textured:
            uv = interpolate(mesh.uvs, frags, mesh.uv_faces)
            tex = texture(mesh.texture, uv, filter="trilinear", mask=frags.mask)[..., :3]
            albedo = _srgb_to_linear(tex)
        elif mesh.colors is not None:
            albedo = interpolate(mesh.colors[:, :3], frags, mesh.faces)
        else:
            albedo = jnp.broadcast_to(jnp.asarray(BASE_COLOR, jnp.float32), normals.shape)
        rgb = jnp.where(frags.mask[..., None], studio_lighting(normals, albedo), 0.0)
        return rgb, frags.mask, frags.depth, normals

    parts = [one_chunk(cameras[i : i + chunk]) for i in range(0, cameras.batch_shape[0], chunk)]
    rgb, mask, depth, normal = (np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(4))
    return RenderedViews(rgb, mask, depth.astype(np.float32), normal)

"""Whole images of a mesh from a rig of cameras with meshfit's renderer (the twin of synth's
pyrender_views): colour, coverage, depth and normals, lit as ``render.lighting`` says."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.camera import Camera, clip_range
from meshfit.mesh import Mesh, bounding_sphere
from meshfit.render.interpolate import interpolate
from meshfit.render.lighting import BASE_COLOR, light_from_json, lit_colour, srgb_to_linear, studio_lighting
from meshfit.render.rasterize import rasterize
from meshfit.render.shade import normal_image
from meshfit.render.texture import texture

__all__ = ["RenderedViews", "render_views"]


class RenderedViews(NamedTuple):
    """Images of N views (numpy): rgb [N, H, W, 3] float in [0, 1], mask [N, H, W] bool,
    depth [N, H, W] float32 camera-space z (0 where empty), normal [N, H, W, 3] world-space unit
    normals (0 where empty)."""

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    normal: np.ndarray


def render_views(
    mesh: Mesh,
    cameras: Camera,
    *,
    near: float | None = None,
    far: float | None = None,
    textured: bool = False,
    light: dict | None = None,
    gain=None,
    chunk: int = 8,
) -> RenderedViews:
    """Render ``mesh`` from a [N] batch of cameras, ``chunk`` views at a time.

    Colour: the texture (trilinear) when ``textured``, else vertex colours, else light grey,
    lit by ``LIGHT_DIRECTION`` with ``AMBIENT`` (Lambert, in linear colour, gamma 2.2 out), or
    by a fitted ``light`` (as a photometric fit's params.json holds it:
    ``lighting.light_from_json``) times the per-camera linear ``gain`` [N, 3] (optional).
    Pixels sample their centres (no antialiasing), like ``meshfit.synth.pyrender_views``, so
    the two compare pixel for pixel.
    """
    if len(cameras.batch_shape) != 1:
        raise ValueError(f"cameras must be a [N] batch; got batch shape {cameras.batch_shape}")
    if textured and mesh.texture is None:
        raise ValueError("textured rendering needs a mesh with a texture")
    if near is None or far is None:
        auto_near, auto_far = clip_range(cameras, *bounding_sphere(mesh.vertices))
        near = auto_near if near is None else near
        far = auto_far if far is None else far
    H, W = cameras.height, cameras.width
    fitted = None if light is None else light_from_json(light)
    n = cameras.batch_shape[0]
    gains = jnp.ones((n, 3), jnp.float32) if gain is None else jnp.asarray(gain, jnp.float32)
    if gains.shape != (n, 3):
        raise ValueError(f"gain must be [{n}, 3] (one linear RGB gain per camera); got {gains.shape}")
    if gain is not None and fitted is None:
        raise ValueError("gain= scales a fitted light=; give both")

    @jax.jit
    def one_chunk(cams, gains):
        clip = cams.to_clip(mesh.vertices, near, far)
        frags = rasterize(clip, mesh.faces, height=H, width=W)
        normals = normal_image(mesh.vertices, mesh.faces, frags)
        if textured:
            uv = interpolate(mesh.uvs, frags, mesh.uv_faces)
            tex = texture(mesh.texture, uv, filter="trilinear", mask=frags.mask)[..., :3]
            albedo = srgb_to_linear(tex)
        elif mesh.colors is not None:
            albedo = interpolate(mesh.colors[:, :3], frags, mesh.faces)
        else:
            albedo = jnp.broadcast_to(jnp.asarray(BASE_COLOR, jnp.float32), normals.shape)
        if fitted is None:
            shaded = studio_lighting(normals, albedo)
        else:
            shaded = lit_colour(albedo, normals, fitted, gains[:, None, None, :])
        rgb = jnp.where(frags.mask[..., None], shaded, 0.0)
        return rgb, frags.mask, frags.depth, normals

    parts = [one_chunk(cameras[i : i + chunk], gains[i : i + chunk]) for i in range(0, n, chunk)]
    rgb, mask, depth, normal = (np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(4))
    return RenderedViews(rgb, mask, depth.astype(np.float32), normal)

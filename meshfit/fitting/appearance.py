"""A photometric fit's appearance: where its albedo, light and gains start, and how they are
written out. The shape's recipes (``meshfit.fitting.recipes``) call these."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.camera import Camera
from meshfit.mesh import vertex_normals
from meshfit.render import rasterize
from meshfit.render.lighting import LIGHT_PARAMS, fitted_irradiance, light_to_json
from meshfit.render.shade import _C4 as SH_C4  # irradiance = C4 * L00 under constant light

__all__ = [
    "INITIAL_ALBEDO",
    "albedo_from_views",
    "appearance_out",
    "initial_appearance",
    "light_of",
    "texture_from_vertices",
]

# Where a photometric fit's albedo starts where no view sees it: grey linear albedo.
INITIAL_ALBEDO = 0.5
_GAMMA = 2.2
_LIGHT_KEYS = tuple(k for keys in LIGHT_PARAMS.values() for k in keys)


def initial_appearance(
    light: str, gain: bool, cameras: Camera, num_vertices: int, *, background=None
) -> dict:
    """Grey albedo [V, 3] under uniform light (irradiance 1; a directional light from the
    cameras' side), unit per-camera gains [N, 3] when ``gain``, and ``background`` [N, 3] (a
    backdrop colour per camera, display colour) when given."""
    params = {"albedo": jnp.full((num_vertices, 3), INITIAL_ALBEDO, jnp.float32)}
    if light == "sh":
        params["light"] = jnp.zeros((9, 3), jnp.float32).at[0].set(1.0 / SH_C4)
    else:
        forward = np.asarray(cameras.R)[:, 2, :].mean(0)  # the cameras' mean viewing direction
        params["light_direction"] = jnp.asarray(forward / np.linalg.norm(forward), jnp.float32)
        params["light_colour"] = jnp.full(3, 0.5, jnp.float32)
        params["ambient"] = jnp.full(3, 0.5, jnp.float32)
    if gain:
        params["gain"] = jnp.ones((cameras.batch_shape[0], 3), jnp.float32)
    if background is not None:
        params["background"] = jnp.asarray(background, jnp.float32)
    return params


@functools.partial(jax.jit, static_argnames=("near", "far"))
def _seen_colours(vertices, faces, cameras: Camera, rgb, near, far, tolerance):
    """Per view: the linear colour [N, V, 3] under each vertex's projection and its weight
    [N, V] (the cosine between its normal and the view ray where the vertex is visible, else 0)."""
    H, W = rgb.shape[1:3]
    frags = rasterize(cameras.to_clip(vertices, near, far), faces, height=H, width=W)
    uv, z = cameras.project(vertices)
    px = jnp.clip(jnp.round(uv).astype(jnp.int32), 0, jnp.array([[[W - 1, H - 1]]]))
    n = jnp.arange(rgb.shape[0])[:, None]
    inside = (uv[..., 0] > -0.5) & (uv[..., 0] < W - 0.5) & (uv[..., 1] > -0.5) & (uv[..., 1] < H - 0.5)
    surface = frags.depth[n, px[..., 1], px[..., 0]]
    visible = inside & (z > 0) & frags.mask[n, px[..., 1], px[..., 0]] & (z <= surface + tolerance)
    colour = rgb[n, px[..., 1], px[..., 0]] ** _GAMMA
    normals = vertex_normals(vertices, faces)
    rays = vertices[None] - cameras.center[:, None, :]
    rays = rays / jnp.maximum(jnp.linalg.norm(rays, axis=-1, keepdims=True), 1e-12)
    cos = jnp.abs(jnp.sum(rays * normals[None], -1))  # faces are two-sided
    return colour, jnp.where(visible, cos, 0.0), normals


def albedo_from_views(
    vertices, faces, cameras: Camera, rgb, *, near: float, far: float, light: dict, tolerance: float,
    gain=None,
) -> np.ndarray:  # fmt: skip
    """Linear albedo [V, 3] in [0, 1] that explains the views under ``light``: each vertex's
    colour in the views that see it (within ``tolerance`` world units of the rendered surface),
    linearised (gamma 2.2), averaged with weights favouring views that face it, divided by the
    light's irradiance at its normal (and the cameras' ``gain`` [N, 3]). Vertices no view sees
    get the mean of the others. A photometric stage starts from this instead of grey, so that
    its first steps do not move the shape to explain a wrong albedo.

    vertices: [V, 3]; faces: [F, 3]; cameras: [N]; rgb: [N, H, W, 3] display colour in [0, 1].
    """
    colour, weight, normals = _seen_colours(
        jnp.asarray(vertices, jnp.float32), jnp.asarray(faces), cameras, jnp.asarray(rgb, jnp.float32),
        near=float(near), far=float(far), tolerance=tolerance,
    )  # fmt: skip
    colour, weight = np.asarray(colour, np.float64), np.asarray(weight, np.float64) ** 2
    if gain is not None:
        g = np.asarray(gain, np.float64)
        colour = colour / np.maximum(g / g.mean(0), 1e-6)[:, None, :]
    total = weight.sum(0)
    seen = total > 0
    radiance = np.einsum("nv,nvc->vc", weight, colour) / np.maximum(total, 1e-12)[:, None]
    irradiance = np.asarray(fitted_irradiance(normals, light), np.float64)
    albedo = radiance / np.maximum(irradiance, 1e-3)
    albedo[~seen] = albedo[seen].mean(0) if seen.any() else INITIAL_ALBEDO
    return np.clip(albedo, 0.0, 1.0).astype(np.float32)


def appearance_out(params: dict) -> dict:
    """The fitted light (and per-camera gains, normalised to mean 1) as params.json holds them."""
    out = {}
    light = light_of(params)
    if light:
        out["light"] = light_to_json(light)
    if "gain" in params:
        g = np.asarray(params["gain"], np.float64)
        out["gain"] = (g / g.mean(0)).round(6).tolist()
    if "background" in params:  # display colour per camera
        out["background_colour"] = np.asarray(params["background"], np.float64).round(6).tolist()
    return out


def light_of(params: dict) -> dict:
    """The light's parameters among ``params``."""
    return {k: params[k] for k in _LIGHT_KEYS if k in params}


def texture_from_vertices(values, faces, uvs, uv_faces, size: int) -> np.ndarray:
    """Bake per-vertex ``values`` [V, C] into a UV texture [size, size, C] (row 0 at the top,
    UV (0, 0) at the bottom-left, repeating): each texel centre is located on the mesh by
    rasterizing the UV layout (``uv_faces`` [F, 3] into ``uvs`` [T, 2]) and takes the values of
    that triangle's corners (``faces`` [F, 3]) by its barycentrics. Texels no triangle covers
    take their nearest covered texel's value, so mip levels and bilinear taps across UV seams
    see no black."""
    from scipy import ndimage

    uv = jnp.asarray(uvs, jnp.float32)
    uf = jnp.asarray(uv_faces, jnp.int32)
    # The texture repeats (as it is sampled): the layout shifted by -1, 0, 1 in u and v covers
    # the unit square wherever a triangle reaches past its edge.
    shifts = jnp.asarray([(du, dv) for du in (-1, 0, 1) for dv in (-1, 0, 1)], jnp.float32)
    tiled = (uv[None] + shifts[:, None]).reshape(-1, 2)
    faces9 = (uf[None] + uv.shape[0] * jnp.arange(9, dtype=jnp.int32)[:, None, None]).reshape(-1, 3)
    # The UV square as clip space: x = 2u - 1, y = 1 - 2v (image row 0 is v = 1), w = 1.
    zero = jnp.zeros_like(tiled[:, 0])
    clip = jnp.stack([2 * tiled[:, 0] - 1, 1 - 2 * tiled[:, 1], zero, zero + 1], -1)
    frags = rasterize(clip[None], faces9, height=size, width=size)
    fid, bary = np.asarray(frags.face_id[0]), np.asarray(frags.bary[0], np.float64)
    fid = np.where(fid >= 0, fid % uf.shape[0], -1)
    values = np.asarray(values, np.float64)
    corners = np.asarray(faces)[np.maximum(fid, 0)]  # [S, S, 3]
    tex = np.einsum("hwk,hwkc->hwc", bary, values[corners])
    covered = fid >= 0
    if not covered.any():
        raise ValueError("the mesh's texture coordinates cover no texel of the texture")
    _, (iy, ix) = ndimage.distance_transform_edt(~covered, return_indices=True)
    return tex[iy, ix].astype(np.float32)

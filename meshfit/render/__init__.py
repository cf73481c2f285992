"""Differentiable rendering: rasterize, interpolate, texture, antialias, soft silhouettes, shading.

A typical render, for a Mesh and a [B] batch of Cameras::

    clip = cameras.to_clip(mesh.vertices, near, far)           # [B, V, 4]
    frags = rasterize(clip, mesh.faces, height=H, width=W)      # ids, barycentrics, depth
    color = interpolate(mesh.colors, frags, mesh.faces)         # [B, H, W, C]
    color = antialias(color, frags, clip, mesh.faces)           # silhouette gradients
"""

from meshfit.render.antialias import antialias, soft_silhouette
from meshfit.render.interpolate import interpolate
from meshfit.render.lighting import studio_lighting
from meshfit.render.rasterize import Fragments, rasterize
from meshfit.render.shade import lambert, normal_image, sh_irradiance
from meshfit.render.texture import mip_pyramid, texture
from meshfit.render.views import RenderedViews, render_views

__all__ = [
    "Fragments",
    "RenderedViews",
    "antialias",
    "interpolate",
    "lambert",
    "mip_pyramid",
    "normal_image",
    "rasterize",
    "render_views",
    "sh_irradiance",
    "soft_silhouette",
    "studio_lighting",
    "texture",
]

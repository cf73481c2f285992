"""The lighting meshfit synth uses and meshfit's renderer reproduces: its constants live here.

pyrender's PBR with metallic 0 and roughness 1: a fixed world-space directional light plus
ambient, in linear colour, written with gamma 1/2.2 as pyrender's shader does (textures are
decoded from sRGB first). Its diffuse term is (1 - F0) * intensity / pi with the glTF dielectric
F0 = 0.04; its specular term is not modelled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.render.shade import lambert

__all__ = ["AMBIENT", "BASE_COLOR", "LIGHT_DIRECTION", "LIGHT_INTENSITY", "srgb_to_linear", "studio_lighting"]

LIGHT_DIRECTION = (-0.3, -0.8, -0.5)  # world space, the direction the light travels
LIGHT_INTENSITY = 3.0
AMBIENT = 0.3
BASE_COLOR = (0.75, 0.75, 0.75)  # linear RGB of untextured, uncoloured meshes
_DIFFUSE = (1.0 - 0.04) * LIGHT_INTENSITY / np.pi
_GAMMA = 2.2


def srgb_to_linear(c: jax.Array) -> jax.Array:
    """Linear colour [...] from sRGB-encoded values in [0, 1] (textures are stored sRGB)."""
    return jnp.where(c <= 0.04045, c / 12.92, ((jnp.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4)


def studio_lighting(normals: jax.Array, albedo: jax.Array) -> jax.Array:
    """Display colour [..., C] in [0, 1] of linear ``albedo`` [..., C] (C = 3, or 1 for grey)
    with unit world ``normals`` [..., 3], lit as ``meshfit synth`` lights its scenes
    (``LIGHT_DIRECTION`` + ``AMBIENT``, gamma 2.2). Differentiable; mask the background yourself."""
    linear = lambert(normals, albedo * _DIFFUSE, jnp.asarray(LIGHT_DIRECTION)) + AMBIENT * albedo
    return jnp.clip(linear, 1e-12, 1.0) ** (1.0 / _GAMMA)

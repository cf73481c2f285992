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

from meshfit.render.shade import lambert, sh_irradiance

__all__ = [
    "AMBIENT",
    "BASE_COLOR",
    "LIGHT_DIRECTION",
    "LIGHT_INTENSITY",
    "fitted_irradiance",
    "sh_charbonnier_error",
    "sh_colour",
    "light_from_json",
    "light_to_json",
    "lit_colour",
    "srgb_to_linear",
    "studio_lighting",
]

LIGHT_DIRECTION = (-0.3, -0.8, -0.5)  # world space, the direction the light travels
LIGHT_INTENSITY = 3.0
AMBIENT = 0.3
BASE_COLOR = (0.75, 0.75, 0.75)  # linear RGB of untextured, uncoloured meshes
_DIFFUSE = (1.0 - 0.04) * LIGHT_INTENSITY / np.pi
_GAMMA = 2.2


def srgb_to_linear(c: jax.Array) -> jax.Array:
    """Linear colour [...] from sRGB-encoded values in [0, 1] (textures are stored sRGB)."""
    return jnp.where(c <= 0.04045, c / 12.92, ((jnp.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: jax.Array) -> jax.Array:
    """sRGB-encoded values [...] in [0, 1] of linear colour (``srgb_to_linear``'s inverse)."""
    c = jnp.clip(c, 0.0, 1.0)
    return jnp.where(c <= 0.0031308, c * 12.92, 1.055 * jnp.maximum(c, 0.0031308) ** (1 / 2.4) - 0.055)


def studio_lighting(normals: jax.Array, albedo: jax.Array) -> jax.Array:
    """Display colour [..., C] in [0, 1] of linear ``albedo`` [..., C] (C = 3, or 1 for grey)
    with unit world ``normals`` [..., 3], lit as ``meshfit synth`` lights its scenes
    (``LIGHT_DIRECTION`` + ``AMBIENT``, gamma 2.2). Differentiable; mask the background yourself."""
    linear = lambert(normals, albedo * _DIFFUSE, jnp.asarray(LIGHT_DIRECTION)) + AMBIENT * albedo
    return jnp.clip(linear, 1e-12, 1.0) ** (1.0 / _GAMMA)


# A fitted light's parameters (what a photometric fit frees), per light model.
LIGHT_PARAMS = {"sh": ("light",), "directional": ("light_direction", "light_colour", "ambient")}


def fitted_irradiance(normals: jax.Array, light: dict) -> jax.Array:
    """[..., 3] linear irradiance at unit world ``normals`` [..., 3] of a fitted light: SH
    ``light["light"]`` [9, 3] (``sh_irradiance``), or a directional light
    (``light_direction`` [3], the way it travels, any length; ``light_colour`` [3]) plus
    ``ambient`` [3]."""
    if "light_direction" in light:
        missing = sorted({"light_colour", "ambient"} - set(light))
        if missing:
            raise ValueError(f"a directional light needs 'light_direction', 'light_colour' and 'ambient'; "
                             f"{missing} missing")  # fmt: skip
        lead = (1,) * (normals.ndim - 1)
        d = jnp.reshape(light["light_direction"], lead + (3,))
        d = d / jnp.maximum(jnp.linalg.norm(d), 1e-12)
        cos = jnp.maximum(jnp.sum(normals * -d, -1, keepdims=True), 0.0)
        return (
            jnp.reshape(light["ambient"], lead + (3,)) + jnp.reshape(light["light_colour"], lead + (3,)) * cos
        )
    if "light" not in light:
        raise ValueError(
            "a fitted light is 'light' [9, 3] (SH) or 'light_direction', 'light_colour', 'ambient' [3]; "
            f"got {sorted(light)}"
        )
    return sh_irradiance(normals, light["light"])


def lit_colour(albedo: jax.Array, normals: jax.Array, light: dict, gain=None) -> jax.Array:
    """Display colour [..., 3] in [0, 1] of linear ``albedo`` [..., 3] at unit world ``normals``
    under a fitted light (``fitted_irradiance``), times an optional linear per-camera ``gain``
    (broadcast: [N, 1, 1, 3] for [N, H, W, 3] images), gamma 2.2 out as synth's images are."""
    linear = albedo * fitted_irradiance(normals, light)
    if gain is not None:
        linear = linear * gain
    return jnp.clip(linear, 1e-6, 1.0) ** (1.0 / _GAMMA)


def light_to_json(light: dict) -> dict:
    """A fitted light as params.json holds it: {"model": "sh", "coefficients": [9][3]} or
    {"model": "directional", "direction", "colour", "ambient"} (linear colour, unit direction)."""
    if "light" in light:
        return {"model": "sh", "coefficients": np.asarray(light["light"]).round(6).tolist()}
    d = np.asarray(light["light_direction"], np.float64)
    return {"model": "directional", "direction": (d / np.linalg.norm(d)).round(6).tolist(),
            "colour": np.asarray(light["light_colour"]).round(6).tolist(),
            "ambient": np.asarray(light["ambient"]).round(6).tolist()}  # fmt: skip


def light_from_json(data: dict) -> dict:
    """The inverse of ``light_to_json``: the light's parameters as float32 arrays, checked."""

    def array(key: str, shape: tuple) -> jax.Array:
        try:
            a = np.asarray(data[key], np.float32)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"light: {key!r} must be numbers of shape {list(shape)}") from e
        if a.shape != shape or not np.all(np.isfinite(a)):
            raise ValueError(f"light: {key!r} must be finite numbers of shape {list(shape)}; got {a.shape}")
        return jnp.asarray(a)

    model = data.get("model") if isinstance(data, dict) else None
    if model == "sh":
        return {"light": array("coefficients", (9, 3))}
    if model == "directional":
        return {"light_direction": array("direction", (3,)), "light_colour": array("colour", (3,)),
                "ambient": array("ambient", (3,))}  # fmt: skip
    raise ValueError(f"light: 'model' must be 'sh' or 'directional'; got {model!r}")


def sh_charbonnier_error(
    albedo: jax.Array, normals: jax.Array, coeffs: jax.Array, target: jax.Array, weight: jax.Array,
    *, eps: float = 0.01, backend: str = "auto",
) -> jax.Array:  # fmt: skip
    """The photometric term's sum under SH light: over pixels, ``weight`` [P...] times the
    Charbonnier error (scale ``eps``) per channel between ``target`` [P..., 3] and
    ``lit_colour(albedo, normalised normals, {"light": coeffs})`` (albedo, normals [P..., 3]:
    the interpolated images; the normals are renormalised here, a zero one stays zero).

    backend: "auto" (meshfit's fused native kernel on the CPU: one pass each way instead of
    XLA's chain of elementwise ops, ~5x faster at 8 x 512^2), "native" or "jax".
    """
    from meshfit.render import _native
    from meshfit.render._backend import use_native

    if use_native(backend, albedo, normals, coeffs, target, weight):
        return _native.sh_charbonnier(albedo, normals, coeffs, target, weight, float(eps))
    from meshfit.mesh import _safe_normalize

    colour = lit_colour(albedo, _safe_normalize(normals), {"light": coeffs})
    err = jnp.sqrt((colour - target) ** 2 + eps * eps) - eps
    return jnp.sum(err * weight[..., None])


def sh_colour(
    albedo: jax.Array, normals: jax.Array, coeffs: jax.Array, *, backend: str = "auto"
) -> jax.Array:
    """``lit_colour(albedo, normalised normals, {"light": coeffs})``: display colour [P..., 3] of
    the interpolated albedo and normal images [P..., 3] (the normals renormalised here, a zero
    one stays zero) under SH ``coeffs`` [9, 3]. backend: "auto" (the native kernel on the CPU),
    "native" or "jax"."""
    from meshfit.render import _native
    from meshfit.render._backend import use_native

    if use_native(backend, albedo, normals, coeffs):
        return _native.sh_colour(albedo, normals, coeffs)
    from meshfit.mesh import _safe_normalize

    return lit_colour(albedo, _safe_normalize(normals), {"light": coeffs})

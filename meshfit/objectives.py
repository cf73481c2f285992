"""Fitting objectives: a model's vertices, rendered for a rig of cameras, compared with images.

``image_objective(model, cameras, ...)`` builds ``loss_fn(params, targets) -> (loss, terms)`` for
``meshfit.fit.make_step``, from any model with ``faces`` and ``vertices(params)`` (the
representations in ``meshfit.models``). Terms with weight 0 are not computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meshfit import losses
from meshfit.camera import Camera
from meshfit.mesh import vertex_normals
from meshfit.render import (
    antialias,
    interpolate,
    normal_image,
    rasterize,
    soft_silhouette,
    studio_lighting,
    texture,
)
from meshfit.render.lighting import BASE_COLOR, lit_colour, sh_charbonnier_error, sh_colour
from meshfit.topology import Topology, cotangent_laplacian, uniform_laplacian

__all__ = ["LossWeights", "Targets", "image_objective"]


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the objective's terms (0 = off; every term is off unless given).

    silhouette: L2 of the antialiased silhouette against the target mask (edge gradients).
    soft_silhouette: L2 of SoftRas's blurred silhouette (wide gradients; coarse stages).
    soft_iou: 1 - soft IoU of the antialiased silhouette.
    depth: mean squared depth error where both are covered.
    shading: L1 between the target's grey level (mean of its colour channels) and the model
        rendered grey (``BASE_COLOR``) under meshfit synth's studio light
        (``render.studio_lighting``), antialiased: shape from shading for untextured synthetic
        data. One channel, since the light and the albedo are grey.
    photometric: Charbonnier error (logarithmic past ``photometric_scale``, when given) between
        the target colour and the model rendered with its fitted appearance: per-vertex linear
        albedo ``params["albedo"]`` [V, 3] (or a UV texture ``params["texture"]`` [Ht, Wt, 3],
        sampled trilinearly at the model's ``uvs``) lit by 2nd-order
        spherical-harmonic irradiance ``params["light"]`` [9, 3] (or a directional light:
        ``light_direction``, ``light_colour``, ``ambient`` [3]; ``render.lighting.lit_colour``),
        times ``params["gain"]`` [N, 3] per camera when present (rigs are never colour-matched),
        gamma 2.2 out (as synth's images), over the pixels inside the rendered surface (its
        outline pixels, which may mix in what lies behind, are left out: no background model is
        needed, and data without masks works); with masks, antialiased at the occlusion edges
        inside the outline (a leg over the belly), so that those edges move the vertices too
        (without masks the model may be part of what is seen, a face in a head, and what lies
        behind its edges is not rendered). With ``targets.background`` (clean plates), or a
        fitted backdrop colour per camera ``params["background"]`` [N, 3] (display colour), it
        compares whole images instead: the render laid over the plate and antialiased, so the
        outline is fitted from colour alone (no masks needed).
    photometric_gradient: Charbonnier error between the image gradients (neighbouring pixels'
        differences) of the photometric term's image and the target's, over the same pixels
        (``losses.image_gradient_loss``): texture and occlusion edges weigh by their contrast,
        a smooth shading or gain error barely; needs the photometric term in the same stage.
    albedo_smoothness: uniform-Laplacian smoothness of the fitted albedo (smooth skin); of a
        texture, the squared differences of neighbouring texels.
    albedo_tv: total variation of the fitted albedo over the mesh's edges
        (``losses.total_variation_loss``; of a texture, between neighbouring texels):
        piecewise-constant albedo (paint, printed textures),
        so that shading is left to the light and the shape to explain.
    landmarks: the model's landmarks (``landmark_points``) projected into every view against the
        detections (``losses.landmark_loss``: robust, errors in the data's pixels).
    laplacian: uniform-Laplacian smoothness of the vertices; cotangent_laplacian: bending.
    edge: mean squared edge length; normal: normal consistency across edges.
    prior: L2 on the blendshape coefficients (identity and expression).
    pose_prior: L2 on the rotation (axis-angle, radians: for a rigid model the increment on its
        base rotation) and the log scale: keeps a weakly observed pose near where it started.
    """

    silhouette: float = 0.0
    soft_silhouette: float = 0.0
    soft_iou: float = 0.0
    depth: float = 0.0
    shading: float = 0.0
    photometric: float = 0.0
    photometric_gradient: float = 0.0
    albedo_smoothness: float = 0.0
    albedo_tv: float = 0.0
    landmarks: float = 0.0
    laplacian: float = 0.0
    cotangent_laplacian: float = 0.0
    edge: float = 0.0
    normal: float = 0.0
    prior: float = 0.0
    pose_prior: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            w = getattr(self, f.name)
            if not (np.isfinite(w) and w >= 0):
                raise ValueError(f"weights.{f.name} must be a finite number >= 0; got {w}")
        if self.photometric_gradient and not self.photometric:
            raise ValueError(
                "weights.photometric_gradient compares the photometric term's image: "
                "weigh weights.photometric in the same stage too"
            )


class Targets(NamedTuple):
    """Target images for N views: mask [N, H, W] float in [0, 1] or None (data without masks:
    no silhouette terms); depth [N, H, W] (0 = empty) or None; rgb [N, H, W, 3] float in [0, 1]
    or None; landmarks [N, L, 2] detected pixel positions at the data's resolution (NaN = not
    found) and landmark_weights [N, L], or None; background [N, H, W, 3] the views' clean
    background plates in [0, 1] or None. A sequence's have a leading [T] frame axis."""

    mask: jax.Array | None
    depth: jax.Array | None = None
    rgb: jax.Array | None = None
    landmarks: jax.Array | None = None
    landmark_weights: jax.Array | None = None
    background: jax.Array | None = None

    @property
    def frames(self) -> int | None:
        """T for a sequence's targets, None for one frame's."""
        for x, rank in ((self.mask, 3), (self.depth, 3), (self.rgb, 4), (self.landmarks, 3)):
            if x is not None:
                return x.shape[0] if x.ndim == rank + 1 else None
        raise ValueError("the targets hold no images and no landmarks")


def _interior(mask: jax.Array) -> jax.Array:
    """[..., H, W] bool: covered pixels whose 4 neighbours are covered too."""
    pad = [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)]
    m = jnp.pad(mask, pad)
    return mask & m[..., :-2, 1:-1] & m[..., 2:, 1:-1] & m[..., 1:-1, :-2] & m[..., 1:-1, 2:]


def _albedo_image(params: dict, frags, faces, model) -> jax.Array:
    """Linear albedo [N, H, W, 3] of the visible surface: a UV texture ``params["texture"]``
    [Ht, Wt, 3] sampled trilinearly at the model's texture coordinates, or per-vertex
    ``params["albedo"]`` [V, 3] interpolated."""
    if "texture" in params:
        if getattr(model, "uvs", None) is None:
            raise ValueError("params 'texture' is a UV texture map: the model has no texture coordinates")
        uv = interpolate(model.uvs, frags, model.uv_faces)
        return texture(params["texture"], uv, filter="trilinear", mask=frags.mask)
    if "albedo" not in params:
        raise ValueError(
            "the photometric term fits an albedo (params 'albedo' [V, 3] or 'texture' [Ht, Wt, 3]) and a "
            "light; params has neither"
        )
    return interpolate(params["albedo"], frags, faces)


def image_objective(
    model: Any,
    cameras: Camera,
    *,
    near: float,
    far: float,
    weights: LossWeights = LossWeights(silhouette=1.0),
    sigma: float = 1.0,
    depth_max_error: float | None = None,
    landmark_scale: float | None = None,
    pixel_size: float = 1.0,
    photometric_scale: float | None = None,
) -> Callable[[Any, Targets], tuple[jax.Array, dict]]:
    """The weighted sum of image and regularisation terms for ``model`` seen by ``cameras`` [N].

    Args:
        model: has ``faces`` [F, 3], ``num_vertices`` and ``vertices(params)`` -> [V, 3]
            world-space vertices (any of ``meshfit.models``).
        cameras: [N] batch; the targets' images must be cameras.height x cameras.width.
        near, far: clip range enclosing the object.
        weights: LossWeights.
        sigma: SoftRas blur (pixels^2) for the soft silhouette.
        depth_max_error: truncation of the depth term (world units; ``losses.depth_loss``).
        landmark_scale: the landmark term's robust scale in the data's pixels (None: squared
            error); pixel_size: the cameras' pixel in the data's pixels (a coarse stage's
            cameras see the detections, made at the data's resolution, through it).
        photometric_scale: the photometric term's robust scale (colour units; None: Charbonnier
            throughout; ``losses.photometric_loss``).
    Returns:
        ``loss_fn(params, targets, model_now=None) -> (loss, terms)`` with one scalar per active
        term. ``model_now`` (optional) replaces ``model`` for the vertices: a model with the same
        faces whose other leaves differ (a rigid model's base rotation), so that one compiled
        step serves many such models.
    """
    faces = model.faces
    H, W = cameras.height, cameras.width
    topo = None
    if weights.laplacian or weights.edge or weights.normal or weights.albedo_smoothness or weights.albedo_tv:
        topo = Topology.from_faces(faces, model.num_vertices)
    lap = uniform_laplacian(topo) if weights.laplacian or weights.albedo_smoothness else None

    def loss_fn(params: Any, targets: Targets, model_now: Any = None) -> tuple[jax.Array, dict]:
        for name in ("mask", "depth", "rgb", "background"):
            x = getattr(targets, name)
            if x is not None and x.shape[:3] != (cameras.batch_shape[0], H, W):
                raise ValueError(f"target {name} images must be [{cameras.batch_shape[0]}, {H}, {W}, ...]; "
                                 f"got {x.shape}")  # fmt: skip
        if targets.mask is None and (weights.silhouette or weights.soft_iou or weights.soft_silhouette):
            raise ValueError("the silhouette terms need target masks")
        v = (model if model_now is None else model_now).vertices(params)
        terms: dict[str, jax.Array] = {}
        clip = cameras.to_clip(v, near, far)
        if weights.silhouette or weights.soft_iou or weights.depth or weights.shading or weights.photometric:
            frags = rasterize(clip, faces, height=H, width=W)
            # Images to antialias, as channels of one pass: the coverage (silhouette terms) and
            # the photometric term's render laid over what lies behind it.
            layers: dict[str, jax.Array] = {}
            if weights.silhouette or weights.soft_iou:
                layers["coverage"] = frags.mask[..., None].astype(clip.dtype)
            if weights.photometric:
                if targets.rgb is None:
                    raise ValueError("the photometric term needs target colour images")
                albedo = _albedo_image(params, frags, faces, model if model_now is None else model_now)
                albedo = albedo if "gain" not in params else albedo * params["gain"][:, None, None, :]
                plate = targets.background
                if "background" in params:  # a fitted backdrop colour per camera [N, 3]
                    plate = jnp.broadcast_to(params["background"][:, None, None, :], targets.rgb.shape)
                # Occlusion edges are antialiased (so that they move the vertices) where the
                # model is all the images show: over a plate, or inside masks. Without either
                # the model may be part of what is seen (a face in a head), and what lies
                # behind its edges is not rendered.
                edges = plate is not None or targets.mask is not None
                fused = (
                    not edges
                    and "light" in params
                    and photometric_scale is None
                    and not weights.photometric_gradient
                )
                if fused:
                    # SH light over the interior: the fused shading + error (native on the CPU).
                    weight = _interior(frags.mask).astype(albedo.dtype)
                    raw = interpolate(vertex_normals(v, faces), frags, faces)
                    total = sh_charbonnier_error(albedo, raw, params["light"], targets.rgb, weight)
                    terms["photometric"] = total / jnp.maximum(3.0 * jnp.sum(weight), 1.0)
                else:
                    if "light" in params:  # SH light: the native kernel on the CPU
                        raw = interpolate(vertex_normals(v, faces), frags, faces)
                        colour = sh_colour(albedo, raw, params["light"])
                    else:
                        colour = lit_colour(albedo, normal_image(v, faces, frags), params)
                    if edges:
                        # With masks the target stands in behind the surface: its outline's
                        # pixels, which would need a background model, are left out below.
                        behind = targets.rgb if plate is None else plate
                        layers["colour"] = jnp.where(frags.mask[..., None], colour, behind)
            if layers:
                sizes = [x.shape[-1] for x in layers.values()]
                smooth = antialias(jnp.concatenate(list(layers.values()), -1), frags, clip, faces)
                layers = dict(zip(layers, jnp.split(smooth, np.cumsum(sizes)[:-1], -1)))
            if weights.silhouette:
                terms["silhouette"] = losses.silhouette_loss(layers["coverage"][..., 0], targets.mask)
            if weights.soft_iou:
                terms["soft_iou"] = losses.soft_iou_loss(layers["coverage"][..., 0], targets.mask)
            if weights.photometric and not fused:
                image = layers.get("colour", colour)
                region = _interior(frags.mask) if plate is None else None
                terms["photometric"] = losses.photometric_loss(
                    image, targets.rgb, norm="charbonnier", scale=photometric_scale, mask=region
                )
                if weights.photometric_gradient:
                    terms["photometric_gradient"] = losses.image_gradient_loss(
                        image, targets.rgb, mask=region
                    )
            if weights.depth:
                if targets.depth is None:
                    raise ValueError("the depth term needs target depth images")
                terms["depth"] = losses.depth_loss(frags.depth, targets.depth, max_error=depth_max_error)
            if weights.shading:
                if targets.rgb is None:
                    raise ValueError("the shading term needs target colour images")
                normals = normal_image(v, faces, frags)
                albedo = jnp.full(normals.shape[:-1] + (1,), float(np.mean(BASE_COLOR)), clip.dtype)
                grey = jnp.where(frags.mask[..., None], studio_lighting(normals, albedo), 0.0)
                grey = antialias(grey, frags, clip, faces)
                target = jnp.mean(targets.rgb, -1, keepdims=True)
                terms["shading"] = losses.photometric_loss(grey, target, norm="l1")
        if weights.landmarks:
            if targets.landmarks is None:
                raise ValueError("the landmarks term needs landmark detections")
            points = (model if model_now is None else model_now).landmark_points(v)
            terms["landmarks"] = losses.landmark_loss(
                cameras, points, targets.landmarks, weights=targets.landmark_weights, scale=landmark_scale,
                pixel_size=pixel_size,
            )  # fmt: skip
        if weights.soft_silhouette:
            soft = soft_silhouette(clip, faces, height=H, width=W, sigma=sigma)
            terms["soft_silhouette"] = losses.silhouette_loss(soft, targets.mask)
        if weights.laplacian:
            terms["laplacian"] = losses.laplacian_loss(v, lap)
        if weights.albedo_smoothness:
            if "texture" in params:  # squared differences of neighbouring texels
                tex = params["texture"]
                dx, dy = tex[:, 1:] - tex[:, :-1], tex[1:] - tex[:-1]
                # Mean over texel pairs of the squared colour difference (summed over channels).
                pairs = (dx.size + dy.size) // tex.shape[-1]
                terms["albedo_smoothness"] = (jnp.sum(dx * dx) + jnp.sum(dy * dy)) / pairs
            elif "albedo" in params:
                terms["albedo_smoothness"] = losses.laplacian_loss(params["albedo"], lap)
            else:
                raise ValueError(
                    "albedo_smoothness weighs the fitted albedo: params has no 'albedo' or 'texture'"
                )
        if weights.albedo_tv:
            if "texture" in params:
                terms["albedo_tv"] = losses.total_variation_loss(params["texture"])
            elif "albedo" in params:
                terms["albedo_tv"] = losses.total_variation_loss(params["albedo"], topo.edges)
            else:
                raise ValueError("albedo_tv weighs the fitted albedo: params has no 'albedo' or 'texture'")
        if weights.cotangent_laplacian:
            terms["cotangent_laplacian"] = losses.laplacian_loss(v, cotangent_laplacian(v, faces))
        if weights.edge:
            terms["edge"] = losses.edge_length_loss(v, topo.edges)
        if weights.normal:
            terms["normal"] = losses.normal_consistency_loss(v, faces, topo)
        if weights.prior:
            # A rig may have no identity (or no expression) shapes: a mean over nothing is NaN.
            coeffs = [params[k] for k in ("identity", "expression") if k in params and params[k].size]
            terms["prior"] = sum(losses.l2_prior(c) for c in coeffs) if coeffs else jnp.zeros(())
        if weights.pose_prior:
            pose = [params[k] for k in ("rotation", "log_scale") if k in params and params[k].size]
            terms["pose_prior"] = sum(losses.l2_prior(p) for p in pose) if pose else jnp.zeros(())
        total = sum(getattr(weights, k) * t for k, t in terms.items())
        return total, terms

    return loss_fn

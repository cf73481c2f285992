"""The regressor: a per-view CNN with shared weights, fused over views, and its decoding.

Each view's image goes through the same small CNN (3x3 convolutions, ReLU, a dense layer: ops a
runtime implements well, no normalisation to fold). From a view's features come

- the object's rotation *in that camera's axes* (6-D, Zhou et al. 2019), its centre's ray
  (x/z, y/z) and depth, and a confidence: the camera's pose then turns them into the world, so
  a view predicts what it can see whatever the rig (rotations are averaged over views; the
  centre is the weighted least-squares point nearest to every view's ray, pulled weakly to
  its depth estimate);
- features that are averaged over the views present and give the coefficients and the scale.

So any subset of the rig's views works, and a slightly moved camera only moves its rays.
``Regressor.__call__`` gives raw outputs; ``decode`` (pure, given the cameras) gives the Task's
canonical parameters.

A correcting network (render and compare) is the same module reading the views and a first
network's prediction rendered beside them (``inputs.prediction_channels``); its pooled outputs
are a small correction of that prediction (``decode_correction``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from meshfit.amortize.config import NetworkConfig
from meshfit.amortize.inputs import view_depths
from meshfit.amortize.task import Task, six_d_to_matrix
from meshfit.camera import Camera
from meshfit.models import so3_exp

__all__ = ["CORRECTION_OUTPUTS", "VIEW_OUTPUTS", "Regressor", "decode", "decode_correction", "network_cost"]

# Per view: rotation 6-D, centre ray (2), log depth ratio, confidence logit.
VIEW_OUTPUTS = 10
# A correcting network's pooled outputs beyond the coefficients: log scale, rotation (world
# axis-angle), centre (world, object radii).
CORRECTION_OUTPUTS = 7
# What a correcting network's raw output of 1 means, as fractions of the sampled ranges: the
# coefficients' half-range, the largest rotation, the centre's box (half-width, object radii), the
# log scale's half-range (0 when the scale is not sampled: the truth's is then known, and a fit's
# refinement does not free it). Corrections are small: small output scales keep the first steps
# of training from throwing a good prediction away.
_CORRECTION_SCALES = {"coeffs": 0.1, "rotation": 0.1, "centre": 0.3, "log_scale": 0.1}
# Weight of a view's depth estimate against the rays' intersection (rays decide when views agree).
_DEPTH_PULL = 0.05


class Regressor(nnx.Module):
    """Views -> raw per-view and pooled outputs.

    Args:
        in_channels: channels per pixel (the TrainConfig's inputs + 2 ray channels).
        num_outputs: pooled outputs (K coefficients + 1 log scale).
        resolution: (H, W) of the input images.
        config: the NetworkConfig.
    """

    def __init__(self, in_channels: int, num_outputs: int, resolution: tuple[int, int], config: NetworkConfig,
                 *, rngs: nnx.Rngs):  # fmt: skip
        layers = []
        c = in_channels
        for s in range(config.stages):
            out = config.width * 2**s
            layers.append(nnx.Conv(c, out, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs))
            for _ in range(config.convs_per_stage - 1):
                layers.append(nnx.Conv(out, out, (3, 3), padding="SAME", rngs=rngs))
            c = out
        self.convs = nnx.List(layers)
        h, w = resolution
        cells = (h // 2**config.stages) * (w // 2**config.stages)
        self.embed = nnx.Linear(cells * c, config.features, rngs=rngs)
        self.view_head = nnx.Linear(config.features, VIEW_OUTPUTS - 1, rngs=rngs)
        # No bias: a shift shared by every view's confidence changes nothing, so its gradient is
        # rounding noise, which Adam would blow up into steps.
        self.confidence = nnx.Linear(config.features, 1, use_bias=False, rngs=rngs)
        self.pool_hidden = nnx.Linear(config.features, config.features, rngs=rngs)
        self.pool_head = nnx.Linear(config.features, num_outputs, rngs=rngs)
        # Start at "no rotation, centre on the rig's centre, every view equally sure": the heads'
        # initial outputs are then sensible and training starts from a mean pose.
        self.view_head.kernel[...] = self.view_head.kernel[...] * 0.01
        self.pool_head.kernel[...] = self.pool_head.kernel[...] * 0.01

    def __call__(self, images: jax.Array, present: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images: [B, N, H, W, C] float32; present: [B, N] float, 1 for views given, 0 for
        missing ones. Returns (per view [B, N, VIEW_OUTPUTS], pooled [B, num_outputs])."""
        B, N = images.shape[:2]
        x = images.reshape((B * N,) + images.shape[2:])
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        h = jax.nn.relu(self.embed(x.reshape(B * N, -1))).reshape(B, N, -1)
        per_view = jnp.concatenate([self.view_head(h), self.confidence(h)], -1)
        w = present[..., None]
        pooled = jnp.sum(h * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0)
        return per_view, self.pool_head(jax.nn.relu(self.pool_hidden(pooled)))


def decode(
    task: Task, cameras: Camera, per_view: jax.Array, pooled: jax.Array, present: jax.Array, *,
    ranges: np.ndarray, bounds: np.ndarray, scale_range: tuple[float, float],
) -> dict:  # fmt: skip
    """Canonical parameters [B, ...] from raw outputs.

    Args:
        task: the Task. cameras: [B, N] the cameras the views were taken with.
        per_view: [B, N, VIEW_OUTPUTS]. pooled: [B, K + 1]. present: [B, N] 1/0.
        ranges: [K, 2] the coefficients' sampling ranges (unbounded outputs are scaled by them).
        bounds: [K, 2] boxes the coefficients are confined to (inf = unbounded).
        scale_range: the sampled scale range (the log scale output is scaled by it).
    """
    # A view's rotation is the object's turn away from its rest orientation, in that camera's
    # axes (what the view sees): R_world = R_cam^T R_view R_cam, the identity at zero output.
    rot6 = per_view[..., :6] + jnp.array([[[1.0, 0, 0, 0, 1.0, 0]]])
    R_view = six_d_to_matrix(rot6)
    R_world = jnp.einsum("bnji,bnjk,bnkl->bnil", cameras.R, R_view, cameras.R)
    logit = jnp.where(present > 0, per_view[..., 9], -1e9)
    w = jax.nn.softmax(logit, -1)  # [B, N]
    cols = jnp.einsum("bn,bnij->bij", w, R_world[..., :, :2])  # weighted first two columns
    R = six_d_to_matrix(jnp.concatenate([cols[..., 0], cols[..., 1]], -1))

    # The centre: each view's ray through its predicted pixel, and a point at its predicted depth.
    ray_c = jnp.concatenate(
        [per_view[..., 6:8] + _centre_ray(cameras, task), jnp.ones_like(w[..., None])], -1
    )
    z_ref = view_depths(cameras, task.target)
    z = z_ref * jnp.exp(per_view[..., 8])
    d = jnp.einsum("bnji,bnj->bni", cameras.R, ray_c)  # ray direction in the world (unnormalised)
    p = cameras.center + z[..., None] * d  # the point at depth z (camera z of d is 1)
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    eye = jnp.eye(3)[None, None]
    proj = eye - d[..., :, None] * d[..., None, :]  # [B, N, 3, 3]
    A = jnp.einsum("bn,bnij->bij", w, proj + _DEPTH_PULL * eye)
    rhs = jnp.einsum("bn,bni->bi", w, jnp.einsum("bnij,bnj->bni", proj, cameras.center) + _DEPTH_PULL * p)
    centre = jnp.linalg.solve(A, rhs[..., None])[..., 0]

    K = ranges.shape[0]
    raw = pooled[..., :K]
    lo, hi = bounds[:, 0], bounds[:, 1]
    bounded = np.isfinite(lo) & np.isfinite(hi)
    mid = 0.5 * (ranges[:, 0] + ranges[:, 1])
    half = np.maximum(0.5 * (ranges[:, 1] - ranges[:, 0]), 1e-3)
    free = mid[None] + half[None] * raw
    # A bounded coefficient: a sigmoid onto its box, zero output at the sampling range's middle
    # (slope there = half the box, as an unbounded output's slope is half its range).
    width = np.where(bounded, hi - lo, 1.0)
    frac = np.clip((mid - np.where(bounded, lo, 0.0)) / width, 1e-3, 1 - 1e-3)
    boxed = np.where(bounded, lo, 0.0)[None] + width[None] * jax.nn.sigmoid(
        2.0 * raw + np.log(frac / (1 - frac))[None]
    )
    coeffs = jnp.where(bounded[None], boxed, free)
    coeffs = jnp.clip(coeffs, lo[None], hi[None])  # one-sided bounds
    s_lo, s_hi = np.log(scale_range[0]), np.log(scale_range[1])
    log_scale = 0.5 * (s_lo + s_hi) + 0.5 * (s_hi - s_lo) * pooled[..., K]
    return {
        "coeffs": coeffs,
        "R": R,
        "offset": (centre - task.target[None]) / task.radius,
        "log_scale": log_scale,
    }


def decode_correction(
    pred: dict, pooled: jax.Array, *, ranges: np.ndarray, bounds: np.ndarray, rotation: float,
    translation: float, scale_range: tuple[float, float], views: tuple | None = None,
) -> dict:  # fmt: skip
    """Canonical parameters [B, ...]: ``pred`` corrected by a correcting network's pooled outputs
    [B, K + CORRECTION_OUTPUTS] (K coefficients, log scale, rotation as a world axis-angle,
    centre); zero outputs leave ``pred`` as it is. ranges, bounds: [K, 2] as in ``decode``;
    rotation (degrees), translation (object radii), scale_range: the sampling's
    (``SamplingConfig``). ``views`` = (per_view [B, N, VIEW_OUTPUTS], cameras [B, N], present
    [B, N]): the rotation and centre corrections come instead from each view, in its camera's
    axes (outputs 0-2 and 3-5), turned into the world and averaged with the views' confidences
    (output 9): what a view sees of a misalignment is in its own axes."""
    s = _CORRECTION_SCALES
    K = ranges.shape[0]
    if views is not None:
        per_view, cameras, present = views
        w = jax.nn.softmax(jnp.where(present > 0, per_view[..., 9], -1e9), -1)  # [B, N]
        local = jnp.stack([per_view[..., 0:3], per_view[..., 3:6]], -1)  # [B, N, 3, (turn, centre)]
        world = jnp.einsum("bnji,bnjc->bnic", cameras.R, local)  # R_cam^T v
        turn_centre = jnp.einsum("bn,bnic->bci", w, world).reshape(pooled.shape[0], 6)
        pooled = jnp.concatenate([pooled[:, : K + 1], turn_centre], -1)
    half = np.maximum(0.5 * (ranges[:, 1] - ranges[:, 0]), 1e-3)
    coeffs = jnp.clip(pred["coeffs"] + s["coeffs"] * half[None] * pooled[:, :K], bounds[None, :, 0],
                      bounds[None, :, 1])  # fmt: skip
    # Floors: a network trained on one pose still gets corrections of a few degrees / radii %.
    turn = so3_exp(s["rotation"] * np.radians(max(rotation, 5.0)) * pooled[:, K + 1 : K + 4])
    return {
        "coeffs": coeffs,
        "R": jnp.einsum("bij,bjk->bik", turn, pred["R"]),
        "offset": pred["offset"] + s["centre"] * max(translation, 0.05) * pooled[:, K + 4 : K + 7],
        "log_scale": pred["log_scale"]
        + s["log_scale"] * 0.5 * float(np.log(scale_range[1] / scale_range[0])) * pooled[:, K],
    }


def _centre_ray(cameras: Camera, task: Task) -> jax.Array:
    """[B, N, 2] (x/z, y/z) of the rig's centre in each camera: where a zero output points."""
    pc = jnp.einsum("bnij,j->bni", cameras.R, task.target) + cameras.t
    return pc[..., :2] / pc[..., 2:3]


def network_cost(config: NetworkConfig, in_channels: int, num_outputs: int, resolution: tuple[int, int],
                 views: int) -> dict:  # fmt: skip
    """Parameters and multiply-add FLOPs (2 per MAC) of one forward pass for ``views`` views."""
    h, w = resolution
    c, flops, params = in_channels, 0, 0
    for s in range(config.stages):
        out = config.width * 2**s
        h, w = -(-h // 2), -(-w // 2)
        for i in range(config.convs_per_stage):
            cin = c if i == 0 else out
            flops += 2 * h * w * 9 * cin * out
            params += 9 * cin * out + out
        c = out
    f = config.features
    dense = [(h * w * c, f), (f, VIEW_OUTPUTS)]  # the view head and the confidence
    per_view = flops + sum(2 * a * b for a, b in dense)
    params += sum(a * b + b for a, b in dense) - 1  # the confidence has no bias
    pooled = [(f, f), (f, num_outputs)]
    params += sum(a * b + b for a, b in pooled)
    return {
        "parameters": int(params),
        "flops_per_view": int(per_view),
        "flops": int(views * per_view + sum(2 * a * b for a, b in pooled)),
    }

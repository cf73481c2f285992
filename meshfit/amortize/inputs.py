"""A network's input images: rendered on the fly for training, or made from a dataset's images.

Both paths give the same channels, [B, N, H, W, C] float32 at the network's resolution:

- ``mask``: coverage in [0, 1] (area-averaged at the edges, as a downsampled real mask is);
- ``grey``: the grey level in [0, 1] (shading over the background);
- ``depth``: camera-space depth minus the rig centre's depth, in object radii (0 where empty);
- two ray channels, always last: ((u - cx) / fx, (v - cy) / fy) of every pixel, so the network
  knows which camera it looks through.

Training renders with meshfit's rasterizer at twice the resolution and area-averages, with a
random light, albedo, background, noise, ragged mask edges and occluders (``AppearanceConfig``);
nothing is differentiated through it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.amortize.config import AppearanceConfig, RigJitter
from meshfit.amortize.task import Task
from meshfit.camera import Camera
from meshfit.fitting.stage import area_resize
from meshfit.mesh import vertex_normals
from meshfit.models import so3_exp
from meshfit.render import interpolate, rasterize, sh_irradiance
from meshfit.render.lighting import AMBIENT, BASE_COLOR, LIGHT_DIRECTION, LIGHT_INTENSITY
from meshfit.render.shade import _C2 as SH_C2
from meshfit.render.shade import _C4 as SH_C4

__all__ = [
    "SUPERSAMPLE",
    "jitter_rig",
    "network_inputs",
    "prediction_channels",
    "ray_channels",
    "render_inputs",
    "view_depths",
]

# Training renders at this many times the network's resolution and area-averages.
SUPERSAMPLE = 2
_DIFFUSE = (1.0 - 0.04) / np.pi  # pyrender's diffuse factor (render.lighting), per unit intensity


def ray_channels(cameras: Camera) -> jax.Array:
    """[B..., H, W, 2] ((u - cx) / fx, (v - cy) / fy) of every pixel centre."""
    H, W = cameras.height, cameras.width
    lead = (1,) * len(cameras.batch_shape)
    u = jnp.arange(W, dtype=jnp.float32).reshape(lead + (W,))
    v = jnp.arange(H, dtype=jnp.float32).reshape(lead + (H,))
    x = (u - cameras.cx[..., None]) / cameras.fx[..., None]  # [B..., W]
    y = (v - cameras.cy[..., None]) / cameras.fy[..., None]  # [B..., H]
    shape = cameras.batch_shape + (H, W)
    return jnp.stack([jnp.broadcast_to(x[..., None, :], shape), jnp.broadcast_to(y[..., :, None], shape)], -1)


def view_depths(cameras: Camera, point: jax.Array) -> jax.Array:
    """[B...] camera-space depth of the world point [3] (or [B..., 3]) in each camera."""
    axis = cameras.R[..., 2, :]
    point = jnp.asarray(point).reshape((1,) * (axis.ndim - jnp.ndim(point)) + jnp.shape(point))
    return jnp.sum(axis * point, -1) + cameras.t[..., 2]


def jitter_rig(key: jax.Array, rig: Camera, jitter: RigJitter, radius) -> Camera:
    """The rig [N] with every camera moved a little: rotation, position, focal, principal point."""
    n = rig.batch_shape[0]
    kr, kt, kf, kp = jax.random.split(key, 4)
    w = np.radians(jitter.rotation) * jax.random.normal(kr, (n, 3))
    R = so3_exp(w) @ rig.R
    centre = rig.center + jitter.translation * radius * jax.random.normal(kt, (n, 3))
    t = -jnp.einsum("nij,nj->ni", R, centre)
    f = 1.0 + jitter.focal * jax.random.normal(kf, (n,))
    p = jitter.principal * jax.random.normal(kp, (n, 2))
    return Camera(
        fx=rig.fx * f, fy=rig.fy * f, cx=rig.cx + p[:, 0] * rig.width, cy=rig.cy + p[:, 1] * rig.height,
        R=R, t=t, width=rig.width, height=rig.height,
    )  # fmt: skip


def _pool(x: jax.Array, k: int) -> jax.Array:
    """Area-average [..., kH, kW] images by k x k blocks."""
    *lead, H, W = x.shape
    return x.reshape(*lead, H // k, k, W // k, k).mean((-3, -1))


def network_inputs(mask, grey, depth, cameras: Camera, task: Task, channels) -> jax.Array:
    """Stack the named channels [B, N, H, W] (depth: camera z, 0 where empty) with the rays.

    ``cameras`` [B, N] (or [N], shared) at the images' resolution; depth is turned into object radii about the
    depth of the rig's centre."""
    out = []
    for name in channels:
        if name == "mask":
            out.append(mask)
        elif name == "grey":
            out.append(grey)
        else:
            ref = view_depths(cameras, task.target)[..., None, None]
            ref = ref.reshape((1,) * (depth.ndim - ref.ndim) + ref.shape)
            out.append(jnp.where(depth > 0, (depth - ref) / task.radius, 0.0))
    rays = jnp.broadcast_to(ray_channels(cameras), mask.shape + (2,))
    return jnp.concatenate([jnp.stack(out, -1), rays], -1).astype(jnp.float32)


def prediction_channels(
    task: Task, cameras: Camera, vertices: jax.Array, supersample: int = SUPERSAMPLE
) -> jax.Array:
    """[B, N, H, W, 2] the mask and depth channels (as ``network_inputs`` makes them) of predicted
    meshes ``vertices`` [B, V, 3] seen by ``cameras`` [B, N] at the network's resolution: what a
    correcting network compares with the observed inputs. Rasterized from the task's proxy at
    ``supersample`` times the resolution and area-averaged, without noise; not differentiated."""
    H, W, k = cameras.height, cameras.width, supersample
    big = cameras.resized(W * k, H * k)
    verts = task.proxy_vertices(jax.lax.stop_gradient(vertices))
    clip = jax.vmap(lambda c, v: c.to_clip(v, *task.planes))(big, verts)
    frags = rasterize(clip, task.proxy_faces, height=H * k, width=W * k)
    mask = _pool(frags.mask.astype(jnp.float32), k)
    depth = jnp.where(mask > 0, _pool(frags.depth, k) / jnp.maximum(mask, 1e-6), 0.0)
    return network_inputs(mask, None, depth, cameras, task, ("mask", "depth"))[..., :2]


def _draws(keys: jax.Array):
    """``draw(fn, *shape)``: per-sample random arrays [B, *shape], sample b's from its own key
    (so a sample's images do not depend on which other samples share its batch or device)."""
    counter = iter(range(1_000_000))

    def draw(fn, *shape, **kw):
        i = next(counter)
        return jax.vmap(lambda k: fn(jax.random.fold_in(k, i), shape, **kw))(keys)

    return draw


def render_inputs(
    keys: jax.Array, task: Task, cameras: Camera, vertices: jax.Array, appearance: AppearanceConfig, channels
) -> tuple[jax.Array, dict]:
    """Render training inputs.

    Args:
        keys: [B] PRNG keys, one per sample. task: the Task. cameras: [B, N] at the network's resolution.
        vertices: [B, V, 3] world-space vertices. appearance: how the images vary.
        channels: the channel names (``TrainConfig.inputs``).
    Returns:
        (inputs [B, N, H, W, C], images) with images the clean and noisy channels by name
        ("mask", "grey", "depth": [B, N, H, W]; "depth" is camera z, 0 where empty).
    """
    B, N = cameras.batch_shape
    H, W = cameras.height, cameras.width
    k = SUPERSAMPLE
    big = cameras.resized(W * k, H * k)
    # The proxy (a decimation of the model when the config asks for one): rasterizing is most of
    # a training step's cost, and it grows with the faces more than with the pixels.
    vertices, faces = task.proxy_vertices(jax.lax.stop_gradient(vertices)), task.proxy_faces
    clip = jax.vmap(lambda c, v: c.to_clip(v, *task.planes))(big, vertices)  # [B, N, P, 4]
    frags = rasterize(clip, faces, height=H * k, width=W * k)
    covered = frags.mask.astype(jnp.float32)
    mask = _pool(covered, k)
    draw = _draws(keys)
    normal, uniform, bernoulli = jax.random.normal, jax.random.uniform, jax.random.bernoulli
    images = {"mask": mask}
    if "depth" in channels:
        z = _pool(frags.depth, k)
        depth = jnp.where(mask > 0, z / jnp.maximum(mask, 1e-6), 0.0)
        noise = appearance.depth_noise * task.radius * draw(normal, N, H, W)
        images["depth"] = jnp.where(depth > 0, depth + noise, 0.0)
    if "grey" in channels:
        # Gouraud shading: light the vertices, interpolate one channel. Per-pixel normals cost ~8x
        # more (three interpolated channels renormalised at every supersampled pixel) and change the
        # images little on a mesh this dense; the pyrender validation set keeps per-pixel shading.
        normals = jax.vmap(lambda v: vertex_normals(v, faces))(vertices)  # [B, P, 3]
        # A light from the cameras' side (any direction in that hemisphere) or synth's studio light.
        toward = jnp.mean(big.center, 1) - task.target[None]  # [B, 3]
        toward = toward / jnp.linalg.norm(toward, axis=-1, keepdims=True)
        s = draw(normal, 3)
        s = s / jnp.linalg.norm(s, axis=-1, keepdims=True)
        s = jnp.where(jnp.sum(s * toward, -1, keepdims=True) < 0, -s, s)  # towards the light
        studio = draw(lambda k, sh: bernoulli(k, appearance.studio, sh), 1)
        ld = -jnp.asarray(LIGHT_DIRECTION, jnp.float32)
        s = jnp.where(studio, (ld / jnp.linalg.norm(ld))[None], s)
        intensity = jnp.where(studio, LIGHT_INTENSITY, draw(uniform, 1, minval=1.5, maxval=4.0))
        amb = draw(uniform, 1, minval=appearance.ambient[0], maxval=appearance.ambient[1])
        amb = jnp.where(studio, AMBIENT, amb)
        alb = draw(uniform, 1, minval=appearance.albedo[0], maxval=appearance.albedo[1])
        alb = jnp.where(studio, float(np.mean(BASE_COLOR)), alb)
        lam = jnp.maximum(jnp.einsum("bvc,bc->bv", normals, s), 0.0)
        linear = alb * (amb + _DIFFUSE * intensity * lam)  # [B, P]
        if appearance.sh:  # (drawn only when asked for: configs without it keep their samples)
            use_sh = draw(lambda k, sh: bernoulli(k, appearance.sh, sh), 1) & ~studio
            # Irradiance E = E0 + E1 (n . s) + second-order terms: L00 = E0 / C4 and
            # L1 = E1 s / (2 C2) in the basis's (y, z, x) order (render.shade.sh_irradiance).
            e0 = draw(uniform, 1, minval=0.3, maxval=1.0)
            e1 = draw(uniform, 1, minval=0.3, maxval=1.0)
            l2 = 0.15 * draw(normal, 5)
            l1 = e1 * s[:, jnp.asarray([1, 2, 0])] / (2 * SH_C2)
            coeffs = jnp.concatenate([e0 / SH_C4, l1, l2], -1)  # [B, 9]
            irradiance = jax.vmap(lambda n, c: sh_irradiance(n, c[:, None])[..., 0])(normals, coeffs)
            linear = jnp.where(use_sh, alb * jnp.maximum(irradiance, 0.0), linear)
        linear = jnp.broadcast_to(linear[:, None, :, None], (B, N, linear.shape[1], 1))
        linear = interpolate(linear, frags, faces)[..., 0]  # [B, N, kH, kW]
        shade = jnp.clip(linear, 1e-6, 1.0) ** (1 / 2.2)
        # Background: a level and a linear gradient per view.
        level = draw(uniform, N, 1, 1, minval=appearance.background[0], maxval=appearance.background[1])
        g = appearance.background_gradient * draw(normal, N, 2, 1, 1) / np.sqrt(2)
        yy, xx = jnp.meshgrid(jnp.linspace(-1, 1, H * k), jnp.linspace(-1, 1, W * k), indexing="ij")
        bg = jnp.clip(level + g[:, :, 0] * xx[None, None] + g[:, :, 1] * yy[None, None], 0.0, 1.0)
        grey = _pool(jnp.where(covered > 0, shade, bg), k)
        images["grey"] = grey + appearance.noise * draw(normal, N, H, W)
    # Ragged mask edges: a border pixel becomes a coin flip weighted by its coverage.
    border = (mask > 0) & (mask < 1)
    flip = draw(lambda k, sh: bernoulli(k, appearance.mask_noise, sh), N, H, W) & border
    coin = draw(uniform, N, H, W) < mask
    images["mask"] = jnp.where(flip, coin.astype(jnp.float32), mask)
    images = _occlude(draw, images, cameras, task, appearance)
    return network_inputs(
        images["mask"], images.get("grey"), images.get("depth"), cameras, task, channels
    ), images


def _occlude(draw, images: dict, cameras: Camera, task: Task, appearance: AppearanceConfig) -> dict:
    """Up to two random rectangles per view, each there with probability occluders / 2: grey
    at a random level, depth nearer than the object, and the mask either cut (the occluder hides
    the object) or filled (a mask that took the occluder for foreground)."""
    if appearance.occluders == 0:
        return images
    mask = images["mask"]
    B, N, H, W = mask.shape
    present = draw(lambda k, sh: jax.random.bernoulli(k, appearance.occluders / 2, sh), N, 2)
    centre = draw(jax.random.uniform, N, 2, 2)
    half = 0.5 * appearance.occluder_size * draw(jax.random.uniform, N, 2, 2)
    yy = (jnp.arange(H, dtype=jnp.float32) + 0.5) / H
    xx = (jnp.arange(W, dtype=jnp.float32) + 0.5) / W
    inside = (
        (jnp.abs(xx[None, None, None, None, :] - centre[..., 0, None, None]) < half[..., 0, None, None])
        & (jnp.abs(yy[None, None, None, :, None] - centre[..., 1, None, None]) < half[..., 1, None, None])
        & present[..., None, None]
    )  # [B, N, 2, H, W]
    level = draw(jax.random.uniform, N, 2, 1, 1)
    fill = draw(lambda k, sh: jax.random.bernoulli(k, 0.5, sh), N, 2, 1, 1).astype(jnp.float32)
    depth_at = draw(jax.random.uniform, N, 2, 1, 1)
    out = dict(images)
    for i in range(2):
        occ = inside[:, :, i]
        out["mask"] = jnp.where(occ, fill[:, :, i], out["mask"])
        if "grey" in out:
            out["grey"] = jnp.where(occ, level[:, :, i], out["grey"])
        if "depth" in out:
            ref = view_depths(cameras, task.target)[..., None, None]
            near = ref - task.radius * (1.2 + depth_at[:, :, i])
            out["depth"] = jnp.where(occ, near, out["depth"])
    return out


def image_targets(task: Task, cameras: Camera, *, mask, depth=None) -> tuple[jax.Array, jax.Array | None]:
    """A dataset's mask [..., N, H, W] and depth (camera z, 0 where empty) at the network's
    resolution: the targets of the image terms (coverage averaged; depth over covered pixels)."""
    h, w = task.rig.height, task.rig.width
    mask = jnp.asarray(mask, jnp.float32)
    lead = mask.ndim - 2
    m = area_resize(mask, h, w, lead)
    if depth is None:
        return m, None
    depth = jnp.asarray(depth, jnp.float32)
    cov = (depth > 0).astype(jnp.float32)
    num, den = area_resize(depth * cov, h, w, lead), area_resize(cov, h, w, lead)
    return m, jnp.where(den > 0, num / jnp.maximum(den, 1e-6), 0.0)


def image_inputs(
    task: Task, cameras: Camera, channels, *, mask, rgb=None, depth=None
) -> tuple[jax.Array, Camera]:
    """Network inputs from a dataset's images, as ``render_inputs`` makes them in training.

    Args:
        task: the Task (its rig sets the network's resolution). cameras: [N] the images' cameras.
        channels: the channel names. mask: [..., N, H, W] coverage in [0, 1]; rgb: [..., N, H, W, 3]
            in [0, 1] (needed for "grey"); depth: [..., N, H, W] camera z, 0 where empty (for "depth").
    Returns:
        (inputs [..., N, h, w, C], the cameras [N] at the network's resolution).
    """
    h, w = task.rig.height, task.rig.width
    H, W = cameras.height, cameras.width
    if abs(H * w - W * h) > max(H, W) * max(h, w) * 0.01:
        raise ValueError(
            f"the images are {W}x{H} but the network was trained for {task.rig.width}x{task.rig.height} "
            "images of another shape"
        )
    mask = jnp.asarray(mask, jnp.float32)
    lead = mask.ndim - 2
    small = cameras.resized(w, h)
    if "depth" in channels and depth is None:
        raise ValueError("the network reads depth: the dataset has no depth/ folder")
    m, d = image_targets(task, cameras, mask=mask, depth=depth if "depth" in channels else None)
    grey = None
    if "grey" in channels:
        if rgb is None:
            raise ValueError("the network reads grey images: the dataset has no rgb/ folder")
        grey = jnp.mean(area_resize(jnp.asarray(rgb, jnp.float32), h, w, lead), -1)
    return network_inputs(m, grey, d, small, task, channels), small

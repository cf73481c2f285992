"""Analytic antialiasing of visibility edges (nvdiffrast's method), and SoftRas soft silhouettes.

``antialias`` turns the discrete visibility decision into gradients for the vertices on
silhouettes and occlusion boundaries: for each horizontally or vertically adjacent pixel pair
seeing different surfaces, it finds where the front triangle's edge crosses the segment between
the two pixel centres (an analytic function of the vertex positions) and blends the two colours
by the area of the pixel box on the wrong side of that crossing (1-D box filter along the pair,
as in Laine et al. 2020, "Modular Primitives for High-Performance Differentiable Rendering").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meshfit.render import _native
from meshfit.render._backend import use_native
from meshfit.render._checks import check_faces
from meshfit.render._pixels import pixel_ndc
from meshfit.render.rasterize import Fragments

__all__ = ["antialias", "soft_silhouette"]


def _edge_values(corners: jax.Array, px: jax.Array, py: jax.Array) -> jax.Array:
    """Unnormalised homogeneous barycentrics u [..., 3] of NDC points for clip corners [..., 3, 4]."""
    a = corners[..., 0] - px[..., None] * corners[..., 3]
    b = corners[..., 1] - py[..., None] * corners[..., 3]
    return jnp.cross(a, b)


def _pair_deltas(color_p, color_q, fid_p, fid_q, depth_p, depth_q, clip, faces, p_xy, q_xy, horizontal, size):
    """Colour changes of the two pixels of each pair [..., N] (see the module docstring)."""
    cov_p, cov_q = fid_p >= 0, fid_q >= 0
    differ = fid_p != fid_q
    front_p = cov_p & (~cov_q | (depth_p <= depth_q))
    front = jnp.where(front_p, fid_p, fid_q)
    other = jnp.where(front_p, fid_q, fid_p)
    tri = faces[jnp.maximum(front, 0)]  # [..., N, 3]
    corners = jax.vmap(lambda c, t: c[t])(clip, tri)  # [B, N, 3, 4]
    fx, fy = jnp.where(front_p, p_xy[0], q_xy[0]), jnp.where(front_p, p_xy[1], q_xy[1])
    ox, oy = jnp.where(front_p, q_xy[0], p_xy[0]), jnp.where(front_p, q_xy[1], p_xy[1])
    u_f = _edge_values(corners, fx, fy)
    u_o = _edge_values(corners, ox, oy)
    sign = jnp.sign(jax.lax.stop_gradient(jnp.sum(u_f, -1, keepdims=True)))
    u_f, u_o = u_f * sign, u_o * sign
    uf_ng, uo_ng = jax.lax.stop_gradient(u_f), jax.lax.stop_gradient(u_o)
    # An edge exactly through the other pixel's centre counts (t = 1): the fill rule gave that
    # pixel away, yet half of its box is covered.
    crosses = (uo_ng <= 0) & (uf_ng >= 0) & (uf_ng - uo_ng > 0)
    denom = jnp.where(crosses, u_f - u_o, 1.0)
    t = jnp.where(crosses, u_f / denom, 2.0)  # crossing position from the front pixel, in [0, 1]
    k = jnp.argmin(jax.lax.stop_gradient(t), -1)
    t_edge = jnp.take_along_axis(t, k[..., None], -1)[..., 0]
    # The edge opposite corner k joins corners k+1 and k+2. If the other pixel sees a face that
    # shares it, the surface continues across: not a visibility edge.
    ea = jnp.take_along_axis(tri, ((k + 1) % 3)[..., None], -1)[..., 0]
    eb = jnp.take_along_axis(tri, ((k + 2) % 3)[..., None], -1)[..., 0]
    otri = faces[jnp.maximum(other, 0)]
    shared = (other >= 0) & jnp.any(otri == ea[..., None], -1) & jnp.any(otri == eb[..., None], -1)
    # Each edge is handled by the pairs across it that it cuts most squarely (horizontal pairs
    # for steep edges, vertical pairs for flat ones), so no edge is blended twice and the
    # coverage gradient integrates to the true area change.
    cs = jax.lax.stop_gradient(corners)
    cj = jnp.take_along_axis(cs, ((k + 1) % 3)[..., None, None], -2)[..., 0, :]
    ck = jnp.take_along_axis(cs, ((k + 2) % 3)[..., None, None], -2)[..., 0, :]
    nx = jnp.abs(ck[..., 3] * cj[..., 1] - cj[..., 3] * ck[..., 1]) / size[1]  # |A| / W (pixel units)
    ny = jnp.abs(cj[..., 3] * ck[..., 0] - ck[..., 3] * cj[..., 0]) / size[0]  # |B| / H
    steep = nx >= ny
    active = differ & (cov_p | cov_q) & (t_edge <= 1.0) & ~shared & (steep if horizontal else ~steep)
    c_front = jnp.where(front_p[..., None], color_p, color_q)
    c_other = jnp.where(front_p[..., None], color_q, color_p)
    # t > 1/2: the front surface reaches into the other pixel's box; t < 1/2: it leaves part of
    # its own pixel's box uncovered.
    # where (not clip): at t = 1/2 both the value and the gradient are 0, as in the native kernel.
    into_other = jnp.where(t_edge > 0.5, t_edge - 0.5, 0.0)[..., None] * (c_front - c_other)
    into_front = jnp.where(t_edge < 0.5, 0.5 - t_edge, 0.0)[..., None] * (c_other - c_front)
    d_front = jnp.where(active[..., None], into_front, 0.0)
    d_other = jnp.where(active[..., None], into_other, 0.0)
    d_p = jnp.where(front_p[..., None], d_front, d_other)
    d_q = jnp.where(front_p[..., None], d_other, d_front)
    return d_p, d_q


def antialias(
    color: jax.Array, fragments: Fragments, clip: jax.Array, faces: jax.Array, *, backend: str = "auto"
) -> jax.Array:
    """Antialias ``color`` along visibility edges, with gradients to the edge vertices.

    Args:
        color: [B..., H, W, C] image shaded from ``fragments`` (e.g. by ``interpolate``).
        fragments: the rasterizer output the colour was made from.
        clip: [B..., V, 4] the clip positions given to ``rasterize``.
        faces: [F, 3] int32, as given to ``rasterize``.
        backend: "auto" (native CPU kernel for float32 data on the CPU), "native" or "jax".
    Returns:
        [B..., H, W, C] antialiased colour.
    """
    color, clip, faces = jnp.asarray(color), jnp.asarray(clip), jnp.asarray(faces)
    if not jnp.issubdtype(color.dtype, jnp.floating):
        raise ValueError(f"color must be a float image; got {color.dtype}")
    check_faces(faces, clip.shape[-2])
    batch = fragments.face_id.shape[:-2]
    H, W = fragments.face_id.shape[-2:]
    if color.shape[:-1] != fragments.face_id.shape:
        raise ValueError(f"color must be [B..., H, W, C] like the fragments; got {tuple(color.shape)}")
    if clip.shape[:-2] != batch:
        raise ValueError(f"clip batch {clip.shape[:-2]} does not match the fragments' {batch}")
    C = color.shape[-1]
    col = color.reshape((-1, H, W, C))
    fid = fragments.face_id.reshape((-1, H, W))
    dep = jax.lax.stop_gradient(fragments.depth).reshape((-1, H, W))
    cl = clip.reshape((-1,) + clip.shape[-2:])
    if use_native(backend, col, cl):
        out = _native.antialias(col, fid, dep, cl, faces.astype(jnp.int32))
        return out.reshape(color.shape)
    nb = col.shape[0]
    xs, ys = pixel_ndc(H, W, cl.dtype)
    gx = jnp.broadcast_to(xs[None, None, :], (nb, H, W))
    gy = jnp.broadcast_to(ys[None, :, None], (nb, H, W))

    def flat(a, sl):
        return a[sl].reshape((nb, -1) + a.shape[3:])

    out = col
    for horizontal, sl_p, sl_q in (
        (True, (slice(None), slice(None), slice(0, W - 1)), (slice(None), slice(None), slice(1, W))),
        (False, (slice(None), slice(0, H - 1), slice(None)), (slice(None), slice(1, H), slice(None))),
    ):
        p_xy = (flat(gx, sl_p), flat(gy, sl_p))
        q_xy = (flat(gx, sl_q), flat(gy, sl_q))
        d_p, d_q = _pair_deltas(
            flat(col, sl_p), flat(col, sl_q), flat(fid, sl_p), flat(fid, sl_q),
            flat(dep, sl_p), flat(dep, sl_q), cl, faces, p_xy, q_xy, horizontal, (H, W),
        )  # fmt: skip
        shape = out[sl_p].shape
        out = out.at[sl_p].add(d_p.reshape(shape)).at[sl_q].add(d_q.reshape(shape))
    return out.reshape(color.shape)


def soft_silhouette(
    clip: jax.Array,
    faces: jax.Array,
    *,
    height: int,
    width: int,
    sigma: float = 1.0,
    chunk: int = 256,
) -> jax.Array:
    """SoftRas-style soft silhouette: 1 - prod_f (1 - sigmoid(+-d_f^2 / sigma)).

    d_f is the distance (in pixels) from the pixel centre to the projected triangle f, positive
    inside. Every face influences every pixel, so it costs O(F * H * W): meant for coarse early
    fitting stages at low resolution, where its wide gradients pull distant geometry in.
    Triangles with a corner behind the camera are skipped.

    Args:
        clip: [B..., V, 4] clip positions. faces: [F, 3] int32.
        sigma: blur in squared pixels (larger = softer, wider gradients).
    Returns:
        [B..., H, W] float coverage in [0, 1].
    """
    clip, faces = jnp.asarray(clip), jnp.asarray(faces)
    batch = clip.shape[:-2]
    cl = clip.reshape((-1,) + clip.shape[-2:])
    nf = faces.shape[0]
    pad = (-nf) % chunk
    fpad = jnp.concatenate([faces, jnp.broadcast_to(faces[:1], (pad, 3))]) if pad else faces
    valid_face = jnp.arange(nf + pad) < nf
    xs, ys = pixel_ndc(height, width, cl.dtype)
    # pixel coordinates, in pixels
    px = (xs + 1.0) * (0.5 * width) - 0.5
    py = (ys + 1.0) * (0.5 * height) - 0.5
    P = jnp.stack(jnp.broadcast_arrays(px[None, :], py[:, None]), -1).reshape(-1, 2)  # [HW, 2]

    def one_view(c):
        w = c[:, 3]
        ws = jnp.where(w > 0, w, 1.0)
        sx = (c[:, 0] / ws + 1.0) * (0.5 * width) - 0.5
        sy = (c[:, 1] / ws + 1.0) * (0.5 * height) - 0.5
        s2 = jnp.stack([sx, sy], -1)

        @jax.checkpoint
        def body(acc, idx):
            tri = fpad[idx]  # [K, 3]
            ok = valid_face[idx] & jnp.all(w[tri] > 0, -1)
            v = s2[tri]  # [K, 3, 2]
            a, b = v, jnp.roll(v, -1, axis=1)
            e = b - a  # [K, 3, 2]
            ap = P[:, None, None, :] - a[None]  # [HW, K, 3, 2]
            ee = jnp.sum(e * e, -1)
            tt = jnp.clip(jnp.sum(ap * e[None], -1) / jnp.where(ee > 0, ee, 1.0)[None], 0.0, 1.0)
            d2 = jnp.min(jnp.sum((ap - tt[..., None] * e[None]) ** 2, -1), -1)  # [HW, K]
            cr = e[None, ..., 0] * ap[..., 1] - e[None, ..., 1] * ap[..., 0]  # [HW, K, 3]
            inside = jnp.all(cr >= 0, -1) | jnp.all(cr <= 0, -1)
            prob = jax.nn.sigmoid(jnp.where(inside, d2, -d2) / sigma)
            log1m = jnp.log1p(-jnp.clip(prob, 0.0, 1.0 - 1e-6))
            return acc + jnp.sum(jnp.where(ok[None], log1m, 0.0), -1), None

        idxs = jnp.arange(nf + pad).reshape(-1, chunk)
        acc, _ = jax.lax.scan(body, jnp.zeros(P.shape[0], c.dtype), idxs)
        return (1.0 - jnp.exp(acc)).reshape(height, width)

    return jax.vmap(one_view)(cl).reshape(batch + (height, width))

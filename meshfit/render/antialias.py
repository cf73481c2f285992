"""Analytic antialiasing of visibility edges (nvdiffrast's method), and SoftRas soft silhouettes.

``antialias`` turns the discrete visibility decision into gradients for the vertices on
silhouettes and occlusion boundaries: for each horizontally or vertically adjacent pixel pair
seeing different surfaces, it finds where the front triangle's edge crosses the segment between
the two pixel centres (an analytic function of the vertex positions) and blends the two colours
by the area of the pixel box on the wrong side of that crossing (1-D box filter along the pair,
as in Laine et al. 2020, "Modular Primitives for High-Performance Differentiable Rendering").
The edge must be a visibility edge: a boundary edge, or one whose neighbouring face turns away
from the camera. Where the segment leaves the front face through an edge the surface continues
across (near a silhouette the faces seen at grazing angles are slivers narrower than a pixel),
the crossing is followed into the neighbouring faces, up to ``WALK`` of them, to the silhouette
edge itself; blending at the first edge instead would leave every silhouette short by a
fraction of a pixel, and silhouette fits would swell to make up for it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.render import _native
from meshfit.render._backend import use_native
from meshfit.render._checks import check_faces
from meshfit.render._pixels import pixel_ndc
from meshfit.render.rasterize import Fragments

__all__ = ["antialias", "face_neighbours", "soft_silhouette"]

# Faces crossed beyond the front one in search of the visibility edge (native kernel: the same).
WALK = 16


def face_neighbours(faces) -> jax.Array:
    """[F, 3] int faces -> [F, 3] int32: the face across the edge opposite each corner (the edge
    joining corners k+1 and k+2), -1 on a boundary. A non-manifold edge pairs the faces that use
    it two by two in sorted order. Concrete faces are done in NumPy (inside a jit they would be
    constant-folded by XLA, slowly); traced ones in jnp."""
    xp = jnp if isinstance(faces, jax.core.Tracer) else np
    faces = xp.asarray(faces).astype(xp.int32)
    nf = faces.shape[0]
    a = xp.roll(faces, -1, axis=1).reshape(-1)  # corner k+1
    b = xp.roll(faces, -2, axis=1).reshape(-1)  # corner k+2
    lo, hi = xp.minimum(a, b), xp.maximum(a, b)
    order = xp.lexsort((hi, lo)).astype(xp.int32)
    slo, shi = lo[order], hi[order]
    same = (slo[1:] == slo[:-1]) & (shi[1:] == shi[:-1])  # sorted half-edge i matches i+1
    # Pair each run's members two by two: a half-edge pairs with its successor when its rank in
    # the run is even, with its predecessor when odd.
    idx = xp.arange(order.shape[0], dtype=xp.int32)
    first = xp.concatenate([xp.ones((1,), bool), ~same])
    run_start = (jax.lax.cummax if xp is jnp else np.maximum.accumulate)(xp.where(first, idx, 0))
    even = (idx - run_start) % 2 == 0
    nxt = xp.concatenate([same, xp.zeros((1,), bool)])
    prv = xp.concatenate([xp.zeros((1,), bool), same])
    partner = xp.where(even & nxt, xp.roll(order, -1), xp.where(~even & prv, xp.roll(order, 1), -1))
    face_of = xp.where(partner >= 0, partner // 3, -1).astype(xp.int32)
    if xp is np:
        out = np.full(3 * nf, -1, np.int32)
        out[order] = face_of
        return jnp.asarray(out.reshape(nf, 3))
    return jnp.full((3 * nf,), -1, jnp.int32).at[order].set(face_of).reshape(nf, 3)


def _edge_values(corners: jax.Array, px: jax.Array, py: jax.Array) -> jax.Array:
    """Unnormalised homogeneous barycentrics u [..., 3] of NDC points for clip corners [..., 3, 4]."""
    a = corners[..., 0] - px[..., None] * corners[..., 3]
    b = corners[..., 1] - py[..., None] * corners[..., 3]
    return jnp.cross(a, b)


def _orientation(clip: jax.Array, faces: jax.Array) -> jax.Array:
    """[B, F] sign of each face's projected winding: det of its corners' (x, y, w) rows."""
    c = clip[:, faces][..., jnp.array([0, 1, 3])]  # [B, F, 3, 3]
    return jnp.sign(jnp.sum(c[..., 0, :] * jnp.cross(c[..., 1, :], c[..., 2, :]), -1))


def _gather_corners(clip, tri):
    return jax.vmap(lambda c, t: c[t])(clip, tri)  # [B, N, 3, 4]


def _pair_deltas(
    color_p, color_q, fid_p, fid_q, depth_p, depth_q, clip, faces, nbr, orient, p_xy, q_xy, horizontal, size
):
    """Colour changes of the two pixels of each pair [..., N] (see the module docstring)."""
    cov_p, cov_q = fid_p >= 0, fid_q >= 0
    differ = fid_p != fid_q
    front_p = cov_p & (~cov_q | (depth_p <= depth_q))
    front = jnp.maximum(jnp.where(front_p, fid_p, fid_q), 0)
    other = jnp.where(front_p, fid_q, fid_p)
    fx, fy = jnp.where(front_p, p_xy[0], q_xy[0]), jnp.where(front_p, p_xy[1], q_xy[1])
    ox, oy = jnp.where(front_p, q_xy[0], p_xy[0]), jnp.where(front_p, q_xy[1], p_xy[1])
    cs = jax.lax.stop_gradient(clip)
    otri = faces[jnp.maximum(other, 0)]

    def crossings(face, first):
        """Where the segment from the front pixel's centre (t = 0) to the other's (t = 1)
        leaves ``face``: (edge index k, t); t = 2 if it does not."""
        corners = _gather_corners(cs, faces[face])
        u_f, u_o = _edge_values(corners, fx, fy), _edge_values(corners, ox, oy)
        if first:  # the front face holds the front pixel's centre: all u_f share its sign
            sign = jnp.sign(jnp.sum(u_f, -1, keepdims=True))
        else:
            sign = jnp.take_along_axis(orient, face, -1)[..., None]
        u_f, u_o = u_f * sign, u_o * sign
        # An edge exactly through the other pixel's centre counts (t = 1): the fill rule gave
        # that pixel away, yet half of its box is covered.
        leaves = (u_f - u_o > 0) & ((u_o <= 0) & (u_f >= 0) if first else True)
        t = jnp.where(leaves, u_f / jnp.where(leaves, u_f - u_o, 1.0), 2.0)
        k = jnp.argmin(t, -1)
        return k, jnp.take_along_axis(t, k[..., None], -1)[..., 0]

    # Follow the segment across edges the surface continues over, to the visibility edge (after
    # WALK faces, the edge reached: the closest to it known).
    def body(state):
        step, face, k, t_ng, o_face, searching, found = state
        tri = faces[face]
        ea = jnp.take_along_axis(tri, ((k + 1) % 3)[..., None], -1)[..., 0]
        eb = jnp.take_along_axis(tri, ((k + 2) % 3)[..., None], -1)[..., 0]
        # Shared with the face the other pixel sees: the surface continues there, no edge.
        shared = (other >= 0) & jnp.any(otri == ea[..., None], -1) & jnp.any(otri == eb[..., None], -1)
        searching = searching & ~shared
        nb = jnp.take_along_axis(nbr[face], k[..., None], -1)[..., 0]
        o_nb = jnp.take_along_axis(orient, jnp.maximum(nb, 0), -1)
        visible_edge = (nb < 0) | (o_nb != o_face) | (o_nb == 0) | (step == WALK)
        found = found | (searching & visible_edge)
        searching = searching & ~visible_edge
        k_nb, t_nb = crossings(jnp.maximum(nb, 0), False)
        t_nb = jnp.maximum(t_nb, t_ng)
        face = jnp.where(searching, nb, face)
        k = jnp.where(searching, k_nb, k)
        t_ng = jnp.where(searching, t_nb, t_ng)
        o_face = jnp.where(searching, o_nb, o_face)
        return step + 1, face, k, t_ng, o_face, searching & (t_nb <= 1.0), found

    k, t_ng = crossings(front, True)
    searching = differ & (cov_p | cov_q) & (t_ng <= 1.0)
    state = (0, front, k, t_ng, jnp.take_along_axis(orient, front, -1), searching, jnp.zeros_like(searching))
    _, face, k, t_ng, _, _, found = jax.lax.while_loop(lambda s: jnp.any(s[5]), body, state)
    # The crossing with the edge's corners differentiable: t = f / (f - o) for its edge values.
    corners = _gather_corners(clip, faces[face])
    u_f = jnp.take_along_axis(_edge_values(corners, fx, fy), k[..., None], -1)[..., 0]
    u_o = jnp.take_along_axis(_edge_values(corners, ox, oy), k[..., None], -1)[..., 0]
    t_edge = jnp.where(found, u_f / jnp.where(found & (u_f != u_o), u_f - u_o, 1.0), 2.0)
    # Each edge is handled by the pairs across it that it cuts most squarely (horizontal pairs
    # for steep edges, vertical pairs for flat ones), so no edge is blended twice and the
    # coverage gradient integrates to the true area change.
    cc = jax.lax.stop_gradient(corners)
    cj = jnp.take_along_axis(cc, ((k + 1) % 3)[..., None, None], -2)[..., 0, :]
    ck = jnp.take_along_axis(cc, ((k + 2) % 3)[..., None, None], -2)[..., 0, :]
    nx = jnp.abs(ck[..., 3] * cj[..., 1] - cj[..., 3] * ck[..., 1]) / size[1]  # |A| / W (pixel units)
    ny = jnp.abs(cj[..., 3] * ck[..., 0] - ck[..., 3] * cj[..., 0]) / size[0]  # |B| / H
    steep = nx >= ny
    active = found & (steep if horizontal else ~steep)  # found: the walk kept t <= 1
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
        out = _native.antialias(col, fid, dep, cl, faces.astype(jnp.int32), face_neighbours(faces))
        return out.reshape(color.shape)
    nb = col.shape[0]
    nbr = face_neighbours(faces)
    orient = jax.lax.stop_gradient(_orientation(cl, faces))
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
            flat(dep, sl_p), flat(dep, sl_q), cl, faces, nbr, orient, p_xy, q_xy, horizontal, (H, W),
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

"""Random, degenerate and hostile inputs to the native kernels: nothing crashes, nothing is read or
written out of bounds (kernels/sanitize.sh runs this file under AddressSanitizer and UBSan), bad
inputs raise, and the native and JAX paths still agree.

Inputs: NaN / inf clip coordinates, zero-area and edge-on triangles, triangles crossing w = 0,
huge coordinates; boxes for another image size and negative boxes passed straight to the
visibility FFI call; face ids out of range; buffers of the wrong size. MESHFIT_HOSTILE_EXAMPLES
sets the examples per property (default 20, kept small for CI's two cores).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfit.render import _native, antialias, interpolate, rasterize
from meshfit.render._visibility import visibility_jax
from tests.helpers import require_native

V, F = 9, 6  # fixed counts (and a few image sizes) so the examples share compiled programs
SIZES = [(1, 1), (7, 5), (33, 40)]
EXAMPLES = int(os.environ.get("MESHFIT_HOSTILE_EXAMPLES", "20"))
PROPERTY = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

coordinate = st.one_of(
    st.floats(-3, 3, width=32),
    st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 3.4e38, np.inf, -np.inf, np.nan]),
)


@st.composite
def scenes(draw):
    """clip [1, V, 4] float32 (often degenerate or hostile), faces [F, 3], image size."""
    clip = np.array(draw(st.lists(coordinate, min_size=4 * V, max_size=4 * V)), np.float32).reshape(1, V, 4)
    if draw(st.booleans()):  # mostly sane depth: w around the camera plane, z inside it
        clip[0, :, 3] = np.array(draw(st.lists(st.floats(-1, 3, width=32), min_size=V, max_size=V)))
        clip[0, :, 2] = np.clip(clip[0, :, 2], -abs(clip[0, :, 3]), abs(clip[0, :, 3]))
    faces = np.array(draw(st.lists(st.integers(0, V - 1), min_size=3 * F, max_size=3 * F)), np.int32)
    faces = faces.reshape(F, 3)
    if draw(st.booleans()):  # repeated corners: zero-area triangles
        faces[0, 1] = faces[0, 0]
    if draw(st.booleans()):  # an edge-on triangle: three collinear corners
        clip[0, 6:9] = clip[0, 6] + np.outer([0.0, 1.0, 2.0], [0.1, 0.2, 0.0, 0.0])
    height, width = draw(st.sampled_from(SIZES))
    return clip, faces, height, width


@PROPERTY
@given(scenes())
def test_hostile_scenes_render_and_differentiate(scene):
    require_native()
    clip, faces, height, width = scene
    native = rasterize(clip, faces, height=height, width=width, backend="native")
    ids = np.asarray(native.face_id)
    assert ((ids >= -1) & (ids < F)).all()
    jax_path = rasterize(clip, faces, height=height, width=width, backend="jax")
    np.testing.assert_array_equal(ids, jax_path.face_id)  # same setup arithmetic, bit for bit

    def loss(c):
        frags = rasterize(c, faces, height=height, width=width, backend="native")
        color = interpolate(c[0, :, :3], frags, faces, backend="native")
        return jnp.sum(antialias(color, frags, c, faces, backend="native")) + jnp.sum(frags.depth)

    jax.block_until_ready(jax.grad(loss)(jnp.asarray(clip)))


@PROPERTY
@given(
    boxes=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=4 * F, max_size=4 * F),
    other_size=st.sampled_from([(4096, 4096), (2, 2), (-5, -5)]),
    size=st.sampled_from(SIZES),
    mix=st.booleans(),
)
def test_visibility_clamps_any_box(boxes, other_size, size, mix):
    """Boxes straight into the visibility FFI call: arbitrary int32 values, or boxes for another
    image size (or negative): ids stay in range and equal the JAX path's (both clamp)."""
    require_native()
    height, width = size
    rng = np.random.default_rng(abs(sum(boxes)) % 2**32)
    coeffs = rng.normal(size=(1, F, 15)).astype(np.float32)
    coeffs[..., 9:12] = np.abs(coeffs[..., 9:12])  # 1/w > 0 somewhere, so faces can win
    coeffs[..., 12:] *= 0.1
    if mix:
        oh, ow = other_size
        bbox = np.array([[0, 0, ow - 1, oh - 1]] * F, np.int32)[None]
    else:
        bbox = np.array(boxes, np.int64).astype(np.int32).reshape(1, F, 4)
    ids = np.asarray(_native.visibility(jnp.asarray(coeffs), jnp.asarray(bbox), height=height, width=width))
    assert ((ids >= -1) & (ids < F)).all()
    np.testing.assert_array_equal(ids, visibility_jax(coeffs, bbox, height=height, width=width))


def _ffi(target, outs, *args):
    require_native()
    return jax.block_until_ready(_native._call(target, outs, *args))


def _sds(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def test_kernels_reject_face_ids_out_of_range():
    clip = jnp.ones((1, V, 4), jnp.float32)
    faces = jnp.zeros((F, 3), jnp.int32)
    for bad in (F, -2, 2**31 - 1):
        fid = jnp.full((1, 4, 5), bad, jnp.int32)
        with pytest.raises(Exception, match="outside -1"):
            _ffi("meshfit_bary_fwd", (_sds((1, 4, 5, 3)), _sds((1, 4, 5))), clip, faces, fid)
        with pytest.raises(Exception, match="outside -1"):
            _ffi(
                "meshfit_interp_fwd", _sds((1, 4, 5, 2)), jnp.ones((V, 2)), faces, fid, jnp.ones((1, 4, 5, 3))
            )
        color = jnp.ones((1, 4, 5, 3))
        with pytest.raises(Exception, match="outside -1"):
            _ffi("meshfit_antialias_fwd", _sds((1, 4, 5, 3)), color, fid, jnp.ones((1, 4, 5)), clip, faces,
                 jnp.full((F, 3), -1, jnp.int32))  # fmt: skip
    # a face's neighbour (antialias.face_neighbours) outside the faces
    for bad in (F, -2):
        nbr = jnp.full((F, 3), bad, jnp.int32)
        with pytest.raises(Exception, match="outside -1"):
            _ffi("meshfit_antialias_fwd", _sds((1, 4, 5, 3)), jnp.ones((1, 4, 5, 3)), _fid,
                 jnp.ones((1, 4, 5)), clip, faces, nbr)  # fmt: skip


# (target, outputs, inputs) with exactly one buffer of the wrong size, and what the error names
_fid = jnp.zeros((1, 4, 5), jnp.int32)
_clip = jnp.ones((1, V, 4))
_faces = jnp.zeros((F, 3), jnp.int32)
_nbr = jnp.full((F, 3), -1, jnp.int32)
WRONG_SIZES = {
    "bary_fwd bary": ("meshfit_bary_fwd", (_sds((1, 4, 5, 2)), _sds((1, 4, 5))),
                      (_clip, _faces, _fid), "bary"),
    "bary_fwd depth": ("meshfit_bary_fwd", (_sds((1, 4, 5, 3)), _sds((1, 5, 4))),
                       (_clip, _faces, _fid), "depth"),
    "bary_bwd g_bary": ("meshfit_bary_bwd", _sds((1, V, 4)),
                        (_clip, _faces, _fid, jnp.ones((1, 4, 5, 2)), jnp.ones((1, 4, 5))), "g_bary"),
    "bary_bwd g_depth": ("meshfit_bary_bwd", _sds((1, V, 4)),
                         (_clip, _faces, _fid, jnp.ones((1, 4, 5, 3)), jnp.ones((1, 4, 4))), "g_depth"),
    "bary_bwd g_clip": ("meshfit_bary_bwd", _sds((1, V - 1, 4)),
                        (_clip, _faces, _fid, jnp.ones((1, 4, 5, 3)), jnp.ones((1, 4, 5))), "g_clip"),
    "interp_fwd out": ("meshfit_interp_fwd", _sds((1, 4, 5, 3)),
                       (jnp.ones((V, 2)), _faces, _fid, jnp.ones((1, 4, 5, 3))), "out"),
    "interp_fwd bary": ("meshfit_interp_fwd", _sds((1, 4, 5, 2)),
                        (jnp.ones((V, 2)), _faces, _fid, jnp.ones((1, 4, 4, 3))), "bary"),
    "interp_bwd g_out": ("meshfit_interp_bwd", (_sds((V, 2)), _sds((1, 4, 5, 3))),
                         (jnp.ones((V, 2)), _faces, _fid, jnp.ones((1, 4, 5, 3)), jnp.ones((1, 4, 5, 1))),
                         "g_out"),
    "interp_bwd g_attr": ("meshfit_interp_bwd", (_sds((V, 3)), _sds((1, 4, 5, 3))),
                          (jnp.ones((V, 2)), _faces, _fid, jnp.ones((1, 4, 5, 3)), jnp.ones((1, 4, 5, 2))),
                          "g_attr"),
    "antialias_fwd out": ("meshfit_antialias_fwd", _sds((1, 4, 5, 2)),
                          (jnp.ones((1, 4, 5, 3)), _fid, jnp.ones((1, 4, 5)), _clip, _faces, _nbr), "out"),
    "antialias_fwd depth": ("meshfit_antialias_fwd", _sds((1, 4, 5, 3)),
                            (jnp.ones((1, 4, 5, 3)), _fid, jnp.ones((1, 5, 4)), _clip, _faces, _nbr),
                            "depth"),
    "antialias_fwd neighbours": ("meshfit_antialias_fwd", _sds((1, 4, 5, 3)),
                                 (jnp.ones((1, 4, 5, 3)), _fid, jnp.ones((1, 4, 5)), _clip, _faces,
                                  jnp.full((F, 2), -1, jnp.int32)), "neighbours"),
    "antialias_bwd g_out": ("meshfit_antialias_bwd", (_sds((1, 4, 5, 3)), _sds((1, V, 4))),
                            (jnp.ones((1, 4, 5, 3)), _fid, jnp.ones((1, 4, 5)), _clip, _faces,
                             _nbr, jnp.ones((1, 4, 5, 1))), "g_out"),
    "antialias_bwd g_clip": ("meshfit_antialias_bwd", (_sds((1, 4, 5, 3)), _sds((1, V, 3))),
                             (jnp.ones((1, 4, 5, 3)), _fid, jnp.ones((1, 4, 5)), _clip, _faces,
                              _nbr, jnp.ones((1, 4, 5, 3))), "g_clip"),
    "visibility face_id": ("meshfit_rasterize_visibility", _sds((1, 4, 5), jnp.int32),
                           (jnp.ones((2, F, 15)), jnp.zeros((2, F, 4), jnp.int32)), "face_id"),
    "setup coeffs": ("meshfit_triangle_setup", (_sds((1, F, 14)), _sds((1, F, 4), jnp.int32)),
                     (_clip, _faces), "coeffs"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(WRONG_SIZES))
def test_kernels_reject_wrong_sized_buffers(case):
    target, outs, args, name = WRONG_SIZES[case]
    attrs = (
        {"height": np.int32(4), "width": np.int32(5)} if "visibility" in target or "setup" in target else {}
    )
    require_native()
    with pytest.raises(Exception, match=name):
        jax.block_until_ready(jax.ffi.ffi_call(target, outs)(*args, **attrs))

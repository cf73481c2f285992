"""Models: rotations (NaN-safe exp/log), the rigid pose model, blendshape models and their files."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import meshfit
from meshfit.models import BlendshapeModel, RigidModel, so3_exp, so3_log
from tests.helpers import shared

ICT = ["neutral.obj", "identity000.obj", "identity001.obj", "jawOpen.obj", "eyeBlink_L.obj"]


def test_so3_exp_log_round_trip_and_proper_rotations(x64):
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(50, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi - 1e-2, 46), [0.0, 1e-9, 1e-5, np.pi - 1e-4]])
    w = jnp.asarray(axes * angles[:, None])
    R = so3_exp(w)
    np.testing.assert_allclose(jnp.swapaxes(R, -1, -2) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(np.asarray(R)), 1.0, atol=1e-12)
    np.testing.assert_allclose(so3_log(R), w, atol=1e-6)
    from scipy.spatial.transform import Rotation

    np.testing.assert_allclose(R, Rotation.from_rotvec(np.array(w)).as_matrix(), atol=1e-12)


def test_so3_exp_gradients_finite_at_zero(x64):
    check_grads(lambda w: jnp.sum(so3_exp(w) * jnp.arange(9.0).reshape(3, 3)), (jnp.zeros(3),), order=2)
    check_grads(lambda w: jnp.sum(so3_exp(w) ** 3), (jnp.array([0.3, -0.2, 0.9]),), order=1)


def test_rigid_model_pose_and_rebase(x64):
    m = meshfit.Mesh(
        np.random.default_rng(1).normal(size=(12, 3)), np.array([[0, 1, 2], [3, 4, 5]], np.int32)
    )
    model = RigidModel.from_mesh(m)
    p = model.init_params()
    np.testing.assert_allclose(model.vertices(p), m.vertices)
    p = {**p, "rotation": jnp.array([0.0, np.pi / 2, 0.0]), "translation": jnp.array([1.0, 2.0, 3.0]),
         "log_scale": jnp.log(2.0)}  # fmt: skip
    v = np.asarray(model.vertices(p))
    Ry = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float)
    np.testing.assert_allclose(v, 2 * np.asarray(m.vertices) @ Ry.T + [1, 2, 3], atol=1e-12)
    T = np.asarray(model.object_to_world(p))
    homog = np.concatenate([np.asarray(m.vertices), np.ones((12, 1))], 1) @ T.T
    np.testing.assert_allclose(homog[:, :3], v, atol=1e-12)
    model2, p2 = model.rebased(p)
    np.testing.assert_allclose(model2.vertices(p2), v, atol=1e-12)
    assert float(jnp.abs(p2["rotation"]).max()) == 0.0
    check_grads(lambda q: jnp.sum(model.vertices(q) ** 2), (model.init_params(),), order=1, modes=["rev"])


@pytest.fixture(scope="module")
def ict_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ict")
    src = shared("ict_face/face_region/neutral.obj").parent
    spec = {"neutral": str(src / ICT[0]), "identity": [str(src / n) for n in ICT[1:3]],
            "expression": [str(src / n) for n in ICT[3:]]}  # fmt: skip
    (folder / "blendshapes.json").write_text(json.dumps(spec))
    return folder


def test_blendshape_model_from_ict_files(ict_folder, tmp_path):
    model = BlendshapeModel.load(ict_folder)
    assert (model.num_identity, model.num_expression) == (2, 2)
    assert model.expression_names == ("jawOpen", "eyeBlink_L")
    src = shared("ict_face/face_region/neutral.obj").parent
    jaw = meshfit.load_mesh(src / "jawOpen.obj")
    p = model.init_params()
    np.testing.assert_allclose(model.vertices(p), model.neutral)
    p = {**p, "expression": jnp.array([1.0, 0.0])}
    np.testing.assert_allclose(model.vertices(p), jaw.vertices, atol=1e-5)
    # npz round trip
    model.save(tmp_path / "ict.npz")
    back = BlendshapeModel.load(tmp_path / "ict.npz")
    np.testing.assert_array_equal(back.expression, model.expression)
    assert back.identity_names == model.identity_names
    np.testing.assert_allclose(back.vertices(p), model.vertices(p))
    # jit and grad over the coefficients
    g = jax.grad(lambda q: jnp.sum(model.vertices(q)[:, 1]))(p)
    assert float(jnp.abs(g["expression"][0])) > 0
    assert model.uvs is None and back.uvs is None  # neutral.obj has no texture coordinates


def test_blendshape_model_keeps_its_neutral_uvs(tmp_path):
    """A neutral with texture coordinates (ICT's own layout, seams and all) gives the model its
    UVs, for a fitted texture; the .npz keeps them, and refuses broken ones by name."""
    src = shared("ict_face/face_region/neutral.obj").parent
    spec = {"neutral": str(src / "neutral_uv.obj"), "expression": [str(src / "jawOpen.obj")]}
    (tmp_path / "blendshapes.json").write_text(json.dumps(spec))
    model = BlendshapeModel.load(tmp_path)
    uv_mesh = meshfit.load_mesh(src / "neutral_uv.obj")
    np.testing.assert_array_equal(model.uvs, uv_mesh.uvs)
    np.testing.assert_array_equal(model.uv_faces, uv_mesh.uv_faces)
    assert model.uvs.shape == (9547, 2) and model.uv_faces.shape == model.faces.shape
    model.save(tmp_path / "m.npz")
    back = BlendshapeModel.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.uvs, model.uvs)
    np.testing.assert_array_equal(back.uv_faces, model.uv_faces)
    with np.load(tmp_path / "m.npz") as z:
        data = dict(z)
    np.savez(tmp_path / "bad.npz", **{**data, "uv_faces": data["uv_faces"] + len(data["uvs"])})
    with pytest.raises(ValueError, match=r"bad.npz: uvs/uv_faces must be \[T, 2\] finite and \[18460, 3\]"):
        BlendshapeModel.load(tmp_path / "bad.npz")


def test_blendshape_model_errors(tmp_path):
    src = shared("ict_face/face_region/neutral.obj").parent
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "blendshapes.json").write_text(
        json.dumps({"neutral": str(src / "neutral.obj"), "expr": []})
    )
    with pytest.raises(ValueError, match=r"unknown \['expr'\]"):
        BlendshapeModel.load(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "small.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    spec = {"neutral": str(src / "neutral.obj"), "expression": ["small.obj"]}
    (tmp_path / "b" / "blendshapes.json").write_text(json.dumps(spec))
    with pytest.raises(meshfit.MeshError, match="small.obj has 3 vertices but the neutral has 9409"):
        BlendshapeModel.load(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="blendshapes.json"):
        BlendshapeModel.load(tmp_path / "nothing")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="cannot read blendshape model"):
        BlendshapeModel.load(tmp_path / "trunc.npz")


# ---- free mesh (large steps) ---------------------------------------------------------------------


def test_free_mesh_solve_and_implicit_gradient(x64, icosphere):
    import optax

    from meshfit.models import FreeMeshModel

    v, f = icosphere
    mesh = meshfit.Mesh(v.astype(np.float64), f)
    model = FreeMeshModel.from_mesh(mesh, lam=10.0, tol=1e-12)
    p = model.init_params(mesh.vertices)
    np.testing.assert_allclose(model.vertices(p), mesh.vertices, atol=1e-9)
    # dense reference: x = (I + lam L)^-1 u, and the gradient of a loss w.r.t. u
    M = np.eye(len(v)) + 10.0 * np.asarray(model.laplacian.to_dense())
    w = np.random.default_rng(0).normal(size=v.shape)
    loss = lambda q: jnp.sum(model.vertices(q) * w)  # noqa: E731
    g = jax.grad(loss)(p)["u"]
    np.testing.assert_allclose(g, np.linalg.solve(M.T, w), atol=1e-8)
    assert isinstance(optax.adam(1e-2).init(p), tuple)


def test_adam_uniform_steps_scale_the_whole_array_alike():
    from meshfit.optim import adam_uniform

    opt = adam_uniform(0.1)
    params = {"u": jnp.zeros((4, 3))}
    state = opt.init(params)
    g = {"u": jnp.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 0], [0, 0, -4.0]])}
    upd, state = opt.update(g, state)
    # first step: m_hat = g, v_hat = g^2, one scale for the whole array: lr * g / max|g|
    np.testing.assert_allclose(upd["u"], -0.1 * np.asarray(g["u"]) / 4.0, rtol=1e-4)
    upd2, _ = opt.update(g, state)
    np.testing.assert_allclose(upd2["u"], -0.1 * np.asarray(g["u"]) / 4.0, rtol=1e-4)


def test_large_steps_fit_moves_smoothly_to_a_target(icosphere):
    """Pull a sphere onto an ellipsoid through vertex targets: the large-steps parameterisation
    converges without tangling (no flipped faces on the way)."""
    import optax

    from meshfit.models import FreeMeshModel
    from meshfit.optim import adam_uniform

    v, f = icosphere
    mesh = meshfit.Mesh(v, f)
    target = jnp.asarray(v * np.array([[1.5, 0.8, 1.1]], np.float32))
    model = FreeMeshModel.from_mesh(mesh, lam=5.0)
    p = model.init_params(mesh.vertices)
    opt = adam_uniform(0.05)
    state = opt.init(p)

    @jax.jit
    def step(p, state):
        loss, g = jax.value_and_grad(lambda q: jnp.mean((model.vertices(q) - target) ** 2))(p)
        upd, state = opt.update(g, state)
        return optax.apply_updates(p, upd), state, loss

    n0 = np.asarray(meshfit.face_normals(mesh.vertices, mesh.faces))
    for i in range(150):
        p, state, loss = step(p, state)
        if i % 10 == 0:
            n = np.asarray(meshfit.face_normals(model.vertices(p), mesh.faces))
            assert (np.sum(n * n0, 1) > 0).all()  # no face flipped
    assert float(loss) < 1e-3


@pytest.mark.parametrize("empty", ["identity", "expression"])
def test_blendshape_rig_with_an_empty_shape_set_has_a_finite_objective(icosphere, empty):
    """An artist's rig may have no identity shapes (or no expressions): the objective, its prior
    included, and its gradient are finite at the initial parameters (the prior of an empty
    coefficient vector was a mean over nothing: NaN)."""
    from meshfit.objectives import LossWeights, Targets, image_objective

    v, f = icosphere
    deltas = {
        "identity": np.zeros((0, len(v), 3), np.float32),
        "expression": np.zeros((0, len(v), 3), np.float32),
    }
    deltas["expression" if empty == "identity" else "identity"] = 0.1 * np.ones((2, len(v), 3), np.float32)
    model = BlendshapeModel(jnp.asarray(v), jnp.asarray(f), jnp.asarray(deltas["identity"]),
                            jnp.asarray(deltas["expression"]))  # fmt: skip
    cams = meshfit.sphere_rig(2, radius=4.0, width=16, height=16, seed=0)
    loss = image_objective(model, cams, near=1.0, far=8.0,
                           weights=LossWeights(silhouette=1.0, prior=1.0, pose_prior=1.0))  # fmt: skip
    params = model.init_params()
    target = Targets(jnp.zeros((2, 16, 16)))
    (value, terms), grads = jax.value_and_grad(loss, has_aux=True)(params, target)
    assert np.isfinite(float(value)) and float(terms["prior"]) == 0.0
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))

"""The native runtime model file and the C runtime: C against JAX (fp32, and the int8/fp16
files against JAX running their dequantized weights), views left out, and hostile files (a
named error in Python, an error code in C, never a crash)."""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meshfit
from meshfit.amortize import Regressor, TrainConfig
from meshfit.amortize.inputs import image_inputs
from meshfit.amortize.run import _network_rig
from meshfit.amortize.task import Task
from meshfit.amortize.train import build_network
from meshfit.export import ModelFileError, Runtime, read_native, write_native
from meshfit.export.native import ENTRY_SIZE, HEADER_SIZE, encode, runtime_tensors
from meshfit.export.runtime import frame_images, runtime_library
from tests.helpers import missing
from tests.test_amortize import _blend_model, _blob


@pytest.fixture(scope="module", autouse=True)
def _library():
    try:
        runtime_library()
    except RuntimeError as e:
        missing(str(e))


def _regressor(kind: str, tmp_path, *, seed: int = 0) -> Regressor:
    """An untrained regressor with random weights of a useful size (no training: the runtime must
    compute what JAX computes, whatever the weights)."""
    model = _blend_model() if kind == "blendshapes" else _blob()
    cfg = TrainConfig.from_dict({
        "model": kind, "resolution": 16, "inputs": ["mask", "grey", "depth"],
        "network": {"width": 4, "stages": 2, "convs_per_stage": 2, "features": 16},
        **({"bounds": {"expression": [0, 1]}} if kind == "blendshapes" else {}),
    })  # fmt: skip
    rig = meshfit.sphere_rig(3, radius=4.0, width=32, height=32, fov=40, seed=2)
    task = Task.create(model, _network_rig(rig, cfg.resolution))
    net = build_network(cfg, task)
    keys = iter(jax.random.split(jax.random.key(seed), 64))
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(next(keys), a.shape) / np.sqrt(a.shape[0]),
                          net.init_params())  # fmt: skip
    return Regressor(tmp_path, cfg, model, rig, ["a", "b", "c"], net, params, 0, {})


def _views(reg: Regressor, tmp_path, seed: int = 1):
    canon = reg.task.sample(jax.random.key(seed), reg.config.sampling)
    mesh = meshfit.Mesh(np.asarray(reg.task.vertices(canon)), reg.task.faces)
    return meshfit.load_views(meshfit.synthesize(mesh, tmp_path / f"views{seed}", cameras=reg.rig))


def _images(reg: Regressor, views) -> np.ndarray:
    """[N, C, H, W] the runtime's input: the channels at the cameras' size."""
    return frame_images(views, reg.config.inputs)


def _jax(reg: Regressor, views, present=None, params=None):
    """(params [K + 13], vertices [V, 3]) from JAX, in the runtime's layout."""
    task = reg.task
    inputs, small = image_inputs(task, views.cameras, reg.config.inputs, mask=views.mask, rgb=views.rgb,
                                 depth=views.depth)  # fmt: skip
    n = len(views.names)
    present = jnp.ones((1, n)) if present is None else jnp.asarray(present, jnp.float32)[None]
    cams = jax.tree.map(lambda a: a[None], small)
    pred = reg.network.predict_jit(reg.params if params is None else params, inputs[None], cams, present)
    pred = jax.tree.map(lambda a: a[0], pred)
    flat = np.concatenate([pred["coeffs"], np.ravel(pred["R"]), task.object_centre(pred),
                           [np.exp(pred["log_scale"])]])  # fmt: skip
    return flat.astype(np.float32), np.asarray(task.vertices(pred))


@pytest.mark.parametrize("kind", ["blendshapes", "rigid"])
def test_c_runtime_matches_jax(kind, tmp_path):
    reg = _regressor(kind, tmp_path)
    views = _views(reg, tmp_path)
    write_native(reg, tmp_path / "m.mfr")
    rt = Runtime(tmp_path / "m.mfr")
    images = _images(reg, views)
    for present in (None, [1, 0, 1]):
        p_c, v_c = rt.run(images, present)
        p_j, v_j = _jax(reg, views, present)
        assert p_c.shape == (reg.task.num_coeffs + 13,)
        np.testing.assert_allclose(p_c, p_j, rtol=1e-4, atol=1e-4 * np.abs(p_j).max())
        np.testing.assert_allclose(v_c, v_j, atol=1e-4 * reg.task.diagonal)
    # A view left out is not read: garbage there changes nothing.
    images[1] = np.nan
    np.testing.assert_array_equal(rt.run(images, [1, 0, 1])[0], p_c)
    with pytest.raises(ValueError, match="no view is present"):
        rt.run(images, [0, 0, 0])
    with pytest.raises(ValueError, match=r"images must be \[N, C, H, W\] = \[3, 3, 32, 32\]"):
        rt.run(images[:, :2])


@pytest.mark.parametrize("quant", ["fp16", "int8"])
def test_quantized_files_run_their_dequantized_weights(quant, tmp_path):
    """C on an fp16/int8 file = JAX on the weights that file holds; those are within half a
    quantization step of the trained ones."""
    reg = _regressor("blendshapes", tmp_path, seed=3)
    views = _views(reg, tmp_path)
    summary = write_native(reg, tmp_path / "q.mfr", quant=quant)
    fp32 = write_native(reg, tmp_path / "f.mfr")
    assert summary["network_bytes"] < (0.3 if quant == "int8" else 0.55) * fp32["network_bytes"]
    stored = read_native(tmp_path / "q.mfr")
    params = jax.tree.map(np.array, reg.params)
    names = {f"conv{i}": params["convs"][i] for i in sorted(params["convs"])}
    names |= {k: params[k] for k in ("embed", "view_head", "confidence", "pool_hidden", "pool_head")}
    for name, layer in names.items():
        back = stored.dequantized(f"{name}.weight")
        # int8: half a step of the output channel's scale (the kernel's last axis); fp16: rounding.
        if quant == "int8":
            bound = 0.5 * stored.tensors[f"{name}.scale"] * (1 + 1e-6)
        else:
            bound = np.abs(layer["kernel"]) * 2**-11 + 2**-24
        assert np.all(np.abs(back - layer["kernel"]) <= bound), name
        layer["kernel"] = back
    basis = stored.dequantized("model.basis")
    assert np.abs(basis - np.asarray(reg.task.basis)).max() <= 1e-3 * np.abs(reg.task.basis).max()
    rt = Runtime(tmp_path / "q.mfr")
    p_c, v_c = rt.run(_images(reg, views))
    p_j, _ = _jax(reg, views, params=params)
    np.testing.assert_allclose(p_c, p_j, rtol=1e-4, atol=1e-4 * np.abs(p_j).max())


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    tmp = tmp_path_factory.mktemp("export")
    reg = _regressor("blendshapes", tmp)
    return encode(*runtime_tensors(reg, "int8"))


def _resealed(data: bytes) -> bytes:
    """The bytes with a recomputed CRC: what a hostile (not a damaged) file looks like."""
    size = struct.unpack_from("<Q", data, 32)[0]
    return data[:28] + struct.pack("<I", zlib.crc32(data[HEADER_SIZE:size])) + data[32:]


def _patched(data: bytes, at: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return _resealed(bytes(out)) if at >= HEADER_SIZE else bytes(out)


def _entry(data: bytes, name: str) -> int:
    count = struct.unpack_from("<I", data, 24)[0]
    for i in range(count):
        at = HEADER_SIZE + i * ENTRY_SIZE
        if data[at : at + 56].split(b"\0")[0].decode() == name:
            return at
    raise KeyError(name)


def _hostile(data: bytes) -> list[tuple[str, bytes, str, str]]:
    """(label, bytes, Python's message, C's message) for each kind of bad file."""
    embed = _entry(data, "embed.weight")
    size = len(data)
    return [
        ("empty", b"", "truncated", "truncated"),
        ("header only", data[:40], "truncated", "truncated"),
        ("cut short", data[: size // 2], "truncated", "truncated"),
        ("not a model", b"PK\x03\x04" + data[4:], "not a meshfit runtime model", "bad magic"),
        ("version 2", _patched(data, 8, "<I", 2), "version 2; this meshfit reads version 1", "version"),
        ("big-endian", _patched(data, 12, "<I", 0x04030201), "another byte order", "byte order"),
        ("one byte flipped", data[:size - 100] + bytes([data[size - 100] ^ 1]) + data[size - 99:],
         "checksum does not match", "checksum"),
        ("offset past the end", _patched(data, embed + 80, "<Q", size), "do not fit", "table entry"),
        ("size past the end", _patched(data, embed + 88, "<Q", 1 << 40), "do not fit", "table entry"),
        ("bad dtype", _patched(data, embed + 56, "<I", 9), "bad dtype code 9", "table entry"),
        ("unterminated name", _patched(data, embed, "<56s", b"x" * 56), "no terminating NUL", "table entry"),
        ("missing tensor", _patched(data, embed, "<56s", b"embed.weights"), None, "missing"),
    ]  # fmt: skip


def test_hostile_files_are_named_errors(model_bytes, tmp_path):
    assert read_native(model_bytes).info["quant"] == "int8"
    Runtime(model_bytes)
    for _label, bad, py, c in _hostile(model_bytes):
        if py is not None:
            with pytest.raises(ModelFileError, match=py):
                read_native(bad)
        with pytest.raises(ModelFileError, match=c):
            Runtime(bad)
    path = tmp_path / "cut.mfr"
    path.write_bytes(model_bytes[:1000])
    with pytest.raises(ModelFileError, match=rf"{path}: truncated: 1000 bytes of the {len(model_bytes)}"):
        read_native(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_files_never_crash_the_runtime(model_bytes, data):
    """Random bytes written anywhere in the table or the meta tensors, the CRC recomputed: the
    loader returns an error code or a model that runs; never a crash."""
    buf = bytearray(model_bytes)
    count = struct.unpack_from("<I", buf, 24)[0]
    meta_at = struct.unpack_from("<Q", buf, _entry(model_bytes, "meta") + 80)[0]
    regions = [(HEADER_SIZE, HEADER_SIZE + count * ENTRY_SIZE), (meta_at, meta_at + 64)]
    for _ in range(data.draw(st.integers(1, 6))):
        lo, hi = data.draw(st.sampled_from(regions))
        at = data.draw(st.integers(lo, hi - 4))
        struct.pack_into(
            "<I", buf, at, data.draw(st.sampled_from([0, 1, 2, 3, 0xFFFFFFFF, 1 << 31, 64, 4096]))
        )
    try:
        rt = Runtime(_resealed(bytes(buf)))
    except ModelFileError:
        return
    images = np.random.default_rng(0).uniform(0, 1, (rt.views, rt.channels, rt.height, rt.width))
    rt.run(images.astype(np.float32))


def test_write_native_refuses_to_replace_what_meshfit_did_not_write(tmp_path):
    reg = _regressor("rigid", tmp_path)
    user = tmp_path / "notes.txt"
    user.write_text("mine")
    with pytest.raises(FileExistsError, match="exists"):
        write_native(reg, user)
    with pytest.raises(FileExistsError, match="not a meshfit runtime model"):
        write_native(reg, user, overwrite=True)
    assert user.read_text() == "mine"
    write_native(reg, tmp_path / "m.mfr")
    write_native(reg, tmp_path / "m.mfr", overwrite=True, quant="fp16")
    assert read_native(tmp_path / "m.mfr").info["quant"] == "fp16"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ValueError, match="quant must be one of"):
        write_native(reg, tmp_path / "x.mfr", quant="int4")


def test_model_file_records_what_it_holds(tmp_path):
    reg = _regressor("blendshapes", tmp_path)
    write_native(reg, tmp_path / "m.mfr", quant="int8")
    m = read_native(tmp_path / "m.mfr")
    assert m.info["coefficients"] == ["wide", "tall", "lift"] and m.info["inputs"] == [
        "mask",
        "grey",
        "depth",
    ]
    assert m.tensors["model.basis"].dtype == np.int16 and m.tensors["conv0.weight"].dtype == np.int8
    assert m.tensors["conv0.weight"].shape == (3, 3, 5, 4) and m.tensors["conv0.scale"].shape == (4,)
    np.testing.assert_array_equal(m.tensors["model.faces"], reg.task.faces)
    assert dataclasses.is_dataclass(m)


@pytest.mark.parametrize("kind", ["blendshapes", "rigid"])
def test_onnx_matches_jax(kind, tmp_path):
    """The ONNX graph (opset 13, checked) on onnxruntime gives the network's raw outputs."""
    import onnx
    import onnxruntime as ort

    from meshfit.export import write_onnx

    reg = _regressor(kind, tmp_path, seed=5)
    views = _views(reg, tmp_path)
    out = write_onnx(reg, tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert out["opset"] == model.opset_import[0].version == 13
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    inputs, small = image_inputs(reg.task, views.cameras, reg.config.inputs, mask=views.mask, rgb=views.rgb,
                                 depth=views.depth)  # fmt: skip
    for present in ([1, 1, 1], [0, 1, 1]):
        per_view, pooled = session.run(
            None, {"images": _images(reg, views), "present": np.asarray(present, np.float32)}
        )
        ref_view, ref_pooled = reg.network.apply(
            reg.params, inputs[None], jnp.asarray([present], jnp.float32)
        )
        np.testing.assert_allclose(per_view, ref_view[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(pooled, ref_pooled, rtol=1e-4, atol=1e-5)
    (tmp_path / "mine.onnx").write_bytes(b"not onnx")
    with pytest.raises(FileExistsError, match="not an ONNX model meshfit wrote"):
        write_onnx(reg, tmp_path / "mine.onnx", overwrite=True)


def _parse_params(stdout: str) -> np.ndarray:
    """The numbers run_model prints: coefficients, rotation, position, scale."""
    lines = {ln.split(":")[0]: ln.split(":", 1)[1] for ln in stdout.splitlines() if ":" in ln}
    words = " ".join(lines[k] for k in ("coefficients", "rotation", "position", "scale")).replace("/", " ")
    return np.asarray([float(x) for x in words.split()], np.float32)


def test_example_program_builds_and_reproduces_python(tmp_path):
    """examples/runtime/run_model.c, built with one plain cc line and with CMake, prints the
    parameters the runtime gives Python and writes the decoded mesh."""
    import shutil
    import subprocess

    from tests.helpers import REPO

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        missing("no C compiler (cc)")
    reg = _regressor("blendshapes", tmp_path)
    views = _views(reg, tmp_path)
    write_native(reg, tmp_path / "m.mfr", quant="int8")
    images = _images(reg, views)
    images.astype("<f4").tofile(tmp_path / "frame.f32")
    expected, verts = Runtime(tmp_path / "m.mfr").run(images)
    exe = tmp_path / "run_model"
    sources = [f"{REPO}/examples/runtime/run_model.c", f"{REPO}/kernels/runtime/meshfit_runtime.c"]
    flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{REPO}/kernels/runtime"]
    subprocess.run([cc, *flags, *sources, "-lm", "-o", str(exe)], check=True)
    builds = [exe]
    cmake = shutil.which("cmake")
    if cmake is None:
        missing("no cmake")
    else:
        subprocess.run([cmake, "-S", f"{REPO}/kernels/runtime", "-B", str(tmp_path / "cmake"),
                        "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)  # fmt: skip
        subprocess.run([cmake, "--build", str(tmp_path / "cmake")], check=True, capture_output=True)
        builds.append(tmp_path / "cmake" / "run_model")
    for program in builds:
        done = subprocess.run([str(program), str(tmp_path / "m.mfr"), str(tmp_path / "frame.f32"),
                               str(tmp_path / "out.obj")], capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        np.testing.assert_allclose(_parse_params(done.stdout), expected, rtol=1e-5, atol=1e-5)
        mesh = meshfit.load_mesh(tmp_path / "out.obj")
        np.testing.assert_allclose(mesh.vertices, verts, atol=1e-5)
        np.testing.assert_array_equal(mesh.faces, reg.task.faces)
    # A frame of the wrong size and a damaged model are errors that say so.
    (tmp_path / "short.f32").write_bytes(b"\0" * 64)
    run = lambda *a: subprocess.run([str(exe), *map(str, a)], capture_output=True, text=True)  # noqa: E731
    done = run(tmp_path / "m.mfr", tmp_path / "short.f32")
    assert done.returncode == 1 and "expected" in done.stderr
    (tmp_path / "cut.mfr").write_bytes((tmp_path / "m.mfr").read_bytes()[:500])
    done = run(tmp_path / "cut.mfr", tmp_path / "frame.f32")
    assert done.returncode == 1 and "truncated" in done.stderr


# ---- glTF -----------------------------------------------------------------------------------------


def _validate_gltf(path) -> dict:
    """The Khronos validator's report (node + the npm package gltf-validator, which .ci/run installs
    under build/npm; NODE_PATH may point elsewhere)."""
    import os
    import shutil
    import subprocess

    from tests.helpers import REPO

    node = shutil.which("node")
    modules = os.environ.get("NODE_PATH", str(REPO / "build" / "npm" / "node_modules"))
    if node is None or not (Path(modules) / "gltf-validator").is_dir():
        missing("the Khronos glTF validator (node and npm's gltf-validator in build/npm) is not installed")
    done = subprocess.run([node, str(REPO / "tests" / "gltf_validate.js"), str(path)], capture_output=True,
                          text=True, env={**os.environ, "NODE_PATH": modules})  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _fit_out(tmp_path, kind: str, frames: int | None = None):
    """A fit output folder (params.json and meshes as meshfit fit writes them) for a known model."""
    from meshfit.io.meshes import save_mesh

    out = tmp_path / f"fit_{kind}_{frames}"
    out.mkdir()
    rng = np.random.default_rng(7)
    model = _blend_model() if kind == "blendshapes" else _blob()
    entries, meshes = [], []
    for _ in range(frames or 1):
        R = np.asarray(meshfit.models.so3_exp(jnp.asarray(rng.normal(0, 0.4, 3), jnp.float32)))
        t = rng.normal(0, 1, 3)
        if kind == "blendshapes":
            p = {
                "identity": jnp.asarray([0.3, -0.2], jnp.float32),
                "expression": jnp.asarray(rng.uniform(0, 1, 1), jnp.float32),
                "rotation": jnp.asarray(meshfit.models.so3_log(jnp.asarray(R)), jnp.float32),
                "translation": jnp.asarray(t, jnp.float32),
                "log_scale": jnp.asarray(np.log(1.3), jnp.float32),
            }
            v = np.asarray(model.vertices(p))
            entries.append(
                {
                    "expression": {"lift": float(p["expression"][0])},
                    "rotation_axis_angle": np.asarray(p["rotation"]).tolist(),
                    "translation": t.tolist(),
                }
            )
        else:
            M = np.eye(4)
            M[:3, :3], M[:3, 3] = 1.3 * R, t
            v = np.asarray(model.vertices) @ M[:3, :3].T + t
            entries.append({"object_to_world": M.tolist(), "scale": 1.3})
        meshes.append(meshfit.Mesh(v.astype(np.float32), model.faces))
    if frames is None:
        params = {
            **entries[0],
            **({"identity": {"wide": 0.3, "tall": -0.2}, "scale": 1.3} if kind == "blendshapes" else {}),
        }
        save_mesh(out / "mesh.obj", meshes[0])
    else:
        params = {
            "frames": entries,
            **({"identity": {"wide": 0.3, "tall": -0.2}, "scale": 1.3} if kind == "blendshapes" else {}),
        }
        (out / "meshes").mkdir()
        for i, m in enumerate(meshes):
            save_mesh(out / "meshes" / f"{i:04d}.obj", m)
    (out / "params.json").write_text(json.dumps(params))
    return out, model, meshes


@pytest.mark.parametrize(
    "kind, frames", [("blendshapes", None), ("rigid", None), ("blendshapes", 4), ("rigid", 3)]
)
def test_gltf_of_a_fit(kind, frames, tmp_path):
    """Valid glTF (Khronos validator: 0 errors); loaded back by trimesh, the posed mesh of the
    first frame (morph weights aside); named morph targets with the fitted weights; an animation
    per sequence at its frame rate."""
    import pygltflib
    import trimesh

    from meshfit.export import write_gltf

    out, model, meshes = _fit_out(tmp_path, kind, frames)
    glb = tmp_path / "fit.glb"
    summary = write_gltf(out, glb, model=model if kind == "blendshapes" else None, fps=25)
    assert summary["kind"] == kind and summary["frames"] == (frames or 1)
    assert _validate_gltf(glb)["errors"] == 0
    scene = trimesh.load(glb, force="scene")
    back = scene.to_geometry()
    if kind == "rigid":
        expected = np.asarray(meshes[0].vertices)
    else:  # without the morph weights: the subject's neutral, posed
        p = json.loads((out / "params.json").read_text())
        first = p["frames"][0] if frames else p
        shape = np.asarray(model.neutral) + np.einsum("i,ivc->vc", [0.3, -0.2], np.asarray(model.identity))
        R = np.asarray(meshfit.models.so3_exp(jnp.asarray(first["rotation_axis_angle"], jnp.float32)))
        expected = 1.3 * shape @ R.T + np.asarray(first["translation"])
    np.testing.assert_allclose(back.vertices, expected, atol=1e-4)
    np.testing.assert_array_equal(back.faces, model.faces)
    doc = pygltflib.GLTF2().load(str(glb))
    if kind == "blendshapes":
        assert (
            doc.meshes[0].extras["targetNames"] == ["lift"] and len(doc.meshes[0].primitives[0].targets) == 1
        )
    if frames:
        anim = doc.animations[0]
        paths = sorted(c.target.path for c in anim.channels)
        assert paths == sorted(["translation", "rotation"] + (["weights"] if kind == "blendshapes" else []))
        assert doc.accessors[anim.samplers[0].input].max == [pytest.approx((frames - 1) / 25)]
    else:
        assert not doc.animations


def test_gltf_errors(tmp_path):
    from meshfit.export import write_gltf

    out, model, _ = _fit_out(tmp_path, "blendshapes")
    with pytest.raises(ValueError, match="needs its model"):
        write_gltf(out, tmp_path / "a.glb")
    other = tmp_path / "other"
    other.mkdir()
    (other / "params.json").write_text((out / "params.json").read_text())
    triangle = meshfit.Mesh(np.eye(3, dtype=np.float32), np.asarray([[0, 1, 2]], np.int32))
    meshfit.io.meshes.save_mesh(other / "mesh.obj", triangle)
    with pytest.raises(ValueError, match="vertices; the fit's mesh has 3: not its model"):
        write_gltf(other, tmp_path / "a.glb", model=model)
    with pytest.raises(FileNotFoundError, match="not a meshfit fit or predict output"):
        write_gltf(tmp_path, tmp_path / "a.glb")
    (tmp_path / "mine.glb").write_bytes(b"glTF not ours")
    with pytest.raises(FileExistsError, match="not a glb meshfit wrote"):
        write_gltf(out, tmp_path / "mine.glb", model=model, overwrite=True)
    assert (tmp_path / "mine.glb").read_bytes() == b"glTF not ours"


def test_simd_path_agrees_with_the_scalar_path(tmp_path):
    """The runtime built with -mavx2 -mfma -mf16c (its AVX2 path) gives the scalar build's numbers
    for fp32, fp16 and int8 files, to the rounding of fused multiply-adds."""
    import shutil
    import subprocess

    from tests.helpers import REPO

    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or any(f" {f}" not in cpu for f in ("avx2", "fma", "f16c")):
        pytest.skip("needs a C compiler and an x86-64 CPU with AVX2, FMA and F16C")
    lib = tmp_path / "libmeshfit_runtime_avx2.so"
    flags = [
        "-std=c99",
        "-O3",
        "-mavx2",
        "-mfma",
        "-mf16c",
        "-fPIC",
        "-shared",
        "-Wall",
        "-Wextra",
        "-Werror",
    ]
    subprocess.run(
        [cc, *flags, f"{REPO}/kernels/runtime/meshfit_runtime.c", "-lm", "-o", str(lib)], check=True
    )
    for kind in ("blendshapes", "rigid"):
        reg = _regressor(kind, tmp_path, seed=11)
        (tmp_path / kind).mkdir()
        views = _views(reg, tmp_path / kind)
        for quant in ("fp32", "fp16", "int8"):  # the SIMD path reads each storage type
            path = tmp_path / f"{kind}_{quant}.mfr"
            write_native(reg, path, quant=quant)
            scalar, simd = Runtime(path), Runtime(path, library=lib)
            assert (scalar.simd, simd.simd) == ("scalar", "avx2")
            a, va = scalar.run(_images(reg, views))
            b, vb = simd.run(_images(reg, views))
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max(), err_msg=quant)
            np.testing.assert_allclose(vb, va, atol=1e-5 * reg.task.diagonal, err_msg=quant)


def test_neon_path_agrees_with_the_scalar_path(tmp_path):
    """The runtime cross-built for AArch64 (its NEON path), run under qemu-user, gives the scalar
    x86 build's numbers for fp32, fp16 and int8 files: the example program's printed parameters
    and written vertices against the runtime Python loads."""
    import shutil
    import subprocess

    from tests.helpers import REPO

    gcc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if gcc is None or qemu is None:
        missing(
            "the NEON test needs aarch64-linux-gnu-gcc and qemu-aarch64 (apt gcc-aarch64-linux-gnu qemu-user)"
        )
    exe = tmp_path / "run_model_neon"
    flags = ["-std=c11", "-O3", "-static", "-Wall", "-Wextra", "-Werror", f"-I{REPO}/kernels/runtime"]
    sources = [f"{REPO}/examples/runtime/run_model.c", f"{REPO}/kernels/runtime/meshfit_runtime.c"]
    subprocess.run([gcc, *flags, *sources, "-lm", "-o", str(exe)], check=True)
    for kind in ("blendshapes", "rigid"):
        reg = _regressor(kind, tmp_path, seed=11)
        (tmp_path / kind).mkdir()
        views = _views(reg, tmp_path / kind)
        images = _images(reg, views)
        images.astype("<f4").tofile(tmp_path / "frame.f32")
        for quant in ("fp32", "fp16", "int8"):
            path = tmp_path / f"{kind}_{quant}.mfr"
            write_native(reg, path, quant=quant)
            expected, verts = Runtime(path).run(images)
            args = [qemu, str(exe), str(path), str(tmp_path / "frame.f32"), str(tmp_path / "out.obj")]
            done = subprocess.run(args, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert "neon path" in done.stdout
            scale = np.abs(expected).max()
            np.testing.assert_allclose(_parse_params(done.stdout), expected, rtol=1e-5, atol=2e-5 * scale,
                                       err_msg=quant)  # fmt: skip
            mesh = meshfit.load_mesh(tmp_path / "out.obj")
            tol = 1e-5 * reg.task.diagonal + 1e-6
            np.testing.assert_allclose(mesh.vertices, verts, atol=tol, err_msg=quant)

"""How the native kernels are built and loaded: the FFI version check, what the library exports,
and an install without a C++ compiler (the extension is optional)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from meshfit.render import _native
from tests.helpers import REPO, require_native


def test_build_info_names_library_and_versions():
    require_native()
    info = _native.build_info()
    assert info["loaded"] and info["reason"] is None
    assert os.path.exists(info["library"])
    assert info["ffi_api"].split(".")[0] == info["runtime_ffi_api"].split(".")[0]
    assert info["jaxlib"] and info["runtime_jaxlib"]


def test_ffi_major_version_mismatch_is_refused_with_a_reason():
    assert _native.incompatibility("0.3", "0.1") is None  # minor versions are ABI-compatible
    assert "FFI API 1.0" in _native.incompatibility("0.3", "1.0")
    assert "rebuild" in _native.incompatibility(None, "0.3")


def test_unloadable_library_gives_a_reason_and_the_jax_path_runs(tmp_path):
    """MESHFIT_NATIVE_LIB naming a missing file: _load() says why, and rendering still works."""
    code = (
        "from meshfit.render import _native, rasterize; import jax.numpy as jnp\n"
        "print(_native._load()); print(_native.build_info()['loaded'])\n"
        "c = jnp.array([[[-.5, -.5, 0, 1], [.5, -.5, 0, 1], [0, .5, 0, 1]]], jnp.float32)\n"
        "print(int(rasterize(c, jnp.array([[0, 1, 2]]), height=8, width=8).mask.sum()))\n"
    )
    env = dict(os.environ, MESHFIT_NATIVE_LIB=str(tmp_path / "missing.so"), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    reason, loaded, covered = out.stdout.strip().splitlines()
    assert "missing.so" in reason and loaded == "False" and int(covered) > 0


def test_library_exports_only_its_entry_points():
    require_native()
    nm = shutil.which("nm")
    if nm is None:
        pytest.fail("nm (binutils) is needed to list the library's symbols")
    out = subprocess.run(
        [nm, "-D", "--defined-only", _native.build_info()["library"]], capture_output=True, text=True
    )
    names = [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]
    assert names and all(n.startswith("Meshfit") for n in names), names


def test_build_without_a_compiler_warns_and_succeeds(tmp_path):
    """setup.py's build_ext with no usable C++ compiler: exit 0 and a clear warning."""
    env = dict(os.environ, CC=str(tmp_path / "no-cc"), CXX=str(tmp_path / "no-cxx"))
    env.pop("MESHFIT_REQUIRE_NATIVE", None)
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
           "--build-temp", str(tmp_path / "tmp")]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "native CPU kernels could not be built" in out.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))

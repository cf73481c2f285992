"""The built wheel, installed into a clean virtual environment, works away from the source tree:
``meshfit info`` and a tiny ``meshfit demo`` (configs and Spot are package data). Built without a
C++ compiler, the install still succeeds and meshfit runs on its pure-JAX path.

The clean environment borrows the test environment's third-party packages through a .pth file
(installing jax and friends again would take minutes and the network); meshfit itself comes
only from the wheel, checked by where it is imported from.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def _build_wheel(dist: Path, env: dict) -> Path:
    """Build from a copy of the source tree: no build/ folder or compiled kernel of the checkout's
    can leak into the wheel."""
    src = dist.parent / "src"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__",
                                  "*.so", ".pytest_cache", ".ruff_cache")  # fmt: skip
    shutil.copytree(REPO, src, ignore=skip, symlinks=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist)],
        check=True, env=env, cwd=dist.parent, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    (wheel,) = dist.glob("meshfit-*.whl")
    return wheel


def _venv_with(wheel: Path, root: Path) -> Path:
    """A fresh venv holding only the wheel's meshfit, third-party packages borrowed (see above)."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    (purelib,) = root.glob("lib/python*/site-packages")
    # Plain paths, not site dirs: their .pth files (the editable meshfit's finder) stay unread.
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_borrowed.pth").write_text("".join(f"{p}\n" for p in borrowed))
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return root


def _run(root: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MESHFIT_NATIVE_LIBRARY")}
    return subprocess.run([str(root / "bin" / "python"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip


def _where(root: Path, cwd: Path) -> str:
    proc = _run(root, "-c", "import meshfit; print(meshfit.__file__)", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("compiler", ["present", "absent"])
def test_wheel_in_a_clean_venv(tmp_path, compiler):
    env = dict(os.environ)
    env.pop("MESHFIT_REQUIRE_NATIVE", None)
    if compiler == "absent":
        env.update(CC="/bin/false", CXX="/bin/false", LDSHARED="/bin/false", LDCXXSHARED="/bin/false")
    (tmp_path / "dist").mkdir()
    wheel = _build_wheel(tmp_path / "dist", env)
    root = _venv_with(wheel, tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    assert _where(root, work).startswith(str(root)), "meshfit must come from the wheel"
    info = _run(root, str(root / "bin" / "meshfit"), "info", cwd=work)
    assert info.returncode == 0, info.stderr
    if compiler == "present":
        assert "native kernels: loaded" in info.stdout, info.stdout
        steps = [a for i in range(3) for a in ("--set", f"stages.{i}.steps=3")]
        demo = _run(root, str(root / "bin" / "meshfit"), "demo", "--out", "demo", "--views", "4",
                    "--size", "32", "--quiet", *steps, cwd=work)  # fmt: skip
        assert demo.returncode == 0, demo.stderr[-3000:]
        assert (work / "demo" / "report.html").is_file() and (work / "demo" / "mesh.obj").is_file()
    else:
        assert "native kernels: not loaded" in info.stdout and "pure JAX" in info.stdout, info.stdout

"""Writing outputs so that nothing is half-written and nothing a user gave us is ever deleted.

- ``atomic_path`` / ``atomic_dir`` write beside the destination and rename into place only when
  the block succeeds: a crash, Ctrl-C or bad input leaves the old output (or none), never half
  of one. Temporary names carry the writer's process id (``.NAME.partial-PID-XXXX``), so a run
  killed outright (SIGKILL) leaves something that the next write of the same destination
  recognises as stale (its process is gone) and removes.
- Files and folders get the permissions the umask gives (``tempfile`` would make them 0600 /
  0700).
- ``check_output_dir`` is the one rule for replacing a folder (``--overwrite``): only a folder
  that meshfit made (it holds the ``.meshfit`` marker) may be replaced, and never one that is, or
  contains, an input of the run. It is called before any work, so a bad ``--out`` fails at once.
  ``check_output_file`` is its rule for a single file (an exported model): only one that meshfit
  wrote, as the file's own header says.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = ["MARKER", "OutputError", "atomic_dir", "atomic_path", "check_output_dir", "check_output_file"]

MARKER = ".meshfit"  # a file in every folder meshfit writes whole (JSON: what made it)


class OutputError(ValueError):
    """An output location that cannot or must not be written."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _partial_prefix(path: Path) -> str:
    return f".{path.name}.partial-"


def _remove_stale(path: Path) -> None:
    """Remove temporaries left beside ``path`` by writers whose process no longer exists."""
    prefix = _partial_prefix(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # its writer is still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{_partial_prefix(path)}{os.getpid()}-", suffix=path.suffix, dir=path.parent
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_dir(
    path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Path:
    """Check that ``path`` may become a meshfit output folder, before any work is done.

    Refuses (OutputError, naming the problem): a file; a non-empty folder without
    ``overwrite``; with ``overwrite``, a folder meshfit did not make (no ``.meshfit`` marker);
    a folder that is, or lies above, any of ``inputs``; a parent folder that cannot be written.
    Returns the path.
    """
    path = Path(path)
    real = path.resolve()
    for item in inputs:
        if item is None:
            continue
        src = Path(item).resolve()
        if _is_within(src, real):
            what = "is" if src == real else "contains"
            raise OutputError(f"--out {path} {what} the input {item}: choose another output folder")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputError(f"--out {path} is a file, not a folder: choose a folder name")
        if any(path.iterdir()):
            if not overwrite:
                raise OutputError(f"{path} is not empty; choose another folder or pass --overwrite")
            if not (path / MARKER).is_file():
                raise OutputError(
                    f"{path} was not written by meshfit (it has no {MARKER} file), so --overwrite "
                    "will not replace it: choose another folder"
                )
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a folder")
    try:  # os.access says yes to root everywhere, and knows nothing of /proc: try it
        probe = tempfile.mkdtemp(prefix=f"{_partial_prefix(path)}{os.getpid()}-probe-", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {parent} is not a writable folder ({e.strerror})") from e
    return path


def check_output_file(
    path: str | os.PathLike, *, overwrite: bool, ours: Callable[[Path], bool], kind: str
) -> Path:
    """Check that the file ``path`` may be written (whole, with ``atomic_path``), before any work.

    A folder is refused; an existing file needs ``overwrite`` and must be one meshfit wrote:
    ``ours(path)`` reads its header (``kind`` names what it should be, e.g. "a meshfit runtime
    model"). Raises IsADirectoryError or FileExistsError naming the problem; returns the path.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; --out names the file to write")
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True, or --overwrite, to replace it)")
        if not ours(path):
            raise FileExistsError(f"{path} exists and is not {kind}: not replacing it")
    return path


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    kind: str = "output",
) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it becomes ``path`` only if the block succeeds.

    ``check_output_dir`` rules apply (checked again here). The folder gets a ``.meshfit`` marker
    naming ``kind``, so a later ``--overwrite`` knows meshfit made it. An old output is moved
    aside before the new one is renamed into place and removed only after, so a crash in between
    loses neither.
    """
    inputs = list(inputs)
    path = check_output_dir(path, overwrite=overwrite, inputs=inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(path)}{os.getpid()}-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    old = None
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"kind": kind}) + "\n")
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(path)}{os.getpid()}-", dir=path.parent))
            os.replace(path, old / "previous")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

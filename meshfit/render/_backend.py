"""Which implementation an op runs: its native CPU kernel or its pure-JAX twin."""

from __future__ import annotations

from meshfit.render import _native

__all__ = ["BACKENDS", "use_native"]

BACKENDS = ("auto", "native", "jax")


def use_native(backend: str, *arrays) -> bool:
    """Whether an op runs its native kernel on ``arrays``: forced by ``backend="native"`` (an
    error where it cannot run), never for ``"jax"``, and for ``"auto"`` when the kernels are
    loaded and the arrays are float32 on the CPU."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto', 'native' or 'jax'; got {backend!r}")
    if backend == "jax":
        return False
    usable = _native.usable(*arrays)
    if backend == "native" and not usable:
        reason = _native._load() or "they take float32 arrays on the CPU"
        raise ValueError(f"backend='native' cannot run here: {reason}")
    return usable

"""The optimisation loop: a jitted step over a pytree of parameters, with early stopping,
divergence recovery and progress.

``make_step(loss_fn, optimizer)`` returns a jitted ``step(state, batch) -> (state, aux)``, pure
over the ``FitState`` pytree. ``run_stage`` drives it on the host: it stops early when the loss
stops improving, and when the loss or the gradient turns NaN/inf it restores the last good
state, halves the learning rate and warns, instead of carrying NaNs on. Stages with different
losses, resolutions or parameterisations are successive ``run_stage`` calls, set up by
``meshfit.fitting.stage``.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["DivergenceWarning", "FitState", "StageResult", "make_optimizer", "make_step", "run_stage"]


class DivergenceWarning(RuntimeWarning):
    """The loss or its gradient became non-finite; the step was undone and the rate lowered."""


class FitState(NamedTuple):
    """params: the parameter pytree. opt_state: the optimizer's state. step: int32 [] counter."""

    params: Any
    opt_state: Any
    step: jax.Array


class StageResult(NamedTuple):
    """state: the FitState kept (``run_stage``'s ``keep``: the lowest loss measured, or the last
    finite one). losses: per-step loss values (host floats). terms: per-step values of each
    term the loss reports. steps: steps taken. stopped_early: whether the plateau rule ended the
    stage. seconds: wall time after compilation. compile_seconds: the first step's extra time."""

    state: FitState
    losses: list[float]
    terms: dict[str, list[float]]
    steps: int
    stopped_early: bool
    seconds: float
    compile_seconds: float


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """An optimizer by name ("adam", "adam_uniform", "sgd"), its learning rate adjustable in the
    state (``optax.inject_hyperparams``) so divergence recovery can lower it."""
    from meshfit.optim import adam_uniform

    # Large steps for the free mesh's vertices ("u") only; its appearance gets plain Adam.
    uniform = functools.partial(adam_uniform, uniform=("u",))
    makers = {"adam": optax.adam, "sgd": optax.sgd, "adam_uniform": uniform}
    if name not in makers:
        raise ValueError(f"optimizer must be one of {sorted(makers)}; got {name!r}")
    return optax.inject_hyperparams(makers[name])(learning_rate=learning_rate)


def make_step(
    loss_fn: Callable[[Any, Any], tuple[jax.Array, dict]], optimizer: optax.GradientTransformation
) -> Callable[[FitState, Any], tuple[FitState, dict]]:
    """A jitted optimisation step.

    Args:
        loss_fn: ``loss_fn(params, batch) -> (loss, terms)``, scalar loss and a dict of scalar
            terms to report.
        optimizer: an optax transformation.
    Returns:
        ``step(state, batch) -> (new_state, aux)``; aux holds "loss", the terms, and "finite"
        (loss and gradient all finite). A non-finite step returns the state unchanged.
    """

    @jax.jit
    def step(state: FitState, batch: Any) -> tuple[FitState, dict]:
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        finite = jnp.isfinite(loss) & jax.tree.reduce(
            jnp.logical_and, jax.tree.map(lambda g: jnp.all(jnp.isfinite(g)), grads), jnp.array(True)
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = FitState(params, opt_state, state.step + 1)
        # Keep the old state on a bad step: the host lowers the rate and tries again.
        new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
        return new, {"loss": loss, "finite": finite, **terms}

    return step


def _scale_learning_rate(opt_state: Any, factor: float) -> Any:
    """Multiply the learning rate stored by inject_hyperparams (wherever it sits in the state)."""

    def visit(s):
        if hasattr(s, "hyperparams") and "learning_rate" in getattr(s, "hyperparams", {}):
            hp = dict(s.hyperparams)
            hp["learning_rate"] = hp["learning_rate"] * factor
            return s._replace(hyperparams=hp)
        if isinstance(s, tuple) and not hasattr(s, "_fields"):
            return tuple(visit(x) for x in s)
        return s

    return visit(opt_state)


def run_stage(
    step: Callable[[FitState, Any], tuple[FitState, dict]],
    state: FitState,
    batch: Any,
    *,
    steps: int,
    patience: int = 50,
    min_improvement: float = 1e-4,
    max_recoveries: int = 5,
    progress: bool | str = True,
    keep: str = "best",
) -> StageResult:
    """Run up to ``steps`` steps.

    Early stop: when the best loss has not improved by a relative ``min_improvement`` for
    ``patience`` steps (0 disables). Divergence: when the loss or gradient at the current
    parameters is non-finite, the step that led there is undone (back to its input state) with
    the learning rate halved, and a warning; after ``max_recoveries`` it raises.
    Progress: a tqdm bar with loss and ETA (``progress`` may be a label).
    Result: ``keep="best"`` returns the parameters with the lowest loss measured (the final ones
    are measured too); ``keep="last"`` the last ones (for a stochastic loss, e.g. a random subset
    of views per step, where the lowest value is partly luck). Either way, never parameters whose
    loss is non-finite.
    ``batch`` is the step's second argument: a fixed pytree, or a callable ``batch(i)`` giving
    step i's (e.g. a random subset of views; keep its shapes fixed so the step compiles once).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}")
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last'; got {keep!r}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=progress if isinstance(progress, str) else "fit", leave=True)
    losses: list[float] = []
    terms: dict[str, list[float]] = {}
    best, best_at, recoveries = math.inf, 0, 0
    lowest, lowest_state = math.inf, state
    stopped_early = False
    t_first = t_start = time.perf_counter()
    compile_s = 0.0
    try:
        previous = None  # the input of the last good step: where to go back to
        for i in range(steps):
            before = state
            state, aux = step(state, batch(i) if callable(batch) else batch)
            loss = float(aux["loss"])
            if i == 0:
                compile_s = time.perf_counter() - t_first
                t_start = time.perf_counter()
            if not bool(aux["finite"]):
                # The parameters we stand on give NaN: the step that brought us here was too long.
                if previous is None:
                    raise FloatingPointError(
                        "the loss or its gradient is non-finite at the initial parameters"
                    )
                recoveries += 1
                if recoveries > max_recoveries:
                    raise FloatingPointError(
                        f"loss or gradient still non-finite after {max_recoveries} learning-rate halvings "
                        f"(step {i}); check the inputs and the loss weights"
                    )
                warnings.warn(
                    f"step {i}: non-finite loss or gradient; kept the last good parameters and halved the "
                    "learning rate",
                    DivergenceWarning,
                    stacklevel=2,
                )
                state = previous._replace(opt_state=_scale_learning_rate(previous.opt_state, 0.5))
                continue
            previous = before
            losses.append(loss)
            for k, v in aux.items():
                if k not in ("loss", "finite"):
                    terms.setdefault(k, []).append(float(v))
            if loss < lowest:  # the loss was measured at the step's input parameters
                lowest, lowest_state = loss, before
            if loss < best * (1 - min_improvement) or best == math.inf:
                best, best_at = loss, i
            elif patience and i - best_at >= patience:
                stopped_early = True
                state = (lowest_state if keep == "best" else before)._replace(step=state.step)
                break
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                bar.update(1)
        if losses and not stopped_early:
            # The last update's result has not been measured yet: measure it (one more step's
            # loss, its update discarded), and never hand on parameters that give NaN.
            _, aux = step(state, batch(steps) if callable(batch) else batch)
            final = float(aux["loss"])
            if not bool(aux["finite"]):
                warnings.warn(
                    "the last step made the loss non-finite; kept the best parameters seen",
                    DivergenceWarning,
                    stacklevel=2,
                )
                state = lowest_state._replace(step=state.step)
            elif keep == "best" and final > lowest:
                state = lowest_state._replace(step=state.step)
    finally:
        if bar is not None:
            bar.close()
    return StageResult(
        state, losses, terms, len(losses), stopped_early, time.perf_counter() - t_start, compile_s
    )

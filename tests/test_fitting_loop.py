"""The optimisation loop: convergence, early stop, divergence recovery."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from meshfit.fitting import DivergenceWarning, FitState, make_optimizer, make_step, run_stage


def _state(params, opt):
    return FitState(params, opt.init(params), jnp.zeros((), jnp.int32))


def test_quadratic_converges_and_reports_terms():
    target = jnp.array([1.0, -2.0, 3.0])

    def loss_fn(p, batch):
        err = jnp.sum((p["x"] - batch) ** 2)
        return err, {"err": err}

    opt = make_optimizer("adam", 0.1)
    res = run_stage(
        make_step(loss_fn, opt), _state({"x": jnp.zeros(3)}, opt), target, steps=300, progress=False
    )
    np.testing.assert_allclose(res.state.params["x"], target, atol=1e-2)
    assert res.steps == len(res.losses) and int(res.state.step) == res.steps
    assert res.losses[-1] < 1e-3 * res.losses[0]


def test_early_stop_on_a_plateau():
    opt = make_optimizer("sgd", 0.0)  # nothing moves: the loss is flat from the start
    step = make_step(lambda p, b: (jnp.sum(p**2), {}), opt)
    res = run_stage(step, _state(jnp.ones(2), opt), None, steps=500, patience=20, progress=False)
    assert res.stopped_early and res.steps == 21


def test_divergence_restores_and_lowers_the_rate():
    # sqrt(4 - x) is NaN beyond x = 4: a large first step jumps there from x = 0
    def loss_fn(p, batch):
        return (p - 3.0) ** 2 - jnp.sqrt(4.0 - p), {}

    opt = make_optimizer("sgd", 2.0)
    with pytest.warns(DivergenceWarning, match="halved the learning rate"):
        res = run_stage(make_step(loss_fn, opt), _state(jnp.array(0.0), opt), None, steps=200, progress=False)
    assert np.isfinite(float(res.state.params)) and float(res.state.params) < 4.0
    assert float(res.state.opt_state.hyperparams["learning_rate"]) < 2.0
    assert all(np.isfinite(res.losses))


def test_gives_up_after_repeated_divergence():
    opt = make_optimizer("adam", 0.1)
    step = make_step(lambda p, b: (jnp.log(p - 10.0), {}), opt)  # NaN at the start
    with pytest.raises(FloatingPointError, match="non-finite at the initial parameters"):
        run_stage(step, _state(jnp.array(0.0), opt), None, steps=50, progress=False)
    # finite at the start, NaN past a cliff that every step (however short) jumps over
    cliff = make_step(lambda p, b: (jnp.where(p > 0.5, jnp.nan, -p), {}), make_optimizer("sgd", 1.0))
    opt = make_optimizer("sgd", 1.0)
    with pytest.warns(DivergenceWarning), pytest.raises(FloatingPointError, match="still non-finite"):
        run_stage(cliff, _state(jnp.array(0.49999), opt), None, steps=50, max_recoveries=3, progress=False)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("lbfgs2", 0.1)


def test_early_stop_returns_the_best_parameters_seen():
    """SGD with too long a step moves away from the minimum: the plateau rule stops, and the
    state returned is the best one seen (the start here), not the last."""
    loss = lambda p, _: ((p["x"] - 1.0) ** 2, {})  # noqa: E731
    opt = make_optimizer("sgd", 1.05)
    start = {"x": jnp.asarray(0.9)}
    step = make_step(loss, opt)
    res = run_stage(step, FitState(start, opt.init(start), jnp.zeros((), jnp.int32)), None, steps=50,
                    patience=3, progress=False)  # fmt: skip
    assert res.stopped_early and res.steps == 4
    assert res.losses[0] == min(res.losses) and res.losses[-1] > res.losses[0]
    np.testing.assert_allclose(float(res.state.params["x"]), 0.9, rtol=1e-6)


def test_run_stage_never_hands_on_nan_and_keeps_the_best():
    """The last update's result is measured too: a step that lands on NaN (lr 1e30 here) is not
    returned; with keep="best" a run that only got worse returns where it was best."""
    loss = lambda p, _: (jnp.sum(p["x"] ** 2), {})  # noqa: E731
    start = {"x": jnp.asarray([0.5, -0.5])}
    opt = make_optimizer("sgd", 1e30)
    with pytest.warns(DivergenceWarning, match="last step made the loss non-finite"):
        res = run_stage(make_step(loss, opt), _state(start, opt), None, steps=1, patience=0, progress=False)
    np.testing.assert_allclose(np.asarray(res.state.params["x"]), [0.5, -0.5])
    grow = lambda p, _: ((p["x"] - 1.0) ** 2, {})  # noqa: E731
    opt = make_optimizer("sgd", 1.05)  # overshoots further every step
    start = {"x": jnp.asarray(0.9)}
    for keep, expected in (("best", 0.9), ("last", None)):
        res = run_stage(make_step(grow, opt), _state(start, opt), None, steps=5, patience=0, progress=False,
                        keep=keep)  # fmt: skip
        if expected is not None:
            np.testing.assert_allclose(float(res.state.params["x"]), expected, rtol=1e-6)
        else:
            assert abs(float(res.state.params["x"]) - 1.0) > 0.1

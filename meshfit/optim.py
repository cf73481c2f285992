"""Optimisers that meshfit's representations want beyond optax's own."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["adam_uniform"]


class AdamUniformState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def adam_uniform(
    learning_rate: float | optax.Schedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    uniform: tuple[str, ...] | None = None,
) -> optax.GradientTransformation:
    """Adam with one step size per leaf (Nicolet et al. 2021, "Large Steps in Inverse Rendering").

    The second-moment estimate is reduced to its maximum over each parameter array, so every
    entry of the array is scaled alike: the update keeps the direction of the (smoothed)
    gradient, which the large-steps parameterisation needs to stay smooth. ``uniform``: the
    keys of a dict of params treated so (the rest, e.g. a fitted albedo, get plain Adam: one
    step size per entry); None = every leaf.
    """

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamUniformState(jnp.zeros((), jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
        c1 = 1 - b1 ** count.astype(jnp.float32)
        c2 = 1 - b2 ** count.astype(jnp.float32)
        lr = learning_rate(count - 1) if callable(learning_rate) else learning_rate

        def step(m, v, flat=True):
            return -lr * (m / c1) / (jnp.sqrt((jnp.max(v) if flat else v) / c2) + eps)

        if uniform is None or not isinstance(mu, dict):
            out = jax.tree.map(step, mu, nu)
        else:
            out = {k: jax.tree.map(lambda m, v, k=k: step(m, v, k in uniform), mu[k], nu[k]) for k in mu}
        return out, AdamUniformState(count, mu, nu)

    return optax.GradientTransformation(init, update)

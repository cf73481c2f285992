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
    learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam with one step size per leaf (Nicolet et al. 2021, "Large Steps in Inverse Rendering").

    The second-moment estimate is reduced to its maximum over each parameter array, so every
    entry of the array is scaled alike: the update keeps the direction of the (smoothed)
    gradient, which the large-steps parameterisation needs to stay smooth.
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

        def step(m, v):
            return -lr * (m / c1) / (jnp.sqrt(jnp.max(v) / c2) + eps)

        return jax.tree.map(step, mu, nu), AdamUniformState(count, mu, nu)

    return optax.GradientTransformation(init, update)

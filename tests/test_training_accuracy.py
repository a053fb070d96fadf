"""FP8 / BF16 recipe outputs and gradients against float32 ``jax.grad`` of the
unquantized op: the relative-error bounds documented in ``jaxgemm.Recipe``."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgemm.training import (
    GRAD_ERROR_BOUNDS,
    GRAD_ERROR_BOUNDS_BF16,
    GRAD_ERROR_BOUNDS_UE8M0,
    Recipe,
    fp8_linear,
    fp8_ragged_dot,
)

HI = jax.lax.Precision.HIGHEST

RECIPES = {
    "fp8": (Recipe(), GRAD_ERROR_BOUNDS),
    "fp8_ue8m0": (Recipe(use_ue8m0=True), GRAD_ERROR_BOUNDS_UE8M0),
    "bf16": (Recipe.bf16(), GRAD_ERROR_BOUNDS_BF16),
}


def _rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _normal(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape).astype(np.float32))


def _errors(f, f_ref, args, g):
    @jax.jit
    def both(args, g):
        y, vjp = jax.vjp(f, *args)
        y_ref, vjp_ref = jax.vjp(f_ref, *args)
        return (y, *vjp(g)), (y_ref, *vjp_ref(g))

    got, want = both(args, g)
    return {key: _rel(a, b) for key, a, b in zip(("y", "dx", "dw"), got, want)}


@pytest.mark.parametrize("name", list(RECIPES))
def test_fp8_linear_error_bounds(name):
    recipe, bounds = RECIPES[name]
    rng = np.random.default_rng(0)
    t, k, n = 200, 300, 170  # K, N not multiples of 128
    x, w, g = _normal(rng, t, k), _normal(rng, k, n), _normal(rng, t, n)
    err = _errors(lambda x, w: fp8_linear(x, w, recipe=recipe),
                  lambda x, w: jnp.dot(x, w, precision=HI), (x, w), g)
    for key, bound in bounds.items():
        assert err[key] < bound, (name, err)
    if name != "bf16":  # FP8 is clearly quantized: the test would see a no-op
        assert min(err.values()) > 0.02, err


@pytest.mark.parametrize("name", list(RECIPES))
def test_fp8_ragged_dot_error_bounds(name):
    recipe, bounds = RECIPES[name]
    rng = np.random.default_rng(1)
    m, k, n = 300, 130, 200
    gs = jnp.array([98, 0, 95, 102], jnp.int32)  # an empty group, 5 rows past the end
    x, w, g = _normal(rng, m, k), _normal(rng, 4, k, n), _normal(rng, m, n)
    err = _errors(lambda x, w: fp8_ragged_dot(x, w, gs, recipe=recipe),
                  lambda x, w: jax.lax.ragged_dot(x, w, gs, precision=HI), (x, w), g)
    for key, bound in bounds.items():
        assert err[key] < bound, (name, err)

"""VJP wiring of the differentiable ops: ``Recipe.exact()`` passes
``jax.test_util.check_grads``; dtypes, cotangents, recipes, argument checks."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxgemm.training import Recipe, fp8_linear, fp8_ragged_dot

HI = jax.lax.Precision.HIGHEST
EXACT = Recipe.exact()
GS = jnp.array([7, 0, 15], jnp.int32)  # an empty group, 8 rows past the end


@pytest.fixture
def x64():
    """float64 for the finite differences (Recipe.exact computes in float64 then)."""
    if hasattr(jax, "enable_x64"):
        ctx = jax.enable_x64(True)
    else:  # older jax
        from jax.experimental import enable_x64 as ctx_fn
        ctx = ctx_fn()
    with ctx:
        yield


def _normal(seed, *shape, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def _linear_case():
    # leading batch axes (flattened into M); K, N not multiples of 128
    return (lambda x, w: fp8_linear(x, w, recipe=EXACT),
            (_normal(0, 2, 5, 40), _normal(1, 40, 24)))


def _ragged_case():
    return (lambda x, w: fp8_ragged_dot(x, w, GS, recipe=EXACT),
            (_normal(2, 30, 40), _normal(3, 3, 40, 24)))


CASES = {"linear": _linear_case, "ragged": _ragged_case}


def test_exact_matches_unquantized():
    f, (x, w) = _linear_case()
    np.testing.assert_allclose(f(x, w), jnp.dot(x, w, precision=HI), rtol=1e-5,
                               atol=1e-5)
    f, (x, w) = _ragged_case()
    ref = jax.lax.ragged_dot(x, w, GS, precision=HI)
    np.testing.assert_allclose(f(x, w), ref, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(f(x, w))[22:] == 0)  # rows past sum(group_sizes)


def _f64(args):
    return tuple(a.astype(jnp.float64) for a in args)


@pytest.mark.parametrize("op", list(CASES))
def test_check_grads_rev_order_2(op, x64):
    f, args = CASES[op]()
    args = _f64(args)
    assert f(*args).dtype == jnp.float64
    check_grads(f, args, order=2, modes=["rev"])


def test_check_grads_float32():
    """In float32 (the documented compute type) with a larger step: the
    function is bilinear, so central differences have no truncation error."""
    f, args = _linear_case()
    check_grads(f, args, order=2, modes=["rev"], eps=0.1, rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("op", list(CASES))
def test_check_grads_fwd_over_rev(op, x64):
    """Forward mode is defined on top of reverse mode (Hessian-vector products)."""
    f, args = CASES[op]()
    args = _f64(args)

    def grad_fn(x, w):
        return jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1))(x, w)

    check_grads(grad_fn, args, order=1, modes=["fwd", "rev"])


@pytest.mark.parametrize("op", list(CASES))
def test_forward_mode_is_not_defined(op):
    f, args = CASES[op]()
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(f, args, args)


def test_grads_in_primal_dtypes():
    x = _normal(0, 3, 64, 48, dtype=jnp.bfloat16)
    w = _normal(1, 48, 32)
    def vjp_all(f, x, w):
        y, vjp = jax.vjp(f, x, w)
        return (y,) + vjp(jnp.ones_like(y))

    for recipe in (Recipe(), Recipe.bf16(), EXACT):
        y, dx, dw = jax.eval_shape(
            lambda x, w: vjp_all(lambda x, w: fp8_linear(x, w, recipe=recipe), x, w),
            x, w)
        assert y.dtype == jnp.bfloat16 and y.shape == (3, 64, 32)
        assert dx.dtype == jnp.bfloat16 and dx.shape == x.shape
        assert dw.dtype == jnp.float32 and dw.shape == w.shape
    xm = _normal(2, 30, 48, dtype=jnp.bfloat16)
    wg = _normal(3, 3, 48, 16)
    y, dx, dw = jax.jit(lambda x, w: vjp_all(lambda x, w: fp8_ragged_dot(x, w, GS),
                                             x, w))(xm, wg)
    assert y.dtype == jnp.bfloat16 and y.shape == (30, 16)
    assert (dx.dtype, dw.dtype) == (jnp.bfloat16, jnp.float32)
    assert np.all(np.isfinite(np.asarray(dw)))


def test_group_sizes_cotangent_is_float0():
    x, w = _normal(2, 30, 40), _normal(3, 3, 40, 24)
    _, vjp = jax.vjp(lambda x, w, gs: fp8_ragged_dot(x, w, gs, recipe=EXACT), x, w, GS)
    dx, dw, dgs = vjp(jnp.ones((30, 24)))
    assert dgs.dtype == jax.dtypes.float0 and dgs.shape == (3,)
    # rows past sum(group_sizes) get no gradient, nor do the empty group's weights
    assert np.all(np.asarray(dx)[22:] == 0)
    assert np.all(np.asarray(dw)[1] == 0)


def test_mixed_recipe_matches_per_gemm_modes():
    """Each GEMM follows its own mode: fwd exact + dgrad/wgrad FP8."""
    x, w = _normal(0, 64, 256), _normal(1, 256, 128)
    g = _normal(2, 64, 128)
    mixed = Recipe(fwd="f32", dgrad="fp8", wgrad="bf16")
    y, vjp = jax.vjp(lambda x, w: fp8_linear(x, w, recipe=mixed), x, w)
    np.testing.assert_allclose(y, jnp.dot(x, w, precision=HI), rtol=1e-5, atol=1e-4)
    dx, dw = vjp(g)
    _, vjp_fp8 = jax.vjp(lambda x, w: fp8_linear(x, w), x, w)
    _, vjp_bf16 = jax.vjp(lambda x, w: fp8_linear(x, w, recipe=Recipe.bf16()), x, w)
    np.testing.assert_array_equal(dx, vjp_fp8(g)[0])
    np.testing.assert_array_equal(dw, vjp_bf16(g)[1])


def test_recipe_is_static_and_validated():
    r = Recipe()
    assert hash(r) == hash(Recipe.fp8()) and r == Recipe("fp8", "fp8", "fp8", False)
    assert Recipe.exact().is_exact and not r.is_exact
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.fwd = "bf16"
    with pytest.raises(ValueError, match="wgrad"):
        Recipe(wgrad="fp16")
    with pytest.raises(TypeError):
        Recipe(use_ue8m0=1)


def test_argument_errors():
    x, w = _normal(0, 4, 40), _normal(1, 40, 24)
    with pytest.raises(ValueError, match="fp8_linear: x"):
        fp8_linear(x, w.T)
    with pytest.raises(ValueError, match="fp8_linear: kernel"):
        fp8_linear(x, w[None])
    with pytest.raises(TypeError, match="recipe"):
        fp8_linear(x, w, recipe="fp8")
    with pytest.raises(TypeError, match="fp8_linear: x"):
        fp8_linear(x.astype(jnp.int32), w)
    wg = _normal(3, 3, 40, 24)
    with pytest.raises(ValueError, match="fp8_ragged_dot: group_sizes"):
        fp8_ragged_dot(x, wg, GS[:2])
    with pytest.raises(ValueError, match="fp8_ragged_dot: w"):
        fp8_ragged_dot(x, wg[:, :30], GS)
    with pytest.raises(TypeError, match="group_sizes"):
        fp8_ragged_dot(x, wg, GS.astype(jnp.float32))

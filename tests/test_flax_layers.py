"""jaxgemm.flax: Fp8Linear is a drop-in for nnx.Linear; Fp8MoE routes, permutes,
runs SwiGLU experts on fp8_ragged_dot and returns a load-balancing loss."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")

from jaxgemm.flax import Fp8Linear, Fp8MoE, load_balancing_loss, route_top_k  # noqa: E402
from jaxgemm.training import Recipe  # noqa: E402

HI = jax.lax.Precision.HIGHEST


def _x(seed, *shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


@nnx.jit
def _call(module, x):
    return module(x)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------ Fp8Linear


def test_fp8_linear_same_params_and_init_as_nnx_linear():
    ours = Fp8Linear(96, 40, rngs=nnx.Rngs(0))
    ref = nnx.Linear(96, 40, rngs=nnx.Rngs(0))
    assert isinstance(ours, nnx.Linear)
    s_ours, s_ref = nnx.state(ours, nnx.Param), nnx.state(ref, nnx.Param)
    assert jax.tree.structure(s_ours) == jax.tree.structure(s_ref)
    for a, b in zip(jax.tree.leaves(s_ours), jax.tree.leaves(s_ref)):
        np.testing.assert_array_equal(a, b)
    assert ours.kernel.shape == (96, 40) and ours.kernel.dtype == jnp.float32
    nb = Fp8Linear(96, 40, use_bias=False, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert nb.bias is None and nb.kernel.dtype == jnp.bfloat16


def test_fp8_linear_output_matches_nnx_linear():
    ours = Fp8Linear(96, 40, rngs=nnx.Rngs(0), bias_init=nnx.initializers.ones)
    ref = nnx.Linear(96, 40, rngs=nnx.Rngs(0), bias_init=nnx.initializers.ones)
    x = _x(1, 2, 8, 96)
    y_ref = _call(ref, x)
    assert _rel(_call(ours, x), y_ref) < 0.05  # FP8
    exact = Fp8Linear(96, 40, rngs=nnx.Rngs(0), bias_init=nnx.initializers.ones,
                      recipe=Recipe.exact())
    np.testing.assert_allclose(_call(exact, x), y_ref, rtol=1e-5, atol=1e-5)
    xla = Fp8Linear(96, 40, rngs=nnx.Rngs(0), bias_init=nnx.initializers.ones,
                    recipe=None)
    np.testing.assert_array_equal(_call(xla, x), y_ref)
    # dtype promotion like nnx.Linear; out_sharding accepted
    bf = Fp8Linear(96, 40, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert jax.eval_shape(lambda x: bf(x, out_sharding=None), x).dtype == jnp.bfloat16
    # promoted with the float32 params, like nnx.Linear
    assert jax.eval_shape(ours, x.astype(jnp.bfloat16)).dtype == jnp.float32


def test_fp8_linear_grads_in_param_dtype_under_jit():
    model = Fp8Linear(96, 40, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = _x(2, 16, 96)

    @nnx.jit
    def grads(model, x):
        return nnx.grad(lambda m: jnp.mean(m(x).astype(jnp.float32) ** 2))(model)

    g = grads(model, x)
    assert g["kernel"][...].dtype == jnp.float32 and g["bias"][...].dtype == jnp.float32
    ref = nnx.Linear(96, 40, rngs=nnx.Rngs(0))
    g_ref = nnx.jit(nnx.grad(lambda m: jnp.mean(m(x) ** 2)))(ref)
    assert _rel(g["kernel"][...], g_ref["kernel"][...]) < 0.05


# ------------------------------------------------------------------ Fp8MoE


def _dense_moe_reference(moe, x):
    """Every token through every expert in float32, then the top-k mix."""
    xt = x.reshape(-1, moe.in_features)
    logits = jnp.dot(xt, moe.router.kernel[...], precision=HI)
    probs, w, e = route_top_k(logits, moe.num_experts_per_tok)
    gate = jnp.einsum("td,gdf->tgf", xt, moe.w_gate[...], precision=HI)
    up = jnp.einsum("td,gdf->tgf", xt, moe.w_up[...], precision=HI)
    out = jnp.einsum("tgf,gfd->tgd", jax.nn.silu(gate) * up, moe.w_down[...],
                     precision=HI)
    picked = jnp.take_along_axis(out, e[:, :, None], axis=1)  # [T, k, d]
    return jnp.einsum("tkd,tk->td", picked, w).reshape(x.shape)


def _moe(recipe, **kw):
    return Fp8MoE(32, 48, 4, num_experts_per_tok=2, recipe=recipe, rngs=nnx.Rngs(0), **kw)


def test_moe_exact_matches_dense_reference():
    moe = _moe(Recipe.exact())
    x = _x(3, 2, 10, 32)
    y, aux = _call(moe, x)
    assert y.shape == x.shape and aux.shape == () and aux.dtype == jnp.float32
    np.testing.assert_allclose(y, nnx.jit(_dense_moe_reference)(moe, x), rtol=1e-4,
                               atol=1e-5)
    assert 1.0 <= float(aux) <= 4.0  # Switch loss: 1 when balanced, <= G


def test_moe_fp8_and_xla_paths():
    x = _x(4, 20, 32)
    y_ref = nnx.jit(_dense_moe_reference)(_moe(None), x)
    y_xla, aux_xla = _call(_moe(None), x)
    np.testing.assert_allclose(y_xla, y_ref, rtol=1e-4, atol=1e-5)
    y8, aux8 = _call(_moe(Recipe()), x)
    assert _rel(y8, y_ref) < 0.08
    np.testing.assert_allclose(aux8, aux_xla, rtol=1e-6)
    # bf16 compute dtype: output in bf16, both paths
    xb = x.astype(jnp.bfloat16)
    for recipe in (None, Recipe()):
        yb, _ = _call(_moe(recipe, dtype=jnp.bfloat16), xb)
        assert yb.dtype == jnp.bfloat16 and _rel(yb, y_ref) < 0.1


def test_moe_grads_reach_router_and_every_expert():
    moe = _moe(Recipe())
    x = _x(5, 64, 32)

    @nnx.jit
    def grads(moe, x):
        def loss(m):
            y, aux = m(x)
            return jnp.mean(y ** 2) + 0.01 * aux
        return nnx.grad(loss)(moe)

    g = grads(moe, x)
    for name in ("w_gate", "w_up", "w_down"):
        gw = np.asarray(g[name][...])
        assert gw.dtype == np.float32 and np.all(np.isfinite(gw))
        assert np.all(np.abs(gw).reshape(4, -1).max(-1) > 0), name  # all experts used
    assert np.abs(np.asarray(g["router"]["kernel"][...])).max() > 0
    # FP8 gradients are close to the exact recipe's
    g_exact = grads(_moe(Recipe.exact()), x)
    for name in ("w_gate", "w_up", "w_down"):
        assert _rel(g[name][...], g_exact[name][...]) < 0.1, name


def test_load_balancing_loss_values():
    g = 4
    uniform = jnp.full((8, g), 1.0 / g)
    assert float(load_balancing_loss(uniform, jnp.array([4, 4, 4, 4]))) == pytest.approx(1.0)
    skewed = jnp.zeros((8, g)).at[:, 0].set(1.0)
    assert float(load_balancing_loss(skewed, jnp.array([16, 0, 0, 0]))) == pytest.approx(4.0)
    probs, w, e = route_top_k(jnp.log(jnp.array([[0.1, 0.2, 0.3, 0.4]])), 2)
    np.testing.assert_allclose(w, [[4 / 7, 3 / 7]], rtol=1e-6)
    assert e.tolist() == [[3, 2]]


def test_moe_split_merge_under_jax_jit_and_errors():
    moe = _moe(Recipe())
    graphdef, state = nnx.split(moe)
    x = _x(6, 12, 32)

    @jax.jit
    def f(state, x):
        return nnx.merge(graphdef, state)(x)

    y, aux = f(state, x)
    y2, aux2 = _call(moe, x)
    assert _rel(y, y2) < 1e-5 and float(aux) == pytest.approx(float(aux2))
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        Fp8MoE(32, 48, 4, num_experts_per_tok=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="in_features"):
        moe(_x(7, 3, 31))


def test_flax_is_optional_and_lazy():
    """``import jaxgemm`` never imports flax; jaxgemm.flax says how to get it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import jaxgemm\n"
        "assert 'flax' not in sys.modules, 'import jaxgemm imported flax'\n"
        "assert callable(jaxgemm.fp8_linear) and jaxgemm.Recipe().fwd == 'fp8'\n"
        "sys.modules['flax'] = None  # simulate flax not installed\n"
        "try:\n"
        "    import jaxgemm.flax\n"
        "except ImportError as e:\n"
        "    assert 'jaxgemm[flax]' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no ImportError')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]

"""The differentiable ops compose with JAX transformations (FP8 recipe):
jit, grad / value_and_grad, vmap, checkpoint, lax.scan, eval_shape, jax.export."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgemm.training import Recipe, fp8_linear, fp8_ragged_dot

T, D, H, E = 24, 64, 48, 3
GS = jnp.array([9, 0, 12], jnp.int32)  # 3 rows past the end


def _normal(seed, *shape, scale=1.0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(scale * rng.standard_normal(shape).astype(np.float32))


def _params():
    return {"w1": _normal(1, D, H, scale=D ** -0.5),
            "we": _normal(2, E, H, H, scale=H ** -0.5),
            "w2": _normal(3, H, D, scale=H ** -0.5)}


def model(params, x, gs, recipe=Recipe()):
    """Dense -> MoE-style grouped -> dense, both ops, FP8 by default."""
    h = jax.nn.gelu(fp8_linear(x, params["w1"], recipe=recipe))
    h = fp8_ragged_dot(h, params["we"], gs, recipe=recipe)
    return fp8_linear(h, params["w2"], recipe=recipe)


def loss_fn(params, x, gs, target):
    return jnp.mean((model(params, x, gs) - target) ** 2)


def _data(seed=4):
    return _normal(seed, T, D), _normal(seed + 1, T, D)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _assert_trees_close(a, b, tol=1e-5):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert u.shape == v.shape and u.dtype == v.dtype
        assert _rel(u, v) <= tol, _rel(u, v)


def _count(jaxpr, name):
    return str(jaxpr).count(name)


def test_jit():
    p, (x, _) = _params(), _data()
    eager = model(p, x, GS)
    jitted = jax.jit(model)(p, x, GS)
    _assert_trees_close(jitted, eager)
    assert np.all(np.asarray(eager)[21:] == 0)  # rows past the groups: grouped out 0


def test_grad_and_value_and_grad():
    p, (x, t) = _params(), _data()
    loss, g = jax.jit(jax.value_and_grad(loss_fn))(p, x, GS, t)
    assert np.isfinite(float(loss))
    assert abs(float(loss) - float(jax.jit(loss_fn)(p, x, GS, t))) < 1e-6 * float(loss)
    # the exact recipe reproduces float32 autodiff of the unquantized model
    HI = jax.lax.Precision.HIGHEST

    def ref_loss(p, x):
        h = jax.nn.gelu(jnp.dot(x, p["w1"], precision=HI))
        h = jax.lax.ragged_dot(h, p["we"], GS, precision=HI)
        return jnp.mean((jnp.dot(h, p["w2"], precision=HI) - t) ** 2)

    ge = jax.jit(jax.grad(
        lambda p, x: jnp.mean((model(p, x, GS, Recipe.exact()) - t) ** 2),
        argnums=(0, 1)))(p, x)
    _assert_trees_close(ge, jax.jit(jax.grad(ref_loss, argnums=(0, 1)))(p, x), tol=1e-5)
    # and the FP8 gradient is close to it
    for k in g:
        assert _rel(g[k], ge[0][k]) < 0.1, k


def test_vmap():
    """vmap goes through the primitives' batching rules: one GEMM in the jaxpr
    whatever the batch size, not a Python loop."""
    p = _params()
    xs = _normal(7, 4, T, D)
    gss = jnp.array([[9, 0, 12], [24, 0, 0], [0, 5, 5], [8, 8, 8]], jnp.int32)
    batched = jax.jit(jax.vmap(model, in_axes=(None, 0, 0)))(p, xs, gss)
    for i in range(4):  # the loop is the test's reference only
        _assert_trees_close(batched[i], jax.jit(model)(p, xs[i], gss[i]))
    jaxpr = jax.make_jaxpr(jax.vmap(model, in_axes=(None, 0, 0)))(p, xs, gss)
    assert _count(jaxpr, "fp8_gemm_nt[") == 2  # the two dense layers
    assert _count(jaxpr, "m_grouped_fp8_gemm_nt_contiguous[") == 1


def test_vmap_of_grad_per_example():
    p, (x, t) = _params(), _data()
    xs, ts = jnp.stack([x, 2 * x]), jnp.stack([t, -t])
    per_ex = jax.jit(jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, None, 0)))(
        p, xs, GS, ts)
    for i in range(2):
        _assert_trees_close(jax.tree.map(lambda a: a[i], per_ex),
                            jax.jit(jax.grad(loss_fn))(p, xs[i], GS, ts[i]))


def test_checkpoint():
    p, (x, t) = _params(), _data()
    remat_loss = jax.checkpoint(loss_fn)
    g = jax.jit(jax.grad(remat_loss))(p, x, GS, t)
    jaxpr = str(jax.make_jaxpr(jax.grad(remat_loss))(p, x, GS, t))
    assert "checkpoint" in jaxpr or "remat" in jaxpr
    _assert_trees_close(g, jax.jit(jax.grad(loss_fn))(p, x, GS, t))


def test_scan_over_stacked_layers():
    n_layers = 3
    ws = _normal(8, n_layers, D, D, scale=D ** -0.5)
    x, t = _data()

    def scanned(ws, x):
        def body(h, w):
            return h + jnp.tanh(fp8_linear(h, w)), None
        return jnp.mean((jax.lax.scan(body, x, ws)[0] - t) ** 2)

    def unrolled(ws, x):
        h = x
        for i in range(n_layers):
            h = h + jnp.tanh(fp8_linear(h, ws[i]))
        return jnp.mean((h - t) ** 2)

    l1, g1 = jax.jit(jax.value_and_grad(scanned, argnums=(0, 1)))(ws, x)
    l2, g2 = jax.jit(jax.value_and_grad(unrolled, argnums=(0, 1)))(ws, x)
    assert abs(float(l1) - float(l2)) <= 1e-5 * abs(float(l2))
    _assert_trees_close(g1, g2, tol=1e-4)
    assert "scan" in str(jax.make_jaxpr(jax.grad(scanned))(ws, x))


def test_eval_shape():
    p, (x, t) = _params(), _data()
    xb = x.astype(jnp.bfloat16)
    loss, g = jax.eval_shape(jax.value_and_grad(loss_fn, argnums=(0, 1)), p, xb, GS, t)
    assert loss.shape == () and loss.dtype == jnp.float32
    assert jax.tree.map(lambda a: (a.shape, a.dtype), g[0]) == \
        jax.tree.map(lambda a: (a.shape, a.dtype), p)
    assert (g[1].shape, g[1].dtype) == (xb.shape, jnp.bfloat16)
    out = jax.eval_shape(fp8_linear, jax.ShapeDtypeStruct((2, 3, 4096, 7168), jnp.bfloat16),
                         jax.ShapeDtypeStruct((7168, 2048), jnp.float32))
    assert (out.shape, out.dtype) == ((2, 3, 4096, 2048), jnp.bfloat16)


def test_export_round_trip():
    p, (x, t) = _params(), _data()

    def train_step(p, x, gs, t):
        loss, g = jax.value_and_grad(loss_fn)(p, x, gs, t)
        return loss, jax.tree.map(lambda w, d: w - 0.1 * d, p, g)

    jitted = jax.jit(train_step)
    exp = jax.export.export(jitted)(p, x, GS, t)
    want = jitted(p, x, GS, t)
    try:  # serialization needs the optional 'flatbuffers' package
        import flatbuffers  # noqa: F401
    except ImportError:
        restored = exp  # still check the exported module runs
    else:
        blob = exp.serialize()
        assert isinstance(blob, (bytes, bytearray)) and len(blob) > 0
        restored = jax.export.deserialize(blob)
    assert restored.in_avals == exp.in_avals
    got = restored.call(p, x, GS, t)
    _assert_trees_close(got, want, tol=1e-6)
    assert float(got[0]) > 0

"""jax.grad / jax.jvp / vmap-of-grad through the raw ops (jaxgemm._autodiff).

The BF16 ops' backward runs on jaxgemm's own GEMMs (transposed operands,
k-grouped for the grouped weights); it is checked here against the gradient
of the dequantized reference in float32 (``jaxgemm.reference``), with a random
cotangent, on ragged and unaligned shapes.  FP8 ops differentiate with respect
to ``c`` (identity) and, through the reference, to the data and scales.
The checks are functions so that ``test_gpu_autodiff.py`` runs them on the
kernels.
"""
from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import reference as R

F32, BF16 = jnp.float32, jnp.bfloat16


def _rand(rng, *shape, dtype=F32):
    return jnp.asarray(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def _close(x, y, tol=2e-4, rel_tol=6e-3):
    x = np.asarray(jnp.asarray(x, F32), np.float64)
    y = np.asarray(jnp.asarray(y, F32), np.float64)
    assert x.shape == y.shape, (x.shape, y.shape)
    assert np.isfinite(x).all(), "non-finite gradient"
    den = (x * x + y * y).sum()
    diff = 0.0 if den == 0 else 1 - 2 * (x * y).sum() / den
    assert diff < tol, f"diff {diff:.2e}"
    # A global metric can hide a row that is wrong (e.g. should be zero).
    rel = np.sqrt(((x - y) ** 2).sum() / max((y * y).sum(), 1e-300))
    assert rel < rel_tol, f"relative error {rel:.2e}"
    err = np.abs(x - y).max(axis=-1)
    assert (err <= 3e-2 * (np.abs(y).max() + 1e-30)).all(), "a row is off"


def _grads(f, args, argnums, w):
    """Gradient of sum(f(*args) * w) with respect to ``argnums``."""
    def loss(*xs):
        return jnp.sum(f(*xs).astype(F32) * w)
    return jax.jit(jax.grad(loss, argnums=argnums))(*args)


# ------------------------------------------------------------------ checks


def check_bf16_dense(m, n, k, *, layout="nt", with_c=False, out_dtype=BF16, seed=0):
    rng = np.random.default_rng(seed)
    a_shape = (m, k) if layout[0] == "n" else (k, m)
    b_shape = (k, n) if layout in ("nn", "tn") else (n, k)
    a, b = _rand(rng, *a_shape, dtype=BF16), _rand(rng, *b_shape, dtype=BF16)
    c = _rand(rng, m, n) if with_c else None
    w = _rand(rng, m, n)
    op = getattr(jaxgemm, f"bf16_gemm_{layout}")

    def ours(a, b, c):
        return op(a, b, c=c, out_dtype=None if with_c else out_dtype)

    def ref(a, b, c):
        a2 = a if layout[0] == "n" else a.T
        b2 = b.T if layout in ("nn", "tn") else b
        return R.bf16_gemm_nt(a2, b2, c, out_dtype=F32 if with_c else out_dtype)

    argnums = (0, 1, 2) if with_c else (0, 1)
    got = _grads(ours, (a, b, c), argnums, w)
    want = _grads(ref, (a, b, c), argnums, w)
    for g, r in zip(got, want):
        assert g.dtype == r.dtype
        _close(g, r)


def check_bf16_m_grouped(sizes, m, n, k, *, seed=0):
    rng = np.random.default_rng(seed)
    g = len(sizes)
    a, b = _rand(rng, m, k, dtype=BF16), _rand(rng, g, n, k, dtype=BF16)
    gs = jnp.asarray(sizes, jnp.int32)
    w = _rand(rng, m, n)
    got = _grads(lambda a, b: jaxgemm.m_grouped_bf16_gemm_nt_contiguous(a, b, gs), (a, b),
                 (0, 1), w)
    want = _grads(lambda a, b: R.m_grouped_bf16_gemm_nt_contiguous(a, b, gs, out_dtype=BF16),
                  (a, b), (0, 1), w)
    for x, y in zip(got, want):
        _close(x, y)
    total = min(sum(max(s, 0) for s in sizes), m)
    assert not np.asarray(got[0][total:], np.float32).any(), "rows past the groups"


def check_bf16_masked(masked, m_max, n, k, *, expected_m=None, seed=0):
    rng = np.random.default_rng(seed)
    g = len(masked)
    a, b = _rand(rng, g, m_max, k, dtype=BF16), _rand(rng, g, n, k, dtype=BF16)
    mm = jnp.asarray(masked, jnp.int32)
    w = _rand(rng, g, m_max, n)
    em = expected_m or max(1, m_max // 2)

    def ours(a, b):
        return jaxgemm.m_grouped_bf16_gemm_nt_masked(a, b, mm, expected_m=em)

    got = _grads(ours, (a, b), (0, 1), w)
    want = _grads(lambda a, b: R.m_grouped_bf16_gemm_nt_masked(
        a, b, mm, expected_m=em, out_dtype=BF16), (a, b), (0, 1), w)
    for x, y in zip(got, want):
        _close(x, y)
    # Rows past masked_m may hold anything (a decode step's stale tokens):
    # they get no gradient and do not leak into B's.
    rows = np.arange(m_max)[None, :] >= np.clip(masked, 0, m_max)[:, None]
    a_nan = jnp.where(jnp.asarray(rows)[..., None], jnp.nan, a).astype(BF16)
    got_nan = _grads(ours, (a_nan, b), (0, 1), w)
    _close(got_nan[1], want[1])
    assert not np.asarray(got_nan[0], np.float32)[rows].any()


def check_bf16_k_grouped(sizes, t, m, n, *, with_c=False, seed=0):
    rng = np.random.default_rng(seed)
    g = len(sizes)
    a, b = _rand(rng, t, m, dtype=BF16), _rand(rng, t, n, dtype=BF16)
    gs = jnp.asarray(sizes, jnp.int32)
    c = _rand(rng, g, m, n) if with_c else None
    w = _rand(rng, g, m, n)
    argnums = (0, 1, 2) if with_c else (0, 1)
    got = _grads(lambda a, b, c: jaxgemm.k_grouped_bf16_gemm_tn_contiguous(a, b, gs, c=c),
                 (a, b, c), argnums, w)
    want = _grads(lambda a, b, c: R.k_grouped_bf16_gemm_tn_contiguous(a, b, gs, c),
                  (a, b, c), argnums, w)
    for x, y in zip(got, want):
        _close(x, y)


def check_fp8_dense(m, n, k, *, seed=0):
    """FP8: d/dc is the identity; d/d(scales) and d/d(data) follow the reference."""
    rng = np.random.default_rng(seed)
    a = jaxgemm.per_token_cast_to_fp8(_rand(rng, m, k))
    b = jaxgemm.per_block_cast_to_fp8(_rand(rng, n, k))
    c = _rand(rng, m, n)
    w = _rand(rng, m, n)

    def ours(ad, sa, bd, sb, c):
        return jaxgemm.fp8_gemm_nt((ad, sa), (bd, sb), c=c)

    def ref(ad, sa, bd, sb, c):
        return R.fp8_gemm_nt(ad, sa, bd, sb, c, out_dtype=F32)

    args = (a[0], a[1], b[0], b[1], c)
    got = _grads(ours, args, (1, 3, 4), w)
    want = _grads(ref, args, (1, 3, 4), w)
    for x, y in zip(got, want):
        _close(x, y)
    np.testing.assert_array_equal(np.asarray(got[2]), np.asarray(w))


# ------------------------------------------------------------- CPU tests


@pytest.mark.parametrize("layout", ["nt", "nn", "tn", "tt"])
def test_bf16_dense_grad(layout):
    check_bf16_dense(37, 72, 96, layout=layout)


@pytest.mark.parametrize("out_dtype", [BF16, F32])
def test_bf16_dense_grad_with_c_and_out_dtype(out_dtype):
    check_bf16_dense(33, 40, 136, with_c=out_dtype == F32, out_dtype=out_dtype)


def test_bf16_m_grouped_grad_ragged():
    # An empty group, a group of 1, and rows past the groups' total.
    check_bf16_m_grouped([7, 0, 1, 20], 40, 24, 64)


def test_bf16_masked_grad():
    check_bf16_masked([0, 5, 16], 16, 24, 40)


@pytest.mark.parametrize("with_c", [False, True])
def test_bf16_k_grouped_grad(with_c):
    check_bf16_k_grouped([9, 0, 30, 1], 48, 16, 24, with_c=with_c)


def test_fp8_dense_grad_scales_and_c():
    check_fp8_dense(20, 136, 256)


def test_fp8_grouped_grad_c_is_identity():
    rng = np.random.default_rng(3)
    gs = jnp.asarray([5, 0, 11], jnp.int32)
    a = jaxgemm.per_token_cast_to_fp8_grouped(_rand(rng, 20, 16), gs)
    b = jaxgemm.per_token_cast_to_fp8_grouped(_rand(rng, 20, 8), gs)
    c = _rand(rng, 3, 16, 8)
    w = _rand(rng, 3, 16, 8)
    g = _grads(lambda c: jaxgemm.k_grouped_fp8_gemm_tn_contiguous(a, b, gs, c=c), (c,), 0, w)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_bf16_jvp_matches_reference():
    rng = np.random.default_rng(4)
    a, b = _rand(rng, 12, 64, dtype=BF16), _rand(rng, 20, 64, dtype=BF16)
    ta, tb = _rand(rng, 12, 64, dtype=BF16), _rand(rng, 20, 64, dtype=BF16)
    _, t = jax.jvp(lambda a, b: jaxgemm.bf16_gemm_nt(a, b, out_dtype=F32), (a, b), (ta, tb))
    _, r = jax.jvp(lambda a, b: R.bf16_gemm_nt(a, b, out_dtype=F32), (a, b), (ta, tb))
    _close(t, r, tol=1e-5)


def test_bf16_grad_same_operand_twice_and_second_order():
    # x feeds both A and B (both JVP terms), then a second derivative.
    rng = np.random.default_rng(5)
    x = _rand(rng, 24, 32)

    def f(x):
        y = jaxgemm.bf16_gemm_nt(x.astype(BF16), x.astype(BF16), out_dtype=F32)
        return jnp.sum(y * y)

    def f_ref(x):
        y = R.bf16_gemm_nt(x.astype(BF16), x.astype(BF16), out_dtype=F32)
        return jnp.sum(y * y)

    _close(jax.grad(f)(x), jax.grad(f_ref)(x))
    v = _rand(rng, 24, 32)
    hvp = jax.jvp(jax.grad(f), (x,), (v,))[1]
    hvp_ref = jax.jvp(jax.grad(f_ref), (x,), (v,))[1]
    _close(hvp, hvp_ref, tol=1e-3)


def test_vmap_of_grad():
    rng = np.random.default_rng(6)
    a = _rand(rng, 3, 8, 64, dtype=BF16)
    b = _rand(rng, 16, 64, dtype=BF16)

    def loss(a, b):
        return jnp.sum(jaxgemm.bf16_gemm_nt(a, b, out_dtype=F32) ** 2)

    def loss_ref(a, b):
        return jnp.sum(R.bf16_gemm_nt(a, b, out_dtype=F32) ** 2)

    got = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(0, None))(a, b)
    want = jax.vmap(jax.grad(loss_ref, argnums=(0, 1)), in_axes=(0, None))(a, b)
    for x, y in zip(got, want):
        _close(x, y)

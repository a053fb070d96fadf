"""Every op (reference path on CPU) against the float64 NumPy oracle."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgemm as jg
from jaxgemm import _oracle as O
from jaxgemm import reference as R

from helpers import BF16, F32, assert_close, fp8_block, fp8_token, rand, transpose

FP8_DENSE = {"nt": jg.fp8_gemm_nt, "nn": jg.fp8_gemm_nn, "tn": jg.fp8_gemm_tn,
             "tt": jg.fp8_gemm_tt}
BF16_DENSE = {"nt": jg.bf16_gemm_nt, "nn": jg.bf16_gemm_nn, "tn": jg.bf16_gemm_tn,
              "tt": jg.bf16_gemm_tt}


# storage: A [M,K] for nt/nn, [K,M] for tn/tt; B [N,K] for nt/tt, [K,N] for nn/tn
def _layout_fp8(a, b, lay):
    return ((a if lay[0] == "n" else transpose(a)),
            (transpose(b) if lay[1] == "n" else b))


def _layout_bf16(a, b, lay):
    return (a if lay[0] == "n" else a.T), (b.T if lay[1] == "n" else b)


DENSE_SHAPES = [(1, 1, 128), (64, 100, 256), (37, 129, 300), (5, 7, 1), (0, 16, 128),
                (16, 0, 128), (3, 4, 0)]


@pytest.mark.parametrize("m,n,k", DENSE_SHAPES)
@pytest.mark.parametrize("lay", ["nt", "nn", "tn", "tt"])
def test_fp8_dense(m, n, k, lay):
    rng = np.random.default_rng(m * 1000 + n + k)
    a, b = _layout_fp8(fp8_token(rng, m, k), fp8_block(rng, n, k), lay)
    out = FP8_DENSE[lay](a, b)
    assert out.dtype == BF16
    assert_close(out, O.gemm(a, b, None, lay))


@pytest.mark.parametrize("lay", ["nt", "tn", "nn"])
@pytest.mark.parametrize("out_dtype", [None, F32])
def test_fp8_dense_per_row_b_and_c(lay, out_dtype):
    rng = np.random.default_rng(11)
    m, n, k = 33, 130, 384
    a, b = _layout_fp8(fp8_token(rng, m, k), fp8_token(rng, n, k), lay)  # per-row B
    c = rand(rng, m, n)
    out = FP8_DENSE[lay](a, b, c=c, out_dtype=out_dtype)
    assert out.dtype == F32
    assert_close(out, O.gemm(a, b, c, lay))
    out = FP8_DENSE[lay](a, b, out_dtype=F32)
    assert out.dtype == F32
    assert_close(out, O.gemm(a, b, None, lay))


@pytest.mark.parametrize("m,n,k", DENSE_SHAPES[:4])
@pytest.mark.parametrize("lay", ["nt", "nn", "tn", "tt"])
def test_bf16_dense(m, n, k, lay):
    rng = np.random.default_rng(m + n * 7 + k)
    a, b = _layout_bf16(rand(rng, m, k, dtype=BF16), rand(rng, n, k, dtype=BF16), lay)
    assert_close(BF16_DENSE[lay](a, b), O.gemm(a, b, None, lay))
    c = rand(rng, m, n)
    assert_close(BF16_DENSE[lay](a, b, c=c), O.gemm(a, b, c, lay))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(0, 150), n=st.integers(0, 150), k=st.integers(0, 400),
       lay=st.sampled_from(["nt", "nn", "tn", "tt"]), per_row=st.booleans(),
       with_c=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_fp8_dense_hypothesis(m, n, k, lay, per_row, with_c, seed):
    rng = np.random.default_rng(seed)
    b = fp8_token(rng, n, k) if per_row else fp8_block(rng, n, k)
    a, b = _layout_fp8(fp8_token(rng, m, k), b, lay)
    c = rand(rng, m, n) if with_c else None
    out = FP8_DENSE[lay](a, b, c=c)
    assert out.shape == (m, n)
    assert_close(out, O.gemm(a, b, c, lay))


CONTIG_CASES = [
    (200, [37, 0, 90, 1]),   # ragged, empty group, group of 1, rows past the sum
    (64, [64]),              # one group
    (50, [1] * 5),           # groups of 1, sum < M
    (0, [0, 0, 0]),          # M = 0
    (40, [0, 0]),            # all groups empty: all zeros
    (100, [-5, 200, 10]),    # bad sizes: clamp (negative -> 0, offsets clamped to M)
    (30, [10, -3, 10, 2**31 - 1]),
]


@pytest.mark.parametrize("m,sizes", CONTIG_CASES)
def test_m_grouped_contiguous(m, sizes):
    rng = np.random.default_rng(m + len(sizes))
    n, k = 72, 300
    g = len(sizes)
    gs = jnp.asarray(sizes, jnp.int32)
    a, b = fp8_token(rng, m, k), fp8_block(rng, g, n, k)
    out = jg.m_grouped_fp8_gemm_nt_contiguous(a, b, gs)
    ref = O.m_grouped_contiguous(a, b, sizes)
    assert out.shape == (m, n) and out.dtype == BF16
    assert_close(out, ref)
    end = O.bounds(sizes, m)[1][-1]
    assert np.all(O.to64(out)[end:] == 0)
    ab, bb = rand(rng, m, k, dtype=BF16), rand(rng, g, n, k, dtype=BF16)
    out = jg.m_grouped_bf16_gemm_nt_contiguous(ab, bb, gs, out_dtype=F32)
    assert out.dtype == F32
    assert_close(out, O.m_grouped_contiguous(ab, bb, sizes))


MASKED_CASES = [([0, 1, 40], 40), ([17, 64], 64), ([-1, 100, 3], 8), ([0, 0], 0)]


@pytest.mark.parametrize("masked_m,m_max", MASKED_CASES)
def test_m_grouped_masked(masked_m, m_max):
    rng = np.random.default_rng(m_max + 3)
    g, n, k = len(masked_m), 130, 256
    mm = jnp.asarray(masked_m, jnp.int32)
    a, b = fp8_token(rng, g, m_max, k), fp8_block(rng, g, n, k)
    out = jg.m_grouped_fp8_gemm_nt_masked(a, b, mm, expected_m=max(1, m_max // 2))
    assert out.shape == (g, m_max, n)
    assert_close(out, O.m_grouped_masked(a, b, masked_m))
    for i, v in enumerate(O.masked_sizes(masked_m, m_max)):
        assert np.all(O.to64(out[i, v:]) == 0)
    ab, bb = rand(rng, g, m_max, k, dtype=BF16), rand(rng, g, n, k, dtype=BF16)
    out = jg.m_grouped_bf16_gemm_nt_masked(ab, bb, mm)
    assert_close(out, O.m_grouped_masked(ab, bb, masked_m))


K_CASES = [
    (400, [130, 0, 1, 200]),  # ragged K incl. an empty group, tokens past the sum
    (256, [128, 128]),
    (129, [129]),
    (60, [0, 0, 0]),           # all empty: D = C
    (300, [-5, 129, 1000, 7]),  # bad sizes: clamp semantics
]


@pytest.mark.parametrize("k_total,sizes", K_CASES)
@pytest.mark.parametrize("with_c", [False, True])
def test_k_grouped(k_total, sizes, with_c):
    rng = np.random.default_rng(k_total + len(sizes))
    m, n, g = 40, 24, len(sizes)
    gs = jnp.asarray(sizes, jnp.int32)
    x, y = rand(rng, k_total, m), rand(rng, k_total, n)
    a = jg.per_token_cast_to_fp8_grouped(x, gs)
    b = jg.per_token_cast_to_fp8_grouped(y, gs)
    c = rand(rng, g, m, n) if with_c else None
    out = jg.k_grouped_fp8_gemm_tn_contiguous(a, b, gs, c=c)
    assert out.shape == (g, m, n) and out.dtype == F32
    ref = O.k_grouped(a, b, sizes, c)
    assert_close(out, ref)
    for i, (s0, e0) in enumerate(zip(*O.bounds(sizes, k_total))):
        if s0 == e0:  # empty group: exactly C (or 0)
            np.testing.assert_array_equal(O.to64(out[i]),
                                          O.to64(c[i]) if with_c else 0.0)
    xb, yb = x.astype(BF16), y.astype(BF16)
    out = jg.k_grouped_bf16_gemm_tn_contiguous(xb, yb, gs, c=c)
    assert_close(out, O.k_grouped(xb, yb, sizes, c))


def test_k_grouped_tokens_past_sum_are_ignored():
    # garbage (even inf) in tokens past sum(group_sizes) must not leak in (bf16 twin)
    rng = np.random.default_rng(12)
    x, y = rand(rng, 100, 8, dtype=BF16), rand(rng, 100, 8, dtype=BF16)
    x = x.at[90:].set(jnp.inf)
    gs = jnp.asarray([50, 40], jnp.int32)
    out = jg.k_grouped_bf16_gemm_tn_contiguous(x, y, gs)
    assert np.all(np.isfinite(O.to64(out)))
    assert_close(out, O.k_grouped(np.asarray(x[:90]), np.asarray(y[:90]), [50, 40]))


def test_g_zero_grouped():
    rng = np.random.default_rng(13)
    gs = jnp.zeros((0,), jnp.int32)
    a, b = fp8_token(rng, 5, 128), fp8_block(rng, 0, 16, 128)
    out = jg.m_grouped_fp8_gemm_nt_contiguous(a, b, gs)
    assert out.shape == (5, 16) and np.all(O.to64(out) == 0)
    x = rand(rng, 10, 4)
    qa = jg.per_token_cast_to_fp8_grouped(x, gs)
    out = jg.k_grouped_fp8_gemm_tn_contiguous(qa, qa, gs)
    assert out.shape == (0, 4, 4)


def test_reference_is_differentiable():
    # the reference implementations are plain jnp: jax.grad works through them
    rng = np.random.default_rng(14)
    a, b = rand(rng, 30, 64), rand(rng, 3, 8, 64)
    gs = jnp.asarray([10, 0, 15], jnp.int32)

    def loss(a, b):
        return jnp.sum(R.m_grouped_bf16_gemm_nt_contiguous(a, b, gs, out_dtype=F32) ** 2)

    ga, gb = jax.grad(loss, argnums=(0, 1))(a, b)
    d = O.m_grouped_contiguous(a, b, [10, 0, 15])
    np.testing.assert_allclose(np.asarray(gb[1]), 0.0)
    ga_ref = np.zeros((30, 64))
    ga_ref[:10] = 2 * d[:10] @ O.to64(b[0])
    ga_ref[10:25] = 2 * d[10:25] @ O.to64(b[2])
    np.testing.assert_allclose(np.asarray(ga), ga_ref, rtol=1e-4, atol=1e-4)

    x, y = rand(rng, 50, 6), rand(rng, 50, 5)
    gk = jnp.asarray([20, 25], jnp.int32)
    gx = jax.grad(lambda x: jnp.sum(R.k_grouped_bf16_gemm_tn_contiguous(x, y, gk)))(x)
    ref = np.zeros((50, 6))
    ref[:45] = np.broadcast_to(O.to64(y)[:45].sum(1, keepdims=True), (45, 6))
    np.testing.assert_allclose(np.asarray(gx), ref, rtol=1e-5, atol=1e-5)

    am = rand(rng, 2, 6, 64)
    mm = jnp.asarray([3, 6], jnp.int32)
    g = jax.grad(lambda am: jnp.sum(R.m_grouped_bf16_gemm_nt_masked(
        am, b[:2], mm, expected_m=6, out_dtype=F32)))(am)
    assert np.all(np.asarray(g[0, 3:]) == 0) and np.any(np.asarray(g[0, :3]) != 0)

    qa = jg.per_token_cast_to_fp8(rand(rng, 4, 128))
    qb = jg.per_block_cast_to_fp8(rand(rng, 8, 128))
    gsa = jax.grad(lambda s: jnp.sum(R.fp8_gemm_nt(qa[0], s, *qb, out_dtype=F32)))(qa[1])
    assert gsa.shape == qa[1].shape and np.all(np.isfinite(np.asarray(gsa)))


def test_reference_jits():
    rng = np.random.default_rng(15)
    a, b = fp8_token(rng, 20, 256), fp8_block(rng, 2, 16, 256)
    gs = jnp.asarray([5, 9], jnp.int32)
    f = jax.jit(lambda a0, a1, b0, b1, gs: R.m_grouped_fp8_gemm_nt_contiguous(
        a0, a1, b0, b1, gs, out_dtype=BF16))
    assert_close(f(*a, *b, gs), O.m_grouped_contiguous(a, b, [5, 9]))

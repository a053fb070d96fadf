"""Quantization helpers: round-trip error bounds, zeros, UE8M0, layouts."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import jaxgemm as jg
from jaxgemm import _oracle as O
from jaxgemm import layout
from jaxgemm.quantize import FP8_MAX

from helpers import rand

E4M3_HALF_ULP = 2.0 ** -4  # relative rounding error of a normal e4m3 value
E4M3_SUB_HALF_ULP = 2.0 ** -10  # absolute rounding error below the normal range (x scale)


def _check_roundtrip(x, data, scale):
    """|deq - x| <= 2^-4 |x| + 2^-10 scale for every element; norm bound too."""
    x64 = O.to64(x)
    deq = O.to64(jg.dequantize(data, scale))
    s = O.dequant(np.ones(x64.shape, np.float32), scale)
    assert np.all(np.isfinite(deq))
    bound = E4M3_HALF_ULP * np.abs(x64) + E4M3_SUB_HALF_ULP * s
    assert np.all(np.abs(deq - x64) <= bound * (1 + 1e-6) + 1e-37)
    nx = np.linalg.norm(x64)
    if nx > 0:
        assert np.linalg.norm(deq - x64) <= E4M3_HALF_ULP * nx


def test_oracle_block_matches_layout():
    assert O.SCALE_BLOCK == layout.SCALE_BLOCK
    assert FP8_MAX == float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max) == 448.0


@pytest.mark.parametrize("shape", [(4, 128), (3, 300), (5, 7), (2, 1), (6, 256 + 129)])
@pytest.mark.parametrize("ue8m0", [False, True])
def test_per_token_roundtrip(shape, ue8m0):
    rng = np.random.default_rng(hash((shape, ue8m0)) % 2**32)
    x = rand(rng, *shape) * 10.0
    data, scale = jg.per_token_cast_to_fp8(x, use_ue8m0=ue8m0)
    assert data.dtype == jnp.float8_e4m3fn and data.shape == shape
    assert scale.dtype == jnp.float32
    assert scale.shape == layout.per_token_scale_shape(*shape)
    full = O.dequant(np.ones(shape, np.float32), scale)
    _check_roundtrip(x, data, scale)
    # the bound with explicit per-element scales, via the oracle's dequantize
    np.testing.assert_allclose(O.to64(jg.dequantize(data, scale)), O.dequant(data, scale),
                               rtol=2e-7)
    assert np.all(full > 0)
    # every block's largest element maps to at most 448 (no saturation needed)
    assert float(jnp.max(jnp.abs(data.astype(jnp.float32)))) <= FP8_MAX


def test_ue8m0_scales_are_powers_of_two_and_round_up():
    rng = np.random.default_rng(1)
    x = rand(rng, 8, 512) * jnp.asarray(2.0 ** rng.integers(-20, 20, (8, 1)), jnp.float32)
    x = x.at[0, :128].set(448.0 * 2.0 ** -3)  # amax/448 exactly a power of two
    _, scale = jg.per_token_cast_to_fp8(x, use_ue8m0=True)
    s = np.asarray(scale, np.float64)
    m, _ = np.frexp(s)
    assert np.all(m == 0.5), "not powers of two"
    assert s[0, 0] == 2.0 ** -3
    amax = np.abs(O.to64(x)).reshape(8, 4, 128).max(-1)
    assert np.all(s >= amax / 448.0)  # rounded up: |x| / s <= 448
    assert np.all(s < 2 * amax / 448.0)
    _, sb = jg.per_block_cast_to_fp8(x, use_ue8m0=True)
    assert np.all(np.frexp(np.asarray(sb, np.float64))[0] == 0.5)


def test_all_zero_blocks_give_exact_zeros():
    x = np.ones((3, 300), np.float32)
    x[1] = 0.0
    x[0, 128:256] = 0.0
    x[2, 256:] = -0.0
    for ue8m0 in (False, True):
        d, s = jg.per_token_cast_to_fp8(jnp.asarray(x), use_ue8m0=ue8m0)
        assert np.all(np.isfinite(np.asarray(s))) and np.all(np.asarray(s) > 0)
        assert not np.any(np.isnan(O.to64(d)))
        deq = O.to64(jg.dequantize(d, s))
        assert np.all(deq[x == 0] == 0.0)
        np.testing.assert_array_equal(deq, x)  # ones and zeros are exact
    d, s = jg.per_block_cast_to_fp8(jnp.zeros((130, 260), jnp.bfloat16))
    assert np.all(O.to64(jg.dequantize(d, s)) == 0.0)
    assert np.all(np.isfinite(np.asarray(s))) and np.all(np.asarray(s) > 0)


def test_tiny_values_no_inf_nan():
    x = jnp.full((2, 128), 1e-40, jnp.float32).at[1].set(3e-38)  # denormal / tiny
    d, s = jg.per_token_cast_to_fp8(x)
    assert np.all(np.isfinite(np.asarray(s))) and np.all(np.isfinite(O.to64(d)))
    assert np.all(np.abs(O.to64(jg.dequantize(d, s)) - O.to64(x)) <= 1e-37)


def test_saturating_cast():
    from jaxgemm.quantize import _to_fp8
    out = O.to64(_to_fp8(jnp.asarray([1e6, -1e6, 448.0, 460.0, -500.0], jnp.float32)))
    np.testing.assert_array_equal(out, [448, -448, 448, 448, -448])


def test_leading_axes():
    rng = np.random.default_rng(2)
    x = rand(rng, 2, 3, 200)
    d, s = jg.per_token_cast_to_fp8(x)
    d2, s2 = jg.per_token_cast_to_fp8(x.reshape(6, 200))
    assert s.shape == (2, 3, 2)
    np.testing.assert_array_equal(O.to64(d).reshape(6, 200), O.to64(d2))
    np.testing.assert_array_equal(np.asarray(s).reshape(6, 2), np.asarray(s2))
    _check_roundtrip(x, d, s)


@pytest.mark.parametrize("shape", [(128, 128), (130, 300), (1, 5), (3, 129, 257)])
def test_per_block_roundtrip(shape):
    rng = np.random.default_rng(3)
    w = rand(rng, *shape)
    d, s = jg.per_block_cast_to_fp8(w)
    assert d.shape == shape
    assert s.shape == shape[:-2] + layout.per_block_scale_shape(*shape[-2:])
    _check_roundtrip(w, d, s)
    # scale = amax of the 128x128 block / 448 (numpy construction)
    w64 = O.to64(w)
    n, k = shape[-2:]
    lead = w64.reshape(-1, n, k)
    s_np = np.zeros((lead.shape[0],) + layout.per_block_scale_shape(n, k))
    for g in range(lead.shape[0]):
        for i in range(s_np.shape[1]):
            for j in range(s_np.shape[2]):
                s_np[g, i, j] = np.abs(lead[g, i * 128:(i + 1) * 128,
                                            j * 128:(j + 1) * 128]).max() / 448.0
    np.testing.assert_allclose(np.asarray(s).reshape(s_np.shape), s_np, rtol=1e-6)


def test_per_block_grouped_matches_per_group():
    rng = np.random.default_rng(4)
    w = rand(rng, 3, 70, 200)
    d, s = jg.per_block_cast_to_fp8_grouped(w)
    for g in range(3):
        dg, sg = jg.per_block_cast_to_fp8(w[g])
        np.testing.assert_array_equal(O.to64(d[g]), O.to64(dg))
        np.testing.assert_array_equal(np.asarray(s[g]), np.asarray(sg))
    with pytest.raises(ValueError, match="w must be"):
        jg.per_block_cast_to_fp8_grouped(w[0])


def test_dequantize_per_row_and_transposed():
    rng = np.random.default_rng(5)
    w = rand(rng, 200, 300)
    d, s = jg.per_token_cast_to_fp8(w)  # per-row scales [N, ceil(K/128)]
    np.testing.assert_allclose(O.to64(jg.dequantize(d.T, s.T)), O.dequant(d, s).T,
                               rtol=2e-7)
    with pytest.raises(ValueError, match="scale has shape"):
        jg.dequantize(d, s[:, :1])
    with pytest.raises(ValueError, match="same rank"):
        jg.dequantize(d, s[0])


K_GROUP_CASES = [
    (400, [130, 0, 1, 200]),     # ragged, an empty group, tokens past the sum
    (256, [128, 128]),           # aligned
    (300, [300]),                # one group
    (50, [0, 0, 0]),             # all empty
    (300, [-5, 129, 1000, 7]),   # bad sizes: clamp semantics
    (0, [0, 0]),                 # no tokens
]


@pytest.mark.parametrize("k_total,sizes", K_GROUP_CASES)
@pytest.mark.parametrize("ue8m0", [False, True])
def test_per_token_grouped_layout(k_total, sizes, ue8m0):
    rng = np.random.default_rng(6)
    m = 24
    x = rand(rng, k_total, m)
    gs = jnp.asarray(sizes, jnp.int32)
    d, s = jax.jit(lambda x, gs: jg.per_token_cast_to_fp8_grouped(
        x, gs, use_ue8m0=ue8m0))(x, gs)
    rows = layout.k_grouped_scale_rows(k_total, len(sizes))
    assert d.shape == (k_total, m) and d.dtype == jnp.float8_e4m3fn
    assert s.shape == (rows, m) and s.dtype == jnp.float32
    # scales against the NumPy construction of the group-aligned layout
    s_np = np.maximum(O.per_token_cast_grouped_scales(x, sizes, rows),
                      np.finfo(np.float32).tiny)
    if ue8m0:
        s_np = 2.0 ** np.ceil(np.log2(s_np))
    used = sum(-(-e // 128) for e in np.diff([0] + O.bounds(sizes, k_total)[1]))
    np.testing.assert_allclose(np.asarray(s)[:used], s_np[:used], rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(s))) and np.all(np.asarray(s) > 0)
    # tokens past the last group quantize to 0; the rest round-trip
    row = O.k_grouped_rows(sizes, k_total)
    deq = O.to64(jg.dequantize_k_grouped(d, s, gs))
    np.testing.assert_allclose(deq, O.dequant_k_grouped(d, s, sizes), rtol=2e-7)
    assert np.all(deq[row < 0] == 0) and np.all(O.to64(d)[row < 0] == 0)
    x64 = O.to64(x)
    full = np.where(row[:, None] >= 0, np.asarray(s, np.float64)[np.maximum(row, 0)], 0)
    ok = row >= 0
    assert np.all(np.abs(deq[ok] - x64[ok]) <= (E4M3_HALF_ULP * np.abs(x64[ok])
                                                 + E4M3_SUB_HALF_ULP * full[ok]) * (1 + 1e-6))


def test_rows_bound_is_tight_enough():
    # sum_g ceil(k_g/128) never exceeds layout.k_grouped_scale_rows
    rng = np.random.default_rng(7)
    for _ in range(200):
        g = int(rng.integers(1, 9))
        k_total = int(rng.integers(0, 2000))
        cuts = np.sort(rng.integers(0, k_total + 1, g - 1))
        sizes = np.diff(np.concatenate([[0], cuts, [k_total]]))
        need = int(sum(-(-int(v) // 128) for v in sizes))
        assert need <= layout.k_grouped_scale_rows(k_total, g)


def test_quantize_rejects_non_float():
    with pytest.raises(TypeError, match="x has dtype int32"):
        jg.per_token_cast_to_fp8(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(TypeError, match="w has dtype"):
        jg.per_block_cast_to_fp8(jnp.ones((2, 3), jnp.float8_e4m3fn))
    with pytest.raises(ValueError, match="at least 2 axes"):
        jg.per_block_cast_to_fp8(jnp.ones((3,)))


def test_quantize_jits_and_fuses_with_static_shapes():
    rng = np.random.default_rng(8)
    x = rand(rng, 64, 256, dtype=jnp.bfloat16)
    d1, s1 = jax.jit(jg.per_token_cast_to_fp8)(x)
    d2, s2 = jg.per_token_cast_to_fp8(x)
    np.testing.assert_array_equal(O.to64(d1), O.to64(d2))
    np.testing.assert_array_equal(np.asarray(s1), np.asarray(s2))

"""m-grouped FP8 kernels (contiguous, masked) on a Hopper GPU against the oracle.

The fixtures install the kernels explicitly, so the tests exercise them even
when JAXGEMM_GROUPED_KERNELS=0 is set in the environment.  Ragged, unaligned, empty and oversized groups.
"""
from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _config, _kernels, _oracle as O
from jaxgemm._backend import hopper_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not hopper_available(), reason="needs a Hopper (sm_90) GPU"),
]

_rng = np.random.default_rng(77)


@pytest.fixture(autouse=True)
def grouped_kernels(monkeypatch):
    monkeypatch.setitem(_kernels.KERNEL_IMPLS, "m_grouped_fp8_gemm_nt_contiguous",
                        _kernels.m_grouped_fp8_gemm_nt_contiguous)
    monkeypatch.setitem(_kernels.KERNEL_IMPLS, "m_grouped_fp8_gemm_nt_masked",
                        _kernels.m_grouped_fp8_gemm_nt_masked)
    jax.clear_caches()
    yield
    jax.clear_caches()


@pytest.fixture(params=["cp.async", "tma-rows"])
def scale_path(request, monkeypatch):
    """Both ways the m-grouped FP8 kernels load their scales, forced whatever
    the tile: a cp.async warp, or TMA row boxes from the tile's first row,
    whatever its alignment (the default for 256-row tiles)."""
    monkeypatch.setenv("JAXGEMM_TMA_SCALES", {"cp.async": "0", "tma-rows": "2"}[request.param])
    return request.param


def _check(out, ref, tol=1e-3):
    out = np.asarray(out, np.float64)
    assert np.isfinite(out).all()
    denom = (out * out + ref * ref).sum()
    d = 1 - 2 * (out * ref).sum() / denom if denom else 0.0
    assert d < tol, d
    assert np.abs(out - ref).max() <= 2e-2 * (np.abs(ref).max() + 1e-9)


def _operands(m, g, n, k):
    a = jnp.asarray(_rng.standard_normal((m, k), np.float32))
    b = jnp.asarray(_rng.standard_normal((g, n, k), np.float32))
    return jaxgemm.per_token_cast_to_fp8(a), jaxgemm.per_block_cast_to_fp8_grouped(b)


@pytest.mark.parametrize("sizes", [
    [100, 0, 37, 300, 1],          # ragged, an empty group, a group of 1
    [512, 512, 512, 512],          # aligned
    [0, 0, 0, 0],                  # all empty: output all zero
    [700, 0, 0, 900],              # sum > M: clamped
    [-5, 200, 64, 30],             # negative: clamped to 0
])
@pytest.mark.parametrize("cfg", [None, (64, 32, 8, 1), (128, 96, 6, 2), (256, 128, 3, 2)])
def test_contiguous(sizes, cfg, scale_path):
    m, n, k = 1501, 520, 896
    g = len(sizes)
    qa, qb = _operands(m, g, n, k)
    gs = jnp.asarray(sizes, jnp.int32)
    jnp.full((m, n), jnp.nan, jnp.bfloat16).block_until_ready()
    f = jax.jit(lambda a, b, s: jaxgemm.m_grouped_fp8_gemm_nt_contiguous(a, b, s))
    if cfg:
        with _kernels.force_config(_config.GemmConfig(*cfg)):
            out = f(qa, qb, gs)
    else:
        out = f(qa, qb, gs)
    _check(out, O.m_grouped_contiguous(qa, qb, np.asarray(sizes)))


@pytest.mark.parametrize("cfg", [(128, 192, 4, 1), (128, 128, 5, 1), (128, 192, 4, 2),
                                 (128, 96, 6, 2)])
def test_contiguous_small_groups(cfg, scale_path):
    """Many groups of a few rows, as a Zipf-skewed MoE routes them.  On 128-row
    FP8 tiles the second math warpgroup skips a tile whose group ends within
    its first 64 rows (it only releases the stages), so group ends fall at
    1, 63, 64, 65, 127, 128 and 129 rows of a tile, next to full tiles and
    empty groups, on the serial (192 columns) and pipelined (<= 128)
    schedules, with and without a cluster; rows past the last group are zero."""
    sizes = [1, 63, 64, 65, 0, 127, 128, 129, 20, 3, 200, 7]
    m, n, k = sum(sizes) + 50, 392, 640
    qa, qb = _operands(m, len(sizes), n, k)
    gs = jnp.asarray(sizes, jnp.int32)
    jnp.full((m, n), jnp.nan, jnp.bfloat16).block_until_ready()
    with _kernels.force_config(_config.GemmConfig(*cfg)):
        out = jax.jit(lambda a, b, s: jaxgemm.m_grouped_fp8_gemm_nt_contiguous(a, b, s))(qa, qb, gs)
    _check(out, O.m_grouped_contiguous(qa, qb, np.asarray(sizes)))


@pytest.mark.parametrize("masked", [[0, 1, 64, 200], [200, 200, 200, 200], [17, 0, 130, 5],
                                    [300, -4, 199, 1]])
@pytest.mark.parametrize("zero_rows", [True, False])
def test_masked(masked, zero_rows, scale_path):
    g, m_max, n, k = 4, 200, 264, 640
    a = jnp.asarray(_rng.standard_normal((g, m_max, k), np.float32))
    b = jnp.asarray(_rng.standard_normal((g, n, k), np.float32))
    qa = jaxgemm.per_token_cast_to_fp8(a)
    qb = jaxgemm.per_block_cast_to_fp8_grouped(b)
    mm = jnp.asarray(masked, jnp.int32)
    out = jax.jit(lambda a, b, s: jaxgemm.m_grouped_fp8_gemm_nt_masked(
        a, b, s, expected_m=64, zero_masked_rows=zero_rows))(qa, qb, mm)
    ref = O.m_grouped_masked(qa, qb, np.asarray(masked))
    if zero_rows:
        _check(out, ref)
    else:  # only the valid rows are defined
        valid = np.arange(m_max)[None, :] < np.clip(masked, 0, m_max)[:, None]
        out = np.asarray(out, np.float64)
        _check(np.where(valid[..., None], out, 0.0), ref)


# expected_m 500 over 4 groups at K = 640: the heuristic's 256x128 c2 becomes
# 128x128 c2 (MASKED_128_ROW_MAX_K); sizes cross tile edges, one group empty,
# one clipped at M_max.
def test_masked_short_k_takes_128_row_tiles(scale_path):
    g, m_max, n, k, expected = 4, 560, 1544, 640, 500
    cfg = _kernels._grouped_config(expected, n, k, jnp.bfloat16, g, None, masked=True)
    assert (cfg.block_m, cfg.block_n, cfg.cluster) == (128, 128, 2)
    a = jnp.asarray(_rng.standard_normal((g, m_max, k), np.float32))
    b = jnp.asarray(_rng.standard_normal((g, n, k), np.float32))
    qa = jaxgemm.per_token_cast_to_fp8(a)
    qb = jaxgemm.per_block_cast_to_fp8_grouped(b)
    masked = [431, 0, 600, 257]
    jnp.full((g, m_max, n), jnp.nan, jnp.bfloat16).block_until_ready()
    out = jax.jit(lambda a, b, s: jaxgemm.m_grouped_fp8_gemm_nt_masked(
        a, b, s, expected_m=expected))(qa, qb, jnp.asarray(masked, jnp.int32))
    _check(out, O.m_grouped_masked(qa, qb, np.asarray(masked)))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("cfg", [None, (64, 64, 6, 1), (128, 256, 3, 2), (256, 128, 3, 1)])
def test_bf16_grouped(masked, cfg, monkeypatch):
    name = "m_grouped_bf16_gemm_nt_masked" if masked else "m_grouped_bf16_gemm_nt_contiguous"
    monkeypatch.setitem(_kernels.KERNEL_IMPLS, name, getattr(_kernels, name))
    jax.clear_caches()
    n, k = 264, 520
    if masked:
        sizes = [0, 1, 150, 200]
        a = jnp.asarray(_rng.standard_normal((4, 200, k), np.float32)).astype(jnp.bfloat16)
        fn = lambda a, b, s: jaxgemm.m_grouped_bf16_gemm_nt_masked(a, b, s, expected_m=64)  # noqa: E731
    else:
        sizes = [100, 0, 37, 300, 1]
        a = jnp.asarray(_rng.standard_normal((500, k), np.float32)).astype(jnp.bfloat16)
        fn = lambda a, b, s: jaxgemm.m_grouped_bf16_gemm_nt_contiguous(a, b, s)  # noqa: E731
    b = jnp.asarray(_rng.standard_normal((len(sizes), n, k), np.float32)).astype(jnp.bfloat16)
    gs = jnp.asarray(sizes, jnp.int32)
    if cfg:
        with _kernels.force_config(_config.GemmConfig(*cfg)):
            out = jax.jit(fn)(a, b, gs)
    else:
        out = jax.jit(fn)(a, b, gs)
    ref = (O.m_grouped_masked if masked else O.m_grouped_contiguous)(a, b, np.asarray(sizes))
    _check(out, ref)


@pytest.fixture
def k_grouped_kernel(monkeypatch):
    for name in ("k_grouped_fp8_gemm_tn_contiguous", "k_grouped_bf16_gemm_tn_contiguous"):
        monkeypatch.setitem(_kernels.KERNEL_IMPLS, name, getattr(_kernels, name))
    jax.clear_caches()
    yield
    jax.clear_caches()


@pytest.mark.parametrize("sizes", [[300, 0, 650, 1], [512, 512], [0, 0, 0], [1000, 900],
                                   [-3, 130, 255]])
@pytest.mark.parametrize("accumulate", [False, True])
def test_k_grouped(sizes, accumulate, k_grouped_kernel):
    k_total, m, n = 1200, 384, 264
    g = len(sizes)
    gs = jnp.asarray(sizes, jnp.int32)
    x = jnp.asarray(_rng.standard_normal((k_total, m), np.float32))
    y = jnp.asarray(_rng.standard_normal((k_total, n), np.float32))
    qa = jaxgemm.per_token_cast_to_fp8_grouped(x, gs)
    qb = jaxgemm.per_token_cast_to_fp8_grouped(y, gs)
    c = jnp.asarray(_rng.standard_normal((g, m, n), np.float32)) if accumulate else None
    out = jax.jit(lambda a, b, s, c: jaxgemm.k_grouped_fp8_gemm_tn_contiguous(a, b, s, c=c))(
        qa, qb, gs, c)
    ref = O.k_grouped(qa, qb, np.asarray(sizes), None if c is None else np.asarray(c))
    out = np.asarray(out, np.float64)
    assert np.isfinite(out).all()
    denom = (out * out + ref * ref).sum()
    assert (1 - 2 * (out * ref).sum() / denom if denom else 0.0) < 1e-5
    assert np.abs(out - ref).max() <= 1e-3 * (np.abs(ref).max() + 1e-9)


@pytest.mark.parametrize("fp8", [True, False])
def test_k_grouped_reads_c_over_many_tiles(fp8, k_grouped_kernel):
    # C is read by the kernel (not aliased to D): on 3 SMs each CTA walks many
    # (group, tile) units, reusing its C buffer and barrier phase; an empty
    # group gives D[g] = C[g]; C comes back unchanged.
    sizes, k_total, m, n = [300, 0, 650, 1], 1200, 384, 264
    gs = jnp.asarray(sizes, jnp.int32)
    x = jnp.asarray(_rng.standard_normal((k_total, m), np.float32))
    y = jnp.asarray(_rng.standard_normal((k_total, n), np.float32))
    c = jnp.asarray(_rng.standard_normal((len(sizes), m, n), np.float32) * 2)
    c_before = np.asarray(c)
    if fp8:
        a, b = jaxgemm.per_token_cast_to_fp8_grouped(x, gs), jaxgemm.per_token_cast_to_fp8_grouped(y, gs)
        fn = jaxgemm.k_grouped_fp8_gemm_tn_contiguous
    else:
        a, b = x.astype(jnp.bfloat16), y.astype(jnp.bfloat16)
        fn = jaxgemm.k_grouped_bf16_gemm_tn_contiguous
    jnp.full((len(sizes), m, n), jnp.nan, jnp.float32).block_until_ready()  # poison
    out = jax.jit(lambda a, b, s, c: fn(a, b, s, c=c, num_sms=3))(a, b, gs, c)
    ref = O.k_grouped(a, b, np.asarray(sizes), c_before)
    out = np.asarray(out, np.float64)
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() <= 1e-3 * (np.abs(ref).max() + 1e-9)
    np.testing.assert_array_equal(out[1], c_before[1])  # the empty group
    np.testing.assert_array_equal(np.asarray(c), c_before)


@pytest.mark.parametrize("sizes", [[300, 0, 650, 1], [0, 0], [1000, 900]])
@pytest.mark.parametrize("accumulate", [False, True])
def test_k_grouped_bf16(sizes, accumulate, k_grouped_kernel):
    k_total, m, n = 1200, 384, 264
    gs = jnp.asarray(sizes, jnp.int32)
    x = jnp.asarray(_rng.standard_normal((k_total, m), np.float32)).astype(jnp.bfloat16)
    y = jnp.asarray(_rng.standard_normal((k_total, n), np.float32)).astype(jnp.bfloat16)
    c = jnp.asarray(_rng.standard_normal((len(sizes), m, n), np.float32)) if accumulate else None
    out = jax.jit(lambda a, b, s, c: jaxgemm.k_grouped_bf16_gemm_tn_contiguous(a, b, s, c=c))(
        x, y, gs, c)
    ref = O.k_grouped(x, y, np.asarray(sizes), None if c is None else np.asarray(c))
    out = np.asarray(out, np.float64)
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() <= 1e-4 * (np.abs(ref).max() + 1e-9)

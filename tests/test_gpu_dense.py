"""Dense GEMM kernels on a Hopper GPU against the dequantized reference.

Skipped without a Hopper GPU.  Every check draws fresh random inputs, poisons
the memory the output is likely to land in, and compares with the
dequantized operands multiplied in float64 (small shapes) or float32 HIGHEST
on the device (large shapes), by the global diff metric and by the worst row
and column.
"""
from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _config, _kernels
from jaxgemm._backend import hopper_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not hopper_available(), reason="needs a Hopper (sm_90) GPU"),
]

_rng = np.random.default_rng(1234)


def _diff(x, y) -> float:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    denom = (x * x + y * y).sum()
    return float(1 - 2 * (x * y).sum() / denom) if denom > 0 else 0.0


def _check(out, ref, tol=1e-3):
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape
    assert np.isfinite(out).all(), "non-finite output (unwritten or poisoned elements)"
    d = _diff(out, ref)
    assert d < tol, f"diff {d:.3e}"
    # A global metric can hide a bad row or column: bound the worst of each.
    err = np.abs(out - ref)
    scale = np.abs(ref).max() + 1e-30
    if out.size:
        assert err.max(axis=1).max() / scale < 2e-2, "worst row off"
        assert err.max(axis=0).max() / scale < 2e-2, "worst column off"
    return d


def _poison(shape, dtype):
    # Fill and free a buffer of the output's size, so the allocator is likely
    # to hand this memory to the kernel's output: unwritten elements then
    # read back as NaN instead of an earlier correct result.
    jnp.full(shape, jnp.nan, dtype).block_until_ready()


def _fp8_operands(m, n, k, *, b_per_row=False):
    a = jnp.asarray(_rng.standard_normal((m, k), np.float32) * _rng.uniform(0.1, 10))
    b = jnp.asarray(_rng.standard_normal((n, k), np.float32))
    # Ragged magnitudes per row / block so wrong scales show.
    a = a * jnp.asarray(_rng.uniform(0.01, 4.0, (m, 1)), jnp.float32)
    qa = jaxgemm.per_token_cast_to_fp8(a)
    qb = jaxgemm.per_token_cast_to_fp8(b) if b_per_row else jaxgemm.per_block_cast_to_fp8(b)
    return qa, qb


def _ref_dense(qa, qb, c=None):
    a = jaxgemm.dequantize(*qa)
    b = jaxgemm.dequantize(*qb)
    if a.shape[0] * b.shape[0] * a.shape[1] <= 2**29:
        r = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    else:
        r = np.asarray(jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST,
                               preferred_element_type=jnp.float32), np.float64)
    if c is not None:
        r = r + np.asarray(c, np.float64)
    return r


@pytest.fixture(params=["cp.async", "tma", "tma-rows"])
def scale_path(request, monkeypatch):
    """Every way the FP8 kernels load their scales (a cp.async warp, TMA from
    the transposed A scales, TMA row boxes), whatever the size would pick."""
    modes = {"cp.async": "0", "tma": "1", "tma-rows": "2"}
    monkeypatch.setenv("JAXGEMM_TMA_SCALES", modes[request.param])
    return request.param


SHAPES = [
    (1, 8, 128), (7, 40, 256), (64, 2112, 7168), (128, 7168, 2048), (129, 300, 384),
    (200, 136, 1024), (255, 1000, 640), (513, 1032, 896), (1024, 4096, 7168),
    (4096, 2112, 7168), (64, 24576, 1536), (100, 8, 16384),
]


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_fp8_gemm_nt_bf16(m, n, k):
    qa, qb = _fp8_operands(m, n, k)
    f = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b))
    _poison((m, n), jnp.bfloat16)
    out = f(qa, qb)
    assert out.dtype == jnp.bfloat16
    _check(out, _ref_dense(qa, qb))


@pytest.mark.parametrize("m,n,k", [(64, 256, 512), (300, 520, 2048), (2112, 4096, 7168)])
@pytest.mark.parametrize("b_per_row", [False, True])
def test_fp8_gemm_nt_accumulate(m, n, k, b_per_row):
    qa, qb = _fp8_operands(m, n, k, b_per_row=b_per_row)
    c = jnp.asarray(_rng.standard_normal((m, n), np.float32))
    out = jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c=c))(qa, qb, c)
    assert out.dtype == jnp.float32
    _check(out, _ref_dense(qa, qb, c), tol=1e-5)


ADD_C_CONFIGS = [(64, 16, 1), (64, 112, 1), (64, 192, 4), (128, 32, 4), (128, 96, 1),
                 (128, 128, 1), (128, 128, 2), (128, 160, 2), (128, 192, 1), (128, 192, 2),
                 (256, 64, 4), (256, 112, 1), (256, 128, 2)]


@pytest.mark.parametrize("bm,bn,cluster", ADD_C_CONFIGS)
@pytest.mark.parametrize("b_per_row", [False, True])
def test_fp8_add_c_configs(bm, bn, cluster, b_per_row, scale_path):
    # D = C + A @ B^T reads C inside the kernel: every tile shape it runs, on
    # a problem with partial M, N and cluster tiles, on 8 SMs so that each
    # CTA walks many tiles (C's buffer and barrier phase are reused, twice
    # per tile with 256-row tiles, whose last tile has a partial second wave
    # and a wave wholly past M); C must come back unchanged (it is not
    # aliased to D).
    m, n, k = 389, 1000, 1408
    qa, qb = _fp8_operands(m, n, k, b_per_row=b_per_row)
    c = jnp.asarray(_rng.standard_normal((m, n), np.float32) * 3)
    c_before = np.asarray(c)
    stages = _config._max_stages(bm, bn, 1, 4, b_per_row, True)
    _poison((m, n), jnp.float32)
    with _kernels.force_config(_config.GemmConfig(bm, bn, min(stages, 6), cluster)):
        out = jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c=c, num_sms=8))(qa, qb, c)
    _check(out, _ref_dense(qa, qb, c), tol=1e-5)
    np.testing.assert_array_equal(np.asarray(c), c_before)


def test_add_c_donated_and_in_scan():
    # The forms a training step uses: C donated to the call, and C as the
    # carry of a scan over micro-batches (gradient accumulation).
    m, n, k = 256, 384, 512
    ops = [_fp8_operands(m, n, k, b_per_row=True) for _ in range(3)]
    c = jnp.asarray(_rng.standard_normal((m, n), np.float32))
    ref = np.asarray(c, np.float64) + sum(_ref_dense(qa, qb) for qa, qb in ops)
    f = jax.jit(lambda c, a, b: jaxgemm.fp8_gemm_nt(a, b, c=c), donate_argnums=0)
    d = jnp.array(c)
    for qa, qb in ops:
        d = f(d, qa, qb)
    _check(d, ref, tol=1e-5)
    stacked_a = jax.tree.map(lambda *x: jnp.stack(x), *[o[0] for o in ops])
    stacked_b = jax.tree.map(lambda *x: jnp.stack(x), *[o[1] for o in ops])
    step = lambda acc, ab: (jaxgemm.fp8_gemm_nt(ab[0], ab[1], c=acc), None)  # noqa: E731
    out, _ = jax.jit(lambda c, a, b: jax.lax.scan(step, c, (a, b)))(c, stacked_a, stacked_b)
    _check(out, ref, tol=1e-5)


@pytest.mark.parametrize("bm,bn,cluster", [(64, 64, 1), (128, 192, 2), (128, 200, 1), (64, 24, 4),
                                           (256, 128, 2), (256, 96, 1)])
def test_bf16_add_c_configs(bm, bn, cluster):
    m, n, k = 300, 1000, 520
    a = jnp.asarray(_rng.standard_normal((m, k), np.float32)).astype(jnp.bfloat16)
    b = jnp.asarray(_rng.standard_normal((n, k), np.float32)).astype(jnp.bfloat16)
    c = jnp.asarray(_rng.standard_normal((m, n), np.float32))
    stages = _config._max_stages(bm, bn, 2, 4, False, True)
    _poison((m, n), jnp.float32)
    with _kernels.force_config(_config.GemmConfig(bm, bn, min(stages, 5), cluster)):
        out = jax.jit(lambda a, b, c: jaxgemm.bf16_gemm_nt(a, b, c=c, num_sms=8))(a, b, c)
    ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T + np.asarray(c, np.float64)
    _check(out, ref, tol=1e-6)


def test_fp8_gemm_nt_f32_out_per_row():
    qa, qb = _fp8_operands(333, 264, 1152, b_per_row=True)
    _poison((333, 264), jnp.float32)
    out = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, out_dtype=jnp.float32))(qa, qb)
    _check(out, _ref_dense(qa, qb), tol=1e-5)


def test_error_flat_in_k():
    # The promotion every 128 of K keeps the error from growing with K.
    qa, qb = _fp8_operands(128, 256, 16384)
    out = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, out_dtype=jnp.float32))(qa, qb)
    d = _check(out, _ref_dense(qa, qb), tol=1e-6)
    assert d < 1e-6


def test_several_sizes_in_one_program():
    ops = [_fp8_operands(*s) for s in [(64, 512, 1024), (300, 136, 256), (1024, 2048, 512)]]
    f = jax.jit(lambda *xs: [jaxgemm.fp8_gemm_nt(xs[2 * i], xs[2 * i + 1]) for i in range(3)])
    outs = f(*[x for pair in ops for x in pair])
    for (qa, qb), out in zip(ops, outs):
        _check(out, _ref_dense(qa, qb))


FP8_CONFIGS = [(64, 16, 1), (64, 48, 2), (64, 112, 1), (64, 192, 4), (128, 32, 4), (128, 96, 1),
               (128, 128, 2), (128, 144, 1), (128, 160, 2), (128, 192, 1), (256, 64, 1),
               (256, 112, 2), (256, 128, 2), (64, 16, 4), (192, 128, 1), (192, 96, 1)]


@pytest.mark.parametrize("bm,bn,cluster", FP8_CONFIGS)
def test_fp8_configs(bm, bn, cluster, scale_path):
    # Every tile shape and cluster the heuristic can pick, on an unaligned
    # problem whose N blocks do not divide evenly among the cluster.
    m, n, k = 389, 1000, 1408
    qa, qb = _fp8_operands(m, n, k)
    stages = _config._max_stages(bm, bn, 1, 2, False)
    with _kernels.force_config(_config.GemmConfig(bm, bn, min(stages, 6), cluster)):
        out = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b))(qa, qb)
    _check(out, _ref_dense(qa, qb))


@pytest.mark.parametrize("m,n,k", [(1, 8, 128), (3, 40, 640), (389, 1000, 1408), (130, 136, 384),
                                   (1025, 264, 2176)])
@pytest.mark.parametrize("accumulate", [None, "per-block", "per-row"])
def test_fp8_scale_paths(m, n, k, accumulate, scale_path):
    # Rows not a multiple of 4 (the transposed A scales are padded), K blocks
    # not a multiple of 4 (the B scales are padded), tiles straddling two B
    # scale blocks, a partial last row tile, with and without C.
    qa, qb = _fp8_operands(m, n, k, b_per_row=accumulate == "per-row")
    c = None if accumulate is None else jnp.asarray(_rng.standard_normal((m, n), np.float32))
    _poison((m, n), jnp.float32 if c is not None else jnp.bfloat16)
    out = jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c=c))(qa, qb, c)
    _check(out, _ref_dense(qa, qb, c), tol=1e-5 if c is not None else 1e-3)


# (120, 7000, 3000), (96, 4104, 1032), (100, 4000, 1000): the small-M BF16
# picks, one partial 128-row block (128x64, 128x32; the last at K <= 1024,
# cooperative since it has fewer tiles than SMs).
@pytest.mark.parametrize("m,n,k", [(1, 8, 64), (200, 136, 1000), (1024, 4096, 7168), (64, 2112, 7168),
                                   (120, 7000, 3000), (96, 4104, 1032), (100, 4000, 1000)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_bf16_gemm_nt(m, n, k, accumulate):
    a = jnp.asarray(_rng.standard_normal((m, k), np.float32)).astype(jnp.bfloat16)
    b = jnp.asarray(_rng.standard_normal((n, k), np.float32)).astype(jnp.bfloat16)
    ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    if accumulate:
        c = jnp.asarray(_rng.standard_normal((m, n), np.float32))
        out = jax.jit(lambda a, b, c: jaxgemm.bf16_gemm_nt(a, b, c=c))(a, b, c)
        ref = ref + np.asarray(c, np.float64)
        _check(out, ref, tol=1e-6)
    else:
        _poison((m, n), jnp.bfloat16)
        out = jax.jit(lambda a, b: jaxgemm.bf16_gemm_nt(a, b))(a, b)
        _check(out, ref)


@pytest.mark.parametrize("bm,bn,cluster", [(64, 64, 1), (128, 256, 2), (128, 200, 1), (64, 24, 4),
                                           (256, 128, 2), (256, 96, 1)])
def test_bf16_configs(bm, bn, cluster):
    m, n, k = 300, 1000, 520
    a = jnp.asarray(_rng.standard_normal((m, k), np.float32)).astype(jnp.bfloat16)
    b = jnp.asarray(_rng.standard_normal((n, k), np.float32)).astype(jnp.bfloat16)
    stages = _config._max_stages(bm, bn, 2, 2, False)
    with _kernels.force_config(_config.GemmConfig(bm, bn, min(stages, 5), cluster)):
        out = jax.jit(lambda a, b: jaxgemm.bf16_gemm_nt(a, b))(a, b)
    _check(out, np.asarray(a, np.float64) @ np.asarray(b, np.float64).T)


# The ping-pong BF16 kernel: the two math warpgroups take alternate tiles of
# a CTA's sequence.  Few SMs give each CTA many tiles (the ring wraps inside
# a tile and across the other warpgroup's tiles: 520 = 9 stages of 64 with
# 3-5 in the ring), odd tile counts leave the second warpgroup one tile
# short, and M / N edges cut the last tiles.
@pytest.mark.parametrize("m,n,k,bn,stages,cluster,sms", [
    (300, 1000, 520, 128, 5, 1, 3),     # 3 x 8 = 24 tiles on 3 CTAs
    (300, 1000, 520, 128, 3, 2, 4),     # clusters of 2, A multicast
    (129, 136, 64, 128, 4, 1, 1),       # 2 x 2 tiles on one CTA, one K block
    (1000, 520, 1088, 96, 6, 2, 6),     # 8 x 6 tiles on 3 clusters
    (130, 40, 192, 48, 4, 1, None),     # fewer tiles than SMs: warpgroup 1 idles
])
@pytest.mark.parametrize("accumulate", [False, True])
def test_bf16_pingpong(m, n, k, bn, stages, cluster, sms, accumulate):
    a = jnp.asarray(_rng.standard_normal((m, k), np.float32)).astype(jnp.bfloat16)
    b = jnp.asarray(_rng.standard_normal((n, k), np.float32)).astype(jnp.bfloat16)
    ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    cfg = _config.GemmConfig(128, bn, stages, cluster, pingpong=True)
    if accumulate:
        c = jnp.asarray(_rng.standard_normal((m, n), np.float32))
        _poison((m, n), jnp.float32)
        with _kernels.force_config(cfg):
            out = jax.jit(lambda a, b, c: jaxgemm.bf16_gemm_nt(a, b, c=c, num_sms=sms))(a, b, c)
        _check(out, ref + np.asarray(c, np.float64), tol=1e-6)
    else:
        _poison((m, n), jnp.bfloat16)
        with _kernels.force_config(cfg):
            out = jax.jit(lambda a, b: jaxgemm.bf16_gemm_nt(a, b, num_sms=sms))(a, b)
        _check(out, ref)


def test_nn_tn_tt_variants():
    m, n, k = 200, 264, 640
    a = jnp.asarray(_rng.standard_normal((m, k), np.float32))
    b = jnp.asarray(_rng.standard_normal((n, k), np.float32))
    qa = jaxgemm.per_token_cast_to_fp8(a)
    qb = jaxgemm.per_block_cast_to_fp8(b)
    ref = _ref_dense(qa, qb)
    qa_t = (qa[0].T, qa[1].T)
    qb_t = (qb[0].T, qb[1].T)
    _check(jax.jit(jaxgemm.fp8_gemm_nn)(qa, qb_t), ref)
    _check(jax.jit(jaxgemm.fp8_gemm_tn)(qa_t, qb_t), ref)
    _check(jax.jit(jaxgemm.fp8_gemm_tt)(qa_t, qb), ref)


def test_compile_error_raises():
    # An impossible tile (wgmma N must be a multiple of 8) fails in NVRTC at
    # the instantiate stage; the NVRTC log reaches Python as an exception.
    qa, qb = _fp8_operands(64, 256, 256)
    with _kernels.force_config(_config.GemmConfig(64, 20, 4)):
        with pytest.raises(Exception, match="(?s)NVRTC.*multiple of 8"):
            jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b))(qa, qb).block_until_ready()


def test_launch_error_raises():
    # More dynamic shared memory than an SM has: configuring or launching the
    # kernel fails, and the driver's error reaches Python.
    qa, qb = _fp8_operands(64, 256, 256)
    with _kernels.force_config(_config.GemmConfig(64, 64, 4), smem_override=300_000):
        with pytest.raises(Exception, match="jaxgemm"):
            jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b))(qa, qb).block_until_ready()

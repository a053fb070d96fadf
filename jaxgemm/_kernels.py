"""CUDA (Hopper) implementations of the jaxgemm primitives.

Each entry of ``KERNEL_IMPLS`` maps a primitive name to a function written in
jax (``jax.ffi.ffi_call`` plus the layout preparation XLA can fuse into the
operands' producers) with the same signature as the primitive's reference
implementation: ``impl(*operands, **params) -> output``.  The primitives'
CUDA lowering uses it on Hopper GPUs.

Alignment: the kernels need every contiguous axis to be a multiple of 16
bytes (TMA strides, layout.contiguous_alignment).  Operands that miss it are
zero-padded here (exact along K; padded N columns are sliced off), so any
shape works and aligned shapes pay nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgemm import _config, _ext, _groups, layout

KERNEL_IMPLS: dict[str, Callable] = {}

_forced_config: _config.GemmConfig | None = None
_smem_override = 0


@contextlib.contextmanager
def force_config(config: _config.GemmConfig | None, *, smem_override: int = 0):
    """Tests only: use `config` (unchecked) for every kernel lowered inside."""
    global _forced_config, _smem_override
    old = (_forced_config, _smem_override)
    _forced_config, _smem_override = config, smem_override
    try:
        yield
    finally:
        _forced_config, _smem_override = old


def _pad_axis(x: jax.Array, axis: int, multiple: int) -> jax.Array:
    size = x.shape[axis]
    target = -(-size // multiple) * multiple
    if target == size:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, target - size)
    return jnp.pad(x, pad)


def _tma_scales(sa_rows: jax.Array, sb_rows: jax.Array | None, mode: int = 1):
    """Scales in the layout of the kernels' TMA scale paths (layout.h): A scales
    [rows, Kb] -> [Kb, rows padded to 4] (mode 1) or K blocks padded to 4
    (mode 2, row boxes); per-block B scales [R, Kb] -> K blocks padded to 4
    (None: per-row B scales, unchanged)."""
    align = layout.TMA_SCALE_ALIGN
    sa_k = _pad_axis(sa_rows, 1, align) if mode == 2 else _pad_axis(sa_rows.T, 1, align)
    return sa_k, (None if sb_rows is None else _pad_axis(sb_rows, 1, align))


def _row_box_stages(cfg: _config.GemmConfig, out_bytes: int, sb_per_row: bool,
                    add_c: bool) -> _config.GemmConfig:
    """``cfg`` with its stages capped for TMA row boxes of A scales (scales_tma
    2), which take 4x the A scale bytes per stage."""
    fit = _config._max_stages(cfg.block_m, cfg.block_n, 1, out_bytes, sb_per_row, add_c, True)
    return dataclasses.replace(cfg, stages=min(cfg.stages, fit))


#: Test and tooling hook (``tests/conftest.py``'s spec-recording mode): when
#: set, called as ``hook(target, result, operands, attrs)`` instead of the FFI
#: call, and its return value stands for the kernel's output.
_ffi_call_hook = None


def _ffi_call(target: str, result: jax.ShapeDtypeStruct, operands, **attrs):
    """One kernel launch as an XLA FFI custom call; ``attrs`` is the kernel's
    spec (what ``_ext.native.compile_kernel`` takes)."""
    if _ffi_call_hook is not None:
        return _ffi_call_hook(target, result, list(operands), attrs)
    call = jax.ffi.ffi_call(target, result, vmap_method="sequential")
    return call(*operands, **attrs)


def _dense_call(kernel: str, operands: list, m: int, n_pad: int, k_pad: int,
                out_dtype, cfg: _config.GemmConfig, *, accumulate: bool,
                sb_per_row: bool, num_sms: int | None, scales_tma: int = 0):
    _ext.ensure_registered()
    out_f32 = np.dtype(out_dtype) == np.float32
    return _ffi_call(
        _ext.DENSE_TARGET, jax.ShapeDtypeStruct((m, n_pad), out_dtype), operands,
        kernel=kernel, m=0, n=int(n_pad), k=int(k_pad),
        block_m=int(cfg.block_m), block_n=int(cfg.block_n), stages=int(cfg.stages),
        band_n=int(cfg.band_n), out_f32=int(out_f32), accumulate=int(accumulate),
        sb_per_row=int(sb_per_row), cluster=int(cfg.cluster), masked=0,
        scales_tma=int(scales_tma), num_sms=int(num_sms or 0),
        smem_override=int(_smem_override))


def _is_per_row(sb_rows: int, n: int) -> bool:
    return sb_rows == n and n != layout.num_scale_blocks(n)


def _fp8_dense_config(m, n, k, out_bytes, *, sb_per_row=False, add_c=False, num_sms=None):
    """The dense FP8 kernel's tile: the model's pick, 192-row tiles allowed
    where the scales come by TMA (_config.three_warpgroups_allowed)."""
    return _config.dense_config(m, n, k, fp8=True, out_bytes=out_bytes, sb_per_row=sb_per_row,
                                num_sms=num_sms, add_c=add_c,
                                three_warpgroups=_config.three_warpgroups_allowed(m))


def fp8_gemm_nt(a, sa, b, sb, c=None, *, out_dtype, num_sms=None):
    m, k = a.shape
    n = b.shape[0]
    out_dtype = np.dtype(out_dtype)
    if m == 0 or n == 0:
        return jnp.zeros((m, n), out_dtype) if c is None else c.astype(out_dtype)
    sb_per_row = _is_per_row(sb.shape[0], n)
    k_align = layout.contiguous_alignment(1)
    n_align = max(layout.contiguous_alignment(np.dtype(out_dtype).itemsize),
                  layout.contiguous_alignment(4) if sb_per_row else 1)
    a_p = _pad_axis(a, 1, k_align)
    b_p = _pad_axis(_pad_axis(b, 1, k_align), 0, n_align)
    k_pad, n_pad = a_p.shape[1], b_p.shape[0]
    if sb_per_row:
        # [N, Kb] -> [Kb, N]: one TMA box per stage brings a tile's column scales.
        sb_k = _pad_axis(sb.astype(jnp.float32).T, 1, n_align)
    else:
        sb_k = sb.astype(jnp.float32)
        if layout.num_scale_blocks(n_pad) != sb_k.shape[0]:
            sb_k = _pad_axis(sb_k, 0, layout.num_scale_blocks(n_pad))
    sa_k = sa.astype(jnp.float32)
    tma = _config.scales_by_tma(m)
    if tma:
        sa_k, sb_t = _tma_scales(sa_k, None if sb_per_row else sb_k, tma)
        sb_k = sb_k if sb_per_row else sb_t
    operands = [a_p, sa_k, b_p, sb_k]
    if c is not None:
        operands.append(_pad_axis(c.astype(jnp.float32), 1, n_align))
    cfg = _forced_config or _fp8_dense_config(m, n_pad, k_pad, out_dtype.itemsize,
                                              sb_per_row=sb_per_row, add_c=c is not None,
                                              num_sms=num_sms)
    if tma == 2:
        cfg = _row_box_stages(cfg, out_dtype.itemsize, sb_per_row, c is not None)
    d = _dense_call("fp8_gemm_nt", operands, m, n_pad, k_pad, out_dtype, cfg,
                    accumulate=c is not None, sb_per_row=sb_per_row, num_sms=num_sms,
                    scales_tma=tma)
    return d if n_pad == n else d[:, :n]


def bf16_gemm_nt(a, b, c=None, *, out_dtype, num_sms=None):
    m, k = a.shape
    n = b.shape[0]
    out_dtype = np.dtype(out_dtype)
    if m == 0 or n == 0:
        return jnp.zeros((m, n), out_dtype) if c is None else c.astype(out_dtype)
    k_align = layout.contiguous_alignment(2)
    n_align = layout.contiguous_alignment(out_dtype.itemsize)
    a_p = _pad_axis(a.astype(jnp.bfloat16), 1, k_align)
    b_p = _pad_axis(_pad_axis(b.astype(jnp.bfloat16), 1, k_align), 0, n_align)
    k_pad, n_pad = a_p.shape[1], b_p.shape[0]
    operands = [a_p, b_p]
    if c is not None:
        operands.append(_pad_axis(c.astype(jnp.float32), 1, n_align))
    cfg = _forced_config or _config.bf16_dense_config(
        m, n_pad, k_pad, out_bytes=out_dtype.itemsize, num_sms=num_sms, add_c=c is not None)
    kernel = "bf16_gemm_nt_pingpong" if cfg.pingpong else "bf16_gemm_nt"
    d = _dense_call(kernel, operands, m, n_pad, k_pad, out_dtype, cfg,
                    accumulate=c is not None, sb_per_row=False, num_sms=num_sms)
    return d if n_pad == n else d[:, :n]


def _masked_attr(zero_masked_rows):
    """The `masked` attribute: 1 = masked, rows past masked_m zeroed; 2 = left alone."""
    return 1 if zero_masked_rows else 2


def _grouped_call(operands, out_shape, out_dtype, n_pad, k_pad, cfg, *, masked, num_sms,
                  kernel="m_grouped_fp8_gemm_nt", scales_tma=0):
    _ext.ensure_registered()
    return _ffi_call(
        _ext.GROUPED_TARGET, jax.ShapeDtypeStruct(out_shape, out_dtype), operands,
        kernel=kernel, m=0, n=int(n_pad), k=int(k_pad),
        block_m=int(cfg.block_m), block_n=int(cfg.block_n), stages=int(cfg.stages),
        band_n=int(cfg.band_n), out_f32=int(np.dtype(out_dtype) == np.float32), accumulate=0,
        sb_per_row=0, cluster=int(cfg.cluster), masked=int(masked),
        scales_tma=int(scales_tma), num_sms=int(num_sms or 0),
        smem_override=int(_smem_override))


def _grouped_operands(a, sa, b, sb, out_dtype):
    """Pads K to 16 bytes and N to the output's 16 bytes; B scale rows follow N."""
    k_align = layout.contiguous_alignment(1)
    n_align = layout.contiguous_alignment(np.dtype(out_dtype).itemsize)
    a_p = _pad_axis(a, a.ndim - 1, k_align)
    b_p = _pad_axis(_pad_axis(b, 2, k_align), 1, n_align)
    sb_p = sb.astype(jnp.float32)
    if layout.num_scale_blocks(b_p.shape[1]) != sb_p.shape[1]:
        sb_p = _pad_axis(sb_p, 1, layout.num_scale_blocks(b_p.shape[1]))
    return a_p, sa.astype(jnp.float32), b_p, sb_p


def _grouped_tma_scales(sa, sb, cfg, out_dtype):
    """The m-grouped FP8 operands' scales in the layout of the TMA row boxes
    (layout.h): A scales [rows, Kb4] (the masked layout's groups flattened),
    B scales [G * N blocks, Kb4]; and the config with its stages capped."""
    sa4, sb4 = _tma_scales(sa.reshape(-1, sa.shape[-1]), sb.reshape(-1, sb.shape[-1]), 2)
    return sa4, sb4, _row_box_stages(cfg, np.dtype(out_dtype).itemsize, False, False)


# FP8 masked GEMMs of at most this K take 128-row tiles where the model picks
# 256 rows.  H200, 2026-11-28, whole op (results/h200/sweep_masked_20261128-1650.json):
# at K = 2048 128x128 c2 ran 102.8 us against 256x128 c2's 110.3 (expected_m 1024,
# 6 groups, 4096 columns) and 141.0 against 151.3 (expected_m 192, 32 groups):
# half the padding rows (1.056 against 1.121 at expected_m 1024) and, at short K,
# a tile's fixed cost weighs more on 256 rows.  From K = 3072 on 256x128 c2 won
# (by 1-2% at 3072 and 4096, 8-14% at 7168), so the rule stops at 2048.
MASKED_128_ROW_MAX_K = 2048


def _grouped_config(rows_per_group, n, k, out_dtype, groups, num_sms, *, fp8=True,
                    contiguous=False, masked=False):
    m = max(rows_per_group * max(groups, 1), 1)
    out_bytes = np.dtype(out_dtype).itemsize
    cfg = _forced_config or _config.dense_config(m, n, k, fp8=fp8, out_bytes=out_bytes,
                                                 num_sms=num_sms)
    if (_forced_config is None and masked and fp8 and k <= MASKED_128_ROW_MAX_K
            and cfg.block_m == 256):
        cfg = _config.GemmConfig(128, 128, _config._max_stages(128, 128, 1, out_bytes, False), 2)
    if _forced_config is None and contiguous and groups * cfg.block_m / 2 > 0.15 * m:
        # Many small groups: every group's last row tile is on average half
        # empty (tiles never straddle groups), which the dense model does not
        # see.  Charge each tile height its padding and take the best.  (The
        # 256-group Zipf row ran 256-row tiles at 451 TFLOPS, 0.38x of the
        # balanced rows; balanced rows pad < 15% and keep the dense choice.)
        cfg = min((_config.dense_config_and_time(
            m + groups * bm // 2, n, k, fp8=fp8, out_bytes=out_bytes, num_sms=num_sms,
            max_block_m=bm) for bm in (64, 128, 256)), key=lambda c: c[1])[0]
    if _forced_config is None and rows_per_group < 128 and cfg.block_m > 64:
        # Small groups: a 128/256-row tile would be mostly another group's rows.
        cfg = _config.GemmConfig(64, cfg.block_n, _config._max_stages(
            64, cfg.block_n, 1 if fp8 else 2, np.dtype(out_dtype).itemsize, False), 1)
    if cfg.cluster > 2:
        cfg = dataclasses.replace(cfg, cluster=2)
    return cfg


def _bf16_grouped_operands(a, b, out_dtype):
    k_align = layout.contiguous_alignment(2)
    n_align = layout.contiguous_alignment(np.dtype(out_dtype).itemsize)
    a_p = _pad_axis(a.astype(jnp.bfloat16), a.ndim - 1, k_align)
    b_p = _pad_axis(_pad_axis(b.astype(jnp.bfloat16), 2, k_align), 1, n_align)
    return a_p, b_p


def m_grouped_bf16_gemm_nt_contiguous(a, b, group_sizes, *, out_dtype, num_sms=None):
    m, k = a.shape
    g, n, _ = b.shape
    out_dtype = np.dtype(out_dtype)
    if m == 0 or n == 0 or g == 0:
        return jnp.zeros((m, n), out_dtype)
    a_p, b_p = _bf16_grouped_operands(a, b, out_dtype)
    n_pad, k_pad = b_p.shape[1], b_p.shape[2]
    cfg = _grouped_config(m // g, n_pad, k_pad, out_dtype, g, num_sms, fp8=False,
                          contiguous=True)
    d = _grouped_call([a_p, b_p, group_sizes.astype(jnp.int32)], (m, n_pad), out_dtype, n_pad,
                      k_pad, cfg, masked=False, num_sms=num_sms, kernel="m_grouped_bf16_gemm_nt")
    return d if n_pad == n else d[:, :n]


def m_grouped_bf16_gemm_nt_masked(a, b, masked_m, *, expected_m, out_dtype, num_sms=None,
                                  zero_masked_rows=True):
    g, m_max, k = a.shape
    n = b.shape[1]
    out_dtype = np.dtype(out_dtype)
    if g == 0 or m_max == 0 or n == 0:
        return jnp.zeros((g, m_max, n), out_dtype)
    a_p, b_p = _bf16_grouped_operands(a, b, out_dtype)
    n_pad, k_pad = b_p.shape[1], b_p.shape[2]
    cfg = _grouped_config(int(expected_m or m_max), n_pad, k_pad, out_dtype, g, num_sms,
                          fp8=False)
    d = _grouped_call([a_p, b_p, masked_m.astype(jnp.int32)], (g, m_max, n_pad), out_dtype,
                      n_pad, k_pad, cfg, masked=_masked_attr(zero_masked_rows), num_sms=num_sms,
                      kernel="m_grouped_bf16_gemm_nt")
    return d if n_pad == n else d[:, :, :n]


def m_grouped_fp8_gemm_nt_contiguous(a, sa, b, sb, group_sizes, *, out_dtype, num_sms=None):
    m, k = a.shape
    g, n, _ = b.shape
    out_dtype = np.dtype(out_dtype)
    if m == 0 or n == 0 or g == 0:
        return jnp.zeros((m, n), out_dtype)
    a_p, sa_p, b_p, sb_p = _grouped_operands(a, sa, b, sb, out_dtype)
    n_pad, k_pad = b_p.shape[1], b_p.shape[2]
    cfg = _grouped_config(m // g, n_pad, k_pad, out_dtype, g, num_sms, contiguous=True)
    tma = _config.grouped_scales_by_tma(cfg.block_m)
    if tma:
        sa_p, sb_p, cfg = _grouped_tma_scales(sa_p, sb_p, cfg, out_dtype)
    d = _grouped_call([a_p, sa_p, b_p, sb_p, group_sizes.astype(jnp.int32)], (m, n_pad),
                      out_dtype, n_pad, k_pad, cfg, masked=False, num_sms=num_sms,
                      scales_tma=tma)
    return d if n_pad == n else d[:, :n]


def m_grouped_fp8_gemm_nt_masked(a, sa, b, sb, masked_m, *, expected_m, out_dtype,
                                 num_sms=None, zero_masked_rows=True):
    g, m_max, k = a.shape
    n = b.shape[1]
    out_dtype = np.dtype(out_dtype)
    if g == 0 or m_max == 0 or n == 0:
        return jnp.zeros((g, m_max, n), out_dtype)
    a_p, sa_p, b_p, sb_p = _grouped_operands(a, sa, b, sb, out_dtype)
    n_pad, k_pad = b_p.shape[1], b_p.shape[2]
    cfg = _grouped_config(int(expected_m or m_max), n_pad, k_pad, out_dtype, g, num_sms,
                          masked=True)
    tma = _config.grouped_scales_by_tma(cfg.block_m)
    if tma:
        sa_p, sb_p, cfg = _grouped_tma_scales(sa_p, sb_p, cfg, out_dtype)
    d = _grouped_call([a_p, sa_p, b_p, sb_p, masked_m.astype(jnp.int32)], (g, m_max, n_pad),
                      out_dtype, n_pad, k_pad, cfg, masked=_masked_attr(zero_masked_rows),
                      num_sms=num_sms, scales_tma=tma)
    return d if n_pad == n else d[:, :, :n]


def _k_grouped_pack(x, sizes, rows, x_multiple=1):
    """[K_total, X] token-major -> [X', rows*128] K-major, group-padded.

    Group g's tokens land in the 128-token blocks that
    per_token_cast_to_fp8_grouped gave its scales (blocks of consecutive
    groups back to back); everything else is zero, X is padded to X' (a
    multiple of `x_multiple`).  A CUDA kernel (src_cuda/k_grouped_pack.cuh):
    XLA fused the equivalent gather + transpose into one loop fusion with
    strided reads, 1.0-1.8 ms per operand on the 4-group wgrad shapes of the
    H100, more than the GEMM.  `sizes` are the clamped group sizes.
    """
    xcols = x.shape[1]
    xp = -(-xcols // x_multiple) * x_multiple
    fp8 = x.dtype == jnp.float8_e4m3fn
    _ext.ensure_registered()
    return _ffi_call(_ext.K_GROUPED_PACK_TARGET,
                     jax.ShapeDtypeStruct((xp, rows * layout.SCALE_BLOCK), x.dtype), [x, sizes],
                     **_gemm_attrs("k_grouped_pack_fp8" if fp8 else "k_grouped_pack_bf16",
                                   xp, rows * layout.SCALE_BLOCK, 64, 16, 1, m=xcols))


def _k_grouped_config(m, n_pad, k_per_group, fp8, num_sms, add_c=False):
    """Tiles of the k-grouped GEMMs (D[g] is m x n_pad, ~k_per_group tokens each)."""
    # Two 64-row waves plus the group cursor overflow the math warpgroups'
    # registers with per-row-scaled promotion: 128-row tiles at most.  (Clamping
    # the dense choice of 256x128 to 128x128 instead ran at 750 TFLOPS on the
    # H100, L2-bound; the model picks a wider N at 128 rows.)
    cfg = _config.dense_config(m, n_pad, k_per_group, fp8=fp8, out_bytes=4, sb_per_row=fp8,
                               num_sms=num_sms, max_block_m=layout.K_GROUPED_MAX_BLOCK_M,
                               add_c=add_c)
    if fp8 and n_pad >= 192 and m >= 128:
        # Measured on the H100 (tools/profile_grouped.py ksweep, 2026-11-27):
        # 128x192 without a cluster beat the model's 128x128 c2 by 19-23% on
        # both wgrad shapes (936 vs 751 and 830 vs 692 TFLOPS kernel-only);
        # the model underrates the L2 traffic of per-row-scaled 128-row tiles.
        # (BF16: the model's 128x256 c2 was the sweep's best.)
        cfg = _config.GemmConfig(128, 192, _config._max_stages(128, 192, 1, 4, True, add_c), 1)
    if cfg.cluster > 2:
        cfg = dataclasses.replace(cfg, cluster=2)
    return cfg


def _k_grouped(kernel, a, b, group_sizes, c, scales, *, num_sms):
    """Shared path of the k-grouped FP8 and BF16 kernels (`scales`: (sa, sb) or None)."""
    k_total, m = a.shape
    n = b.shape[1]
    groups = group_sizes.shape[0]
    if groups == 0 or m == 0 or n == 0:
        return jnp.zeros((groups, m, n), jnp.float32) if c is None else c.astype(jnp.float32)
    fp8 = scales is not None
    rows = layout.k_grouped_scale_rows(k_total, groups)
    n_align = layout.contiguous_alignment(4)
    sizes = _groups.clamped_sizes(group_sizes, k_total)
    if not fp8:
        a, b = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    a_t = _k_grouped_pack(a, sizes, rows)             # [M, rows*128]
    b_t = _k_grouped_pack(b, sizes, rows, n_align)    # [N', rows*128]
    n_pad = b_t.shape[0]
    cfg = _forced_config or _k_grouped_config(m, n_pad, max(1, k_total // groups), fp8, num_sms,
                                              add_c=c is not None)
    if fp8:
        sa, sb = scales
        # A scales [R, M]: M padded to 4 (a 16-byte TMA stride, layout.h).
        operands = [a_t, _pad_axis(sa.astype(jnp.float32), 1, layout.TMA_SCALE_ALIGN), b_t,
                    _pad_axis(sb.astype(jnp.float32), 1, n_align), sizes]
    else:
        operands = [a_t, b_t, sizes]
    if c is not None:
        operands.append(_pad_axis(c.astype(jnp.float32), 2, n_align))
    _ext.ensure_registered()
    d = _ffi_call(
        _ext.K_GROUPED_TARGET, jax.ShapeDtypeStruct((groups, m, n_pad), jnp.float32), operands,
        kernel=kernel, m=int(m), n=int(n_pad), k=int(rows * layout.SCALE_BLOCK),
        block_m=int(cfg.block_m), block_n=int(cfg.block_n), stages=int(cfg.stages),
        band_n=int(cfg.band_n), out_f32=1, accumulate=int(c is not None), sb_per_row=int(fp8),
        cluster=int(cfg.cluster), masked=0, scales_tma=0, num_sms=int(num_sms or 0),
        smem_override=int(_smem_override))
    return d if n_pad == n else d[:, :, :n]


def k_grouped_fp8_gemm_tn_contiguous(a, sa, b, sb, group_sizes, c=None, *, num_sms=None):
    return _k_grouped("k_grouped_fp8_gemm", a, b, group_sizes, c, (sa, sb), num_sms=num_sms)


def k_grouped_bf16_gemm_tn_contiguous(a, b, group_sizes, c=None, *, num_sms=None):
    return _k_grouped("k_grouped_bf16_gemm", a, b, group_sizes, c, None, num_sms=num_sms)


KERNEL_IMPLS["fp8_gemm_nt"] = fp8_gemm_nt
KERNEL_IMPLS["bf16_gemm_nt"] = bf16_gemm_nt

#: The grouped kernels (m-grouped and k-grouped, FP8 and BF16): on by default
#: since they passed the GPU tests on the H100 (2026-11-27, 94eef00);
#: JAXGEMM_GROUPED_KERNELS=0 sends the grouped ops to the reference path (a
#: switch for bisecting a suspected kernel bug).
GROUPED_IMPLS = {
    "m_grouped_fp8_gemm_nt_contiguous": m_grouped_fp8_gemm_nt_contiguous,
    "m_grouped_fp8_gemm_nt_masked": m_grouped_fp8_gemm_nt_masked,
    "k_grouped_fp8_gemm_tn_contiguous": k_grouped_fp8_gemm_tn_contiguous,
    "m_grouped_bf16_gemm_nt_contiguous": m_grouped_bf16_gemm_nt_contiguous,
    "m_grouped_bf16_gemm_nt_masked": m_grouped_bf16_gemm_nt_masked,
    "k_grouped_bf16_gemm_tn_contiguous": k_grouped_bf16_gemm_tn_contiguous,
}
if os.environ.get("JAXGEMM_GROUPED_KERNELS", "1") not in ("", "0"):
    KERNEL_IMPLS.update(GROUPED_IMPLS)


def _gemm_attrs(kernel, n, k, bm, bn, stages, *, out_f32=0, accumulate=0, sb_per_row=0,
                 cluster=1, masked=0, m=0, scales_tma=0):
    return dict(kernel=kernel, m=m, n=n, k=k, block_m=bm, block_n=bn, stages=stages, band_n=16,
                out_f32=out_f32, accumulate=accumulate, sb_per_row=sb_per_row, cluster=cluster,
                masked=masked, scales_tma=scales_tma, num_sms=0, smem_override=0)


#: One representative instance per kernel source and variant; the CPU tests
#: compile each with NVRTC and read its SASS.
SAMPLE_SPECS: list[dict] = [
    _gemm_attrs("fp8_gemm_nt", 2112, 7168, 128, 112, 6),
    _gemm_attrs("fp8_gemm_nt", 4096, 7168, 64, 16, 12, cluster=4),
    _gemm_attrs("fp8_gemm_nt", 7168, 16384, 128, 192, 4, cluster=2),
    _gemm_attrs("fp8_gemm_nt", 7168, 16384, 256, 128, 3, cluster=2),
    _gemm_attrs("fp8_gemm_nt", 4096, 7168, 128, 128, 4, out_f32=1, accumulate=1, sb_per_row=1),
    _gemm_attrs("fp8_gemm_nt", 4096, 2048, 128, 160, 4, out_f32=1),
    _gemm_attrs("fp8_gemm_nt", 7168, 16384, 256, 128, 3, cluster=2, scales_tma=1),
    _gemm_attrs("fp8_gemm_nt", 7168, 16384, 256, 128, 3, cluster=2, scales_tma=2),
    _gemm_attrs("fp8_gemm_nt", 4096, 7168, 128, 112, 5, out_f32=1, accumulate=1, scales_tma=2),
    _gemm_attrs("fp8_gemm_nt", 4096, 7168, 128, 112, 5, out_f32=1, accumulate=1, scales_tma=1),
    _gemm_attrs("fp8_gemm_nt", 4096, 7168, 128, 128, 4, out_f32=1, accumulate=1, sb_per_row=1,
                scales_tma=1),
    # 256-row tiles with C (two waves per warpgroup through one C buffer):
    # the FP32-accumulate bench's tile, and BF16 256x96, whose first form of
    # the L2 prefetch ptxas compiled into an illegal instruction.
    _gemm_attrs("fp8_gemm_nt", 4096, 7168, 256, 128, 3, cluster=2, out_f32=1, accumulate=1,
                sb_per_row=1, scales_tma=1),
    _gemm_attrs("fp8_gemm_nt", 4096, 2048, 256, 128, 3, out_f32=1, accumulate=1),
    _gemm_attrs("bf16_gemm_nt", 1000, 520, 256, 96, 4, out_f32=1, accumulate=1),
    _gemm_attrs("bf16_gemm_nt_pingpong", 32768, 512, 128, 128, 6, cluster=2),
    _gemm_attrs("bf16_gemm_nt_pingpong", 1000, 520, 128, 96, 6, out_f32=1, accumulate=1),
    _gemm_attrs("bf16_gemm_nt", 4096, 7168, 128, 256, 3, cluster=2),
    _gemm_attrs("bf16_gemm_nt", 4096, 7168, 256, 128, 3),
    _gemm_attrs("bf16_gemm_nt", 2112, 7168, 64, 64, 8, out_f32=1, accumulate=1),
    _gemm_attrs("m_grouped_fp8_gemm_nt", 4096, 7168, 128, 128, 5),
    _gemm_attrs("m_grouped_fp8_gemm_nt", 7168, 3072, 256, 128, 3, cluster=2),
    _gemm_attrs("m_grouped_fp8_gemm_nt", 4096, 2048, 64, 112, 8, masked=1),
    _gemm_attrs("m_grouped_fp8_gemm_nt", 7168, 3072, 256, 128, 3, cluster=2, scales_tma=2),
    _gemm_attrs("m_grouped_fp8_gemm_nt", 4096, 2048, 64, 112, 7, masked=1, scales_tma=2),
    _gemm_attrs("m_grouped_bf16_gemm_nt", 4096, 7168, 128, 256, 3, cluster=2),
    _gemm_attrs("m_grouped_bf16_gemm_nt", 4096, 2048, 64, 128, 8, masked=2),
    _gemm_attrs("k_grouped_fp8_gemm", 7168, 33024, 128, 128, 4, out_f32=1, sb_per_row=1, m=4096,
                 accumulate=1),
    _gemm_attrs("k_grouped_fp8_gemm", 2048, 8448, 128, 192, 4, out_f32=1, sb_per_row=1, m=7168,
                 cluster=2),
    _gemm_attrs("k_grouped_bf16_gemm", 7168, 33024, 128, 192, 3, out_f32=1, m=4096, accumulate=1,
                cluster=2),
    _gemm_attrs("k_grouped_pack_fp8", 4096, 33024, 64, 16, 1, m=4096),
    _gemm_attrs("k_grouped_pack_bf16", 2052, 33024, 64, 16, 1, m=2050),
]


def sample_spec_id(spec: dict) -> str:
    flags = "".join(f for f, on in (("f32", spec["out_f32"]), ("acc", spec["accumulate"]),
                                    ("row", spec["sb_per_row"]), ("masked", spec["masked"]),
                                    ("tma", spec.get("scales_tma", 0) == 1),
                                    ("tmarows", spec.get("scales_tma", 0) == 2))
                    if on)
    return (f"{spec['kernel']}-{spec['block_m']}x{spec['block_n']}x{spec['stages']}"
            f"-c{spec['cluster']}"
            + (f"-{flags}" if flags else ""))

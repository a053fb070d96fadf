"""Kernel configuration heuristics: block sizes and pipeline depth per shape.

A deterministic cost model, no autotuning: for each candidate tile it counts
the waves of tiles over the SMs and estimates a tile's time as the larger of
its tensor-core time and the time to stream its operands from L2, with the
whole problem bounded below by HBM traffic.  Shared-memory budgets come from
the same plan the kernels use (layout.gemm_smem_bytes).  Set
``JAXGEMM_PRINT_CONFIGS=1`` to print each choice.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys

from jaxgemm import layout

# H100 SXM figures the model uses (measured on the lent H100: 132 SMs,
# ~3.0 TB/s device copy; FP8 dense peak ~1979 TFLOPS = ~8192 FLOP per SM per
# clock at ~1.83 GHz, BF16 half of it).  L2 -> SM streaming is the scarce
# resource for big tiles: ~6150 B/clock for the whole chip, ~46 B/clock/SM.
H100_SMS = 132
_CLOCK = 1.83e9
_FP8_FLOP_PER_CLK = 8192
_BF16_FLOP_PER_CLK = 4096
_L2_BYTES_PER_CLK_PER_SM = 33.0  # effective, fitted to the sweep
# FP8 tiles of two math warpgroups and at least 128 columns: 46 fits the
# H100 sweep of 2026-11-27 at M >= 4096 (33 made 128x192 tiles look L2-bound
# and picked 256x96 at 4096x2112x7168: 887 TFLOPS against 1023 for
# 128x192).  Narrower and 64-row tiles keep the value fitted at M <= 128.
_L2_BYTES_PER_CLK_PER_SM_WIDE = 46.0
_HBM_BYTES = 3.0e12
# Tensor-pipe efficiency by block M, fitted to the H100 sweep of 2026-11-27
# (benchmarks/results/sweep_dense_*): one math warpgroup cannot overlap its
# FP8 promotion with its own wgmma; two can; 256-row tiles halve B traffic.
_FP8_EFFICIENCY = {64: 0.55, 128: 0.75, 192: 0.79, 256: 0.8}
# 192-row FP8 tiles run three math warpgroups of one 64-row wave each
# (src_cuda/smem_plan.h), so two warpgroups' wgmmas queue while the third
# promotes.  Dense, per-block B scales, no C, no cluster only (what was
# measured).  H200 sweep of 2026-11-28 (results/ab/three_wg_20261128): 192x128
# c1 ran 5-6% ahead of 128x192 c1 on four M = 4096 shapes and 8-12% behind
# 256x128 c2; 0.79 puts it where the model's other two entries sit against
# those measurements (both over-predicted by 5-7%).
_THREE_WG_BLOCK_M = 192
_BF16_EFFICIENCY = {64: 0.7, 128: 0.85, 256: 0.9}
# FP8 with per-row B scales (the FP32-accumulate weight-gradient form), from
# _PER_ROW_MODEL_MIN_M rows (the range the sweep covered was 2112-7168;
# below it the per-block model stands): the promotion's per-element
# multiplies, not the shared-memory ceiling, set the main loop's pace, and
# each tile has a large fixed cost, its FP32 epilogue (C read, D written: 8
# bytes an element, ~16 B/clock per SM when every SM does it at once; a
# 256-row tile stages C one 64-row wave at a time, 25% more).  Fitted to the
# H100 sweep of 2026-11-28 at 95a17a3 (results/ab/perrow_onewave_20261128:
# 128x112 c2, 128x128 c1, 128x192 c1, 256x128 c2 at K = 2048, 7168, 16384;
# per-wave time linear in K within 3%): 15.8-17.7 output elements per clock
# per stage, 0.48-0.61 clocks per output element fixed.  64-row tiles (one
# math warpgroup, not swept with per-row scales) take the per-block model's
# 64- to 128-row efficiency ratio (0.55 / 0.75).  Ties go to 128-row tiles
# without a cluster: 128x128 c2 ran 3-4% behind c1 in two sweeps (and
# 128x192 likewise on the k-grouped tiles).
_PER_ROW_MODEL_MIN_M = 1024
_FP8_PER_ROW_ELEMS_PER_CLK = {64: 12.6, 128: 17.2, 256: 17.7}
_FP8_PER_ROW_EPILOGUE_BYTES_PER_CLK = 16.3
_FP8_PER_ROW_WAVE_STAGING = {64: 1.0, 128: 1.0, 256: 1.25}
# Block N not a multiple of 64 (112, 144, 160) ran 5-15% below that rate in
# the same sweep.
_FP8_PER_ROW_ODD_N = 0.9
# No tile beats the shared-memory ceiling's pace: tiles run at ~0.72 of it
# (see _smem_ceiling), which is what binds narrow per-row tiles.
_FP8_CEILING_PACE = 0.72
# FP8: 64 < M <= 128 split into two 64-row blocks (one math warpgroup each, B
# streamed twice) ran 8-15% behind one 128-row block where both fill the
# SMs in one wave: 128x7168x16384 644-656 TFLOPS with 128x64 (sweeps of
# 2026-11-27, three calls) against 586-594 with the model's 64x112;
# 128x7168x2048 423 against 367.  Where 64-row tiles win clearly (N <= 4096
# at K = 7168: 64x64, 64x32) this factor does not change the choice.
_SPLIT_M_PENALTY = 1.15
# Shared-memory bandwidth (128 B/clock/SM) caps tiles of two math
# warpgroups: per 128 bytes of K, every 64-row wave's wgmma reads its A rows
# and the whole B tile from shared memory ((bm / 64) * (64 + bn) rows of 128
# bytes) and TMA writes (bm + bn) rows, against bm * bn / 32 clocks of FP8
# (or BF16) tensor work.  Ceilings: 256x128 0.89, 128x192 0.92, 128x128 0.80,
# 256x96 0.77.  The H100 sweep of 2026-11-27 (7 shapes at M >= 4096, 10 tiles)
# ran at 0.70-0.73 of this ceiling for tiles within one B scale block and
# 0.60-0.65 for tiles straddling two (the 1.15 below); _FP8_EFFICIENCY holds
# at block N = 128 and this ratio scales it to other widths.
def _smem_ceiling(bm: int, bn: int) -> float:
    rows = (bm / 64) * (64 + bn) + bm + bn
    return min(1.0, bm * bn / 32 / rows)


def _tile_efficiency(table: dict, bm: int, bn: int, fp8: bool) -> float:
    if bm < 128 or not fp8:  # one math warpgroup: its own promotion dominates
        return table[bm]     # (BF16: not yet measured against this model)
    return table[bm] * _smem_ceiling(bm, bn) / _smem_ceiling(bm, 128)


# BF16 dense GEMMs of at most 128 rows (one problem, not the grouped
# kernels' aggregate rows): the FP8 rules below for memory-bound shapes hold
# for BF16 too, and a 128-row tile (one M block: every CTA streams the same
# A) is fed at the wide L2 rate.  H200 sweep of 2026-11-28 (benchmarks/
# results/h200/sweep_dense_m{64,128}_20261128-1624.json, 8-10 tiles a shape):
# 128x7168x16384 128x64 465 TFLOPS against the old pick 64x112's 333,
# 128x7168x2048 356 vs 285, 128x4096x7168 128x32 364 vs 325; at M = 64 the
# fill rule picks 64x64 over 64x80 at N = 7168 (251 vs 232, 190 vs 171) and
# 64x192 over 64x256 at N = 24576.  128x16 tiles ran 18% behind 64x32 at
# 128x2112x7168, so they keep the narrow rate.
BF16_SMALL_M_RULES_MAX_M = 128
_BF16_WIDE_L2_MIN_BLOCK_N = 32

# Clusters (A multicast) paid off only with several M blocks in the sweep.
_MIN_M_FOR_CLUSTER = 256
# FP8 tiles wider than 128 columns ran 3-9% slower in 2-CTA clusters than
# alone on 6 of 7 shapes (128x192, H100 sweep of 2026-11-27; also the
# k-grouped sweep), while 128- and 256-row tiles of 128 columns gained.
_WIDE_CLUSTER_PENALTY = 1.05
_MAX_STAGES = 12
# Fixed cost of one pipeline stage in a math warpgroup (barrier wait, wgmma
# drain, scale reads), which small tiles cannot amortise.
_STAGE_OVERHEAD_CLK = 150


@dataclasses.dataclass(frozen=True)
class GemmConfig:
    block_m: int
    block_n: int
    stages: int
    cluster: int = 1
    band_n: int = 16
    # BF16 dense only: the ping-pong kernel (bf16_gemm_nt_pingpong.cuh; the
    # two math warpgroups on alternate 128-row tiles); bf16_dense_config
    # says where.
    pingpong: bool = False

    def describe(self) -> str:
        return (f"{self.block_m}x{self.block_n}x{self.stages}st c{self.cluster}"
                + (" pingpong" if self.pingpong else ""))


def _max_stages(block_m: int, block_n: int, in_bytes: int, out_bytes: int,
                sb_per_row: bool, add_c: bool = False, a_scale_rows_x4: bool = False) -> int:
    best = 0
    for s in range(1, _MAX_STAGES + 1):
        if layout.gemm_smem_bytes(block_m, block_n, s, in_bytes, out_bytes,
                                  sb_per_row, add_c, a_scale_rows_x4) <= layout.MAX_DYNAMIC_SMEM:
            best = s
    return best


def _block_n_candidates(fp8: bool, sb_per_row: bool, block_m: int) -> list[int]:
    # Accumulator registers per math thread: BN/2 per 64-row wave (+ BN/2
    # for FP8 promotion) must fit the 232/248-register budget.
    if block_m == 256:
        max_bn = 128
    elif block_m == _THREE_WG_BLOCK_M:
        max_bn = 128  # a result and an accumulator in 160 registers
    else:
        max_bn = 192 if fp8 else 256
    out = []
    for bn in range(16, max_bn + 1, 16):
        if fp8 and not sb_per_row and not layout.fits_two_scale_blocks(bn):
            continue
        out.append(bn)
    return out


#: FP8 dense GEMMs of at least this many rows take their scales by TMA:
#: measured +7-10% at M = 4096 (H100, 2026-11-28, transpose included) over the
#: cp.async scale loader, but the A scales must then be transposed first (one
#: small XLA op, a few microseconds even when tiny, unless XLA fuses it into
#: the quantization), which would cost more than it gains on short
#: small-M GEMMs.  ``JAXGEMM_TMA_SCALES=0/1`` forces either path (A/B runs).
TMA_SCALES_MIN_ROWS = 1024


def _forced_tma_scales(allowed) -> int | None:
    """The scale path ``JAXGEMM_TMA_SCALES`` forces, if it names one of
    ``allowed`` (A/B runs and bisecting); else None."""
    forced = os.environ.get("JAXGEMM_TMA_SCALES", "")
    return int(forced) if forced in allowed else None


def scales_by_tma(rows: int) -> int:
    """How an FP8 GEMM over ``rows`` rows of A loads its scales: 0 a cp.async
    warp, 1 TMA from the transposed A scales, 2 TMA row boxes of the
    row-major A scales (4 K blocks per row, no transpose; experimental, only
    by ``JAXGEMM_TMA_SCALES=2``)."""
    forced = _forced_tma_scales(("0", "1", "2"))
    return int(rows >= TMA_SCALES_MIN_ROWS) if forced is None else forced


def three_warpgroups_allowed(rows: int) -> bool:
    """Whether a dense FP8 GEMM over ``rows`` rows may take 192-row tiles
    (three math warpgroups): measured with the scales loaded by TMA from the
    transposed layout (scales_tma 1) only."""
    return scales_by_tma(rows) == 1


#: FP8 m-grouped GEMMs with tiles of at least this many rows take their
#: scales by TMA row boxes.  Measured (H100, 2026-11-28, against the cp.async
#: warp, runs on two machines): 256-row tiles +1-5% on the contiguous
#: balanced and Zipf-1024 rows and the masked expected_m 192/1024 rows (one
#: row -4%); 128-row tiles (Zipf, 256 groups) -3%; 64-row tiles (masked
#: expected_m 20, memory bound) -5 to -22%: a row box brings 16 bytes per
#: row where the tile needs 4, and the stage cap takes stages away.
GROUPED_TMA_SCALES_MIN_BLOCK_M = 256


def grouped_scales_by_tma(block_m: int) -> int:
    """How the FP8 m-grouped GEMMs with ``block_m``-row tiles load their
    scales: 2 TMA row boxes (their tiles start at any row, which rules out
    mode 1's transposed layout) or 0 a cp.async warp.
    ``JAXGEMM_TMA_SCALES=0/2`` forces either (A/B runs)."""
    forced = _forced_tma_scales(("0", "2"))
    if forced is not None:
        return forced
    return 2 if block_m >= GROUPED_TMA_SCALES_MIN_BLOCK_M else 0


def dense_config(m: int, n: int, k: int, *, fp8: bool, out_bytes: int,
                 sb_per_row: bool = False, num_sms: int | None = None,
                 max_block_m: int = 256, add_c: bool = False,
                 three_warpgroups: bool = False, one_problem: bool = False) -> GemmConfig:
    """Block sizes, cluster and stages for a dense NT GEMM of shape (m, n, k);
    ``add_c``: D = C + A @ B^T read from a separate FP32 C;
    ``three_warpgroups``: 192-row tiles may be picked (only the dense FP8
    kernel runs them); ``one_problem``: see _tile_time."""
    return dense_config_and_time(m, n, k, fp8=fp8, out_bytes=out_bytes, sb_per_row=sb_per_row,
                                 num_sms=num_sms, max_block_m=max_block_m, add_c=add_c,
                                 three_warpgroups=three_warpgroups, one_problem=one_problem)[0]


# BF16 dense at short K: the ping-pong kernel, whose warpgroups take
# alternate 128x128 tiles so that one's epilogue overlaps the other's main
# loop.  Against the cooperative kernel (both warpgroups on one 256x128 or
# 128x256 tile), H200, 2026-11-28 (benchmarks/results/ab/
# bf16_pingpong_20261128/):
# - K = 512: +5% at 4096x32768 and +4% at 128x32768 (two rounds each);
#   K = 768 / 1024: +1 to +4% on four shapes (one sweep, against the best
#   cooperative tile, not just the pick), with one cluster at least as fast
#   as two on four of the five short-K shapes.
# - K = 1536: +1% at M = 4096 but -2% at M = 128; K >= 2048: -1 to -9%
#   (each tile's B is read by one warpgroup, not two), -29% at
#   4096x2112x7168 (128x128 tiles fill the SMs worse than the 128x176 pick).
BF16_PINGPONG_MAX_K = 1024


def bf16_dense_config(m: int, n: int, k: int, *, out_bytes: int, num_sms: int | None = None,
                      add_c: bool = False) -> GemmConfig:
    """dense_config for BF16, switched to the ping-pong kernel at short K.

    JAXGEMM_BF16_PINGPONG=1 (0) turns it on (off) wherever the pick has
    tiles of more than 64 rows, for A/B runs."""
    cfg = dense_config(m, n, k, fp8=False, out_bytes=out_bytes, num_sms=num_sms, add_c=add_c,
                       one_problem=True)
    switch = os.environ.get("JAXGEMM_BF16_PINGPONG", "")
    bn = min(cfg.block_n, 128)
    # The ping-pong overlaps one tile's epilogue with the next tile's main
    # loop, so it needs two tiles per CTA; with one (the M <= 128 picks of
    # 32-112 columns) a warpgroup would idle, so those stay cooperative, as
    # they were swept.
    tiles = math.ceil(m / 128) * math.ceil(n / bn)
    use = (switch != "0" if switch else
           k <= BF16_PINGPONG_MAX_K and tiles > (num_sms or H100_SMS))
    if not use or cfg.block_m <= 64:
        return cfg
    pp = GemmConfig(128, bn, _max_stages(128, bn, 2, out_bytes, False, add_c), 1, pingpong=True)
    if os.environ.get("JAXGEMM_PRINT_CONFIGS", "0") not in ("", "0"):
        print(f"[jaxgemm] bf16 gemm m={m} n={n} k={k} -> {pp.describe()} (instead of "
              f"{cfg.describe()})", file=sys.stderr)
    return pp


def _tile_time(m: int, n: int, k: int, bm: int, bn: int, cluster: int, *, fp8: bool,
               out_bytes: int, sb_per_row: bool, add_c: bool, sms: int,
               one_problem: bool = False) -> tuple[float, tuple]:
    """The model's time (seconds) for one candidate tile, and its ranking key
    (smaller is better; ties broken as the comments below say).  ``one_problem``:
    m rows of one GEMM, not the grouped kernels' rows of several (BF16's
    small-M rules apply only then)."""
    small_m_rules = fp8 or (one_problem and m <= BF16_SMALL_M_RULES_MAX_M)
    in_bytes = 1 if fp8 else 2
    flop_clk = _FP8_FLOP_PER_CLK if fp8 else _BF16_FLOP_PER_CLK
    eff = _FP8_EFFICIENCY if fp8 else _BF16_EFFICIENCY
    c_bytes = 4 if add_c else 0
    hbm_s = ((m * k + n * k) * in_bytes + m * n * (out_bytes + c_bytes)) / _HBM_BYTES
    usable = sms // cluster * cluster
    n_blocks = math.ceil(n / bn)
    units = math.ceil(m / bm) * math.ceil(n_blocks / cluster)
    waves = math.ceil(units * cluster / usable)
    k_stages = math.ceil(k / (128 // in_bytes))
    per_row = fp8 and sb_per_row and m >= _PER_ROW_MODEL_MIN_M
    if per_row:
        rate = min(_FP8_PER_ROW_ELEMS_PER_CLK[bm] * (_FP8_PER_ROW_ODD_N if bn % 64 else 1.0),
                   32 * _FP8_CEILING_PACE * _smem_ceiling(bm, bn))
        compute = (k_stages * bm * bn / rate
                   + bm * bn * (out_bytes + c_bytes) * _FP8_PER_ROW_WAVE_STAGING[bm]
                   / _FP8_PER_ROW_EPILOGUE_BYTES_PER_CLK)
    else:
        # FP8 tiles that straddle two B scale blocks pay a select per
        # promoted element (measured ~15% slower at equal waves).
        straddle = 1.15 if fp8 and not sb_per_row and 128 % bn and bn % 128 else 1.0
        compute = k_stages * (2 * bm * bn * (128 // in_bytes) /
                              (flop_clk * _tile_efficiency(eff, bm, bn, fp8))
                              * straddle + _STAGE_OVERHEAD_CLK)
    wide = (bm >= 128 and bn >= 128 if fp8 else
            small_m_rules and bm == 128 and bn >= _BF16_WIDE_L2_MIN_BLOCK_N)
    l2 = (k * (bm / cluster + bn) * in_bytes + bm * bn * (out_bytes + c_bytes)) / \
        (_L2_BYTES_PER_CLK_PER_SM_WIDE if wide else _L2_BYTES_PER_CLK_PER_SM)
    # A cluster tile past the N edge still costs its CTAs' time.
    t = max(waves * max(compute, l2) / _CLOCK, hbm_s)
    if small_m_rules and bm == 64 and 64 < m <= 128:
        t *= _SPLIT_M_PENALTY
    if fp8 and cluster > 1 and bn > 128:
        t *= _WIDE_CLUSTER_PENALTY
    # Ties: bigger tiles, then taller ones (fewer M blocks read B fewer
    # times: 128x64 beat 64x128 by 11-13% at M = 128 in the 2026-11-27
    # sweep), then multicast (it also eases L2 beyond what the model counts:
    # the sweep's large-M winners all used it), except per-row 128-row tiles,
    # which ran faster alone (see _FP8_PER_ROW_ELEMS_PER_CLK).
    # Memory-bound ties (t at the HBM floor): the grid that keeps the most
    # SMs streaming wins.  Measured on the H100 (sweep of 2026-11-28,
    # M <= 128): 64x64 over 64x80 at N = 7168 (112 vs 90 CTAs, +12-14%),
    # 64x128 over 64x192 at N = 32768 (256 vs 171 tiles on 2 waves of 132,
    # +19%), 128x128 over 128x192 likewise (+22%).  Bigger tiles break the
    # remaining ties.  (BF16: one problem of at most 128 rows, as swept.)
    fill = -round(units * cluster / (waves * usable), 2) if small_m_rules and t <= hbm_s else 0.0
    key = (round(t * 1e7), fill, -bm * bn, -bm, cluster if per_row and bm == 128 else -cluster)
    return t, key


def config_time(m: int, n: int, k: int, cfg: GemmConfig, *, fp8: bool, out_bytes: int,
                sb_per_row: bool = False, add_c: bool = False,
                num_sms: int | None = None) -> float:
    """The model's time estimate (seconds) for a given tile config (sweeps
    and tests compare it with measurements)."""
    return _tile_time(m, n, k, cfg.block_m, cfg.block_n, cfg.cluster, fp8=fp8,
                      out_bytes=out_bytes, sb_per_row=sb_per_row, add_c=add_c,
                      sms=num_sms or H100_SMS)[0]


def dense_config_and_time(m: int, n: int, k: int, *, fp8: bool, out_bytes: int,
                          sb_per_row: bool = False, num_sms: int | None = None,
                          max_block_m: int = 256, add_c: bool = False,
                          three_warpgroups: bool = False,
                          one_problem: bool = False) -> tuple[GemmConfig, float]:
    """:func:`dense_config` and the model's time estimate (seconds)."""
    sms = num_sms or H100_SMS
    in_bytes = 1 if fp8 else 2
    best = None
    # 192-row tiles: where they were measured (BF16 out, M >= 1024 with the
    # scales loaded by TMA; the caller says so: the cp.async loader warp
    # spills 4 bytes in the three-warpgroup kernel's 32-register producer).
    three_wg = (three_warpgroups and fp8 and not sb_per_row and not add_c and out_bytes == 2
                and m >= TMA_SCALES_MIN_ROWS)
    for bm in (64, 128, _THREE_WG_BLOCK_M, 256):
        if bm > max_block_m or (bm > 64 and m <= bm // 2):
            continue
        if bm == _THREE_WG_BLOCK_M and not three_wg:
            continue
        for cluster in (1, 2):
            if (bm // cluster) % 8 or cluster > sms:
                continue
            if bm == _THREE_WG_BLOCK_M and cluster > 1:
                continue
            if cluster > 1 and m < _MIN_M_FOR_CLUSTER:
                continue
            for bn in _block_n_candidates(fp8, sb_per_row, bm):
                stages = _max_stages(bm, bn, in_bytes, out_bytes, sb_per_row, add_c)
                if stages < 3:
                    continue
                t, key = _tile_time(m, n, k, bm, bn, cluster, fp8=fp8, out_bytes=out_bytes,
                                    sb_per_row=sb_per_row, add_c=add_c, sms=sms,
                                    one_problem=one_problem)
                if best is None or key < best[0]:
                    best = (key, GemmConfig(bm, bn, stages, cluster), t)
    assert best is not None
    cfg = best[1]
    if os.environ.get("JAXGEMM_PRINT_CONFIGS", "0") not in ("", "0"):
        print(f"[jaxgemm] {'fp8' if fp8 else 'bf16'} gemm m={m} n={n} k={k} -> "
              f"{cfg.describe()} (est {best[2] * 1e6:.1f} us)", file=sys.stderr)
    return cfg, best[2]

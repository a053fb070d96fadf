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
# ~3.0 TB/s device copy; FP8 dense peak ~1979 TFLOPS, BF16 half of it).
H100_SMS = 132
_FP8_FLOPS_PER_SM = 1979e12 / H100_SMS
_BF16_FLOPS_PER_SM = 989e12 / H100_SMS
_L2_BYTES_PER_SM = 110e9   # L2 -> SM streaming rate one SM sustains
_HBM_BYTES = 3.0e12
# One math warpgroup cannot overlap promotion with its own wgmma; two can.
_FP8_EFFICIENCY = {64: 0.62, 128: 0.85}
_BF16_EFFICIENCY = {64: 0.75, 128: 0.9}
_MAX_STAGES = 12


@dataclasses.dataclass(frozen=True)
class GemmConfig:
    block_m: int
    block_n: int
    stages: int
    band_n: int = 16

    def describe(self) -> str:
        return f"{self.block_m}x{self.block_n}x{self.stages}st"


def _max_stages(block_m: int, block_n: int, in_bytes: int, out_bytes: int,
                sb_per_row: bool) -> int:
    best = 0
    for s in range(1, _MAX_STAGES + 1):
        if layout.gemm_smem_bytes(block_m, block_n, s, in_bytes, out_bytes,
                                  sb_per_row) <= layout.MAX_DYNAMIC_SMEM:
            best = s
    return best


def _block_n_candidates(fp8: bool, sb_per_row: bool, block_m: int) -> list[int]:
    # Accumulator registers: BN/2 (+ BN/2 for FP8 promotion) per thread must
    # fit the math warpgroups' budget (232/248 registers): BN <= 192 for FP8.
    max_bn = 192 if fp8 else 256
    out = []
    for bn in range(16, max_bn + 1, 16):
        if fp8 and not sb_per_row and not layout.fits_two_scale_blocks(bn):
            continue
        out.append(bn)
    return out


def dense_config(m: int, n: int, k: int, *, fp8: bool, out_bytes: int,
                 sb_per_row: bool = False, num_sms: int | None = None) -> GemmConfig:
    """Block sizes and stages for a dense NT GEMM of shape (m, n, k)."""
    sms = num_sms or H100_SMS
    in_bytes = 1 if fp8 else 2
    rate = _FP8_FLOPS_PER_SM if fp8 else _BF16_FLOPS_PER_SM
    eff = _FP8_EFFICIENCY if fp8 else _BF16_EFFICIENCY
    hbm_bytes = (m * k + n * k) * in_bytes + m * n * out_bytes
    best = None
    for bm in (64, 128):
        if bm == 128 and m <= 64:
            continue
        for bn in _block_n_candidates(fp8, sb_per_row, bm):
            stages = _max_stages(bm, bn, in_bytes, out_bytes, sb_per_row)
            if stages < 3:
                continue
            tiles = math.ceil(m / bm) * math.ceil(n / bn)
            waves = math.ceil(tiles / sms)
            # Rows/columns past the problem edge cost time but do no work.
            compute = 2 * bm * bn * k / (rate * eff[bm])
            load = (bm + bn) * k * in_bytes / _L2_BYTES_PER_SM
            store = bm * bn * out_bytes / _L2_BYTES_PER_SM
            t = max(waves * (max(compute, load) + store), hbm_bytes / _HBM_BYTES)
            key = (t, -bm * bn)
            if best is None or key < best[0]:
                best = (key, GemmConfig(bm, bn, stages))
    assert best is not None
    cfg = best[1]
    if os.environ.get("JAXGEMM_PRINT_CONFIGS", "0") not in ("", "0"):
        print(f"[jaxgemm] {'fp8' if fp8 else 'bf16'} gemm m={m} n={n} k={k} -> "
              f"{cfg.describe()} (est {best[0][0] * 1e6:.1f} us)", file=sys.stderr)
    return cfg

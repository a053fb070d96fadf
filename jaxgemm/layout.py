"""Operand layouts and alignment rules.

These rules live in C++ (``ffi/layout.h``) and reach Python through the
extension module, so the Python argument checks and the FFI handlers' checks
use the same numbers.  Everything here is a pure function of shapes.
"""
from __future__ import annotations

from jaxgemm import _jaxgemm_ext as _ext

#: Scale granularity: 1x128 per token (activations), 128x128 per block (weights).
SCALE_BLOCK: int = _ext.SCALE_BLOCK
#: Global strides handed to TMA must be multiples of this many bytes.
TMA_STRIDE_ALIGN_BYTES: int = _ext.TMA_STRIDE_ALIGN_BYTES
#: Scales loaded by TMA: the transposed A scales' rows and the B scales' K
#: blocks are padded to a multiple of this (a 16-byte stride).
TMA_SCALE_ALIGN: int = _ext.TMA_SCALE_ALIGN
#: K consumed per pipeline stage by the FP8 kernels (one scale block).
BLOCK_K: int = _ext.BLOCK_K
#: Widest tile the kernels use along N.
MAX_BLOCK_N: int = _ext.MAX_BLOCK_N
#: Dynamic shared memory a Hopper block may use.
MAX_DYNAMIC_SMEM: int = _ext.MAX_DYNAMIC_SMEM
#: Tallest tile of the k-grouped GEMMs (one 64-row wave per math warpgroup).
K_GROUPED_MAX_BLOCK_M: int = _ext.K_GROUPED_MAX_BLOCK_M


def num_scale_blocks(k: int) -> int:
    """Number of 128-wide scale blocks along a contraction axis of length ``k``."""
    return int(_ext.num_scale_blocks(int(k)))


def per_token_scale_shape(rows: int, k: int) -> tuple[int, int]:
    """Scale shape of a per-token (1x128) quantized ``[rows, k]`` operand."""
    return (int(rows), num_scale_blocks(k))


def per_block_scale_shape(n: int, k: int) -> tuple[int, int]:
    """Scale shape of a per-block (128x128) quantized ``[n, k]`` operand."""
    return (num_scale_blocks(n), num_scale_blocks(k))


def contiguous_alignment(itemsize: int) -> int:
    """Elements per 16 bytes: the kernels' alignment on every contiguous axis."""
    return int(_ext.contiguous_alignment(int(itemsize)))


def k_grouped_scale_rows(k_total: int, groups: int) -> int:
    """Static number of 1x128 scale rows of a k-grouped operand.

    Each group's scale blocks start at the group's first token (a block never
    straddles two groups); group ``g`` owns ``ceil(k_g / 128)`` rows, stored
    group after group.  This bound holds for any split of ``k_total`` tokens
    into ``groups`` groups; rows past the last group's are ignored.
    """
    return int(_ext.k_grouped_scale_rows(int(k_total), int(groups)))


def gemm_smem_bytes(block_m: int, block_n: int, stages: int, in_bytes: int,
                    out_bytes: int, sb_per_row: bool = False, add_c: bool = False,
                    a_scale_rows_x4: bool = False) -> int:
    """Dynamic shared memory of a GEMM kernel config (src_cuda/smem_plan.h);
    ``add_c``: a GEMM that reads C (whole output blocks staged);
    ``a_scale_rows_x4``: A scales in TMA row boxes of 4 K blocks (scales_tma 2)."""
    return int(_ext.gemm_smem_bytes(block_m, block_n, stages, in_bytes, out_bytes,
                                    bool(sb_per_row), bool(add_c), bool(a_scale_rows_x4)))


def fits_two_scale_blocks(block_n: int) -> bool:
    """Whether an N tile of this width straddles at most two 128x128 B-scale blocks."""
    return bool(_ext.fits_two_scale_blocks(int(block_n)))

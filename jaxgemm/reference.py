"""Pure-JAX reference implementations of every jaxgemm primitive.

Each function has the primitive's signature: ``ref(*operands, **params)``.
They dequantize to float32 (:func:`jaxgemm.quantize.dequantize`), multiply with
``precision=HIGHEST`` and ``preferred_element_type=float32``, add ``c`` and
cast to ``out_dtype``.  Group sizes follow the clamp semantics of
:mod:`jaxgemm._groups`.  They run on every platform that has no kernel (CPU),
are jit-able and differentiable through plain ``jax.numpy``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgemm import _groups
from jaxgemm.quantize import dequantize, dequantize_k_grouped

__all__ = [
    "fp8_gemm_nt",
    "bf16_gemm_nt",
    "m_grouped_fp8_gemm_nt_contiguous",
    "m_grouped_bf16_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_masked",
    "m_grouped_bf16_gemm_nt_masked",
    "k_grouped_fp8_gemm_tn_contiguous",
    "k_grouped_bf16_gemm_tn_contiguous",
    "REFERENCE_IMPLS",
]

_HI = jax.lax.Precision.HIGHEST
_F32 = jnp.float32

# [M,K] x [G,N,K] -> [M,N], rows of lhs grouped (DeepGEMM's NT weight layout).
_RAGGED_M_NT = jax.lax.RaggedDotDimensionNumbers(
    dot_dimension_numbers=(([1], [2]), ([], [])),
    lhs_ragged_dimensions=[0],
    rhs_group_dimensions=[0],
)


def _f32(x):
    return x.astype(_F32)


def _nt(a32, b32):
    """``a [..., M, K] @ b [N, K]^T`` in float32."""
    return jax.lax.dot_general(a32, b32, (((a32.ndim - 1,), (1,)), ((), ())),
                               precision=_HI, preferred_element_type=_F32)


def _dense(a32, b32, c, out_dtype):
    d = _nt(a32, b32)
    if c is not None:
        d = d + c.astype(_F32)
    return d.astype(out_dtype)


def fp8_gemm_nt(a, sa, b, sb, c=None, *, out_dtype, num_sms=None):
    """D = C + dequant(A) @ dequant(B)^T; B's scale per block or per row."""
    del num_sms
    return _dense(dequantize(a, sa), dequantize(b, sb), c, out_dtype)


def bf16_gemm_nt(a, b, c=None, *, out_dtype, num_sms=None):
    """D = C + A @ B^T in float32, cast to ``out_dtype``."""
    del num_sms
    return _dense(_f32(a), _f32(b), c, out_dtype)


def _m_contiguous(a32, b32, group_sizes, out_dtype):
    m, n = a32.shape[0], b32.shape[1]
    if b32.shape[0] == 0 or m == 0:
        return jnp.zeros((m, n), out_dtype)
    sizes = _groups.clamped_sizes(group_sizes, m)
    d = jax.lax.ragged_dot_general(a32, b32, sizes, _RAGGED_M_NT, precision=_HI,
                                   preferred_element_type=_F32)
    # ragged_dot leaves rows past sum(sizes) at 0; make it explicit.
    valid = jnp.arange(m) < jnp.sum(sizes)
    return jnp.where(valid[:, None], d, 0.0).astype(out_dtype)


def m_grouped_fp8_gemm_nt_contiguous(a, sa, b, sb, group_sizes, *, out_dtype,
                                     num_sms=None):
    """Rows of A grouped by ``group_sizes``; group g uses B[g]; other rows 0."""
    del num_sms
    return _m_contiguous(dequantize(a, sa), dequantize(b, sb), group_sizes,
                         out_dtype)


def m_grouped_bf16_gemm_nt_contiguous(a, b, group_sizes, *, out_dtype,
                                      num_sms=None):
    """BF16 twin of :func:`m_grouped_fp8_gemm_nt_contiguous`."""
    del num_sms
    return _m_contiguous(_f32(a), _f32(b), group_sizes, out_dtype)


def _masked(a32, b32, masked_m, out_dtype):
    g, m_max = a32.shape[0], a32.shape[1]
    d = jnp.einsum("gmk,gnk->gmn", a32, b32, precision=_HI,
                   preferred_element_type=_F32)
    mm = _groups.clamped_masked_m(masked_m, m_max)
    rows = jnp.arange(m_max)[None, :, None] < mm[:, None, None]
    del g
    return jnp.where(rows, d, 0.0).astype(out_dtype)


def m_grouped_fp8_gemm_nt_masked(a, sa, b, sb, masked_m, *, expected_m,
                                 out_dtype, num_sms=None, zero_masked_rows=True):
    """D[g] = A[g] @ B[g]^T on rows ``< masked_m[g]``; other rows 0 (always)."""
    del expected_m, num_sms, zero_masked_rows
    return _masked(dequantize(a, sa), dequantize(b, sb), masked_m, out_dtype)


def m_grouped_bf16_gemm_nt_masked(a, b, masked_m, *, expected_m, out_dtype,
                                  num_sms=None, zero_masked_rows=True):
    """BF16 twin of :func:`m_grouped_fp8_gemm_nt_masked`."""
    del expected_m, num_sms, zero_masked_rows
    return _masked(_f32(a), _f32(b), masked_m, out_dtype)


def _k_grouped(a32, b32, group_sizes, c):
    # A masked einsum rather than ragged_dot_general's ragged-contracting mode,
    # whose gradient jax 0.10 does not implement: memory O(G * K_total * M).
    k_total, m = a32.shape
    n = b32.shape[1]
    g = group_sizes.shape[0]
    if g == 0 or k_total == 0:
        d = jnp.zeros((g, m, n), _F32)
    else:
        start, end = _groups.clamped_group_bounds(group_sizes, k_total)
        t = jnp.arange(k_total)
        member = (t[None, :] >= start[:, None]) & (t[None, :] < end[:, None])
        am = jnp.where(member[:, :, None], a32[None], 0.0)  # [G, K, M]
        d = jax.lax.dot_general(am, b32, (((1,), (0,)), ((), ())), precision=_HI,
                                preferred_element_type=_F32)
    if c is not None:
        d = d + c.astype(_F32)
    return d


def k_grouped_fp8_gemm_tn_contiguous(a, sa, b, sb, group_sizes, c=None, *,
                                     num_sms=None):
    """D[g] = C[g] + A_g^T @ B_g over group g's tokens (group-aligned scales)."""
    del num_sms
    a32 = dequantize_k_grouped(a, sa, group_sizes)
    b32 = dequantize_k_grouped(b, sb, group_sizes)
    return _k_grouped(a32, b32, group_sizes, c)


def k_grouped_bf16_gemm_tn_contiguous(a, b, group_sizes, c=None, *,
                                      num_sms=None):
    """BF16 twin of :func:`k_grouped_fp8_gemm_tn_contiguous`."""
    del num_sms
    _, valid = _groups.k_grouped_token_rows(group_sizes, a.shape[0])
    a32 = jnp.where(valid[:, None], _f32(a), 0.0)
    b32 = jnp.where(valid[:, None], _f32(b), 0.0)
    return _k_grouped(a32, b32, group_sizes, c)


#: Primitive name -> reference implementation.
REFERENCE_IMPLS = {name: globals()[name] for name in __all__[:-1]}

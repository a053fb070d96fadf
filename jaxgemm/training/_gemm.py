"""Mode-dispatched GEMM building blocks shared by the differentiable ops.

An *operand* is what a GEMM consumes in a given mode (see
:mod:`jaxgemm.training.recipe`):

* ``"fp8"``: an FP8 pair ``(data, scale)``;
* ``"bf16"``: a bfloat16 array;
* ``"f32"``: a float32 (or float64) array, unquantized.

Every GEMM here is in the NT form ``D = A @ B^T`` (contraction over the last
axis of both), so the three modes share the same wiring, transposes included;
only the quantizers and the GEMM at the bottom differ.  The ``"f32"`` pieces
are plain differentiable ``jax.numpy``, which is what makes
``Recipe.exact()`` differentiable to any order.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgemm import _groups
from jaxgemm.ops import dense as _dense
from jaxgemm.ops import grouped as _grouped
from jaxgemm.quantize import (
    per_block_cast_to_fp8,
    per_token_cast_to_fp8,
    per_token_cast_to_fp8_grouped,
)
from jaxgemm.training.recipe import Recipe


class Static(NamedTuple):
    """A differentiable op's non-differentiable arguments: the recipe and the
    input dtypes its cotangents are cast back to."""
    recipe: Recipe
    x_dtype: np.dtype
    w_dtype: np.dtype


def check_recipe_and_inputs(fn: str, recipe, **inputs) -> None:
    """The checks every differentiable op starts with: a Recipe, and
    high-precision floating inputs (they are quantized here, not before)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"{fn}: recipe must be a jaxgemm.Recipe; got "
                        f"{type(recipe).__name__}")
    for name, a in inputs.items():
        if not jnp.issubdtype(a.dtype, jnp.floating) or a.dtype == jnp.float8_e4m3fn:
            raise TypeError(f"{fn}: {name} has dtype {a.dtype}; expected a floating "
                            "dtype (bfloat16, float16, float32)")

_HI = jax.lax.Precision.HIGHEST
_BF16 = np.dtype(jnp.bfloat16)
_F32 = np.dtype(np.float32)

# [M, K] x [G, N, K] -> [M, N], rows of the lhs grouped (the NT grouped form).
_RAGGED_M_NT = jax.lax.RaggedDotDimensionNumbers(
    dot_dimension_numbers=(([1], [2]), ([], [])),
    lhs_ragged_dimensions=[0],
    rhs_group_dimensions=[0],
)


def exact_dtype(*dtypes):
    """float32, or float64 when an input is float64 (the ``"f32"`` mode's type)."""
    return np.dtype(jnp.result_type(np.float32, *dtypes))


def prim_out_dtype(dtype):
    """The GEMM output dtype to ask for before casting to ``dtype``."""
    return _BF16 if np.dtype(dtype) == _BF16 else _F32


# ------------------------------------------------------------------ quantizers


def quant_rows(x, mode, ue8m0, cdt=None):
    """Operand of ``x [..., R, C]`` contracted over its last axis (1x128 per token)."""
    if mode == "fp8":
        return per_token_cast_to_fp8(x, use_ue8m0=ue8m0)
    if mode == "bf16":
        return x.astype(_BF16)
    return x.astype(cdt or exact_dtype(x.dtype))


def quant_blocks(w, mode, ue8m0, cdt=None):
    """Operand of a weight ``w [..., N, K]`` (128x128 blocks)."""
    if mode == "fp8":
        return per_block_cast_to_fp8(w, use_ue8m0=ue8m0)
    if mode == "bf16":
        return w.astype(_BF16)
    return w.astype(cdt or exact_dtype(w.dtype))


def transpose(op, mode):
    """Swap the last two axes of an operand (FP8: data and scale alike).

    128x128 block scales transpose exactly: the transposed pair is the
    per-block quantization of the transposed weight, without re-quantizing.
    """
    if mode == "fp8":
        d, s = op
        return jnp.swapaxes(d, -1, -2), jnp.swapaxes(s, -1, -2)
    return jnp.swapaxes(op, -1, -2)


# ------------------------------------------------------------------ GEMMs


def gemm_nt(a, b, mode, out_dtype):
    """``D [M, N] = A [M, K] @ B [N, K]^T`` in ``out_dtype``."""
    if mode == "fp8":
        d = _dense.fp8_gemm_nt(a, b, out_dtype=prim_out_dtype(out_dtype))
    elif mode == "bf16":
        d = _dense.bf16_gemm_nt(a, b, out_dtype=prim_out_dtype(out_dtype))
    else:
        d = jax.lax.dot_general(a, b, (((1,), (1,)), ((), ())), precision=_HI,
                                preferred_element_type=a.dtype)
    return d.astype(out_dtype)


def m_grouped_nt(a, b, group_sizes, mode, out_dtype):
    """``D[r] = A[r] @ B[g(r)]^T``; rows past ``sum(group_sizes)`` are zero."""
    if mode == "fp8":
        d = _grouped.m_grouped_fp8_gemm_nt_contiguous(
            a, b, group_sizes, out_dtype=prim_out_dtype(out_dtype))
    elif mode == "bf16":
        d = _grouped.m_grouped_bf16_gemm_nt_contiguous(
            a, b, group_sizes, out_dtype=prim_out_dtype(out_dtype))
    else:
        m, n = a.shape[0], b.shape[1]
        if m == 0 or b.shape[0] == 0:
            return jnp.zeros((m, n), out_dtype)
        sizes = _groups.clamped_sizes(group_sizes, m)
        d = jax.lax.ragged_dot_general(a, b, sizes, _RAGGED_M_NT, precision=_HI,
                                       preferred_element_type=a.dtype)
        valid = jnp.arange(m) < jnp.sum(sizes)
        d = jnp.where(valid[:, None], d, jnp.zeros((), d.dtype))
    return d.astype(out_dtype)


def k_grouped_tn(x, dy, group_sizes, mode, ue8m0, out_dtype):
    """``D[g] = X_g^T @ dY_g`` over group ``g``'s tokens: ``[G, M, N]``.

    ``x [T, M]`` and ``dy [T, N]`` are the high-precision tensors; in FP8 both
    are quantized along the token axis in group-aligned 1x128 blocks.
    """
    if mode == "fp8":
        a = per_token_cast_to_fp8_grouped(x, group_sizes, use_ue8m0=ue8m0)
        b = per_token_cast_to_fp8_grouped(dy, group_sizes, use_ue8m0=ue8m0)
        d = _grouped.k_grouped_fp8_gemm_tn_contiguous(a, b, group_sizes)
    elif mode == "bf16":
        d = _grouped.k_grouped_bf16_gemm_tn_contiguous(
            x.astype(_BF16), dy.astype(_BF16), group_sizes)
    else:
        cdt = exact_dtype(x.dtype, dy.dtype)
        t = x.shape[0]
        g = group_sizes.shape[0]
        if g == 0 or t == 0:
            return jnp.zeros((g, x.shape[1], dy.shape[1]), out_dtype)
        # A masked contraction (differentiable to any order), O(G * T * M).
        start, end = _groups.clamped_group_bounds(group_sizes, t)
        tok = jnp.arange(t)
        member = (tok[None, :] >= start[:, None]) & (tok[None, :] < end[:, None])
        xm = jnp.where(member[:, :, None], x.astype(cdt)[None], jnp.zeros((), cdt))
        d = jax.lax.dot_general(xm, dy.astype(cdt), (((1,), (0,)), ((), ())),
                                precision=_HI, preferred_element_type=cdt)
    return d.astype(out_dtype)

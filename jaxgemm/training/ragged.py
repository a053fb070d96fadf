"""``fp8_ragged_dot``: ``jax.lax.ragged_dot`` on the FP8 grouped GEMMs (``custom_vjp``).

Wiring, for ``x [M, K]`` (rows grouped in order by ``group_sizes [G]``) and
``w [G, K, N]``:

==========  =======================================  ==============================
GEMM        op                                       operands
==========  =======================================  ==============================
forward     ``m_grouped_fp8_gemm_nt_contiguous``     ``x`` 1x128 along K;
                                                     ``w^T [G, N, K]`` 128x128
dgrad       ``m_grouped_fp8_gemm_nt_contiguous``     ``dy [M, N]`` 1x128 along N;
                                                     ``w [G, K, N]``: the forward's
                                                     quantized ``w^T``, transposed
wgrad       ``k_grouped_fp8_gemm_tn_contiguous``     ``x``, ``dy`` group-aligned
                                                     1x128 along the tokens;
                                                     ``dw [G, K, N]`` float32
==========  =======================================  ==============================
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgemm import _explicit
from jaxgemm.training import _gemm
from jaxgemm.training.recipe import Recipe

__all__ = ["fp8_ragged_dot"]


def _check(x, w, group_sizes, recipe):
    fn = "fp8_ragged_dot"
    _gemm.check_recipe_and_inputs(fn, recipe, x=x, w=w)
    if not jnp.issubdtype(group_sizes.dtype, jnp.integer):
        raise TypeError(f"{fn}: group_sizes has dtype {group_sizes.dtype}; expected "
                        "an integer dtype (int32)")
    if x.ndim != 2:
        raise ValueError(f"{fn}: x has shape {tuple(x.shape)}; expected rank 2 [M, K]")
    if w.ndim != 3:
        raise ValueError(f"{fn}: w has shape {tuple(w.shape)}; expected rank 3 "
                         "[G, K, N]")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"{fn}: w has shape {tuple(w.shape)} = [G, K, N]; its K "
                         f"({w.shape[1]}) must equal x's K ({x.shape[1]})")
    if group_sizes.shape != (w.shape[0],):
        raise ValueError(f"{fn}: group_sizes has shape {tuple(group_sizes.shape)}; "
                         f"expected ({w.shape[0]},) = [G] for w of shape "
                         f"{tuple(w.shape)}")


def fp8_ragged_dot(x, w, group_sizes, *, recipe: Recipe = Recipe()):
    """``jax.lax.ragged_dot`` on the FP8 grouped GEMMs, differentiable (DeepSeek-V3 recipe).

    Same signature and semantics as ``jax.lax.ragged_dot(x, w, group_sizes)``:
    the rows of ``x`` are split in order into ``G`` groups of
    ``group_sizes[g]`` rows and row ``r`` of group ``g`` gives
    ``x[r] @ w[g]``; rows at or past ``sum(group_sizes)`` come out zero.  Bad
    run-time group sizes follow jaxgemm's clamp semantics (``docs/api.md``).

    Forward on :func:`jaxgemm.m_grouped_fp8_gemm_nt_contiguous` (``x`` 1x128
    per token, ``w^T`` per 128x128 block).  ``custom_vjp`` backward: dgrad on
    the same m-grouped GEMM with the forward's quantized weights transposed
    (scales transposed, not re-quantized); wgrad on
    :func:`jaxgemm.k_grouped_fp8_gemm_tn_contiguous` with ``x`` and ``dy``
    quantized in group-aligned 1x128 blocks along the tokens
    (:func:`jaxgemm.per_token_cast_to_fp8_grouped`).  ``group_sizes`` gets a
    zero (``float0``) cotangent.  ``recipe`` can put any GEMM in BF16 or
    unquantized float32 (:class:`jaxgemm.Recipe`).

    Args:
      x: ``[M, K]`` floating (bfloat16 or float32).
      w: ``[G, K, N]`` floating (the ``jax.lax.ragged_dot`` rhs layout).
      group_sizes: integer ``[G]`` (converted to int32), may be traced.
      recipe: a :class:`jaxgemm.Recipe` (static; default: all FP8).

    Returns:
      ``[M, N]`` in ``x``'s dtype.

    Raises:
      TypeError: wrong dtypes or a recipe that is not a ``Recipe``.
      ValueError: wrong ranks or mismatched K / G.
    """
    x = jnp.asarray(x)
    w = jnp.asarray(w)
    group_sizes = jnp.asarray(group_sizes)
    _check(x, w, group_sizes, recipe)
    st = _gemm.Static(recipe, np.dtype(x.dtype), np.dtype(w.dtype))
    return _ragged(st, x, w, group_sizes.astype(jnp.int32))


def _cdt(st):
    return _gemm.exact_dtype(st.x_dtype, st.w_dtype)


def _fwd_parts(st, x, w, gs):
    r = st.recipe
    cdt = _cdt(st)
    wt = jnp.swapaxes(w, 1, 2)  # [G, N, K]
    w_fwd = _gemm.quant_blocks(wt, r.fwd, r.use_ue8m0, cdt)
    if r.dgrad == r.fwd:
        w_dgrad = w_fwd  # quantized once, reused (transposed) by dgrad
    else:
        w_dgrad = _gemm.quant_blocks(wt, r.dgrad, r.use_ue8m0, cdt)
    a = _gemm.quant_rows(x, r.fwd, r.use_ue8m0, cdt)
    y = _gemm.m_grouped_nt(a, w_fwd, gs, r.fwd, st.x_dtype)
    return y, (x, w_dgrad, gs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _ragged(st, x, w, gs):
    return _fwd_parts(st, x, w, gs)[0]


def _ragged_fwd(st, x, w, gs):
    return _fwd_parts(st, x, w, gs)


def _ragged_bwd(st, res, dy):
    r = st.recipe
    cdt = _cdt(st)
    x, w_dgrad, gs = res
    # dgrad: dx [M, K] = dy [M, N] @ w[g] [K, N]^T: B = w as [G, K(out), N(contract)]
    a = _gemm.quant_rows(dy, r.dgrad, r.use_ue8m0, cdt)
    b = _gemm.transpose(w_dgrad, r.dgrad)
    dx = _gemm.m_grouped_nt(a, b, gs, r.dgrad, st.x_dtype)
    # wgrad: dw[g] [K, N] = x_g^T @ dy_g, contraction over the group's tokens
    dw = _gemm.k_grouped_tn(x, dy, gs, r.wgrad, r.use_ue8m0, cdt)
    dgs = np.zeros(gs.shape, dtype=jax.dtypes.float0)
    # Cotangents take their primals' sharding types (explicit mesh axes): w is
    # [G, K, N], w_dgrad's data its [G, N, K] transpose.
    dx = _explicit.typed_like(dx.astype(st.x_dtype), x)
    dw = _explicit.typed_like(dw.astype(st.w_dtype), jax.tree.leaves(w_dgrad)[0], (0, 2, 1))
    return dx, dw, dgs


_ragged.defvjp(_ragged_fwd, _ragged_bwd)

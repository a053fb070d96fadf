"""``fp8_linear``: a differentiable ``x @ kernel`` on the FP8 GEMMs (``custom_vjp``).

Wiring (all three GEMMs in the NT form ``D = A @ B^T``), for ``x [T, K]`` and
``kernel [K, N]``:

==========  ==================================  ================================
GEMM        A                                   B
==========  ==================================  ================================
forward     ``x [T, K]``, 1x128 along K         ``kernel^T [N, K]``, 128x128
dgrad       ``dy [T, N]``, 1x128 along N        ``kernel [K, N]``: the forward's
                                                quantized ``kernel^T``,
                                                transposed (data and scales)
wgrad       ``x^T [K, T]``, 1x128 along T       ``dy^T [N, T]``, 1x128 along T
                                                (per-row B scales); float32 out
==========  ==================================  ================================

Residuals: ``x`` (high precision; wgrad quantizes it along the tokens) and the
quantized ``kernel^T`` of the forward (not re-quantized by dgrad).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgemm import _explicit
from jaxgemm.training import _gemm
from jaxgemm.training.recipe import Recipe

__all__ = ["fp8_linear"]


def _check(x, kernel, recipe):
    fn = "fp8_linear"
    _gemm.check_recipe_and_inputs(fn, recipe, x=x, kernel=kernel)
    if kernel.ndim != 2:
        raise ValueError(f"{fn}: kernel has shape {tuple(kernel.shape)}; expected "
                         "rank 2 [K, N]")
    if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"{fn}: x has shape {tuple(x.shape)} = [..., K]; its K must "
                         f"equal kernel's K ({kernel.shape[0]}) (kernel "
                         f"{tuple(kernel.shape)} = [K, N])")


def fp8_linear(x, kernel, *, recipe: Recipe = Recipe()):
    """Differentiable ``x @ kernel`` on the fine-grained FP8 GEMMs (DeepSeek-V3 recipe).

    Forward: ``x`` is quantized per token (1x128 along K), ``kernel`` per 128x128
    block (once per step) and multiplied on :func:`jaxgemm.fp8_gemm_nt`.  The
    ``custom_vjp`` backward computes dgrad ``dx = dy @ kernel^T`` on the FP8 GEMM
    with ``dy`` quantized per token and the forward's quantized kernel
    (transposed block scales, not re-quantized), and wgrad ``dW = x^T @ dy`` on
    the FP8 GEMM with both operands quantized 1x128 along the token axis and a
    float32 output.  ``recipe`` can put any of the three GEMMs in BF16 or
    unquantized float32 instead (:class:`jaxgemm.Recipe`).  Gradients come back
    in the primal dtypes.

    Works under ``jax.jit``, ``grad``, ``vmap``, ``checkpoint``, ``lax.scan``,
    ``eval_shape`` and ``jax.export``; ``jax.jvp`` (forward mode) is not
    defined (a ``custom_vjp``), forward-over-reverse is.

    Args:
      x: ``[..., K]`` floating activations (bfloat16 or float32); leading axes
        are flattened into the GEMM's M.
      kernel: ``[K, N]`` floating weight (flax's ``nnx.Linear`` convention).
      recipe: a :class:`jaxgemm.Recipe` (static; default: all FP8).

    Returns:
      ``[..., N]`` in ``x``'s dtype.

    Raises:
      TypeError: non-floating inputs or a recipe that is not a ``Recipe``.
      ValueError: ``kernel`` not rank 2, or mismatched K.
    """
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    _check(x, kernel, recipe)
    k, n = kernel.shape
    lead = x.shape[:-1]
    st = _gemm.Static(recipe, np.dtype(x.dtype), np.dtype(kernel.dtype))
    y = _linear(st, x.reshape(-1, k), kernel)
    return y.reshape(*lead, n)


def _cdt(st):
    return _gemm.exact_dtype(st.x_dtype, st.w_dtype)


def _fwd_parts(st, x, kernel):
    r = st.recipe
    cdt = _cdt(st)
    wt = kernel.T  # [N, K]
    w_fwd = _gemm.quant_blocks(wt, r.fwd, r.use_ue8m0, cdt)
    if r.dgrad == r.fwd:
        w_dgrad = w_fwd  # quantized once, reused (transposed) by dgrad
    else:
        w_dgrad = _gemm.quant_blocks(wt, r.dgrad, r.use_ue8m0, cdt)
    a = _gemm.quant_rows(x, r.fwd, r.use_ue8m0, cdt)
    y = _gemm.gemm_nt(a, w_fwd, r.fwd, st.x_dtype)
    return y, (x, w_dgrad)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _linear(st, x, kernel):
    return _fwd_parts(st, x, kernel)[0]


def _linear_fwd(st, x, kernel):
    return _fwd_parts(st, x, kernel)


def _linear_bwd(st, res, dy):
    r = st.recipe
    cdt = _cdt(st)
    x, w_dgrad = res
    # dgrad: dx [T, K] = dy [T, N] @ kernel [K, N]^T  (B = kernel, contract N)
    a = _gemm.quant_rows(dy, r.dgrad, r.use_ue8m0, cdt)
    b = _gemm.transpose(w_dgrad, r.dgrad)
    dx = _gemm.gemm_nt(a, b, r.dgrad, st.x_dtype)
    # wgrad: dW [K, N] = x^T [K, T] @ (dy^T [N, T])^T, 1x128 along the tokens
    xa = _gemm.quant_rows(x.T, r.wgrad, r.use_ue8m0, cdt)
    gb = _gemm.quant_rows(dy.T, r.wgrad, r.use_ue8m0, cdt)
    dw = _gemm.gemm_nt(xa, gb, r.wgrad, cdt)  # float32 (float64 for f64 inputs)
    # Cotangents take their primals' sharding types (explicit mesh axes): the
    # kernel is [K, N], w_dgrad's data its [N, K] transpose.
    dx = _explicit.typed_like(dx.astype(st.x_dtype), x)
    dw = _explicit.typed_like(dw.astype(st.w_dtype), jax.tree.leaves(w_dgrad)[0], (1, 0))
    return dx, dw


_linear.defvjp(_linear_fwd, _linear_bwd)

"""Differentiation rules of the jaxgemm primitives (JVP and transpose).

So that ``jax.grad``, ``jax.jvp``, ``jax.jacfwd`` and numerical gradient checks
work on the raw ops as on any ``jnp`` matmul:

* **BF16 ops** are bilinear in their two matrix operands and linear in ``c``.
  The JVP binds the same primitive once per non-zero tangent; each such bind
  is linear in one operand, and its transpose is another jaxgemm GEMM (so
  the backward runs on the kernels too):

  ===============================  ==================================  ==================================
  op, D =                          cotangent of A                      cotangent of B
  ===============================  ==================================  ==================================
  dense  A B^T (+ C)               dense(G, B^T)                       dense(G^T, A^T)
  m-grouped contiguous  A_r B_g^T  m-grouped(G, B^T, sizes)            k-grouped(G, A, sizes)
  m-grouped masked  A_g B_g^T      masked(G, B^T, masked_m)            k-grouped over the valid rows
  k-grouped  A_g^T B_g (+ C)       m-grouped(B, G, sizes)              m-grouped(A, G^T, sizes)
  ===============================  ==================================  ==================================

  ``C``'s cotangent is ``G``.  The cotangent ``G`` enters those GEMMs in
  bfloat16 (the operands' type; accumulation stays FP32), so a float32
  cotangent is rounded once more than in an all-float32 matmul.  Integer
  operands (group sizes, ``masked_m``) have no derivative.

* **FP8 ops**: the derivative with respect to ``c`` is the identity.  With
  respect to the FP8 data and the scales it is the derivative of the
  dequantized reference (``jaxgemm.reference``), computed by XLA, not by the
  kernels: right for gradient checks, not fast.  Training goes through
  :func:`jaxgemm.fp8_linear` / :func:`jaxgemm.fp8_ragged_dot`, which
  quantize in the forward pass and run the backward GEMMs on FP8 kernels.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import ad

from jaxgemm import _groups
from jaxgemm.reference import REFERENCE_IMPLS

_BF16 = jnp.bfloat16
_F32 = np.dtype(np.float32)

# name -> (operand count without c, whether a trailing c is allowed)
_ARITY = {
    "fp8_gemm_nt": (4, True),
    "bf16_gemm_nt": (2, True),
    "m_grouped_fp8_gemm_nt_contiguous": (5, False),
    "m_grouped_bf16_gemm_nt_contiguous": (3, False),
    "m_grouped_fp8_gemm_nt_masked": (5, False),
    "m_grouped_bf16_gemm_nt_masked": (3, False),
    "k_grouped_fp8_gemm_tn_contiguous": (5, True),
    "k_grouped_bf16_gemm_tn_contiguous": (3, True),
}


def _is_zero(t) -> bool:
    return type(t) is ad.Zero


def _has_c(name, operands) -> bool:
    base, with_c = _ARITY[name]
    return with_c and len(operands) == base + 1


def _add(x, y):
    return y if x is None else x + y


def _with_c_tangent(name, out, t, primals, tangents):
    """Add ``c``'s tangent (the identity) to ``t``; a symbolic zero if none."""
    if _has_c(name, primals) and not _is_zero(tangents[-1]):
        t = _add(t, tangents[-1].astype(out.dtype))
    if t is None:  # jax.typeof: jax >= 0.6
        return out, ad.Zero(jax.typeof(out).to_tangent_aval())
    return out, t


# ------------------------------------------------------------------- JVPs


def _bf16_jvp(prim, name, primals, tangents, **params):
    out = prim.bind(*primals, **params)
    has_c = _has_c(name, primals)
    a, b = primals[0], primals[1]
    rest = tuple(primals[2:len(primals) - 1 if has_c else len(primals)])  # sizes
    ta, tb = tangents[0], tangents[1]
    t = None
    if not _is_zero(ta):
        t = _add(t, prim.bind(ta, b, *rest, **params))
    if not _is_zero(tb):
        t = _add(t, prim.bind(a, tb, *rest, **params))
    return _with_c_tangent(name, out, t, primals, tangents)


def _fp8_jvp(prim, name, primals, tangents, **params):
    out = prim.bind(*primals, **params)
    has_c = _has_c(name, primals)
    n_mat = len(primals) - (1 if has_c else 0)
    idx = [i for i in range(n_mat) if not _is_zero(tangents[i])
           and jnp.issubdtype(primals[i].dtype, jnp.inexact)]
    t = None
    if idx:
        ref = REFERENCE_IMPLS[name]

        def f(*xs):
            full = list(primals[:n_mat])
            for i, x in zip(idx, xs):
                full[i] = x
            return ref(*full, **params)  # c left out: its term is added below

        t = jax.jvp(f, [primals[i] for i in idx], [tangents[i] for i in idx])[1]
        t = t.astype(out.dtype)
    return _with_c_tangent(name, out, t, primals, tangents)


# ------------------------------------------------------------- transposes


def _ct_bf16(ct):
    return ct.astype(_BF16)


def _undefined(x) -> bool:
    return ad.is_undefined_primal(x)


def _check_one_linear(name, a, b):
    if _undefined(a) and _undefined(b):  # never built by the JVP above
        raise NotImplementedError(f"{name}: transpose with both A and B linear")


def _dense_t(prims, ct, *args, out_dtype, num_sms):
    p = prims["bf16_gemm_nt"]
    a, b = args[0], args[1]
    _check_one_linear("bf16_gemm_nt", a, b)
    g = _ct_bf16(ct)
    ct_a = ct_b = ct_c = None
    if _undefined(a):  # [M, K] = G [M, N] @ B [N, K]
        ct_a = p.bind(g, b.T, out_dtype=a.aval.dtype, num_sms=num_sms)
    if _undefined(b):  # [N, K] = G^T [N, M] @ A [M, K]
        ct_b = p.bind(g.T, a.T, out_dtype=b.aval.dtype, num_sms=num_sms)
    if len(args) == 3 and _undefined(args[2]):
        ct_c = ct.astype(args[2].aval.dtype)
    return [ct_a, ct_b] + ([ct_c] if len(args) == 3 else [])


def _m_contig_t(prims, ct, a, b, gs, *, out_dtype, num_sms):
    _check_one_linear("m_grouped_bf16_gemm_nt_contiguous", a, b)
    g = _ct_bf16(ct)
    ct_a = ct_b = None
    if _undefined(a):  # row r of group j: G_r [N] @ B_j [N, K]
        ct_a = prims["m_grouped_bf16_gemm_nt_contiguous"].bind(
            g, jnp.swapaxes(b, 1, 2), gs, out_dtype=a.aval.dtype, num_sms=num_sms)
    if _undefined(b):  # B_j [N, K] = G_j^T A_j over group j's rows
        ct_b = prims["k_grouped_bf16_gemm_tn_contiguous"].bind(
            g, a.astype(_BF16), gs, num_sms=num_sms).astype(b.aval.dtype)
    return [ct_a, ct_b, None]


def _masked_t(prims, ct, a, b, mm, *, expected_m, out_dtype, num_sms, zero_masked_rows=True):
    _check_one_linear("m_grouped_bf16_gemm_nt_masked", a, b)
    g = _ct_bf16(ct)
    ct_a = ct_b = None
    if _undefined(a):  # rows past masked_m come back zero (zero_masked_rows)
        ct_a = prims["m_grouped_bf16_gemm_nt_masked"].bind(
            g, jnp.swapaxes(b, 1, 2), mm, expected_m=expected_m, out_dtype=a.aval.dtype,
            num_sms=num_sms, zero_masked_rows=True)
    if _undefined(b):
        # B_j = G_j^T A_j over the valid rows: one k-grouped GEMM over the
        # flattened [G * M_max] rows, groups of M_max, the invalid rows zeroed
        # in both operands (A's may hold anything, NaN included).
        groups, m_max = a.shape[0], a.shape[1]
        rows = jnp.arange(m_max)[None, :] < _groups.clamped_masked_m(mm, m_max)[:, None]
        gz = jnp.where(rows[..., None], g, jnp.zeros((), _BF16))
        az = jnp.where(rows[..., None], a.astype(_BF16), jnp.zeros((), _BF16))
        sizes = jnp.full((groups,), m_max, jnp.int32)
        ct_b = prims["k_grouped_bf16_gemm_tn_contiguous"].bind(
            gz.reshape(groups * m_max, -1), az.reshape(groups * m_max, -1), sizes,
            num_sms=num_sms).astype(b.aval.dtype)
    return [ct_a, ct_b, None]


def _k_grouped_t(prims, ct, *args, num_sms):
    a, b, gs = args[0], args[1], args[2]
    _check_one_linear("k_grouped_bf16_gemm_tn_contiguous", a, b)
    g = _ct_bf16(ct)  # [G, M, N]
    m_grouped = prims["m_grouped_bf16_gemm_nt_contiguous"]
    ct_a = ct_b = ct_c = None
    if _undefined(a):  # token t of group j: B_t [N] @ G_j^T -> [M]
        ct_a = m_grouped.bind(b, g, gs, out_dtype=a.aval.dtype, num_sms=num_sms)
    if _undefined(b):  # A_t [M] @ G_j -> [N]
        ct_b = m_grouped.bind(a, jnp.swapaxes(g, 1, 2), gs, out_dtype=b.aval.dtype,
                              num_sms=num_sms)
    if len(args) == 4 and _undefined(args[3]):
        ct_c = ct.astype(args[3].aval.dtype)
    return [ct_a, ct_b, None] + ([ct_c] if len(args) == 4 else [])


def _c_only_t(name):
    """FP8 ops are linear only in ``c`` (their JVP binds them with known matrix
    operands and passes ``c``'s tangent around the primitive); a transpose
    asked for by ``jax.linear_transpose`` in ``c`` is ``G``."""
    def rule(ct, *args, **params):
        if any(_undefined(x) for x in args[:-1]) or not _has_c(name, args):
            raise NotImplementedError(
                f"{name}: not linear in its FP8 operands; differentiate them with "
                "jax.grad / jax.jvp (through the reference) or train with "
                "jaxgemm.fp8_linear / fp8_ragged_dot")
        if _is_zero(ct):
            return [None] * len(args)
        return [None] * (len(args) - 1) + [ct.astype(args[-1].aval.dtype)]
    return rule


_TRANSPOSES = {
    "bf16_gemm_nt": _dense_t,
    "m_grouped_bf16_gemm_nt_contiguous": _m_contig_t,
    "m_grouped_bf16_gemm_nt_masked": _masked_t,
    "k_grouped_bf16_gemm_tn_contiguous": _k_grouped_t,
}


def register(prims: dict) -> None:
    """Install the JVP and transpose rules on the primitives ``prims``."""
    for name, p in prims.items():
        jvp = _fp8_jvp if "fp8" in name else _bf16_jvp
        ad.primitive_jvps[p] = functools.partial(jvp, p, name)
        t = _TRANSPOSES.get(name)
        if t is not None:
            ad.primitive_transposes[p] = functools.partial(_wrap_t, t, prims)
        else:
            ad.primitive_transposes[p] = _c_only_t(name)


def _wrap_t(rule, prims, ct, *args, **params):
    if _is_zero(ct):
        return [None] * len(args)
    return rule(prims, ct, *args, **params)

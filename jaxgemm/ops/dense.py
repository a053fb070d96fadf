"""Dense GEMMs: FP8 (fine-grained scales) and BF16, in four operand layouts.

Every variant computes ``D[M, N] = C + A' @ B'^T`` where ``A' [M, K]`` and
``B' [N, K]`` are the operands in NT (both K-major) form.  The storage of the
operands per variant:

=======  ============  ============
variant  A stored      B stored
=======  ============  ============
``nt``   ``[M, K]``    ``[N, K]``
``nn``   ``[M, K]``    ``[K, N]``
``tn``   ``[K, M]``    ``[K, N]``
``tt``   ``[K, M]``    ``[N, K]``
=======  ============  ============

The letters follow DeepGEMM: the first says how A is stored (``n``: ``[M, K]``,
``t``: ``[K, M]``), the second how B is (``t``: ``[N, K]``, ``n``: ``[K, N]``), so
``tn`` is the weight-gradient form ``A^T B`` of two token-major operands, like
``k_grouped_fp8_gemm_tn_contiguous``.

FP8 scales have the same axis order as their data.  The nn/tn/tt variants
transpose data and scales with ``jnp`` (XLA fuses the transposes into the
producers) and call the NT primitive.
"""
from __future__ import annotations

from jaxgemm import _primitive
from jaxgemm import _validate as V

__all__ = [
    "fp8_gemm_nt", "fp8_gemm_nn", "fp8_gemm_tn", "fp8_gemm_tt",
    "bf16_gemm_nt", "bf16_gemm_nn", "bf16_gemm_tn", "bf16_gemm_tt",
]


#: Variants whose B is stored ``[K, N]`` (the others store ``[N, K]``).
B_KN = ("nn", "tn")


def _axes(layout: str):
    a_axes = ("M", "K") if layout[0] == "n" else ("K", "M")
    b_axes = ("K", "N") if layout in B_KN else ("N", "K")
    return a_axes, b_axes


def _kinds(axes, other):
    return tuple("block" if ax == "K" else other for ax in axes)


def _fp8_dense(fn, layout, a, b, c, out_dtype, num_sms):
    a_axes, b_axes = _axes(layout)
    ad, asc = V.fp8_operand(fn, "a", a)
    bd, bsc = V.fp8_operand(fn, "b", b)
    V.check_rank(fn, "a.data", ad, a_axes)
    V.check_rank(fn, "b.data", bd, b_axes)
    ka = V.dims(ad, a_axes)
    V.check_dim(fn, "b.data", bd, b_axes, "K", ka["K"], "a.data's K")
    V.check_scale(fn, "a", ad, asc, a_axes, _kinds(a_axes, "full"))
    V.check_scale(fn, "b", bd, bsc, b_axes, _kinds(b_axes, ("block", "full")))
    m, n = ka["M"], V.dims(bd, b_axes)["N"]
    c = V.check_c(fn, c, (m, n), ("M", "N"))
    odt = V.out_dtype(fn, out_dtype, c is not None)
    sms = V.num_sms(fn, num_sms)
    if layout[0] == "t":
        ad, asc = ad.T, asc.T
    if layout in B_KN:
        bd, bsc = bd.T, bsc.T
    ops = (ad, asc, bd, bsc) + ((c,) if c is not None else ())
    return _primitive.bind("fp8_gemm_nt", *ops, out_dtype=odt, num_sms=sms)


def _bf16_dense(fn, layout, a, b, c, out_dtype, num_sms):
    a_axes, b_axes = _axes(layout)
    a = V.bf16_operand(fn, "a", a)
    b = V.bf16_operand(fn, "b", b)
    V.check_rank(fn, "a", a, a_axes)
    V.check_rank(fn, "b", b, b_axes)
    ka = V.dims(a, a_axes)
    V.check_dim(fn, "b", b, b_axes, "K", ka["K"], "a's K")
    m, n = ka["M"], V.dims(b, b_axes)["N"]
    c = V.check_c(fn, c, (m, n), ("M", "N"))
    odt = V.out_dtype(fn, out_dtype, c is not None)
    sms = V.num_sms(fn, num_sms)
    if layout[0] == "t":
        a = a.T
    if layout in B_KN:
        b = b.T
    ops = (a, b) + ((c,) if c is not None else ())
    return _primitive.bind("bf16_gemm_nt", *ops, out_dtype=odt, num_sms=sms)


_FP8_ARGS = """
    Args:
      a: FP8 operand ``(data, scale)``: {a}.
      b: FP8 operand ``(data, scale)``: {b}.
      c: optional float32 ``[M, N]`` accumulator; with it the output is float32.
      out_dtype: ``bfloat16`` (default without ``c``) or ``float32``; with ``c``
        only ``None``/``float32`` are allowed.
      num_sms: SMs the kernel may use (default: :func:`jaxgemm.get_num_sms`,
        ``None`` = all).

    Returns:
      ``D [M, N] = C + A @ B^T`` in ``out_dtype``.

    Raises:
      TypeError: wrong dtypes or an operand that is not a ``(data, scale)`` pair.
      ValueError: wrong ranks, mismatched K, wrong scale or ``c`` shapes, a bad
        ``out_dtype``.
"""

_BF16_ARGS = """
    Args:
      a: bfloat16 {a}.
      b: bfloat16 {b}.
      c: optional float32 ``[M, N]`` accumulator; with it the output is float32.
      out_dtype: ``bfloat16`` (default without ``c``) or ``float32``.
      num_sms: SMs the kernel may use (default: global setting, ``None`` = all).

    Returns:
      ``D [M, N] = C + A @ B^T`` in ``out_dtype``.
"""

_A_N = "data ``[M, K]``, scale ``[M, ceil(K/128)]`` (per token)"
_A_T = "data ``[K, M]``, scale ``[ceil(K/128), M]`` (per token, transposed)"
_B_T = ("data ``[N, K]``, scale ``[ceil(N/128), ceil(K/128)]`` (per block) or "
        "``[N, ceil(K/128)]`` (per row)")
_B_N = ("data ``[K, N]``, scale ``[ceil(K/128), ceil(N/128)]`` (per block) or "
        "``[ceil(K/128), N]`` (per row)")


def _doc(f, tmpl, **kw):
    if f.__doc__ is not None:  # python -OO strips docstrings
        f.__doc__ = f.__doc__ + tmpl.format(**kw)
    return f


def fp8_gemm_nt(a, b, *, c=None, out_dtype=None, num_sms=None):
    """FP8 GEMM, A ``[M, K]`` and B ``[N, K]`` (both K-major): ``D = C + A @ B^T``.
    """
    return _fp8_dense("fp8_gemm_nt", "nt", a, b, c, out_dtype, num_sms)


def fp8_gemm_nn(a, b, *, c=None, out_dtype=None, num_sms=None):
    """FP8 GEMM, A ``[M, K]`` and B ``[K, N]``: ``D = C + A @ B``.
    """
    return _fp8_dense("fp8_gemm_nn", "nn", a, b, c, out_dtype, num_sms)


def fp8_gemm_tn(a, b, *, c=None, out_dtype=None, num_sms=None):
    """FP8 GEMM, A ``[K, M]`` and B ``[N, K]``: ``D = C + A^T @ B^T``.
    """
    return _fp8_dense("fp8_gemm_tn", "tn", a, b, c, out_dtype, num_sms)


def fp8_gemm_tt(a, b, *, c=None, out_dtype=None, num_sms=None):
    """FP8 GEMM, A ``[K, M]`` and B ``[K, N]``: ``D = C + A^T @ B``.
    """
    return _fp8_dense("fp8_gemm_tt", "tt", a, b, c, out_dtype, num_sms)


def bf16_gemm_nt(a, b, *, c=None, out_dtype=None, num_sms=None):
    """BF16 GEMM, A ``[M, K]`` and B ``[N, K]``: ``D = C + A @ B^T`` (FP32 accumulate).
    """
    return _bf16_dense("bf16_gemm_nt", "nt", a, b, c, out_dtype, num_sms)


def bf16_gemm_nn(a, b, *, c=None, out_dtype=None, num_sms=None):
    """BF16 GEMM, A ``[M, K]`` and B ``[K, N]``: ``D = C + A @ B``.
    """
    return _bf16_dense("bf16_gemm_nn", "nn", a, b, c, out_dtype, num_sms)


def bf16_gemm_tn(a, b, *, c=None, out_dtype=None, num_sms=None):
    """BF16 GEMM, A ``[K, M]`` and B ``[N, K]``: ``D = C + A^T @ B^T``.
    """
    return _bf16_dense("bf16_gemm_tn", "tn", a, b, c, out_dtype, num_sms)


def bf16_gemm_tt(a, b, *, c=None, out_dtype=None, num_sms=None):
    """BF16 GEMM, A ``[K, M]`` and B ``[K, N]``: ``D = C + A^T @ B``.
    """
    return _bf16_dense("bf16_gemm_tt", "tt", a, b, c, out_dtype, num_sms)


_doc(fp8_gemm_nt, _FP8_ARGS, a=_A_N, b=_B_T)
_doc(fp8_gemm_nn, _FP8_ARGS, a=_A_N, b=_B_N)
_doc(fp8_gemm_tn, _FP8_ARGS, a=_A_T, b=_B_N)
_doc(fp8_gemm_tt, _FP8_ARGS, a=_A_T, b=_B_T)
_doc(bf16_gemm_nt, _BF16_ARGS, a="``[M, K]``", b="``[N, K]``")
_doc(bf16_gemm_nn, _BF16_ARGS, a="``[M, K]``", b="``[K, N]``")
_doc(bf16_gemm_tn, _BF16_ARGS, a="``[K, M]``", b="``[K, N]``")
_doc(bf16_gemm_tt, _BF16_ARGS, a="``[K, M]``", b="``[N, K]``")

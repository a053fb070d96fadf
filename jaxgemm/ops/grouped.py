"""Grouped (MoE) GEMMs: m-grouped contiguous and masked, k-grouped contiguous.

Group sizes are int32 device arrays (never read on the host).  Bad run-time
values follow the clamp semantics (``jaxgemm._groups``): sizes clamped to
``>= 0``, cumulative offsets clamped to the available rows/tokens,
``masked_m`` clipped to ``[0, M_max]``.  Use :func:`jaxgemm.check_group_sizes`
for an eager error instead.
"""
from __future__ import annotations

from jaxgemm import _primitive, layout
from jaxgemm import _validate as V

__all__ = [
    "m_grouped_fp8_gemm_nt_contiguous",
    "m_grouped_bf16_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_masked",
    "m_grouped_bf16_gemm_nt_masked",
    "k_grouped_fp8_gemm_tn_contiguous",
    "k_grouped_bf16_gemm_tn_contiguous",
]

_A2 = ("M", "K")
_B3 = ("G", "N", "K")
_A3 = ("G", "M_max", "K")


def _fp8_pair_checked(fn, name, x, axes, kinds):
    d, s = V.fp8_operand(fn, name, x)
    V.check_rank(fn, f"{name}.data", d, axes)
    V.check_scale(fn, name, d, s, axes, kinds)
    return d, s


def _check_b_k(fn, bname, b, k, aname):
    V.check_dim(fn, bname, b, _B3, "K", k, f"{aname}'s K")


# ------------------------------------------------------------ m-grouped contiguous


def m_grouped_fp8_gemm_nt_contiguous(a, b, group_sizes, *, out_dtype=None,
                                     num_sms=None):
    """MoE forward: FP8 rows of A grouped in order, group ``g`` times expert ``B[g]``.

    ``D[r] = A[r] @ B[g(r)]^T`` for the rows ``r`` of group ``g`` (rows grouped
    contiguously in order, as in ``jax.lax.ragged_dot``); rows at or past
    ``sum(group_sizes)`` come out zero.  No alignment of the group sizes is
    needed.

    Args:
      a: FP8 ``(data [M, K], scale [M, ceil(K/128)])`` (per token).
      b: FP8 ``(data [G, N, K], scale [G, ceil(N/128), ceil(K/128)])`` (per block).
      group_sizes: int32 ``[G]`` device array (clamp semantics when invalid).
      out_dtype: ``bfloat16`` (default) or ``float32``.
      num_sms: SMs the kernel may use (default: global setting).

    Returns:
      ``D [M, N]`` in ``out_dtype``.
    """
    fn = "m_grouped_fp8_gemm_nt_contiguous"
    ad, asc = _fp8_pair_checked(fn, "a", a, _A2, ("full", "block"))
    bd, bsc = _fp8_pair_checked(fn, "b", b, _B3, ("full", "block", "block"))
    _check_b_k(fn, "b.data", bd, V.dims(ad, _A2)["K"], "a.data")
    gs = V.group_sizes(fn, "group_sizes", group_sizes, bd.shape[0])
    odt = V.out_dtype(fn, out_dtype, False)
    sms = V.num_sms(fn, num_sms)
    return _primitive.bind(fn, ad, asc, bd, bsc, gs, out_dtype=odt, num_sms=sms)


def m_grouped_bf16_gemm_nt_contiguous(a, b, group_sizes, *, out_dtype=None,
                                      num_sms=None):
    """BF16 twin of :func:`m_grouped_fp8_gemm_nt_contiguous`.

    Args:
      a: bfloat16 ``[M, K]``.
      b: bfloat16 ``[G, N, K]``.
      group_sizes: int32 ``[G]``.
      out_dtype: ``bfloat16`` (default) or ``float32``.
      num_sms: SMs the kernel may use.

    Returns:
      ``D [M, N]``; rows at or past ``sum(group_sizes)`` are zero.
    """
    fn = "m_grouped_bf16_gemm_nt_contiguous"
    a = V.bf16_operand(fn, "a", a)
    b = V.bf16_operand(fn, "b", b)
    V.check_rank(fn, "a", a, _A2)
    V.check_rank(fn, "b", b, _B3)
    _check_b_k(fn, "b", b, V.dims(a, _A2)["K"], "a")
    gs = V.group_sizes(fn, "group_sizes", group_sizes, b.shape[0])
    odt = V.out_dtype(fn, out_dtype, False)
    sms = V.num_sms(fn, num_sms)
    return _primitive.bind(fn, a, b, gs, out_dtype=odt, num_sms=sms)


# ------------------------------------------------------------ m-grouped masked


def _masked_common(fn, a3_shape, masked_m, expected_m, out_dtype, num_sms, zero_masked_rows):
    g, m_max = a3_shape[0], a3_shape[1]
    mm = V.group_sizes(fn, "masked_m", masked_m, g)
    em = m_max if expected_m is None else V.static_int(fn, "expected_m", expected_m)
    odt = V.out_dtype(fn, out_dtype, False)
    sms = V.num_sms(fn, num_sms)
    if not isinstance(zero_masked_rows, bool):
        raise TypeError(f"{fn}: zero_masked_rows must be a Python bool; got "
                        f"{type(zero_masked_rows).__name__}")
    return mm, em, odt, sms, bool(zero_masked_rows)


def m_grouped_fp8_gemm_nt_masked(a, b, masked_m, *, expected_m=None,
                                 out_dtype=None, num_sms=None, zero_masked_rows=True):
    """MoE decoding: ``D[g] = A[g] @ B[g]^T`` on the first ``masked_m[g]`` rows.

    Rows at or past ``masked_m[g]`` (clipped to ``[0, M_max]``) come out zero,
    unless ``zero_masked_rows=False``.

    Args:
      a: FP8 ``(data [G, M_max, K], scale [G, M_max, ceil(K/128)])``.
      b: FP8 ``(data [G, N, K], scale [G, ceil(N/128), ceil(K/128)])``.
      masked_m: int32 ``[G]`` device array: valid rows per group.
      expected_m: optional static int, the typical ``masked_m`` (default
        ``M_max``); only a tuning hint for the kernel.
      out_dtype: ``bfloat16`` (default) or ``float32``.
      num_sms: SMs the kernel may use.
      zero_masked_rows: static bool.  ``True`` (default): rows past
        ``masked_m[g]`` are written with zeros.  ``False``: the kernel does
        not touch them, so they hold whatever the output buffer held
        (possibly NaN); use it only when every consumer reads the first
        ``masked_m[g]`` rows alone.  With ``M_max`` far above ``masked_m``
        (decode: M_max 4096, ~20 tokens per expert) zeroing is most of the
        memory traffic, so ``False`` is the fast decode path.  The reference
        path always zeroes (a valid "unspecified").

    Returns:
      ``D [G, M_max, N]`` in ``out_dtype``.
    """
    fn = "m_grouped_fp8_gemm_nt_masked"
    ad, asc = _fp8_pair_checked(fn, "a", a, _A3, ("full", "full", "block"))
    bd, bsc = _fp8_pair_checked(fn, "b", b, _B3, ("full", "block", "block"))
    V.check_dim(fn, "b.data", bd, _B3, "G", ad.shape[0], "a.data's G")
    _check_b_k(fn, "b.data", bd, ad.shape[2], "a.data")
    mm, em, odt, sms, zr = _masked_common(fn, ad.shape, masked_m, expected_m,
                                          out_dtype, num_sms, zero_masked_rows)
    return _primitive.bind(fn, ad, asc, bd, bsc, mm, expected_m=em, out_dtype=odt,
                           num_sms=sms, zero_masked_rows=zr)


def m_grouped_bf16_gemm_nt_masked(a, b, masked_m, *, expected_m=None,
                                  out_dtype=None, num_sms=None, zero_masked_rows=True):
    """BF16 twin of :func:`m_grouped_fp8_gemm_nt_masked`.

    Args:
      a: bfloat16 ``[G, M_max, K]``.
      b: bfloat16 ``[G, N, K]``.
      masked_m: int32 ``[G]``.
      expected_m: optional static tuning hint (default ``M_max``).
      out_dtype: ``bfloat16`` (default) or ``float32``.
      num_sms: SMs the kernel may use.
      zero_masked_rows: as in :func:`m_grouped_fp8_gemm_nt_masked`.

    Returns:
      ``D [G, M_max, N]``; rows at or past ``masked_m[g]`` are zero (or
      untouched with ``zero_masked_rows=False``).
    """
    fn = "m_grouped_bf16_gemm_nt_masked"
    a = V.bf16_operand(fn, "a", a)
    b = V.bf16_operand(fn, "b", b)
    V.check_rank(fn, "a", a, _A3)
    V.check_rank(fn, "b", b, _B3)
    V.check_dim(fn, "b", b, _B3, "G", a.shape[0], "a's G")
    _check_b_k(fn, "b", b, a.shape[2], "a")
    mm, em, odt, sms, zr = _masked_common(fn, a.shape, masked_m, expected_m,
                                          out_dtype, num_sms, zero_masked_rows)
    return _primitive.bind(fn, a, b, mm, expected_m=em, out_dtype=odt,
                           num_sms=sms, zero_masked_rows=zr)


# ------------------------------------------------------------ k-grouped


def _k_scale(fn, name, data, scale, g, other):
    rows = layout.k_grouped_scale_rows(data.shape[0], g)
    want = (rows, data.shape[1])
    got = tuple(int(d) for d in scale.shape)
    if got != want:
        raise ValueError(
            f"{fn}: {name}.scale has shape {got}; expected {want} = "
            f"(layout.k_grouped_scale_rows(K_total, G), {other}) for {name}.data of "
            f"shape {tuple(data.shape)} and G = {g} (group-aligned 1x"
            f"{layout.SCALE_BLOCK} blocks along the token axis)")


def _k_common(fn, a, b, group_sizes, c, num_sms, aname, bname):
    ak, bk = ("K_total", "M"), ("K_total", "N")
    V.check_rank(fn, aname, a, ak)
    V.check_rank(fn, bname, b, bk)
    V.check_dim(fn, bname, b, bk, "K_total", a.shape[0], f"{aname}'s K_total")
    gs = V.group_sizes(fn, "group_sizes", group_sizes, None)
    g = gs.shape[0]
    c = V.check_c(fn, c, (g, a.shape[1], b.shape[1]), ("G", "M", "N"))
    sms = V.num_sms(fn, num_sms)
    return gs, c, sms, g


def k_grouped_fp8_gemm_tn_contiguous(a, b, group_sizes, *, c=None, num_sms=None):
    """MoE weight gradient: ``D[g] = C[g] + A_g^T @ B_g`` over group ``g``'s tokens.

    The token axis (axis 0, length ``K_total``) of both operands is split into
    groups by ``group_sizes`` (in order); tokens past ``sum(group_sizes)`` are
    ignored; an empty group gives ``D[g] = C[g]`` (or 0).

    Scales: both operands are quantized along the token axis in 1x128 blocks
    that are *group-aligned* (a group's blocks start at its first token; group
    ``g`` owns ``ceil(k_g/128)`` scale rows, stored group after group), with the
    static shape ``[layout.k_grouped_scale_rows(K_total, G), M]`` (resp. ``N``);
    rows past the last group's are ignored.  Produce them with
    :func:`jaxgemm.per_token_cast_to_fp8_grouped`.

    Args:
      a: FP8 ``(data [K_total, M], scale [k_grouped_scale_rows, M])``.
      b: FP8 ``(data [K_total, N], scale [k_grouped_scale_rows, N])``.
      group_sizes: int32 ``[G]`` device array (clamp semantics when invalid).
      c: optional float32 ``[G, M, N]`` accumulator.
      num_sms: SMs the kernel may use.

    Returns:
      ``D [G, M, N]`` float32.
    """
    fn = "k_grouped_fp8_gemm_tn_contiguous"
    ad, asc = V.fp8_operand(fn, "a", a)
    bd, bsc = V.fp8_operand(fn, "b", b)
    gs, c, sms, g = _k_common(fn, ad, bd, group_sizes, c, num_sms, "a.data",
                              "b.data")
    _k_scale(fn, "a", ad, asc, g, "M")
    _k_scale(fn, "b", bd, bsc, g, "N")
    ops = (ad, asc, bd, bsc, gs) + ((c,) if c is not None else ())
    return _primitive.bind(fn, *ops, num_sms=sms)


def k_grouped_bf16_gemm_tn_contiguous(a, b, group_sizes, *, c=None, num_sms=None):
    """BF16 twin of :func:`k_grouped_fp8_gemm_tn_contiguous`.

    Args:
      a: bfloat16 ``[K_total, M]``.
      b: bfloat16 ``[K_total, N]``.
      group_sizes: int32 ``[G]``.
      c: optional float32 ``[G, M, N]`` accumulator.
      num_sms: SMs the kernel may use.

    Returns:
      ``D [G, M, N]`` float32, ``D[g] = C[g] + A_g^T @ B_g``.
    """
    fn = "k_grouped_bf16_gemm_tn_contiguous"
    a = V.bf16_operand(fn, "a", a)
    b = V.bf16_operand(fn, "b", b)
    gs, c, sms, _ = _k_common(fn, a, b, group_sizes, c, num_sms, "a", "b")
    ops = (a, b, gs) + ((c,) if c is not None else ())
    return _primitive.bind(fn, *ops, num_sms=sms)

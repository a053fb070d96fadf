"""A float64 NumPy oracle for every jaxgemm op (no JAX inside).

Shared by the tests and ``python -m jaxgemm``.  It implements the documented
semantics from scratch, in plain loops where that is clearer: the
dequantization rules, the clamp semantics of group sizes and the group-aligned
k-grouped scale layout.
"""
from __future__ import annotations

import numpy as np

SCALE_BLOCK = 128  # checked against jaxgemm.layout.SCALE_BLOCK by the tests
FP8_MAX = 448.0


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def to64(x) -> np.ndarray:
    """Any array (JAX, NumPy, ml_dtypes FP8/BF16) as float64 NumPy."""
    return np.asarray(x).astype(np.float64)


def diff(x, y) -> float:
    """DeepGEMM's similarity metric ``1 - 2 sum(xy) / sum(x^2 + y^2)`` (0 = equal)."""
    x = to64(x).ravel()
    y = to64(y).ravel()
    den = float(np.sum(x * x + y * y))
    if den == 0.0:
        return 0.0
    return float(1.0 - 2.0 * np.sum(x * y) / den)


def max_abs(x, y) -> float:
    x = to64(x)
    y = to64(y)
    return float(np.max(np.abs(x - y))) if x.size else 0.0


# ---------------------------------------------------------------- group sizes

def bounds(group_sizes, total: int):
    """Clamp semantics: Python lists ``(start, end)``."""
    starts, ends, acc = [], [], 0
    for s in np.asarray(group_sizes).tolist():
        st = acc
        acc = min(total, acc + max(int(s), 0))
        starts.append(st)
        ends.append(acc)
    return starts, ends


def masked_sizes(masked_m, m_max: int):
    return [min(max(int(v), 0), m_max) for v in np.asarray(masked_m).tolist()]


# ---------------------------------------------------------------- dequantize

def dequant(data, scale) -> np.ndarray:
    """Per-axis rule: scale length == data length (unblocked) or ceil(d/128)."""
    d = to64(data)
    s = to64(scale)
    assert d.ndim == s.ndim, (d.shape, s.shape)
    for ax in range(d.ndim):
        n, m = d.shape[ax], s.shape[ax]
        if m == n:
            continue
        assert m == ceil_div(n, SCALE_BLOCK), (d.shape, s.shape)
        s = np.repeat(s, SCALE_BLOCK, axis=ax)
        s = np.take(s, np.arange(n), axis=ax)
    return d * s


def k_grouped_rows(group_sizes, k_total: int):
    """Scale row of each token (-1 if the token is in no group)."""
    starts, ends = bounds(group_sizes, k_total)
    rows = np.full((k_total,), -1, np.int64)
    base = 0
    for st, en in zip(starts, ends):
        for t in range(st, en):
            rows[t] = base + (t - st) // SCALE_BLOCK
        base += ceil_div(en - st, SCALE_BLOCK)
    return rows


def dequant_k_grouped(data, scale, group_sizes) -> np.ndarray:
    d = to64(data)
    s = to64(scale)
    rows = k_grouped_rows(group_sizes, d.shape[0])
    out = np.zeros_like(d)
    ok = rows >= 0
    out[ok] = d[ok] * s[rows[ok]]
    return out


def operand(x) -> np.ndarray:
    """An FP8 pair or a plain array, as float64."""
    if isinstance(x, (tuple, list)):
        return dequant(*x)
    return to64(x)


# ---------------------------------------------------------------- quantize

def per_token_cast_grouped_scales(x, group_sizes, rows: int) -> np.ndarray:
    """Scale array of the group-aligned k-grouped layout (before the 2**-126 floor)."""
    x = to64(x)
    starts, ends = bounds(group_sizes, x.shape[0])
    out = np.zeros((rows, x.shape[1]))
    r = 0
    for st, en in zip(starts, ends):
        for b0 in range(st, en, SCALE_BLOCK):
            blk = x[b0:min(en, b0 + SCALE_BLOCK)]
            out[r] = np.abs(blk).max(axis=0) / FP8_MAX
            r += 1
    return out


# ---------------------------------------------------------------- GEMMs

def gemm(a, b, c=None, layout: str = "nt") -> np.ndarray:
    """``C + A' @ B'^T`` with A' [M,K], B' [N,K] recovered from ``layout``.

    Storage per layout (jaxgemm's convention): A is [M,K] for nt/nn and [K,M]
    for tn/tt; B is [N,K] for nt/tt and [K,N] for nn/tn.  ``a``/``b`` are FP8
    pairs or arrays.
    """
    a64, b64 = operand(a), operand(b)
    if layout in ("tn", "tt"):
        a64 = a64.T
    if layout in ("nn", "tn"):
        b64 = b64.T
    d = a64 @ b64.T
    if c is not None:
        d = d + to64(c)
    return d


def m_grouped_contiguous(a, b, group_sizes) -> np.ndarray:
    a64, b64 = operand(a), operand(b)
    m = a64.shape[0]
    d = np.zeros((m, b64.shape[1]))
    for g, (st, en) in enumerate(zip(*bounds(group_sizes, m))):
        d[st:en] = a64[st:en] @ b64[g].T
    return d


def m_grouped_masked(a, b, masked_m) -> np.ndarray:
    a64, b64 = operand(a), operand(b)
    g_, m_max = a64.shape[:2]
    d = np.zeros((g_, m_max, b64.shape[1]))
    for g, mm in enumerate(masked_sizes(masked_m, m_max)):
        d[g, :mm] = a64[g, :mm] @ b64[g].T
    return d


def k_grouped(a, b, group_sizes, c=None) -> np.ndarray:
    """``D[g] = C[g] + A_g^T B_g``; FP8 pairs use the group-aligned scales."""
    if isinstance(a, (tuple, list)):
        a64 = dequant_k_grouped(*a, group_sizes)
        b64 = dequant_k_grouped(*b, group_sizes)
    else:
        a64, b64 = to64(a), to64(b)
    k_total = a64.shape[0]
    starts, ends = bounds(group_sizes, k_total)
    d = np.zeros((len(starts), a64.shape[1], b64.shape[1]))
    for g, (st, en) in enumerate(zip(starts, ends)):
        d[g] = a64[st:en].T @ b64[st:en]
    if c is not None:
        d = d + to64(c)
    return d

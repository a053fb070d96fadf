"""Fine-grained FP8 quantization helpers (pure ``jax.numpy``, so XLA fuses them).

Conventions (see ``docs/api.md``):

* data is ``float8_e4m3fn``, scales are ``float32``, ``x ~= data * scale``;
* the scale array has the same axis order as its data; a *blocked* axis of
  length ``d`` has ``ceil(d / 128)`` scale entries (``layout.SCALE_BLOCK``), an
  *unblocked* axis has ``d``;
* per token (activations): the last (contraction) axis blocked, the others
  unblocked; per block (weights): the last two axes blocked.

Scale choice: ``scale = max(amax / 448, FLT_MIN)`` where ``amax`` is the
largest magnitude of the block, ``448`` the largest finite e4m3fn value and
``FLT_MIN = 2**-126`` the smallest normal float32.  An all-zero block gets
scale ``2**-126`` and data 0, so dequantization gives exact zeros and nothing
produces NaN or inf.  With ``use_ue8m0=True`` the scale is rounded *up* to a
power of two, ``2**ceil(log2(max(amax / 448, FLT_MIN)))``, so ``|x| / scale``
never exceeds 448.  The cast is saturating: ``x / scale`` is clipped to
``[-448, 448]`` before the conversion (round to nearest even).
"""
from __future__ import annotations

import jax.numpy as jnp
import ml_dtypes
import numpy as np

from jaxgemm import _explicit, _groups, layout

__all__ = [
    "FP8_DTYPE",
    "FP8_MAX",
    "per_token_cast_to_fp8",
    "per_block_cast_to_fp8",
    "per_block_cast_to_fp8_grouped",
    "per_token_cast_to_fp8_grouped",
    "dequantize",
    "dequantize_k_grouped",
]

#: The FP8 data type of every jaxgemm operand.
FP8_DTYPE = jnp.float8_e4m3fn
#: Largest finite ``float8_e4m3fn`` value (448).
FP8_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)
#: Smallest normal float32: the floor of every scale.
_SCALE_MIN = float(np.finfo(np.float32).tiny)


def _check_float(fn: str, name: str, x) -> None:
    dt = np.dtype(x.dtype)
    if not jnp.issubdtype(dt, jnp.floating) or dt == np.dtype(FP8_DTYPE):
        raise TypeError(f"{fn}: {name} has dtype {dt}; expected a floating dtype "
                        "(float32, bfloat16 or float16)")


def _scale_from_amax(amax, use_ue8m0: bool):
    s = jnp.maximum(amax.astype(jnp.float32) / FP8_MAX, _SCALE_MIN)
    if use_ue8m0:
        m, e = jnp.frexp(s)  # s = m * 2**e with m in [0.5, 1)
        e = jnp.where(m == 0.5, e - 1, e)  # exact powers of two stay put
        s = jnp.ldexp(jnp.ones_like(s), e)
    return s


def _to_fp8(x32):
    return jnp.clip(x32, -FP8_MAX, FP8_MAX).astype(FP8_DTYPE)


def _pad_axis(x, axis: int, to: int):
    pad = to - x.shape[axis]
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)


def per_token_cast_to_fp8(x, *, use_ue8m0: bool = False):
    """Quantize ``x [..., K]`` per token: one scale per 1x128 run of the last axis.

    Args:
      x: floating array ``[..., K]``; ``K`` need not be a multiple of 128 (the
        last block is shorter).
      use_ue8m0: round every scale up to a power of two.

    Returns:
      ``(data, scale)``: ``float8_e4m3fn [..., K]`` and
      ``float32 [..., ceil(K/128)]``, with ``x ~= data * scale`` blockwise.
    """
    x = jnp.asarray(x)
    _check_float("per_token_cast_to_fp8", "x", x)
    if x.ndim < 1:
        raise ValueError("per_token_cast_to_fp8: x must have at least 1 axis; "
                         f"got shape {x.shape}")
    blk = layout.SCALE_BLOCK
    k = x.shape[-1]
    nb = layout.num_scale_blocks(k)
    # (Block reshapes through _explicit: arrays with explicit mesh axes need
    # the result's sharding spelled out.)
    x = _explicit.gather_unaligned(x, [-1], [nb * blk], "per_token_cast_to_fp8")
    xp = _pad_axis(x.astype(jnp.float32), -1, nb * blk)
    xb = _explicit.split_blocks(xp, [-1])                       # [..., nb, 128]
    scale = _scale_from_amax(jnp.max(jnp.abs(xb), axis=-1), use_ue8m0)
    data = _explicit.merge_blocks(_to_fp8(xb / scale[..., None]), [xb.ndim - 2])
    return data[..., :k], scale


def per_block_cast_to_fp8(w, *, use_ue8m0: bool = False):
    """Quantize ``w [..., N, K]`` per 128x128 block of the last two axes.

    Leading axes (e.g. the group axis of MoE weights ``[G, N, K]``) are batch
    axes.  ``N`` and ``K`` need not be multiples of 128.

    Returns:
      ``(data, scale)``: ``float8_e4m3fn [..., N, K]`` and
      ``float32 [..., ceil(N/128), ceil(K/128)]``.
    """
    w = jnp.asarray(w)
    _check_float("per_block_cast_to_fp8", "w", w)
    if w.ndim < 2:
        raise ValueError("per_block_cast_to_fp8: w must have at least 2 axes "
                         f"[..., N, K]; got shape {w.shape}")
    blk = layout.SCALE_BLOCK
    *lead, n, k = w.shape
    nbn, nbk = layout.per_block_scale_shape(n, k)
    w = _explicit.gather_unaligned(w, [-2, -1], [nbn * blk, nbk * blk],
                                   "per_block_cast_to_fp8")
    wp = _pad_axis(_pad_axis(w.astype(jnp.float32), -1, nbk * blk), -2, nbn * blk)
    wb = _explicit.split_blocks(wp, [-2, -1])                   # [..., nbn, 128, nbk, 128]
    amax = jnp.max(jnp.abs(wb), axis=(-3, -1))
    scale = _scale_from_amax(amax, use_ue8m0)
    data = _to_fp8(wb / scale[..., :, None, :, None])
    data = _explicit.merge_blocks(data, [data.ndim - 4, data.ndim - 2])[..., :n, :k]
    return data, scale


def per_block_cast_to_fp8_grouped(w, *, use_ue8m0: bool = False):
    """Quantize grouped weights ``w [G, N, K]`` per 128x128 block.

    Same as :func:`per_block_cast_to_fp8` with a required leading group axis;
    returns ``(float8_e4m3fn [G, N, K], float32 [G, ceil(N/128), ceil(K/128)])``.
    """
    w = jnp.asarray(w)
    if w.ndim != 3:
        raise ValueError("per_block_cast_to_fp8_grouped: w must be [G, N, K]; got "
                         f"shape {w.shape}")
    return per_block_cast_to_fp8(w, use_ue8m0=use_ue8m0)


def per_token_cast_to_fp8_grouped(x, group_sizes, *, use_ue8m0: bool = False):
    """Quantize ``x [K_total, M]`` along axis 0 in group-aligned 1x128 blocks.

    This is the scale layout of the k-grouped (MoE weight-gradient) GEMM: the
    token axis 0 is split into groups by ``group_sizes`` (clamp semantics, see
    ``docs/api.md``); group ``g``'s blocks of up to 128 tokens start at its first
    token, so a block never straddles two groups; group ``g`` owns
    ``ceil(k_g/128)`` scale rows, stored group after group.  The scale array has
    the static shape ``[layout.k_grouped_scale_rows(K_total, G), M]``.  Rows past
    the last group's hold ``2**-126`` (as an all-zero block); tokens past
    ``sum(group_sizes)`` are quantized to 0.

    Args:
      x: floating ``[K_total, M]``.
      group_sizes: int32 ``[G]`` (may be traced).
      use_ue8m0: power-of-two scales.

    Returns:
      ``(float8_e4m3fn [K_total, M], float32 [k_grouped_scale_rows, M])``.
    """
    fn = "per_token_cast_to_fp8_grouped"
    x = jnp.asarray(x)
    _check_float(fn, "x", x)
    if x.ndim != 2:
        raise ValueError(f"{fn}: x must be [K_total, M]; got shape {x.shape}")
    group_sizes = jnp.asarray(group_sizes)
    if group_sizes.ndim != 1:
        raise ValueError(f"{fn}: group_sizes must be 1-D [G]; got shape "
                         f"{group_sizes.shape}")
    blk = layout.SCALE_BLOCK
    k_total, m = x.shape
    g = group_sizes.shape[0]
    rows = layout.k_grouped_scale_rows(k_total, g)
    # The token axis is gathered with run-time indices: under explicit mesh
    # axes it must be whole on every device (the k-grouped sharding rule
    # replicates FP8 tokens anyway, docs/sharding.md).
    x32 = _explicit.replicate_axes(x, [0]).astype(jnp.float32)
    start, end = _groups.clamped_group_bounds(group_sizes, k_total)
    if g == 0 or rows == 0 or k_total == 0:
        scale = jnp.full((rows, m), _scale_from_amax(jnp.zeros(()), use_ue8m0))
        return jnp.zeros(x.shape, FP8_DTYPE), scale
    # Per scale row r: its group, first token and length (0 for unused rows).
    nblocks = (end - start + (blk - 1)) // blk
    bend = jnp.cumsum(nblocks)
    bstart = bend - nblocks
    r = jnp.arange(rows, dtype=jnp.int32)
    rg = jnp.minimum(jnp.searchsorted(bend, r, side="right"), g - 1).astype(jnp.int32)
    used = r < bend[-1]
    first = start[rg] + (r - bstart[rg]) * blk
    length = jnp.where(used, jnp.clip(end[rg] - first, 0, blk), 0)
    pos = first[:, None] + jnp.arange(blk, dtype=jnp.int32)[None, :]  # [rows, 128]
    inside = jnp.arange(blk, dtype=jnp.int32)[None, :] < length[:, None]
    vals = jnp.take(x32, jnp.clip(pos, 0, max(k_total - 1, 0)), axis=0)  # [rows,128,M]
    amax = jnp.max(jnp.where(inside[..., None], jnp.abs(vals), 0.0), axis=1)
    scale = _scale_from_amax(amax, use_ue8m0)
    row, valid = _groups.k_grouped_token_rows(group_sizes, k_total)
    data = _to_fp8(jnp.where(valid[:, None], x32 / scale[row], 0.0))
    return data, scale


def _scale_axis_kind(d: int, s: int):
    if s == d:
        return "full"
    if s == layout.num_scale_blocks(d):
        return "block"
    return None


def dequantize(data, scale):
    """Dequantize ``data * scale`` to float32, inferring the block structure.

    ``scale`` must have the same rank as ``data``; along each axis its length is
    either the data's (unblocked) or ``ceil(d/128)`` (blocked by 128).  This
    covers per-token ``[..., M, K] / [..., M, ceil(K/128)]``, per-row and
    per-block weights, transposed layouts and leading batch axes.  For the
    k-grouped layout use :func:`dequantize_k_grouped`.
    """
    data = jnp.asarray(data)
    scale = jnp.asarray(scale)
    if data.ndim != scale.ndim:
        raise ValueError(f"dequantize: scale has shape {scale.shape}; expected the "
                         f"same rank as data {data.shape}")
    s = scale.astype(jnp.float32)
    for ax, (d, n) in enumerate(zip(data.shape, scale.shape)):
        kind = _scale_axis_kind(d, n)
        if kind is None:
            raise ValueError(
                f"dequantize: scale has shape {scale.shape}; axis {ax} must have "
                f"length {d} or ceil({d}/{layout.SCALE_BLOCK}) = "
                f"{layout.num_scale_blocks(d)} for data of shape {data.shape}")
        if kind == "block" and n != d:
            s = jnp.repeat(s, layout.SCALE_BLOCK, axis=ax,
                           total_repeat_length=n * layout.SCALE_BLOCK)
            s = _slice(s, ax, d)
    return data.astype(jnp.float32) * s


def _slice(x, axis: int, size: int):
    """``x`` truncated to ``size`` along ``axis`` (static)."""
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(0, size)
    return x[tuple(idx)]


def dequantize_k_grouped(data, scale, group_sizes):
    """Dequantize a k-grouped operand ``data [K_total, M]`` to float32.

    ``scale`` is ``[layout.k_grouped_scale_rows(K_total, G), M]`` in the
    group-aligned layout of :func:`per_token_cast_to_fp8_grouped`; tokens past
    ``sum(group_sizes)`` (clamp semantics) come out 0.
    """
    data = jnp.asarray(data)
    scale = jnp.asarray(scale)
    k_total = data.shape[0]
    row, valid = _groups.k_grouped_token_rows(group_sizes, k_total)
    if scale.shape[0] == 0:
        return jnp.zeros(data.shape, jnp.float32)
    s = jnp.take(scale.astype(jnp.float32), row, axis=0, mode="clip")
    return jnp.where(valid[:, None], data.astype(jnp.float32) * s, 0.0)


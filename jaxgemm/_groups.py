"""Group-size semantics shared by the reference, the quantizers and the checks.

Run-time group sizes live on the device, so a bad value can't raise an error
inside a compiled program.  Every jaxgemm implementation (reference and CUDA
kernels) therefore applies the same **clamp semantics**:

* contiguous / k-grouped (``group_sizes`` of length ``G`` over ``total`` rows
  or tokens): each size is first clamped to ``>= 0``; the cumulative end
  offsets are then clamped to ``total``::

      end[g]   = min(total, sum_{h <= g} max(group_sizes[h], 0))
      start[g] = end[g - 1]            (start[0] = 0)
      size[g]  = end[g] - start[g]     (the effective size, >= 0)

  Rows (tokens) at or past ``end[G-1]`` belong to no group.
* masked (``masked_m`` of length ``G``, ``M_max`` rows per group)::

      size[g] = clip(masked_m[g], 0, M_max)

Nothing is ever read or written out of bounds.  Use :func:`check_group_sizes`
to turn bad concrete values into an eager ``ValueError`` instead.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgemm import layout

__all__ = [
    "clamped_group_bounds",
    "clamped_masked_m",
    "check_group_sizes",
    "k_grouped_token_rows",
]


def clamped_group_bounds(group_sizes, total: int):
    """Return ``(start, end)`` int32 ``[G]`` offsets under the clamp semantics.

    The cumulative sum saturates at ``total`` at every step, so it can't
    overflow int32 whatever the sizes are (``total`` < 2**30 assumed).
    """
    total = int(total)
    s = jnp.clip(jnp.asarray(group_sizes, jnp.int32), 0, total)
    if s.shape[0] == 0:
        z = jnp.zeros((0,), jnp.int32)
        return z, z
    end = jax.lax.associative_scan(lambda x, y: jnp.minimum(x + y, total), s)
    start = jnp.concatenate([jnp.zeros((1,), jnp.int32), end[:-1]])
    return start, end


def clamped_sizes(group_sizes, total: int):
    """Effective group sizes ``end - start`` (int32 ``[G]``, sum <= total)."""
    start, end = clamped_group_bounds(group_sizes, total)
    return end - start


def clamped_masked_m(masked_m, m_max: int):
    """``clip(masked_m, 0, m_max)`` as int32."""
    return jnp.clip(jnp.asarray(masked_m, jnp.int32), 0, int(m_max))


def k_grouped_token_rows(group_sizes, k_total: int):
    """Scale row of every token of a k-grouped operand.

    Returns ``(row, valid)``, both ``[k_total]``: token ``t`` of group ``g``
    (``start[g] <= t < end[g]``) uses scale row
    ``block_start[g] + (t - start[g]) // SCALE_BLOCK`` where
    ``block_start[g] = sum_{h < g} ceil(size[h] / SCALE_BLOCK)``; ``valid`` is
    False for tokens past the last group (their ``row`` is 0).
    """
    k_total = int(k_total)
    start, end = clamped_group_bounds(group_sizes, k_total)
    blk = layout.SCALE_BLOCK
    t = jnp.arange(k_total, dtype=jnp.int32)
    if start.shape[0] == 0:
        return jnp.zeros((k_total,), jnp.int32), jnp.zeros((k_total,), bool)
    nblocks = (end - start + (blk - 1)) // blk
    block_start = jnp.cumsum(nblocks) - nblocks
    # group of each token: number of group ends <= t
    g = jnp.searchsorted(end, t, side="right").astype(jnp.int32)
    valid = g < start.shape[0]
    gc = jnp.minimum(g, start.shape[0] - 1)
    row = block_start[gc] + (t - start[gc]) // blk
    row = jnp.where(valid, row, 0).astype(jnp.int32)
    return row, valid


def check_group_sizes(group_sizes, total: int, *, masked: bool = False) -> None:
    """Eagerly validate concrete group sizes; raise ``ValueError`` if bad.

    jaxgemm's GEMMs never fail on bad run-time group sizes: they apply the
    clamp semantics (see ``docs/api.md``).  Call this on concrete (non-traced)
    values when you prefer an error.

    Args:
      group_sizes: int ``[G]`` sizes (a NumPy or concrete JAX array, or a list).
      total: rows (``M``) for contiguous layouts or tokens (``K_total``) for the
        k-grouped layout; with ``masked=True``, ``M_max``.
      masked: check ``masked_m`` semantics instead: every entry in
        ``[0, total]`` (no constraint on the sum).

    Raises:
      ValueError: a negative size, a sum above ``total`` (or, with
        ``masked=True``, an entry above ``total``), or not a 1-D integer array.
      TypeError: ``group_sizes`` is a tracer (not concrete).
    """
    try:
        gs = np.asarray(group_sizes)
    except (jax.errors.TracerArrayConversionError,
            jax.errors.ConcretizationTypeError) as e:
        raise TypeError(
            "check_group_sizes: group_sizes is a traced value; it checks concrete "
            "values only (call it outside jax.jit). Inside jit, jaxgemm clamps bad "
            "group sizes (see docs/api.md).") from e
    if gs.ndim != 1 or not np.issubdtype(gs.dtype, np.integer):
        raise ValueError(
            f"check_group_sizes: group_sizes must be a 1-D integer array; got "
            f"shape {gs.shape} dtype {gs.dtype}")
    total = int(total)
    neg = np.nonzero(gs < 0)[0]
    if neg.size:
        raise ValueError(
            f"check_group_sizes: group_sizes[{int(neg[0])}] = {int(gs[neg[0]])} "
            f"is negative; sizes must be >= 0")
    if masked:
        big = np.nonzero(gs > total)[0]
        if big.size:
            raise ValueError(
                f"check_group_sizes: masked_m[{int(big[0])}] = {int(gs[big[0]])} "
                f"exceeds M_max = {total}")
        return
    s = int(gs.astype(np.int64).sum())
    if s > total:
        raise ValueError(
            f"check_group_sizes: sum(group_sizes) = {s} exceeds the {total} "
            f"rows/tokens available")

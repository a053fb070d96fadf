"""jaxgemm ops in SPMD programs: how they partition, and the switches.

Every jaxgemm op (the dense and grouped GEMMs, hence :func:`jaxgemm.fp8_linear`
and :func:`jaxgemm.fp8_ragged_dot` forward and backward) carries a
``custom_partitioning`` rule with a Shardy ``sharding_rule``: under
``jax.jit`` with ``NamedSharding`` operands XLA partitions the op (each device
runs the GEMM on its shards, the contraction is summed with a ``psum``)
instead of gathering the operands.  Inside ``jax.shard_map`` the ops are
plain per-device GEMMs.  ``docs/sharding.md`` lists what each op supports.

* :func:`partitioning` / :func:`set_partitioning` / :func:`get_partitioning`:
  turn the partitioning rules off (the ops then lower as opaque calls that XLA
  replicates: every device gathers the full operands), e.g. to compare.
* :class:`ShardingFallbackWarning`: emitted at compile time when a requested
  sharding can't be kept (a shard boundary inside a 128-wide FP8 scale block);
  that axis is replicated instead, so results stay exact.
* :data:`SUPPORTED`: per op, the axes that may be sharded and how.
"""
from __future__ import annotations

import contextlib

from jaxgemm._partition import ShardingFallbackWarning, get_enabled, set_enabled

__all__ = ["ShardingFallbackWarning", "SUPPORTED", "get_partitioning", "partitioning",
           "set_partitioning"]

#: Primitive name -> ``{axis: how it may be sharded}`` (``"replicated"``: forced).
SUPPORTED = {
    "fp8_gemm_nt": {
        "M": "sharded (data parallel); A's per-token scale follows",
        "N": "sharded (column tensor parallel); per-block B scales need N % (128 * shards) == 0, "
             "per-row scales any N",
        "K": "sharded (row tensor parallel): float32 partial products, psum, then C and the cast; "
             "needs K % (128 * shards) == 0",
    },
    "bf16_gemm_nt": {"M": "sharded", "N": "sharded", "K": "sharded (psum of float32 partials)"},
    "m_grouped_fp8_gemm_nt_contiguous": {
        "G": "sharded (expert parallel): each device computes the rows of its experts, "
             "the disjoint results are psum'd; group_sizes is gathered (G int32)",
        "M": "sharded: each device computes its rows (group offsets from the global sizes)",
        "N": "sharded; needs N % (128 * shards) == 0",
        "K": "sharded (psum of float32 partials); needs K % (128 * shards) == 0",
    },
    "m_grouped_bf16_gemm_nt_contiguous": {"G": "sharded", "M": "sharded", "N": "sharded",
                                          "K": "sharded"},
    "m_grouped_fp8_gemm_nt_masked": {
        "G": "sharded (masked_m follows)", "M_max": "sharded",
        "N": "sharded; needs N % (128 * shards) == 0",
        "K": "sharded (psum); needs K % (128 * shards) == 0",
    },
    "m_grouped_bf16_gemm_nt_masked": {"G": "sharded", "M_max": "sharded", "N": "sharded",
                                      "K": "sharded"},
    "k_grouped_fp8_gemm_tn_contiguous": {
        "G": "sharded on the output (each device computes its groups)",
        "M": "sharded", "N": "sharded",
        "K_total": "replicated (group-aligned scale rows depend on the run-time sizes)",
    },
    "k_grouped_bf16_gemm_tn_contiguous": {
        "G": "sharded on the output", "M": "sharded", "N": "sharded",
        "K_total": "sharded (psum of the per-shard partial sums)",
    },
}


def get_partitioning() -> bool:
    """Whether the ops lower with their partitioning rules (default True)."""
    return get_enabled()


def set_partitioning(enabled: bool) -> None:
    """Turn the partitioning rules on or off (clears JAX's caches on a change).

    Off, the ops lower as opaque per-device calls: under ``jax.jit`` with
    sharded operands XLA replicates them (all-gathers every operand).
    """
    set_enabled(enabled)


@contextlib.contextmanager
def partitioning(enabled: bool):
    """Context manager form of :func:`set_partitioning` (lower inside the block)."""
    before = get_enabled()
    set_enabled(enabled)
    try:
        yield
    finally:
        set_enabled(before)

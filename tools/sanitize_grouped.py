"""Grouped kernels under compute-sanitizer: ragged, empty and *bad* group sizes.

Bad sizes (negative, summing past the rows/tokens there are, masked_m > M_max)
are clamped by contract (docs/api.md); this script drives each grouped kernel
with them so memcheck can prove no access leaves the buffers.

    compute-sanitizer --tool memcheck --kernel-name kns=grouped python3 tools/sanitize_grouped.py
"""
import os

import numpy as np

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _config, _kernels, _oracle as O

rng = np.random.default_rng(5)
BF16 = jnp.bfloat16


def rel(out, ref):
    out = np.asarray(out, np.float64)
    return np.abs(out - ref).max() / (np.abs(ref).max() + 1e-9)


# SANITIZE_ONLY=k: the k-grouped part alone; =m: the m-grouped parts alone
# (shorter runs for racecheck).  Racecheck must instrument every cluster
# kernel the run launches (--kernel-name kns=grouped here, or kns=m_grouped
# with SANITIZE_ONLY=m): compute-sanitizer 2025.3.1 faults ("failed to handle
# a hardware exception") on cluster-2 kernels it runs uninstrumented
# (benchmarks/results/logs/racecheck_cluster_bisect_20261128-0510.log).
ONLY_K = os.environ.get("SANITIZE_ONLY") == "k"
ONLY_M = os.environ.get("SANITIZE_ONLY") == "m"
m, n, k = 300, 136, 384
CONTIG = [[100, 0, 37, 1], [-5, 200, 400, 30], [0, 0, 0, 0]]
CONFIGS = [None, (64, 32, 4, 1), (128, 96, 4, 2), (256, 64, 3, 2)]
# K = 640 (5 blocks) makes the stage ring wrap inside one tile, where racecheck
# flags the dense kernel's scale refill; K = 384 never wraps within a tile.
for kc in () if ONLY_K else (k, 640):
    a = jnp.asarray(rng.standard_normal((m, kc), np.float32))
    for sizes in CONTIG if kc == k else CONTIG[:2]:
        g = len(sizes)
        b = jnp.asarray(rng.standard_normal((g, n, kc), np.float32))
        qa, qb = jaxgemm.per_token_cast_to_fp8(a), jaxgemm.per_block_cast_to_fp8_grouped(b)
        gs = jnp.asarray(sizes, jnp.int32)
        ref = O.m_grouped_contiguous(qa, qb, np.asarray(sizes))
        ref16 = O.m_grouped_contiguous(a.astype(BF16), b.astype(BF16), np.asarray(sizes))
        for cfg in CONFIGS:
            jax.clear_caches()  # a forced config applies at lowering: drop cached lowerings
            with _kernels.force_config(_config.GemmConfig(*cfg) if cfg else None):
                o8 = jax.jit(jaxgemm.m_grouped_fp8_gemm_nt_contiguous)(qa, qb, gs)
                o16 = jax.jit(jaxgemm.m_grouped_bf16_gemm_nt_contiguous)(
                    a.astype(BF16), b.astype(BF16), gs)
            print(f"contiguous K={kc} {sizes} {cfg}: fp8 {rel(o8, ref):.1e} "
                  f"bf16 {rel(o16, ref16):.1e}", flush=True)

g, m_max = 4, 130
am = jnp.asarray(rng.standard_normal((g, m_max, k), np.float32))
bm = jnp.asarray(rng.standard_normal((g, n, k), np.float32))
qa, qb = jaxgemm.per_token_cast_to_fp8(am), jaxgemm.per_block_cast_to_fp8_grouped(bm)
for masked in () if ONLY_K else ([0, 1, 64, 130], [500, -3, 17, 129]):
    mm = jnp.asarray(masked, jnp.int32)
    o8 = jax.jit(lambda x, y, s: jaxgemm.m_grouped_fp8_gemm_nt_masked(x, y, s, expected_m=64))(qa, qb, mm)
    o16 = jax.jit(lambda x, y, s: jaxgemm.m_grouped_bf16_gemm_nt_masked(x, y, s, expected_m=64))(
        am.astype(BF16), bm.astype(BF16), mm)
    print(f"masked {masked}: fp8 {rel(o8, O.m_grouped_masked(qa, qb, np.asarray(masked))):.1e} "
          f"bf16 {rel(o16, O.m_grouped_masked(am.astype(BF16), bm.astype(BF16), np.asarray(masked))):.1e}",
          flush=True)

k_total, mk, nk = 700, 136, 264
x = jnp.asarray(rng.standard_normal((k_total, mk), np.float32))
y = jnp.asarray(rng.standard_normal((k_total, nk), np.float32))
for sizes in () if ONLY_M else ([300, 0, 250, 1], [-3, 500, 600], [0, 0]):
    gs = jnp.asarray(sizes, jnp.int32)
    qx, qy = jaxgemm.per_token_cast_to_fp8_grouped(x, gs), jaxgemm.per_token_cast_to_fp8_grouped(y, gs)
    c = jnp.asarray(rng.standard_normal((len(sizes), mk, nk), np.float32))
    # With C, read by the kernel, on 2 SMs: several units per CTA reuse its C buffer.
    o8 = jax.jit(lambda p, q, s, c: jaxgemm.k_grouped_fp8_gemm_tn_contiguous(
        p, q, s, c=c, num_sms=2))(qx, qy, gs, c)
    o16 = jax.jit(lambda p, q, s: jaxgemm.k_grouped_bf16_gemm_tn_contiguous(p, q, s))(
        x.astype(BF16), y.astype(BF16), gs)
    o16c = jax.jit(lambda p, q, s, c: jaxgemm.k_grouped_bf16_gemm_tn_contiguous(
        p, q, s, c=c, num_sms=2))(x.astype(BF16), y.astype(BF16), gs, c)
    print(f"k-grouped {sizes}: fp8 {rel(o8, O.k_grouped(qx, qy, np.asarray(sizes), np.asarray(c))):.1e} "
          f"bf16 {rel(o16, O.k_grouped(x.astype(BF16), y.astype(BF16), np.asarray(sizes), None)):.1e} "
          f"bf16+c {rel(o16c, O.k_grouped(x.astype(BF16), y.astype(BF16), np.asarray(sizes), np.asarray(c))):.1e}",
          flush=True)
print("sanitize sweep done")

"""A small sweep of dense kernel configs for compute-sanitizer (memcheck, racecheck).

    compute-sanitizer --tool memcheck --kernel-name kns=gemm_nt python3 tools/sanitize_dense.py

The filter must match every cluster kernel the script launches (racecheck
faults on cluster kernels it runs uninstrumented): `gemm_nt` covers
fp8_gemm_nt_kernel, bf16_gemm_nt_kernel and bf16_gemm_nt_pingpong_kernel.
"""
import os

import numpy as np

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _config, _kernels

# SANITIZE_FP8_ONLY=1: skip the BF16 kernels (a shorter run, e.g. with
# JAXGEMM_TMA_SCALES=1 to check the FP8 kernels' TMA scale path alone).
FP8_ONLY = os.environ.get("SANITIZE_FP8_ONLY", "0") not in ("", "0")
CONFIGS = [(64, 16, 4, 1), (64, 48, 4, 2), (128, 96, 4, 1), (128, 128, 3, 2), (256, 64, 3, 2)]
# SANITIZE_CONFIGS="256x96x3c1,...": only these block_m x block_n x stages c cluster.
if os.environ.get("SANITIZE_CONFIGS"):
    CONFIGS = [tuple(int(v) for v in c.replace("c", "x").split("x"))
               for c in os.environ["SANITIZE_CONFIGS"].split(",")]
# 192-row tiles (three math warpgroups): dense FP8, per-block B scales, no C,
# no cluster only; on 2 SMs so that each CTA walks several tiles.
THREE_WG = [] if os.environ.get("SANITIZE_CONFIGS") else [(192, 128, 4, 1), (192, 96, 4, 1)]
for (m, n, k) in [(1, 8, 128), (77, 136, 384), (200, 264, 640), (1100, 264, 640)]:
    for bm, bn, st, cl in THREE_WG:
        a = jax.random.normal(jax.random.PRNGKey(m + 1), (m, k))
        b = jax.random.normal(jax.random.PRNGKey(n + 1), (n, k))
        qa, qb = jaxgemm.per_token_cast_to_fp8(a), jaxgemm.per_block_cast_to_fp8(b)
        ref = (np.asarray(jaxgemm.dequantize(*qa), np.float64)
               @ np.asarray(jaxgemm.dequantize(*qb), np.float64).T)
        with _kernels.force_config(_config.GemmConfig(bm, bn, st, cl)):
            out = jax.jit(lambda x, y: jaxgemm.fp8_gemm_nt(x, y, num_sms=2))(qa, qb)
        err = np.abs(np.asarray(out, np.float64) - ref).max() / (np.abs(ref).max() + 1e-9)
        print(f"{m}x{n}x{k} {bm}x{bn}x{st} c{cl} (three warpgroups): rel err {err:.2e}",
              flush=True)
for (m, n, k) in [(1, 8, 128), (77, 136, 384), (200, 264, 640)]:
    a = jax.random.normal(jax.random.PRNGKey(m), (m, k))
    b = jax.random.normal(jax.random.PRNGKey(n), (n, k))
    qa, qb = jaxgemm.per_token_cast_to_fp8(a), jaxgemm.per_block_cast_to_fp8(b)
    qbr = jaxgemm.per_token_cast_to_fp8(b)
    c = jax.random.normal(jax.random.PRNGKey(k), (m, n))
    ref = np.asarray(jaxgemm.dequantize(*qa), np.float64) @ np.asarray(jaxgemm.dequantize(*qb), np.float64).T
    for bm, bn, st, cl in CONFIGS:
        with _kernels.force_config(_config.GemmConfig(bm, bn, st, cl)):
            out = jax.jit(lambda x, y: jaxgemm.fp8_gemm_nt(x, y))(qa, qb)
            out3 = None if FP8_ONLY else jax.jit(jaxgemm.bf16_gemm_nt)(
                a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
        # With C (read by the kernel; 256-row tiles reload their C buffer for
        # the second wave), on 2 SMs so that each CTA reuses its C buffer and
        # barrier over several tiles.
        with _kernels.force_config(_config.GemmConfig(bm, bn, st, cl)):
            out2 = jax.jit(lambda x, y, z: jaxgemm.fp8_gemm_nt(x, y, c=z, num_sms=2))(qa, qbr, c)
            out5 = jax.jit(lambda x, y, z: jaxgemm.fp8_gemm_nt(x, y, c=z, num_sms=2))(qa, qb, c)
            out4 = None if FP8_ONLY else jax.jit(
                lambda x, y, z: jaxgemm.bf16_gemm_nt(x, y, c=z, num_sms=2))(
                a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), c)
        # The BF16 ping-pong kernel takes 128-row tiles of at most 128
        # columns; with C on 2 SMs each warpgroup walks several tiles.
        out6 = out7 = None
        if not FP8_ONLY and bm == 128 and bn <= 128:
            with _kernels.force_config(_config.GemmConfig(bm, bn, st, cl, pingpong=True)):
                out6 = jax.jit(jaxgemm.bf16_gemm_nt)(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
                out7 = jax.jit(lambda x, y, z: jaxgemm.bf16_gemm_nt(x, y, c=z, num_sms=2))(
                    a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), c)
        jax.block_until_ready((out, out2, out3, out4, out5, out6, out7))
        err = np.abs(np.asarray(out, np.float64) - ref).max() / (np.abs(ref).max() + 1e-9)
        line = f"{m}x{n}x{k} {bm}x{bn}x{st} c{cl}: rel err {err:.2e}"
        if out6 is not None:
            ref16 = (np.asarray(a.astype(jnp.bfloat16), np.float64)
                     @ np.asarray(b.astype(jnp.bfloat16), np.float64).T)
            e6 = np.abs(np.asarray(out6, np.float64) - ref16).max() / (np.abs(ref16).max() + 1e-9)
            e7 = np.abs(np.asarray(out7, np.float64) - ref16 - np.asarray(c, np.float64)).max() / (
                np.abs(ref16).max() + 1e-9)
            line += f", ping-pong {e6:.2e} / with C {e7:.2e}"
        print(line, flush=True)
print("sanitize sweep done")

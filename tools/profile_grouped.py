"""Where the time of a grouped op goes: per-kernel device time of one call.

Run with XLA_FLAGS=--xla_gpu_enable_command_buffer= : kernels that XLA
groups into a CUDA graph (command buffer) are not traced one by one.

    JAXGEMM_PRINT_CONFIGS=1 python3 tools/profile_grouped.py
"""
import sys

import numpy as np

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _config, _kernels, _timing as timing

BF16 = jnp.bfloat16


def show(label, fn, args, flops):
    r = timing.time_op(jax.jit(fn), [args], reps=10)
    print(f"{label}: {r['us']:.0f} us, {flops / r['us'] / 1e6:.0f} TFLOPS", flush=True)
    for name, us in r.get("per_kernel_us", []):
        print(f"    {us:9.1f} us  {name}", flush=True)


key = jax.random.PRNGKey(0)
which = sys.argv[1:] or ["k", "masked", "contig"]
if "k" in which:
    for g, m, n, kpg in [(4, 4096, 7168, 8192), (16, 7168, 2048, 2048)]:
        sizes = np.full(g, kpg, np.int32)
        kt = g * kpg
        x = jax.random.normal(key, (kt, m), BF16)
        y = jax.random.normal(jax.random.fold_in(key, 1), (kt, n), BF16)
        gs = jnp.asarray(sizes)
        qx, qy = jaxgemm.per_token_cast_to_fp8_grouped(x, gs), jaxgemm.per_token_cast_to_fp8_grouped(y, gs)
        show(f"k-grouped fp8 {g}x{m}x{n}x{kpg}", jaxgemm.k_grouped_fp8_gemm_tn_contiguous,
             (qx, qy, gs), 2.0 * kt * m * n)
        show(f"k-grouped bf16 {g}x{m}x{n}x{kpg}", jaxgemm.k_grouped_bf16_gemm_tn_contiguous,
             (x, y, gs), 2.0 * kt * m * n)
if "ksweep" in which:
    # Tile configs of the k-grouped kernels (the model cannot see L2 limits).
    for g, m, n, kpg in [(4, 4096, 7168, 8192), (16, 7168, 2048, 2048)]:
        kt = g * kpg
        x = jax.random.normal(key, (kt, m), BF16)
        y = jax.random.normal(jax.random.fold_in(key, 1), (kt, n), BF16)
        gs = jnp.full((g,), kpg, jnp.int32)
        qx, qy = jaxgemm.per_token_cast_to_fp8_grouped(x, gs), jaxgemm.per_token_cast_to_fp8_grouped(y, gs)
        for fp8, cfgs in ((True, [(128, 128, 1), (128, 128, 2), (128, 160, 2), (128, 192, 1),
                                  (128, 192, 2), (64, 192, 1), (64, 256, 1)]),
                          (False, [(128, 128, 2), (128, 256, 1), (128, 256, 2), (128, 192, 2)])):
            for bm, bn, cl in cfgs:
                st = _config._max_stages(bm, bn, 1 if fp8 else 2, 4, fp8)
                jax.clear_caches()
                with _kernels.force_config(_config.GemmConfig(bm, bn, min(st, 8), cl)):
                    f = (jaxgemm.k_grouped_fp8_gemm_tn_contiguous if fp8
                         else jaxgemm.k_grouped_bf16_gemm_tn_contiguous)
                    args = (qx, qy, gs) if fp8 else (x, y, gs)
                    r = timing.time_op(jax.jit(lambda *a, f=f: f(*a)), [args], reps=6)
                kern = [us for name, us in r.get("per_kernel_us", []) if "jaxgemm" in name]
                ku = kern[0] if kern else float("nan")
                print(f"ksweep {'fp8' if fp8 else 'bf16'} {g}x{m}x{n}x{kpg} {bm}x{bn}x{st} c{cl}: "
                      f"kernel {ku:.0f} us {2.0 * kt * m * n / ku / 1e6:.0f} TFLOPS, "
                      f"op {r['us']:.0f} us", flush=True)
if "masked" in which:
    for g, mmax, em, n, k in [(32, 4096, 192, 7168, 3072), (6, 4096, 1024, 4096, 4096),
                              (32, 4096, 20, 7168, 3072)]:
        a = jax.random.normal(key, (g, mmax, k), BF16)
        w = jax.random.normal(jax.random.fold_in(key, 2), (g, n, k), BF16)
        qa, qw = jaxgemm.per_token_cast_to_fp8(a), jaxgemm.per_block_cast_to_fp8_grouped(w)
        mm = jnp.full((g,), em, jnp.int32)
        for z in (False, True):
            show(f"masked {g}x{mmax}x{em}x{n}x{k} zero_rows={z}",
                 lambda p, q, s, z=z: jaxgemm.m_grouped_fp8_gemm_nt_masked(
                     p, q, s, expected_m=em, zero_masked_rows=z), (qa, qw, mm), 2.0 * g * em * n * k)
if "contig" in which:
    g, mpg, n, k = 8, 4096, 4096, 4096
    a = jax.random.normal(key, (g * mpg, k), BF16)
    w = jax.random.normal(jax.random.fold_in(key, 2), (g, n, k), BF16)
    qa, qw = jaxgemm.per_token_cast_to_fp8(a), jaxgemm.per_block_cast_to_fp8_grouped(w)
    gs = jnp.full((g,), mpg, jnp.int32)
    show(f"contiguous {g}x{mpg}x{n}x{k}", jaxgemm.m_grouped_fp8_gemm_nt_contiguous, (qa, qw, gs),
         2.0 * g * mpg * n * k)
    show(f"dense {g * mpg}x{n}x{k}", jaxgemm.fp8_gemm_nt, (qa, (qw[0][0], qw[1][0])),
         2.0 * g * mpg * n * k)

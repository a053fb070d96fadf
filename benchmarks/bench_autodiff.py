"""Forward + backward of the BF16 ops under ``jax.grad`` (jaxgemm._autodiff),
against the same computation written with XLA ops (``jnp`` dot and
``jax.lax.ragged_dot``).

One call = ``jax.value_and_grad``: the forward GEMM and both backward GEMMs (dA, dB) of
``sum(D * W)``: 3x the forward's FLOPs.  Timed like the other benchmarks
(kernel time from the profiler, rotating input sets, median): transposes and
casts that the backward launches count.

    python benchmarks/bench_autodiff.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import jaxgemm  # noqa: E402
from jaxgemm import _timing  # noqa: E402

BF16, F32 = jnp.bfloat16, jnp.float32


def _dense_fns():
    def ours(a, b, w):
        return jax.value_and_grad(lambda a, b: jnp.sum(jaxgemm.bf16_gemm_nt(a, b).astype(F32) * w),
                        argnums=(0, 1))(a, b)

    def xla(a, b, w):
        return jax.value_and_grad(lambda a, b: jnp.sum(
            jnp.dot(a, b.T, preferred_element_type=F32).astype(BF16).astype(F32) * w),
            argnums=(0, 1))(a, b)
    return {"jaxgemm": ours, "xla_bf16": xla}


def _grouped_fns(gs):
    def ours(a, b, w):
        return jax.value_and_grad(lambda a, b: jnp.sum(
            jaxgemm.m_grouped_bf16_gemm_nt_contiguous(a, b, gs).astype(F32) * w),
            argnums=(0, 1))(a, b)

    def xla(a, b, w):
        return jax.value_and_grad(lambda a, b: jnp.sum(
            jax.lax.ragged_dot(a, jnp.swapaxes(b, 1, 2), gs,
                               preferred_element_type=F32).astype(BF16).astype(F32) * w),
            argnums=(0, 1))(a, b)
    return {"jaxgemm": ours, "ragged_dot": xla}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes (CPU smoke test)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    dense = [(256, 256, 256)] if args.quick else [(4096, 4096, 7168), (4096, 7168, 2048)]
    grouped = [(4, 64, 128, 256)] if args.quick else [(8, 4096, 4096, 4096), (4, 8192, 7168, 3072)]
    records = []

    def run(op, shape, fns, make, flops):
        sets = [make() for _ in range(2)]
        for impl, fn in fns.items():
            r = _timing.time_op(jax.jit(fn), sets, reps=args.reps)
            records.append({"op": op, "impl": impl, "shape": shape, "us": r["us"],
                            "tflops": flops / (r["us"] * 1e-6) / 1e12,
                            "kernels_per_call": r["kernels_per_call"]})

    for m, n, k in dense:
        def make(m=m, n=n, k=k):
            return (jnp.asarray(rng.standard_normal((m, k)), BF16),
                    jnp.asarray(rng.standard_normal((n, k)), BF16),
                    jnp.asarray(rng.standard_normal((m, n)), F32))
        run("bf16_gemm_nt fwd+bwd", f"{m}x{n}x{k}", _dense_fns(), make, 3 * 2.0 * m * n * k)
    for g, mpg, n, k in grouped:
        gs = jnp.full((g,), mpg, jnp.int32)

        def make(g=g, mpg=mpg, n=n, k=k):
            return (jnp.asarray(rng.standard_normal((g * mpg, k)), BF16),
                    jnp.asarray(rng.standard_normal((g, n, k)), BF16),
                    jnp.asarray(rng.standard_normal((g * mpg, n)), F32))
        run("m_grouped_bf16 fwd+bwd", f"{g}x{mpg}x{n}x{k}", _grouped_fns(gs), make,
            3 * 2.0 * g * mpg * n * k)
    base = {(r["op"], r["shape"]): r["us"] for r in records if r["impl"] != "jaxgemm"}
    for r in records:
        r["speedup"] = base[(r["op"], r["shape"])] / r["us"]
    common.print_table(records, [("op", "op", ""), ("shape", "shape", ""), ("impl", "impl", ""),
                                 ("us", "us", "{:.1f}"), ("tflops", "TFLOPS", "{:.1f}"),
                                 ("speedup", "vs XLA", "{:.2f}x"),
                                 ("kernels_per_call", "kernels", "{:.0f}")])
    if not args.no_save:
        print(f"wrote {common.write_results('autodiff', records)}")
    return records


if __name__ == "__main__":
    main()

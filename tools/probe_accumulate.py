"""Where the FP32-accumulate GEMM's time goes (device only): the same shapes
and tile with per-block vs per-row B scales, BF16 vs FP32 out, with and
without C, each with its per-kernel times.

    python tools/probe_accumulate.py [--configs 128x192x3c1,256x128x3c2]
"""
import argparse

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _config, _kernels
from jaxgemm import _timing as timing

SHAPES = [(2112, 4096, 7168), (7168, 4096, 2048), (4096, 4096, 7168), (7168, 4096, 16384)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--configs", default="128x192x3c1")
    p.add_argument("--shapes", default="")
    args = p.parse_args()
    shapes = ([tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
              if args.shapes else SHAPES)
    for m, n, k in shapes:
        key = jax.random.PRNGKey(m + n + k)
        count = timing.num_sets_for(m * k + n * k + 8 * m * n)
        sets = []
        for i in range(count):
            ka, kb, kc = jax.random.split(jax.random.fold_in(key, i), 3)
            a = jax.random.normal(ka, (m, k))
            b = jax.random.normal(kb, (n, k))
            sets.append(jax.block_until_ready(dict(
                qa=jaxgemm.per_token_cast_to_fp8(a), qb_row=jaxgemm.per_token_cast_to_fp8(b),
                qb_blk=jaxgemm.per_block_cast_to_fp8(b), c=jax.random.normal(kc, (m, n)))))
        variants = {
            "block bf16": (lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b), "qb_blk", False),
            "row bf16": (lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b), "qb_row", False),
            "row f32": (lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, out_dtype=jnp.float32),
                        "qb_row", False),
            "row f32 +C": (lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c=c), "qb_row", True),
            "block f32 +C": (lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c=c), "qb_blk", True),
        }
        for text in args.configs.split(","):
            dims, _, cl = text.partition("c")
            bm, bn, st = (int(v) for v in dims.split("x"))
            cfg = _config.GemmConfig(bm, bn, st, int(cl or 1))
            for name, (fn, bkey, with_c) in variants.items():
                if with_c and bm > 128:
                    continue
                data = [(s["qa"], s[bkey], s["c"]) for s in sets]
                with _kernels.force_config(cfg):
                    try:
                        t = timing.time_op(jax.jit(fn), data, reps=12)
                    except Exception as e:  # noqa: BLE001
                        print(f"{m}x{n}x{k} {cfg.describe():16} {name:13} ERROR {str(e)[:120]}")
                        continue
                tf = 2 * m * n * k / t["us"] / 1e6
                parts = "  ".join(f"{nm[:28]}={us:.1f}" for nm, us in t.get("per_kernel_us", []))
                print(f"{m}x{n}x{k} {cfg.describe():16} {name:13} {t['us']:8.1f} us {tf:6.0f} TFLOPS"
                      f"  [{parts}]", flush=True)


if __name__ == "__main__":
    main()

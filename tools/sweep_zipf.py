"""Tile configs on the skewed m-grouped contiguous rows (device only).

The Zipf-256 row (256 groups over 32768 rows, median 23 rows, 4096 x 7168
weights) ran 514 TFLOPS on the H100 and only 573 on the H200 (2026-11-28),
whose HBM is 1.43x faster: the row is not bound by HBM alone.  This times
the FP8 and BF16 contiguous kernels on it (and on Zipf-32 and one balanced
row for reference) under forced tile configs, and prints TFLOPS and the
weight bytes streamed per second, so that tile height, width and stage
count can be told apart.

    python3 tools/sweep_zipf.py [--rows zipf256,zipf32,balanced] [--dtypes fp8,bf16]
                                [--configs 64x192,128x192c2,...] [--ncu]

--ncu: one config (the first), three calls, for Nsight Compute's
--launch-skip / --launch-count.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_grouped  # noqa: E402
import common  # noqa: E402
import sweep_dense  # noqa: E402

import jaxgemm  # noqa: E402
from jaxgemm import _kernels, _timing as timing  # noqa: E402

BF16 = jnp.bfloat16
DEFAULT_CONFIGS = ("heuristic,64x128,64x192,64x256,128x128,128x192,128x192x2,128x192x3,"
                   "128x256,128x192c2,256x128c2")


def rows(names):
    out = []
    for name in names:
        if name == "zipf256":
            out.append((name, 256, 4096, 7168, bench_grouped.zipf_sizes(256, 32768, 256)))
        elif name == "zipf32":
            out.append((name, 32, 4096, 7168, bench_grouped.zipf_sizes(32, 32768, 32)))
        elif name == "balanced":
            out.append((name, 8, 4096, 7168, bench_grouped.balanced_sizes(8, 4096, 8 * 4096 + 4096)))
        else:
            raise SystemExit(f"unknown row {name!r}")
    return out


def parse_config(text, fp8):
    """'heuristic' -> None; else sweep_dense's config syntax ('64x192', '128x192x3c2')."""
    if text == "heuristic":
        return None
    return sweep_dense.parse_configs(text, fp8=fp8, out_bytes=2, sb_per_row=False)[0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", default="zipf256,zipf32,balanced")
    p.add_argument("--dtypes", default="fp8,bf16")
    p.add_argument("--configs", default=DEFAULT_CONFIGS)
    p.add_argument("--ncu", action="store_true")
    args = p.parse_args()
    records = []
    for name, g, n, k, sizes in rows(args.rows.split(",")):
        m = int(sizes.sum())
        key = jax.random.PRNGKey(m)
        x = jax.random.normal(key, (m, k), BF16)
        w, qb = bench_grouped._grouped_weights(jax.random.fold_in(key, 1), g, n, k)
        qa = jaxgemm.per_token_cast_to_fp8(x)
        gs = jnp.asarray(sizes)
        nonempty = int((sizes > 0).sum())
        flops = 2.0 * m * n * k
        for dtype in args.dtypes.split(","):
            fp8 = dtype == "fp8"
            weight_bytes = nonempty * n * k * (1 if fp8 else 2)
            for text in args.configs.split(","):
                cfg = parse_config(text, fp8)
                # A fresh function per config: jit caches by function, and
                # the forced config is read when it traces.
                if fp8:
                    fn = jax.jit(lambda a0, a1, b0, b1, s: jaxgemm.m_grouped_fp8_gemm_nt_contiguous(
                        (a0, a1), (b0, b1), s))
                    data = [(qa[0], qa[1], qb[0], qb[1], gs)]
                else:
                    fn = jax.jit(lambda a, b, s: jaxgemm.m_grouped_bf16_gemm_nt_contiguous(a, b, s))
                    data = [(x, w, gs)]
                with _kernels.force_config(cfg) if cfg else contextlib.nullcontext():
                    if args.ncu:
                        for _ in range(3):
                            jax.block_until_ready(fn(*data[0]))
                        return
                    try:
                        us = timing.time_op(fn, data, reps=10)["us"]
                    except Exception as e:  # noqa: BLE001
                        print(f"{name} {dtype} {text}: error {str(e).splitlines()[0][:150]}",
                              flush=True)
                        continue
                used = cfg or _kernels._grouped_config(m // g, n, k, BF16, g, None, fp8=fp8,
                                                       contiguous=True)
                rec = dict(row=name, dtype=dtype, config=text, resolved=used.describe(), m=m,
                           groups=g, n=n, k=k, us=round(us, 1),
                           tflops=round(flops / us / 1e6, 1),
                           weight_gbps=round(weight_bytes / us / 1e3, 1))
                records.append(rec)
                print(f"{name} {dtype} {text:12s} {rec['resolved']:20s} {us:9.1f} us "
                      f"{rec['tflops']:7.1f} TFLOPS  weights {rec['weight_gbps']:7.1f} GB/s",
                      flush=True)
        del x, w, qb, qa
    print("wrote", common.write_results("sweep_zipf", records))


if __name__ == "__main__":
    main()

"""Times every candidate kernel config on the benchmark shapes (device only).

The heuristic in jaxgemm/_config.py is tuned from these measurements; run
this after kernel changes and look at where the heuristic's pick falls short
of the best measured config.

    python benchmarks/sweep_dense.py [--set dense_fp8_nt] [--bf16] [--top 10]
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from jaxgemm import _timing as timing  # noqa: E402

import jaxgemm  # noqa: E402
from jaxgemm import _config, _ext, _kernels  # noqa: E402


def candidates(m, n, k, *, fp8, out_bytes, sb_per_row, top, add_c=False):
    """The model's top picks plus a spread of tile shapes around them."""
    scored = []
    for bm in (64, 128, 256):
        if bm > 64 and m <= bm // 2:
            continue
        for cluster in (1, 2, 4):
            if (bm // cluster) % 8:
                continue
            for bn in _config._block_n_candidates(fp8, sb_per_row, bm):
                st = _config._max_stages(bm, bn, 1 if fp8 else 2, out_bytes, sb_per_row, add_c)
                if st < 3:
                    continue
                cfg = _config.GemmConfig(bm, bn, st, cluster)
                scored.append(cfg)
    pick = (_kernels._fp8_dense_config(m, n, k, out_bytes, sb_per_row=sb_per_row, add_c=add_c)
            if fp8 else _config.bf16_dense_config(m, n, k, out_bytes=out_bytes, add_c=add_c))
    # Rank by a coarse wave count so the sweep covers good and bad fills.
    def waves(c):
        units = math.ceil(m / c.block_m) * math.ceil(math.ceil(n / c.block_n) / c.cluster)
        return math.ceil(units * c.cluster / 132) * c.block_m * c.block_n * (1 + 0.25 * (c.cluster == 4))
    scored.sort(key=lambda c: (waves(c) / (c.block_m * c.block_n) ** 0.5, -c.block_m * c.block_n))
    out = [pick] + [c for c in scored if c != pick]
    return out[:top]


def parse_configs(text, *, fp8, out_bytes, sb_per_row, add_c=False):
    """'256x128c2,128x128x5c1,128x128c2p' -> GemmConfigs (stages: the most that fit unless
    given; a trailing 'p': the BF16 ping-pong kernel)."""
    out = []
    for item in text.split(","):
        pingpong = item.endswith("p")
        dims, _, cluster = item.removesuffix("p").partition("c")
        parts = [int(x) for x in dims.split("x")]
        bm, bn = parts[0], parts[1]
        st = parts[2] if len(parts) > 2 else _config._max_stages(bm, bn, 1 if fp8 else 2, out_bytes,
                                                                   sb_per_row, add_c)
        out.append(_config.GemmConfig(bm, bn, st, int(cluster or 1), pingpong=pingpong))
    return out


def _attrs(kernel, m, n, k, cfg, out_f32, accumulate, sb_per_row):
    return dict(kernel=kernel, n=n, k=k, block_m=cfg.block_m, block_n=cfg.block_n,
                stages=cfg.stages, band_n=cfg.band_n, out_f32=int(out_f32),
                accumulate=int(accumulate), sb_per_row=int(sb_per_row), cluster=cfg.cluster,
                scales_tma=int(kernel.startswith("fp8") and _config.scales_by_tma(m)),
                num_sms=0, smem_override=0)


def _compile(attrs):
    _ext.ensure_jit()
    try:
        _ext.native.compile_kernel(attrs)
        return None
    except Exception as e:  # noqa: BLE001
        return str(e)[:200]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sets", default="dense_fp8_nt,dense_fp32_accumulate")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--bf16-only", action="store_true", help="BF16 only (--configs apply to it)")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--shapes", default="",
                   help="only these MxNxK, comma separated (with --sets custom: these shapes)")
    p.add_argument("--configs", default="",
                   help="time these configs instead of the candidates, e.g. 256x128c2,128x128x5c1 "
                        "(stages default to the most that fit)")
    p.add_argument("--tag", default="", help="suffix of the results file (e.g. a source variant)")
    args = p.parse_args()
    shapes = common.shapes()
    jobs = []  # (set, kernel, m, n, k, cfg, out_f32, acc, row)
    for set_name in args.sets.split(","):
        acc = set_name == "dense_fp32_accumulate"
        set_shapes = ([tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
                      if set_name == "custom" else shapes[set_name])
        for (m, n, k) in set_shapes:
            if args.shapes and f"{m}x{n}x{k}" not in args.shapes.split(","):
                continue
            cfgs = (parse_configs(args.configs, fp8=True, out_bytes=4 if acc else 2,
                                  sb_per_row=acc, add_c=acc) if args.configs else
                    candidates(m, n, k, fp8=True, out_bytes=4 if acc else 2, sb_per_row=acc,
                               top=args.top, add_c=acc))
            if not args.bf16_only:
                for cfg in cfgs:
                    jobs.append((set_name, "fp8_gemm_nt", m, n, k, cfg, acc, acc, acc))
            if (args.bf16 or args.bf16_only) and not acc:
                bf16_cfgs = (parse_configs(args.configs, fp8=False, out_bytes=2, sb_per_row=False)
                             if args.bf16_only and args.configs else
                             candidates(m, n, k, fp8=False, out_bytes=2, sb_per_row=False,
                                        top=args.top))
                for cfg in bf16_cfgs:
                    kernel = "bf16_gemm_nt_pingpong" if cfg.pingpong else "bf16_gemm_nt"
                    jobs.append(("bf16", kernel, m, n, k, cfg, False, False, False))
    n_pad = lambda n: -(-n // 8) * 8  # noqa: E731
    with mp.get_context("spawn").Pool(16) as pool:
        errs = pool.map(_compile, [_attrs(j[1], j[2], n_pad(j[3]), j[4], j[5], j[6], j[7], j[8])
                                   for j in jobs])
    results = []
    data = {}
    for job, err in zip(jobs, errs):
        set_name, kernel, m, n, k, cfg, out_f32, acc, row = job
        key = ("bf16" if kernel.startswith("bf16") else kernel, m, n, k, acc)
        if key not in data:
            kk = jax.random.split(jax.random.PRNGKey(m + n + k), 8)
            count = timing.num_sets_for(m * k + n * k + m * n * 4)
            sets = []
            for i in range(count):
                a = jax.random.normal(jax.random.fold_in(kk[0], i), (m, k))
                b = jax.random.normal(jax.random.fold_in(kk[1], i), (n, k))
                if kernel.startswith("bf16"):
                    sets.append((a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)))
                else:
                    qb = jaxgemm.per_token_cast_to_fp8(b) if row else jaxgemm.per_block_cast_to_fp8(b)
                    s = (*jaxgemm.per_token_cast_to_fp8(a), *qb)
                    if acc:
                        s = s + (jax.random.normal(kk[2], (m, n)),)
                    sets.append(s)
            data[key] = jax.block_until_ready(sets)
        if err:
            results.append(dict(set=set_name, kernel=kernel, m=m, n=n, k=k, config=cfg.describe(),
                                error=err))
            continue
        if kernel.startswith("bf16"):
            fn = lambda a, b: jaxgemm.bf16_gemm_nt(a, b)  # noqa: E731
        elif acc:
            fn = lambda a0, a1, b0, b1, c: jaxgemm.fp8_gemm_nt((a0, a1), (b0, b1), c=c)  # noqa: E731
        else:
            fn = lambda a0, a1, b0, b1: jaxgemm.fp8_gemm_nt((a0, a1), (b0, b1))  # noqa: E731
        with _kernels.force_config(cfg):
            try:
                t = timing.time_op(jax.jit(fn), data[key], reps=12)
            except Exception as e:  # noqa: BLE001
                results.append(dict(set=set_name, kernel=kernel, m=m, n=n, k=k,
                                    config=cfg.describe(), error=str(e)[:200]))
                continue
        tflops = 2 * m * n * k / t["us"] / 1e6
        results.append(dict(set=set_name, kernel=kernel, m=m, n=n, k=k, config=cfg.describe(),
                            block_m=cfg.block_m, block_n=cfg.block_n, stages=cfg.stages,
                            cluster=cfg.cluster, us=round(t["us"], 2), tflops=round(tflops, 1),
                            heuristic=cfg == candidates(m, n, k, fp8=not kernel.startswith("bf16"),
                                                        out_bytes=4 if acc else 2,
                                                        sb_per_row=row, top=1, add_c=acc)[0]))
    # Per shape: best and heuristic pick.
    print(f"{'kernel':13} {'shape':18} {'best':22} {'TFLOPS':>7} {'heuristic':22} {'TFLOPS':>7}")
    by = {}
    for r in results:
        by.setdefault((r["kernel"], r["m"], r["n"], r["k"], r["set"]), []).append(r)
    for key, rs in by.items():
        ok = [r for r in rs if "us" in r]
        if not ok:
            print(key, "all failed:", rs[0].get("error"))
            continue
        best = min(ok, key=lambda r: r["us"])
        h = next((r for r in ok if r.get("heuristic")), None)
        print(f"{key[0]:13} {key[1]}x{key[2]}x{key[3]:<8} {best['config']:22} {best['tflops']:7.0f} "
              f"{(h or {}).get('config', '-'):22} {(h or {}).get('tflops', 0):7.0f}")
    if args.configs:  # every config's figure, one line per shape
        for key, rs in by.items():
            print(f"{args.tag or 'src'} {key[1]}x{key[2]}x{key[3]}: " + "  ".join(
                f"{r['config']}={r.get('tflops', 'err')}" for r in rs))
    for r in results:
        if "error" in r:
            print("ERROR", r["kernel"], r["m"], r["n"], r["k"], r["config"], r["error"][:150])
    for r in results:
        r["source"] = args.tag or "src_cuda"
    path = common.write_results("sweep_dense" + (f"_{args.tag}" if args.tag else ""), results)
    print("wrote", path)


if __name__ == "__main__":
    main()

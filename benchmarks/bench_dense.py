"""Dense GEMM benchmark: jaxgemm against what a JAX user has today, and
cuBLASLt FP8 (through torch) where torch is importable.

Sets (benchmarks/data/shapes.json): `dense_fp8_nt` (D = A @ B^T, BF16 out)
and `dense_fp32_accumulate` (D = C + A @ B^T, FP32, both operands with 1x128
scales: the weight-gradient form); `--bf16` adds BF16 dense against XLA's
bf16 dot (cuBLAS); `--layouts` times the nn/tn/tt variants against nt on
operands already stored in their layouts (the cost of their transposes).
Prints a table, writes JSON (and a PNG chart) to benchmarks/results/ or
$JAXGEMM_RESULTS_DIR.

    python benchmarks/bench_dense.py [--quick] [--bf16] [--no-torch] [--layouts]
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import numpy as np

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from jaxgemm import _timing as timing  # noqa: E402

import jaxgemm  # noqa: E402

BF16 = jnp.bfloat16
F32 = jnp.float32


def _diff(x, y) -> float:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return float(1 - 2 * (x * y).sum() / max((x * x + y * y).sum(), 1e-300))


def make_sets(m, n, k, count, *, b_per_row, accumulate, seed):
    key = jax.random.PRNGKey(seed)
    sets = []
    for i in range(count):
        ka, kb, kc = jax.random.split(jax.random.fold_in(key, i), 3)
        a = jax.random.normal(ka, (m, k), F32)
        b = jax.random.normal(kb, (n, k), F32)
        qa = jaxgemm.per_token_cast_to_fp8(a)
        qb = jaxgemm.per_token_cast_to_fp8(b) if b_per_row else jaxgemm.per_block_cast_to_fp8(b)
        s = dict(qa=qa, qb=qb)
        if accumulate:
            s["c"] = jax.random.normal(kc, (m, n), F32)
        sets.append(jax.block_until_ready(s))
    return sets


def impls(accumulate: bool, num_sms_caps=()):
    """name -> (fn over a set dict, prep of the set into the fn's args)."""
    def jaxgemm_fn(qa0, qa1, qb0, qb1, *c, num_sms=None):
        return jaxgemm.fp8_gemm_nt((qa0, qa1), (qb0, qb1), c=c[0] if c else None,
                                   num_sms=num_sms)

    def xla_fp8(a8, b8, s, *c):
        # What jnp gives on FP8 operands with a per-tensor scale (XLA picks the kernel).
        d = jax.lax.dot_general(a8.astype(BF16), b8.astype(BF16), (((1,), (1,)), ((), ())),
                                preferred_element_type=F32) * s
        return d + c[0] if c else d.astype(BF16)

    def xla_fp8_upcast(a8, b8, s, *c):
        # The peers file's definition (../shared/perf/peers_h100.json, "xla_fp8"):
        # operands upcast and scaled *before* the dot, so XLA sees a BF16 GEMM
        # and emits no cuBLASLt FP8 call.  Timed beside xla_fp8 so both
        # definitions are answered on the same run.
        d = jax.lax.dot_general(a8.astype(BF16) * s.astype(BF16), b8.astype(BF16),
                                (((1,), (1,)), ((), ())), preferred_element_type=F32)
        return d + c[0] if c else d.astype(BF16)

    def xla_bf16(a, b, *c):
        d = jax.lax.dot_general(a, b, (((1,), (1,)), ((), ())),
                                preferred_element_type=F32 if c else BF16)
        return d + c[0] if c else d

    def xla_blockdq(qa0, qa1, qb0, qb1, *c):
        a = jaxgemm.dequantize(qa0, qa1).astype(BF16)
        b = jaxgemm.dequantize(qb0, qb1).astype(BF16)
        return xla_bf16(a, b, *c)

    cs = (lambda s: (s["c"],)) if accumulate else (lambda s: ())
    capped = {f"jaxgemm_sms{n}": (functools.partial(jaxgemm_fn, num_sms=n),
                                  lambda s: (*s["qa"], *s["qb"], *cs(s)))
              for n in num_sms_caps}
    return {
        "jaxgemm": (jaxgemm_fn, lambda s: (*s["qa"], *s["qb"], *cs(s))),
        **capped,
        "xla_fp8": (xla_fp8, lambda s: (s["qa"][0], s["qb"][0], jnp.float32(0.5), *cs(s))),
        "xla_fp8_upcast": (xla_fp8_upcast,
                           lambda s: (s["qa"][0], s["qb"][0], jnp.float32(0.5), *cs(s))),
        "xla_bf16": (xla_bf16, lambda s: (jaxgemm.dequantize(*s["qa"]).astype(BF16),
                                          jaxgemm.dequantize(*s["qb"]).astype(BF16), *cs(s))),
        "xla_blockdq": (xla_blockdq, lambda s: (*s["qa"], *s["qb"], *cs(s))),
    }


def torch_peers(m, n, k, accumulate):
    """cuBLASLt FP8 per-tensor and blockwise through torch, timed by triton's do_bench."""
    try:
        import torch
        from triton.testing import do_bench
    except Exception:
        return {}
    if not torch.cuda.is_available():
        return {}
    out = {}
    dev = "cuda"
    a = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
    b = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn)
    one = torch.tensor(1.0, device=dev)
    odt = torch.float32 if accumulate else torch.bfloat16
    try:
        fn = lambda: torch._scaled_mm(a, b.t(), one, one, out_dtype=odt)  # noqa: E731
        fn()
        out["torch_tensorwise"] = do_bench(fn, return_mode="median")
    except Exception as e:  # noqa: BLE001
        print(f"  torch_tensorwise unavailable: {str(e)[:100]}", file=sys.stderr)
    try:
        from torch.nn.functional import ScalingType, scaled_mm

        kb = math.ceil(k / 128)
        # cuBLASLt wants 1x128 scales outer-dim-major ([M, K/128] with
        # strides (1, M); for B [N, K/128] with strides (1, N)) and 128x128
        # scales of b.t() as [K/128, N/128] with strides (1, K/128).  torch
        # 2.11 on the H100 rejected the transposes of these that this script
        # passed until 2026-11-27 ("scale_b must have shape 56 x 17 ..., got
        # [17, 56]"), so the blockwise peer was never timed here; this form
        # follows those messages and has not yet run on the device.
        sa = torch.rand(kb, m, device=dev).t()
        sbk = (torch.rand(kb, n, device=dev).t() if accumulate else
               torch.rand(math.ceil(n / 128), kb, device=dev).t())
        rec_b = ScalingType.BlockWise1x128 if accumulate else ScalingType.BlockWise128x128
        fn = lambda: scaled_mm(a, b.t(), sa, ScalingType.BlockWise1x128, sbk, rec_b,  # noqa: E731
                               output_dtype=odt)
        fn()
        out["torch_blockwise"] = do_bench(fn, return_mode="median")
    except Exception as e:  # noqa: BLE001
        print(f"  torch_blockwise unavailable: {str(e)[:100]}", file=sys.stderr)
    return {k_: v * 1e3 for k_, v in out.items()}  # ms -> us


def run_set(set_name, rows, *, accumulate, use_torch, goals, quick, num_sms_caps=(),
            only_jaxgemm=False):
    records = []
    table = []
    for (m, n, k) in rows:
        in_bytes = m * k + n * k + 4 * (m + n) * math.ceil(k / 128)
        out_bytes = m * n * (4 if accumulate else 2) * (2 if accumulate else 1)
        count = timing.num_sets_for(in_bytes + out_bytes)
        sets = make_sets(m, n, k, count, b_per_row=accumulate, accumulate=accumulate, seed=m + n + k)
        row = {"shape": f"{m}x{n}x{k}"}
        outs = {}
        for name, (fn, prep) in impls(accumulate, num_sms_caps).items():
            if quick and not name.startswith("jaxgemm") and name not in ("xla_fp8", "xla_fp8_upcast"):
                continue
            if only_jaxgemm and name != "jaxgemm":
                continue
            args = [prep(s) for s in sets]
            jfn = jax.jit(fn)
            try:
                t = timing.time_op(jfn, args, reps=max(20, 2 * count))
            except Exception as e:  # noqa: BLE001
                print(f"  {name} failed on {m}x{n}x{k}: {str(e)[:300]}", file=sys.stderr)
                continue
            us = t["us"]
            tflops = 2 * m * n * k / us / 1e6
            rec = dict(op="fp8_gemm_nt", impl=name, m=m, n=n, k=k, us=round(us, 2),
                       tflops=round(tflops, 1), gbps=round((in_bytes + out_bytes) / us / 1e3, 1),
                       timing=t["method"], kernels_per_call=t.get("kernels_per_call"))
            if accumulate:
                rec["accumulate"] = True
            records.append(rec)
            row[name] = tflops
            if name == "jaxgemm":
                row["us"] = us
                row["gbps"] = rec["gbps"]
                row["kernels"] = t.get("kernels_per_call")
            if name in ("jaxgemm", "xla_blockdq"):
                outs[name] = jfn(*args[0])
        if "jaxgemm" in outs:
            ref = np.asarray(jaxgemm.dequantize(*sets[0]["qa"]), np.float64) @ np.asarray(
                jaxgemm.dequantize(*sets[0]["qb"]), np.float64).T if m * n * k <= 2**33 else None
            if ref is not None and accumulate:
                ref = ref + np.asarray(sets[0]["c"], np.float64)
            row["diff"] = _diff(outs["jaxgemm"], ref) if ref is not None else None
        if use_torch:
            for name, us in torch_peers(m, n, k, accumulate).items():
                tflops = 2 * m * n * k / us / 1e6
                rec = dict(op="fp8_gemm_nt", impl=name, m=m, n=n, k=k, us=round(us, 2),
                           tflops=round(tflops, 1),
                           gbps=round((in_bytes + out_bytes) / us / 1e3, 1), timing="do_bench")
                if accumulate:
                    rec["accumulate"] = True
                records.append(rec)
                row[name] = tflops
        g = goals.get(set_name, {}).get(f"{m}x{n}x{k}")
        row["goal"] = g
        if g and row.get("jaxgemm"):
            row["vs_goal"] = row["jaxgemm"] / g
        for peer in ("xla_fp8", "xla_fp8_upcast", "xla_bf16", "xla_blockdq", "torch_tensorwise",
                     "torch_blockwise", *(f"jaxgemm_sms{n}" for n in num_sms_caps)):
            if row.get(peer) and row.get("jaxgemm"):
                row[f"x_{peer}"] = row["jaxgemm"] / row[peer]
        table.append(row)
        print(f"  {set_name} {m}x{n}x{k}: jaxgemm {row.get('jaxgemm', 0):.0f} TFLOPS "
              f"({row.get('us', 0):.1f} us), goal {g}", flush=True)
    return records, table


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer peers")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--bf16", action="store_true", help="also BF16 dense vs XLA bf16 (cuBLAS)")
    p.add_argument("--sets", default="dense_fp8_nt,dense_fp32_accumulate")
    p.add_argument("--only-jaxgemm", action="store_true",
                   help="time jaxgemm alone (kernel A/B runs; implies --no-torch)")
    p.add_argument("--layouts", action="store_true",
                   help="also nn/tn/tt against nt, FP8 and BF16, on --layout-shapes")
    p.add_argument("--layout-shapes", default="64x7168x2048,128x7168x16384,4096x7168x2048,4096x4096x7168")
    p.add_argument("--num-sms", default="",
                   help="comma-separated SM caps to time jaxgemm at as well (e.g. 120,108: the "
                        "cost of leaving SMs to overlapping collectives)")
    args = p.parse_args()
    shapes = common.shapes()
    goals = common.goals()
    all_records = []
    tables = {}
    for set_name in (s for s in args.sets.split(",") if s):
        caps = tuple(int(v) for v in args.num_sms.split(",") if v)
        recs, table = run_set(set_name, shapes[set_name], accumulate=set_name == "dense_fp32_accumulate",
                              use_torch=not (args.no_torch or args.only_jaxgemm), goals=goals,
                              quick=args.quick, num_sms_caps=caps, only_jaxgemm=args.only_jaxgemm)
        all_records += recs
        tables[set_name] = table
        common.checkpoint("dense", all_records)
    if args.bf16:
        recs, table = run_bf16(shapes["dense_fp8_nt"])
        all_records += recs
        tables["bf16_dense"] = table
        common.checkpoint("dense", all_records)
    if args.layouts:
        shapes_l = [tuple(int(v) for v in s.split("x")) for s in args.layout_shapes.split(",") if s]
        recs, table = run_layouts(shapes_l)
        all_records += recs
        common.print_table(table, [("shape", "shape", ""), ("dtype", "dtype", ""),
                                   ("nt_us", "nt us", "{:.1f}"), ("nn", "nn/nt", "{:.2f}"),
                                   ("tn", "tn/nt", "{:.2f}"), ("tt", "tt/nt", "{:.2f}"),
                                   ("kernels", "kernels nt/nn/tn/tt", "")])
    path = common.write_results("dense", all_records)
    cols = [("shape", "shape", ""), ("us", "us", "{:.1f}"), ("jaxgemm", "TFLOPS", "{:.0f}"),
            ("gbps", "GB/s", "{:.0f}"), ("goal", "goal", "{}"), ("vs_goal", "x goal", "{:.2f}"),
            ("x_xla_fp8", "x xla_fp8", "{:.2f}"), ("x_xla_fp8_upcast", "x fp8_upcast", "{:.2f}"),
            ("x_xla_bf16", "x xla_bf16", "{:.2f}"),
            ("x_xla_blockdq", "x blockdq", "{:.2f}"), ("x_torch_tensorwise", "x cublas_t", "{:.2f}"),
            ("x_torch_blockwise", "x cublas_b", "{:.2f}"), ("diff", "diff", "{:.1e}"),
            ("kernels", "kern", "{:.0f}")] + [
            (f"x_jaxgemm_sms{n}", f"x sms{n}", "{:.2f}")
            for n in (int(v) for v in args.num_sms.split(",") if v)]
    for set_name, table in tables.items():
        print(f"\n== {set_name}")
        common.print_table(table, cols)
        xs = [r["x_xla_fp8"] for r in table if r.get("x_xla_fp8")]
        if xs:
            print(f"geomean speed-up over xla_fp8: {math.exp(sum(map(math.log, xs)) / len(xs)):.2f}x")
        series = {}
        for impl in ("jaxgemm", "xla_fp8", "xla_fp8_upcast", "xla_bf16", "xla_blockdq", "torch_tensorwise",
                     "torch_blockwise"):
            if any(r.get(impl) for r in table):
                series[impl] = [r.get(impl) for r in table]
        common.bar_chart(path.with_name(path.stem + f"_{set_name}.png"), f"{set_name} ({common.gpu_facts()['gpu']})",
                         [r["shape"] for r in table], series, [r.get("goal") for r in table])
    print(f"\nwrote {path}")


def run_bf16(rows):
    records, table = [], []
    for (m, n, k) in rows:
        count = timing.num_sets_for(2 * (m * k + n * k + m * n))
        key = jax.random.PRNGKey(m + n)
        sets = [(jax.random.normal(jax.random.fold_in(key, 2 * i), (m, k), F32).astype(BF16),
                 jax.random.normal(jax.random.fold_in(key, 2 * i + 1), (n, k), F32).astype(BF16))
                for i in range(count)]
        row = {"shape": f"{m}x{n}x{k}"}
        for name, fn in (("jaxgemm", lambda a, b: jaxgemm.bf16_gemm_nt(a, b)),
                         ("xla_bf16", lambda a, b: jax.lax.dot_general(
                             a, b, (((1,), (1,)), ((), ())), preferred_element_type=BF16))):
            t = timing.time_op(jax.jit(fn), sets, reps=max(20, 2 * count))
            tflops = 2 * m * n * k / t["us"] / 1e6
            records.append(dict(op="bf16_gemm_nt", impl=name, m=m, n=n, k=k, us=round(t["us"], 2),
                                tflops=round(tflops, 1),
                                gbps=round(2 * (m * k + n * k + m * n) / t["us"] / 1e3, 1)))
            row[name] = tflops
            if name == "jaxgemm":
                row["us"] = t["us"]
        row["x_xla_bf16"] = row["jaxgemm"] / row["xla_bf16"]
        table.append(row)
        print(f"  bf16 {m}x{n}x{k}: {row['jaxgemm']:.0f} vs {row['xla_bf16']:.0f} TFLOPS", flush=True)
    return records, table



def _stored(layout, qa, qb):
    """(A, B) as the `layout` variant takes them: data and scales transposed
    where the layout stores that operand K-major-transposed."""
    t = lambda q: (q[0].T, q[1].T) if isinstance(q, tuple) else q.T  # noqa: E731
    a = t(qa) if layout[0] == "t" else qa
    b = t(qb) if layout[1] == "n" else qb
    return a, b


def run_layouts(rows):
    """Time fp8/bf16 nn, tn, tt against nt on operands already stored in each
    layout: what the variants' transposes (XLA fusions around the NT kernel)
    cost."""
    records, table = [], []
    for (m, n, k) in rows:
        for dtype in ("fp8", "bf16"):
            count = timing.num_sets_for(2 * (m * k + n * k + m * n))
            key = jax.random.PRNGKey(m + n + k)
            base = []
            for i in range(count):
                ka, kb = jax.random.split(jax.random.fold_in(key, i))
                a = jax.random.normal(ka, (m, k), F32)
                b = jax.random.normal(kb, (n, k), F32)
                if dtype == "fp8":
                    base.append((jaxgemm.per_token_cast_to_fp8(a), jaxgemm.per_block_cast_to_fp8(b)))
                else:
                    base.append((a.astype(BF16), b.astype(BF16)))
            row = {"shape": f"{m}x{n}x{k}", "dtype": dtype}
            kernels = []
            for layout in ("nt", "nn", "tn", "tt"):
                fn = getattr(jaxgemm, f"{dtype}_gemm_{layout}")
                sets = [jax.block_until_ready(_stored(layout, qa, qb)) for qa, qb in base]
                t = timing.time_op(jax.jit(lambda a, b, fn=fn: fn(a, b)), sets,
                                   reps=max(20, 2 * count))
                records.append(dict(op=f"{dtype}_gemm_{layout}", impl="jaxgemm", m=m, n=n, k=k,
                                    us=round(t["us"], 2),
                                    tflops=round(2 * m * n * k / t["us"] / 1e6, 1),
                                    kernels_per_call=t.get("kernels_per_call"),
                                    timing=t.get("method")))
                kernels.append(f"{t.get('kernels_per_call', 0):.0f}")
                if layout == "nt":
                    row["nt_us"] = t["us"]
                else:
                    row[layout] = t["us"] / row["nt_us"]
            row["kernels"] = "/".join(kernels)
            table.append(row)
            print(f"  layouts {dtype} {m}x{n}x{k}: nt {row['nt_us']:.1f} us, nn x{row['nn']:.2f}, "
                  f"tn x{row['tn']:.2f}, tt x{row['tt']:.2f}", flush=True)
    return records, table


if __name__ == "__main__":
    main()

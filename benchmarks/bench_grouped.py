"""MoE grouped GEMM benchmark: jaxgemm against what a JAX user has today.

Sets (benchmarks/data/shapes.json): `m_grouped_contiguous` (balanced rows,
group sizes 0.7-1.3x m_per_group, plus Zipf(1.2) rows with 32 and 256 groups
over 32768 tokens, none aligned to 128, some empty), `m_grouped_masked`
(masked_m 0.7-1.3x expected_m) and `k_grouped_wgrad` (per-group K
0.7-1.3x k_per_group, plus a variant with an empty group).  Peers:
`jax.lax.ragged_dot` in BF16 and on FP8 upcast to BF16 (contiguous, k-grouped
via ragged_dot_general), and XLA's batched dot over all M_max rows (masked).
TFLOPS count real rows only.  Prints a table, writes JSON and a PNG.

    python benchmarks/bench_grouped.py [--quick] [--sets ...]

Weights are generated and quantized one group at a time in BF16 (the Zipf row
with 256 groups of 4096x7168 weights would need 30 GB as one float32 array).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import common  # noqa: E402
import jaxgemm  # noqa: E402
from jaxgemm import _timing as timing  # noqa: E402

BF16 = jnp.bfloat16
F32 = jnp.float32


def balanced_sizes(groups, per_group, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(int(0.7 * per_group), int(1.3 * per_group) + 1, groups).astype(np.int32)


def zipf_sizes(groups, total, seed):
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, groups + 1) ** 1.2
    w = rng.permutation(w)
    sizes = np.floor(w / w.sum() * total).astype(np.int64)
    sizes[rng.integers(0, groups, max(1, groups // 16))] = 0   # some empty groups
    sizes[0] += total - sizes.sum()
    sizes = np.where(sizes % 128 == 0, np.maximum(sizes - 1, 0), sizes)  # none aligned
    return sizes.astype(np.int32)


@partial(jax.jit, static_argnums=(1, 2, 3))
def _grouped_weights(key, g, n, k):
    """BF16 [G, N, K] weights and their FP8 128x128 quantization, group by group."""
    def one(i):
        w = jax.random.normal(jax.random.fold_in(key, i), (n, k), BF16)
        return w, jaxgemm.per_block_cast_to_fp8(w)
    w, (q, s) = jax.lax.map(one, jnp.arange(g))
    return w, (q, s)


def _time(fn, sets):
    return timing.time_op(jax.jit(fn), sets, reps=max(12, 2 * len(sets)))["us"]


_ONLY_JAXGEMM = False  # --only-jaxgemm: peers are skipped (kernel A/B runs)


def _time_peer(fn, sets):
    """A peer's time, or NaN when XLA cannot run it (ragged_dot lowers to a
    dense one-hot product that needs >100 GB on the 256-group Zipf row) or
    when peers are skipped."""
    if _ONLY_JAXGEMM:
        return math.nan
    try:
        return _time(fn, sets)
    except Exception as e:  # noqa: BLE001
        print(f"  peer failed: {str(e).splitlines()[0][:160]}", file=sys.stderr, flush=True)
        return math.nan


def _record(op, impl, us, flops, nbytes, **shape):
    if not math.isfinite(us):
        why = dict(skipped=True) if _ONLY_JAXGEMM else dict(failed=True)
        return dict(op=op, impl=impl, us=None, tflops=None, gbps=None, **why, **shape)
    return dict(op=op, impl=impl, us=round(us, 2), tflops=round(flops / us / 1e6, 1),
                gbps=round(nbytes / us / 1e3, 1), **shape)


def bench_contiguous(rows, quick):
    recs = []
    cases = [("balanced", g, mpg, n, k, balanced_sizes(g, mpg, g * mpg + n)) for g, mpg, n, k in rows]
    if not quick:
        for g in (32, 256):
            cases.append(("zipf", g, 32768 // g, 4096, 7168, zipf_sizes(g, 32768, g)))
    for dist, g, mpg, n, k, sizes in cases:
        if quick:
            mpg, n, k = max(64, mpg // 32), max(256, n // 16), max(256, k // 16)
            sizes = balanced_sizes(g, mpg, 1)
        m = int(sizes.sum())
        key = jax.random.PRNGKey(m)
        x = jax.random.normal(key, (m, k), BF16)
        w, qb = _grouped_weights(jax.random.fold_in(key, 1), g, n, k)
        gs = jnp.asarray(sizes)
        qa = jaxgemm.per_token_cast_to_fp8(x)
        wt_bf16 = jnp.swapaxes(w, 1, 2)  # ragged_dot wants [G, K, N]
        flops = 2.0 * m * n * k
        nbytes = m * k + g * n * k + m * n * 2
        shape = dict(groups=g, m_per_group=mpg, n=n, k=k, dist=dist, m=m)
        sets = [(qa[0], qa[1], qb[0], qb[1], gs)]
        t = _time(lambda a0, a1, b0, b1, s: jaxgemm.m_grouped_fp8_gemm_nt_contiguous(
            (a0, a1), (b0, b1), s), sets)
        recs.append(_record("m_grouped_fp8_gemm_nt_contiguous", "jaxgemm", t, flops, nbytes, **shape))
        t = _time_peer(lambda a, b, s: jax.lax.ragged_dot(a, b, s), [(x, wt_bf16, gs)])
        del wt_bf16
        recs.append(_record("m_grouped_fp8_gemm_nt_contiguous", "ragged_bf16", t, flops, 2 * nbytes, **shape))
        t = _time_peer(lambda a, b, s: jax.lax.ragged_dot(a.astype(BF16), jnp.swapaxes(b, 1, 2).astype(BF16), s),
                  [(qa[0], qb[0], gs)])
        recs.append(_record("m_grouped_fp8_gemm_nt_contiguous", "ragged_fp8_upcast", t, flops, nbytes, **shape))
        t = _time(lambda a, b, s: jaxgemm.m_grouped_bf16_gemm_nt_contiguous(a, b, s),
                  [(x, w, gs)])
        recs.append(_record("m_grouped_bf16_gemm_nt_contiguous", "jaxgemm", t, flops, 2 * nbytes, **shape))
        print(f"  contiguous {dist} {g}x{mpg}x{n}x{k}: " + ", ".join(
            f"{r['impl']} {r['tflops'] or float('nan'):.0f}" for r in recs[-4:]), flush=True)
    return recs


def bench_masked(rows, quick):
    recs = []
    for g, max_m, expected_m, n, k in rows:
        if quick:
            max_m, expected_m, n, k = 256, min(expected_m, 128), 512, 512
        rng = np.random.default_rng(g * max_m + expected_m)
        mm = np.minimum(rng.integers(int(0.7 * expected_m), int(1.3 * expected_m) + 1, g), max_m)
        real = int(mm.sum())
        key = jax.random.PRNGKey(real)
        x = jax.random.normal(key, (g, max_m, k), BF16)
        w, qb = _grouped_weights(jax.random.fold_in(key, 1), g, n, k)
        qa = jaxgemm.per_token_cast_to_fp8(x)
        mmj = jnp.asarray(mm, jnp.int32)
        flops = 2.0 * real * n * k
        nbytes = real * k + g * n * k + real * n * 2
        shape = dict(groups=g, max_m=max_m, expected_m=expected_m, n=n, k=k)
        # Headline: zero_masked_rows=False, the contract DeepGEMM-class masked
        # kernels have (rows past masked_m untouched); the default, which also
        # zeroes G*M_max*N - sum(masked_m)*N outputs, is recorded beside it.
        for impl, zero_rows in (("jaxgemm", False), ("jaxgemm_zero_rows", True)):
            t = _time(lambda a0, a1, b0, b1, s, z=zero_rows: jaxgemm.m_grouped_fp8_gemm_nt_masked(
                (a0, a1), (b0, b1), s, expected_m=expected_m, zero_masked_rows=z),
                [(qa[0], qa[1], qb[0], qb[1], mmj)])
            recs.append(_record("m_grouped_fp8_gemm_nt_masked", impl, t, flops, nbytes, **shape))
        t = _time_peer(lambda a, b: jnp.einsum("gmk,gnk->gmn", a, b, preferred_element_type=BF16),
                  [(x, w)])
        recs.append(_record("m_grouped_fp8_gemm_nt_masked", "xla_bf16_batched", t, flops, 2 * nbytes, **shape))
        print(f"  masked {g}x{max_m}x{expected_m}x{n}x{k}: " + ", ".join(
            f"{r['impl']} {r['tflops'] or float('nan'):.0f}" for r in recs[-3:]), flush=True)
    return recs


def bench_k_grouped(rows, quick):
    recs = []
    cases = [(g, m, n, kpg, False) for g, m, n, kpg in rows]
    if not quick:
        g, m, n, kpg = rows[0]
        cases.append((g, m, n, kpg, True))
    for g, m, n, kpg, empty in cases:
        if quick:
            m, n, kpg = 256, 256, 512
        sizes = balanced_sizes(g, kpg, g * kpg + m)
        if empty:
            sizes[1] = 0
        k_total = int(sizes.sum())
        key = jax.random.PRNGKey(k_total)
        x = jax.random.normal(key, (k_total, m), F32)
        dy = jax.random.normal(jax.random.fold_in(key, 1), (k_total, n), F32)
        gs = jnp.asarray(sizes)
        qa = jaxgemm.per_token_cast_to_fp8_grouped(x, gs)
        qb = jaxgemm.per_token_cast_to_fp8_grouped(dy, gs)
        flops = 2.0 * k_total * m * n
        nbytes = k_total * (m + n) + g * m * n * 4
        shape = dict(groups=g, m=m, n=n, k_per_group=kpg, k_total=k_total,
                     dist="empty_group" if empty else "balanced")
        t = _time(lambda a0, a1, b0, b1, s: jaxgemm.k_grouped_fp8_gemm_tn_contiguous(
            (a0, a1), (b0, b1), s), [(qa[0], qa[1], qb[0], qb[1], gs)])
        recs.append(_record("k_grouped_fp8_gemm_tn_contiguous", "jaxgemm", t, flops, nbytes, **shape))
        dn = jax.lax.RaggedDotDimensionNumbers(
            dot_dimension_numbers=(((0,), (0,)), ((), ())), lhs_ragged_dimensions=[0],
            rhs_group_dimensions=[])
        try:
            if _ONLY_JAXGEMM:
                raise RuntimeError("peers skipped (--only-jaxgemm)")
            t = _time(lambda a, b, s: jax.lax.ragged_dot_general(
                a, b, s, dn, preferred_element_type=F32), [(x.astype(BF16), dy.astype(BF16), gs)])
            recs.append(_record("k_grouped_fp8_gemm_tn_contiguous", "ragged_bf16", t, flops, nbytes, **shape))
        except Exception as e:  # noqa: BLE001
            print(f"  ragged_dot_general (ragged K) unavailable: {str(e)[:120]}", file=sys.stderr)
        print(f"  k-grouped {g}x{m}x{n}x{kpg}{' (empty group)' if empty else ''}: " + ", ".join(
            f"{r['impl']} {r['tflops'] or float('nan'):.0f}" for r in recs if r.get('k_total') == k_total), flush=True)
    return recs


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small shapes (a smoke test)")
    p.add_argument("--sets", default="m_grouped_contiguous,m_grouped_masked,k_grouped_wgrad")
    p.add_argument("--only-jaxgemm", action="store_true",
                   help="time jaxgemm alone (kernel A/B runs)")
    args = p.parse_args()
    global _ONLY_JAXGEMM
    _ONLY_JAXGEMM = args.only_jaxgemm
    shapes = common.shapes()
    goals = common.goals()
    records = []
    sets = args.sets.split(",")
    if "m_grouped_contiguous" in sets:
        records += bench_contiguous(shapes["m_grouped_contiguous"]["balanced"], args.quick)
        common.checkpoint("grouped", records)
    if "m_grouped_masked" in sets:
        records += bench_masked(shapes["m_grouped_masked"]["rows"], args.quick)
        common.checkpoint("grouped", records)
    if "k_grouped_wgrad" in sets:
        records += bench_k_grouped(shapes["k_grouped_wgrad"]["rows"], args.quick)
    path = common.write_results("grouped", records, extra={
        "grouped_kernels": os.environ.get("JAXGEMM_GROUPED_KERNELS", "1")})
    # Table: jaxgemm vs goal and peers, one row per case.
    table = []
    for r in records:
        if r["impl"] != "jaxgemm" or "bf16" in r["op"]:
            continue
        if r["op"].startswith("m_grouped_fp8_gemm_nt_contiguous"):
            gkey = f"{r['groups']}x{r['m_per_group']}x{r['n']}x{r['k']}"
            goal = goals["m_grouped_contiguous"].get(gkey) if r["dist"] == "balanced" else None
            label = f"contig {r['dist']} {gkey}"
        elif "masked" in r["op"]:
            gkey = f"{r['groups']}x{r['max_m']}x{r['expected_m']}x{r['n']}x{r['k']}"
            goal = goals["m_grouped_masked"].get(gkey)
            label = f"masked {gkey}"
        else:
            gkey = f"{r['groups']}x{r['m']}x{r['n']}x{r['k_per_group']}"
            goal = goals["k_grouped_wgrad"].get(gkey) if r["dist"] == "balanced" else None
            label = f"k-grouped {r['dist']} {gkey}"
        peers = {q["impl"]: q["tflops"] for q in records
                 if q["op"] == r["op"] and q["impl"] != "jaxgemm"
                 and all(q.get(f) == r.get(f) for f in ("groups", "n", "k", "m", "k_total", "max_m",
                                                        "expected_m", "dist"))}
        row = dict(case=label, us=r["us"], tflops=r["tflops"], goal=goal,
                   vs_goal=r["tflops"] / goal if goal else None)
        for name, tf in peers.items():
            row[f"x_{name}"] = r["tflops"] / tf if tf else None
        table.append(row)
    cols = [("case", "case", ""), ("us", "us", "{:.1f}"), ("tflops", "TFLOPS", "{:.0f}"),
            ("goal", "goal", "{}"), ("vs_goal", "x goal", "{:.2f}"),
            ("x_ragged_bf16", "x ragged_bf16", "{:.2f}"),
            ("x_ragged_fp8_upcast", "x ragged_fp8", "{:.2f}"),
            ("x_xla_bf16_batched", "x xla_batched", "{:.2f}"),
            ("x_jaxgemm_zero_rows", "x zero_rows", "{:.2f}")]
    common.print_table(table, cols)
    labels = [r["case"] for r in table]
    common.bar_chart(path.with_suffix(".png"), f"grouped GEMMs ({common.gpu_facts()['gpu']})", labels,
                     {"jaxgemm": [r["tflops"] for r in table]}, [r["goal"] for r in table])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

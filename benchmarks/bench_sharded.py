"""Sharded GEMMs on the GPUs of one host: per-GPU TFLOPS against one GPU.

For each large benchmark shape, in one process:

* one GPU: the whole problem on device 0 (the single-GPU figure);
* all GPUs under ``jax.jit`` with ``NamedSharding`` (jaxgemm's partitioning
  rules, no ``shard_map``): dense ``fp8_gemm_nt`` data parallel (M split:
  no communication) and column tensor parallel (N split, B's scales follow);
  and row tensor parallel (K split: f32 partial products, all-reduced);
  m-grouped contiguous expert parallel inside ``jax.shard_map`` (each GPU its
  G/n experts and their tokens: the layout after an all-to-all dispatch);
* one device's share alone on one GPU (``shard_alone_us``): the kernel's
  speed at the smaller per-device shape, so that ``vs_shard_alone`` is the
  cost of sharding itself (collectives, resharding).

Per-GPU TFLOPS = FLOPs of a device's share / wall time of the sharded call
(``--reps`` calls inside one jitted loop, so the host's dispatch is not
timed; median of 7 trials); the target is within
5% of the one-GPU figure.  Also writes the HLO collectives of each sharded
program (all-gathers of a weight would show there).

    python benchmarks/bench_sharded.py                  # every visible GPU
    python benchmarks/bench_sharded.py --cpu-devices 2 --quick   # CPU smoke test
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _looped(fn, reps):
    """``fn`` run ``reps`` times inside one jitted ``fori_loop``: the host
    dispatches once per ``reps`` GEMMs, as inside a training step, so the
    figure is the GPUs' time (compute and collectives), not the launch cost of
    a multi-device program.  The first float32 operand (a scale) is multiplied
    by ``1 + 0 * i`` so that XLA cannot hoist the GEMM out of the loop; the
    carry is the last result, so no iteration is dead code."""
    import jax
    import jax.numpy as jnp

    def run(*args):
        leaves, tree = jax.tree.flatten(args)
        j = next(n for n, x in enumerate(leaves) if x.dtype == jnp.float32)

        def body(i, carry):
            ls = list(leaves)
            ls[j] = ls[j] * (1.0 + 0.0 * i.astype(jnp.float32))
            return fn(*jax.tree.unflatten(tree, ls))

        init = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(fn, *args))
        return jax.lax.fori_loop(0, reps, body, init)

    return jax.jit(run)


def _wall_us(fn, args, reps, trials=7):
    """Time of one call of ``fn``: ``reps`` calls in one jitted loop
    (:func:`_looped`), blocked; the median over ``trials``."""
    import jax

    loop = _looped(fn, reps)
    jax.block_until_ready(loop(*args))  # compile + warm
    jax.block_until_ready(loop(*args))
    times = []
    for _ in range(trials):
        t0 = time.perf_counter()
        jax.block_until_ready(loop(*args))
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times) * 1e6


def collectives_in(hlo_text: str) -> list[str]:
    """The distinct collectives of a compiled HLO text, one "kind shape" per
    array they produce (a combined all-reduce produces a tuple; an async
    start returns (operands, results): its second half is what it produces).
    Collectives whose replica groups all hold one device (a psum over a mesh
    axis of size 1) move nothing and are left out."""
    found = set()
    for line in hlo_text.splitlines():
        m = re.search(r"= (.*?) (all-gather|all-reduce|all-to-all|reduce-scatter|"
                      r"collective-permute)(-start)?\(", line)
        if not m or re.search(r"replica_groups=\{(\{\d+\},?)+\}", line):
            continue
        shapes = re.findall(r"\w+\[[\d,]*\](?:\{[\d,]*\})?", m.group(1))
        if m.group(3):
            shapes = shapes[len(shapes) // 2:]
        found.update(f"{m.group(2)} {s}" for s in shapes)
    return sorted(found)


def _collectives(fn, args):
    return collectives_in(fn.lower(*args).compile().as_text())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-devices", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args(argv)
    if args.cpu_devices:
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.cpu_devices}")
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import common
    import jaxgemm

    devs = jax.devices()
    n = len(devs)
    mesh = jax.make_mesh((n,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
    one = devs[0]
    shapes = common.shapes()
    dense = [s for s in shapes["dense_fp8_nt"] if s[0] >= 4096]
    grouped = shapes["m_grouped_contiguous"]["balanced"]
    if args.quick:
        dense, grouped = [(512, 512, 256)], [(2 * n, 128, 256, 256)]
    reps = 3 if args.quick else args.reps
    records = []
    key = jax.random.PRNGKey(0)

    def put(x, spec):
        return jax.device_put(x, NamedSharding(mesh, spec))

    def shard_1gpu(fn, args):
        """One device's share of the problem, run alone on one GPU: separates
        the kernel's speed at the smaller shape from the cost of sharding."""
        return _wall_us(fn, jax.device_put(args, one), reps)

    # layout: (a specs, b specs, one device's (m, n, k) share)
    layouts = {
        "data_parallel": ((P("x"), P("x")), (P(), P()), lambda m, nn, k: (m // n, nn, k)),
        "column_parallel": ((P(), P()), (P("x"), P("x")), lambda m, nn, k: (m, nn // n, k)),
        # K split: f32 partial products summed by an all-reduce after the GEMM
        "row_parallel": ((P(None, "x"), P(None, "x")), (P(None, "x"), P(None, "x")),
                         lambda m, nn, k: (m, nn, k // n)),
    }
    for m, nn, k in dense:
        a = jaxgemm.per_token_cast_to_fp8(jax.random.normal(key, (m, k), jnp.bfloat16))
        b = jaxgemm.per_block_cast_to_fp8(jax.random.normal(key, (nn, k), jnp.bfloat16))
        flops = 2.0 * m * nn * k
        f = jax.jit(lambda x, y: jaxgemm.fp8_gemm_nt(x, y))
        single = _wall_us(f, jax.device_put((a, b), one), reps)
        base = dict(op="fp8_gemm_nt", m=m, n=nn, k=k, num_gpus=n)
        records.append(dict(base, impl="jaxgemm_1gpu", us=round(single, 2),
                            tflops_per_gpu=round(flops / single / 1e6, 1)))
        for layout, (a_spec, b_spec, share) in layouts.items():
            sm, sn, sk = share(m, nn, k)
            if m % n or sn % 128 or sk % 128:   # 128-blocks must not straddle shards
                continue
            sa = (put(a[0], a_spec[0]), put(a[1], a_spec[1]))
            sb = (put(b[0], b_spec[0]), put(b[1], b_spec[1]))
            us = _wall_us(f, (sa, sb), reps)
            alone = shard_1gpu(f, ((a[0][:sm, :sk], a[1][:sm, :sk // 128]),
                                   (b[0][:sn, :sk], b[1][:sn // 128, :sk // 128])))
            records.append(dict(base, impl=f"jaxgemm_{layout}", us=round(us, 2),
                                tflops_per_gpu=round(flops / n / us / 1e6, 1),
                                vs_1gpu=round(single / (us * n), 3),
                                shard_alone_us=round(alone, 2),
                                vs_shard_alone=round(alone / us, 3),
                                collectives=_collectives(f, (sa, sb))))
        print("  dense", m, nn, k, [(r["impl"], r["tflops_per_gpu"]) for r in records[-4:]],
              flush=True)

    for g, mpg, nn, k in grouped:
        if g % n:
            continue
        m = g * mpg
        x = jax.random.normal(key, (m, k), jnp.bfloat16)
        w = jax.random.normal(jax.random.fold_in(key, 1), (g, nn, k), jnp.bfloat16)
        qa, qb = jaxgemm.per_token_cast_to_fp8(x), jaxgemm.per_block_cast_to_fp8_grouped(w)
        gs = jnp.full((g,), mpg, jnp.int32)
        flops = 2.0 * m * nn * k
        f = jax.jit(lambda p, q, s: jaxgemm.m_grouped_fp8_gemm_nt_contiguous(p, q, s))
        single = _wall_us(f, jax.device_put((qa, qb, gs), one), reps)
        base = dict(op="m_grouped_fp8_gemm_nt_contiguous", groups=g, m_per_group=mpg, n=nn,
                    k=k, num_gpus=n)
        records.append(dict(base, impl="jaxgemm_1gpu", us=round(single, 2),
                            tflops_per_gpu=round(flops / single / 1e6, 1)))
        # Expert parallel after dispatch: device i holds experts [i*G/n, (i+1)*G/n)
        # and exactly their tokens (rows are grouped by expert, equal sizes).
        local = jax.shard_map(
            lambda p0, p1, q0, q1, s: jaxgemm.m_grouped_fp8_gemm_nt_contiguous(
                (p0, p1), (q0, q1), s),
            mesh=mesh, in_specs=(P("x"),) * 5, out_specs=P("x"), check_vma=False)
        fe = jax.jit(local)
        ops = (put(qa[0], P("x")), put(qa[1], P("x")), put(qb[0], P("x")), put(qb[1], P("x")),
               put(gs, P("x")))
        us = _wall_us(fe, ops, reps)
        gl, ml = g // n, m // n
        alone = shard_1gpu(f, ((qa[0][:ml], qa[1][:ml]), (qb[0][:gl], qb[1][:gl]), gs[:gl]))
        records.append(dict(base, impl="jaxgemm_expert_parallel", us=round(us, 2),
                            tflops_per_gpu=round(flops / n / us / 1e6, 1),
                            vs_1gpu=round(single / (us * n), 3),
                            shard_alone_us=round(alone, 2),
                            vs_shard_alone=round(alone / us, 3),
                            collectives=_collectives(fe, ops)))
        print("  grouped", g, mpg, nn, k, [(r["impl"], r["tflops_per_gpu"]) for r in records[-2:]],
              flush=True)

    path = common.write_results("sharded", records, extra={"num_gpus": n})
    print(f"{'case':>44} {'1 GPU':>8} {'per GPU':>8} {'ratio':>6} {'vs share alone':>15}")
    for r in records:
        if "vs_1gpu" in r:
            shape = "x".join(str(r[f]) for f in ("groups", "m_per_group", "m", "n", "k") if f in r)
            single = next(q for q in records if q["impl"] == "jaxgemm_1gpu" and
                          all(q.get(f) == r.get(f) for f in ("op", "m", "n", "k", "groups")))
            print(f"{r['impl'] + ' ' + shape:>44} {single['tflops_per_gpu']:8.0f} "
                  f"{r['tflops_per_gpu']:8.0f} {r['vs_1gpu']:6.2f} {r['vs_shard_alone']:15.2f}")
    print(f"wrote {path}")
    return records


if __name__ == "__main__":
    main()

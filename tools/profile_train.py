"""Where a training step's GPU time goes: kernel time per kernel name.

Runs benchmarks/bench_train.py's step (one dense + one MoE block) for each
dtype, traces a few steps with the JAX profiler and prints, per step, the
kernels' total time grouped by name (and by the HLO op XLA attributes them
to), largest first, plus the share that jaxgemm's own kernels take.

    python tools/profile_train.py [--dtypes fp8 bf16] [--steps 3] [--top 40]
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples"))
import bench_train  # noqa: E402
import moe_lm  # noqa: E402
from flax import nnx  # noqa: E402

from jaxgemm import _timing  # noqa: E402

_OURS = ("gemm", "k_grouped_pack")


def profile(dtype: str, steps: int, top: int, cfg) -> None:
    corpus = moe_lm.SyntheticCorpus(cfg.vocab, cfg.seq_len, seed=0)
    graphdef, params = nnx.split(moe_lm.build(cfg, dtype, seed=0))
    tx = moe_lm.make_optimizer(cfg, steps + 4)
    opt_state = tx.init(params)
    step_fn = moe_lm.make_train_step(graphdef, tx, cfg)
    batch = jax.device_put(corpus.batch(0, cfg.batch))
    for _ in range(3):
        params, opt_state, m = step_fn(params, opt_state, batch)
    jax.block_until_ready((params, m))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(steps):
                params, opt_state, m = step_fn(params, opt_state, batch)
            jax.block_until_ready((params, m))
        ev = [(e[1], e[2], e[4]) for e in _timing._gpu_kernel_events(d)]
    total = sum(e[0] for e in ev) / steps / 1e3
    by_name = collections.defaultdict(lambda: [0.0, 0, set()])
    for dur, name, op in ev:
        key = name[:90]
        by_name[key][0] += dur / steps / 1e3
        by_name[key][1] += 1
        if op:
            by_name[key][2].add(op[:40])
    ours = sum(v[0] for k, v in by_name.items() if any(t in k for t in _OURS))
    print(f"\n== {dtype}: {total:.0f} us of kernels per step ({len(ev) / steps:.0f} kernels); "
          f"jaxgemm kernels {ours:.0f} us ({100 * ours / max(total, 1e-9):.0f}%)")
    rows = sorted(by_name.items(), key=lambda kv: -kv[1][0])
    for name, (us, n, ops) in rows[:top]:
        print(f"{us:9.1f} us {100 * us / total:5.1f}%  x{n / steps:4.0f}  {name}  "
              f"[{', '.join(sorted(ops)[:3])}]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", nargs="*", default=["fp8", "bf16"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    cfg = bench_train.layer_config(args.quick, None, None)
    for dt in args.dtypes:
        profile(dt, args.steps, args.top, cfg)


if __name__ == "__main__":
    main()

"""One training step (forward + backward + AdamW) of the MoE example's largest
layer config: one dense block and one MoE block (attention + SwiGLU MLP each),
FP8 (jaxgemm, DeepSeek-V3 recipe in forward, dgrad and wgrad) against the
same model and init on XLA BF16 matmuls.

Timing: wall time of the jitted step (``block_until_ready`` after each),
median over ``--steps`` steps after ``--warmup`` steps (compilation
excluded).  Prints a table and writes JSON (op ``train_step``) to
benchmarks/results/ or $JAXGEMM_RESULTS_DIR.

    python benchmarks/bench_train.py            # H100: the "large" layer config
    python benchmarks/bench_train.py --quick    # CPU smoke test (tiny shapes)
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "examples"))
import common  # noqa: E402
import moe_lm  # noqa: E402
from flax import nnx  # noqa: E402

IMPLS = {"jaxgemm": "fp8", "xla_bf16": "bf16"}


def layer_config(quick: bool, batch: int | None, seq_len: int | None) -> moe_lm.Config:
    """The example's largest config cut to one dense block + one MoE block."""
    base = moe_lm.CONFIGS["tiny" if quick else "large"]
    over = {"n_layers": 2, "n_dense_layers": 1}
    if batch:
        over["batch"] = batch
    if seq_len:
        over["seq_len"] = seq_len
    return dataclasses.replace(base, **over)


def step_flops(cfg: moe_lm.Config) -> float:
    """Matmul FLOPs of one training step (3x the forward's; causal attention
    counted in full, as XLA computes it)."""
    t, d = cfg.tokens_per_step, cfg.d_model
    attn = 2 * t * 4 * d * d + 2 * 2 * cfg.batch * cfg.seq_len * cfg.seq_len * d
    dense_mlp = 2 * t * 3 * d * cfg.d_ff
    moe = 2 * t * cfg.top_k * 3 * d * cfg.d_expert + 2 * t * d * cfg.n_experts
    head = 2 * t * d * cfg.vocab
    fwd = 2 * attn + dense_mlp + moe + head  # two blocks' attention
    return 3.0 * fwd


def time_step(cfg: moe_lm.Config, dtype: str, steps: int, warmup: int) -> dict:
    corpus = moe_lm.SyntheticCorpus(cfg.vocab, cfg.seq_len, seed=0)
    graphdef, params = nnx.split(moe_lm.build(cfg, dtype, seed=0))
    tx = moe_lm.make_optimizer(cfg, warmup + steps)
    opt_state = tx.init(params)
    step_fn = moe_lm.make_train_step(graphdef, tx, cfg)
    batches = [jax.device_put(corpus.batch(i, cfg.batch)) for i in range(2)]
    t0 = time.perf_counter()
    params, opt_state, m = step_fn(params, opt_state, batches[0])
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    for i in range(warmup):
        params, opt_state, m = step_fn(params, opt_state, batches[i % 2])
    jax.block_until_ready((params, m))
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        params, opt_state, m = step_fn(params, opt_state, batches[i % 2])
        jax.block_until_ready((params, m))
        times.append(time.perf_counter() - t0)
    return {"us": statistics.median(times) * 1e6, "compile_s": compile_s,
            "loss": float(m["loss"]), "min_us": min(times) * 1e6}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes (CPU smoke test)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20; 3 quick)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--impl", choices=sorted(IMPLS), nargs="*", default=sorted(IMPLS))
    ap.add_argument("--no-save", action="store_true", help="print only")
    args = ap.parse_args(argv)
    steps = args.steps or (3 if args.quick else 20)
    cfg = layer_config(args.quick, args.batch, args.seq_len)
    flops = step_flops(cfg)
    shape = {"m": cfg.tokens_per_step, "k": cfg.d_model, "n": cfg.d_expert,
             "groups": cfg.n_experts, "top_k": cfg.top_k, "batch": cfg.batch,
             "seq_len": cfg.seq_len, "d_ff": cfg.d_ff, "n_heads": cfg.n_heads,
             "vocab": cfg.vocab, "layers": "1 dense + 1 moe"}
    print(f"train step: {cfg.batch}x{cfg.seq_len} tokens, d_model {cfg.d_model}, "
          f"dense d_ff {cfg.d_ff}, {cfg.n_experts} experts x d_ff {cfg.d_expert} "
          f"top-{cfg.top_k}; {flops / 1e12:.2f} TFLOP/step on "
          f"{jax.devices()[0].device_kind}", flush=True)
    records = []
    for impl in args.impl:
        r = time_step(cfg, IMPLS[impl], steps, args.warmup)
        records.append({"op": "train_step", "impl": impl, **shape, "us": r["us"],
                        "tflops": flops / (r["us"] * 1e-6) / 1e12, "gbps": None,
                        "min_us": r["min_us"], "compile_s": r["compile_s"],
                        "loss": r["loss"], "timing": "wall, median"})
    by = {r["impl"]: r for r in records}
    if "jaxgemm" in by and "xla_bf16" in by:
        by["jaxgemm"]["speedup_vs_xla_bf16"] = by["xla_bf16"]["us"] / by["jaxgemm"]["us"]
    rows = [dict(r, ms=r["us"] / 1e3) for r in records]
    common.print_table(rows, [("impl", "impl", ""), ("ms", "ms/step", "{:.3f}"),
                                 ("tflops", "TFLOPS", "{:.1f}"),
                                 ("speedup_vs_xla_bf16", "speedup", "{:.2f}x"),
                                 ("compile_s", "compile s", "{:.1f}"),
                                 ("loss", "loss", "{:.4f}")])
    if not args.no_save:
        path = common.write_results("bench_train", records,
                                    extra={"quick": args.quick, "steps": steps,
                                           "warmup": args.warmup,
                                           "step_tflop": flops / 1e12})
        print(f"wrote {path}")
    return records


if __name__ == "__main__":
    main()

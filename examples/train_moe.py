#!/usr/bin/env python
"""Train a small decoder-only MoE LM with jaxgemm's FP8 training recipe (or BF16).

    python examples/train_moe.py --config tiny --dtype fp8 --steps 20        # CPU
    python examples/train_moe.py --config large --dtype fp8 --steps 300 \\
        --out benchmarks/results/train_moe_fp8.json                          # H100
    python examples/train_moe.py --config large --dtype bf16 --steps 300 \\
        --out benchmarks/results/train_moe_bf16.json
    python examples/train_moe.py --steps 0 --plot loss.png \\
        --compare benchmarks/results/train_moe_fp8.json benchmarks/results/train_moe_bf16.json

The model (``examples/moe_lm.py``): token + position embeddings, pre-norm
blocks with causal attention (FP8 q/k/v/o projections), a dense SwiGLU block
first and top-k routed SwiGLU MoE blocks after (``jaxgemm.flax.Fp8MoE``),
AdamW (optax) under ``jax.jit``, on a deterministic synthetic corpus (a latent
topic per sequence, sparse bigram tables and a copy-from-two-back rule).
``--dtype fp8`` runs every projection / MLP / expert GEMM in FP8 (forward,
dgrad and wgrad; ``jaxgemm.Recipe()``), ``--dtype bf16`` the same model and
init on XLA BF16 matmuls.  ``--out`` writes the losses and step times as
JSON; ``--plot`` a PNG of the loss curve(s).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import moe_lm  # noqa: E402

try:  # optional progress bar
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - depends on the environment
    tqdm = None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=sorted(moe_lm.CONFIGS), default="tiny")
    p.add_argument("--dtype", choices=["fp8", "bf16"], default="fp8")
    p.add_argument("--steps", type=int, default=50,
                   help="training steps (0: no training, e.g. to only --plot)")
    p.add_argument("--seed", type=int, default=0, help="init and data seed")
    p.add_argument("--batch", type=int, default=None, help="override the config's batch")
    p.add_argument("--seq-len", type=int, default=None, help="override the config's seq_len")
    p.add_argument("--lr", type=float, default=None, help="override the config's peak lr")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--out", type=Path, default=None, help="write losses/step times (JSON)")
    p.add_argument("--plot", type=Path, default=None, help="write the loss curve(s) (PNG)")
    p.add_argument("--compare", type=Path, nargs="*", default=[],
                   help="more run JSONs to draw on the --plot (e.g. fp8 and bf16)")
    p.add_argument("--quiet", action="store_true", help="no progress bar / log lines")
    return p.parse_args(argv)


def _config(args) -> moe_lm.Config:
    cfg = moe_lm.CONFIGS[args.config]
    over = {k: v for k, v in (("batch", args.batch), ("seq_len", args.seq_len),
                              ("lr", args.lr)) if v is not None}
    return dataclasses.replace(cfg, **over)


def train(cfg: moe_lm.Config, dtype: str, steps: int, *, seed: int = 0,
          log_every: int = 10, quiet: bool = False) -> dict:
    """Train ``steps`` steps; return the run record (losses, step times, ...)."""
    corpus = moe_lm.SyntheticCorpus(cfg.vocab, cfg.seq_len, seed=seed)
    model = moe_lm.build(cfg, dtype, seed)
    graphdef, params = nnx.split(model)
    del model
    tx = moe_lm.make_optimizer(cfg, steps)
    opt_state = tx.init(params)
    step_fn = moe_lm.make_train_step(graphdef, tx, cfg)
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))

    losses, auxes, times = [], [], []
    bar = tqdm(total=steps, desc=f"{dtype} {cfg.d_model}d", disable=quiet) if tqdm else None
    if bar is None and not quiet:
        print(f"training {dtype}: {n_params / 1e6:.2f}M params, "
              f"{cfg.tokens_per_step} tokens/step, {steps} steps on "
              f"{jax.devices()[0].device_kind}", flush=True)
    for step in range(steps):
        tokens = corpus.batch(step, cfg.batch)
        t0 = time.perf_counter()
        params, opt_state, metrics = step_fn(params, opt_state, tokens)
        loss = float(metrics["loss"])  # waits for the step
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        auxes.append(float(metrics["aux"]))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", aux=f"{auxes[-1]:.3f}")
        elif not quiet and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {loss:.4f}  aux {auxes[-1]:.3f}  "
                  f"{times[-1] * 1e3:8.1f} ms", flush=True)
        if not np.isfinite(loss):
            break
    if bar is not None:
        bar.close()
    steady = times[1:] or times
    tail = losses[-min(10, len(losses)):] if losses else []
    return {
        "config": dataclasses.asdict(cfg),
        "dtype": dtype,
        "seed": seed,
        "steps": len(losses),
        "n_params": n_params,
        "tokens_per_step": cfg.tokens_per_step,
        "losses": losses,
        "aux_losses": auxes,
        "step_times_s": times,
        "median_step_s": statistics.median(steady) if steady else None,
        "final_loss": float(np.mean(tail)) if tail else None,
        "entropy_bound": corpus.entropy_bound(batch=8, steps=1),
        "jax": jax.__version__,
        "device": jax.devices()[0].device_kind,
    }


def plot(path: Path, runs: list[dict]) -> None:
    """Loss curves (and an EMA-smoothed overlay) of ``runs`` into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for run in runs:
        y = np.asarray(run["losses"], np.float64)
        if y.size == 0:
            continue
        ema, s = [], y[0]
        for v in y:
            s = 0.9 * s + 0.1 * v
            ema.append(s)
        label = f"{run['dtype']} (final {run.get('final_loss', float('nan')):.4f})"
        line, = ax.plot(y, alpha=0.3)
        ax.plot(ema, color=line.get_color(), label=label)
    bound = next((r.get("entropy_bound") for r in runs if r.get("entropy_bound")), None)
    if bound:
        ax.axhline(bound, color="gray", ls="--", lw=1, label=f"entropy bound {bound:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    cfg = runs[0].get("config", {}) if runs else {}
    ax.set_title(f"MoE LM d_model={cfg.get('d_model')} experts={cfg.get('n_experts')} "
                 f"on {runs[0].get('device') if runs else ''}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict | None:
    """Command-line entry point; returns the run record (None with ``--steps 0``)."""
    args = parse_args(argv)
    cfg = _config(args)
    run = None
    if args.steps > 0:
        run = train(cfg, args.dtype, args.steps, seed=args.seed,
                    log_every=args.log_every, quiet=args.quiet)
        if not args.quiet:
            print(f"{args.dtype}: final loss {run['final_loss']:.4f} (entropy bound "
                  f"{run['entropy_bound']:.4f}), median step "
                  f"{run['median_step_s'] * 1e3:.1f} ms", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(run, indent=1))
    if args.plot:
        runs = ([run] if run else []) + [json.loads(p.read_text()) for p in args.compare]
        plot(args.plot, runs)
    return run


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Expert-parallel FP8 MoE training on a (data, model) device mesh.

    python examples/sharded_moe.py --cpu-devices 8 --steps 8          # 8 simulated CPU devices
    python examples/sharded_moe.py --mesh 2x4 --steps 100             # 8 GPUs, one host
    python examples/sharded_moe.py --distributed --mesh 4x8 ...       # 32 GPUs, 4 hosts
                                                                      # (one process per host)

A small token model: embedding -> a dense SwiGLU block -> a top-k routed SwiGLU
mixture of experts -> a linear head, trained with AdamW on a synthetic bigram
corpus (the loss floor is printed).  Both layers run their GEMMs on jaxgemm's
FP8 training ops, forward and backward:

* **dense block** (``jaxgemm.fp8_linear``): plain ``jax.jit`` with
  ``NamedSharding``.  Tokens are split over ``data`` (data parallel); the
  gate/up kernels ``[D, F]`` are split over ``model`` on F (column tensor
  parallel) and the down kernel ``[F, D]`` on F (row tensor parallel).
  jaxgemm's partitioning rules keep every weight where it is: the row-parallel
  GEMM sums its partial products with an all-reduce, and no weight is ever
  gathered (see ``docs/sharding.md``).
* **MoE block** (``jaxgemm.fp8_ragged_dot``) inside ``jax.shard_map``: the
  ``G`` experts are split over ``model`` (expert parallel, ``G / model``
  experts per device).  Each device takes its slice of the tokens (they are
  replicated over ``model`` after the dense block), routes them (top-k),
  packs every (token, choice) into a fixed-capacity buffer per destination
  device and exchanges the buffers with ``jax.lax.all_to_all``.  Each device
  then sorts the rows it received by local expert, runs its experts with three
  ``fp8_ragged_dot`` calls (the per-device grouped GEMM), sends the rows back
  with a second ``all_to_all``, and combines the top-k outputs; an
  ``all_gather`` over ``model`` restores the replicated layout.  Assignments
  past an expert device's capacity (``--capacity-factor``) are dropped (the
  token keeps its residual), as in Switch/GShard.

``--dense-parallel data`` instead replicates the dense weights (XLA all-reduces
their gradients) and splits the tokens over every device of the mesh, so no
token is processed twice and the only exchanges in the forward pass are the two
``all_to_all``s; the experts stay split over ``model``.  On one host with few
GPUs (``--mesh 1xN``) this is the faster layout: the dense GEMMs are too
small to be worth splitting, and every device keeps its own tokens.

The same code runs on N GPUs of one host (``--mesh DxM``, D*M devices) and on
several hosts: start one process per host with ``--distributed``, which calls
``jax.distributed.initialize()`` (auto-detected on SLURM / Open MPI / TPU, or
pass ``--coordinator host:port --num-processes P --process-id I``).  Every
process builds the same global batch and hands JAX only its addressable
shards (``jax.make_array_from_callback``).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--mesh", default=None,
                   help="DATAxMODEL, e.g. 2x4 (default: 2 x (devices/2), or 1x1)")
    p.add_argument("--cpu-devices", type=int, default=0,
                   help="simulate this many CPU devices (sets XLA_FLAGS before jax starts)")
    p.add_argument("--distributed", action="store_true",
                   help="multi-process run: call jax.distributed.initialize()")
    p.add_argument("--coordinator", default=None, help="host:port of process 0")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--batch", type=int, default=16, help="sequences per step (global)")
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--vocab", type=int, default=128)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-ff", type=int, default=512, help="dense SwiGLU hidden width")
    p.add_argument("--d-expert", type=int, default=128, help="expert hidden width")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--capacity-factor", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dense-parallel", choices=["tensor", "data"], default="tensor",
                   help="tensor: dense weights split over 'model', tokens over 'data'; "
                        "data: dense weights replicated, tokens split over every device "
                        "(experts still split over 'model')")
    p.add_argument("--dtype", choices=["fp8", "bf16"], default="fp8",
                   help="fp8: jaxgemm's FP8 training ops; bf16: XLA's bf16 dot / ragged_dot")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", default=None, help="write the losses etc. here (JSON)")
    p.add_argument("--dump-hlo", default=None,
                   help="write the compiled (partitioned) HLO of the train step here")
    return p.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class Config:
    vocab: int
    d_model: int
    d_ff: int
    d_expert: int
    experts: int
    top_k: int
    capacity_factor: float
    dtype: str = "fp8"
    aux_coef: float = 1e-2
    dense_parallel: str = "tensor"


# --------------------------------------------------------------------- data


class BigramCorpus:
    """Tokens from a fixed random sparse bigram chain (4 successors per token)."""

    def __init__(self, vocab: int, seed: int, branching: int = 4):
        import numpy as np

        rng = np.random.default_rng([seed, 7])
        self.vocab = vocab
        self.succ = rng.integers(0, vocab, size=(vocab, branching))
        self.prob = rng.dirichlet(np.full(branching, 1.0), size=vocab)
        self.cum = np.cumsum(self.prob, axis=-1)

    def batch(self, step: int, batch: int, seq_len: int):
        """int32 ``[batch, seq_len + 1]``: a pure function of (seed, step)."""
        import numpy as np

        rng = np.random.default_rng([step, 11])
        toks = np.zeros((batch, seq_len + 1), np.int64)
        toks[:, 0] = rng.integers(0, self.vocab, size=batch)
        u = rng.random((batch, seq_len + 1))
        for t in range(1, seq_len + 1):
            j = (u[:, t, None] > self.cum[toks[:, t - 1]]).sum(-1)
            toks[:, t] = self.succ[toks[:, t - 1], np.minimum(j, self.succ.shape[1] - 1)]
        return toks.astype(np.int32)

    def entropy(self) -> float:
        """Mean next-token entropy under the chain's stationary-ish mix (a loss floor)."""
        import numpy as np

        p = self.prob
        return float(np.mean(-(p * np.log(p)).sum(-1)))


# --------------------------------------------------------------------- model


def init_params(cfg: Config, key):
    import jax
    import jax.numpy as jnp

    ks = jax.random.split(key, 8)
    d, f, fe, g, v = cfg.d_model, cfg.d_ff, cfg.d_expert, cfg.experts, cfg.vocab

    def normal(k, shape, fan_in):
        return jax.random.normal(k, shape, jnp.float32) / math.sqrt(fan_in)

    return {
        "embed": normal(ks[0], (v, d), 1.0) * 0.5,
        "w_gate": normal(ks[1], (d, f), d), "w_up": normal(ks[2], (d, f), d),
        "w_down": normal(ks[3], (f, d), f),
        "router": normal(ks[4], (d, g), d),
        "e_gate": normal(ks[5], (g, d, fe), d), "e_up": normal(ks[6], (g, d, fe), d),
        "e_down": normal(ks[7], (g, fe, d), fe),
        "head": jnp.zeros((d, v), jnp.float32),
    }


def param_specs(dense_parallel: str = "tensor"):
    """PartitionSpecs of the params on the ("data", "model") mesh."""
    from jax.sharding import PartitionSpec as P

    if dense_parallel == "tensor":
        dense = {"w_gate": P(None, "model"), "w_up": P(None, "model"),   # column parallel
                 "w_down": P("model", None)}                             # row parallel
    else:   # replicated: XLA all-reduces their gradients
        dense = {"w_gate": P(), "w_up": P(), "w_down": P()}
    return {
        "embed": P(), "router": P(), "head": P(), **dense,
        "e_gate": P("model"), "e_up": P("model"), "e_down": P("model"),  # expert parallel
    }


def token_spec(dense_parallel: str = "tensor"):
    """How the token axis is split: over ``data`` (tensor-parallel dense layers
    see every token of their data shard), or over every device."""
    from jax.sharding import PartitionSpec as P

    return P("data") if dense_parallel == "tensor" else P(("data", "model"))


def rms_norm(x):
    import jax.numpy as jnp

    return x * jnp.reciprocal(jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6))


def linear(x, w, dtype):
    """``x @ w`` on jaxgemm's FP8 op, or XLA's bf16 dot (the baseline)."""
    import jax.numpy as jnp

    import jaxgemm as jg

    if dtype == "fp8":
        return jg.fp8_linear(x, w)
    return jnp.dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)).astype(x.dtype)


def ragged(x, w, group_sizes, dtype):
    """``ragged_dot`` on jaxgemm's FP8 op, or XLA's bf16 ``jax.lax.ragged_dot``."""
    import jax
    import jax.numpy as jnp

    import jaxgemm as jg

    if dtype == "fp8":
        return jg.fp8_ragged_dot(x, w, group_sizes)
    return jax.lax.ragged_dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                              group_sizes).astype(x.dtype)


def dense_block(p, x, dtype="fp8"):
    """SwiGLU on ``fp8_linear``; x ``[T, D]`` (tokens split over ``data``)."""
    import jax

    h = jax.nn.silu(linear(x, p["w_gate"], dtype)) * linear(x, p["w_up"], dtype)
    return linear(h, p["w_down"], dtype)


def moe_block(p, x, cfg: Config, mesh):
    """Expert-parallel top-k SwiGLU MoE; x ``[T, D]`` split as ``token_spec``.

    Returns ``(y [T, D], aux_loss)``.  See the module docstring for the steps.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    n_model = mesh.shape["model"]
    k = cfg.top_k
    axes = tuple(mesh.axis_names)

    def exchange(rows):
        """all_to_all over ``model`` with the rows as bf16 on the wire (half the
        bytes; both paths feed bf16 or FP8 GEMMs).  Only the exchange is bf16:
        the gathers and scatters around it stay float32, because their
        transposes are scatter-adds, which XLA runs far slower on bf16."""
        out = jax.lax.all_to_all(rows.astype(jnp.bfloat16), "model", 0, 0)
        return out.astype(rows.dtype)

    def local(x, router, e_gate, e_up, e_down):
        t_loc, d = x.shape
        g_loc = e_gate.shape[0]                      # experts on this device
        g = g_loc * n_model
        if split_tokens:                             # replicated over "model": slice
            ts = t_loc // n_model
            me = jax.lax.axis_index("model")
            xs = jax.lax.dynamic_slice_in_dim(x, me * ts, ts)
        else:                                        # already this device's tokens
            ts, xs = t_loc, x
        # 1. route (float32 router, softmax, top-k, renormalised weights)
        probs = jax.nn.softmax(xs.astype(jnp.float32) @ router, axis=-1)   # [ts, G]
        top_p, experts = jax.lax.top_k(probs, k)
        weights = top_p / jnp.sum(top_p, axis=-1, keepdims=True)
        flat_e = experts.reshape(-1)                                        # [ts*k]
        dest = flat_e // g_loc                       # device that owns the expert
        lid = (flat_e % g_loc).astype(jnp.int32)     # its index there
        # 2. pack into [n_model, C] slots per destination (fixed capacity)
        cap = max(1, math.ceil(cfg.capacity_factor * ts * k / n_model))
        onehot = jax.nn.one_hot(dest, n_model, dtype=jnp.int32)
        pos = jnp.take_along_axis(jnp.cumsum(onehot, axis=0) - 1, dest[:, None], axis=1)[:, 0]
        keep = pos < cap
        slot = jnp.where(keep, dest * cap + pos, n_model * cap)   # out of range = dropped
        rows_in = jnp.repeat(xs, k, axis=0)                         # row of each assignment
        send = jnp.zeros((n_model * cap, d), x.dtype).at[slot].set(rows_in, mode="drop")
        send_id = jnp.full((n_model * cap,), g_loc, jnp.int32).at[slot].set(lid, mode="drop")
        # 3. dispatch: slot block i goes to device i of the "model" axis
        recv = exchange(send.reshape(n_model, cap, d))
        recv_id = jax.lax.all_to_all(send_id.reshape(n_model, cap), "model", 0, 0)
        # 4. group the received rows by local expert (empty slots, id g_loc, last)
        ids = recv_id.reshape(-1)
        order = jnp.argsort(ids, stable=True)
        group_sizes = jnp.bincount(ids, length=g_loc + 1)[:g_loc].astype(jnp.int32)
        xr = jnp.take(recv.reshape(-1, d), order, axis=0)
        h = (jax.nn.silu(ragged(xr, e_gate, group_sizes, cfg.dtype))
             * ragged(xr, e_up, group_sizes, cfg.dtype))
        yr = ragged(h, e_down, group_sizes, cfg.dtype)       # rows past the groups: 0
        yr = jnp.take(yr, jnp.argsort(order), axis=0)
        # 5. return the rows to their source device and combine the top-k choices
        back = exchange(yr.reshape(n_model, cap, d)).reshape(-1, d)
        yk = jnp.take(back, jnp.minimum(slot, n_model * cap - 1), axis=0)
        w = (weights.reshape(-1) * keep).astype(yk.dtype)
        ys = jnp.sum((yk * w[:, None]).reshape(ts, k, d), axis=1)
        if split_tokens:                                             # back to [t_loc, D]
            ys = jax.lax.all_gather(ys, "model", axis=0, tiled=True)
        # 6. Switch load-balancing loss over all tokens of all devices
        counts = jax.lax.psum(jnp.bincount(flat_e, length=g), axes)
        frac = counts.astype(jnp.float32) / jnp.maximum(jnp.sum(counts), 1)
        mean_p = jax.lax.pmean(jnp.mean(probs, axis=0), axes)
        aux = g * jnp.sum(jax.lax.stop_gradient(frac) * mean_p)
        return ys, aux

    split_tokens = cfg.dense_parallel == "tensor"
    tok = token_spec(cfg.dense_parallel)
    fn = jax.shard_map(
        local, mesh=mesh,
        in_specs=(tok, P(), P("model"), P("model"), P("model")),
        out_specs=(tok, P()), check_vma=False)
    return fn(x, p["router"], p["e_gate"], p["e_up"], p["e_down"])


def forward(p, tokens, cfg: Config, mesh):
    """``tokens [B, S]`` -> ``(logits [B*S, V], aux)``."""
    import jax.numpy as jnp

    x = jnp.take(p["embed"], tokens.reshape(-1), axis=0)      # [T, D] float32
    x = x + dense_block(p, rms_norm(x), cfg.dtype)
    m, aux = moe_block(p, rms_norm(x), cfg, mesh)
    x = x + m
    return rms_norm(x) @ p["head"], aux


def make_train_step(cfg: Config, mesh, tx, opt_shardings):
    import jax
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    def loss_fn(p, tokens):
        logits, aux = forward(p, tokens[:, :-1], cfg, mesh)
        ce = optax.softmax_cross_entropy_with_integer_labels(
            logits, tokens[:, 1:].reshape(-1)).mean()
        return ce + cfg.aux_coef * aux, (ce, aux)

    def step(p, opt_state, tokens):
        (_, (ce, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, tokens)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, {"loss": ce, "aux": aux}

    p_sh = {k: NamedSharding(mesh, s) for k, s in param_specs(cfg.dense_parallel).items()}
    batch_sh = NamedSharding(mesh, token_spec(cfg.dense_parallel))
    return jax.jit(step, in_shardings=(p_sh, opt_shardings, batch_sh),
                   out_shardings=(p_sh, opt_shardings, None), donate_argnums=(0, 1))


# --------------------------------------------------------------------- driver


def make_mesh(spec: str | None):
    import jax

    n = jax.device_count()
    if spec:
        d, m = (int(v) for v in spec.lower().split("x"))
    else:
        d = 2 if n % 2 == 0 and n > 1 else 1
        m = n // d
    if d * m != n:
        raise SystemExit(f"--mesh {d}x{m} needs {d * m} devices; JAX sees {n}")
    auto = (jax.sharding.AxisType.Auto,) * 2
    return jax.make_mesh((d, m), ("data", "model"), axis_types=auto)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.cpu_devices:
        os.environ["JAX_PLATFORMS"] = os.environ.get("JAX_PLATFORMS", "cpu")
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.cpu_devices}").strip()
    import jax

    if args.distributed:
        kw = {k: v for k, v in (("coordinator_address", args.coordinator),
                                ("num_processes", args.num_processes),
                                ("process_id", args.process_id)) if v is not None}
        jax.distributed.initialize(**kw)
    import numpy as np
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = make_mesh(args.mesh)
    cfg = Config(args.vocab, args.d_model, args.d_ff, args.d_expert, args.experts,
                 args.top_k, args.capacity_factor, args.dtype,
                 dense_parallel=args.dense_parallel)
    n_model = mesh.shape["model"]
    tokens_per_step = args.batch * args.seq_len
    if cfg.experts % n_model:
        raise SystemExit(f"--experts {cfg.experts} must be a multiple of the model axis "
                         f"({n_model})")
    if tokens_per_step % (mesh.shape["data"] * n_model):
        raise SystemExit("batch * seq_len must split evenly over the devices")
    if args.dense_parallel == "data" and args.batch % (mesh.shape["data"] * n_model):
        raise SystemExit("--dense-parallel data splits the batch over every device: "
                         f"--batch {args.batch} must be a multiple of {mesh.size}")

    corpus = BigramCorpus(cfg.vocab, args.seed)
    p_sh = {k: NamedSharding(mesh, s) for k, s in param_specs(cfg.dense_parallel).items()}
    params = jax.jit(lambda key: init_params(cfg, key), out_shardings=p_sh)(
        jax.random.key(args.seed))
    tx = optax.adamw(optax.warmup_cosine_decay_schedule(
        args.lr * 0.1, args.lr, min(3, args.steps), max(args.steps, 4),
        end_value=args.lr * 0.1), b1=0.9, b2=0.95, weight_decay=0.0)
    # Optimizer moments sharded like their params (else XLA may replicate them).
    opt_sh = optax.tree_map_params(
        tx, lambda _, sh: sh, jax.eval_shape(tx.init, params), p_sh,
        transform_non_params=lambda _: NamedSharding(mesh, P()))
    opt_state = jax.jit(tx.init, out_shardings=opt_sh)(params)
    step_fn = make_train_step(cfg, mesh, tx, opt_sh)
    batch_sh = NamedSharding(mesh, token_spec(cfg.dense_parallel))

    def global_batch(step):
        toks = corpus.batch(step, args.batch, args.seq_len)
        return jax.make_array_from_callback(toks.shape, batch_sh, lambda idx: toks[idx])

    if args.dump_hlo:
        compiled = step_fn.lower(params, opt_state, global_batch(0)).compile()
        with open(args.dump_hlo, "w") as fh:
            fh.write(compiled.as_text())
    log = (lambda *a, **k: None) if args.quiet or jax.process_index() else print
    log(f"mesh {dict(mesh.shape)} on {jax.device_count()} {jax.devices()[0].platform} "
        f"devices ({jax.process_count()} process(es)); {cfg.experts} experts, "
        f"{cfg.experts // n_model} per device; {tokens_per_step} tokens/step; "
        f"loss floor ~{corpus.entropy():.3f}", flush=True)
    losses, auxes, times = [], [], []
    for step in range(args.steps):
        batch = global_batch(step)
        t0 = time.perf_counter()
        params, opt_state, metrics = step_fn(params, opt_state, batch)
        loss = float(metrics["loss"])
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        auxes.append(float(metrics["aux"]))
        log(f"step {step:4d}  loss {loss:.4f}  aux {auxes[-1]:.3f}  "
            f"{times[-1] * 1e3:8.1f} ms", flush=True)
    shardings = {k: str(v.sharding.spec) for k, v in params.items()}
    timed = times[min(3, len(times) - 1):]  # first steps compile and warm up
    run = {"losses": losses, "aux_losses": auxes, "step_times_s": times,
           "median_step_s": float(np.median(timed)) if timed else None,
           "dtype": args.dtype, "tokens_per_step": tokens_per_step,
           "config": dataclasses.asdict(cfg),
           "mesh": dict(mesh.shape), "param_shardings": shardings,
           "devices": jax.device_count(), "entropy": corpus.entropy(),
           "finite": bool(np.all(np.isfinite(losses)))}
    if args.json and jax.process_index() == 0:
        import json

        with open(args.json, "w") as fh:
            json.dump(run, fh)
    return run


if __name__ == "__main__":
    out = main()
    sys.exit(0 if out["finite"] else 1)

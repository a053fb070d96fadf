"""A small decoder-only MoE language model on jaxgemm's FP8 layers (flax nnx).

Shared by ``examples/train_moe.py`` (training) and ``benchmarks/bench_train.py``
(one training step of the largest layer config).

Architecture (DeepSeek-style, scaled down): token + learned position
embeddings; ``n_layers`` pre-norm blocks (RMSNorm, causal multi-head attention
with ``Fp8Linear`` q/k/v/o projections, then a SwiGLU MLP); the first
``n_dense_layers`` blocks have a dense SwiGLU MLP (``Fp8Linear``), the others
an ``Fp8MoE`` (top-k routed SwiGLU experts on ``fp8_ragged_dot``); final
RMSNorm and a BF16 output head.  The residual stream is float32, the sublayers
compute in bfloat16; with ``dtype="fp8"`` every projection, MLP and expert
GEMM runs in FP8 (the DeepSeek-V3 recipe, forward and backward), with
``dtype="bf16"`` the same model runs on XLA BF16 matmuls (``recipe=None``).
Attention scores, embeddings and the output head stay in BF16/FP32 in both.

Also here: a deterministic synthetic corpus with learnable structure
(:class:`SyntheticCorpus`) and the jitted functional training step
(:func:`make_train_step`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgemm.flax import Fp8Linear, Fp8MoE
from jaxgemm.training import Recipe

COMPUTE_DTYPE = jnp.bfloat16


@dataclasses.dataclass(frozen=True)
class Config:
    """Model and training hyper-parameters."""

    vocab: int
    d_model: int
    n_heads: int
    n_layers: int
    n_dense_layers: int
    d_ff: int          # hidden width of the dense SwiGLU MLP
    d_expert: int      # hidden width of each expert
    n_experts: int
    top_k: int
    seq_len: int
    batch: int
    lr: float
    warmup: int
    aux_coef: float = 1e-2
    weight_decay: float = 0.1

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq_len


CONFIGS = {
    # CPU tests: a few seconds per step on the reference path.
    "tiny": Config(vocab=64, d_model=64, n_heads=2, n_layers=2, n_dense_layers=1,
                   d_ff=128, d_expert=64, n_experts=4, top_k=2, seq_len=32,
                   batch=4, lr=1e-2, warmup=2),
    # A quick GPU run (or a slow CPU one).
    "small": Config(vocab=256, d_model=256, n_heads=4, n_layers=4, n_dense_layers=1,
                    d_ff=768, d_expert=256, n_experts=8, top_k=2, seq_len=256,
                    batch=16, lr=2e-3, warmup=30),
    # The H100 benchmark config (DeepSeek-V2-Lite-like widths, 16 experts).
    "large": Config(vocab=512, d_model=2048, n_heads=16, n_layers=4, n_dense_layers=1,
                    d_ff=5632, d_expert=1408, n_experts=16, top_k=2, seq_len=2048,
                    batch=4, lr=3e-4, warmup=50),
}


def recipe_for(dtype: str):
    """``"fp8"`` -> the default FP8 :class:`~jaxgemm.Recipe`; ``"bf16"`` -> None (XLA)."""
    if dtype == "fp8":
        return Recipe()
    if dtype == "bf16":
        return None
    raise ValueError(f"dtype must be 'fp8' or 'bf16'; got {dtype!r}")


# ------------------------------------------------------------------- model


def _linear(d_in, d_out, recipe, rngs):
    return Fp8Linear(d_in, d_out, use_bias=False, dtype=COMPUTE_DTYPE, recipe=recipe,
                     rngs=rngs)


class Attention(nnx.Module):
    """Causal multi-head self-attention; the projections are ``Fp8Linear``."""

    def __init__(self, cfg: Config, recipe, rngs: nnx.Rngs):
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.qkv = _linear(d, 3 * d, recipe, rngs)
        self.out = _linear(d, d, recipe, rngs)

    def __call__(self, x):
        b, t, d = x.shape
        h = self.n_heads
        q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3, h, d // h), 3, axis=2)
        q, k, v = (a[:, :, 0] for a in (q, k, v))  # [b, t, h, dh]
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k,
                       preferred_element_type=jnp.float32) * (d // h) ** -0.5
        causal = jnp.tril(jnp.ones((t, t), bool))
        p = jax.nn.softmax(jnp.where(causal, s, -1e30), axis=-1).astype(x.dtype)
        o = jnp.einsum("bhqk,bkhd->bqhd", p, v).reshape(b, t, d)
        return self.out(o)


class DenseMLP(nnx.Module):
    """SwiGLU MLP on ``Fp8Linear``; returns ``(y, 0.0)`` like ``Fp8MoE``."""

    def __init__(self, cfg: Config, recipe, rngs: nnx.Rngs):
        self.gate = _linear(cfg.d_model, cfg.d_ff, recipe, rngs)
        self.up = _linear(cfg.d_model, cfg.d_ff, recipe, rngs)
        self.down = _linear(cfg.d_ff, cfg.d_model, recipe, rngs)

    def __call__(self, x):
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x)), jnp.zeros((), jnp.float32)


class Block(nnx.Module):
    """Pre-norm transformer block (attention + dense or MoE SwiGLU MLP)."""

    def __init__(self, cfg: Config, moe: bool, recipe, rngs: nnx.Rngs):
        self.norm1 = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.attn = Attention(cfg, recipe, rngs)
        self.norm2 = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        if moe:
            self.mlp = Fp8MoE(cfg.d_model, cfg.d_expert, cfg.n_experts,
                              num_experts_per_tok=cfg.top_k, recipe=recipe,
                              dtype=COMPUTE_DTYPE, rngs=rngs)
        else:
            self.mlp = DenseMLP(cfg, recipe, rngs)

    def __call__(self, x):
        x = x + self.attn(self.norm1(x).astype(COMPUTE_DTYPE)).astype(jnp.float32)
        m, aux = self.mlp(self.norm2(x).astype(COMPUTE_DTYPE))
        return x + m.astype(jnp.float32), aux


class MoELM(nnx.Module):
    """Decoder-only MoE LM: ``tokens [B, T] -> (logits [B, T, V] f32, aux_loss)``.

    ``aux_loss`` is the mean Switch load-balancing loss of the MoE blocks.
    """

    def __init__(self, cfg: Config, recipe, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab, cfg.d_model, rngs=rngs)
        self.pos = nnx.Embed(cfg.seq_len, cfg.d_model, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, i >= cfg.n_dense_layers, recipe, rngs)
                                for i in range(cfg.n_layers)])
        self.norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.head = nnx.Linear(cfg.d_model, cfg.vocab, use_bias=False,
                               dtype=COMPUTE_DTYPE, rngs=rngs)

    def __call__(self, tokens):
        t = tokens.shape[1]
        x = self.embed(tokens) + self.pos(jnp.arange(t))[None]
        auxes = []
        for blk in self.blocks:
            x, aux = blk(x)
            auxes.append(aux)
        n_moe = max(1, self.cfg.n_layers - self.cfg.n_dense_layers)
        logits = self.head(self.norm(x).astype(COMPUTE_DTYPE)).astype(jnp.float32)
        return logits, sum(auxes) / n_moe


def build(cfg: Config, dtype: str, seed: int = 0) -> MoELM:
    """The model with ``seed``'s init (identical params for fp8 and bf16)."""
    return MoELM(cfg, recipe_for(dtype), nnx.Rngs(seed))


# ------------------------------------------------------------------- training


def make_optimizer(cfg: Config, total_steps: int):
    sched = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, min(cfg.warmup, max(total_steps - 1, 1)), max(total_steps, 2),
        end_value=cfg.lr * 0.1)
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(sched, b1=0.9, b2=0.95, weight_decay=cfg.weight_decay,
                    mask=lambda p: jax.tree.map(lambda a: a.ndim >= 2, p)))


def _norm(tree):
    """Global L2 norm (optax.tree.norm where it exists)."""
    tree_mod = getattr(optax, "tree", None)
    if tree_mod is not None and hasattr(tree_mod, "norm"):
        return tree_mod.norm(tree)
    return optax.global_norm(tree)


def make_train_step(graphdef, tx, cfg: Config):
    """A jitted ``step(params, opt_state, tokens) -> (params, opt_state, metrics)``."""

    def loss_fn(params, tokens):
        model = nnx.merge(graphdef, params)
        logits, aux = model(tokens[:, :-1])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
        return ce + cfg.aux_coef * aux, (ce, aux)

    def step(params, opt_state, tokens):
        (_, (ce, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, tokens)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": ce, "aux": aux, "grad_norm": _norm(grads)}

    return jax.jit(step, donate_argnums=(0, 1))


# ------------------------------------------------------------------- data


class SyntheticCorpus:
    """A deterministic token stream with learnable structure.

    Each sequence draws a latent *topic* (one of ``n_topics``); token ``t`` is,
    with probability ``copy_p``, a copy of token ``t - 2`` (an attention
    pattern to learn), otherwise drawn from the topic's sparse bigram table
    (``branching`` successors per token with Dirichlet-random probabilities).
    The topic must be inferred from the context.  ``batch(step, batch)`` is
    a pure function of ``(seed, step, batch)``; it can also return the
    per-token negative log-likelihood under the true process given the topic,
    whose mean is a lower bound of the achievable loss (:meth:`entropy_bound`).
    """

    def __init__(self, vocab: int, seq_len: int, *, seed: int = 0, n_topics: int = 4,
                 branching: int = 4, copy_p: float = 0.25):
        rng = np.random.default_rng([seed, 12345])
        self.vocab, self.seq_len, self.seed = vocab, seq_len, seed
        self.copy_p = copy_p
        self.succ = rng.integers(0, vocab, size=(n_topics, vocab, branching))
        self.prob = rng.dirichlet(np.full(branching, 0.7), size=(n_topics, vocab))
        self.cum = np.cumsum(self.prob, axis=-1)
        self.n_topics = n_topics

    #: Steps generated together (the generator loops over positions in Python,
    #: so one pass over many sequences is much cheaper than one per step).
    CHUNK = 32

    def batch(self, step: int, batch: int, with_nll: bool = False):
        """``int32 [batch, seq_len + 1]`` tokens (inputs and shifted targets).

        A pure function of ``(seed, step, batch)``; with ``with_nll`` also the
        true process's per-token NLL ``[batch, seq_len - 1]`` (positions >= 2).
        """
        chunk, i = divmod(step, self.CHUNK)
        key = (chunk, batch)
        if getattr(self, "_cache_key", None) != key:
            self._cache = self._generate(chunk, batch * self.CHUNK)
            self._cache_key = key
        toks, nll = self._cache
        rows = slice(i * batch, (i + 1) * batch)
        return (toks[rows], nll[rows]) if with_nll else toks[rows]

    def _generate(self, chunk: int, count: int):
        rng = np.random.default_rng([self.seed, chunk])
        n = self.seq_len + 1
        topic = rng.integers(0, self.n_topics, size=count)
        toks = np.zeros((count, n), np.int64)
        nll = np.zeros((count, n))
        toks[:, :2] = rng.integers(0, self.vocab, size=(count, 2))
        u_copy = rng.random((count, n))
        u_draw = rng.random((count, n))
        for t in range(2, n):
            prev, prev2 = toks[:, t - 1], toks[:, t - 2]
            j = (u_draw[:, t, None] > self.cum[topic, prev]).sum(-1)
            j = np.minimum(j, self.cum.shape[-1] - 1)
            drawn = self.succ[topic, prev, j]
            cur = np.where(u_copy[:, t] < self.copy_p, prev2, drawn)
            toks[:, t] = cur
            # p(cur) = copy_p [cur == prev2] + (1 - copy_p) T_topic[prev -> cur]
            hit = self.succ[topic, prev] == cur[:, None]
            p_bigram = (self.prob[topic, prev] * hit).sum(-1)
            nll[:, t] = -np.log(self.copy_p * (cur == prev2)
                                + (1 - self.copy_p) * p_bigram)
        return toks.astype(np.int32), nll[:, 2:]

    def entropy_bound(self, batch: int = 64, steps: int = 4) -> float:
        """Mean NLL of the true process given the topic (a loss floor), in nats."""
        base = 10 ** 9 * self.CHUNK  # a chunk no training run reaches
        return float(np.mean([self.batch(base + s, batch, True)[1].mean()
                              for s in range(steps)]))

"""``Fp8MoE``: top-k routed SwiGLU experts on :func:`jaxgemm.fp8_ragged_dot`."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgemm.training import Recipe, fp8_ragged_dot

__all__ = ["Fp8MoE", "route_top_k", "load_balancing_loss"]

#: Default expert-weight init: LeCun normal per expert (fan-in = axis -2).
default_expert_init = nnx.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1, batch_axis=(0,))


def route_top_k(logits, k: int):
    """Softmax router with top-k selection and renormalised weights.

    Args:
      logits: ``[T, G]`` router logits (float32 recommended).
      k: experts per token.

    Returns:
      ``(probs [T, G], weights [T, k], experts [T, k] int32)``: the softmax
      probabilities, the top-k probabilities renormalised to sum to 1 per
      token, and the chosen expert ids.
    """
    probs = jax.nn.softmax(logits, axis=-1)
    top_p, top_e = jax.lax.top_k(probs, k)
    weights = top_p / jnp.sum(top_p, axis=-1, keepdims=True)
    return probs, weights, top_e.astype(jnp.int32)


def load_balancing_loss(probs, group_sizes):
    """Switch-Transformer auxiliary load-balancing loss ``G * sum_e f_e * P_e``.

    ``f_e`` is the fraction of the routed (token, slot) assignments that went to
    expert ``e`` (``group_sizes / sum``, no gradient) and ``P_e`` the mean
    router probability of ``e`` over the tokens.  Equals 1 for a perfectly
    uniform router; its gradient pushes probability away from overloaded
    experts.
    """
    g = probs.shape[-1]
    f = group_sizes.astype(jnp.float32) / jnp.maximum(jnp.sum(group_sizes), 1)
    p = jnp.mean(probs.astype(jnp.float32), axis=0)
    return g * jnp.sum(jax.lax.stop_gradient(f) * p)


class Fp8MoE(nnx.Module):
    """A dropless top-k mixture of SwiGLU experts on the FP8 grouped GEMMs.

    ``__call__(x)`` returns ``(y, aux_loss)``:

    1. router: ``nnx.Linear(in_features, num_experts, use_bias=False)`` in
       float32, softmax, top-k, weights renormalised over the k choices;
    2. permutation: the ``T * k`` (token, choice) rows are sorted by expert id
       (stable ``argsort``) into contiguous expert order; ``group_sizes`` is the
       per-expert count (``bincount``); every shape is static;
    3. experts: ``silu(x @ w_gate[e]) * (x @ w_up[e]) @ w_down[e]`` with three
       :func:`jaxgemm.fp8_ragged_dot` calls (``w_gate``, ``w_up``
       ``[G, in_features, hidden_features]``, ``w_down``
       ``[G, hidden_features, in_features]``);
    4. un-permutation (a gather by the inverse permutation) and the weighted
       sum over the k choices;
    5. ``aux_loss``: the Switch load-balancing loss
       (:func:`load_balancing_loss`, 1.0 when balanced), *returned* (not sown)
       so it works unchanged under ``jax.jit``/``lax.scan``; add
       ``coef * aux_loss`` (e.g. 1e-2) to the training loss.

    Args:
      in_features: model width ``d_model``.
      hidden_features: expert hidden width ``d_ff``.
      num_experts: ``G``.
      num_experts_per_tok: ``k`` (default 2).
      recipe: a :class:`jaxgemm.Recipe` (default all FP8), or ``None`` for the
        XLA baseline (``jax.lax.ragged_dot`` in ``dtype``).
      dtype: computation dtype of the experts (default: ``x``'s dtype); the
        router always computes in float32.
      param_dtype: dtype of the params (default float32).
      kernel_init: initializer of the expert weights (``[G, fan_in, fan_out]``).
      router_init: initializer of the router kernel.
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, in_features: int, hidden_features: int, num_experts: int, *,
                 num_experts_per_tok: int = 2, recipe: Recipe | None = Recipe(),
                 dtype=None, param_dtype=jnp.float32,
                 kernel_init=default_expert_init,
                 router_init=nnx.initializers.lecun_normal(), rngs: nnx.Rngs):
        if not 1 <= num_experts_per_tok <= num_experts:
            raise ValueError(f"Fp8MoE: num_experts_per_tok={num_experts_per_tok} must "
                             f"be in [1, num_experts={num_experts}]")
        if recipe is not None and not isinstance(recipe, Recipe):
            raise TypeError(f"Fp8MoE: recipe must be a jaxgemm.Recipe or None; got "
                            f"{type(recipe).__name__}")
        d, f, g = in_features, hidden_features, num_experts
        self.router = nnx.Linear(d, g, use_bias=False, dtype=jnp.float32,
                                 param_dtype=param_dtype, kernel_init=router_init,
                                 rngs=rngs)
        self.w_gate = nnx.Param(kernel_init(rngs.params(), (g, d, f), param_dtype))
        self.w_up = nnx.Param(kernel_init(rngs.params(), (g, d, f), param_dtype))
        self.w_down = nnx.Param(kernel_init(rngs.params(), (g, f, d), param_dtype))
        self.in_features = d
        self.hidden_features = f
        self.num_experts = g
        self.num_experts_per_tok = num_experts_per_tok
        self.recipe = recipe
        self.dtype = dtype
        self.param_dtype = param_dtype

    def _ragged(self, x, w, group_sizes):
        if self.recipe is None:
            return jax.lax.ragged_dot(x, w.astype(x.dtype), group_sizes)
        return fp8_ragged_dot(x, w, group_sizes, recipe=self.recipe)

    def __call__(self, x):
        """``x [..., in_features] -> (y [..., in_features], aux_loss scalar float32)``."""
        d, k = self.in_features, self.num_experts_per_tok
        if x.shape[-1] != d:
            raise ValueError(f"Fp8MoE: x has shape {x.shape}; its last axis must be "
                             f"in_features={d}")
        dtype = jnp.dtype(self.dtype or x.dtype)
        lead = x.shape[:-1]
        xt = x.reshape(-1, d)
        t = xt.shape[0]
        probs, weights, experts = route_top_k(self.router(xt.astype(jnp.float32)), k)
        flat = experts.reshape(-1)                     # [T*k], token-major
        order = jnp.argsort(flat, stable=True)         # contiguous expert order
        group_sizes = jnp.bincount(flat, length=self.num_experts).astype(jnp.int32)
        xs = jnp.take(xt.astype(dtype), order // k, axis=0)  # [T*k, d]
        h = (jax.nn.silu(self._ragged(xs, self.w_gate[...], group_sizes))
             * self._ragged(xs, self.w_up[...], group_sizes))
        ys = self._ragged(h, self.w_down[...], group_sizes)  # [T*k, d]
        inv = jnp.argsort(order)                       # the inverse permutation
        yk = jnp.take(ys, inv, axis=0).reshape(t, k, d)
        y = jnp.einsum("tkd,tk->td", yk, weights.astype(dtype))
        aux = load_balancing_loss(probs, group_sizes)
        return y.reshape(*lead, d), aux

"""flax ``nnx`` layers on the differentiable FP8 ops (flax is an optional extra).

* :class:`Fp8Linear` -- a drop-in for ``nnx.Linear`` (same constructor, params
  ``kernel [in, out]`` / ``bias`` and initializers) running
  :func:`jaxgemm.fp8_linear`;
* :class:`Fp8MoE` -- a top-k routed mixture of SwiGLU experts on
  :func:`jaxgemm.fp8_ragged_dot`, returning ``(y, aux_loss)``.

Params stay in high precision (``param_dtype``, float32 by default); the FP8
quantization happens inside every step.  ``recipe=None`` runs the same module
on plain XLA matmuls (``jax.lax.dot_general`` / ``jax.lax.ragged_dot``) in
``dtype``: the BF16 baseline.  ``import jaxgemm`` never imports flax; this
subpackage does (``pip install 'jaxgemm[flax]'``).
"""
from __future__ import annotations

try:
    from flax import nnx as _nnx  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "jaxgemm.flax needs flax (nnx): pip install 'jaxgemm[flax]'") from e

from jaxgemm.flax.linear import Fp8Linear
from jaxgemm.flax.moe import Fp8MoE, load_balancing_loss, route_top_k

__all__ = ["Fp8Linear", "Fp8MoE", "load_balancing_loss", "route_top_k"]

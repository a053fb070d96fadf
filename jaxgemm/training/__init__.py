"""Differentiable FP8 training ops (``jax.custom_vjp``) and their recipes.

* :func:`fp8_linear` -- ``x @ kernel`` (dense layers), FP8 forward, dgrad and
  wgrad in the DeepSeek-V3 recipe;
* :func:`fp8_ragged_dot` -- ``jax.lax.ragged_dot`` (MoE experts) on the grouped
  FP8 GEMMs;
* :class:`Recipe` -- which GEMMs run in FP8 / BF16 / exact float32.

See ``docs/training.md``.
"""
from __future__ import annotations

from jaxgemm.training.linear import fp8_linear
from jaxgemm.training.ragged import fp8_ragged_dot
from jaxgemm.training.recipe import (
    GRAD_ERROR_BOUNDS,
    GRAD_ERROR_BOUNDS_BF16,
    GRAD_ERROR_BOUNDS_UE8M0,
    MODES,
    Recipe,
)

__all__ = ["Recipe", "fp8_linear", "fp8_ragged_dot", "MODES", "GRAD_ERROR_BOUNDS",
           "GRAD_ERROR_BOUNDS_UE8M0", "GRAD_ERROR_BOUNDS_BF16"]

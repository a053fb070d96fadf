"""Quantization recipes of the differentiable ops (:class:`Recipe`).

A recipe says, for each of the three GEMMs of a linear layer's training step,
how it is computed:

* ``fwd``:   ``y  = x @ W``       (forward)
* ``dgrad``: ``dx = dy @ W^T``    (input gradient)
* ``wgrad``: ``dW = x^T @ dy``    (weight gradient, contraction over tokens)

Each is one of

* ``"fp8"``: DeepSeek-V3 fine-grained FP8 on the jaxgemm FP8 GEMMs.  Activations
  and gradients are quantized per token (1x128 blocks along the contraction
  axis); weights per 128x128 block, once per step (dgrad reuses the forward's
  quantized weight with transposed scales); in wgrad both operands are quantized
  in 1x128 blocks along the token axis.  FP32 accumulation.
* ``"bf16"``: the operands cast to bfloat16, on the jaxgemm BF16 GEMMs (FP32
  accumulation).
* ``"f32"``: no quantization (identity), a float32 ``precision=HIGHEST`` XLA
  dot (float64 when the inputs are float64).  Not a fast path: it exists so
  that :meth:`Recipe.exact` can check the VJP wiring with
  ``jax.test_util.check_grads``.  It is differentiable to any order.
"""
from __future__ import annotations

import dataclasses

__all__ = ["Recipe", "MODES", "GRAD_ERROR_BOUNDS", "GRAD_ERROR_BOUNDS_UE8M0",
           "GRAD_ERROR_BOUNDS_BF16"]

#: The valid values of ``Recipe.fwd`` / ``dgrad`` / ``wgrad``.
MODES = ("fp8", "bf16", "f32")

#: Documented (and tested, ``tests/test_training_accuracy.py``) upper bounds of
#: the relative Frobenius error ``|g - g_ref|_F / |g_ref|_F`` of the outputs
#: and gradients of :func:`jaxgemm.fp8_linear` / :func:`jaxgemm.fp8_ragged_dot`
#: under the default FP8 recipe against the float32 ``jax.grad`` of the
#: unquantized function, for standard-normal ``x``, weights and output
#: cotangent (float32 inputs).  Keys: ``"y"``, ``"dx"``, ``"dw"``.  FP8 e4m3
#: has 3 mantissa bits, so each quantized operand costs ~2.6% RMS and a
#: product of two ~3.7%; measured: 3.4-3.7% (3.6-3.8% with ``use_ue8m0=True``)
#: over 8 shapes (K, N not multiples of 128 included), see ``docs/training.md``.
GRAD_ERROR_BOUNDS = {"y": 0.05, "dx": 0.05, "dw": 0.05}
#: The same bounds with power-of-two (UE8M0) scales.
GRAD_ERROR_BOUNDS_UE8M0 = {"y": 0.05, "dx": 0.05, "dw": 0.05}
#: The same bounds for ``Recipe.bf16()`` (operands rounded to bfloat16; measured
#: 0.23-0.24%).
GRAD_ERROR_BOUNDS_BF16 = {"y": 0.005, "dx": 0.005, "dw": 0.005}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the forward, dgrad and wgrad GEMMs of a training step are computed.

    A frozen (hashable) dataclass, passed as a static argument.

    Attributes:
      fwd: forward GEMM ``y = x @ W``: ``"fp8"`` (default), ``"bf16"`` or
        ``"f32"``.
      dgrad: input-gradient GEMM ``dx = dy @ W^T``: same choices.
      wgrad: weight-gradient GEMM ``dW = x^T @ dy``: same choices.
      use_ue8m0: round every FP8 scale up to a power of two (UE8M0 scales,
        as DeepSeek-V3 / DeepGEMM on Blackwell); slightly less accurate.

    ``"fp8"`` is DeepSeek-V3's fine-grained recipe: per-token (1x128)
    activation/gradient scales, per-block (128x128) weight scales quantized
    once per step and reused transposed by dgrad, and for wgrad both operands
    quantized 1x128 along the token axis.  ``"bf16"`` runs the jaxgemm BF16
    GEMMs; ``"f32"`` is unquantized float32 ``HIGHEST`` (float64 for float64
    inputs) on XLA.

    Constructors: ``Recipe()`` (all FP8, the DeepSeek-V3 recipe),
    :meth:`Recipe.bf16` (all BF16), :meth:`Recipe.exact` (all ``"f32"``: the
    same code path, GEMM wiring, transposes and ``custom_vjp`` with
    quantization replaced by the identity; ``jax.test_util.check_grads``
    passes on it at orders 1 and 2).

    Error bounds of the default recipe (float32 standard-normal inputs and
    cotangents, against float32 ``jax.grad`` of the unquantized op; relative
    Frobenius error; tested): output, dx and dW all below 5e-2 (measured
    3.4-3.7%), also with ``use_ue8m0=True`` (measured 3.6-3.8%).
    See :data:`GRAD_ERROR_BOUNDS` and ``docs/training.md``.
    """

    fwd: str = "fp8"
    dgrad: str = "fp8"
    wgrad: str = "fp8"
    use_ue8m0: bool = False

    def __post_init__(self):
        for name in ("fwd", "dgrad", "wgrad"):
            v = getattr(self, name)
            if v not in MODES:
                raise ValueError(f"Recipe: {name}={v!r}; expected one of {MODES}")
        if not isinstance(self.use_ue8m0, bool):
            raise TypeError(f"Recipe: use_ue8m0 must be a bool; got "
                            f"{type(self.use_ue8m0).__name__}")

    @classmethod
    def fp8(cls, *, use_ue8m0: bool = False) -> "Recipe":
        """All three GEMMs in FP8 (the DeepSeek-V3 recipe; same as ``Recipe()``)."""
        return cls("fp8", "fp8", "fp8", use_ue8m0)

    @classmethod
    def bf16(cls) -> "Recipe":
        """All three GEMMs on the jaxgemm BF16 GEMMs (FP32 accumulation)."""
        return cls("bf16", "bf16", "bf16")

    @classmethod
    def exact(cls) -> "Recipe":
        """The FP8 code path with identity quantization and float32 HIGHEST GEMMs.

        Use it to verify the VJP wiring with ``jax.test_util.check_grads``
        (orders 1 and 2 in reverse mode; forward-over-reverse too).
        """
        return cls("f32", "f32", "f32")

    @property
    def is_exact(self) -> bool:
        """True when no GEMM quantizes (all modes ``"f32"``)."""
        return self.fwd == self.dgrad == self.wgrad == "f32"

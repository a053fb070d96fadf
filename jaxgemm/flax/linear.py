"""``Fp8Linear``: ``nnx.Linear`` with the matmul on :func:`jaxgemm.fp8_linear`."""
from __future__ import annotations

from flax import nnx

from jaxgemm.training import Recipe, fp8_linear

__all__ = ["Fp8Linear"]


class Fp8Linear(nnx.Linear):
    """A drop-in for ``flax.nnx.Linear`` whose matmul runs in FP8 (DeepSeek-V3 recipe).

    It *is* an ``nnx.Linear`` (a subclass): same constructor arguments, same
    params (``kernel [in_features, out_features]``, ``bias [out_features]``),
    same initializers and ``param_dtype``, so checkpoints and param trees are
    interchangeable.  ``__call__`` promotes ``inputs`` and ``bias`` like
    ``nnx.Linear`` (to ``dtype``, or by type promotion when ``dtype`` is None)
    and computes ``inputs @ kernel`` with :func:`jaxgemm.fp8_linear`: the
    kernel is quantized from its high-precision param (per 128x128 block) and
    its gradient comes back in ``param_dtype``.

    Args:
      in_features, out_features, use_bias, dtype, param_dtype, kernel_init,
        bias_init, rngs, ...: as ``nnx.Linear`` (every keyword it takes).
        ``precision``, ``dot_general`` and ``preferred_element_type`` only
        apply to the XLA path (``recipe=None``).
      recipe: a :class:`jaxgemm.Recipe` (default: all FP8), or ``None`` for
        the plain ``nnx.Linear`` computation (the BF16/XLA baseline).
    """

    def __init__(self, in_features: int, out_features: int, *,
                 recipe: Recipe | None = Recipe(), **kwargs):
        super().__init__(in_features, out_features, **kwargs)
        if recipe is not None and not isinstance(recipe, Recipe):
            raise TypeError(f"Fp8Linear: recipe must be a jaxgemm.Recipe or None; "
                            f"got {type(recipe).__name__}")
        self.recipe = recipe

    def __call__(self, inputs, out_sharding=None, **kwargs):
        """``inputs [..., in_features] -> [..., out_features]``.

        ``out_sharding`` is accepted for ``nnx.Linear`` compatibility; on the
        FP8 path it is ignored (the output keeps the sharding XLA propagates).
        """
        del kwargs  # accepted and ignored (keyword extras of other Linear layers)
        if self.recipe is None:
            return super().__call__(inputs, out_sharding=out_sharding)
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else None
        inputs, _, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        y = fp8_linear(inputs, kernel, recipe=self.recipe)
        if bias is not None:
            y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
        return y

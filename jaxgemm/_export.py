"""``jax.export`` of functions that call jaxgemm's kernels."""
from __future__ import annotations

from jaxgemm import _ext

#: Every XLA FFI custom-call target a jaxgemm op may lower to on CUDA.
CUSTOM_CALL_TARGETS = (
    _ext.DENSE_TARGET,
    _ext.GROUPED_TARGET,
    _ext.K_GROUPED_TARGET,
    _ext.K_GROUPED_PACK_TARGET,
)


def export_disabled_checks() -> list:
    """The ``disabled_checks`` that ``jax.export.export`` needs for jaxgemm ops.

    ``jax.export`` refuses custom calls that are not on its list of targets with
    a compatibility guarantee; jaxgemm's kernels are such calls.  Pass this
    list to allow them::

        exp = jax.export.export(jax.jit(f), platforms=("cuda",),
                                disabled_checks=jaxgemm.export_disabled_checks())(*args)

    The serialized module holds the kernels' attributes (tile config, scale
    path, ...): deserialize and run it with the same jaxgemm version
    (``docs/api.md``, "Backend policy").  Lowered for ``cpu`` the ops are the
    pure-JAX reference and need no exemption.
    """
    import jax

    return [jax.export.DisabledSafetyCheck.custom_call(t) for t in CUSTOM_CALL_TARGETS]

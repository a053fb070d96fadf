"""jaxgemm: DeepSeek-style fine-grained FP8 GEMMs for JAX (Hopper kernels via XLA FFI).

Every op runs a pure-JAX reference implementation on CPU (and, on request,
on any GPU); on a Hopper GPU it runs JIT-compiled CUDA kernels.  See
``docs/api.md`` for the conventions (FP8 operands are ``(data, scale)``
pairs with 1x128 / 128x128 float32 scales) and ``python -m jaxgemm`` for a
self-check.
"""
from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError as _PNF
    from importlib.metadata import version as _version
    try:
        __version__ = _version("jaxgemm")
    except _PNF:  # running from a source tree that is not installed
        __version__ = "0.0.0+unknown"
    del _version, _PNF
except ImportError:  # pragma: no cover
    __version__ = "0.0.0+unknown"

# Import jax (hence numpy and ml_dtypes) BEFORE the C++ extension: on the
# Hopper machines (jax 0.11.2, ml_dtypes 0.6.0, Python 3.12) loading
# _jaxgemm_ext before numpy made ml_dtypes segfault in its float4 finfo at
# import (seen 2026-11-27; numpy first is fine).
import jax as _jax  # noqa: E402,F401
import numpy as _np  # noqa: E402,F401


def _find_installed_extension() -> None:
    """Let a source checkout use the extension of an installed copy.

    Running from the repository root (``python -m pytest -q tests`` after
    ``pip install .``), this source package shadows the installed one, and the
    compiled ``_jaxgemm_ext`` lives only in the installed copy (the build
    writes it there, not into the source tree).  Add that copy's folder to this
    package's ``__path__`` so the extension is found.  A no-op for installed
    and editable packages.
    """
    import importlib.machinery
    import os
    import sys

    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)

    def has_ext(d: str) -> bool:
        try:
            return any(f.startswith("_jaxgemm_ext") and f.endswith(suffixes)
                       for f in os.listdir(d))
        except OSError:
            return False

    if any(has_ext(p) for p in __path__):
        return
    here = {os.path.realpath(p) for p in __path__}
    for entry in sys.path:
        d = os.path.join(entry or os.getcwd(), "jaxgemm")
        if os.path.realpath(d) not in here and has_ext(d):
            __path__.append(d)
            return


_find_installed_extension()

from jaxgemm import layout  # noqa: F401,E402  (the C++ layout rules)
from jaxgemm._backend import (  # noqa: F401
    backend,
    get_backend,
    get_num_sms,
    hopper_available,
    set_backend,
    set_num_sms,
)
from jaxgemm._export import export_disabled_checks  # noqa: F401
from jaxgemm._groups import check_group_sizes  # noqa: F401
from jaxgemm.ops.dense import (  # noqa: F401
    bf16_gemm_nn,
    bf16_gemm_nt,
    bf16_gemm_tn,
    bf16_gemm_tt,
    fp8_gemm_nn,
    fp8_gemm_nt,
    fp8_gemm_tn,
    fp8_gemm_tt,
)
from jaxgemm.ops.grouped import (  # noqa: F401
    k_grouped_bf16_gemm_tn_contiguous,
    k_grouped_fp8_gemm_tn_contiguous,
    m_grouped_bf16_gemm_nt_contiguous,
    m_grouped_bf16_gemm_nt_masked,
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_masked,
)
from jaxgemm.quantize import (  # noqa: F401
    dequantize,
    dequantize_k_grouped,
    per_block_cast_to_fp8,
    per_block_cast_to_fp8_grouped,
    per_token_cast_to_fp8,
    per_token_cast_to_fp8_grouped,
)

#: The 8 dense GEMMs (fp8/bf16 x nt/nn/tn/tt).
DENSE_GEMMS = (
    "fp8_gemm_nt", "fp8_gemm_nn", "fp8_gemm_tn", "fp8_gemm_tt",
    "bf16_gemm_nt", "bf16_gemm_nn", "bf16_gemm_tn", "bf16_gemm_tt",
)
#: The 6 grouped (MoE) GEMMs.
GROUPED_GEMMS = (
    "m_grouped_fp8_gemm_nt_contiguous", "m_grouped_bf16_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_masked", "m_grouped_bf16_gemm_nt_masked",
    "k_grouped_fp8_gemm_tn_contiguous", "k_grouped_bf16_gemm_tn_contiguous",
)

__all__ = [
    *DENSE_GEMMS,
    *GROUPED_GEMMS,
    "per_token_cast_to_fp8", "per_block_cast_to_fp8", "per_block_cast_to_fp8_grouped",
    "per_token_cast_to_fp8_grouped", "dequantize", "dequantize_k_grouped",
    "set_backend", "backend", "get_backend", "set_num_sms", "get_num_sms",
    "hopper_available", "check_group_sizes", "export_disabled_checks", "layout",
    "__version__",
]

# ---------------------------------------------------------------------------
# LATER MODULES: export them here (and extend __all__), e.g.
#   from jaxgemm.training import dense, grouped_dense          # custom_vjp layers
#   from jaxgemm.flax import ...                                # nnx modules
#   from jaxgemm.sharding import ...                            # custom_partitioning
# Keep `import jaxgemm` cheap: no device queries, no kernel compiles at import.
# ---------------------------------------------------------------------------

# --- training: differentiable FP8 ops (jaxgemm.training); flax layers live in
# the lazily imported subpackage jaxgemm.flax (`import jaxgemm.flax`).
from jaxgemm.training import Recipe, fp8_linear, fp8_ragged_dot  # noqa: E402,F401

__all__ += ["Recipe", "fp8_linear", "fp8_ragged_dot"]

# --- sharding: every op carries a custom_partitioning rule (jaxgemm._partition);
# jaxgemm.sharding holds the switch and the fallback warning (docs/sharding.md).
from jaxgemm import sharding  # noqa: E402,F401

__all__ += ["sharding"]

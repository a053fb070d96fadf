"""Public GEMM functions: dense (:mod:`.dense`) and grouped (:mod:`.grouped`)."""
from jaxgemm.ops.dense import (  # noqa: F401
    bf16_gemm_nn, bf16_gemm_nt, bf16_gemm_tn, bf16_gemm_tt,
    fp8_gemm_nn, fp8_gemm_nt, fp8_gemm_tn, fp8_gemm_tt,
)
from jaxgemm.ops.grouped import (  # noqa: F401
    k_grouped_bf16_gemm_tn_contiguous, k_grouped_fp8_gemm_tn_contiguous,
    m_grouped_bf16_gemm_nt_contiguous, m_grouped_bf16_gemm_nt_masked,
    m_grouped_fp8_gemm_nt_contiguous, m_grouped_fp8_gemm_nt_masked,
)
from jaxgemm.ops import dense as _dense, grouped as _grouped

__all__ = list(_dense.__all__) + list(_grouped.__all__)

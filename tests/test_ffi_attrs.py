"""The custom calls' attributes match what the C++ handlers decode.

XLA's FFI decodes the attribute dictionary strictly (same names, same count),
and a mismatch only shows on a GPU.  Lowering for CUDA works on this machine,
so compare the lowered custom calls' attribute names with the StructMember
list of ffi/kernel_state.cc.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _kernels

_CC = Path(__file__).resolve().parent.parent / "ffi" / "kernel_state.cc"


def _decoded_names():
    if not _CC.is_file():
        pytest.skip("ffi sources not next to the tests")
    return sorted(re.findall(r'StructMember<[^>]+>\("(\w+)"\)', _CC.read_text()))


def _call_attrs(fn, *args):
    text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    calls = [line for line in text.splitlines() if "custom_call @jaxgemm" in line]
    assert calls, "no jaxgemm custom call in the CUDA lowering"
    return [sorted(re.findall(r"(\w+) = ", re.search(r"mhlo.backend_config = \{([^}]*)\}",
                                                       c).group(1))) for c in calls]


def _cases():
    a = jaxgemm.per_token_cast_to_fp8(jnp.ones((64, 256)))
    b = jaxgemm.per_block_cast_to_fp8(jnp.ones((136, 256)))
    gs = jnp.array([30, 34], jnp.int32)
    bg = jaxgemm.per_block_cast_to_fp8_grouped(jnp.ones((2, 136, 256)))
    x = jaxgemm.per_token_cast_to_fp8_grouped(jnp.ones((256, 128)), gs)
    y = jaxgemm.per_token_cast_to_fp8_grouped(jnp.ones((256, 64)), gs)
    bf = np.dtype(jnp.bfloat16)
    return {
        "fp8_gemm_nt": (jaxgemm.fp8_gemm_nt, a, b),
        "bf16_gemm_nt+c": (lambda p, q: jaxgemm.bf16_gemm_nt(p, q, c=jnp.ones((64, 136))),
                           jnp.ones((64, 256), jnp.bfloat16), jnp.ones((136, 256), jnp.bfloat16)),
        "m_grouped": (lambda a0, a1, b0, b1, g: _kernels.m_grouped_fp8_gemm_nt_contiguous(
            a0, a1, b0, b1, g, out_dtype=bf), *a, *bg, gs),
        "m_grouped_masked": (lambda a0, a1, b0, b1, g: _kernels.m_grouped_fp8_gemm_nt_masked(
            a0.reshape(2, 32, 256), a1.reshape(2, 32, 2), b0, b1, g, expected_m=32,
            out_dtype=bf), *a, *bg, gs),
        "m_grouped_bf16": (lambda p, q, g: _kernels.m_grouped_bf16_gemm_nt_contiguous(
            p, q, g, out_dtype=bf), jnp.ones((64, 256), jnp.bfloat16),
            jnp.ones((2, 136, 256), jnp.bfloat16), gs),
        "k_grouped": (lambda a0, a1, b0, b1, g: _kernels.k_grouped_fp8_gemm_tn_contiguous(
            a0, a1, b0, b1, g), *x, *y, gs),
        "k_grouped_bf16": (lambda p, q, g: _kernels.k_grouped_bf16_gemm_tn_contiguous(
            p, q, g, c=jnp.ones((2, 128, 64))), jnp.ones((256, 128), jnp.bfloat16),
            jnp.ones((256, 64), jnp.bfloat16), gs),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_attributes_match_the_handlers(case):
    fn, *args = _cases()[case]
    for names in _call_attrs(fn, *args):
        assert names == _decoded_names()

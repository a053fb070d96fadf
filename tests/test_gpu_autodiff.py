"""Gradients through the kernels (jaxgemm._autodiff) on a Hopper GPU.

The checks of test_autodiff.py, on shapes that need several tiles, unaligned
M, N and K (the transposed GEMMs of the backward pass contract over M or N),
ragged and empty groups.  Skipped without a Hopper GPU.
"""
from __future__ import annotations

import pytest

from jaxgemm._backend import hopper_available
from test_autodiff import (
    check_bf16_dense,
    check_bf16_k_grouped,
    check_bf16_m_grouped,
    check_bf16_masked,
    check_fp8_dense,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not hopper_available(), reason="needs a Hopper (sm_90) GPU"),
]


@pytest.mark.parametrize("layout", ["nt", "nn", "tn", "tt"])
def test_bf16_dense_grad(layout):
    check_bf16_dense(300, 520, 1000, layout=layout, seed=1)


def test_bf16_dense_grad_with_c():
    check_bf16_dense(257, 136, 384, with_c=True, seed=2)


def test_bf16_m_grouped_grad():
    check_bf16_m_grouped([100, 0, 1, 250, 37], 420, 264, 200, seed=3)


def test_bf16_masked_grad():
    check_bf16_masked([0, 1, 77, 128], 128, 136, 256, expected_m=64, seed=4)


def test_bf16_k_grouped_grad():
    check_bf16_k_grouped([129, 0, 1, 300, 77], 540, 136, 200, with_c=True, seed=5)


def test_fp8_dense_grad_scales_and_c():
    check_fp8_dense(300, 264, 512, seed=6)

"""Shared test setup: the ``gpu`` marker skips without a Hopper GPU."""
from __future__ import annotations

import pytest

import jaxgemm
from jaxgemm._backend import hopper_available

# Kernel tests live in files named test_gpu_*.py / test_jit_*.py; every other
# test checks the API and the reference semantics with tight tolerances, so on
# a GPU machine it runs under the reference backend.
_KERNEL_TEST_PREFIXES = ("test_gpu_", "test_jit_")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs a Hopper (sm_90) GPU; skipped without one")


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not hopper_available():
        skip = pytest.mark.skip(reason="needs a Hopper GPU (compute capability 9.x)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _reference_backend_off_cpu(request):
    import jax

    name = request.module.__name__.rsplit(".", 1)[-1]
    if jax.default_backend() == "cpu" or name.startswith(_KERNEL_TEST_PREFIXES):
        yield
        return
    with jaxgemm.backend("reference"):
        yield

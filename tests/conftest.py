"""Shared test setup: the ``gpu`` marker skips without a Hopper GPU.

Spec-recording mode (``JAXGEMM_RECORD_SPECS=<file>``, on a machine without a
GPU): only the ``gpu`` tests run, through the kernel paths, with every kernel
launch replaced by zeros of its output's shape; each launch's spec (the
attributes ``_ext.native.compile_kernel`` takes) is appended to ``<file>`` as
one JSON line.  The tests' assertions fail by design; the file lists the
kernels the GPU tests compile, which ``tools/prewarm_jit.py`` compiles in
parallel on the device before the tests run (a cold run otherwise spends
most of its time in NVRTC, one kernel at a time).
"""
from __future__ import annotations

import functools
import json
import os

import pytest

import jaxgemm
from jaxgemm._backend import hopper_available

# Kernel tests live in files named test_gpu_*.py / test_jit_*.py; every other
# test checks the API and the reference semantics with tight tolerances, so on
# a GPU machine it runs under the reference backend.
_KERNEL_TEST_PREFIXES = ("test_gpu_", "test_jit_")


RECORD_SPECS = os.environ.get("JAXGEMM_RECORD_SPECS")
if RECORD_SPECS:
    # The GPU test modules skip unless this says Hopper (read at their import).
    import jaxgemm._backend

    jaxgemm._backend.hopper_available = lambda: True


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs a Hopper (sm_90) GPU; skipped without one")
    if RECORD_SPECS:
        _install_spec_recorder(RECORD_SPECS)


def _install_spec_recorder(path):
    import jax.numpy as jnp
    from jax.interpreters import mlir

    from jaxgemm import _kernels, _primitive
    from jaxgemm.reference import REFERENCE_IMPLS

    def record(target, result, operands, attrs):
        spec = {k: v if isinstance(v, str) else int(v) for k, v in attrs.items()}
        with open(path, "a") as f:
            f.write(json.dumps(spec, sort_keys=True) + "\n")
        return jnp.zeros(result.shape, result.dtype)

    def kernel_lowering(name, ctx, *args, **params):
        # Looked up per lowering: tests swap KERNEL_IMPLS entries.
        fn = _kernels.KERNEL_IMPLS.get(name) or REFERENCE_IMPLS[name]
        return mlir.lower_fun(functools.partial(fn, **params), multiple_results=False)(ctx, *args)

    _kernels._ffi_call_hook = record
    for name, prim in _primitive.LOCAL_PRIMITIVES.items():
        mlir.register_lowering(prim, functools.partial(kernel_lowering, name), platform="cpu")


def pytest_collection_modifyitems(config, items):
    if RECORD_SPECS:
        items[:] = [item for item in items if "gpu" in item.keywords]
        return
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

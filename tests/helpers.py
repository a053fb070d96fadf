"""Random inputs and comparison helpers for the CPU tests (float64 oracles)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import jaxgemm as jg
from jaxgemm import _oracle as O

BF16 = jnp.bfloat16
F32 = jnp.float32


def rand(rng, *shape, dtype=F32):
    """Fresh standard-normal values (never all zeros)."""
    return jnp.asarray(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def fp8_token(rng, *shape):
    return jg.per_token_cast_to_fp8(rand(rng, *shape))


def fp8_block(rng, *shape):
    return jg.per_block_cast_to_fp8(rand(rng, *shape))


def transpose(pair):
    return (pair[0].T, pair[1].T)


def assert_close(out, ref, out_dtype=None):
    """Elementwise bound from the output rounding, plus the diff metric."""
    out64 = O.to64(out)
    ref = np.asarray(ref, np.float64)
    assert out64.shape == ref.shape, (out64.shape, ref.shape)
    assert np.all(np.isfinite(out64))
    dt = np.dtype(out.dtype if out_dtype is None else out_dtype)
    rtol = 2.0 ** -8 if dt == np.dtype(BF16) else 1e-5
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = np.abs(out64 - ref)
    bound = rtol * np.abs(ref) + 1e-5 * scale + 1e-30
    assert np.all(err <= bound), f"max err {err.max()} (bound at argmax {bound.flat[err.argmax()]})"
    assert O.diff(out64, ref) < (1e-5 if dt == np.dtype(BF16) else 1e-9)

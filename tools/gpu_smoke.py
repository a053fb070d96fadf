"""One small FP8 and BF16 GEMM through the whole path, printed; a first look on a new GPU."""
import time

import numpy as np

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _ext

print("devices:", jax.devices())
print("runtime:", {k: v for k, v in _ext.runtime_info().items() if k != "nvrtc_options"})
for (m, n, k) in [(64, 256, 512), (129, 300, 384), (1024, 2048, 1024)]:
    a = jax.random.normal(jax.random.PRNGKey(0), (m, k))
    b = jax.random.normal(jax.random.PRNGKey(1), (n, k))
    qa = jaxgemm.per_token_cast_to_fp8(a)
    qb = jaxgemm.per_block_cast_to_fp8(b)
    t = time.perf_counter()
    out = jax.jit(lambda x, y: jaxgemm.fp8_gemm_nt(x, y))(qa, qb).block_until_ready()
    t = time.perf_counter() - t
    ref = np.asarray(jaxgemm.dequantize(*qa), np.float64) @ np.asarray(jaxgemm.dequantize(*qb), np.float64).T
    o = np.asarray(out, np.float64)
    d = 1 - 2 * (o * ref).sum() / (o * o + ref * ref).sum()
    print(f"fp8 {m}x{n}x{k}: diff {d:.2e} max|err| {np.abs(o - ref).max():.3e} nan {np.isnan(o).sum()} first call {t:.2f}s", flush=True)
    ab, bb = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    out = jax.jit(jaxgemm.bf16_gemm_nt)(ab, bb).block_until_ready()
    ref = np.asarray(ab, np.float64) @ np.asarray(bb, np.float64).T
    o = np.asarray(out, np.float64)
    d = 1 - 2 * (o * ref).sum() / (o * o + ref * ref).sum()
    print(f"bf16 {m}x{n}x{k}: diff {d:.2e} nan {np.isnan(o).sum()}", flush=True)

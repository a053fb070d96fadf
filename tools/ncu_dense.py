"""One dense FP8 GEMM launched a few times, as a target for Nsight Compute.

    ncu --kernel-name regex:fp8_gemm_nt --launch-skip 2 --launch-count 1 \\
        --section SpeedOfLight --section WarpStateStats ... \\
        python3 tools/ncu_dense.py 4096x7168x16384 256x128x3c2 [MODE]

MODE: ``bf16`` (default: BF16 out), ``acc-row`` (D = C + A @ B^T, FP32,
per-row B scales: the weight-gradient form), ``acc-block`` (the same with
per-block B scales): the pair shows what the per-row promotion costs.
"""
import sys

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import _config, _kernels

m, n, k = (int(v) for v in sys.argv[1].split("x"))
mode = sys.argv[3] if len(sys.argv) > 3 else "bf16"
if mode not in ("bf16", "acc-row", "acc-block"):
    sys.exit(f"MODE must be bf16, acc-row or acc-block; got {mode!r}")
a = jax.random.normal(jax.random.PRNGKey(0), (m, k))
b = jax.random.normal(jax.random.PRNGKey(1), (n, k))
qa = jaxgemm.per_token_cast_to_fp8(a)
qb = jaxgemm.per_token_cast_to_fp8(b) if mode == "acc-row" else jaxgemm.per_block_cast_to_fp8(b)
c = jax.random.normal(jax.random.PRNGKey(2), (m, n), jnp.float32)
cfg = None
if len(sys.argv) > 2 and sys.argv[2] != "auto":
    dims, _, cl = sys.argv[2].partition("c")
    bm, bn, st = (int(v) for v in dims.split("x"))
    cfg = _config.GemmConfig(bm, bn, st, int(cl or 1))
with _kernels.force_config(cfg):
    if mode == "bf16":
        f = jax.jit(lambda x, y: jaxgemm.fp8_gemm_nt(x, y))
        args = (qa, qb)
    else:
        f = jax.jit(lambda x, y, z: jaxgemm.fp8_gemm_nt(x, y, c=z))
        args = (qa, qb, c)
    for _ in range(4):
        out = f(*args)
jax.block_until_ready(out)
print("done", mode, out.shape, out.dtype)

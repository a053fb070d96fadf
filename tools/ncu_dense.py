"""One dense FP8 GEMM launched a few times, as a target for Nsight Compute.

    ncu --kernel-name regex:fp8_gemm_nt --launch-skip 2 --launch-count 1 \\
        --section SpeedOfLight --section WarpStateStats ... \\
        python3 tools/ncu_dense.py 4096x7168x16384 256x128x3c2
"""
import sys

import jax

import jaxgemm
from jaxgemm import _config, _kernels

m, n, k = (int(v) for v in sys.argv[1].split("x"))
a = jax.random.normal(jax.random.PRNGKey(0), (m, k))
b = jax.random.normal(jax.random.PRNGKey(1), (n, k))
qa, qb = jaxgemm.per_token_cast_to_fp8(a), jaxgemm.per_block_cast_to_fp8(b)
cfg = None
if len(sys.argv) > 2:
    dims, _, cl = sys.argv[2].partition("c")
    bm, bn, st = (int(v) for v in dims.split("x"))
    cfg = _config.GemmConfig(bm, bn, st, int(cl or 1))
with _kernels.force_config(cfg):
    f = jax.jit(lambda x, y: jaxgemm.fp8_gemm_nt(x, y))
    for _ in range(4):
        out = f(qa, qb)
jax.block_until_ready(out)
print("done", out.shape)

"""Deep rings on 64-row FP8 tiles: correctness of configs beyond _MAX_STAGES (12)."""
import sys
sys.path.insert(0, "tests")
import jax, numpy as np, jaxgemm
from jaxgemm import _config, _kernels
import test_gpu_dense as t
for (m, n, k, bm, bn, st) in [(64, 2112, 7168, 64, 16, 20), (100, 1000, 1408, 64, 16, 20),
                              (64, 4096, 2048, 64, 32, 16), (129, 300, 384, 64, 32, 16)]:
    qa, qb = t._fp8_operands(m, n, k)
    t._poison((m, n), jax.numpy.bfloat16)
    with _kernels.force_config(_config.GemmConfig(bm, bn, st, 1)):
        out = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b))(qa, qb)
    d = t._check(out, t._ref_dense(qa, qb))
    print(f"check {m}x{n}x{k} {bm}x{bn}x{st}: diff {d:.2e} ok", flush=True)

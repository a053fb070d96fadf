"""Times a few configs of two shapes with and without clusters (device only)."""

import jax

import jaxgemm
from jaxgemm import _timing as timing
from jaxgemm import _config, _kernels

for (m, n, k), cfgs in [((64, 2112, 7168), [(64, 16, 12, 1), (64, 16, 12, 2), (64, 16, 12, 4), (64, 32, 12, 4), (64, 64, 12, 4)]),
                        ((4096, 7168, 2048), [(128, 128, 6, 1), (128, 128, 6, 2), (256, 128, 4, 1), (256, 128, 4, 2), (128, 192, 4, 2)])]:
    sets = []
    for i in range(timing.num_sets_for(m * k + n * k)):
        a = jax.random.normal(jax.random.PRNGKey(i), (m, k))
        b = jax.random.normal(jax.random.PRNGKey(100 + i), (n, k))
        sets.append((*jaxgemm.per_token_cast_to_fp8(a), *jaxgemm.per_block_cast_to_fp8(b)))
    fn = lambda a0, a1, b0, b1: jaxgemm.fp8_gemm_nt((a0, a1), (b0, b1))  # noqa: E731
    for bm, bn, st, cl in cfgs:
        with _kernels.force_config(_config.GemmConfig(bm, bn, st, cl)):
            t = timing.time_op(jax.jit(fn), sets, reps=12)
        print(f"{m}x{n}x{k} {bm}x{bn}x{st} c{cl}: {t['us']:.1f} us "
              f"{2 * m * n * k / t['us'] / 1e6:.0f} TFLOPS", flush=True)

"""One k-grouped GEMM, alone, for compute-sanitizer racecheck (the whole
grouped sweep, tools/sanitize_grouped.py, made racecheck itself crash on
2026-11-27 while each kernel run alone was clean).

    compute-sanitizer --tool racecheck --kernel-name kns=k_grouped python3 tools/racecheck_k_grouped.py c [bf16]

First argument: "c" to accumulate into C, anything else for none; a second
argument runs the BF16 kernel.
"""
import sys
import numpy as np
import jax, jax.numpy as jnp
import jaxgemm
rng = np.random.default_rng(5)
x = jnp.asarray(rng.standard_normal((700, 136), np.float32))
y = jnp.asarray(rng.standard_normal((700, 264), np.float32))
gs = jnp.asarray([300, 0, 250, 1], jnp.int32)
qx, qy = jaxgemm.per_token_cast_to_fp8_grouped(x, gs), jaxgemm.per_token_cast_to_fp8_grouped(y, gs)
c = jnp.asarray(rng.standard_normal((4, 136, 264), np.float32)) if sys.argv[1] == "c" else None
if len(sys.argv) > 2:
    o = jax.jit(lambda p, q, s, c: jaxgemm.k_grouped_bf16_gemm_tn_contiguous(p, q, s, c=c))(
        x.astype(jnp.bfloat16), y.astype(jnp.bfloat16), gs, c)
else:
    o = jax.jit(lambda p, q, s, c: jaxgemm.k_grouped_fp8_gemm_tn_contiguous(p, q, s, c=c))(qx, qy, gs, c)
print("done", float(jnp.abs(o).max()))

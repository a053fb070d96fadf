"""Runs FP8 dense GEMMs on given shapes through one scale path, each in its
own process (a crash or illegal instruction names its shape), and prints the
diff against the float64 reference.  Device debugging aid.

    JAXGEMM_TMA_SCALES=1 python tools/probe_scale_paths.py 3x40x640 1x8x128 ...
"""
import subprocess
import sys

CHILD = r'''
import sys, numpy as np, jax, jax.numpy as jnp, jaxgemm
m, n, k = (int(v) for v in sys.argv[1].split("x"))
acc = sys.argv[2] if len(sys.argv) > 2 else "none"
rng = np.random.default_rng(0)
a = jnp.asarray(rng.standard_normal((m, k), np.float32))
b = jnp.asarray(rng.standard_normal((n, k), np.float32))
qa = jaxgemm.per_token_cast_to_fp8(a)
qb = jaxgemm.per_token_cast_to_fp8(b) if acc == "row" else jaxgemm.per_block_cast_to_fp8(b)
c = None if acc == "none" else jnp.asarray(rng.standard_normal((m, n), np.float32))
out = np.asarray(jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c=c))(qa, qb, c), np.float64)
ref = np.asarray(jaxgemm.dequantize(*qa), np.float64) @ np.asarray(jaxgemm.dequantize(*qb), np.float64).T
if c is not None:
    ref = ref + np.asarray(c, np.float64)
d = 1 - 2 * (out * ref).sum() / (out * out + ref * ref).sum()
print(f"{sys.argv[1]} {acc}: diff {d:.2e} finite {np.isfinite(out).all()}")
'''

for arg in sys.argv[1:]:
    shape, _, acc = arg.partition(":")
    r = subprocess.run([sys.executable, "-c", CHILD, shape] + ([acc] if acc else []),
                       capture_output=True, text=True, timeout=120)
    lines = [l for l in (r.stdout + r.stderr).splitlines()
             if "diff" in l or "ILLEGAL" in l or "Error" in l][:2]
    print(arg, "rc", r.returncode, "|", " | ".join(l[:160] for l in lines), flush=True)

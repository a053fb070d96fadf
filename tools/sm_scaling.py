"""Time one dense FP8 tile config on fewer SMs: is a tile bound per SM or by a shared resource?

If a tile's pace is set inside its SM (latency chains, barrier handshakes), each CTA's time
per K block stays the same when fewer SMs run (the kernel just takes more rounds); if it is
set by something all SMs share (L2 or HBM bandwidth), it drops as SMs are taken away.

    python tools/sm_scaling.py 64x2112x7168 64x16x12c1 [--sms 132,66,44,33]

Prints, per SM count: kernel time, TFLOPS, tiles per CTA and ns per K block per CTA.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import jax  # noqa: E402

import jaxgemm  # noqa: E402
from jaxgemm import _config, _kernels, _timing  # noqa: E402
from sweep_dense import parse_configs  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", help="MxNxK")
    p.add_argument("config", help="e.g. 64x16x12c1 (sweep_dense.py's --configs form)")
    p.add_argument("--sms", default="132,66,44,33")
    args = p.parse_args()
    m, n, k = (int(x) for x in args.shape.split("x"))
    cfg = parse_configs(args.config, fp8=True, out_bytes=2, sb_per_row=False)[0]
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    sets = []
    for i in range(_timing.num_sets_for(m * k + n * k + m * n * 2)):
        a = jax.random.normal(jax.random.fold_in(keys[0], i), (m, k))
        b = jax.random.normal(jax.random.fold_in(keys[1], i), (n, k))
        sets.append((*jaxgemm.per_token_cast_to_fp8(a), *jaxgemm.per_block_cast_to_fp8(b)))
    sets = jax.block_until_ready(sets)
    tiles = math.ceil(m / cfg.block_m) * math.ceil(n / cfg.block_n)
    k_blocks = math.ceil(k / 128)
    print(f"{args.shape} {cfg.describe()}: {tiles} tiles, {k_blocks} K blocks each")
    for sms in (int(s) for s in args.sms.split(",")):
        fn = jax.jit(lambda a0, a1, b0, b1, s=sms: jaxgemm.fp8_gemm_nt((a0, a1), (b0, b1),
                                                                      num_sms=s))
        with _kernels.force_config(cfg):
            t = _timing.time_op(fn, sets, reps=20)
        rounds = math.ceil(tiles / min(sms, tiles))
        print(f"  sms {sms:4d}: {t['us']:8.2f} us  {2 * m * n * k / t['us'] / 1e6:7.1f} TFLOPS  "
              f"{rounds} tile(s) per CTA  {t['us'] * 1e3 / (rounds * k_blocks):6.1f} ns per K block",
              flush=True)


if __name__ == "__main__":
    main()

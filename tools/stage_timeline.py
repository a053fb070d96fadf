"""Per-stage timeline of one dense FP8 GEMM (a diagnostic kernel build).

Needs the sources patched with benchmarks/results/ab/pending_s19/timeline.patch
(JAXGEMM_SOURCE_DIR points at them): CTA 0 stamps clock() around each stage's
hops (producer: empty wait, TMA issue; first math thread: full wait, wgmma
issue, wgmma done, promote + release) and writes the stamps over the A scales
it was given, which this script reads back.  The results of that call are
wrong (the scales are overwritten while other CTAs may still read them); only
the timing means anything, and only for shapes with one tile per CTA (later
tiles overwrite the math stamps).

    JAXGEMM_SOURCE_DIR=$PWD/.devcarry/src_tl python3 tools/stage_timeline.py 64x2112x7168 64x16x12c1
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxgemm  # noqa: E402
from jaxgemm import _kernels  # noqa: E402
from sweep_dense import parse_configs  # noqa: E402

MARKER = 0x7117E1


def main() -> None:
    m, n, k = (int(v) for v in sys.argv[1].split("x"))
    cfg = parse_configs(sys.argv[2], fp8=True, out_bytes=2, sb_per_row=False)[0]
    a = jax.random.normal(jax.random.PRNGKey(0), (m, k))
    b = jax.random.normal(jax.random.PRNGKey(1), (n, k))
    qb = jaxgemm.per_block_cast_to_fp8(b)
    for rep in range(3):  # the last call's stamps are read (warm caches, clocks up)
        qa = jaxgemm.per_token_cast_to_fp8(a)
        with _kernels.force_config(cfg):
            out = jaxgemm.fp8_gemm_nt(qa, qb)
        jax.block_until_ready(out)
    words = np.asarray(qa[1]).reshape(-1).view(np.uint32)
    if words[0] != MARKER:
        sys.exit("no timeline in the A scales: not a timeline build, or the scales were copied")
    steps = int(words[1])
    prod = words[2:2 + 3 * steps].reshape(steps, 3).astype(np.int64)
    math = words[2 + 3 * steps:2 + 8 * steps].reshape(steps, 5).astype(np.int64)
    wrap = lambda d: d % (1 << 32)  # noqa: E731  (32-bit clock)
    print(f"{m}x{n}x{k} {sys.argv[2]}: cycles per hop, CTA 0, K blocks 1..{min(steps, k // 128) - 2}")
    print(" kb  empty_wait  tma_issue  full_wait  wgmma_issue  wgmma_done  promote_rel  "
          "issued->ready  period")
    rows = []
    for s in range(1, min(steps, k // 128) - 1):
        r = (wrap(prod[s, 1] - prod[s, 0]), wrap(prod[s, 2] - prod[s, 1]),
             wrap(math[s, 1] - math[s, 0]), wrap(math[s, 2] - math[s, 1]),
             wrap(math[s, 3] - math[s, 2]), wrap(math[s, 4] - math[s, 3]),
             wrap(math[s, 1] - prod[s, 2]), wrap(math[s + 1, 1] - math[s, 1]))
        rows.append(r)
        print(f"{s:3d} " + " ".join(f"{v:11d}" for v in r))
    med = np.median(np.array(rows[len(rows) // 4:]), axis=0)
    print("median (last 3/4): " + " ".join(f"{v:.0f}" for v in med))


if __name__ == "__main__":
    main()

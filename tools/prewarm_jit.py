"""Compiles a list of kernel specs into the JIT's disk cache, in parallel.

A cold GPU test run spends most of its time in NVRTC, one kernel at a time
(~0.3-0.6 s each, hundreds of kernels).  This compiles the kernels the GPU
tests use (``tests/data/gpu_test_specs.jsonl``, recorded on a machine without
a GPU by ``JAXGEMM_RECORD_SPECS=<file> pytest tests/test_gpu_*.py``; see
tests/conftest.py) on every core first, so the tests then load them from the
cache.  Specs that no longer compile (a stale list) are counted and skipped.

    python tools/prewarm_jit.py [SPECS.jsonl ...] [-j JOBS]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent.parent / "tests" / "data" / "gpu_test_specs.jsonl"
# Launch-time attributes: not part of the compiled kernel.
LAUNCH_ONLY = ("num_sms", "smem_override")


def _compile(spec: dict):
    from jaxgemm import _ext

    _ext.ensure_jit()
    try:
        r = _ext.native.compile_kernel(spec)
        return ("hit" if r["cache_hit"] else "compiled"), r["seconds"]
    except Exception as e:  # noqa: BLE001 - a stale or deliberately bad spec
        return "error", str(e).splitlines()[0][:160]


def load_specs(paths) -> list[dict]:
    seen, specs = set(), []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            spec = json.loads(line)
            spec.update({k: 0 for k in LAUNCH_ONLY})
            key = json.dumps(spec, sort_keys=True)
            if key not in seen:
                seen.add(key)
                specs.append(spec)
    return specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="*", default=[str(DEFAULT)])
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    specs = load_specs(args.specs)
    t0 = time.perf_counter()
    counts: dict[str, int] = {}
    errors = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for spec, (what, info) in zip(specs, pool.map(_compile, specs, chunksize=1)):
            counts[what] = counts.get(what, 0) + 1
            if what == "error":
                errors.append(f"{spec['kernel']} {spec['block_m']}x{spec['block_n']}: {info}")
    for e in errors[:5]:
        print("  skipped:", e)
    print(f"prewarm: {len(specs)} kernels in {time.perf_counter() - t0:.1f} s on {args.jobs} "
          f"processes: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()

"""Compile the kernels the benchmark sets run (the heuristic's pick for every
shape of benchmarks/data/shapes.json, FP8 and BF16, dense and grouped) and
report registers and spills.  No GPU needed; tests/test_jit_compile.py runs
it (the sample kernels alone missed spills that only 4-stage configs had).

    python tools/spill_scan.py [--source DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from jaxgemm import _config, _ext, _kernels, layout

ROOT = Path(__file__).resolve().parent.parent


def benchmark_specs() -> list[dict]:
    """One compile spec per distinct kernel the benchmark sets launch."""
    shapes = json.loads((ROOT / "benchmarks" / "data" / "shapes.json").read_text())
    specs = {}

    def add(**kw):
        spec = dict(m=0, band_n=16, out_f32=0, accumulate=0, sb_per_row=0, masked=0,
                    scales_tma=0, num_sms=0, smem_override=0)
        spec.update(kw)
        specs[json.dumps(spec, sort_keys=True)] = spec

    def cfg_kw(cfg):
        return dict(block_m=cfg.block_m, block_n=cfg.block_n, stages=cfg.stages,
                    cluster=cfg.cluster)

    pad = lambda v: -(-v // 128) * 128  # noqa: E731  (N and K of the benchmark shapes)
    for m, n, k in shapes["dense_fp8_nt"]:
        cfg = _kernels._fp8_dense_config(m, pad(n), pad(k), 2)
        add(kernel="fp8_gemm_nt", n=pad(n), k=pad(k), scales_tma=_config.scales_by_tma(m),
            **cfg_kw(cfg))
        cfg = _config.bf16_dense_config(m, pad(n), pad(k), out_bytes=2)
        add(kernel="bf16_gemm_nt_pingpong" if cfg.pingpong else "bf16_gemm_nt", n=pad(n),
            k=pad(k), **cfg_kw(cfg))
    for m, n, k in shapes["dense_fp32_accumulate"]:
        cfg = _kernels._fp8_dense_config(m, n, k, 4, sb_per_row=True, add_c=True)
        add(kernel="fp8_gemm_nt", n=n, k=k, out_f32=1, accumulate=1, sb_per_row=1,
            scales_tma=_config.scales_by_tma(m), **cfg_kw(cfg))
    contiguous = shapes["m_grouped_contiguous"]
    rows = [tuple(r) for r in contiguous["balanced"]] + [(32, 1024, 4096, 7168),
                                                           (256, 128, 4096, 7168)]
    for g, mpg, n, k in rows:
        for fp8 in (True, False):
            cfg = _kernels._grouped_config(mpg, n, k, np.dtype("bfloat16"), g, None, fp8=fp8,
                                           contiguous=True)
            add(kernel="m_grouped_fp8_gemm_nt" if fp8 else "m_grouped_bf16_gemm_nt", n=n, k=k,
                scales_tma=_config.grouped_scales_by_tma(cfg.block_m) if fp8 else 0,
                **cfg_kw(cfg))
    masked = shapes["m_grouped_masked"]
    for g, mmax, em, n, k in (tuple(r) for r in masked["rows"]):
        cfg = _kernels._grouped_config(em, n, k, np.dtype("bfloat16"), g, None)
        add(kernel="m_grouped_fp8_gemm_nt", n=n, k=k, masked=2,
            scales_tma=_config.grouped_scales_by_tma(cfg.block_m), **cfg_kw(cfg))
    for g, m, n, kpg in (tuple(r) for r in shapes["k_grouped_wgrad"]["rows"]):
        n_pad = pad(n)
        rows = layout.k_grouped_scale_rows(g * kpg, g)
        for fp8 in (True, False):
            for add_c in (False, True):
                cfg = _kernels._k_grouped_config(m, n_pad, kpg, fp8, None, add_c=add_c)
                add(kernel="k_grouped_fp8_gemm" if fp8 else "k_grouped_bf16_gemm", m=m, n=n_pad,
                    k=rows * layout.SCALE_BLOCK, out_f32=1, accumulate=int(add_c),
                    sb_per_row=int(fp8), **cfg_kw(cfg))
    return list(specs.values())


def scan(source: str | None = None) -> list[tuple[dict, int, int]]:
    """(spec, registers, spill bytes) per benchmark kernel."""
    _ext.ensure_jit()
    verbose = os.environ.get("JAXGEMM_PTXAS_VERBOSE")
    os.environ["JAXGEMM_PTXAS_VERBOSE"] = "1"
    out = []
    try:
        with tempfile.TemporaryDirectory() as tmp:  # a private cache: always compile
            _ext.native.configure_jit(source or _ext.source_dir(), tmp)
            for spec in benchmark_specs():
                log = _ext.native.compile_kernel(spec, True)["log"]
                regs = int(re.search(r"Used (\d+) registers", log).group(1))
                spill = sum(int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", log))
                out.append((spec, regs, spill))
    finally:
        _ext.native.configure_jit(_ext.source_dir(), _ext.cache_dir())
        if verbose is None:
            os.environ.pop("JAXGEMM_PTXAS_VERBOSE", None)
        else:
            os.environ["JAXGEMM_PTXAS_VERBOSE"] = verbose
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=None)
    args = p.parse_args()
    bad = 0
    for spec, regs, spill in scan(args.source):
        tag = (f"{spec['kernel']} n={spec['n']} k={spec['k']} {spec['block_m']}x{spec['block_n']}"
               f"x{spec['stages']} c{spec['cluster']}")
        print(f"{'SPILL' if spill else 'ok   '} {regs:3d} regs {spill:3d} B  {tag}")
        bad += spill > 0
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

"""JIT cost per kernel: cold NVRTC compile and load from the disk cache.

For the config the heuristic picks on every shape of the dense sets (and the
sample grouped kernels), compiles into an empty cache folder, then drops the
in-process cache and loads again from disk.  Needs NVRTC, not a GPU.

    python benchmarks/bench_jit.py
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from jaxgemm import _config, _ext, _kernels  # noqa: E402


def main():
    _ext.ensure_jit()
    shapes = common.shapes()
    specs = []
    for set_name in ("dense_fp8_nt", "dense_fp32_accumulate"):
        acc = set_name == "dense_fp32_accumulate"
        for (m, n, k) in shapes[set_name]:
            cfg = _kernels._fp8_dense_config(m, n, k, 4 if acc else 2, sb_per_row=acc, add_c=acc)
            specs.append((f"{set_name} {m}x{n}x{k}", _kernels._gemm_attrs(
                "fp8_gemm_nt", n, k, cfg.block_m, cfg.block_n, cfg.stages, cluster=cfg.cluster,
                out_f32=int(acc), accumulate=int(acc), sb_per_row=int(acc),
                scales_tma=_config.scales_by_tma(m))))
    for spec in _kernels.SAMPLE_SPECS:
        if "grouped" in spec["kernel"] or spec["kernel"].startswith("bf16"):
            specs.append((_kernels.sample_spec_id(spec), spec))
    records = []
    with tempfile.TemporaryDirectory() as d:
        _ext.native.configure_jit(_ext.source_dir(), d)
        for name, spec in specs:
            cold = _ext.native.compile_kernel(spec)
            _ext.native.clear_memory_cache()
            warm = _ext.native.compile_kernel(spec)
            assert warm["cache_hit"]
            records.append(dict(kernel=name, cold_s=round(cold["seconds"], 3),
                                disk_ms=round(warm["seconds"] * 1e3, 2),
                                cache_hit=cold["cache_hit"]))
            print(f"{name:40s} cold {cold['seconds']:.3f} s   disk {warm['seconds'] * 1e3:.2f} ms",
                  flush=True)
        _ext.native.configure_jit(_ext.source_dir(), _ext.cache_dir())
    colds = [r["cold_s"] for r in records if not r["cache_hit"]]
    print(f"cold compile: median {statistics.median(colds):.3f} s, max {max(colds):.3f} s; "
          f"disk load: median {statistics.median(r['disk_ms'] for r in records):.2f} ms")
    info = _ext.runtime_info()
    path = common.write_results("jit", records, extra={
        "nvrtc_version": info["nvrtc_version"], "note": "compile times on the machine named in gpu"})
    print("wrote", path)


if __name__ == "__main__":
    main()

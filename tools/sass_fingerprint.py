"""SASS fingerprints of every sample kernel (no GPU needed).

Compiles `jaxgemm._kernels.SAMPLE_SPECS` plus the large- and small-M dense
tiles with NVRTC and prints one line per kernel: the SASS's hash and length.
A refactor of src_cuda/ whose fingerprints do not change cannot change what
runs on the device; diff two runs (before/after, or two NVRTC versions via
JAXGEMM_NVRTC_PATH) to see which kernels moved.

    python tools/sass_fingerprint.py [--source DIR] [--keep DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile

from jaxgemm import _ext, _kernels

# Tiles the benchmarks run that the samples do not cover.
EXTRA_DENSE = [(256, 128, 3, 2), (128, 128, 5, 2), (64, 128, 8, 1), (256, 96, 4, 2),
               (64, 32, 12, 1), (128, 64, 8, 1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=None, help="kernel source folder (default: src_cuda)")
    p.add_argument("--keep", default=None, help="also write each kernel's SASS into this folder")
    args = p.parse_args()
    _ext.ensure_jit()
    if _ext.nvdisasm_path() is None:
        raise SystemExit("nvdisasm not found (pip install nvidia-cuda-nvdisasm)")
    base = dict(_kernels.SAMPLE_SPECS[0])
    specs = list(_kernels.SAMPLE_SPECS) + [
        dict(base, n=7168, k=16384, block_m=bm, block_n=bn, stages=st, cluster=cl)
        for bm, bn, st, cl in EXTRA_DENSE]
    with tempfile.TemporaryDirectory() as tmp:
        _ext.native.configure_jit(args.source or _ext.source_dir(), tmp)
        for i, spec in enumerate(specs):
            lines = _ext.disassemble(_ext.native.compile_kernel(spec, True)["cubin"])
            text = "\n".join(lines)
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                with open(os.path.join(args.keep, f"{i:02d}.sass"), "w") as f:
                    f.write(text)
            print(f"{i:02d} {_kernels.sample_spec_id(spec):48} {len(lines):6d} "
                  f"{hashlib.sha256(text.encode()).hexdigest()[:16]}")


if __name__ == "__main__":
    main()

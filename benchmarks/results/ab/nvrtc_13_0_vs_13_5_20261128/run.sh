#!/bin/bash
# Session 19: the same kernel sources compiled by NVRTC 13.0.88 (the device's wheel) and
# 13.5.37 (carried, xz), timed in one call: does the codegen difference matter?
set -o pipefail
D=/tmp/nvrtc135; mkdir -p $D
python3 - <<'PY'
import lzma, shutil
for n in ["libnvrtc.so.13", "libnvrtc-builtins.so.13.5"]:
    with lzma.open(f".devcarry/nvrtc135/{n}.xz") as f, open(f"/tmp/nvrtc135/{n}", "wb") as o:
        shutil.copyfileobj(f, o)
PY
python3 -c "
import ctypes
for p in ['/tmp/nvrtc135/libnvrtc.so.13']:
    l=ctypes.CDLL(p); a=ctypes.c_int(); b=ctypes.c_int(); l.nvrtcVersion(ctypes.byref(a),ctypes.byref(b)); print(p,'nvrtc',a.value,b.value)"
SMALL="--sets dense_fp8_nt --shapes 64x2112x7168,64x7168x2048,64x4096x7168,128x2112x7168,128x4096x7168,128x7168x2048,64x7168x16384 --configs 64x16x12c1,64x32x12c1,64x64x12c1,128x32x8c1,128x64x8c1"
LARGE="--sets dense_fp8_nt,dense_fp32_accumulate --shapes 4096x7168x16384,4096x2112x7168,7168x4096x2048,4096x4096x7168 --configs 256x128c2,128x128x4c1"
for tag in base n135 b2; do
  if [ $tag = n135 ]; then export JAXGEMM_NVRTC_PATH=$D/libnvrtc.so.13; else unset JAXGEMM_NVRTC_PATH; fi
  python3 -c "from jaxgemm import _ext; _ext.ensure_jit(); i=_ext.native.runtime_info(); print('$tag', i['nvrtc_version'], i['nvrtc_path'])" 2>&1 | tail -1
  for args in "$SMALL" "$LARGE"; do
    timeout 110 python3 benchmarks/sweep_dense.py --tag $tag $args 2>&1 | tee -a "$OUT/sweep_nvrtc.log" | grep -E "^$tag |rror" | tail -12
  done
done

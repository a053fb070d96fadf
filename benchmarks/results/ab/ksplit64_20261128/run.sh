#!/bin/bash
# Session 19: split K on 64-row tiles (JAXGEMM_KSPLIT64, host + kernels), same call A/B.
set -o pipefail
SM="--sets dense_fp8_nt --shapes 64x2112x7168,64x7168x2048,64x4096x7168,128x2112x7168,128x4096x7168,128x7168x2048 --configs 64x16x12c1,64x32x12c1,64x64x10c1,64x112x8c1"
timeout 100 python3 benchmarks/sweep_dense.py --tag base $SM 2>&1 | tee -a "$OUT/sweep_ks.log" | grep -E "^base |rror" | tail -8
sed -i 's/^#define JAXGEMM_KSPLIT64 0/#define JAXGEMM_KSPLIT64 1/' src_cuda/smem_plan.h
(CXX=/usr/bin/g++ CC=/usr/bin/gcc timeout 120 python3 -m pip install --no-build-isolation --no-deps -e . > "$OUT/build_ks.log" 2>&1) || { tail -20 "$OUT/build_ks.log"; exit 1; }
echo "== rebuilt with KSPLIT64"
timeout 100 python3 benchmarks/sweep_dense.py --tag ks $SM 2>&1 | tee -a "$OUT/sweep_ks.log" | grep -E "^ks |rror" | tail -8
timeout 170 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_dense.py -x \
  -k "((fp8_configs or add_c_configs) and 64-) or fp8_gemm_nt_bf16 or f32_out_per_row" > "$OUT/tests_ks.log" 2>&1
echo "tests rc=$?"; tail -5 "$OUT/tests_ks.log"

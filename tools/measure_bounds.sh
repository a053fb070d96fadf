#!/bin/bash
# Measurements planned at the end of session 18 (benchmarks/NOTES.md, "Next (planned at
# the end of session 18)"), for one device call through device_run.sh:
#
#   SCRIPT=tools/measure_bounds.sh bash tools/device_run.sh script sweep-ab
#   (with AB_SRCS / SWEEP_ARGS from benchmarks/results/ab/acc_probes_l2_20261128/README.md)
#
# 1. builds .devcarry/src_{noc,nod,nocd,l2c,l2cab,l2d} from the acc_probes_l2_20261128 patches when
#    they are missing (the sweep-ab step after this script times them);
# 2. the two standalone microbenchmarks (tools/wgmma_probe.cu, tools/tma_probe.cu);
# 3. tools/sm_scaling.py on the two 64-row picks.
# BUILD_ONLY=1: step 1 only.
# Logs go to $OUT.
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
P=benchmarks/results/ab/acc_probes_l2_20261128
for d in noc nod nocd l2c l2cab l2d; do
  [ -d ".devcarry/src_$d" ] && continue
  f=$P/$d.patch
  [ -f "$P/probe_$d.patch" ] && f=$P/probe_$d.patch
  mkdir -p .devcarry && cp -r src_cuda ".devcarry/src_$d" || exit 1
  if command -v patch > /dev/null; then
    patch -s -p2 -d ".devcarry/src_$d" < "$f"
  else
    git apply -p2 --directory=".devcarry/src_$d" "$f"
  fi || { echo "applying $f failed"; exit 1; }
  echo "built .devcarry/src_$d from $f"
done
[ -n "$BUILD_ONLY" ] && exit 0  # later calls: only make sure the folders exist
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
for probe in wgmma_probe tma_probe; do
  "$NVCC" -std=c++17 -gencode arch=compute_90a,code=sm_90a -O3 -I src_cuda "tools/$probe.cu" \
    -o "/tmp/$probe" > "$OUT/${probe}_build.log" 2>&1 || { tail -5 "$OUT/${probe}_build.log"; continue; }
  timeout 120 "/tmp/$probe" 2>&1 | tee "$OUT/$probe.log"
done
for args in "64x2112x7168 64x16x12c1" "64x4096x7168 64x32x12c1"; do
  timeout 120 python3 tools/sm_scaling.py $args 2>&1 | grep -v "^WARNING" | tee -a "$OUT/sm_scaling.log"
done

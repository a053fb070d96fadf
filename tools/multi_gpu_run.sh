#!/bin/bash
# The multi-GPU run (issue 7), one call on a machine with N >= 2 GPUs:
#   build; the same per-GPU batch on one GPU, FP8 and BF16; sharded MoE
#   training on mesh 1xN with the
#   experts split over the GPUs (all-to-all dispatch) and the dense layers
#   data parallel, then tensor parallel, FP8 and BF16 -> weak-scaling
#   efficiency, loss parity, the compiled step's HLO collectives; the sharded
#   GEMM benchmark (per-GPU TFLOPS against one GPU).
# Every step has its own timeout so the whole fits one 600 s device call
# (DEADLINE_S, default 570).  $OUT gets multi_summary.txt, the results JSON
# (benchmarks/multi_gpu_summary.py, bench_sharded.py) and a tarball of every log.
# NVLink multicast stays off (KINDS.md).
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
# At most 8 files come back: the logs, HLO and per-run JSON go into one tarball.
W=/tmp/multi_gpu; rm -rf "$W"; mkdir -p "$W"
trap 'tar -C /tmp -czf "$OUT/multi_gpu_logs.tgz" multi_gpu' EXIT
T0=$SECONDS
DEADLINE=${DEADLINE_S:-570}
left() { local l=$((DEADLINE - (SECONDS - T0))); [ "$l" -gt "$1" ] && echo "$1" || echo $((l > 5 ? l : 5)); }
N=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,clocks.max.sm,driver_version --format=csv,noheader | tee "$W/gpus.txt"
nvidia-smi topo -m > "$W/topo.txt" 2>&1
echo "== $N GPUs"
(CXX=/usr/bin/g++ CC=/usr/bin/gcc python3 -m pip install --no-build-isolation --no-deps -e . \
  > "$W/build.log" 2>&1) || { tail -30 "$W/build.log"; exit 1; }
echo "== built at $((SECONDS - T0)) s"
# Model: big enough that the GEMMs dominate; global batch scales with N.
STEPS=${MULTI_STEPS:-100}
MODEL=${MULTI_MODEL:-"--vocab 1024 --d-model 1024 --d-ff 4096 --d-expert 1024 --experts 16 --top-k 2 --seq-len 1024 --steps $STEPS --quiet"}
PER_GPU_BATCH=${PER_GPU_BATCH:-8}
train() {  # name timeout [env...] -- args
  local name=$1 t=$2; shift 2
  timeout "$t" env "$@" > "$W/train_$name.log" 2>&1
  echo "   $name rc=$? at $((SECONDS - T0)) s: $(grep -v '^W\|^I' "$W/train_$name.log" | tail -2 | tr '\n' ' ')"
}
# One run at a time (runs side by side slowed each other's host-bound steps).
# Headline layout: experts split over the GPUs (all-to-all dispatch), dense
# layers data parallel (tokens split over every GPU); then the tensor-parallel
# dense layout (mesh 1xN, tokens replicated over the model axis).
for dt in fp8 bf16; do
  echo "== train $dt on 1 GPU"
  train "${dt}_1gpu" "$(left 90)" CUDA_VISIBLE_DEVICES=0 python3 examples/sharded_moe.py $MODEL \
    --dtype $dt --mesh 1x1 --batch $PER_GPU_BATCH --json "$W/sharded_moe_${dt}_1gpu.json"
  for dp in data tensor; do
    echo "== train $dt on $N GPUs (mesh 1x$N, experts split, dense layers $dp parallel)"
    train "${dt}_${N}gpu_$dp" "$(left 90)" python3 examples/sharded_moe.py $MODEL --dtype $dt \
      --mesh 1x$N --dense-parallel $dp --batch $((PER_GPU_BATCH * N)) \
      --json "$W/sharded_moe_${dt}_${N}gpu_$dp.json" --dump-hlo "$W/hlo_${dt}_${N}gpu_$dp.txt"
  done
done
echo "== fp8 on 1 GPU again (run-to-run spread)"
train "fp8_1gpu_again" "$(left 60)" CUDA_VISIBLE_DEVICES=0 python3 examples/sharded_moe.py $MODEL \
  --dtype fp8 --mesh 1x1 --batch $PER_GPU_BATCH --json "$W/sharded_moe_fp8_1gpu_again.json"
if [ -n "$OLD_EXAMPLE" ]; then  # an earlier version of the example (a file), for comparison
  train "fp8_1gpu_old" "$(left 60)" CUDA_VISIBLE_DEVICES=0 python3 "$OLD_EXAMPLE" $MODEL \
    --dtype fp8 --mesh 1x1 --batch $PER_GPU_BATCH --json "$W/sharded_moe_fp8_1gpu_old.json"
fi
JAXGEMM_RESULTS_DIR="$OUT" python3 benchmarks/multi_gpu_summary.py "$W" "$N" | tee "$OUT/multi_summary.txt"
if [ -z "$SKIP_BENCH" ]; then
  echo "== sharded GEMM benchmark at $((SECONDS - T0)) s"
  JAXGEMM_RESULTS_DIR="$OUT" timeout "$(left 240)" python3 benchmarks/bench_sharded.py > "$W/bench_sharded.log" 2>&1
  echo "   rc=$?"; grep -v "^W\|^I" "$W/bench_sharded.log" | tail -30
fi
echo "== done at $((SECONDS - T0)) s"

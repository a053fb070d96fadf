#!/bin/bash
# The multi-GPU run (issue 7), one call on a machine with N >= 2 GPUs:
#   build; the same per-GPU batch on one GPU, FP8 and BF16 (the two one-GPU
#   runs side by side, one per GPU); sharded MoE training (experts + tensor
#   parallel over all GPUs, mesh 1xN) FP8 and BF16 -> weak-scaling efficiency,
#   loss parity, the compiled step's HLO collectives; the sharded GEMM
#   benchmark; then, if time is left, pure data parallel (mesh Nx1).
# Every step has its own timeout so the whole fits one 600 s device call
# (DEADLINE_S, default 570); logs and JSON go to $OUT as they are made.
# NVLink multicast stays off (KINDS.md).
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export JAXGEMM_RESULTS_DIR="$OUT"
T0=$SECONDS
DEADLINE=${DEADLINE_S:-570}
left() { local l=$((DEADLINE - (SECONDS - T0))); [ "$l" -gt "$1" ] && echo "$1" || echo $((l > 5 ? l : 5)); }
N=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,clocks.max.sm,driver_version --format=csv,noheader | tee "$OUT/gpus.txt"
nvidia-smi topo -m > "$OUT/topo.txt" 2>&1
echo "== $N GPUs"
(CXX=/usr/bin/g++ CC=/usr/bin/gcc python3 -m pip install --no-build-isolation --no-deps -e . \
  > "$OUT/build.log" 2>&1) || { tail -30 "$OUT/build.log"; exit 1; }
echo "== built at $((SECONDS - T0)) s"
# Model: big enough that the GEMMs dominate; global batch scales with N.
STEPS=${MULTI_STEPS:-100}
MODEL="--vocab 1024 --d-model 1024 --d-ff 4096 --d-expert 1024 --experts 16 --top-k 2 --seq-len 1024 --steps $STEPS --quiet"
PER_GPU_BATCH=${PER_GPU_BATCH:-8}
train() {  # name timeout [env...] -- args
  local name=$1 t=$2; shift 2
  timeout "$t" env "$@" > "$OUT/train_$name.log" 2>&1
  echo "   $name rc=$? at $((SECONDS - T0)) s: $(grep -v '^W\|^I' "$OUT/train_$name.log" | tail -2 | tr '\n' ' ')"
}
echo "== train on 1 GPU (fp8 on GPU 0, bf16 on GPU 1, side by side)"
for i in 0 1; do
  dt=$([ $i = 0 ] && echo fp8 || echo bf16)
  train "${dt}_1gpu" "$(left 150)" CUDA_VISIBLE_DEVICES=$i python3 examples/sharded_moe.py $MODEL \
    --dtype $dt --mesh 1x1 --batch $PER_GPU_BATCH --json "$OUT/sharded_moe_${dt}_1gpu.json" &
done
wait
for dt in fp8 bf16; do
  echo "== train $dt on $N GPUs (mesh 1x$N: experts and dense tensor parallel)"
  train "${dt}_${N}gpu" "$(left 150)" python3 examples/sharded_moe.py $MODEL --dtype $dt --mesh 1x$N \
    --batch $((PER_GPU_BATCH * N)) --json "$OUT/sharded_moe_${dt}_${N}gpu.json" \
    --dump-hlo "$OUT/hlo_${dt}_${N}gpu.txt"
done
python3 - "$OUT" "$N" <<'PY' | tee "$OUT/multi_summary.txt"
import json, sys
sys.path.insert(0, "benchmarks")
from bench_sharded import collectives_in
out, n = sys.argv[1], int(sys.argv[2])
for dt in ("fp8", "bf16"):
    try:
        a = json.load(open(f"{out}/sharded_moe_{dt}_{n}gpu.json"))
        b = json.load(open(f"{out}/sharded_moe_{dt}_1gpu.json"))
    except OSError as e:
        print(dt, "missing:", e); continue
    eff = b["median_step_s"] / a["median_step_s"]
    print(f"{dt}: {n} GPUs {a['median_step_s']*1e3:.1f} ms/step ({a['tokens_per_step']} tok), "
          f"1 GPU {b['median_step_s']*1e3:.1f} ms/step ({b['tokens_per_step']} tok): "
          f"weak-scaling efficiency {eff:.3f}; final loss {a['losses'][-1]:.4f} vs 1 GPU {b['losses'][-1]:.4f}")
    hlo = open(f"{out}/hlo_{dt}_{n}gpu.txt").read()
    print("  collectives in the step: " + ", ".join(collectives_in(hlo)))
try:
    f = json.load(open(f"{out}/sharded_moe_fp8_{n}gpu.json")); g = json.load(open(f"{out}/sharded_moe_bf16_{n}gpu.json"))
    print(f"FP8 vs BF16 final loss on {n} GPUs: {f['losses'][-1]:.4f} vs {g['losses'][-1]:.4f} "
          f"({(f['losses'][-1] / g['losses'][-1] - 1) * 100:+.2f}%), step {f['median_step_s']*1e3:.1f} vs "
          f"{g['median_step_s']*1e3:.1f} ms")
except OSError:
    pass
PY
echo "== sharded GEMM benchmark at $((SECONDS - T0)) s"
timeout "$(left 200)" python3 benchmarks/bench_sharded.py > "$OUT/bench_sharded.log" 2>&1
echo "   rc=$?"; grep -v "^W\|^I" "$OUT/bench_sharded.log" | tail -25
echo "== train fp8 data parallel (mesh ${N}x1) at $((SECONDS - T0)) s"
train "fp8_${N}gpu_dp" "$(left 150)" python3 examples/sharded_moe.py $MODEL --dtype fp8 --mesh ${N}x1 \
  --batch $((PER_GPU_BATCH * N)) --json "$OUT/sharded_moe_fp8_${N}gpu_dp.json" \
  --dump-hlo "$OUT/hlo_fp8_${N}gpu_dp.txt"
echo "== done at $((SECONDS - T0)) s"

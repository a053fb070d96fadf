#!/bin/bash
# One device session: build, smoke, GPU tests, then the steps named in $@
# (prewarm, tests, jit, sweep, bench, bench-grouped, ncu-src, sanitize, ...).
# Logs go to $OUT.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
(CXX=/usr/bin/g++ CC=/usr/bin/gcc python3 -m pip install --no-build-isolation --no-deps -e . \
  > "$OUT/build.log" 2>&1) || { tail -30 "$OUT/build.log"; exit 1; }
echo "== build ok"
export JAXGEMM_RESULTS_DIR="$OUT"
# At most 8 files come back from $OUT: on exit, everything but the results
# JSON goes into one tarball when there are more.
pack() {
  cd "$OUT" || return
  if [ "$(find . -type f | wc -l)" -gt 7 ]; then
    find . -type f ! -name '*.json' ! -name logs.tgz -print0 | tar czf logs.tgz --null -T - --remove-files
  fi
}
trap pack EXIT
for step in "$@"; do
  echo "== $step"
  case "$step" in
    probe) JAXGEMM_JIT_DEBUG=1 timeout 200 python3 tools/cluster_probe.py 2>&1 | grep -E "TFLOPS|resident" | tee "$OUT/probe.log" ;;
    profile) JAXGEMM_TIMING_DEBUG=1 XLA_FLAGS="--xla_gpu_enable_command_buffer=" JAXGEMM_PRINT_CONFIGS=1 timeout 300 python3 tools/profile_grouped.py ${PROFILE_ARGS} 2>&1 | grep -v "^WARNING\|^W1127\|^I1127" | tee "$OUT/profile.log" | tail -40 ;;
    main) XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout ${MAIN_TIMEOUT:-120} python3 -m jaxgemm ${MAIN_ARGS} 2>&1 | tee "$OUT/main.log" | grep -v "^WARNING\|^W1127\|^I1127" | tail -45 ;;
    # Compile the GPU tests' kernels (tests/data/gpu_test_specs.jsonl) on all
    # cores first: a cold test run otherwise compiles them one at a time.
    prewarm) timeout 240 python3 tools/prewarm_jit.py 2>&1 | grep -v "^\[jaxgemm" | tail -6 ;;
    jit) timeout 120 python3 benchmarks/bench_jit.py 2>&1 | grep -v "^\[jaxgemm" | tee "$OUT/jit.log" | tail -3 ;;
    smoke) timeout 120 python3 tools/gpu_smoke.py 2>&1 | grep -v "^WARNING" | tee "$OUT/smoke.log" | tail -8 ;;
    tests-k) timeout 300 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_grouped.py -k "k_grouped" 2>&1 | tee "$OUT/gpu_tests_k.log" | tail -15 ;;
    # Cold (no prewarm step before it), a selection compiles its kernels one at a
    # time: in session 17, 106 of 156 tests took the whole 330 s.
    tests-sel) timeout ${TESTS_TIMEOUT:-300} python3 -m pytest -q -p no:cacheprovider -m gpu tests -k "${TESTS_K}" 2>&1 | tee "$OUT/gpu_tests_sel.log" | tail -15 ;;
    tests) timeout ${TESTS_TIMEOUT:-540} python3 -m pytest -q -p no:cacheprovider --durations=15 -m gpu tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -25 ;;
    sweep) timeout 420 python3 benchmarks/sweep_dense.py --top ${SWEEP_TOP:-8} ${SWEEP_ARGS} 2>&1 | tee "$OUT/sweep.log" | grep -v "^WARNING" | tail -40 ;;
    bench) timeout 480 python3 benchmarks/bench_dense.py ${BENCH_ARGS} 2>&1 | tee "$OUT/bench${BENCH_TAG:+_$BENCH_TAG}.log" | grep -v "^WARNING\|^  " | tail -60 ;;
    # Source A/B without a rebuild: AB_SRCS="tag:dir ..." (kernels are
    # JIT-compiled from JAXGEMM_SOURCE_DIR; the cache key hashes the sources).
    sweep-ab)
      # SWEEP_ARGS may hold several argument sets separated by '|'.
      IFS='|' read -ra arg_sets <<< "${SWEEP_ARGS}"
      for args in "${arg_sets[@]}"; do
        only=""  # an argument set may start with "only=tag1,tag2 " to limit the sources
        if [[ $args == only=* ]]; then only=",${args%% *},"; only=${only/only=/}; args=${args#* }; fi
        for pair in ${AB_SRCS:-new:src_cuda}; do
          tag=${pair%%:*}; dir=${pair#*:}
          [[ -n $only && $only != *",$tag,"* ]] && continue
          JAXGEMM_SOURCE_DIR=$PWD/$dir timeout ${SWEEP_TIMEOUT:-300} python3 benchmarks/sweep_dense.py --tag "$tag" $args 2>&1 \
            | tee -a "$OUT/sweep_ab.log" | grep -E "^$tag |ERROR|Error|error" | tail -${SWEEP_TAIL:-12}
        done
      done ;;
    bench-only) AB_N=$((AB_N + 1)); timeout 300 python3 benchmarks/bench_dense.py --only-jaxgemm ${AB_ARGS:---sets dense_fp8_nt} 2>&1 | tee "$OUT/bench_only_$AB_N.log" | grep -v "^WARNING\|^  " | tail -28 ;;
    # Kernel A/B: swap-old puts the sources saved in .devcarry/*_old.cuh over
    # src_cuda/ (kernels are JIT-compiled from there; the cache key hashes
    # them), swap-new puts the current ones back.
    swap-old) mkdir -p /tmp/src_new && cp src_cuda/*.cuh /tmp/src_new/ &&
              for f in .devcarry/*_old.cuh; do b=$(basename "$f" _old.cuh); cp "$f" "src_cuda/$b.cuh"; echo "  old $b.cuh"; done ;;
    swap-new) cp /tmp/src_new/*.cuh src_cuda/ ;;
    racecheck)
      # Each target's filter must instrument every cluster kernel its script
      # launches: racecheck (2025.3.1) faults on cluster kernels it runs
      # uninstrumented (benchmarks/results/logs/racecheck_cluster_bisect_*).
      # SAN_SRC: a kernel source folder to check instead of src_cuda/.
      [ -n "$SAN_SRC" ] && export JAXGEMM_SOURCE_DIR=$PWD/$SAN_SRC
      for target in ${SAN_TARGETS:-dense:gemm_nt grouped:grouped}; do
        script=${target%%:*}; filter=${target#*:}
        timeout ${SAN_TIMEOUT:-280} /usr/local/cuda/bin/compute-sanitizer --tool racecheck --kernel-name kns=$filter \
          python3 tools/sanitize_$script.py > "$OUT/sanitize_${script}_racecheck.log" 2>&1
        echo "$script racecheck rc=$?"
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sweep done" "$OUT/sanitize_${script}_racecheck.log" | tail -3
      done ;;
    # Skewed m-grouped rows under forced tile configs (ZIPF_ARGS: tools/sweep_zipf.py's).
    zipf) XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout ${ZIPF_TIMEOUT:-300} python3 tools/sweep_zipf.py ${ZIPF_ARGS} 2>&1 | tee -a "$OUT/sweep_zipf.log" | grep -E "^(zipf|balanced)|rror|wrote" ;;
    # Masked m-grouped rows under forced tile configs (MASKED_ARGS: tools/sweep_masked.py's).
    masked) XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout ${MASKED_TIMEOUT:-300} python3 tools/sweep_masked.py ${MASKED_ARGS} 2>&1 | tee -a "$OUT/sweep_masked.log" | grep -E "^[0-9]|^  |rror|wrote" ;;
    # Nsight Compute on the Zipf-256 FP8 kernel the heuristic picks (clocks left alone).
    ncu-zipf)
      XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout ${NCU_TIMEOUT:-240} /usr/local/cuda/bin/ncu --clock-control none --kernel-name regex:m_grouped_${NCU_DTYPE:-fp8} \
        --launch-skip 1 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
        --section WarpStateStats --section SchedulerStats --section LaunchStats \
        python3 tools/sweep_zipf.py --ncu --rows zipf256 --dtypes ${NCU_DTYPE:-fp8} --configs ${NCU_CONFIG:-heuristic} \
        > "$OUT/ncu_zipf_${NCU_DTYPE:-fp8}.txt" 2>&1
      echo "ncu rc=$?"
      grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Hit Rate|Compute \(SM\) Throughput|Stall|Issued Warp" "$OUT/ncu_zipf_${NCU_DTYPE:-fp8}.txt" | head -24 ;;
    bench-grouped) XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout 480 python3 benchmarks/bench_grouped.py ${GROUPED_ARGS} 2>&1 | tee "$OUT/bench_grouped.log" | grep -v "^WARNING\|^  " | tail -50 ;;
    train) timeout 480 bash -c 'python3 examples/train_moe.py --dtype fp8 --config small --steps ${TRAIN_STEPS:-300} --out $OUT/train_fp8.json && python3 examples/train_moe.py --dtype bf16 --config small --steps ${TRAIN_STEPS:-300} --out $OUT/train_bf16.json && python3 examples/train_moe.py --steps 0 --plot $OUT/train_loss.png --compare $OUT/train_fp8.json $OUT/train_bf16.json' 2>&1 | tee "$OUT/train.log" | tail -15 ;;
    # Nsight Compute with per-SASS-instruction stall samples of one dense
    # FP8 kernel per config (NCU_CFGS) and mode (NCU_MODES: bf16, the default,
    # acc-row, acc-block; tools/ncu_dense.py) on NCU_SHAPE.
    ncu-src)
      for mode in ${NCU_MODES:-bf16}; do
      for cfg in ${NCU_CFGS:-256x128x3c2}; do
        tag=${cfg}_$mode
        timeout ${NCU_TIMEOUT:-240} /usr/local/cuda/bin/ncu --kernel-name regex:fp8_gemm_nt --launch-skip 2 --launch-count 1 \
          --section SpeedOfLight --section WarpStateStats --section SourceCounters --section ComputeWorkloadAnalysis \
          --section MemoryWorkloadAnalysis -o "$OUT/ncu_$tag" -f python3 tools/ncu_dense.py ${NCU_SHAPE:-4096x7168x16384} $cfg \
          $mode > "$OUT/ncu_$tag.log" 2>&1
        echo "ncu $tag rc=$?"
        /usr/local/cuda/bin/ncu -i "$OUT/ncu_$tag.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_src_$tag.csv" 2>&1
        /usr/local/cuda/bin/ncu -i "$OUT/ncu_$tag.ncu-rep" --page details > "$OUT/ncu_details_$tag.txt" 2>&1
        grep -E "Duration|Compute \(SM\) Throughput|L1/TEX Cache|Issue Slots" "$OUT/ncu_details_$tag.txt" | head -8
      done
      done ;;
    # A prepared script (SCRIPT=path; it sees $OUT) under this call's build and log packing:
    # several device_run.sh invocations in one call would overwrite each other's logs.tgz.
    script) timeout ${SCRIPT_TIMEOUT:-540} bash "${SCRIPT}" 2>&1 | tee "$OUT/script.log" | tail -${SCRIPT_TAIL:-40} ;;
    sanitize)
      # Dense kernels (names contain gemm_nt: fp8, bf16 and the ping-pong; m-grouped ones contain
      # "grouped" and are covered by the grouped pass, with bad group sizes).
      for target in "dense:gemm_nt" "grouped:grouped"; do
        script=${target%%:*}; filter=${target#*:}
        for tool in memcheck racecheck; do
          timeout 280 /usr/local/cuda/bin/compute-sanitizer --tool $tool --kernel-name kns=$filter \
            python3 tools/sanitize_$script.py > "$OUT/sanitize_${script}_$tool.log" 2>&1
          echo "$script $tool rc=$?"
          grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sweep done" "$OUT/sanitize_${script}_$tool.log" | tail -3
        done
      done ;;
  esac
done

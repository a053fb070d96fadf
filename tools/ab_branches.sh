#!/bin/bash
# Same-call A/B of several git branches on the device: for each "tag:branch"
# in $AB_BRANCHES (in order), check the branch out into its own worktree,
# build and install it, run the GPU tests matching $AB_TESTS_K (if set) and
# the dense sweep with $AB_SWEEP_ARGS (tagged with the tag), then put the
# repository's own tree back.  Per-tag environment: AB_ENV_<tag>="VAR=value
# ..." (e.g. AB_ENV_rows="JAXGEMM_TMA_SCALES=2"); per-tag tests:
# AB_TESTS_K_<tag> (empty: none).  AB_GROUPED_ARGS (e.g.
# "--sets k_grouped_wgrad"): also benchmarks/bench_grouped.py per branch,
# tagged results JSON.  Logs and sweep JSON go to $OUT.  Example (one device
# call):
#
#   AB_BRANCHES="main:main pipe:next/pipelined-uniform-wgmma" \
#   AB_TESTS_K="scale_path or fp8_configs or contiguous or k_grouped" \
#   AB_SWEEP_ARGS="--sets dense_fp8_nt --shapes 4096x7168x16384 --configs 128x128x5c2,256x128x3c2" \
#   tools/ab_branches.sh
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export JAXGEMM_RESULTS_DIR="$OUT"
root=$(pwd)
install() {  # install the tree in $1, log to $2
  (cd "$1" && CXX=/usr/bin/g++ CC=/usr/bin/gcc python3 -m pip install --no-build-isolation \
    --no-deps -e . > "$2" 2>&1) || { echo "build failed: $2"; tail -20 "$2"; return 1; }
}
for pair in ${AB_BRANCHES:?set AB_BRANCHES to \"tag:branch ...\"}; do
  tag=${pair%%:*}; branch=${pair#*:}
  wt=/tmp/wt_$tag
  if [ "$branch" = "." ]; then wt=$root
  elif [[ $branch == @* ]]; then
    # "@file.tar": a tree from `git archive` (the device's .git may lack the
    # branch); its commit in a .commit file inside the archive.
    rm -rf "$wt"; mkdir -p "$wt" && tar xf "${branch#@}" -C "$wt" || { echo "no archive $branch"; continue; }
  else
    rm -rf "$wt"; git worktree prune
    git worktree add -f "$wt" "$branch" > /dev/null 2>&1 || { echo "no branch $branch"; continue; }
  fi
  commit=$(cat "$wt/.commit" 2>/dev/null || git -C "$wt" rev-parse --short HEAD)
  echo "== $tag ($branch, $commit)"
  install "$wt" "$OUT/build_$tag.log" || continue
  envvar="AB_ENV_$tag"
  (
    cd "$wt" || exit 1
    # shellcheck disable=SC2163
    for kv in ${!envvar}; do export "$kv"; done
    export JAXGEMM_COMMIT=$commit
    # AB_TESTS_K_<tag> (even empty) overrides AB_TESTS_K for that tag.
    tests_var="AB_TESTS_K_$tag"
    tests_k=${!tests_var-$AB_TESTS_K}
    if [ -n "$tests_k" ]; then
      # The tests' kernels compiled on all cores first (tools/prewarm_jit.py).
      [ -f tests/data/gpu_test_specs.jsonl ] && timeout 240 python3 tools/prewarm_jit.py 2>&1 \
        | grep -v "^\[jaxgemm" | tail -2
      timeout "${AB_TESTS_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider -m gpu tests \
        -k "$tests_k" > "$OUT/gpu_tests_$tag.log" 2>&1
      echo "tests rc=$? $(tail -1 "$OUT/gpu_tests_$tag.log")"
    fi
    # AB_SWEEP_ARGS_<tag> / AB_GROUPED_ARGS_<tag> (even empty) override the
    # shared arguments for that tag.
    sweep_var="AB_SWEEP_ARGS_$tag"; sweep_args=${!sweep_var-$AB_SWEEP_ARGS}
    grouped_var="AB_GROUPED_ARGS_$tag"; grouped_args=${!grouped_var-$AB_GROUPED_ARGS}
    if [ -n "$sweep_args" ]; then
      # shellcheck disable=SC2086
      timeout "${AB_SWEEP_TIMEOUT:-200}" python3 benchmarks/sweep_dense.py --tag "$tag" \
        $sweep_args 2>&1 | tee -a "$OUT/sweep_ab.log" | grep -E "^fp8_|^bf16_|rror" | tail -12
    fi
    if [ -n "$grouped_args" ]; then
      # shellcheck disable=SC2086
      XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout "${AB_GROUPED_TIMEOUT:-240}" \
        python3 benchmarks/bench_grouped.py $grouped_args > "$OUT/bench_grouped_$tag.log" 2>&1
      echo "grouped rc=$?"
      grep -E "^  [^ ].*: jaxgemm" "$OUT/bench_grouped_$tag.log" \
        | sed "s/^/$tag /" | head -30
      for f in "$OUT"/grouped_*.json; do [ -e "$f" ] && mv "$f" "$OUT/${tag}_$(basename "$f")"; done
    fi
  )
done
install "$root" "$OUT/build_root.log" > /dev/null

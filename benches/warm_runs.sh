#!/usr/bin/env bash
# Cold against warm runs, end to end: per job (benches/jobs names), five
# rounds, each from an empty cache: the first run, the second, the third,
# --mode optimized (front end cached) and native clang-19 -O3
# -march=native. Prints medians (s), the third run's ratio to native, the
# last third run's cache lookups (its --stats line), and the geometric
# mean and maximum of third/native. Run after `cargo build --release`, on
# a quiet machine:
#
#   benches/warm_runs.sh fib hot_call nbody spectral_norm stencil matmul \
#     gemm heat3d jacobi2d lu dp_triangle main_nest
set -euo pipefail
cd "$(dirname "$0")/.."
tierjit=${TIERJIT:-target/release/tierjit}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
for job in "$@"; do
  source=benches/jobs/$job.c
  clang-19 -O3 -march=native -w "$source" -o "$scratch/native" -lm
  for round in 1 2 3 4 5; do
    export TIERJIT_CACHE_DIR=$scratch/cache
    rm -rf "$TIERJIT_CACHE_DIR"
    seconds "$tierjit" run "$source" 2>/dev/null >>"$scratch/first"
    seconds "$tierjit" run "$source" 2>/dev/null >>"$scratch/second"
    seconds "$tierjit" run "$source" --stats 2>"$scratch/third-stats" >>"$scratch/third"
    seconds "$tierjit" run "$source" --mode optimized 2>/dev/null >>"$scratch/optimized"
    seconds "$scratch/native" 2>/dev/null >>"$scratch/native-times"
  done
  third=$(median <"$scratch/third")
  native=$(median <"$scratch/native-times")
  ratio=$(echo "$third / $native" | bc -l)
  echo "$ratio" >>"$scratch/ratios"
  printf "%-14s cold %.3f  second %.3f  third %.3f  optimized %.3f  native %.3f  third/native %.2f\n" "$job" \
    "$(median <"$scratch/first")" "$(median <"$scratch/second")" "$third" \
    "$(median <"$scratch/optimized")" "$native" "$ratio"
  grep -h '^  cache:' "$scratch/third-stats" | sed 's/^  /               third run /' || true
  rm -f "$scratch"/first "$scratch"/second "$scratch"/third "$scratch"/optimized "$scratch"/native-times
done
awk '{ s += log($1); if ($1 > m) m = $1 } END { if (NR) printf "third/native: geomean %.3f, max %.3f over %d job(s)\n", exp(s / NR), m, NR }' "$scratch/ratios"

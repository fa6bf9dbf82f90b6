#!/usr/bin/env bash
# Cold against warm runs, end to end: per job (benches/jobs names), five
# rounds, each from an empty cache: the first run, the second, the third,
# --mode optimized (front end cached) and native clang-19 -O3
# -march=native. Prints medians (s). Run after `cargo build --release`,
# on a quiet machine:
#
#   benches/warm_runs.sh nbody stencil heat3d dp_triangle hot_call
set -euo pipefail
cd "$(dirname "$0")/.."
tierjit=${TIERJIT:-target/release/tierjit}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
for job in "$@"; do
  source=benches/jobs/$job.c
  clang-19 -O3 -march=native -w "$source" -o "$scratch/native" -lm
  for round in 1 2 3 4 5; do
    export TIERJIT_CACHE_DIR=$scratch/cache
    rm -rf "$TIERJIT_CACHE_DIR"
    seconds "$tierjit" run "$source" >>"$scratch/first"
    seconds "$tierjit" run "$source" >>"$scratch/second"
    seconds "$tierjit" run "$source" >>"$scratch/third"
    seconds "$tierjit" run "$source" --mode optimized >>"$scratch/optimized"
    seconds "$scratch/native" >>"$scratch/native-times"
  done
  printf "%-14s cold %.3f  second %.3f  third %.3f  optimized %.3f  native %.3f\n" "$job" \
    "$(median <"$scratch/first")" "$(median <"$scratch/second")" "$(median <"$scratch/third")" \
    "$(median <"$scratch/optimized")" "$(median <"$scratch/native-times")"
  rm -f "$scratch"/first "$scratch"/second "$scratch"/third "$scratch"/optimized "$scratch"/native-times
done

#!/usr/bin/env bash
# Regenerates link/order.txt: the functions tierjit executes when it
# starts, on a warm run and on a cold one, in that order, for build.rs to
# hand to the linker (see `order_functions` there).
#
# Why: LLVM's static constructors and the code a run calls are spread over
# 30 MB of text. Each page fault maps the 64 KB around it, so a run mapped
# about 24 MB of it, and the exit unmapped it again. Laid out together,
# `tierjit --help` maps about 6 MB.
#
# How: callgrind lists every function a run executes. The runs are
# `tierjit --help`, a cold tiered run of benches/jobs/stencil.c that
# compiles at O3 and fills a fresh cache, and a warm run of it that loads
# everything from there. The warm run's functions come right after the
# start-up's, then the cold run's; within a run, in the order callgrind's
# profile first names them, which is not the order they ran in (grouping
# them is what saves the pages). Rust symbols carry a hash that changes
# with every edit, so only the others are kept: LLVM's, the C++
# library's, the C library's static parts.
#
# Run on the machine kind CI builds on (Debian's LLVM 19 archives), after
# `TIERJIT_LINK_ORDER=0 cargo build --release`, with valgrind and python3
# installed. Takes a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."
tierjit=${TIERJIT:-target/release/tierjit}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export TIERJIT_CACHE_DIR=$scratch/cache
grind() {
  local out=$1
  shift
  valgrind --tool=callgrind --demangle=no --smc-check=all-non-file \
    --callgrind-out-file="$scratch/$out" "$tierjit" "$@" >/dev/null 2>"$scratch/$out.log"
}
# Batch tier-up at the 50th call: the compiles happen under valgrind too.
job=(run benches/jobs/stencil.c --events --set thresholds.calls=50
  --set compiler.background=false -- 2000)
grind help --help
grind cold "${job[@]}"
grind warm "${job[@]}"
# (valgrind's CPU is not the host's: the cold run under it fills the cache
# the warm one reads.)
if ! grep -q "cache hit optimized" "$scratch/warm.log"; then
  echo "the warm run loaded no optimized object:" >&2
  cat "$scratch/warm.log" >&2
  exit 1
fi
python3 - "$scratch/help" "$scratch/warm" "$scratch/cold" "$(basename "$tierjit")" >"$scratch/order.txt" <<'EOF'
import re, sys

*paths, binary = sys.argv[1:]

def executed(path):
    """Functions of the tierjit binary a callgrind profile names, in the
    order the file first names them (callgrind compresses a name to its
    number after the first use; `cfn=` lines name callees)."""
    objects, functions, order = {}, {}, []
    current, callee_object = None, None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, number, name = m.groups()
            if name:
                objects[number] = name
            if kind == "ob":
                current, callee_object = objects.get(number), None
            else:
                callee_object = objects.get(number)
            continue
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line)
        if not m:
            continue
        kind, number, name = m.groups()
        obj = current if kind == "fn" else (callee_object or current)
        if name:
            functions[number] = (name.split("'")[0], obj)
        if kind == "cfn":
            callee_object = None
        name, obj = functions.get(number, (None, None))
        if name and obj and obj.endswith("/" + binary):
            order.append(name)
    return order

seen = set()
for path in paths:
    for name in executed(path):
        # A hash, then perhaps a suffix of LLVM's (`.llvm.123`).
        rust = re.search(r"17h[0-9a-f]{16}E(\.|$)", name) or name.startswith("_R")
        if name in seen or rust or name.startswith("0x"):
            continue
        seen.add(name)
        print(name)
EOF
mv "$scratch/order.txt" link/order.txt
wc -l link/order.txt

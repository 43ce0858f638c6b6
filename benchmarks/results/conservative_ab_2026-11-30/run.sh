#!/usr/bin/env bash
# The before/after comparison of benchmarks/RESULTS.md, "Conservative MD: the gradient of the descriptor sum":
# 0ed5d18 (before) and 93aef75 (after) take turns for two rounds, each in its own worktree.
#   bash benchmarks/results/conservative_ab_2026-11-30/run.sh [OUT]
# The recorded run's after side also timed a `conservative_whole` driver (the energy network all at once, against
# it in cache-sized blocks), a variant that was not kept; the driver went with it, so this script times
# `conservative` alone. The before side stops at 108,000 atoms: its gradient asks for 41 GB.
set -u
out=${1:-/tmp/ab_cons}
root=$(git rev-parse --show-toplevel)
mkdir -p "$out"
for rev in 0ed5d18 93aef75; do
  [ -d "/tmp/ab_cons_$rev" ] || git -C "$root" worktree add -q "/tmp/ab_cons_$rev" "$rev"
done
for round in 1 2; do
  for side in head:0ed5d18 now:93aef75; do
    name=${side%%:*}; rev=${side##*:}
    (cd "/tmp/ab_cons_$rev" && python -m benchmarks.md_throughput --drivers=conservative --cells=10,20,30 --steps=5 \
       --repeats=3 --out="$out/${name}_r$round.json" > "$out/${name}_r$round.log" 2>&1)
  done
done

#!/bin/bash
# Network MD before and after, on one machine: alternates the same command,
#   python -m benchmarks.md_throughput --drivers=lj_cut,network
# between earlier commits (each in a temporary git worktree) and this checkout, ROUNDS times (default 2), so that
# both see the same machine and, round by round, much the same load. JSON files go to OUTDIR as
# <label>_r<round>.json, the label being the commit's short hash or "now".
#
#   bash benchmarks/ab_md_throughput.sh OUTDIR COMMIT [COMMIT ...]
#
# Python: $PYTHON, else the one on PATH (it needs this package's dependencies; each side imports its own code,
# since the command runs from that side's root).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash benchmarks/ab_md_throughput.sh OUTDIR COMMIT [COMMIT ...]" >&2
  exit 2
fi
out=$(realpath -m "$1"); shift
root=$(git rev-parse --show-toplevel)
py=${PYTHON:-python}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'for d in "$tmp"/*; do git -C "$root" worktree remove --force "$d" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
sides=()
for commit in "$@"; do
  label=$(git -C "$root" rev-parse --short "$commit")
  git -C "$root" worktree add --detach --quiet "$tmp/$label" "$commit"
  sides+=("$label=$tmp/$label")
done
sides+=("now=$root")
for round in $(seq 1 "${ROUNDS:-2}"); do
  for side in "${sides[@]}"; do
    label=${side%%=*}; dir=${side#*=}
    echo "== round $round: $label ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))"
    (cd "$dir" && "$py" -m benchmarks.md_throughput --drivers=lj_cut,network --out="$out/${label}_r${round}.json" \
      2>&1 | grep "atoms\|wrote")
  done
done

set -u
out=/work/main/benchmarks/results/ab_md_2026-12-01
mkdir -p $out
cd /work/main && git worktree add --detach -q /tmp/wt_b24 b24cc98
for r in 1 2; do
  for side in b24cc98=/tmp/wt_b24 now=/work/main; do
    label=${side%%=*}; dir=${side#*=}
    echo "== round $r: $label ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))"
    (cd $dir && /work/main/.venv/bin/python -m benchmarks.md_throughput --cells=10 --drivers=lj_cut,network --out=$out/${label}_r$r.json 2>&1 | grep "atoms  ")
  done
done
cd /work/main && git worktree remove --force /tmp/wt_b24

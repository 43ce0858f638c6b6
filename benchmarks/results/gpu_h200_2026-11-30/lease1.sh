#!/usr/bin/env bash
# One GPU lease (run through .device/on-gpu.sh): the accelerator check's stages, sized to ~560 s, then a tarball.
set -u
O=/tmp/acc; A=benchmarks/accelerator.sh; T0=$SECONDS; mkdir -p $O
left() { echo $(( 560 - (SECONDS - T0) )); }
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv > $O/nvidia-smi.csv 2>&1
STAGES=info bash $A $O
STAGE_TIMEOUT=200 MD_CELLS=20,63 MD_DRIVERS=lj_cut,network STAGES=md bash $A $O
STAGE_TIMEOUT=150 STAGES=time bash $A $O
t=$(left); echo "lease: $t s left for the tests"
[ "$t" -gt 30 ] && STAGE_TIMEOUT=$t PYTEST_ARGS="-n 14 --tb=short -rfE" STAGES=tests bash $A $O
t=$(left); echo "lease: $t s left"
if [ "$t" -gt 100 ]; then
  mkdir -p $O/cons
  STAGE_TIMEOUT=$((t - 10)) MD_CELLS=20,63 MD_DRIVERS=conservative STAGES=md bash $A $O/cons
fi
tar czf "$OUT/acc.tgz" -C /tmp acc
cp $O/md_throughput.json $O/time_to_accuracy.json "$OUT/" 2>/dev/null
grep -h "md_throughput:\|time_to_accuracy:\|passed\|failed\|exit " $O/*.log $O/cons/*.log 2>/dev/null | tail -60
echo "lease: done after $((SECONDS - T0)) s"

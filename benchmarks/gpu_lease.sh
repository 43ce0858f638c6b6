#!/usr/bin/env bash
# What the next 15-minute GPU lease runs, in one call of about 560 s (through the device tool's
# `.device/on-gpu.sh`, which sets $OUT): first whether the fused Pallas kernels compile and agree on the GPU, and
# whether eq. 9's one threshold (docs/decisions.md §17) gives the 0.1 model's forces there; then the fused sums
# against XLA's at 32,000 and 1M atoms, alone, with the network (benchmarks.descriptor_sum) and in MD beside lj/cut
# (benchmarks.md_throughput); then as much of the whole suite as the time left allows. Logs, JSON and a tarball
# of everything go to $OUT; a summary of the figures is printed last.
#
#   bash .device/on-gpu.sh bash benchmarks/gpu_lease.sh         # on the device machine
#   OUT=/tmp/out LEASE_S=60 bash benchmarks/gpu_lease.sh         # a dry run on a CPU (interpreted kernels)
set -u
out=${OUT:?set OUT to the folder whose files come back}
O=/tmp/lease; A=benchmarks/accelerator.sh; T0=$SECONDS; budget=${LEASE_S:-560}
mkdir -p "$O"
left() { echo $(( budget - (SECONDS - T0) )); }
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv > "$O/nvidia-smi.csv" 2>&1
STAGES=info bash $A "$O"
echo "== kernels and eq. 9 on this device ($(left) s left)"
timeout 120 python -m pytest -q -p no:cacheprovider -n "${WORKERS:-14}" --tb=short -rfE tests/test_kernels.py \
  tests/test_models.py > "$O/tests_kernels.log" 2>&1
tail -5 "$O/tests_kernels.log"
echo "== sums ($(left) s left)"
timeout 170 python -m benchmarks.descriptor_sum --cells="${SUM_CELLS:-20,63}" --repeats=3 \
  --pallas_rows="${PALLAS_ROWS:-16,32,64,128,32x2,64x2}" --out="$O/descriptor_sum.json" > "$O/sums.log" 2>&1
echo "== md ($(left) s left)"
timeout 170 python -m benchmarks.md_throughput --cells="${MD_CELLS:-20,63}" --steps=20 --repeats=3 \
  --drivers="${MD_DRIVERS:-lj_cut,network,network_pallas,conservative,conservative_pallas}" \
  --out="$O/md_throughput.json" > "$O/md.log" 2>&1
t=$(left); echo "== the whole suite ($t s left)"
[ "$t" -gt 40 ] && timeout $((t - 15)) python -m pytest -q -p no:cacheprovider -n "${WORKERS:-14}" --tb=short -rfE \
  --junitxml="$O/tests.xml" > "$O/tests.log" 2>&1
tar czf "$out/lease.tgz" -C /tmp lease
cp "$O"/*.json "$out/" 2>/dev/null
grep -h "descriptor_sum:\|md_throughput:\|passed\|failed\|error" "$O"/sums.log "$O"/md.log "$O"/tests*.log 2>/dev/null \
  | grep -v "^I1\|^W1\|Warning" | tail -70
echo "lease: done after $((SECONDS - T0)) s"

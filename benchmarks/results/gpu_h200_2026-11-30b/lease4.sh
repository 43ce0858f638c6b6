#!/usr/bin/env bash
# The session's second GPU call (~225 s, after benchmarks/gpu_lease.sh's 555 s): network MD at 1M atoms with the
# new default (sum_kernel "auto": the fused kernel on an NVIDIA GPU) beside lj/cut; the fused sum's parts (pair
# terms alone, the kernel alone) and more of its variants (rows a program x stages x warps); then the tests the
# first call did not reach, and the tests of "auto".
#   bash .device/on-gpu.sh bash benchmarks/results/gpu_h200_2026-11-30b/lease4.sh
set -u
out=${OUT:?}; T0=$SECONDS; budget=${LEASE_S:-225}; D=benchmarks/results/gpu_h200_2026-11-30b
left() { echo $(( budget - (SECONDS - T0) )); }
echo "== md ($(left) s left)"
timeout 75 python -m benchmarks.md_throughput --cells="${MD_CELLS:-63}" --steps=20 --repeats=3 \
  --drivers="${MD_DRIVERS:-lj_cut,network}" --out="$out/md_throughput_default.json" > "$out/md.log" 2>&1
echo "md exit $?"; grep "md_throughput:" "$out/md.log"
echo "== sums ($(left) s left)"
timeout 80 python -m benchmarks.descriptor_sum --cells="${SUM_CELLS:-63}" --repeats=3 --network=false --parts \
  --pallas_rows="${PALLAS_ROWS:-16,32,32x1x8,32x2}" --out="$out/descriptor_sum_parts.json" > "$out/sums.log" 2>&1
echo "sums exit $?"; grep "descriptor_sum:" "$out/sums.log"
t=$(( $(left) - 8 )); echo "== tests ($t s)"
mapfile -t ids < "$D/tests_not_reached_in_lease3.txt"
[ "$t" -gt 20 ] && timeout "$t" python -m pytest -v -p no:cacheprovider -n "${WORKERS:-14}" --tb=short -rfE \
  "${ids[@]}" > "$out/tests.log" 2>&1
echo "tests exit $?"; grep -c " PASSED " "$out/tests.log"
grep -h "FAILED\|ERROR\| passed\| failed" "$out/tests.log" | tail -25
echo "lease4: done after $((SECONDS - T0)) s"

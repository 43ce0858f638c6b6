#!/usr/bin/env bash
# This session's second GPU call (~520 s): what lease 5 could not see, then what earlier leases did not reach.
#  1. one chunk of network MD at 1M atoms under jax's profiler with XLA's command buffers off, so that each
#     kernel is seen (lease 5's profile, with them on, saw 12 of the step's 67 ms), and the optimized HLO of
#     that chunk (XLA's fusions) kept for reading offline;
#  2. time to 0.00118 eV/A on four atoms, :accurate recipe (lease 1's 81 s held a compilation since moved out
#     of the clock);
#  3. the tests no earlier lease reached (tests_not_reached_in_leases_3_4.txt), -n 14;
#  4. in the time left, training throughput at GPU batch sizes.
# ONLY_PROFILE=1 stops after 1.
#   LEASE_COMMIT=$(git rev-parse --short HEAD) bash .device/on-gpu.sh bash benchmarks/results/gpu_h200_2026-11-30c/lease6.sh
set -u
out=${OUT:?}; T0=$SECONDS; budget=${LEASE_S:-520}; D=benchmarks/results/gpu_h200_2026-11-30c
O=/tmp/lease; rm -rf "$O"; mkdir -p "$O"
left() { echo $(( budget - (SECONDS - T0) )); }
echo "${LEASE_COMMIT:-unknown}" > "$O/commit.txt"
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv > "$O/nvidia-smi.csv" 2>&1

echo "== 1. profile ($(left) s left)"
XLA_FLAGS="--xla_gpu_enable_command_buffer= --xla_dump_to=$O/hlo --xla_dump_hlo_module_re=.*chunk.*" \
  timeout "${PROF_T:-90}" python -m benchmarks.md_throughput --cells="${MD_CELLS:-63}" --steps=10 --repeats=1 \
  --drivers=network --profile="${PROFILE_TOP:-45}" --out="$O/md_profile.json" > "$O/md_profile.log" 2>&1
echo "profile exit $?"; grep -v "^W1\|^I1\|warn\|_reduction\|convert_element" "$O/md_profile.log" | head -60
find "$O/hlo" -name "*after_optimizations.txt" | head; rm -f "$O"/hlo/*before_optimizations* 2>/dev/null
du -sh "$O/hlo" 2>/dev/null

if [ -n "${ONLY_PROFILE:-}" ]; then  # a short call: the profile alone
  tar czf "$out/lease.tgz" -C /tmp lease; cp "$O"/*.json "$out/" 2>/dev/null
  echo "lease6: profile only, done after $((SECONDS - T0)) s"; exit 0
fi

echo "== 2. time to accuracy ($(left) s left)"
timeout "${TIME_T:-130}" python -m benchmarks.time_to_accuracy --config=experiments/configs/four_body.py:accurate \
  --out="$O/time_to_accuracy.json" > "$O/time.log" 2>&1
echo "time exit $?"; grep -v "^W1\|^I1\|warn" "$O/time.log" | tail -8

t=$(( $(left) - ${TRAIN_T:-60} - 15 )); echo "== 3. tests ($t s)"
mapfile -t ids < "$D/tests_not_reached_in_leases_3_4.txt"
[ "$t" -gt 20 ] && timeout "$t" python -m pytest -v -p no:cacheprovider -n "${WORKERS:-14}" --tb=short -rfE \
  "${ids[@]}" > "$O/tests.log" 2>&1
echo "tests exit $?"; grep -c " PASSED " "$O/tests.log"
grep -h "FAILED\|ERROR\| passed\| failed" "$O/tests.log" | tail -25

t=$(( $(left) - 12 )); echo "== 4. training ($t s)"
[ "$t" -gt 20 ] && timeout "$t" python -m benchmarks.training_throughput --batch_sizes=256,4096,65536 \
  --dtypes=float32 --out="$O/training_throughput.json" > "$O/training.log" 2>&1
echo "training exit $?"; grep -v "^W1\|^I1\|warn" "$O/training.log" | grep "training_throughput:" | tail -20
tar czf "$out/lease.tgz" -C /tmp lease
cp "$O"/*.json "$out/" 2>/dev/null
echo "lease6: done after $((SECONDS - T0)) s"

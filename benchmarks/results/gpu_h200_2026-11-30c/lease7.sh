#!/usr/bin/env bash
# This session's third GPU call (~430 s), after the kernels read and write atoms-first layouts (lease 6's profile:
# XLA computed the pair terms transposed for the columns-first kernel):
#  1. network MD at 1M atoms with the new default, lj/cut and the conservative network in the same run;
#  2. tests/test_kernels.py (the kernels on the GPU against XLA's sums) and the tests no earlier lease reached,
#     with time to 0.00118 eV/A (four atoms, :accurate) beside them (so on a shared GPU);
#  3. network MD with the code before the change (f827ed9, carried in $OLD), for a before/after on one machine;
#  4. in the time left, the new network MD's profile with XLA's command buffers off.
#   git archive f827ed9 unitary_enn benchmarks/{__init__,common,md_throughput,profile}.py | tar -x -C .device/old
#   LEASE_COMMIT=$(git rev-parse --short HEAD) bash .device/on-gpu.sh bash benchmarks/results/gpu_h200_2026-11-30c/lease7.sh
set -u
out=${OUT:?}; T0=$SECONDS; budget=${LEASE_S:-430}; D=benchmarks/results/gpu_h200_2026-11-30c; OLD=${OLD:-.device/old}
O=/tmp/lease; rm -rf "$O"; mkdir -p "$O"
left() { echo $(( budget - (SECONDS - T0) )); }
quiet() { grep -v "^W1\|^I1\|UserWarning\|_reduction(\|convert_element_type(\|warnings.warn" "$@"; }
echo "${LEASE_COMMIT:-unknown}" > "$O/commit.txt"
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv > "$O/nvidia-smi.csv" 2>&1
cells=${MD_CELLS:-63}

echo "== 1. md, new ($(left) s left)"
timeout "${MD_T:-150}" python -m benchmarks.md_throughput --cells="$cells" --steps=20 --repeats=3 \
  --drivers=lj_cut,network,conservative --out="$O/md_throughput.json" > "$O/md.log" 2>&1
echo "md exit $?"; grep "md_throughput:" "$O/md.log"

echo "== 2. tests, time to accuracy beside them ($(left) s left)"
mapfile -t ids < "$D/tests_not_reached_in_leases_3_4.txt"
timeout "${TIME_T:-150}" python -m benchmarks.time_to_accuracy --config="experiments/configs/four_body.py:${TIME_CONFIG:-accurate}" \
  --out="$O/time_to_accuracy.json" > "$O/time.log" 2>&1 &
timeout "${TEST_T:-140}" python -m pytest -v -p no:cacheprovider -n "${WORKERS:-12}" --tb=short -rfE \
  tests/test_kernels.py "${ids[@]}" > "$O/tests.log" 2>&1
echo "tests exit $?"; grep -c " PASSED " "$O/tests.log"
grep -h "FAILED\|ERROR\| passed\| failed" "$O/tests.log" | tail -25
wait; echo "time:"; quiet "$O/time.log" | tail -6

echo "== 3. md, before the change ($(left) s left)"
(cd "$OLD" && PYTHONPATH=/tmp/site:$PWD timeout "${OLD_T:-70}" python -m benchmarks.md_throughput --cells="$cells" \
  --steps=20 --repeats=3 --drivers=network --out="$O/md_throughput_before.json") > "$O/md_before.log" 2>&1
echo "md before exit $?"; grep "md_throughput:" "$O/md_before.log"

t=$(( $(left) - 12 )); echo "== 4. profile ($t s)"
if [ "$t" -gt 45 ]; then
  XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout "$t" python -m benchmarks.md_throughput --cells="$cells" \
    --steps=10 --repeats=1 --drivers=network --profile="${PROFILE_TOP:-40}" --out="$O/md_profile.json" > "$O/md_profile.log" 2>&1
  echo "profile exit $?"; quiet "$O/md_profile.log" | head -50
fi
tar czf "$out/lease.tgz" -C /tmp lease
cp "$O"/*.json "$out/" 2>/dev/null
echo "lease7: done after $((SECONDS - T0)) s"

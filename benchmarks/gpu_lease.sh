#!/usr/bin/env bash
# What the next 15-minute GPU lease runs, in one call of about 560 s (through the device tool's
# `.device/on-gpu.sh`, which sets $OUT). Leases 5-7 (benchmarks/RESULTS.md) found that the glue around the fused
# kernel, not the kernel, costs most of the descriptor sums (19.5 of 28.5 ms a step at 1M atoms): XLA computes
# the pair terms transposed for the kernel's columns-first layout. `kernels.MATERIALIZE` writes them atoms-first
# first; this call measures it. Lease 7 also saw 15.8 ms of the network's elementwise work (norms, eq. 9, softsign,
# x W + e b's sum) in many small kernels: `layers.UNROLL_NORMS` and `layers.ONE_PRODUCT` (the "fused" drivers) are
# the forms written for that. Phases:
#  1. on a quiet GPU, network MD beside lj/cut at 1M atoms (benchmarks.md_throughput): the default (the fused
#     kernel), the same with the pair terms materialized, with the layers' fused forms, with both, and the
#     conservative forms; a driver that fails is reported and the others still run;
#  2. one chunk of the materialized forms, without and with the layers' fused forms, under jax's profiler with
#     XLA's command buffers off (they hide the kernels from the trace), the 40 costliest kernels per step;
#  3. the tests no lease has run on the GPU (tests_not_reached.txt: test_benchmarks' profile and precision tests,
#     test_training's compile check), tests/test_kernels.py, tests/test_precision.py and tests/test_layers.py (the
#     layers' forms);
#  4. in the time left, the whole suite with jax's defaults (-v, so that a run cut short still says which tests
#     passed); with SIDE_RUNS=1, beside it (so on a shared GPU), experiments.cross_md :paper with the many_body
#     model carried in $CROSS_MODEL (CROSS_ARGS adds flags, e.g. "--config.thermalize_format=dense
#     --config.format=dense": lease 3's 500,000-atom thermalization on an ordered_sparse list ran 7.4 steps/s)
#     and experiments.four_body_md with the :accurate model trained there.
# PREC=1 adds benchmarks.precision at 1M atoms first. Logs, JSON and a tarball of everything but trajectories
# and checkpoints go to $OUT; a summary is printed last. Copies of the scripts that ran: benchmarks/results/
# gpu_h200_2026-11-30b/lease3.sh, gpu_h200_2026-11-30c/lease5.sh (this script's previous form), lease6.sh, lease7.sh.
#
#   LEASE_COMMIT=$(git rev-parse --short HEAD) bash .device/on-gpu.sh bash benchmarks/gpu_lease.sh   # on the GPU
#   OUT=/tmp/out LEASE_S=150 WORKERS=2 MD_CELLS=5 SIDE_RUNS=1 CROSS_CONFIG=tiny FOURMD_TRAIN=tiny \
#     CROSS_MODEL=/tmp/mb bash benchmarks/gpu_lease.sh   # a dry run on a CPU (interpreted kernels)
set -u
out=${OUT:?set OUT to the folder whose files come back}
O=/tmp/lease; T0=$SECONDS; budget=${LEASE_S:-560}; here=$(dirname "$0")
rm -rf "$O"; mkdir -p "$O"
left() { echo $(( budget - (SECONDS - T0) )); }
quiet() { grep -v "^I1\|^W1\|Warning\|warnings.warn" "$@"; }
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv > "$O/nvidia-smi.csv" 2>&1
echo "${LEASE_COMMIT:-unknown}" > "$O/commit.txt"
STAGES=info bash "$here/accelerator.sh" "$O" > /dev/null 2>&1
cells=${MD_CELLS:-63}

if [ -n "${PREC:-}" ]; then
  echo "== 0. precision at ${PREC_ATOMS:-1000000} atoms ($(left) s left)"
  timeout "${PREC_T:-75}" python -m benchmarks.precision --atoms="${PREC_ATOMS:-1000000}" --out="$O/precision.json" \
    > "$O/precision.log" 2>&1
  echo "precision exit $?"; grep "precision:" "$O/precision.log"
fi

echo "== 1. md at $cells cells ($(left) s left)"
timeout "${MD_T:-230}" python -m benchmarks.md_throughput --cells="$cells" --steps=20 --repeats=3 \
  --drivers="${MD_DRIVERS:-lj_cut,network,network_materialized,network_fused,network_fused_materialized,conservative,conservative_materialized,conservative_fused_materialized}" \
  --out="$O/md_throughput.json" > "$O/md.log" 2>&1
echo "md exit $?"; grep "md_throughput:" "$O/md.log"

echo "== 2. profile ($(left) s left)"
XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout "${PROF_T:-130}" python -m benchmarks.md_throughput \
  --cells="$cells" --steps=10 --repeats=1 --drivers="${PROFILE_DRIVERS:-network_materialized,network_fused_materialized}" \
  --profile="${PROFILE_TOP:-40}" --out="$O/md_profile.json" > "$O/md_profile.log" 2>&1
echo "profile exit $?"; quiet "$O/md_profile.log" | grep -v "^md_throughput: wrote" | head -90

echo "== 3. tests not yet run on a GPU ($(left) s left)"
mapfile -t ids < "$here/tests_not_reached.txt"
timeout "${FIRST_TESTS_T:-120}" python -m pytest -v -p no:cacheprovider -n "${WORKERS:-14}" --tb=short -rfE \
  "${ids[@]}" tests/test_kernels.py tests/test_precision.py tests/test_layers.py > "$O/tests_first.log" 2>&1
echo "tests exit $?"; grep -h "FAILED\|ERROR\| passed\| failed" "$O/tests_first.log" | tail -15

t=$(( $(left) - 20 )); echo "== 4. suite${SIDE_RUNS:+, cross_md :${CROSS_CONFIG:-paper}, four_body_md :${FOURMD_TRAIN:-accurate}} ($t s)"
[ "${SUITE:-1}" = 0 ] && t=0
if [ "$t" -gt 30 ] && [ -n "${SIDE_RUNS:-}" ]; then
  timeout "$t" python -m experiments.cross_md --config="experiments/configs/cross_md.py:${CROSS_CONFIG:-paper}" \
    --train_workdir="${CROSS_MODEL:-.device/mb_model}" --workdir="$O/cross_md" ${CROSS_ARGS:-} > "$O/cross_md.log" 2>&1 &
  timeout "$t" python -m experiments.four_body_md --config.train_config="${FOURMD_TRAIN:-accurate}" \
    --workdir="$O/four_body_md" > "$O/four_body_md.log" 2>&1 &
fi
if [ "$t" -gt 30 ]; then
  timeout "$t" python -m pytest -v -p no:cacheprovider -n "${WORKERS:-14}" --tb=short -rfE \
    --junitxml="$O/tests.xml" > "$O/tests.log" 2>&1
  echo "suite exit $?"
  wait
fi
tar czf "$out/lease.tgz" --exclude=trajectories --exclude=checkpoints --exclude='*.msgpack' --exclude=trajectories.npz -C /tmp lease
cp "$O"/*.json "$out/" 2>/dev/null
echo "== summary"
grep -c "PASSED" "$O/tests.log" 2>/dev/null | sed 's/^/tests PASSED lines: /'
grep -h "FAILED\|ERROR\|passed\|failed" "$O/tests.log" 2>/dev/null | grep -v "^\[gw[0-9]*\] \[ *[0-9]*%\] PASSED" | tail -30
quiet "$O/cross_md.log" 2>/dev/null | grep "cross_md:\|thermalize: step\|md\[" | tail -12
quiet "$O/four_body_md.log" 2>/dev/null | tail -8
echo "lease: done after $((SECONDS - T0)) s"

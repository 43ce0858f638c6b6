#!/usr/bin/env bash
# What a 15-minute GPU lease runs, in one call of about 575 s (through the device tool's `.device/on-gpu.sh`,
# which sets $OUT). Two phases:
#  1. the timings, on a quiet GPU: network MD beside lj/cut at 1M atoms (benchmarks.md_throughput: the default
#     descriptor sums, the fused Pallas kernel on an NVIDIA GPU, and XLA's; the network in TensorFloat-32; the
#     conservative network; a driver that fails is reported and the others still run; each driver's 25 costliest
#     ops per step from one more chunk under jax's profiler, `--profile`), then the fused sum's parts at 1M
#     atoms (benchmarks.descriptor_sum --parts: the pair terms alone, the kernel alone, the whole sum: 32 atoms a
#     program with 1, 2 or 4 neighbour columns an iteration (`kernels.COLUMNS`), 2 pipelining stages, and 16
#     atoms with 2 columns);
#  2. in the time left, the whole test suite with jax's defaults (-v, so that a run cut short still says which
#     tests passed); with SIDE_RUNS=1, beside it (their timings then on a shared GPU), experiments.cross_md
#     :paper with the many_body model carried in $CROSS_MODEL and experiments.four_body_md with the :accurate
#     model trained there. CROSS_ARGS adds flags to cross_md: lease 3's thermalization of the 500,000-atom
#     crystal on an ordered_sparse list ran 7.4 steps/s on the shared GPU, so the next try is
#     CROSS_ARGS="--config.thermalize_format=dense --config.format=dense" (Dense lists, which lj/cut ran at
#     12.9 ms a step for 1M atoms).
# Before them, benchmarks.precision at 1M atoms: each precision's error, equivariance and forward-pass time. SUITE=0
# skips phase 2 (a short call that only measures).
# Logs, JSON and a tarball of everything but trajectories and checkpoints go to $OUT; a summary is printed last.
# The copy that ran in lease 3, with its earlier defaults: benchmarks/results/gpu_h200_2026-11-30b/lease3.sh.
#
#   bash .device/on-gpu.sh bash benchmarks/gpu_lease.sh          # on the device machine
#   OUT=/tmp/out LEASE_S=120 WORKERS=2 MD_CELLS=5 SUM_CELLS=5 PALLAS_ROWS=32 SIDE_RUNS=1 CROSS_CONFIG=tiny \
#     FOURMD_TRAIN=tiny CROSS_MODEL=/tmp/mb bash benchmarks/gpu_lease.sh   # a dry run on a CPU (interpreted kernels)
set -u
out=${OUT:?set OUT to the folder whose files come back}
O=/tmp/lease; T0=$SECONDS; budget=${LEASE_S:-575}
rm -rf "$O"; mkdir -p "$O"
left() { echo $(( budget - (SECONDS - T0) )); }
quiet() { grep -v "^I1\|^W1\|Warning\|warnings.warn" "$@"; }
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv > "$O/nvidia-smi.csv" 2>&1
echo "${LEASE_COMMIT:-unknown}" > "$O/commit.txt"
STAGES=info bash benchmarks/accelerator.sh "$O" > /dev/null 2>&1

echo "== 1. precision at ${PREC_ATOMS:-1000000} atoms ($(left) s left)"
timeout "${PREC_T:-60}" python -m benchmarks.precision --atoms="${PREC_ATOMS:-1000000}" --out="$O/precision.json" \
  > "$O/precision.log" 2>&1
echo "precision exit $?"; grep "precision:" "$O/precision.log"
echo "== 1. md at ${MD_CELLS:-63} cells ($(left) s left)"
timeout "${MD_T:-240}" python -m benchmarks.md_throughput --cells="${MD_CELLS:-63}" --steps=20 --repeats=3 \
  --drivers="${MD_DRIVERS:-lj_cut,network,network_xla,network_tf32,conservative}" --profile="${PROFILE_TOP:-25}" \
  --out="$O/md_throughput.json" > "$O/md.log" 2>&1
echo "md exit $?"; grep "md_throughput:" "$O/md.log"
echo "== 1. sums at ${SUM_CELLS:-63} cells ($(left) s left)"
timeout "${SUM_T:-110}" python -m benchmarks.descriptor_sum --cells="${SUM_CELLS:-63}" --repeats=3 --parts \
  --network=false --pallas_rows="${PALLAS_ROWS:-32,32x1x0x2,32x1x0x4,32x2,16x1x0x2}" --out="$O/descriptor_sum.json" > "$O/sums.log" 2>&1
echo "sums exit $?"; grep "descriptor_sum:" "$O/sums.log"

t=$(( $(left) - 20 )); echo "== 2. suite${SIDE_RUNS:+, cross_md :${CROSS_CONFIG:-paper}, four_body_md :${FOURMD_TRAIN:-accurate}} ($t s)"
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

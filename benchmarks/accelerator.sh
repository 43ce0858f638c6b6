#!/usr/bin/env bash
# The accelerator check, as one command: on whatever device jax finds (a GPU, a TPU, or the CPU), with jax's
# default settings, it runs the test suite and the benchmarks at accelerator sizes (network MD up to 1M atoms),
# each writing JSON under benchmarks/results/<backend>/ (default) or the folder given as $1.
#
#   bash benchmarks/accelerator.sh                     # everything
#   STAGES="md time" bash benchmarks/accelerator.sh    # some of: info tests md sums training time paper fourmd
#   STAGES=paper bash benchmarks/accelerator.sh         # the paper-scale argon cross (not in the default set)
#   STAGES=fourmd bash benchmarks/accelerator.sh        # four-atom MD, :accurate model (not in the default set)
#
# Stages: info (python -m unitary_enn.info --json); tests (the whole suite, junit XML and log); md
# (benchmarks.md_throughput at 4,000 / 32,000 / 256,000 / 1,000,188 atoms: the direct network with the default
# descriptor sums (the fused Pallas kernel on an NVIDIA GPU) and with XLA's, the same for the conservative network,
# and lj/cut in the same run); sums
# (benchmarks.descriptor_sum at 32,000 and 1,000,188 atoms: the descriptor sum alone and with the network, plain,
# banded and fused in one Pallas kernel with 16 / 32 / 64 / 128 atoms a program (and 2 pipelining stages at 32 and
# 64), and block budgets of 2^26 / 2^28 / 2^30 numbers); training (benchmarks.training_throughput at batches up to
# 65,536); time (time to the paper's 0.00118 eV/A with the four-atom :accurate recipe); paper (experiments.cross_md
# :paper, the 50^3-cell thermalization, the 26,656-atom cross and 20,000 steps with both force fields, in
# $out/cross_md_paper; the force model is the quick many_body one, trained first, since the paper's 10^6 full-batch
# FIRE steps do not fit a 15-minute lease; CROSS_CONFIG and CROSS_TRAIN change the two configs, e.g.
# CROSS_CONFIG=tiny CROSS_TRAIN=tiny for a dry run on a CPU); fourmd (experiments.four_body_md with the four-atom
# model of FOURMD_TRAIN, default accurate, trained first, in $out/four_body_md_accurate). A failed stage is reported
# and the next one still runs; the exit status is that of the first failure.
#
# Sizes for a short lease: MD_CELLS (default 10,20,40,63) and MD_DRIVERS (default lj_cut,network,network_xla,
# network_sharded,conservative,conservative_xla) choose the md stage's sizes and drivers; SUM_CELLS (default 20,63) and PALLAS_ROWS
# (default 16,32,64,128,32x2,64x2: atoms a program [x pipelining stages]) the sums stage's. PYTEST_ARGS is added to
# the tests stage's pytest (e.g. "-n 14" where pytest-xdist is installed). STAGE_TIMEOUT (seconds, default none)
# stops any one stage that runs longer, with its log kept, so that the next stage still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
backend=$(python -c "import jax; print(jax.default_backend())")
out=${1:-benchmarks/results/$backend}
stages=${STAGES:-info tests md sums training time}
mkdir -p "$out"
status=0
run() {  # run NAME COMMAND...: log to $out/NAME.log, keep going on failure
  local name=$1; shift
  echo "+ [$name] $*" | tee "$out/$name.log"
  local t0=$SECONDS
  if [ -n "${STAGE_TIMEOUT:-}" ]; then
    timeout "$STAGE_TIMEOUT" "$@" 2>&1 | tee -a "$out/$name.log"
  else
    "$@" 2>&1 | tee -a "$out/$name.log"
  fi
  local rc=${PIPESTATUS[0]}
  echo "[$name] exit $rc after $((SECONDS - t0)) s" | tee -a "$out/$name.log"
  [ "$rc" -ne 0 ] && [ "$status" -eq 0 ] && status=$rc
  return 0
}
for stage in $stages; do
  case $stage in
    info) run info python -m unitary_enn.info --json ;;
    # shellcheck disable=SC2086  # PYTEST_ARGS is split into words on purpose
    tests) run tests python -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} --junitxml="$out/tests.xml" ;;
    md) run md python -m benchmarks.md_throughput --cells="${MD_CELLS:-10,20,40,63}" --steps=20 --repeats=3 \
          --drivers="${MD_DRIVERS:-lj_cut,network,network_xla,network_sharded,conservative,conservative_xla}" --out="$out/md_throughput.json" ;;
    sums) run sums python -m benchmarks.descriptor_sum --cells="${SUM_CELLS:-20,63}" --budgets=26,28,30 \
            --pallas_rows="${PALLAS_ROWS:-16,32,64,128,32x2,64x2}" --out="$out/descriptor_sum.json" ;;
    training) run training python -m benchmarks.training_throughput --batch_sizes=256,4096,65536 \
                --dtypes=float32 --out="$out/training_throughput.json" ;;
    time) run time python -m benchmarks.time_to_accuracy --config=experiments/configs/four_body.py:accurate \
            --out="$out/time_to_accuracy.json" ;;
    paper) run paper python -m experiments.cross_md --config="experiments/configs/cross_md.py:${CROSS_CONFIG:-paper}" \
             --config.train_config="${CROSS_TRAIN:-quick}" --workdir="$out/cross_md_paper" ;;
    fourmd) run fourmd python -m experiments.four_body_md --workdir="$out/four_body_md_accurate" \
              --config.train_config="${FOURMD_TRAIN:-accurate}" ;;
    *) echo "unknown stage $stage (expected info tests md sums training time paper fourmd)" >&2; status=2 ;;
  esac
done
exit "$status"

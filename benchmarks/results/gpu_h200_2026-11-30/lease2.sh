#!/usr/bin/env bash
# Second GPU call (~250 s): the free-space diagnosis, the two contraction forms at 1M atoms, the fixed tests.
set -u
T0=$SECONDS
echo "== diag"; timeout 45 python benchmarks/results/gpu_h200_2026-11-30/free_space_diag.py 2>&1 | grep -v -i "warn" | tee "$OUT/diag.log"
echo "== md ($((SECONDS - T0)) s)"
timeout 110 python -m benchmarks.md_throughput --cells=63 --steps=20 --repeats=3 \
  --drivers=lj_cut,network_einsum,network --out="$OUT/md_throughput_contraction.json" 2>&1 \
  | grep -v "^I1\|^W1" | tee "$OUT/md.log"
left=$((235 - (SECONDS - T0))); echo "== tests ($left s left)"
[ "$left" -gt 20 ] && timeout "$left" python -m pytest -q -p no:cacheprovider -n 14 --tb=short -rfE \
  tests/test_descriptor_sums.py tests/test_precision.py tests/test_install.py tests/test_conservative.py \
  "tests/test_benchmarks.py::test_network_flop_count_agrees_with_xla_cost_analysis" \
  tests/test_models.py tests/test_unitary.py tests/test_descriptors.py 2>&1 | tee "$OUT/tests.log" | tail -40
echo "lease2: done after $((SECONDS - T0)) s"

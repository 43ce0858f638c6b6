"""The benchmark helpers compute what they claim: exponents, crossings, FLOP counts, neighbor statistics.

No test here (or anywhere) asserts a timing; the benchmarks' figures live in benchmarks/RESULTS.md.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from benchmarks import common, md_throughput, profile, time_to_accuracy
from unitary_enn import models, neighbors, potentials, structures


def test_fit_exponent_recovers_a_power_law():
  n = np.array([4_000, 32_000, 108_000])
  assert common.fit_exponent(n, 3e-6 * n ** 1.07) == pytest.approx(1.07, abs=1e-9)
  assert common.fit_exponent(n, 2e-9 * n ** 2) == pytest.approx(2.0, abs=1e-9)
  with pytest.raises(ValueError, match="two sizes"):
    common.fit_exponent([10], [1.0])


def test_crossings_report_the_first_record_at_or_below_each_threshold():
  scale = 0.1
  hist = [dict(step=s, time=10.0 * s, test_loss=(rmse / scale) ** 2)
          for s, rmse in [(1, 0.02), (2, 0.004), (3, 0.006), (4, 0.001)]]
  got = time_to_accuracy.crossings(hist, scale, (0.005, 0.00118, 1e-4))
  assert got["0.005"]["steps"] == 2 and got["0.005"]["wall_s"] == 20.0
  assert got["0.00118"]["steps"] == 4 and got["0.00118"]["force_rmse"] == pytest.approx(0.001)
  assert got["0.0001"] is None


def test_network_flop_count_agrees_with_xla_cost_analysis():
  """The shape-based count of the network's FLOPs per atom against XLA's own count of the compiled forward."""
  sizes = md_throughput.PAPER_SIZES
  params = uenn.init_uenn(jax.random.PRNGKey(0), sizes)
  x = jnp.ones((512, 3, sizes[0]))
  # XLA's CPU count: its GPU count leaves out the matmuls it hands to cuBLAS (seen on an H200: 1/6 of ours).
  with jax.default_device(jax.devices("cpu")[0]):
    cost = jax.jit(lambda p, x: uenn.apply_uenn(p, x)).lower(params, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  ours = md_throughput.network_flops_per_atom(sizes, sizes[0], pairs_per_atom=0.0)
  assert ours["descriptors"] == 0
  assert ours["network"] == pytest.approx(cost["flops"] / 512, rel=0.1)


def test_md_timing_lists_every_neighbour_within_the_cutoff():
  """5^3 FCC cells (500 atoms): for both drivers the timed neighbor list holds at least every neighbour within
  the cutoff, counted on the perfect lattice by brute force, and the MD stays finite."""
  positions, box = md_throughput.fcc_state(5, "float32", 60.0)
  lattice = structures.fcc_lattice(5)
  d = lattice[:, None, :] - lattice[None, :, :]
  d -= box * np.round(d / box)
  r = np.sqrt(np.sum(d * d, axis=-1))
  in_cutoff = np.sum((r > 0) & (r < md_throughput.R_CUT)) / len(lattice)
  model = md_throughput.random_model("float32")
  import functools
  for builder in (functools.partial(potentials.lj_cut_force_fn, r_cut=md_throughput.R_CUT),
                  functools.partial(models.many_body_force_fn, model)):
    out = md_throughput.time_md(builder, positions, box, steps=2, repeats=1, fmt=neighbors.neighbor_format("dense"),
                                dr_threshold=1.0, capacity_multiplier=1.25, temperature=60.0)
    assert out["s_per_step"] > 0 and math.isfinite(out["final_temperature_k"])
    assert out["listed_pairs_per_atom"] >= in_cutoff
    assert out["neighbor_capacity"][0] == len(positions)
  assert in_cutoff == 134  # the FCC shells of argon inside 10 A: 12 + 6 + 24 + 12 + 24 + 8 + 48


def test_op_self_times_subtract_nested_ops_and_prefer_the_device_timeline():
  """A while loop of 10 us holding ops of 3 and 4 us on one host thread: self times 3 / 3 / 4 us. With a device
  process in the trace, only its events count, by hlo_op where they carry one, else by name, each with its whole
  duration, also where two overlap."""
  def x(pid, tid, ts, dur, name, op=True):
    return dict(ph="X", pid=pid, tid=tid, ts=ts, dur=dur, name=name, args=dict(hlo_op=name) if op else {})
  host = [dict(ph="M", name="process_name", pid=1, args=dict(name="/host:CPU")),
          x(1, 7, 0.0, 10.0, "while"), x(1, 7, 1.0, 3.0, "a"), x(1, 7, 5.0, 4.0, "b"), x(1, 8, 2.0, 2.0, "a"),
          x(1, 7, 20.0, 1.0, "PjitFunction(f)", op=False)]
  got, where = profile.op_self_times(host)
  assert where == "host"
  assert got == pytest.approx({"while": 3e-6, "a": 5e-6, "b": 4e-6})
  device = host + [dict(ph="M", name="process_name", pid=2, args=dict(name="/device:GPU:0")),
                   x(2, 1, 0.0, 6.0, "fusion.1"), x(2, 1, 6.0, 2.0, "sm90_gemm_kernel", op=False),
                   x(2, 1, 7.5, 3.0, "fusion.2")]  # launched before the product ends: each kernel keeps its time
  got, where = profile.op_self_times(device)
  assert where == "device" and got == pytest.approx({"fusion.1": 6e-6, "sm90_gemm_kernel": 2e-6, "fusion.2": 3e-6})


def test_profile_names_the_op_that_takes_the_time():
  """A 512^2 matmul beside an add of 512 numbers: the profile's first op is the product, named by its jax
  operation, and the ops' time per call is positive and below the wall time of the run."""
  import time
  a = jnp.ones((512, 512))
  f = jax.jit(lambda a: (a @ a @ a, a[0] + 1.0))
  jax.block_until_ready(f(a))
  calls = 3
  t0 = time.perf_counter()
  got = profile.profile_ops(lambda: [jax.block_until_ready(f(a)) for _ in range(calls)], per=calls,
                            compiled_text=f.lower(a).compile().as_text(), top=3)
  wall = time.perf_counter() - t0
  assert got["where"] in ("host", "device")
  assert 0 < got["total_s"] < wall / calls * 1.5 + 1e-3
  assert "dot_general" in got["ops"][0]["op_name"] and got["ops"][0]["share"] > 0.5, got["ops"]
  assert "ms" in profile.format_ops(got) and "command buffers" not in profile.format_ops(got)
  # A GPU trace whose kernels ran inside a CUDA graph says how to see them (lease 5 saw 12 of a step's 67 ms)
  graphed = dict(where="device", total_s=0.012, ops=[dict(op="command_buffer_51", seconds=0.011, share=0.9,
                                                          op_name="", source="")])
  assert "--xla_gpu_enable_command_buffer=" in profile.format_ops(graphed)


def test_flops_of_the_descriptor_sum_grow_with_pairs_and_basis():
  a = md_throughput.network_flops_per_atom((73, 1), 73, 100.0)["descriptors"]
  assert md_throughput.network_flops_per_atom((73, 1), 73, 200.0)["descriptors"] == 2 * a
  assert md_throughput.network_flops_per_atom((73, 1), 146, 100.0)["descriptors"] > 1.9 * a


def test_before_after_table_takes_medians_per_side_and_ratios_to_the_side_that_ran_first(tmp_path):
  """benchmarks.report's table of benchmarks/ab_md_throughput.sh's files: sides ordered by when they ran."""
  import json

  from benchmarks import report
  runs = {("abc1234", 1): (100.0, "2026-11-30 08:00:00"), ("abc1234", 2): (120.0, "2026-11-30 08:10:00"),
          ("abc1234", 3): (110.0, "2026-11-30 08:20:00"),
          ("now", 1): (300.0, "2026-11-30 08:05:00"), ("now", 2): (200.0, "2026-11-30 08:15:00"),
          ("now", 3): (100.0, "2026-11-30 08:25:00")}
  for (label, rnd), (rate, date) in runs.items():
    sizes = [dict(n_atoms=4000, network=dict(atom_steps_per_s=rate))]
    (tmp_path / f"{label}_r{rnd}.json").write_text(json.dumps(dict(date=date, sizes=sizes)))
  table = report.ab_table(str(tmp_path))
  header, _, row = table.splitlines()
  assert header.index("abc1234") < header.index("now")  # ran first, so the reference
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells == ["4,000", "100 / 120 / 110", "110", "300 / 200 / 100", "200", "1.82"]


def test_descriptor_sum_binary_compares_the_band_with_the_plain_sum_on_a_saved_model(tmp_path):
  """`python -m benchmarks.descriptor_sum --pair_terms --pallas_rows=64 --model=WORKDIR` (the commands RESULTS.md
  cites) runs end to end on 500 atoms: the exact band equals the plain sum to float32 rounding, the saved
  network's forces agree, and the pair terms computed as before (jnp.cos, jax-md's mod displacement) give the same
  sums to float32 rounding of the displacements (the mod form rounds dR + box / 2, ~1e-6 A, which the Gaussians' slopes of up to ~200 per A
  turn into ~2e-5 of the largest sum); the fused Pallas kernel (64 atoms a program) gives the plain sums and
  forces to float32 rounding."""
  import json
  import os
  import subprocess
  import sys
  models.save_model(str(tmp_path), md_throughput.random_model("float32", seed=1))
  out = tmp_path / "descriptor_sum.json"
  proc = subprocess.run([sys.executable, "-m", "benchmarks.descriptor_sum", "--cells=5", "--repeats=1",
                         "--pair_terms", "--pallas_rows=64", f"--model={tmp_path}", f"--out={out}"],
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  (row,) = json.loads(out.read_text())["sizes"]
  assert row["n_atoms"] == 500 and row["neighbor_capacity"][0] == 500
  (band,) = row["bands"].values()
  assert band["max_relative_difference"] < 1e-6
  assert band["max_abs_force_difference_ev_per_a"] <= 1e-5 * row["max_abs_force_ev_per_a"]
  assert set(row["pair_terms"]) == {"jnp_cos_cutoff", "jax_md_periodic_displacement", "cutoff_on_gaussians",
                                    "all_three"}
  assert row["pair_terms"]["jnp_cos_cutoff"]["max_relative_difference"] < 1e-6
  assert row["pair_terms"]["cutoff_on_gaussians"]["max_relative_difference"] < 1e-6
  assert all(v["max_relative_difference"] < 1e-4 for v in row["pair_terms"].values())
  fused = row["pallas"]["64"]  # the fused kernel, interpreted on the CPU
  assert fused["max_relative_difference"] < 1e-6
  assert fused["max_abs_force_difference_ev_per_a"] <= 1e-5 * row["max_abs_force_ev_per_a"]


def test_precision_benchmark_measures_float32_error_and_equivariance_and_reports_what_cannot_compile():
  """"highest" gives the Sec. 4.5 network's float64 values and its O(3) equivariance to float32 rounding on any
  backend (a wrong rotation or reference would give O(1)). On the CPU every bfloat16 preset computes in float32
  too, and a TensorFloat-32 product, which the CPU cannot compile, is a failed row, not a crash (on the H200 the
  fast modes were measured at 2e-3 to 5e-2: benchmarks/RESULTS.md)."""
  from benchmarks import precision
  rows = {r["precision"]: r for r in precision.measure(["highest", "bf16x6", "tf32"], 64, 64, repeats=1)}
  exact = ["highest"] + (["bf16x6"] if jax.default_backend() == "cpu" else [])
  for name in exact:
    assert 1e-9 < rows[name]["error"] < 3e-5 and 1e-9 < rows[name]["equivariance"] < 3e-5, rows[name]
  assert rows["highest"]["time_over_highest"] == 1.0
  if jax.default_backend() == "cpu":
    assert "failed" in rows["tf32"] and "TF32" in rows["tf32"]["failed"]
  else:
    assert "failed" in rows["tf32"] or rows["tf32"]["error"] < 0.1


def test_md_drivers_trace_under_their_kernel_knobs_and_leave_them_as_they_were():
  """`network_materialized` is `network_pallas` traced with `kernels.MATERIALIZE` on: its force function holds the
  optimization barrier, the plain one does not, and the constant is back to its value after each call; likewise
  `network_fused` with the layers' forms (one product per layer, the same forces to rounding)."""
  from unitary_enn import kernels, layers
  side = 16.0
  pos = jnp.asarray(structures.random_box(side, max_atoms=20, seed=1), jnp.float32)
  disp, _ = neighbors.periodic_space(side)
  nbr = neighbors.NeighborManager(disp, side, md_throughput.R_CUT).allocate(pos)
  model = md_throughput.random_model("float32")
  plain = models.many_body_force_fn(model, disp, sum_kernel="pallas")
  knobbed = md_throughput.with_kernel_knobs(
      lambda d: models.many_body_force_fn(model, d, sum_kernel="pallas"), MATERIALIZE=True)(disp)
  assert "optimization_barrier" in str(jax.make_jaxpr(knobbed)(pos, nbr))
  assert kernels.MATERIALIZE is False
  assert "optimization_barrier" not in str(jax.make_jaxpr(plain)(pos, nbr))
  # network_fused: the layers' forms (`layers.ONE_PRODUCT`: one product per layer instead of two), then restored
  fused = md_throughput.with_kernel_knobs(lambda d: models.many_body_force_fn(model, d), UNROLL_NORMS=True,
                                          ONE_PRODUCT=True)(disp)
  dots = lambda f: str(jax.make_jaxpr(f)(pos, nbr)).count("dot_general[")
  n_layers = len(model.sizes) - 1
  default = models.many_body_force_fn(model, disp)
  assert dots(fused) == dots(default) - n_layers
  assert layers.ONE_PRODUCT is False and layers.UNROLL_NORMS is False
  want = default(pos, nbr)
  np.testing.assert_allclose(fused(pos, nbr), want, rtol=0, atol=1e-5 * float(jnp.abs(want).max()))

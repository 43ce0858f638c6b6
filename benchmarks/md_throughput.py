r"""MD throughput: network-driven MD (vector descriptors + network on a jax-md neighbor list) against analytical
lj/cut 10 A in the same engine, on periodic FCC argon at several sizes, with the scaling exponent and the
roofline fraction of the network's force evaluation, all from one run.

  python -m benchmarks.md_throughput                                  # 4,000 / 32,000 / 108,000 atoms
  python -m benchmarks.md_throughput --cells=5,10 --steps=5           # small and quick
  python -m benchmarks.md_throughput --model=workdirs/many_body       # a trained many_body model
  python -m benchmarks.md_throughput --drivers=network,network_whole  # the network in blocks or all at once
  python -m benchmarks.md_throughput --cells=20,63 --drivers=lj_cut,network_xla,network_pallas   # a GPU: the sums' forms
  python -m benchmarks.md_throughput --cells=63 --drivers=lj_cut,network --profile=20   # where a step's time goes

Both drivers run jax-md's velocity Verlet (`simulate.nve`, 1 fs) on the same thermalized-at-60 K crystal of
n^3 FCC cells (4 n^3 atoms, a = 5.24411 A), with the neighbor list updated in the same jitted chunk as the step,
so a step includes the neighbor-list check and, when an atom has moved more than half the skin, its rebuild.
Timings are medians over `--repeats` chunks of `--steps` steps after a compiled warm-up chunk; a chunk whose
neighbor list overflowed is an error, never a figure.

The network is the paper's Sec. 4.5 architecture (73 descriptors, 200, 100, 50, 10, 1 vectors) with random
weights unless --model is given; the `conservative` driver is the conservative model on the same layers (73, 200,
100, 50, 10, 16 vectors -> Gram invariants -> a 32-wide head -> atomic energy, F = -grad E through the descriptors;
random weights unless --conservative_model is given), timed in the same run; its cost does not depend on the weights. FLOPs per atom of one network force
evaluation are counted from the shapes (`network_flops_per_atom`); the roofline fraction divides the achieved
FLOP/s by the dense matmul FLOP/s measured in the same run, in the network's dtype. --dtype=float64 runs the
MD in double precision (as experiments.cross_md does) with the float32 network.
"""

from __future__ import annotations

import functools
import math
import time

from absl import app, flags

from benchmarks.common import fit_exponent, kernel_knobs, time_fn, write_result

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags are defined when the binary runs, not on import (tests import this module)."""
  flags.DEFINE_list("cells", ["10", "20", "30"], "FCC cells per side; 4 n^3 atoms each.")
  flags.DEFINE_integer("steps", 10, "MD steps per timed chunk.")
  flags.DEFINE_integer("repeats", 3, "Timed chunks per size and driver (the median is reported).")
  flags.DEFINE_string("model", None, "A many_body workdir (model.npz); default: random weights, paper sizes.")
  flags.DEFINE_enum("dtype", "float32", ["float32", "float64"], "dtype of the MD (positions, momenta).")
  flags.DEFINE_enum("network_dtype", "float32", ["float32", "float64"], "dtype of the random-weight network.")
  flags.DEFINE_enum("format", "dense", ["dense", "sparse", "ordered_sparse"], "Neighbor list format.")
  flags.DEFINE_enum("descriptor_dtype", "network", ["network", "positions"],
                    "dtype of the descriptor sums: the network's (the library default) or the positions' (the "
                    "behaviour before that default, kept to measure the gain).")
  flags.DEFINE_float("dr_threshold", 1.0, "Neighbor-list skin in A.")
  flags.DEFINE_float("capacity_multiplier", 1.25, "Neighbor-list capacity multiplier.")
  flags.DEFINE_float("temperature", 60.0, "K, of the initial momenta and the jittered lattice.")
  flags.DEFINE_string("conservative_model", None, "A conservative many_body workdir; default: random weights, "
                      "paper sizes with 16 output vectors and a 32-wide energy head.")
  flags.DEFINE_integer("profile", 0, "With N > 0: one more chunk of each driver under jax's profiler, and the N "
                       "ops that take the most time per step, named by their jax operation and source line "
                       "(benchmarks.profile), printed and in the JSON.")
  flags.DEFINE_list("drivers", ["lj_cut", "network", "conservative"],
                    "Which force fields to time: lj_cut, network, conservative (F = -grad E on the same layers), "
                    "network_sharded (the network with the atoms' rows over every device jax sees, "
                    "`parallel.shard_rows`: on one device, the sharded path's overhead), network_whole (the "
                    "network on all atoms at once instead of cache-sized blocks, `network.network_block`); "
                    "network_xla, network_pallas, conservative_xla, conservative_pallas (the descriptor sums in "
                    "XLA's form or the fused kernel; network and conservative take the default, sum_kernel "
                    "'auto': the kernel on an NVIDIA GPU, XLA's form elsewhere); network_tf32, network_bf16, "
                    "network_bf16x3, network_bf16x6, network_bf16x9, network_tf32x3 (the network's products at that "
                    "precision, `layers.PRECISIONS`, instead of Precision.HIGHEST); network_materialized, "
                    "conservative_materialized (the fused kernels with the pair terms written atoms-first before "
                    "their transposes, `kernels.MATERIALIZE`); network_fused, conservative_fused (the layers' norms "
                    "summed coordinate by coordinate and x W + e b as one product, `layers.UNROLL_NORMS` and "
                    "`layers.ONE_PRODUCT`), network_fused_materialized, conservative_fused_materialized (both).")
  flags.DEFINE_string("out", None, "JSON path (default benchmarks/results/md_throughput.json).")

R_CUT = 10.0
FAST_PRECISIONS = ("tf32", "bf16", "bf16x3", "bf16x6", "bf16x9", "tf32x3")  # network_<name> drivers
PAPER_SIZES = (73, 200, 100, 50, 10, 1)
CONSERVATIVE_SIZES = (73, 200, 100, 50, 10, 16)
CONSERVATIVE_HEAD = (32,)


def random_model(dtype: str, seed: int = 0):
  """A many_body `models.Model` with the paper's architecture and basis and random weights."""
  import jax
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import descriptors, models
  n = PAPER_SIZES[0]
  params = uenn.init_uenn(jax.random.PRNGKey(seed), PAPER_SIZES, dtype=np.dtype(dtype))
  return models.Model(kind="many_body", params=params, sizes=PAPER_SIZES, activation="softsign",
                      scales=dict(inputs=np.ones(n), targets=np.ones(1)), dtype=dtype,
                      basis=models.Basis(descriptors.paper_r_s(), 100.0, R_CUT, "cosine"))


def random_conservative_model(dtype: str, seed: int = 0):
  """A conservative many_body `models.Model` on the paper's layers and basis (`CONSERVATIVE_SIZES`, a 32-wide head),
  random weights."""
  import jax
  import numpy as np

  from unitary_enn import descriptors, energy, models
  n = CONSERVATIVE_SIZES[0]
  params = energy.init_energy_network(jax.random.PRNGKey(seed), CONSERVATIVE_SIZES, CONSERVATIVE_HEAD,
                                      dtype=np.dtype(dtype))
  return models.Model(kind="many_body", params=params, sizes=CONSERVATIVE_SIZES, activation="softsign",
                      scales=dict(inputs=np.ones(n), targets=np.ones(1), energy=1e-3), dtype=dtype,
                      basis=models.Basis(descriptors.paper_r_s(), 100.0, R_CUT, "cosine"), forces="conservative",
                      head_hidden=CONSERVATIVE_HEAD, eps=0.1)


def network_flops_per_atom(sizes, n_descriptors: int, pairs_per_atom: float) -> dict:
  """FLOPs of one force evaluation per atom, counted from the shapes (multiply and add count 1 each).

  * descriptors, per pair in the list: distance (3 sub, 3 mul, 2 add, sqrt, div: ~12), cutoff (~6), and per
    Gaussian 4 (sub, square, scale, exp counted as 1) + 1 (times the cutoff) + 6 (r_hat_x g summed in 3 axes);
  * network, per layer M_in -> M_out on 3 coordinates: 2 * 3 * M_in * M_out for x W and as much for e b,
    plus ~10 M_out for the activation (norm and softsign).
  """
  desc = pairs_per_atom * (18 + 11 * n_descriptors)
  net = sum(2 * 2 * 3 * a * b + 10 * b for a, b in zip(sizes[:-1], sizes[1:]))
  return dict(descriptors=desc, network=net, total=desc + net)


def matmul_flops_per_s(dtype: str, n: int = 2048) -> dict:
  """Dense n x n matmul FLOP/s (2 n^3 per product), median of repeats: the machine's roofline here.

  At precision highest, the network's default: jax's default would be TensorFloat-32 on an NVIDIA GPU."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
  f = jax.jit(functools.partial(jnp.dot, precision=jax.lax.Precision.HIGHEST))
  t = time_fn(lambda: f(a, b).block_until_ready(), repeats=5, min_time=0.3)
  return dict(n=n, flops_per_s=2 * n**3 / t["median_s"], timing=t)


def fcc_state(n_cells: int, dtype, temperature: float, seed: int = 0):
  """Positions of a jittered FCC crystal (harmonic estimate of 60 K displacements) and the periodic box."""
  import numpy as np

  from unitary_enn import structures
  from unitary_enn.constants import ARGON_FCC_LATTICE_CONSTANT as a
  rng = np.random.default_rng(seed)
  pos = structures.fcc_lattice(n_cells) + rng.normal(scale=0.05 * math.sqrt(temperature / 60.0), size=(4 * n_cells**3, 3))
  box = n_cells * a
  return np.mod(pos, box).astype(dtype), box


def time_md(force_builder, positions, box, *, steps: int, repeats: int, fmt, dr_threshold: float,
            capacity_multiplier: float, temperature: float, profile_top: int = 0) -> dict:
  """Median seconds per step of velocity Verlet with a neighbor list updated inside the jitted chunk; with
  `profile_top`, also the ops that take the most time in one more chunk (`benchmarks.profile`), per step."""
  import jax
  import jax.numpy as jnp
  from jax_md import partition, quantity, simulate

  from unitary_enn import constants, neighbors
  displacement, shift = neighbors.periodic_space(box)
  manager = neighbors.NeighborManager(displacement, box, R_CUT, format=fmt, dr_threshold=dr_threshold,
                                      capacity_multiplier=capacity_multiplier, label="md_throughput")
  force_fn = force_builder(displacement)
  init_fn, apply_fn = simulate.nve(force_fn, shift, 1e-3)
  positions = jnp.asarray(positions)
  t0 = time.perf_counter()
  nbr = manager.allocate(positions)
  t_alloc = time.perf_counter() - t0
  kT = constants.KB * temperature
  state = init_fn(jax.random.PRNGKey(0), positions, kT=kT, mass=constants.ARGON_MASS, neighbor=nbr)

  @jax.jit
  def chunk(state, nbr):
    def body(_, carry):
      state, nbr = carry
      state = apply_fn(state, neighbor=nbr)
      return state, nbr.update(state.position)
    return jax.lax.fori_loop(0, steps, body, (state, nbr))

  carry = [state, nbr]

  def run():
    s, n = chunk(*carry)
    jax.block_until_ready(s.position)
    error = neighbors.neighbor_error(n)
    if error is not None:
      raise RuntimeError(f"the neighbor list {error} (capacity {n.idx.shape}); raise --capacity_multiplier")
    carry[:] = [s, n]

  t0 = time.perf_counter()
  run()
  t_compile = time.perf_counter() - t0
  t = time_fn(run, repeats=repeats, min_time=0.0)
  ops = None
  if profile_top:
    from benchmarks import profile
    try:
      ops = profile.profile_ops(run, compiled_text=chunk.lower(*carry).compile().as_text(), per=steps,
                                top=profile_top)
    except Exception as e:  # noqa: BLE001 -- a profiler that cannot trace here costs the profile, not the timing
      ops = dict(failed=f"{type(e).__name__}: {e}"[:2000])
  s, n = carry
  temp = float(quantity.temperature(momentum=s.momentum, mass=constants.ARGON_MASS) / constants.KB)
  if not math.isfinite(temp):
    raise FloatingPointError("MD produced non-finite momenta")
  idx = n.idx
  if partition.is_sparse(fmt):
    pairs = int(jnp.sum(idx[0] < positions.shape[0]))
  else:
    pairs = int(jnp.sum(idx < positions.shape[0]))
  return dict(s_per_step=t["median_s"] / steps, timing=t, steps_per_chunk=steps,
              first_chunk_s=t_compile, allocate_s=t_alloc, neighbor_capacity=list(idx.shape),
              listed_pairs_per_atom=pairs / positions.shape[0], final_temperature_k=temp,
              **({"profile": ops} if ops else {}))


def with_kernel_knobs(builder, **knobs):
  """`builder` whose force function is traced with `unitary_enn.kernels`' constants and `unitary_enn.layers`' forms
  set to `knobs` (`common.kernel_knobs`: each call, and so each jit trace, runs under them)."""
  import contextlib

  def build(*args, **kwargs):
    force_fn = builder(*args, **kwargs)

    def force(*a, **k):
      with contextlib.ExitStack() as stack:
        kernel_knobs(stack, **knobs)
        return force_fn(*a, **k)
    return force
  return build


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax
  if "float64" in (FLAGS.dtype, FLAGS.network_dtype) or FLAGS.model:
    jax.config.update("jax_enable_x64", True)

  from jax_md import partition

  from unitary_enn import kernels, models, neighbors, parallel, potentials
  from unitary_enn.constants import ARGON_FCC_LATTICE_CONSTANT
  cells = [int(c) for c in FLAGS.cells]
  too_small = [c for c in cells if c * ARGON_FCC_LATTICE_CONSTANT <= 2 * (R_CUT + FLAGS.dr_threshold)]
  if too_small:
    raise app.UsageError(f"--cells {too_small}: the periodic box (cells x 5.244 A) must exceed 2 x (cutoff + "
                         f"skin) = {2 * (R_CUT + FLAGS.dr_threshold):.1f} A")
  model = models.load_model(FLAGS.model) if FLAGS.model else random_model(FLAGS.network_dtype)
  cmodel = (models.load_model(FLAGS.conservative_model) if FLAGS.conservative_model
            else random_conservative_model(FLAGS.network_dtype))
  if not cmodel.conservative:
    raise app.UsageError(f"--conservative_model={FLAGS.conservative_model} holds a direct model")
  fmt = neighbors.neighbor_format(FLAGS.format)
  descriptor_dtype = FLAGS.dtype if FLAGS.descriptor_dtype == "positions" else None
  builders = {
      "lj_cut": functools.partial(potentials.lj_cut_force_fn, r_cut=R_CUT),
      "network": functools.partial(models.many_body_force_fn, model, descriptor_dtype=descriptor_dtype),
      "conservative": functools.partial(models.many_body_force_fn, cmodel, descriptor_dtype=descriptor_dtype),
  }
  builders["network_sharded"] = functools.partial(builders["network"], mesh=parallel.device_mesh())
  builders["network_whole"] = functools.partial(builders["network"], network_block=None)
  # The network's products in another mode (`layers.PRECISIONS`; on an NVIDIA GPU: TensorFloat-32, bfloat16
  # inputs with float32 accumulation, or float32 split into 3 / 6 / 9 bfloat16 products; on a CPU the bf16 modes
  # compute in float32 and the TensorFloat-32 ones do not compile)
  for mode in FAST_PRECISIONS:
    builders[f"network_{mode}"] = functools.partial(builders["network"], precision=mode)
  # The descriptor sums in XLA's form or the fused kernel (unitary_enn.kernels; Triton on a GPU, interpreted and
  # slower on a CPU), whatever the default ("auto") takes here
  for kernel in ("xla", "pallas"):
    builders[f"network_{kernel}"] = functools.partial(builders["network"], sum_kernel=kernel)
    builders[f"conservative_{kernel}"] = functools.partial(builders["conservative"], sum_kernel=kernel)
  # The fused kernels with the pair terms written atoms-first before their transposes (`kernels.MATERIALIZE`)
  for name in ("network", "conservative"):
    builders[f"{name}_materialized"] = with_kernel_knobs(builders[f"{name}_pallas"], MATERIALIZE=True)
  # The layers' elementwise work in the forms written for GPUs (`layers.UNROLL_NORMS`, `layers.ONE_PRODUCT`), alone
  # and with the pair terms materialized
  for name in ("network", "conservative"):
    builders[f"{name}_fused"] = with_kernel_knobs(builders[name], UNROLL_NORMS=True, ONE_PRODUCT=True)
    builders[f"{name}_fused_materialized"] = with_kernel_knobs(builders[f"{name}_pallas"], UNROLL_NORMS=True,
                                                               ONE_PRODUCT=True, MATERIALIZE=True)
  unknown = set(FLAGS.drivers) - set(builders)
  if unknown:
    raise app.UsageError(f"unknown --drivers {sorted(unknown)}; expected some of {sorted(builders)}")
  net_dtype = str(jax.tree.leaves(model.params)[0].real.dtype)
  roof = matmul_flops_per_s(net_dtype)
  default_kernel = kernels.resolve_sum_kernel("auto", sparse=partition.is_sparse(fmt))
  print(f"md_throughput: dense matmul {roof['flops_per_s'] / 1e9:.1f} GFLOP/s ({net_dtype}, the network's); the "
        f"default descriptor sums here: {default_kernel}", flush=True)
  sizes = list(model.sizes)
  rows = []
  for n_cells in cells:
    positions, box = fcc_state(n_cells, FLAGS.dtype, FLAGS.temperature)
    row = dict(n_cells=n_cells, n_atoms=len(positions), box_a=box)
    for name in FLAGS.drivers:
      try:
        r = time_md(builders[name], positions, box, steps=FLAGS.steps, repeats=FLAGS.repeats, fmt=fmt,
                    dr_threshold=FLAGS.dr_threshold, capacity_multiplier=FLAGS.capacity_multiplier,
                    temperature=FLAGS.temperature, profile_top=FLAGS.profile)
      except Exception as e:  # noqa: BLE001 -- one driver that fails to compile (a new kernel) must not stop the rest
        if len(FLAGS.drivers) == 1:
          raise
        row.setdefault("failed", {})[name] = f"{type(e).__name__}: {e}"[:2000]
        print(f"md_throughput: {row['n_atoms']:>7,} atoms  {name:19s} FAILED: {type(e).__name__}: "
              f"{str(e)[:300]}", flush=True)
        continue
      r["atom_steps_per_s"] = row["n_atoms"] / r["s_per_step"]
      row[name] = r
      print(f"md_throughput: {row['n_atoms']:>7,} atoms  {name:19s} {r['s_per_step'] * 1e3:9.1f} ms/step  "
            f"{r['atom_steps_per_s']:>12,.0f} atom-steps/s", flush=True)
      if "profile" in r:
        from benchmarks import profile
        print("md_throughput: per step, one more chunk under jax's profiler:\n"
              + (f"  failed: {r['profile']['failed'][:300]}" if "failed" in r["profile"]
                 else profile.format_ops(r["profile"])), flush=True)
    if "network" in row:
      # Pairs inside the cutoff: what the descriptor sum needs (the list also holds the skin and padding).
      pairs_in_cut = 4.0 / 3.0 * math.pi * R_CUT**3 * row["n_atoms"] / box**3
      flops = network_flops_per_atom(sizes, len(model.basis.r_s), row["network"]["listed_pairs_per_atom"])
      achieved = flops["total"] * row["network"]["atom_steps_per_s"]
      row["network"].update(flops_per_atom=flops, pairs_in_cutoff_per_atom=pairs_in_cut,
                            achieved_flops_per_s=achieved, roofline_fraction=achieved / roof["flops_per_s"])
    if "network" in row and "network_sharded" in row:
      row["sharded_over_network"] = row["network_sharded"]["s_per_step"] / row["network"]["s_per_step"]
      print(f"md_throughput: sharded over {jax.device_count()} device(s) / one device time per step = "
            f"{row['sharded_over_network']:.3f}", flush=True)
    for mode in FAST_PRECISIONS:
      if "network" in row and f"network_{mode}" in row:
        row[f"network_{mode}_over_network"] = row[f"network_{mode}"]["s_per_step"] / row["network"]["s_per_step"]
        print(f"md_throughput: network_{mode} / network time per step = {row[f'network_{mode}_over_network']:.3f}",
              flush=True)
    if "network" in row and "network_whole" in row:
      row["network_whole_over_network"] = row["network_whole"]["s_per_step"] / row["network"]["s_per_step"]
      print(f"md_throughput: network run on all atoms at once / in blocks (the default) time per step = "
            f"{row['network_whole_over_network']:.3f}", flush=True)
    for name, base in (("network_pallas", "network_xla"), ("conservative_pallas", "conservative_xla"),
                       ("network_pallas", "network"), ("conservative_pallas", "conservative")):
      if name in row and base in row:
        row[f"{name}_over_{base}"] = row[name]["s_per_step"] / row[base]["s_per_step"]
        print(f"md_throughput: {name} / {base} time per step = {row[f'{name}_over_{base}']:.3f}"
              + (f"; {name} / lj_cut {row[name]['s_per_step'] / row['lj_cut']['s_per_step']:.2f}"
                 if "lj_cut" in row else ""), flush=True)
    if "network" in row and "lj_cut" in row:
      row["network_cost_over_lj_cut"] = row["network"]["s_per_step"] / row["lj_cut"]["s_per_step"]
      print(f"md_throughput: network / lj_cut time per step = {row['network_cost_over_lj_cut']:.2f}; "
            f"roofline fraction {row['network']['roofline_fraction']:.3f}", flush=True)
    if "network" in row and "conservative" in row:
      row["conservative_cost_over_network"] = row["conservative"]["s_per_step"] / row["network"]["s_per_step"]
      print(f"md_throughput: conservative / direct network time per step = "
            f"{row['conservative_cost_over_network']:.2f}", flush=True)
    rows.append(row)
  record = dict(devices=[str(d) for d in jax.devices()], dtype=FLAGS.dtype, network_dtype=net_dtype, descriptor_dtype=FLAGS.descriptor_dtype,
                format=FLAGS.format, default_sum_kernel=default_kernel,
                dr_threshold=FLAGS.dr_threshold, capacity_multiplier=FLAGS.capacity_multiplier,
                model=FLAGS.model or "random weights, paper sizes", network_sizes=sizes,
                conservative_model=FLAGS.conservative_model or "random weights, paper layers + 16 vectors + head "
                                                               f"{CONSERVATIVE_HEAD}",
                conservative_sizes=list(cmodel.sizes), matmul=roof, sizes=rows)
  if len(rows) >= 2:
    n_atoms = [r["n_atoms"] for r in rows]
    record["scaling_exponent"] = {name: fit_exponent(n_atoms, [r[name]["s_per_step"] for r in rows])
                                  for name in FLAGS.drivers if all(name in r for r in rows)}
    print(f"md_throughput: scaling exponents (time per step ~ N^p): {record['scaling_exponent']}", flush=True)
  write_result("md_throughput", record, FLAGS.out)


if __name__ == "__main__":
  define_flags()
  app.run(main)

r"""Descriptor sum throughput: the plain sum over all 73 Gaussians against the banded sum (the ~9 centres nearest
to each pair, `descriptors._band_width`), timed in the same run on periodic FCC argon, with their difference.

  python -m benchmarks.descriptor_sum                          # 4,000 and 32,000 atoms, Dense neighbor list
  python -m benchmarks.descriptor_sum --cells=10 --formats=dense,ordered_sparse --budgets=20,21,22,23,24
  python -m benchmarks.descriptor_sum --cells=10 --what_if     # + costs outside the sum's code, for the record

The sum is `descriptors._neighbor_list_sums` as MD calls it (vector descriptors eq. 51, the paper's basis
r_s = 2.8..10 A, eta = 100 A^-2, r_cut = 10 A, cosine cutoff, float32) on the jittered 60 K crystal of
`benchmarks.md_throughput` with a jax-md neighbor list (skin 1 A, capacity x1.25), band=0 (plain) or None
(automatic: banded where exact to float rounding). Timings are medians of repeats after a compiled warm-up
(`benchmarks.common.time_fn`); the ratio plain / banded is taken within one run.

--network adds the force evaluation of the Sec. 4.5 network (sum, then 73-200-100-50-10-1 with random
weights), plain and banded. --budgets times the banded Dense sum with the block budgets 2^b numbers (the
default is `descriptors.CPU_BLOCK_BUDGET` on CPU). --what_if times two variants that change code outside the
sum (not adopted here; for whoever owns that code): the cosine cutoff as a polynomial instead of libm cos, and
a periodic displacement by rounding instead of jax-md's fmod.
"""

from __future__ import annotations


from absl import app, flags

from benchmarks.common import time_fn, write_result

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags are defined when the binary runs, not on import (tests import this module)."""
  flags.DEFINE_list("cells", ["10", "20"], "FCC cells per side; 4 n^3 atoms each.")
  flags.DEFINE_list("formats", ["dense"], "Neighbor list formats: dense, sparse, ordered_sparse.")
  flags.DEFINE_integer("repeats", 5, "Timed repeats (the median is reported).")
  flags.DEFINE_bool("network", True, "Also time the network force evaluation (sum + network), plain and banded.")
  flags.DEFINE_list("budgets", [], "log2 of block budgets (numbers) to time for the banded Dense sum.")
  flags.DEFINE_bool("what_if", False, "Also time variants that change code outside the sum (not adopted).")
  flags.DEFINE_string("out", None, "JSON path (default benchmarks/results/descriptor_sum.json).")


R_CUT = 10.0
ETA = 100.0


def polynomial_cosine_cutoff(r, r_cut: float):
  """(cos(pi r / r_c) + 1) / 2 as an odd polynomial in r / r_c - 1/2 (float32-accurate): the what-if cutoff.

  Fitted here by least squares to sin(pi t) on [-1/2, 1/2] (degree 11, error ~4e-11), so that it vectorizes
  where the libm cosine that XLA calls on CPU does not.
  """
  import jax.numpy as jnp
  import numpy as np
  t = np.linspace(-0.5, 0.5, 4001)
  basis = np.stack([t ** (2 * k + 1) for k in range(6)], axis=1)
  coef = np.linalg.lstsq(basis, np.sin(np.pi * t), rcond=None)[0]
  x = r / r_cut - 0.5
  x2 = x * x
  p = coef[5]
  for c in coef[4::-1]:
    p = p * x2 + c
  return jnp.where(r < r_cut, 0.5 - 0.5 * x * p, 0.0)


def round_periodic_displacement(box: float):
  """r_a - r_b wrapped into the periodic box by rounding (the what-if displacement; jax-md uses fmod)."""
  import jax.numpy as jnp

  def displacement(ra, rb, **unused):
    d = ra - rb
    return d - box * jnp.round(d / box)
  return displacement


def sum_fn(displacement, *, band, block=None, cutoff=None):
  """jit(positions, neighbor) -> `(N, 3, 73)` float32 vector descriptors by `_neighbor_list_sums`."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from unitary_enn import descriptors
  r_s = np.asarray(descriptors.paper_r_s(), np.float32)
  eta = np.asarray(ETA, np.float32)
  cutoff = cutoff or descriptors.cosine_cutoff

  @jax.jit
  def f(positions, neighbor):
    v = jnp.ones((positions.shape[0], 1), jnp.float32)
    return descriptors._neighbor_list_sums(positions, neighbor, v, r_s, eta, displacement_fn=displacement,
                                           r_cut=R_CUT, cutoff=cutoff, vector=True, block=block, band=band)
  return f


def force_fn(displacement, params, *, band):
  """jit(positions, neighbor) -> `(N, 3)`: the descriptor sum then the network, as md.many_body_force_fn."""
  import jax

  from unitary_enn.network import apply_uenn
  sums = sum_fn(displacement, band=band)

  @jax.jit
  def f(positions, neighbor):
    return apply_uenn(params, sums(positions, neighbor), activation="softsign")[..., 0]
  return f


def timed(fn, *args, repeats: int) -> dict:
  import jax
  t = time_fn(lambda: jax.block_until_ready(fn(*args)), repeats=repeats, min_time=0.2)
  return t


def max_relative_difference(a, b) -> float:
  """max |a - b| / max |b|: the tolerance measure of tests/test_descriptor_sums.py."""
  import numpy as np
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax
  import jax.numpy as jnp
  from jax_md import partition, space

  from benchmarks import md_throughput
  from unitary_enn import descriptors, md
  cells = [int(c) for c in FLAGS.cells]
  formats = {f: md._neighbor_format(f) for f in FLAGS.formats}
  band = descriptors._band_width(descriptors.paper_r_s().astype("float32"), ETA, jnp.float32)
  params = jax.tree.map(jnp.asarray, md_throughput.random_model("float32")["params"])
  print(f"descriptor_sum: band of {band} of 73 centres (float32, eta = {ETA} A^-2)", flush=True)
  rows = []
  for n_cells in cells:
    positions, box = md_throughput.fcc_state(n_cells, "float32", 60.0)
    positions = jnp.asarray(positions)
    displacement, _ = space.periodic(box)
    for name, fmt in formats.items():
      neighbor_fn = partition.neighbor_list(displacement, box, R_CUT, dr_threshold=1.0, capacity_multiplier=1.25,
                                            format=fmt)
      nbr = neighbor_fn.allocate(positions)
      row = dict(n_cells=n_cells, n_atoms=len(positions), format=name, neighbor_capacity=list(nbr.idx.shape))
      plain, banded = sum_fn(displacement, band=0), sum_fn(displacement, band=None)
      row["max_relative_difference"] = max_relative_difference(banded(positions, nbr), plain(positions, nbr))
      row["plain"] = timed(plain, positions, nbr, repeats=FLAGS.repeats)
      row["banded"] = timed(banded, positions, nbr, repeats=FLAGS.repeats)
      row["ratio"] = row["plain"]["median_s"] / row["banded"]["median_s"]
      print(f"descriptor_sum: {row['n_atoms']:>7,} atoms {name:15s} plain {row['plain']['median_s'] * 1e3:8.1f} ms"
            f"  banded {row['banded']['median_s'] * 1e3:8.1f} ms  ratio {row['ratio']:.2f}  "
            f"max rel. diff {row['max_relative_difference']:.1e}", flush=True)
      if FLAGS.network:
        fp, fb = force_fn(displacement, params, band=0), force_fn(displacement, params, band=None)
        row["force_plain"] = timed(fp, positions, nbr, repeats=FLAGS.repeats)
        row["force_banded"] = timed(fb, positions, nbr, repeats=FLAGS.repeats)
        row["force_ratio"] = row["force_plain"]["median_s"] / row["force_banded"]["median_s"]
        print(f"descriptor_sum:   network force: plain {row['force_plain']['median_s'] * 1e3:8.1f} ms  banded "
              f"{row['force_banded']['median_s'] * 1e3:8.1f} ms  ratio {row['force_ratio']:.2f}", flush=True)
      if FLAGS.budgets and name == "dense":
        m = nbr.idx.shape[1]
        row["budgets"] = {}
        for b in FLAGS.budgets:
          block = descriptors._block_size(len(positions), m * band * 3, 1 << int(b))
          t = timed(sum_fn(displacement, band=None, block=block), positions, nbr, repeats=FLAGS.repeats)
          row["budgets"][b] = dict(block_rows=block, **t)
          print(f"descriptor_sum:   budget 2^{b}: {block} rows a block, {t['median_s'] * 1e3:8.1f} ms", flush=True)
      if FLAGS.what_if and name == "dense":
        variants = {"polynomial_cosine_cutoff": sum_fn(displacement, band=None, cutoff=polynomial_cosine_cutoff),
                    "round_periodic_displacement": sum_fn(round_periodic_displacement(box), band=None)}
        row["what_if"] = {}
        for key, fn in variants.items():
          t = timed(fn, positions, nbr, repeats=FLAGS.repeats)
          row["what_if"][key] = dict(max_relative_difference=max_relative_difference(fn(positions, nbr),
                                                                                     plain(positions, nbr)), **t)
          print(f"descriptor_sum:   what if {key}: {t['median_s'] * 1e3:8.1f} ms (banded sum "
                f"{row['banded']['median_s'] * 1e3:.1f} ms)", flush=True)
      rows.append(row)
  record = dict(dtype="float32", eta=ETA, r_cut=R_CUT, n_centres=73, band=band,
                cpu_block_budget=descriptors.CPU_BLOCK_BUDGET, sizes=rows)
  write_result("descriptor_sum", record, FLAGS.out)


if __name__ == "__main__":
  define_flags()
  app.run(main)

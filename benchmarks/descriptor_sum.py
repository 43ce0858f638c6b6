r"""Descriptor sum throughput: the plain sum over all 73 Gaussians against banded sums (per pair only the
centres nearest to it, scatter-added), timed in the same run on periodic FCC argon, with their differences.

  python -m benchmarks.descriptor_sum                          # 4,000 and 32,000 atoms, Dense neighbor list
  python -m benchmarks.descriptor_sum --cells=10 --formats=dense,ordered_sparse --budgets=20,21,22,23,24
  python -m benchmarks.descriptor_sum --cells=10 --pair_terms  # + the pair terms as they were computed before
  python -m benchmarks.descriptor_sum --cells=5 --bands=9,21 --model=WORKDIR   # force changes, trained model
  python -m benchmarks.descriptor_sum --cells=20,63 --pallas_rows=16,32,64,32x2  # the fused kernel (a GPU)

--bands are the widths timed (default: the exact one, `descriptors._band_width`: 21 of 73 in float32, every
Gaussian that does not underflow). A width below it is forced here, only to measure what it would change:
the library refuses it, because the network reads the direction of every channel (eq. 9).

The sum is `descriptors._neighbor_list_sums` as MD calls it (vector descriptors eq. 51, the paper's basis
r_s = 2.8..10 A, eta = 100 A^-2, r_cut = 10 A, cosine cutoff, float32) on the jittered 60 K crystal of
`benchmarks.md_throughput` with a jax-md neighbor list (skin 1 A, capacity x1.25) in `neighbors.periodic_space`,
band=0 (plain) or a band width. Timings are medians of repeats after a compiled warm-up, per evaluation in a
jitted loop of 5 (`timed`), in wall and in CPU seconds of the process (the latter much less disturbed by other
jobs on a shared machine); the ratio plain / banded is taken within one run.

--network adds the force evaluation of the Sec. 4.5 network (sum, then 73-200-100-50-10-1; random weights
or --model), plain and banded, and the largest force difference. --budgets times the Dense sums (banded and
plain) with block budgets of 2^b numbers (the default is `descriptors.CPU_BLOCK_BUDGET` on CPU). --pair_terms
times the plain sum with the pair terms as they were computed before: the cosine cutoff with jnp.cos instead of
`descriptors.cosine_cutoff`'s polynomial, jax-md's periodic displacement (mod) instead of
`neighbors.periodic_space` (rounding), and the cutoff weight on the K Gaussians instead of the 3 unit-vector
components, each alone and all three, against the defaults in the same run.

--pallas_rows times the fused kernel of `unitary_enn.kernels` (sum_kernel="pallas": the Gaussians in registers,
never in memory) with that many atoms per program (ROWSxSTAGES: and that many stages of Triton's pipelining),
alone and with the network, against the plain XLA sum of the same run, with their differences. It is compiled
with Triton on a GPU; on the CPU it is interpreted, which only shows that it runs (2-3x slower than XLA's form).
ROWSxSTAGESxWARPS also sets Triton's warps per program (0: the default), and ROWSxSTAGESxWARPSxCOLUMNS the
neighbour columns the kernel's loop takes an iteration (`kernels.COLUMNS`). --parts times the fused sum's two halves apart: the pair
terms (distances and weights, XLA) alone, and the kernel alone on them.
"""

from __future__ import annotations

from absl import app, flags

from benchmarks.common import kernel_knobs, write_result

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags are defined when the binary runs, not on import (tests import this module)."""
  flags.DEFINE_list("cells", ["10", "20"], "FCC cells per side; 4 n^3 atoms each.")
  flags.DEFINE_list("formats", ["dense"], "Neighbor list formats: dense, sparse, ordered_sparse.")
  flags.DEFINE_integer("repeats", 5, "Timed repeats (the median is reported).")
  flags.DEFINE_bool("network", True, "Also time the network force evaluation (sum + network), plain and banded.")
  flags.DEFINE_list("budgets", [], "log2 of block budgets (numbers) to time for the Dense sums.")
  flags.DEFINE_bool("pair_terms", False, "Also time the sum with the pair terms as they were before: jax-md's "
                    "periodic displacement (mod), a jnp.cos cutoff, the cutoff weight on the Gaussians.")
  flags.DEFINE_list("bands", [], "Band widths to time against the plain sum (default: the exact width).")
  flags.DEFINE_list("pallas_rows", [], "Atoms per program of the fused Pallas kernel to time (powers of two; "
                    "ROWSxSTAGES also sets Triton's pipelining stages, ROWSxSTAGESxWARPS its warps per program "
                    "(0: the default), ROWSxSTAGESxWARPSxCOLUMNS the neighbour columns an iteration; none by "
                    "default).")
  flags.DEFINE_bool("parts", False, "With --pallas_rows: also time the fused sum's parts apart, the pair terms "
                    "alone (XLA: distances and weights from the positions and the list) and the kernel alone on "
                    "them, for each --pallas_rows.")
  flags.DEFINE_string("model", None, "A many_body workdir whose network gives the forces (default: random weights, "
                      "whose b = 0 makes them blind to small channels).")
  flags.DEFINE_string("out", None, "JSON path (default benchmarks/results/descriptor_sum.json).")


R_CUT = 10.0
ETA = 100.0


def libm_cosine_cutoff(r, r_cut: float):
  """The cosine cutoff of eq. 52 as (cos(pi r / r_c) + 1) / 2 with jnp.cos: `descriptors.cosine_cutoff` before it
  became a polynomial (the --pair_terms comparison)."""
  import jax.numpy as jnp
  return jnp.where(r < r_cut, 0.5 * (jnp.cos(jnp.pi * r / r_cut) + 1.0), 0.0)


def row_sums_cutoff_on_gaussians(r, fc, u, v, r_s, eta, band, vector, precision=None, sum_kernel="xla"):
  """`descriptors._row_sums` of the plain vector sum with f_c multiplied into the K Gaussians of each pair instead
  of its 3 unit-vector components (the --pair_terms comparison; the form before)."""
  import jax.numpy as jnp

  from unitary_enn import descriptors
  if band is not None or not vector:
    return descriptors._row_sums(r, fc, u, v, r_s, eta, band, vector, precision, sum_kernel)
  g = descriptors.gaussian_basis(r, r_s, eta) * fc[..., None]
  return jnp.einsum("xbms,bmk->bxsk", u[..., None] * v, g, precision=precision or "highest")


def sum_fn(displacement, *, band, block=None, cutoff=None, r_s=None, eta=ETA, row_sums=None, sum_kernel="xla",
           pallas_rows=None, pallas_stages=None, pallas_warps=None, pallas_columns=None):
  """jit(positions, neighbor) -> `(N, 3, K)` float32 vector descriptors by `_neighbor_list_sums`.

  A band narrower than `descriptors._band_width` is forced (traced with `_band_width` patched to allow it).
  sum_kernel "pallas" runs the fused kernel, with `pallas_rows` atoms per program, `pallas_stages` stages of
  pipelining, `pallas_warps` warps and `pallas_columns` neighbour columns an iteration (`kernels.ROWS`,
  `kernels.NUM_STAGES`, `kernels.NUM_WARPS`, `kernels.COLUMNS` patched).
  """
  import contextlib
  from unittest import mock

  import jax.numpy as jnp
  import numpy as np

  from unitary_enn import descriptors
  r_s = np.asarray(descriptors.paper_r_s() if r_s is None else r_s, np.float32)
  eta = np.asarray(eta, np.float32)
  cutoff = cutoff or descriptors.cosine_cutoff
  exact = descriptors._band_width(r_s, eta, jnp.float32)
  forced = bool(band) and (exact is None or band < exact)

  def f(positions, neighbor):
    v = jnp.ones((positions.shape[0], 1), jnp.float32)
    return descriptors._neighbor_list_sums(positions, neighbor, v, r_s, eta, displacement_fn=displacement,
                                           r_cut=R_CUT, cutoff=cutoff, vector=True, block=block, band=band,
                                           sum_kernel=sum_kernel)

  def patches():
    stack = contextlib.ExitStack()
    _kernel_knobs(stack, pallas_rows, pallas_stages, pallas_warps, pallas_columns)
    if forced:
      stack.enter_context(mock.patch.object(descriptors, "_band_width", lambda *a: band))
    if row_sums is not None:
      stack.enter_context(mock.patch.object(descriptors, "_row_sums", row_sums))
    return stack
  return _jitted(f, patches)


def _jitted(f, patches):
  """jit(f), traced under `patches()`; `.looped(calls)` is the same in a jitted loop of `calls` evaluations."""
  import jax
  import jax.numpy as jnp
  jitted = jax.jit(f)

  def call(positions, neighbor):
    with patches():
      return jitted(positions, neighbor)

  def looped(calls: int):
    def loop(positions, neighbor):
      out = jax.eval_shape(f, positions, neighbor)

      def body(_, carry):
        p, _ = carry
        y = f(p, neighbor)
        return p + 1e-9 * y.reshape(y.shape[0], -1)[:, :3], y  # nudged by the output: nothing is hoisted
      return jax.lax.fori_loop(0, calls, body, (positions, jnp.zeros(out.shape, out.dtype)))[1]
    jitted_loop = jax.jit(loop)

    def run(positions, neighbor):
      with patches():
        return jitted_loop(positions, neighbor)
    return run
  call.raw, call.patches, call.looped = f, patches, looped
  return call


def _kernel_knobs(stack, rows=None, stages=None, warps=None, columns=None):
  """The fused kernel's tuning constants for one variant, patched on `stack` (`common.kernel_knobs`)."""
  kernel_knobs(stack, ROWS=rows, NUM_STAGES=stages, NUM_WARPS=warps, COLUMNS=columns)


def pallas_variant(spec: str) -> dict:
  """`--pallas_rows` entry ROWS[xSTAGES[xWARPS[xCOLUMNS]]] -> `sum_fn` keywords (WARPS 0: the default)."""
  parts = [int(x) for x in spec.split("x")]
  if not 1 <= len(parts) <= 4:
    raise ValueError(f"--pallas_rows entries are ROWS[xSTAGES[xWARPS[xCOLUMNS]]], got {spec!r}")
  parts += [1, 0, 1][len(parts) - 1:]
  return dict(sum_kernel="pallas", pallas_rows=parts[0], pallas_stages=parts[1], pallas_warps=parts[2] or None,
              pallas_columns=parts[3])


def parts_fns(displacement, r_s, eta):
  """jit(positions, neighbor) -> (r `(N, M')`, w `(3, N, M')`): the pair terms of the vector sum, with M' the
  narrow width of `descriptors._dense_row_sums`; and kernel(r, w, **sum_fn keywords) -> jit(r, w): the fused
  kernel alone on them (`--parts`)."""
  import contextlib

  import jax
  import jax.numpy as jnp
  import numpy as np

  from unitary_enn import descriptors, kernels
  r_s = np.asarray(r_s, np.float32)

  @jax.jit
  def pairs(positions, neighbor):
    n, m = neighbor.idx.shape
    idx = neighbor.idx[:, :descriptors._narrow_width(m) or m]
    i = jnp.arange(n)
    valid = (idx < n) & (idx != i[:, None])
    jc = jnp.minimum(idx, n - 1)
    p = positions.T
    d = descriptors.row_displacements(displacement)(p[:, jc], p[:, i])
    r, fc, u = descriptors._pair_terms(d, valid, R_CUT, descriptors.cosine_cutoff, True)
    return r, u * fc

  def kernel(pallas_rows=None, pallas_stages=None, pallas_warps=None, pallas_columns=None, **unused):
    jitted = jax.jit(lambda r, w: kernels.gaussian_sums(r, w, r_s, np.float32(eta)))

    def call(r, w):
      with contextlib.ExitStack() as stack:
        _kernel_knobs(stack, pallas_rows, pallas_stages, pallas_warps, pallas_columns)
        return jitted(r, w)
    return call
  return pairs, kernel


def force_fn(displacement, model, *, band, sum_kernel="xla", pallas_rows=None, pallas_stages=None,
             pallas_warps=None, pallas_columns=None):
  """jit(positions, neighbor) -> `(N, 3)` eV/A: the descriptor sum then the network (in the cache-sized blocks of
  `network.network_block`), as models.many_body_force_fn."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from unitary_enn.network import apply_uenn, network_block
  params = jax.tree.map(jnp.asarray, model.params)
  dtype = params[0]["W"].real.dtype
  in_scale = jnp.asarray(model.scales["inputs"], dtype)
  out_scale = jnp.asarray(model.scales["targets"], dtype)
  sums = sum_fn(displacement, band=band, r_s=np.asarray(model.basis.r_s), eta=float(model.basis.eta),
                sum_kernel=sum_kernel, pallas_rows=pallas_rows, pallas_stages=pallas_stages,
                pallas_warps=pallas_warps, pallas_columns=pallas_columns)
  block = network_block(model.sizes)

  def f(positions, neighbor):
    d = sums.raw(positions, neighbor)
    return apply_uenn(params, d.astype(dtype) / in_scale, activation=model.activation,
                      block=block)[..., 0] * out_scale[0]
  return _jitted(f, sums.patches)


CALLS = 5  # evaluations per timed jitted loop


def timed(fn, *args, repeats: int, min_time: float = 0.2, calls: int = CALLS) -> dict:
  """Median wall and CPU seconds per evaluation (as `benchmarks.common.time_fn`, after a warm-up call).

  A function made here (`sum_fn`, `force_fn`) is timed in a jitted loop of `calls` evaluations, as MD runs it:
  one call per evaluation would also time the allocation of its buffers, whose fresh pages the system zeroes
  (in a throwaway profiling script the Sec. 4.5 network on 4,000 atoms took 21 ms per single call and 11 ms an
  evaluation in a loop).

  CPU seconds are those of this process, all its threads together: on a shared machine they are much less
  disturbed by other jobs than wall time, and their ratio is the ratio of the work done.
  """
  import statistics
  import time

  import jax
  per = 1
  if hasattr(fn, "looped") and calls > 1:
    fn, per = fn.looped(calls), calls
  jax.block_until_ready(fn(*args))
  wall, cpu = [], []
  for _ in range(repeats):
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
      jax.block_until_ready(fn(*args))
      n += 1
      if time.perf_counter() - t0 >= min_time:
        break
    wall.append((time.perf_counter() - t0) / (n * per))
    cpu.append((time.process_time() - c0) / (n * per))
  return dict(median_s=statistics.median(wall), min_s=min(wall), max_s=max(wall), cpu_median_s=statistics.median(cpu),
              repeats=repeats, evaluations_per_call=per)


def _ms(t: dict) -> str:
  return f"{t['median_s'] * 1e3:7.1f} ms ({t['cpu_median_s'] * 1e3:.1f} CPU)"


def max_relative_difference(a, b) -> float:
  """max |a - b| / max |b| over `(N, 3, K)` descriptors."""
  import numpy as np
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def max_channel_relative_difference(a, b, floor: float = 1e-30) -> float:
  """max over atoms and channels of |a - b| / |b| (norms of the 3-vectors; |b| floored at `floor`): what
  the network's e = x / |x| (eq. 9) is sensitive to."""
  import numpy as np
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), floor)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax.numpy as jnp
  import numpy as np
  from jax_md import partition, space

  from benchmarks import md_throughput
  from unitary_enn import descriptors, models, neighbors
  cells = [int(c) for c in FLAGS.cells]
  formats = {f: neighbors.neighbor_format(f) for f in FLAGS.formats}
  exact = descriptors._band_width(descriptors.paper_r_s().astype("float32"), ETA, jnp.float32)
  bands = [int(b) for b in FLAGS.bands] or [exact]
  model = models.load_model(FLAGS.model) if FLAGS.model else md_throughput.random_model("float32")
  print(f"descriptor_sum: exact band {exact} of 73 centres (float32, eta = {ETA} A^-2); timing bands {bands}; "
        f"automatic choice: {descriptors._auto_band(descriptors.paper_r_s().astype('float32'), ETA, jnp.float32)}",
        flush=True)
  rows = []
  for n_cells in cells:
    positions, box = md_throughput.fcc_state(n_cells, "float32", 60.0)
    positions = jnp.asarray(positions)
    displacement, _ = neighbors.periodic_space(box)
    for name, fmt in formats.items():
      neighbor_fn = partition.neighbor_list(displacement, box, R_CUT, dr_threshold=1.0, capacity_multiplier=1.25,
                                            format=fmt)
      nbr = neighbor_fn.allocate(positions)
      row = dict(n_cells=n_cells, n_atoms=len(positions), format=name, neighbor_capacity=list(nbr.idx.shape))
      plain = sum_fn(displacement, band=0)
      want = plain(positions, nbr)
      row["plain"] = timed(plain, positions, nbr, repeats=FLAGS.repeats)
      if FLAGS.network:
        f_plain = force_fn(displacement, model, band=0)
        f_want = np.asarray(f_plain(positions, nbr))
        row["force_plain"] = timed(f_plain, positions, nbr, repeats=FLAGS.repeats)
        row["max_abs_force_ev_per_a"] = float(np.max(np.abs(f_want)))
      print(f"descriptor_sum: {row['n_atoms']:>7,} atoms {name:15s} plain sum {_ms(row['plain'])}"
            + (f"  force {_ms(row['force_plain'])}" if FLAGS.network else ""), flush=True)
      row["bands"] = {}
      for kb in bands:
        banded = sum_fn(displacement, band=kb)
        got = banded(positions, nbr)
        b = dict(max_relative_difference=max_relative_difference(got, want),
                 max_channel_relative_difference=max_channel_relative_difference(got, want),
                 sum=timed(banded, positions, nbr, repeats=FLAGS.repeats))
        b["ratio"] = row["plain"]["median_s"] / b["sum"]["median_s"]
        b["cpu_ratio"] = row["plain"]["cpu_median_s"] / b["sum"]["cpu_median_s"]
        line = (f"descriptor_sum:   band {kb:2d}: sum {_ms(b['sum'])}  plain/banded {b['ratio']:.2f} (CPU "
                f"{b['cpu_ratio']:.2f}); max rel. diff {b['max_relative_difference']:.1e}, per channel "
                f"{b['max_channel_relative_difference']:.1e}")
        if FLAGS.network:
          f_band = force_fn(displacement, model, band=kb)
          b["force"] = timed(f_band, positions, nbr, repeats=FLAGS.repeats)
          b["force_ratio"] = row["force_plain"]["median_s"] / b["force"]["median_s"]
          b["force_cpu_ratio"] = row["force_plain"]["cpu_median_s"] / b["force"]["cpu_median_s"]
          b["max_abs_force_difference_ev_per_a"] = float(np.max(np.abs(np.asarray(f_band(positions, nbr)) - f_want)))
          line += (f"; force {_ms(b['force'])} ratio {b['force_ratio']:.2f} (CPU {b['force_cpu_ratio']:.2f}), "
                   f"max |dF| {b['max_abs_force_difference_ev_per_a']:.1e} eV/A")
        row["bands"][str(kb)] = b
        print(line, flush=True)
      if FLAGS.budgets and name == "dense":
        m = nbr.idx.shape[1]
        row["budgets"] = {}
        for kb in bands:
          for lb in FLAGS.budgets:
            cost = m * descriptors._pair_cost(73, kb, 1, True)
            block = descriptors._block_size(len(positions), cost, 1 << int(lb))
            t = timed(sum_fn(displacement, band=kb, block=block), positions, nbr, repeats=FLAGS.repeats)
            row["budgets"][f"band{kb}_2^{lb}"] = dict(block_rows=block, **t)
            print(f"descriptor_sum:   band {kb}, budget 2^{lb}: {block} rows a block, {_ms(t)}", flush=True)
        for lb in FLAGS.budgets:
          cost = m * descriptors._pair_cost(73, None, 1, True)
          block = descriptors._block_size(len(positions), cost, 1 << int(lb))
          t = timed(sum_fn(displacement, band=0, block=block), positions, nbr, repeats=FLAGS.repeats)
          row["budgets"][f"plain_2^{lb}"] = dict(block_rows=block, **t)
          print(f"descriptor_sum:   plain, budget 2^{lb}: {block} rows a block, {_ms(t)}", flush=True)
      if FLAGS.pallas_rows and name == "dense":
        row["pallas"] = {}
        if FLAGS.parts:
          pairs, kernel_alone = parts_fns(displacement, descriptors.paper_r_s(), ETA)
          pair_terms = pairs(positions, nbr)
          row["pallas_parts"] = dict(pair_terms=timed(pairs, positions, nbr, repeats=FLAGS.repeats),
                                     pair_columns=int(pair_terms[0].shape[1]))
          print(f"descriptor_sum:   parts: pair terms alone {_ms(row['pallas_parts']['pair_terms'])} "
                f"({pair_terms[0].shape[1]} columns)", flush=True)
        for pr in FLAGS.pallas_rows:
          kw = pallas_variant(pr)
          p_rows, p_stages = kw["pallas_rows"], kw["pallas_stages"]
          fused = sum_fn(displacement, band=0, **kw)
          try:
            got = fused(positions, nbr)
          except Exception as e:  # noqa: BLE001 -- a variant the compiler refuses is reported; the others still run
            row["pallas"][str(pr)] = dict(failed=f"{type(e).__name__}: {e}"[:2000])
            print(f"descriptor_sum:   pallas {pr}: FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
            continue
          b = dict(max_relative_difference=max_relative_difference(got, want),
                   max_channel_relative_difference=max_channel_relative_difference(got, want),
                   sum=timed(fused, positions, nbr, repeats=FLAGS.repeats))
          b["ratio"] = row["plain"]["median_s"] / b["sum"]["median_s"]
          if FLAGS.parts:
            b["kernel_alone"] = timed(kernel_alone(**kw), *pair_terms, repeats=FLAGS.repeats)
          line = (f"descriptor_sum:   pallas {pr}: {p_rows} rows a program, {p_stages} stage(s), "
                  f"{kw['pallas_warps'] or 'default'} warps, {kw['pallas_columns']} column(s) an iteration: "
                  f"sum {_ms(b['sum'])}  "
                  + (f"kernel alone {_ms(b['kernel_alone'])}  " if FLAGS.parts else "") +
                  f"plain/fused {b['ratio']:.2f}; "
                  f"max rel. diff {b['max_relative_difference']:.1e}, per channel "
                  f"{b['max_channel_relative_difference']:.1e}")
          if FLAGS.network:
            f_fused = force_fn(displacement, model, band=0, **kw)
            b["force"] = timed(f_fused, positions, nbr, repeats=FLAGS.repeats)
            b["force_ratio"] = row["force_plain"]["median_s"] / b["force"]["median_s"]
            b["max_abs_force_difference_ev_per_a"] = float(np.max(np.abs(np.asarray(f_fused(positions, nbr))
                                                                         - f_want)))
            line += (f"; force {_ms(b['force'])} ratio {b['force_ratio']:.2f}, max |dF| "
                     f"{b['max_abs_force_difference_ev_per_a']:.1e} eV/A")
          row["pallas"][str(pr)] = b
          print(line, flush=True)
      if FLAGS.pair_terms and name == "dense":
        jax_md_displacement = space.periodic(box)[0]
        variants = {"jnp_cos_cutoff": sum_fn(displacement, band=0, cutoff=libm_cosine_cutoff),
                    "jax_md_periodic_displacement": sum_fn(jax_md_displacement, band=0),
                    "cutoff_on_gaussians": sum_fn(displacement, band=0, row_sums=row_sums_cutoff_on_gaussians),
                    "all_three": sum_fn(jax_md_displacement, band=0, cutoff=libm_cosine_cutoff,
                                        row_sums=row_sums_cutoff_on_gaussians)}
        row["pair_terms"] = {}
        for key, fn in variants.items():
          t = timed(fn, positions, nbr, repeats=FLAGS.repeats)
          row["pair_terms"][key] = dict(max_relative_difference=max_relative_difference(fn(positions, nbr), want),
                                        ratio_to_default=t["median_s"] / row["plain"]["median_s"],
                                        cpu_ratio_to_default=t["cpu_median_s"] / row["plain"]["cpu_median_s"], **t)
          print(f"descriptor_sum:   pair terms with {key}: plain sum {_ms(t)} (default: {_ms(row['plain'])})",
                flush=True)
      rows.append(row)
  record = dict(dtype="float32", eta=ETA, r_cut=R_CUT, n_centres=73, exact_band=exact, bands=bands,
                pallas_rows=list(FLAGS.pallas_rows),
                model=FLAGS.model or "random weights, paper sizes", cpu_block_budget=descriptors.CPU_BLOCK_BUDGET,
                sizes=rows)
  write_result("descriptor_sum", record, FLAGS.out)


if __name__ == "__main__":
  define_flags()
  app.run(main)

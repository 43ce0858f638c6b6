r"""Training step throughput: forward + backward + optimizer update of the four-atom network (samples/s) and of
the many-atom network on precomputed descriptors (atoms/s), in float32 and float64; and of the conservative models
on the same layers (F = -grad E, `unitary_enn.energy`): four atoms (samples/s) and a whole periodic box whose
descriptors are evaluated from positions inside the loss (force labels, i.e. atoms, per second).

  python -m benchmarks.training_throughput
  python -m benchmarks.training_throughput --batch_sizes=256 --dtypes=float32    # one point

One step is what `unitary_enn.training.train` runs: value_and_grad of the eq. 44 loss, the optimizer update
(Adam for mini-batches; the paper's FIRE for the full-batch point) and the parameter update, jitted.
Figures are medians of repeated timings after a compiled warm-up; inputs are random (the cost does not depend
on the values). The full-batch FIRE point times the paper's set-up: one step over 60,000 four-atom configurations.
"""

from __future__ import annotations

from absl import app, flags

from benchmarks.common import time_fn, write_result

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags are defined when the binary runs, not on import (tests import this module)."""
  flags.DEFINE_list("batch_sizes", ["256", "4096"], "Mini-batch sizes (samples, or atoms for many_body).")
  flags.DEFINE_list("dtypes", ["float32", "float64"], "Float dtypes to time.")
  flags.DEFINE_integer("full_batch", 60_000, "Four-atom configurations of the full-batch FIRE point (0 = skip).")
  flags.DEFINE_integer("repeats", 5, "Timed repeats (median reported).")
  flags.DEFINE_list("box_sides", ["45", "70"], "Sides (A) of the random argon boxes of the conservative many-atom "
                    "point (4,000 insertions each, Sec. 4.5; empty = skip).")
  flags.DEFINE_string("out", None, "JSON path (default benchmarks/results/training_throughput.json).")

FOUR_BODY_SIZES = (6, 50, 90, 100, 80, 50, 4)
MANY_BODY_SIZES = (73, 200, 100, 50, 10, 1)
# The conservative configs' layers (experiments/configs/four_body.py:conservative, many_body.py:conservative).
CONSERVATIVE_FOUR_BODY = ((6, 50, 90, 100, 80, 50, 16), (64,))
CONSERVATIVE_MANY_BODY = ((73, 200, 100, 50, 10, 16), (32,))


def _timed_step(loss_fn, params, x, y, repeats: int, min_time: float, opt=None, micro: int = 0) -> dict:
  """Median seconds of one jitted step of `loss_fn` on fixed (x, y): Adam (1e-4) or the optax `opt` given;
  micro > 0 sums the gradient over chunks of `micro` samples (`training.microbatched`)."""
  import jax
  import optax

  from unitary_enn import training
  opt = opt or optax.adam(1e-4)
  value_and_grad = jax.value_and_grad(loss_fn)
  if micro:
    value_and_grad = training.microbatched(value_and_grad, micro)

  @jax.jit
  def step(params, opt_state):
    loss, grads = value_and_grad(params, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  carry = [params, opt.init(params)]

  def run():
    p, s, loss = step(*carry)
    loss.block_until_ready()
    carry[:] = [p, s]

  return time_fn(run, repeats=repeats, min_time=min_time)


def conservative_four_body_step_time(batch: int, dtype: str, repeats: int = 5) -> dict:
  """One Adam step of the conservative four-atom model (force matching on -grad E) on `batch` random samples."""
  import jax
  import jax.numpy as jnp

  from unitary_enn import energy
  sizes, head = CONSERVATIVE_FOUR_BODY
  params = energy.init_energy_network(jax.random.PRNGKey(0), sizes, head, dtype=dtype)
  x = jax.random.normal(jax.random.PRNGKey(1), (batch, 3, 6), dtype)
  y = jax.random.normal(jax.random.PRNGKey(2), (batch, 3, 4), dtype)

  def loss_fn(p, x, y):
    return jnp.mean((energy.four_body_forces(p, x, eps=0.1) - y) ** 2)

  t = _timed_step(loss_fn, params, x, y, repeats, 0.3)
  return dict(batch=batch, dtype=dtype, optimizer="adam", s_per_step=t["median_s"],
              samples_per_s=batch / t["median_s"], timing=t)


def conservative_box_step_time(side: float, dtype: str, repeats: int = 3) -> dict:
  """One Adam step of the conservative many-atom model on one random periodic box (Sec. 4.5 insertion).

  The descriptors of every atom are evaluated from the positions on the box's pair list inside the loss and the
  forces -dE/dR of all atoms are matched; atoms/s counts force labels (atoms) per second.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  from unitary_enn import data, descriptors, energy, structures
  sizes, head = CONSERVATIVE_MANY_BODY
  pos = structures.random_box(side, max_atoms=4000, seed=0)
  pairs = energy.box_pairs(pos, side, 10.0)
  boxes = data.BoxSet(pos, np.asarray([side]), np.asarray([len(pos)]), np.zeros_like(pos), {})
  layout = energy.BoxLayout.fitting(boxes, [pairs])
  x, y = energy.pack_boxes(boxes, [pairs], layout, dtype=np.dtype(dtype))
  params = energy.init_energy_network(jax.random.PRNGKey(0), sizes, head, dtype=dtype)
  kwargs = dict(r_s=descriptors.paper_r_s(), eta=100.0, r_cut=10.0, eps=0.1)
  t = _timed_step(energy.box_loss(kwargs, layout), params, jnp.asarray(x), jnp.asarray(y), repeats, 0.0)
  return dict(side=float(side), n_atoms=len(pos), pairs_per_atom=len(pairs) / len(pos), dtype=dtype,
              optimizer="adam", s_per_step=t["median_s"], samples_per_s=len(pos) / t["median_s"], timing=t)


def step_time(sizes, batch: int, dtype: str, optimizer: str = "adam", repeats: int = 5, micro: int = 0) -> dict:
  """Median seconds of one jitted training step of `sizes` on a batch of random `(batch, 3, sizes[0])` inputs.

  micro > 0 sums the gradient over chunks of `micro` samples (`training.microbatched`, what full-batch FIRE
  training does); 0 takes it in one call over the whole batch.
  """
  import jax
  import optax

  import unitary_enn as uenn
  from unitary_enn import training
  from unitary_enn.fire import fire
  params = uenn.init_uenn(jax.random.PRNGKey(0), sizes, dtype=dtype)
  loss_fn = training.mse_loss(lambda p, x: uenn.apply_uenn(p, x, activation="softsign"))
  opt = optax.adam(1e-4) if optimizer == "adam" else fire()
  x = jax.random.normal(jax.random.PRNGKey(1), (batch, 3, sizes[0]), dtype)
  y = jax.random.normal(jax.random.PRNGKey(2), (batch, 3, sizes[-1]), dtype)
  t = _timed_step(loss_fn, params, x, y, repeats, 0.0 if batch > 10_000 else 0.3, opt=opt, micro=micro)
  return dict(batch=batch, dtype=dtype, optimizer=optimizer, microbatch=micro, s_per_step=t["median_s"],
              samples_per_s=batch / t["median_s"], timing=t,
              flops_per_sample=3 * sum(2 * 2 * 3 * a * b for a, b in zip(sizes[:-1], sizes[1:])))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax
  jax.config.update("jax_enable_x64", True)  # explicit float32 arrays stay float32
  batches = [int(b) for b in FLAGS.batch_sizes]
  rows = []
  for name, sizes, unit in (("four_body", FOUR_BODY_SIZES, "samples"), ("many_body", MANY_BODY_SIZES, "atoms")):
    for dtype in FLAGS.dtypes:
      for batch in batches:
        r = step_time(sizes, batch, dtype, repeats=FLAGS.repeats)
        r.update(network=name, sizes=sizes, unit=unit)
        rows.append(r)
        print(f"training_throughput: {name:9s} {dtype} batch {batch:>6,}: {r['s_per_step'] * 1e3:8.2f} ms/step, "
              f"{r['samples_per_s']:>10,.0f} {unit}/s", flush=True)
  for dtype in FLAGS.dtypes:
    for batch in batches:
      r = conservative_four_body_step_time(batch, dtype, repeats=FLAGS.repeats)
      r.update(network="four_body_conservative", sizes=CONSERVATIVE_FOUR_BODY[0], head=CONSERVATIVE_FOUR_BODY[1],
               unit="samples")
      rows.append(r)
      print(f"training_throughput: four_body conservative {dtype} batch {batch:>6,}: {r['s_per_step'] * 1e3:8.2f} "
            f"ms/step, {r['samples_per_s']:>10,.0f} samples/s", flush=True)
  for side in [float(s) for s in FLAGS.box_sides if s]:
    r = conservative_box_step_time(side, "float32", repeats=min(FLAGS.repeats, 3))
    r.update(network="many_body_conservative", sizes=CONSERVATIVE_MANY_BODY[0], head=CONSERVATIVE_MANY_BODY[1],
             unit="atoms")
    rows.append(r)
    print(f"training_throughput: many_body conservative float32, one box of {side:g} A ({r['n_atoms']:,} atoms, "
          f"{r['pairs_per_atom']:.0f} neighbours each): {r['s_per_step']:.2f} s/step, {r['samples_per_s']:>10,.0f} "
          "atoms/s", flush=True)
  if FLAGS.full_batch:
    from unitary_enn.training import DEFAULT_MICROBATCH
    for dtype in FLAGS.dtypes:
      for micro in (0, DEFAULT_MICROBATCH):  # before / after summing the full-batch gradient in chunks
        r = step_time(FOUR_BODY_SIZES, FLAGS.full_batch, dtype, optimizer="fire", repeats=3, micro=micro)
        r.update(network="four_body", sizes=FOUR_BODY_SIZES, unit="samples", full_batch=True)
        rows.append(r)
        print(f"training_throughput: four_body {dtype} full-batch FIRE on {FLAGS.full_batch:,}, "
              f"{'one call' if not micro else f'chunks of {micro}'}: {r['s_per_step']:.2f} s/step "
              f"({r['samples_per_s']:,.0f} samples/s)", flush=True)
  write_result("training_throughput", dict(results=rows), FLAGS.out)


if __name__ == "__main__":
  define_flags()
  app.run(main)

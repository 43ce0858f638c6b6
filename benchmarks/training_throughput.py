r"""Training step throughput: forward + backward + optimizer update of the four-atom network (samples/s) and of
the many-atom network on precomputed descriptors (atoms/s), in float32 and float64.

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
  flags.DEFINE_string("out", None, "JSON path (default benchmarks/results/training_throughput.json).")

FOUR_BODY_SIZES = (6, 50, 90, 100, 80, 50, 4)
MANY_BODY_SIZES = (73, 200, 100, 50, 10, 1)


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

  t = time_fn(run, repeats=repeats, min_time=0.0 if batch > 10_000 else 0.3)
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

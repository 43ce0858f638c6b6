r"""What each precision of the network's products costs in accuracy and equivariance, and what it buys in speed,
on the default device: the paper's Sec. 4.5 network (73, 200, 100, 50, 10, 1 vectors, softsign) with random
weights and biases on random 3-vector inputs, in float32, for every name of `layers.PRECISIONS`.

  python -m benchmarks.precision                      # 4,096 atoms (a CPU)
  python -m benchmarks.precision --atoms=1000000      # a GPU at network MD's size

For each precision, from one run:
* error: max |y - y64| / max |y64| over the outputs, y64 the same network in float64 (Precision.HIGHEST), the
  float32 weights and inputs taken exactly;
* equivariance: max |f(x U) - f(x) U| / max |f(x)| for a Haar-random U in O(3) (the coordinates of each atom's
  vectors rotated; U applied in float64, so that the figure is the network's alone);
* seconds per forward pass of all atoms (median of repeats after a compiled warm-up) and the ratio to
  "highest"'s; a precision the backend cannot compile (TensorFloat-32 on a CPU) is reported as failed.
"""

from __future__ import annotations

from absl import app, flags

from benchmarks.common import time_fn, write_result

FLAGS = flags.FLAGS
SIZES = (73, 200, 100, 50, 10, 1)


def define_flags() -> None:
  flags.DEFINE_integer("atoms", 4096, "Atoms (rows of 3 x 73 inputs) per forward pass.")
  flags.DEFINE_integer("check_atoms", 4096, "Atoms of the error and equivariance checks (the first ones).")
  flags.DEFINE_list("precisions", None, "Names of layers.PRECISIONS (default: all).")
  flags.DEFINE_integer("repeats", 5, "Timed repeats (the median is reported).")
  flags.DEFINE_string("out", None, "JSON path (default benchmarks/results/precision.json).")


def random_params(seed: int = 0):
  """Float32 weights by `init_uenn` and biases as large as the weights (init's are 0, which would leave the
  e b products out of the check)."""
  import jax

  import unitary_enn as uenn
  params = uenn.init_uenn(jax.random.PRNGKey(seed), SIZES)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(params))
  return [dict(W=p["W"], b=0.5 * jax.random.normal(k, p["b"].shape, p["b"].dtype)) for p, k in zip(params, keys)]


def measure(precisions, n_atoms: int, check_atoms: int, repeats: int) -> list[dict]:
  import jax
  import jax.numpy as jnp
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import testing
  params = random_params()
  x = jax.random.normal(jax.random.PRNGKey(2), (n_atoms, 3, SIZES[0]), jnp.float32)
  xc = x[:check_atoms]
  with jax.enable_x64(True):
    u = np.asarray(testing.random_unitary(jax.random.PRNGKey(3), 3, jnp.float64))
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    f64 = jax.jit(lambda a: uenn.apply_uenn(p64, a))
    y64 = np.asarray(f64(jnp.asarray(xc, jnp.float64)))
  scale = np.max(np.abs(y64))
  # x U on each atom's 3 coordinates: rows (n, 3, M) -> U^T x, rounded once to float32 (as a user's input would be)
  xu = jnp.asarray(np.einsum("ij,ajm->aim", u.T, np.asarray(xc, np.float64)), jnp.float32)
  rows = []
  for name in precisions:
    f = jax.jit(lambda a, name=name: uenn.apply_uenn(params, a, precision=name))
    try:
      y = np.asarray(f(xc), np.float64)
      yu = np.asarray(f(xu), np.float64)
      t = time_fn(lambda: f(x).block_until_ready(), repeats=repeats, min_time=0.2)
    except Exception as e:  # noqa: BLE001 -- a precision the backend cannot compile is a result, not a crash
      rows.append(dict(precision=name, failed=f"{type(e).__name__}: {e}"[:500]))
      print(f"precision: {name:8s} FAILED: {type(e).__name__}: {str(e)[:200]}", flush=True)
      continue
    row = dict(precision=name, error=float(np.max(np.abs(y - y64)) / scale),
               equivariance=float(np.max(np.abs(yu - np.einsum("ij,ajm->aim", u.T, y))) / np.max(np.abs(y))),
               s_per_pass=t["median_s"], atoms_per_s=n_atoms / t["median_s"], timing=t)
    rows.append(row)
    print(f"precision: {name:8s} error {row['error']:9.2e}  equivariance {row['equivariance']:9.2e}  "
          f"{row['s_per_pass'] * 1e3:9.2f} ms per pass of {n_atoms:,} atoms", flush=True)
  base = next((r for r in rows if r["precision"] == "highest" and "failed" not in r), None)
  if base:
    for r in rows:
      if "failed" not in r:
        r["time_over_highest"] = r["s_per_pass"] / base["s_per_pass"]
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from unitary_enn import layers
  precisions = FLAGS.precisions or list(layers.PRECISIONS)
  unknown = set(precisions) - set(layers.PRECISIONS)
  if unknown:
    raise app.UsageError(f"unknown --precisions {sorted(unknown)}; expected some of {layers.PRECISIONS}")
  if FLAGS.atoms < 1 or FLAGS.check_atoms < 1:
    raise app.UsageError("--atoms and --check_atoms must be positive")
  rows = measure(precisions, FLAGS.atoms, min(FLAGS.check_atoms, FLAGS.atoms), FLAGS.repeats)
  write_result("precision", dict(sizes=list(SIZES), atoms=FLAGS.atoms, check_atoms=min(FLAGS.check_atoms, FLAGS.atoms),
                                 rows=rows), FLAGS.out)


if __name__ == "__main__":
  define_flags()
  app.run(main)

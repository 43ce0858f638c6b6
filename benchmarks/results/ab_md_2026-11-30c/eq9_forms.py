"""Eq. 9's cost on CPU, and a cheaper form that was tried and not kept (benchmarks/RESULTS.md, second pass).

  python benchmarks/results/ab_md_2026-11-30c/eq9_forms.py          # timing: the Sec. 4.5 network, 4,000 atoms
  python benchmarks/results/ab_md_2026-11-30c/eq9_forms.py --train  # + the four-atom quick training, 3,000 steps

Three forms of e in the network's layers (73-200-100-50-10-1 vectors, random weights, biases 0.01, inputs
(4,000, 3, 73) normal, in `network.network_block`'s blocks), CPU seconds of this process per evaluation (medians
of 5 x 30 evaluations, 4 rounds): `layers.unit_vectors` (the package's, two branches), `one_sum` (both branches
from one scaled sum of squares) and `plain` (x / ||x||, 0 at 0: eq. 9 before its underflow fix, not
backend-independent). --train runs `experiments.four_body` (quick config, steps=3000) with the package's form and
with `one_sum` patched in, and prints both test force RMSEs.
"""

import os
import sys
import tempfile
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

import unitary_enn as uenn
from unitary_enn import layers, network


def one_sum(x, axis=-2):
  """Eq. 9 with the package's threshold, both branches from one sum: y = x (large columns) or x / tau."""
  real = jnp.finfo(x.dtype).dtype
  tau = layers.unit_threshold(real)
  sq = jnp.sum(jnp.real(x * jnp.conj(x)), axis=axis, keepdims=True)
  large = sq >= (tau / float(np.finfo(real).eps)) ** 2
  y = x * jnp.where(large, 1.0, 1.0 / tau).astype(x.dtype)
  sq_y = jnp.sum(jnp.real(y * jnp.conj(y)), axis=axis, keepdims=True)
  kept = (sq_y > 0) & (large | (sq_y >= 1.0))
  norm = jnp.where(kept, jnp.sqrt(jnp.where(kept, sq_y, 1.0)), 1.0)
  return jnp.where(kept, y / norm.astype(x.dtype), 0.0)


def plain(x, axis=-2):
  n = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
  return jnp.where(n > 0, x / jnp.where(n > 0, n, 1.0), 0.0)


def cpu_ms(f, x, calls=30, repeats=5):
  f(x).block_until_ready()
  ts = []
  for _ in range(repeats):
    t = time.process_time()
    for _ in range(calls):
      y = f(x)
    y.block_until_ready()
    ts.append((time.process_time() - t) / calls)
  return float(np.median(ts)) * 1e3


def main():
  sizes = (73, 200, 100, 50, 10, 1)
  params = [dict(W=p["W"], b=p["b"] + 0.01) for p in uenn.init_uenn(jax.random.PRNGKey(0), sizes)]
  x = jax.random.normal(jax.random.PRNGKey(1), (4000, 3, 73))
  block = network.network_block(sizes)
  forms = {"unit_vectors": None, "one_sum": one_sum, "plain": plain}
  fns = {}
  for name, form in forms.items():
    with mock.patch.object(layers, "unit_vectors", form or layers.unit_vectors):
      fns[name] = jax.jit(lambda v: network.apply_uenn(params, v, block=block))
      out = fns[name](x)  # traced (and compiled) under the patch
    print(f"{name:13s} output bitwise equal to unit_vectors': "
          f"{bool(jnp.all(out == fns['unit_vectors'](x)))}", flush=True)
  for r in range(4):
    print(f"round {r}: " + ", ".join(f"{k} {cpu_ms(f, x):.2f} ms CPU" for k, f in fns.items()), flush=True)
  if "--train" in sys.argv:
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
    from experiments import four_body
    from experiments.configs import four_body as configs
    for name, form in (("unit_vectors", None), ("one_sum", one_sum)):
      config = configs.get_config("quick")
      config.steps = 3000
      with tempfile.TemporaryDirectory() as workdir, \
           mock.patch.object(layers, "unit_vectors", form or layers.unit_vectors):
        results = four_body.train_and_evaluate(config, os.path.join(workdir, "w"))
      print(f"four_body quick, 3,000 steps, {name}: {results}", flush=True)


if __name__ == "__main__":
  main()

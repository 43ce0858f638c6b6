"""The layers' forms written for GPUs (`layers.UNROLL_NORMS`, `layers.ONE_PRODUCT`) on this CPU, the network alone
(benchmarks/RESULTS.md, "The layers' elementwise work in fewer kernels").

  python benchmarks/results/layer_forms_2026-12-01/forms.py > benchmarks/results/layer_forms_2026-12-01/forms.log

Each case jits the network (`uenn.apply_uenn`; random weights, biases 0 as initialized, normal inputs) in each of
the four forms: plain (the default), the norms unrolled, one product per layer, both. All four are compiled
first, then take turns for 5 rounds after one round of warm-up; a round's figure is the fastest of 20 calls; the
printed speed-up is the plain form's median over the rounds divided by the form's. Cases: the Sec. 4.5 network
forward on 4,000 atoms in `network.network_block`'s blocks (network MD's shape) and on 1,000 atoms of complex64;
the gradient of a sum of squares on 1,000 atoms (many-body training's shape) and on a batch of 256 four-atom
inputs, 3-50-50-1 vectors (the four-atom experiment's shape), real and complex.
"""

import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

import unitary_enn as uenn
from unitary_enn import layers, network

FORMS = {"plain": (False, False), "unrolled norms": (True, False), "one product": (False, True),
         "both": (True, True)}
PAPER = (73, 200, 100, 50, 10, 1)


def case(sizes, shape, dtype, grad=False, rounds=5, calls=20):
  params = uenn.init_uenn(jax.random.PRNGKey(0), sizes, dtype=dtype)
  x = jax.random.normal(jax.random.PRNGKey(1), shape, dtype=dtype)
  fns = {}
  for name, (unroll, one) in FORMS.items():
    with mock.patch.object(layers, "UNROLL_NORMS", unroll), mock.patch.object(layers, "ONE_PRODUCT", one):
      if grad:
        f = jax.jit(jax.grad(lambda p, v: jnp.sum(jnp.abs(uenn.apply_uenn(p, v)) ** 2)))
      else:
        f = jax.jit(lambda p, v: uenn.apply_uenn(p, v, block=network.network_block(sizes)))
      jax.block_until_ready(f(params, x))  # traced and compiled under this form
    fns[name] = f
  best = {name: [] for name in FORMS}
  for _ in range(rounds + 1):  # the first round warms up and is not counted
    for name, f in fns.items():
      times = []
      for _ in range(calls):
        t = time.perf_counter()
        jax.block_until_ready(f(params, x))
        times.append(time.perf_counter() - t)
      best[name].append(min(times))
  best = {name: t[1:] for name, t in best.items()}
  plain = float(np.median(best["plain"]))
  speedups = "  ".join(f"{name} {plain / float(np.median(t)):.2f}x" for name, t in best.items() if name != "plain")
  print(f"{'gradient' if grad else 'forward':8s} {jnp.dtype(dtype).name:9s} {str(shape):15s} sizes {sizes}: "
        f"plain {plain * 1e3:.2f} ms; {speedups}", flush=True)


if __name__ == "__main__":
  print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
  case(PAPER, (4000, 3, 73), jnp.float32)
  case(PAPER, (1000, 3, 73), jnp.complex64)
  case(PAPER, (1000, 3, 73), jnp.float32, grad=True)
  case((3, 50, 50, 1), (256, 3, 3), jnp.float32, grad=True)
  case((3, 50, 50, 1), (256, 3, 3), jnp.complex64, grad=True)

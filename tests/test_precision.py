"""Precision is explicit: every product in the network, the descriptor sums and the force functions asks for full
float32 by default (jax's GPU default for float32 is TensorFloat-32), and the fast options change exactly that."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import space

import unitary_enn as uenn
from unitary_enn import descriptors, layers, models, neighbors, quantum, structures, testing


def _dot_precisions(fn, *args):
  """The `precision` of every dot_general in the jaxpr of fn(*args), sub-jaxprs (scan, map, jit) included."""
  found = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        found.append(eqn.params["precision"])
      for v in eqn.params.values():
        for sub in (v if isinstance(v, (list, tuple)) else [v]):
          if isinstance(sub, jax.extend.core.ClosedJaxpr):
            visit(sub.jaxpr)
          elif isinstance(sub, jax.extend.core.Jaxpr):
            visit(sub)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)


def _model():
  params = uenn.init_uenn(jax.random.PRNGKey(0), (12, 8, 1))
  return models.Model(kind="many_body", params=params, sizes=(12, 8, 1), scales={"inputs": np.ones(12),
                      "targets": [0.4]}, basis=models.Basis(descriptors.radial_grid(2.8, 12, 0.6), 4.0, 10.0))


def test_every_product_is_full_float32_by_default_and_the_option_changes_it():
  with jax.enable_x64(False):
    params = uenn.init_uenn(jax.random.PRNGKey(0), (6, 16, 4))
    x = jnp.ones((5, 3, 6), jnp.float32)
    default = _dot_precisions(lambda a: uenn.apply_uenn(params, a), x)
    assert len(default) == 4 and all(p == HIGHEST for p in default)  # x W and e b in each of 2 layers
    fast = _dot_precisions(lambda a: uenn.apply_uenn(params, a, precision="bf16"), x)
    assert len(fast) == 4 and all(p == jax.lax.DotAlgorithmPreset.BF16_BF16_F32 for p in fast)
    tf32 = _dot_precisions(lambda a: uenn.apply_uenn(params, a, precision="tf32"), x)
    assert all(p == jax.lax.DotAlgorithmPreset.TF32_TF32_F32 for p in tf32)

    # The descriptor sum and the many-body force function on a neighbor list.
    side = 21.0
    pos = jnp.asarray(structures.random_box(side, max_atoms=40, seed=0), jnp.float32)
    disp, _ = space.periodic(side)
    nbr = neighbors.NeighborManager(disp, side, 10.0).allocate(pos)
    model = _model()
    force_fn = models.many_body_force_fn(model, disp)
    default = _dot_precisions(lambda p: force_fn(p, nbr), pos)
    assert len(default) >= 3 and all(p == HIGHEST for p in default), default
    fast = _dot_precisions(lambda p: models.many_body_force_fn(model, disp, precision="bf16")(p, nbr), pos)
    assert len(fast) == len(default) and all(p != HIGHEST for p in fast)
    # XLA's form of the sums (on an NVIDIA GPU the default is the fused kernel, which has no product: it computes
    # in float32 arithmetic, `kernels`; on the H200 this test without sum_kernel found no product to check)
    _, descriptor_fn = descriptors.vector_descriptors_neighbor_list(disp, side, r_s=model.basis.r_s, eta=4.0,
                                                                    r_cut=10.0, sum_kernel="xla")
    sums = _dot_precisions(lambda p: descriptor_fn(p, nbr), pos)
    assert sums and all(p == HIGHEST for p in sums)


def test_precision_names_resolve_and_64_bit_products_stay_exact():
  assert layers.resolve_precision(None) == jax.lax.Precision.HIGHEST
  assert layers.resolve_precision("tf32", jnp.float64) == jax.lax.Precision.HIGHEST
  assert layers.resolve_precision("bf16", jnp.complex64) == jax.lax.Precision.DEFAULT
  with pytest.raises(ValueError, match="unknown precision 'fast'"):
    layers.resolve_precision("fast")
  # On this CPU backend every preset computes in float32 (measured: the same 2.6e-7 error as "highest"); the
  # speed modes matter on GPUs. Whatever the backend, "highest" is full float32.
  with jax.enable_x64(False):
    a = jax.random.normal(jax.random.PRNGKey(0), (64, 64))
    exact = np.asarray(a, np.float64) @ np.asarray(a, np.float64)
    err = float(np.max(np.abs(np.asarray(layers.dot(a, a)) - exact)) / np.max(np.abs(exact)))
    assert err < 1e-6


def test_quantum_products_and_the_equivariance_check_ask_for_full_float32():
  """quantum's targets and Cayley step, and assert_equivariant's own U x, in complex64: on a GPU jax's default
  would compute these in TensorFloat-32 (seen on an H200: cayley_step's norms off by 9e-6, assert_equivariant
  reporting 3e-4 for an equivariant network)."""
  with jax.enable_x64(False):
    psi = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 3), jnp.complex64)
    phi = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3), jnp.complex64)
    u = testing.random_unitary(jax.random.PRNGKey(2), 4, jnp.complex64)
    fns = {"gram": quantum.gram, "loewdin": quantum.loewdin,
           "loewdin_newton_schulz": lambda p: quantum.loewdin_newton_schulz(p, 3),
           "propagate_exact": lambda p: quantum.propagate_exact(p, 0.1, g2=0.5),
           "propagate_rk4": lambda p: quantum.propagate_rk4(p, 0.1, g2=0.5, substeps=2),
           "cayley_step": lambda p: quantum.cayley_step(p, phi), "assert_equivariant's U x": lambda p: testing._act(
               u, p, -2, 0)}
    for name, fn in fns.items():
      found = _dot_precisions(fn, psi)
      assert found and all(p == HIGHEST for p in found), (name, found)

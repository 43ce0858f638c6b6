"""The float32 lane: the path every README command runs, with x64 switched off inside each test.

tests/conftest.py turns x64 on for the session, so implicit dtypes (jnp.zeros, jax.random.normal, Python floats)
are float64 in the other tests. Here they are float32, as in real runs: outputs must keep float32, scan carries
must not mismatch, jitted functions must not recompile on a second call, and results must be equivariant to
float32 rounding.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import descriptors, models, potentials, quantity, simulate, structures, training

F32 = jnp.float32


@pytest.fixture(autouse=True)
def float32_only():
  with jax.enable_x64(False):
    assert jnp.zeros(1).dtype == F32
    yield


def _compiles(fn, *args):
  """How many times `fn` (jitted) is traced over two calls with the same shapes: 1 means no recompilation."""
  traces = []
  jitted = jax.jit(lambda *a: (traces.append(1), fn(*a))[1])
  jax.block_until_ready(jitted(*args))
  jax.block_until_ready(jitted(*args))
  return len(traces)


def test_network_keeps_float32_and_is_equivariant_to_float32_rounding():
  params = uenn.init_uenn(jax.random.PRNGKey(0), (6, 16, 16, 4))
  assert all(p.dtype == F32 for p in jax.tree.leaves(params))
  x = jax.random.normal(jax.random.PRNGKey(1), (32, 3, 6))
  assert x.dtype == F32
  y = uenn.apply_uenn(params, x, eps=0.1)
  assert y.dtype == F32 and y.shape == (32, 3, 4)
  assert _compiles(lambda a: uenn.apply_uenn(params, a), x) == 1
  uenn.assert_equivariant(lambda a: uenn.apply_uenn(params, a), x, key=jax.random.PRNGKey(2), reflection=True)
  cparams = uenn.init_uenn(jax.random.PRNGKey(0), (3, 8, 2), dtype=jnp.complex64)
  z = (jax.random.normal(jax.random.PRNGKey(3), (8, 4, 3)) + 1j * jax.random.normal(jax.random.PRNGKey(4), (8, 4, 3)))
  assert uenn.apply_uenn(cparams, z.astype(jnp.complex64)).dtype == jnp.complex64


def test_descriptors_and_lj_cut_in_float32():
  side = 21.0
  pos = jnp.asarray(structures.random_box(side, max_atoms=80, seed=1), F32)
  basis = dict(r_s=descriptors.radial_grid(2.8, 12, 0.6), eta=4.0, r_cut=10.0)
  dense = descriptors.vector_descriptors(pos, side, **basis)
  assert dense.dtype == F32
  listed = descriptors.descriptor_model(**basis)(pos, side)
  assert listed.dtype == F32
  np.testing.assert_allclose(listed, dense, rtol=2e-4, atol=2e-5)
  f = jnp.asarray(potentials.lj_forces(pos, side, 10.0))
  assert f.dtype == F32
  free = pos[:30]
  uenn.assert_equivariant(lambda p: descriptors.vector_descriptors(p, None, **basis), free, key=jax.random.PRNGKey(0),
                          in_axis=-1, out_axis=-2, rtol=5e-4, atol=5e-4)


def test_force_field_of_a_float32_model(tmp_path):
  params = uenn.init_uenn(jax.random.PRNGKey(0), (6, 8, 4))
  m = models.Model(kind="four_body", params=params, sizes=(6, 8, 4), scales={"inputs": [4.0] * 6,
                   "targets": [0.1] * 4})
  models.save_model(str(tmp_path), m)
  forces = uenn.load_force_field(str(tmp_path))
  pos = structures.generate_clusters(4, seed=2).astype(np.float32)
  f = forces(pos)
  assert f.dtype == F32 and f.shape == (4, 4, 3)
  fn = models.model_force_fn(m)
  assert _compiles(fn, jnp.asarray(pos)) == 1


@pytest.mark.parametrize("optimizer", ["adam", "fire"])
def test_training_steps_keep_float32(optimizer):
  x = jax.random.normal(jax.random.PRNGKey(0), (96, 3, 3))
  y = uenn.softsign(x @ jnp.asarray([[1.0, 0.5], [-0.3, 0.2], [0.4, -1.0]]))
  params = uenn.init_uenn(jax.random.PRNGKey(1), (3, 8, 2))
  loss = training.mse_loss(lambda p, a: uenn.apply_uenn(p, a))
  config = ml_collections.ConfigDict(dict(optimizer=optimizer, learning_rate=1e-2, warmup_steps=2, end_lr_factor=0.1,
                                          batch_size=16, steps=20, eval_every=10, seed=0, patience=0,
                                          fire=dict(variant="fire2")))
  res = training.train(loss, params, (x[:64], y[:64]), (x[64:], y[64:]), config, None, log=lambda s: None)
  assert all(p.dtype == F32 for p in jax.tree.leaves(res.params))
  assert np.isfinite(res.best_val) and res.best_val < float(loss(params, x[64:], y[64:]))


def test_one_md_chunk_in_float32():
  pos = structures.four_body_initial_positions(2)
  assert pos.dtype == F32
  mom = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), pos)
  traj = simulate.run_nve(potentials.lj_forces, pos, mom, n_steps=20, chunk_steps=10, log=None)
  assert traj.positions.dtype == np.float32 and traj.positions.shape == (21, 2, 4, 3)
  e = quantity.total_energy(traj.positions, traj.momenta)
  assert np.max(np.abs(e - e[0]) / np.abs(e[0])) < 1e-4
  cross = jnp.asarray(structures.argon_cross(5, 2), F32)
  run = simulate.run_nve_neighbor_list(lambda d: potentials.lj_cut_force_fn(d), cross, jnp.zeros_like(cross),
                                       n_steps=10, chunk_steps=10, log=None)
  assert run.positions.dtype == np.float32 and np.all(np.isfinite(run.positions))

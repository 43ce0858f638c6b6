"""The four-atom data set (Sec. 4.1): rejection rule, inputs, targets, split, standardization, cache."""

import os

import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import data, potentials, structures


def test_every_configuration_respects_r_min():
  pos = structures.generate_clusters(5000, seed=3, batch=1000)
  assert pos.shape == (5000, 4, 3)
  d = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
  iu = np.triu_indices(4, 1)
  assert d[:, iu[0], iu[1]].min() >= 2.8
  # The coordinates are Gaussian with std 3 A before rejection, so the accepted ones spread wider.
  assert 3.0 < pos.std() < 4.5


def test_relative_vectors_order_and_sign():
  pos = np.arange(12, dtype=float).reshape(4, 3) ** 1.5
  x = data.relative_vectors(pos)
  assert x.shape == (3, 6)
  pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]  # r12, r13, r14, r23, r24, r34
  for col, (i, j) in enumerate(pairs):
    np.testing.assert_allclose(x[:, col], pos[j] - pos[i])


def test_dataset_split_targets_and_cache(tmp_path, monkeypatch):
  ds = data.four_body_dataset(1000, seed=7, cache_dir=str(tmp_path))
  assert [len(ds[k]) for k in ("train", "validation", "test")] == [600, 200, 200]
  tr = ds["train"]
  # Targets against an independent computation: autodiff of the LJ energy, not the closed form that made them.
  np.testing.assert_allclose(tr.targets, np.asarray(potentials.lj_forces(tr.positions)).swapaxes(-1, -2),
                             rtol=1e-10, atol=1e-12)
  i, j = 2, 0  # eq. 42 by hand for one column: r_13 = r_3 - r_1
  np.testing.assert_allclose(tr.inputs[:, :, 1], tr.positions[:, i] - tr.positions[:, j])
  assert len(os.listdir(tmp_path)) == 1
  # The second call reads the cache: generating or computing anything would raise here.
  monkeypatch.setattr(data, "generate_clusters", lambda *a, **k: pytest.fail("regenerated a cached data set"))
  monkeypatch.setattr(data, "lj_forces_reference", lambda *a, **k: pytest.fail("recomputed cached forces"))
  again = data.four_body_dataset(1000, seed=7, cache_dir=str(tmp_path))
  np.testing.assert_array_equal(again["test"].targets, ds["test"].targets)
  monkeypatch.undo()
  other = data.four_body_dataset(1000, seed=8, cache_dir=str(tmp_path))
  assert not np.allclose(other["test"].positions, ds["test"].positions)
  assert len(os.listdir(tmp_path)) == 2


def test_scales_divide_only_and_are_isotropic():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(100, 3, 6)) * np.array([1.0, 2.0, 3.0])[:, None] + 5.0
  s = data.rms_scale(x)
  assert s.shape == (6,) and np.all(s == s[0])  # one scalar, no per-coordinate scale
  np.testing.assert_allclose(s[0], np.sqrt(np.mean(x ** 2)))  # about zero: no mean is subtracted
  sc = data.rms_scale(x * np.arange(1, 7), per_channel=True)
  np.testing.assert_allclose(sc / sc[0], np.sqrt(np.mean((x * np.arange(1, 7)) ** 2, axis=(0, 1))) / sc[0])


def test_bad_split_and_sizes():
  with pytest.raises(ValueError, match="sum"):
    data.split_fractions(100, (0.5, 0.2, 0.2))
  with pytest.raises(ValueError, match="too few"):
    data.split_fractions(2)
  with pytest.raises(ValueError, match="n_configs"):
    structures.generate_clusters(0)


def test_permutation_matrices_relabel_inputs_and_lj_forces():
  """Relabelled atoms: inputs @ p_in and forces @ p_out equal eq. 42 and the LJ forces of the relabelled
  configuration, for all 24 relabellings of four atoms (an independent check through the physics)."""
  import itertools

  from unitary_enn import potentials
  p_in, p_out = data.permutation_matrices(4)
  assert p_in.shape == (24, 6, 6) and p_out.shape == (24, 4, 4)
  np.testing.assert_array_equal(p_in[0], np.eye(6))
  pos = np.random.default_rng(0).normal(scale=3.0, size=(5, 4, 3))
  x = data.relative_vectors(pos)
  y = potentials.lj_forces_reference(pos).swapaxes(-1, -2)
  for k, pi in enumerate(itertools.permutations(range(4))):
    moved = pos[:, list(pi), :]
    np.testing.assert_allclose(x @ p_in[k], data.relative_vectors(moved), atol=1e-12)
    np.testing.assert_allclose(y @ p_out[k], potentials.lj_forces_reference(moved).swapaxes(-1, -2),
                               atol=1e-12)


def test_permutation_augmentation_relabels_each_sample_on_its_own():
  import jax
  pos = np.random.default_rng(1).normal(scale=3.0, size=(400, 4, 3))
  x = data.relative_vectors(pos)
  from unitary_enn import potentials
  y = potentials.lj_forces_reference(pos).swapaxes(-1, -2)
  xa, ya = data.permutation_augmentation(4)(jax.random.PRNGKey(0), x, y)
  xa, ya = np.asarray(xa), np.asarray(ya)
  p_in, p_out = data.permutation_matrices(4)
  used = set()
  for s in range(len(x)):  # each sample is one of the 24 relabellings, inputs and targets the same one
    k = [k for k in range(24) if np.allclose(x[s] @ p_in[k], xa[s], atol=1e-12)]
    assert len(k) == 1
    np.testing.assert_allclose(y[s] @ p_out[k[0]], ya[s], atol=1e-12)
    used.add(k[0])
  assert len(used) > 20  # relabellings are drawn per sample, not once per batch


def test_symmetrized_network_is_permutation_and_rotation_equivariant():
  """The 24-relabelling average: relabelling the atoms relabels the forces exactly (the plain network does
  not), rotations still rotate them, and a network that is already equivariant is left unchanged."""
  import jax
  import jax.numpy as jnp

  from unitary_enn import testing
  params = uenn.init_uenn(jax.random.PRNGKey(0), (6, 8, 4), dtype=jnp.float64)
  predict = lambda p, x: uenn.apply_uenn(p, x)
  sym = data.symmetrize_permutations(predict, 4)
  x = jnp.asarray(data.relative_vectors(np.random.default_rng(2).normal(scale=3.0, size=(7, 4, 3))))
  p_in, p_out = data.permutation_matrices(4)
  y = sym(params, x)
  plain_gap = 0.0
  for k in range(24):
    np.testing.assert_allclose(sym(params, x @ p_in[k]), y @ p_out[k], atol=1e-12)
    plain_gap = max(plain_gap, float(jnp.max(jnp.abs(predict(params, x @ p_in[k]) - predict(params, x) @ p_out[k]))))
  assert plain_gap > 1e-3
  u = testing.random_unitary(jax.random.PRNGKey(3), 3, jnp.float64)
  np.testing.assert_allclose(sym(params, u @ x), u @ y, atol=1e-12)
  np.testing.assert_allclose(sym(params, x[0]), y[0], atol=1e-12)  # one configuration without a batch axis
  # The exact LJ force map is already relabelling-equivariant: symmetrizing it changes nothing.
  from unitary_enn import potentials

  def lj_predict(_, inputs):  # forces of the configuration whose pair vectors are `inputs` (atom 1 at 0)
    pos = jnp.concatenate([jnp.zeros(inputs.shape[:-2] + (1, 3)), jnp.swapaxes(inputs[..., :3], -1, -2)], -2)
    return jnp.swapaxes(potentials.lj_forces(pos), -1, -2)
  np.testing.assert_allclose(data.symmetrize_permutations(lj_predict, 4)(None, x), lj_predict(None, x),
                             atol=1e-12)

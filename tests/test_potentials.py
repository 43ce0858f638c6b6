"""Lennard-Jones argon (eq. 39-41): forces are -grad U, agree with the closed form, and respect symmetry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import constants, potentials, structures


def test_constants_match_spec():
  np.testing.assert_allclose(constants.ARGON_EPSILON, 0.0103408, rtol=1e-5)
  np.testing.assert_allclose(constants.ARGON_MASS, 39.948 * 1.0364269e-4, rtol=1e-12)


def test_pair_energy_minimum_and_zero():
  r_min = 2 ** (1 / 6) * constants.ARGON_SIGMA
  np.testing.assert_allclose(float(potentials.lj_pair_energy(jnp.float64(r_min ** 2))), -constants.ARGON_EPSILON, rtol=1e-12)
  np.testing.assert_allclose(float(potentials.lj_pair_energy(jnp.float64(constants.ARGON_SIGMA ** 2))), 0.0, atol=1e-15)
  np.testing.assert_allclose(float(potentials.lj_pair_force_magnitude(jnp.float64(r_min))), 0.0, atol=1e-15)


def test_forces_are_minus_gradient_by_finite_differences():
  pos = np.array([[0.0, 0.0, 0.0], [3.6, 0.2, -0.1], [0.5, 3.9, 0.3], [-1.0, 1.5, 3.7]])
  f = np.asarray(uenn.lj_forces(jnp.asarray(pos)))
  h = 1e-5
  fd = np.zeros_like(pos)
  for i in range(4):
    for a in range(3):
      d = np.zeros_like(pos)
      d[i, a] = h
      fd[i, a] = -(float(uenn.lj_energy(jnp.asarray(pos + d))) - float(uenn.lj_energy(jnp.asarray(pos - d)))) / (2 * h)
  np.testing.assert_allclose(f, fd, rtol=1e-6, atol=1e-10)
  np.testing.assert_allclose(f, potentials.lj_forces_reference(pos), rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-14)  # Newton's third law


def test_forces_are_equivariant_and_translation_invariant():
  pos = jnp.asarray(structures.generate_clusters(3, seed=1))
  uenn.assert_equivariant(uenn.lj_forces, pos, key=jax.random.PRNGKey(0), in_axis=-1, out_axis=-1,
                          reflection=True)
  np.testing.assert_allclose(uenn.lj_forces(pos + jnp.array([5.0, -2.0, 1.0])), uenn.lj_forces(pos),
                             rtol=1e-10, atol=1e-13)


def test_periodic_cutoff_counts_images_and_truncates():
  box, rc = 25.0, 10.0
  # Two atoms 3.5 A apart through the x face of the box.
  pos = jnp.array([[0.5, 5.0, 5.0], [22.0, 5.0, 5.0]])
  e = float(uenn.lj_energy(pos, box=box, r_cut=rc))
  np.testing.assert_allclose(e, float(potentials.lj_pair_energy(jnp.float64(3.5 ** 2))), rtol=1e-12)
  assert float(uenn.lj_energy(pos, r_cut=rc)) == 0.0  # 21.5 A apart in free space: beyond r_cut
  with pytest.raises(ValueError, match="smaller than 2 \\* r_cut"):
    uenn.lj_energy(pos, box=15.0, r_cut=rc)
  with pytest.raises(ValueError, match="needs r_cut"):
    uenn.lj_energy(pos, box=box)


def test_bad_positions():
  with pytest.raises(ValueError, match=r"positions has shape \(4, 2\)"):
    uenn.lj_forces(jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match="positions contains 1 non-finite"):
    uenn.lj_energy(jnp.ones((3, 3)).at[1, 1].set(jnp.nan))

"""MD glue (md.py): the model as a force function, Maxwell-Boltzmann momenta, NVE with jax-md's velocity Verlet,
observables (eq. 48-50), conservativeness diagnostics, net force/torque removal, gradients through MD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import diagnostics, models, quantity, simulate, structures
from unitary_enn.constants import ARGON_MASS, KB
from unitary_enn.potentials import lj_energy, lj_forces

DTYPE = jnp.float64
SCALES = {"inputs": [4.0] * 6, "targets": [0.1] * 4}


def _network(key=0, sizes=(6, 12, 8, 4)):
  """An untrained network with nonzero biases (so the e b term of eq. 6 is exercised)."""
  params = uenn.init_uenn(jax.random.PRNGKey(key), sizes, dtype=DTYPE)
  keys = jax.random.split(jax.random.PRNGKey(key + 100), len(params))
  return [dict(W=p["W"], b=0.3 * jax.random.normal(k, p["b"].shape, DTYPE)) for p, k in zip(params, keys)]


def _clusters(n, seed=3):
  return jnp.asarray(structures.generate_clusters(n, seed=seed), DTYPE)


@pytest.fixture(scope="module")
def net_fn():
  return jax.jit(models.four_body_force_fn(_network(), SCALES))


def test_model_force_fn_is_equivariant_and_translation_invariant(net_fn):
  pos = _clusters(2)
  f = net_fn(pos)
  assert f.shape == (2, 4, 3) and f.dtype == DTYPE and float(jnp.abs(f).max()) > 1e-3
  uenn.assert_equivariant(net_fn, pos, key=jax.random.PRNGKey(0), in_axis=-1, out_axis=-1, reflection=True)
  np.testing.assert_allclose(net_fn(pos + jnp.array([1.5, -7.0, 2.5])), f, rtol=1e-10, atol=1e-12)


def test_saved_four_body_model_gives_the_forces_of_an_independent_numpy_forward_pass(tmp_path):
  """load_force_field (float32 model) and model_force_fn (evaluated in float64) against a NumPy transcription of
  eq. 42 and the network (tests/test_values.py), not against each other."""
  from tests.test_values import ref_network
  params = [jax.tree.map(lambda a: np.asarray(a, np.float32), l) for l in _network(1)]
  models.save_model(str(tmp_path), models.Model(kind="four_body", n_atoms=4, params=params, sizes=(6, 12, 8, 4),
                                                activation="softsign", scales=SCALES, dtype="float32"))
  pos = np.asarray(_clusters(3, seed=4))
  pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
  x = np.stack([pos[:, j] - pos[:, i] for i, j in pairs], axis=-1) / np.asarray(SCALES["inputs"])  # (3, 3, 6)
  p64 = [{k: np.asarray(v, np.float64) for k, v in l.items()} for l in params]
  want = np.stack([ref_network(p64, xs) for xs in x]) * np.asarray(SCALES["targets"])  # (3, 3, 4)
  want = want.swapaxes(-1, -2)
  loaded = uenn.load_force_field(str(tmp_path))(pos)
  assert loaded.dtype == jnp.float32  # load_force_field keeps the trained dtype
  np.testing.assert_allclose(loaded, want, rtol=2e-5, atol=2e-6)
  in64 = jax.jit(models.model_force_fn(models.load_model(str(tmp_path)), dtype=DTYPE))(pos)
  assert in64.dtype == DTYPE
  np.testing.assert_allclose(in64, want, rtol=1e-12, atol=1e-14)
  with pytest.raises(ValueError, match="unknown model kind 'other'"):
    models.Model(kind="other", params=params, sizes=(6, 4), scales=SCALES)


def test_lambda_is_zero_for_lj_and_clearly_positive_for_an_untrained_network(net_fn):
  pos = _clusters(16)
  lam_lj = diagnostics.antisymmetric_fraction(lj_forces, pos)
  assert lam_lj.shape == (16,)
  assert float(lam_lj.max()) < 1e-12
  lam_net = diagnostics.antisymmetric_fraction(net_fn, pos)
  assert float(lam_net.mean()) > 0.1
  # The Jacobian is dF/dr: for LJ it is minus the Hessian of the energy.
  hess = jax.jit(jax.hessian(lambda r: lj_energy(r.reshape(4, 3))))(pos[0].reshape(-1))
  np.testing.assert_allclose(diagnostics.force_jacobian(lj_forces, pos[0]), -hess, rtol=1e-10, atol=1e-12)


def test_loop_work_vanishes_for_lj_and_obeys_stokes_for_a_linear_field():
  pos = _clusters(4)
  u, v = diagnostics.random_planes(jax.random.PRNGKey(1), 4, 12, DTYPE)
  w_lj = diagnostics.loop_work(lj_forces, pos, plane=(u, v), radius=0.05, n_points=32)
  assert float(jnp.abs(w_lj).max()) < 1e-14
  # F = A r: the trapezoidal rule is exact and W = pi rho^2 v^T (A - A^T) u (Stokes).
  a = jax.random.normal(jax.random.PRNGKey(2), (12, 12), DTYPE)
  linear = lambda r: (r.reshape(-1) @ a.T).reshape(r.shape)
  rho = 0.3
  w = diagnostics.loop_work(linear, pos, plane=(u, v), radius=rho, n_points=16)
  expected = jnp.pi * rho ** 2 * jnp.einsum("si,ij,sj->s", v, a - a.T, u)
  np.testing.assert_allclose(w, expected, rtol=1e-10)
  # A symmetric A is a gradient field: no work around any loop.
  sym = lambda r: (r.reshape(-1) @ (a + a.T)).reshape(r.shape)
  assert float(jnp.abs(diagnostics.loop_work(sym, pos, jax.random.PRNGKey(3))).max()) < 1e-12
  with pytest.raises(ValueError, match="radius must be a positive"):
    diagnostics.loop_work(lj_forces, pos, jax.random.PRNGKey(0), radius=0.0)


def test_net_force_and_torque_removal(net_fn):
  pos = _clusters(3)
  f = net_fn(pos)
  assert float(jnp.abs(f.sum(-2)).max()) > 1e-4  # the raw network has a net force
  no_force = jax.jit(diagnostics.without_net_force(net_fn))
  no_both = jax.jit(diagnostics.without_net_force(net_fn, torque=True))
  for fn in (no_force, no_both):
    np.testing.assert_allclose(fn(pos).sum(-2), 0.0, atol=1e-14)
    uenn.assert_equivariant(fn, pos, key=jax.random.PRNGKey(5), in_axis=-1, out_axis=-1, reflection=True)
    np.testing.assert_allclose(fn(pos + 3.0), fn(pos), rtol=1e-10, atol=1e-13)
  d = pos - pos.mean(-2, keepdims=True)
  assert float(jnp.abs(jnp.cross(d, no_force(pos)).sum(-2)).max()) > 1e-4
  np.testing.assert_allclose(jnp.cross(d, no_both(pos)).sum(-2), 0.0, atol=1e-13)
  # Exact LJ forces have neither, so the projections leave them unchanged.
  f_lj = lj_forces(pos)
  np.testing.assert_allclose(diagnostics.without_net_force(lj_forces, torque=True)(pos), f_lj, atol=1e-14)
  # Unequal masses: the centre of mass is what stays unaccelerated.
  m = jnp.array([1.0, 2.0, 3.0, 4.0], DTYPE)
  g = diagnostics.remove_net_torque(pos, diagnostics.remove_net_force(f, m), m)
  np.testing.assert_allclose(g.sum(-2), 0.0, atol=1e-14)
  com = (m[:, None] * pos).sum(-2, keepdims=True) / m.sum()
  np.testing.assert_allclose(jnp.cross(pos - com, g).sum(-2), 0.0, atol=1e-13)


def test_maxwell_boltzmann_momenta():
  pos = structures.four_body_initial_positions(10, DTYPE)
  p = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), pos, ARGON_MASS, 10.0)
  assert p.shape == (10, 4, 3) and p.dtype == DTYPE
  np.testing.assert_allclose(p.sum(-2), 0.0, atol=1e-16)  # centre-of-mass momentum removed
  np.testing.assert_allclose(quantity.kinetic_energy(p), 0.5 * (3 * 4 - 3) * KB * 10.0, rtol=1e-13)
  np.testing.assert_allclose(quantity.temperature(p), 10.0, rtol=1e-13)
  assert not np.allclose(p[0], p[1])  # each sample has its own velocities
  # Unequal masses: total momentum still zero.
  q = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(1), pos[0], jnp.array([1.0, 2.0, 3.0, 4.0]), 5.0)
  np.testing.assert_allclose(q.sum(-2), 0.0, atol=1e-15)
  with pytest.raises(ValueError, match=r"temperature \(K\) must be a positive"):
    quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), pos, temperature=0.0)


def test_maxwell_boltzmann_momenta_scale_with_the_mass_of_each_atom():
  """Equipartition atom by atom: <p_i^2 / m_i> is the same for every atom, whatever its mass. The rescaling to the
  exact total kinetic energy cannot hide a wrong mass scaling here (with p ~ N(0, m kT) replaced by N(0, kT), the
  heavy atoms would get 64 times too little kinetic energy)."""
  masses = jnp.array([1.0, 4.0, 16.0, 64.0], DTYPE) * ARGON_MASS
  pos = jnp.zeros((20_000, 4, 3), DTYPE)
  p = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(3), pos, masses, 30.0)
  per_atom = np.mean(np.sum(np.asarray(p) ** 2, axis=-1) / (2 * np.asarray(masses)), axis=0)  # <KE_i>
  total = 0.5 * (3 * 4 - 3) * KB * 30.0
  # Removing the centre-of-mass momentum takes the share m_i / M of atom i's 3 degrees of freedom away.
  expected = 1.5 * KB * 30.0 * (1 - np.asarray(masses) / float(masses.sum()))
  expected *= total / expected.sum()
  np.testing.assert_allclose(per_atom, expected, rtol=0.03)
  with pytest.raises(ValueError, match=r"positions has shape \(4, 2\)"):
    quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match=r"mass has shape \(3,\)"):
    quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), pos, jnp.ones(3))


def test_analytical_nve_conserves_energy_over_10000_steps():
  """Velocity Verlet at 1 fs on the Sec. 4.4 cluster, float64: docs/decisions.md §8 measured a relative drift of 8e-7."""
  pos = structures.four_body_initial_positions(10, DTYPE)
  p = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), pos)
  traj = simulate.run_nve(lj_forces, pos, p, n_steps=10_000, chunk_steps=5_000, record_every=10, log=None)
  assert traj.positions.shape == (1001, 10, 4, 3)
  assert traj.steps[-1] == 10_000
  e = quantity.total_energy(traj.positions, traj.momenta)
  assert float(quantity.max_relative_energy_deviation(e).max()) < 1e-5
  assert float(quantity.relative_energy_drift(e).max()) < 1e-5
  # The energy is exchanged between kinetic and potential: the check above is not trivially satisfied.
  assert float(jnp.ptp(quantity.kinetic_energy(traj.momenta), axis=0).min()) > 1e-4
  # Exact zero net force and torque: momentum and angular momentum stay where they started.
  np.testing.assert_allclose(quantity.net_momentum(traj.momenta), 0.0, atol=1e-14)
  l0 = quantity.angular_momentum(traj.positions[0], traj.momenta[0])
  np.testing.assert_allclose(quantity.angular_momentum(traj.positions, traj.momenta) - l0, 0.0, atol=1e-13)


def test_velocity_verlet_is_time_reversible():
  pos = structures.four_body_initial_positions(1, DTYPE)[0]  # a single sample (N, 3) works too
  p = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(4), pos)
  run = jax.jit(lambda r, q: simulate.nve_trajectory(lj_forces, r, q, n_steps=500, record_every=500))
  fwd = run(pos, p)
  back = run(fwd.positions[-1], -fwd.momenta[-1])
  assert fwd.positions.shape == (2, 4, 3)
  assert float(jnp.abs(fwd.positions[-1] - pos).max()) > 0.05
  np.testing.assert_allclose(back.positions[-1], pos, atol=1e-9)
  np.testing.assert_allclose(-back.momenta[-1], p, atol=1e-12)


def test_run_nve_in_chunks_equals_one_scan_and_removal_conserves_momenta(net_fn):
  pos = structures.four_body_initial_positions(3, DTYPE)
  p = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(2), pos)
  one = simulate.nve_trajectory(net_fn, pos, p, n_steps=100)
  lines = []
  chunked = simulate.run_nve(net_fn, pos, p, n_steps=100, chunk_steps=50, log=lines.append, label="net")
  np.testing.assert_allclose(chunked.positions, one.positions, rtol=1e-12, atol=1e-12)
  assert len(lines) == 2 and lines[-1].startswith("net: step     100/100")
  # The raw network changes the total momentum; with the net force and torque removed it is conserved.
  assert float(jnp.abs(quantity.net_momentum(one.momenta[-1])).max()) > 1e-6
  proj = simulate.nve_trajectory(diagnostics.without_net_force(net_fn, torque=True), pos, p, n_steps=100)
  np.testing.assert_allclose(quantity.net_momentum(proj.momenta), 0.0, atol=1e-14)
  l0 = quantity.angular_momentum(proj.positions[0], proj.momenta[0])
  np.testing.assert_allclose(quantity.angular_momentum(proj.positions, proj.momenta) - l0, 0.0, atol=1e-13)


def test_md_rejects_bad_input():
  pos = structures.four_body_initial_positions(2, DTYPE)
  p = jnp.zeros_like(pos)
  with pytest.raises(ValueError, match="positions contains 1 non-finite"):
    simulate.run_nve(lj_forces, pos.at[1, 2, 0].set(jnp.nan), p, n_steps=10, log=None)
  with pytest.raises(ValueError, match=r"momenta has shape \(2, 4, 2\)"):
    simulate.nve_trajectory(lj_forces, pos, p[..., :2], n_steps=10)
  with pytest.raises(ValueError, match=r"momenta has shape \(4, 3\), expected the shape of positions"):
    simulate.nve_trajectory(lj_forces, pos, p[0], n_steps=10)
  with pytest.raises(ValueError, match="dt must be a positive"):
    simulate.nve_trajectory(lj_forces, pos, p, dt=0.0, n_steps=10)
  with pytest.raises(ValueError, match="multiple of record_every"):
    simulate.nve_trajectory(lj_forces, pos, p, n_steps=10, record_every=3)
  with pytest.raises(ValueError, match=r"positions has shape \(2, 4\)"):
    diagnostics.antisymmetric_fraction(lj_forces, pos[0, :, :2].T)
  with pytest.raises(FloatingPointError, match="non-finite by step 4"):
    simulate.run_nve(lambda r: jnp.full_like(r, jnp.nan), pos, p, n_steps=8, chunk_steps=4, record_every=4, log=None)


def test_observables_match_their_formulas():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(5, 10, 4, 3)), rng.normal(size=(5, 10, 4, 3))
  # eq. 49: squared distance summed over x, y, z, averaged over samples and atoms.
  expected = np.sqrt(np.array([np.mean(np.sum((a[t] - b[t]) ** 2, -1)) for t in range(5)]))
  np.testing.assert_allclose(quantity.position_rmsd(a, b), expected, rtol=1e-12)
  ea, eb = rng.normal(size=(5, 10)), rng.normal(size=(5, 10))
  np.testing.assert_allclose(quantity.energy_rmsd(ea, eb), np.sqrt(np.mean((ea - eb) ** 2, -1)), rtol=1e-12)
  p = rng.normal(size=(4, 3))
  np.testing.assert_allclose(quantity.kinetic_energy(p, 2.0), np.sum(p ** 2) / 4.0, rtol=1e-12)
  np.testing.assert_allclose(quantity.temperature(p, 2.0), 2 * np.sum(p ** 2) / 4.0 / (9 * KB), rtol=1e-12)
  pos = structures.four_body_initial_positions(1, DTYPE)[0]
  np.testing.assert_allclose(quantity.total_energy(pos, p, 2.0), np.sum(p ** 2) / 4.0 + lj_energy(pos), rtol=1e-12)
  np.testing.assert_allclose(quantity.min_pair_distances(pos), np.sqrt(2.9 ** 2 + 2.5 ** 2 + 0.1 ** 2), rtol=1e-12)


def test_gradient_through_100_md_steps_matches_finite_difference():
  """End-to-end differentiability: d/d(params) of a trajectory observable, through jax-md's integrator."""
  pos = structures.four_body_initial_positions(2, DTYPE)
  p = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), pos)
  target = simulate.nve_trajectory(lj_forces, pos, p, n_steps=100, record_every=100).positions[-1]
  params = _network(2, sizes=(6, 8, 4))

  def observable(params):
    traj = simulate.nve_trajectory(models.four_body_force_fn(params, SCALES), pos, p, n_steps=100, record_every=100)
    return jnp.mean(jnp.sum((traj.positions[-1] - target) ** 2, -1))

  value_and_grad = jax.jit(jax.value_and_grad(observable))
  _, grads = value_and_grad(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads[0]["b"]).max()) > 0
  f = lambda q: value_and_grad(q)[0]  # same shapes: no second compilation
  h = 1e-5
  for layer, name, idx in ((0, "W", (2, 3)), (1, "b", (4, 1))):
    def shifted(d):
      q = [dict(l) for l in params]
      q[layer][name] = q[layer][name].at[idx].add(d)
      return q
    fd = (f(shifted(h)) - f(shifted(-h))) / (2 * h)
    np.testing.assert_allclose(grads[layer][name][idx], fd, rtol=1e-6)

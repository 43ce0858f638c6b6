"""Conservative models (F = -grad E on the equivariant layers, docs/decisions.md §16): gradients, symmetry, files, MD.

Everything in float64 (tests/conftest.py switches x64 on), with tiny networks.
"""

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import data, descriptors, diagnostics, energy, models, quantity, simulate, structures
from unitary_enn.constants import ARGON_MASS, FOUR_BODY_POSITIONS
from unitary_enn.potentials import lj_energy, lj_forces

F64 = jnp.float64


def _four_body(symmetrize=False, seed=0, eps=0.1):
  params = energy.init_energy_network(jax.random.PRNGKey(seed), (6, 8, 5), (8,), dtype=F64)
  return models.Model(kind="four_body", params=params, sizes=(6, 8, 5), dtype="float64", symmetrize=symmetrize,
                      scales={"inputs": [5.0] * 6, "targets": [0.13] * 4, "energy": 5.0 * 0.13,
                              "energy_offset": -0.01},
                      eps=eps, forces="conservative", head_hidden=(8,))


BASIS = dict(r_s=descriptors.radial_grid(2.8, 8, 0.4), eta=4.0, r_cut=6.0)


@pytest.fixture(scope="module")
def many_body_fields():
  """The tiny many-body model's force and energy fields (compiled once for the module)."""
  m = _many_body()
  return m, uenn.load_force_field(m), uenn.load_energy_field(m)


def _many_body(seed=0):
  """Vector descriptors with the scalar ones as a feature row (Sec. 3.3), as experiments.many_body trains it."""
  params = energy.init_energy_network(jax.random.PRNGKey(seed), (8, 6, 5), (8,), n_features=1, dtype=F64)
  return models.Model(kind="many_body", params=params, sizes=(8, 6, 5), dtype="float64", eps=0.1,
                      scales={"inputs": np.linspace(0.5, 1.5, 8), "targets": [0.05], "energy": 0.05,
                              "energy_offset": -0.02, "feature_inputs": np.linspace(2.0, 1.0, 8)},
                      basis=models.Basis(BASIS["r_s"], BASIS["eta"], BASIS["r_cut"], "cosine"),
                      forces="conservative", head_hidden=(8,), scalar_features=True)


def _clusters(n, seed=1):
  return jnp.asarray(structures.generate_clusters(n, seed=seed), F64)


def _box(side=13.0, n=40, seed=3):
  return structures.random_box(side, max_atoms=n, seed=seed), side


def _central_difference(energy_fn, positions, h=1e-5):
  """-dE/dR by central differences, coordinate by coordinate: `(..., N, 3)`."""
  positions = np.asarray(positions, np.float64)
  out = np.zeros_like(positions)
  for a, x in itertools.product(range(positions.shape[-2]), range(3)):
    d = np.zeros_like(positions)
    d[..., a, x] = h
    out[..., a, x] = -(np.asarray(energy_fn(positions + d)) - np.asarray(energy_fn(positions - d))) / (2 * h)
  return out


# --- F = -grad E ------------------------------------------------------------------------------------------------


def test_four_body_forces_are_minus_the_gradient_of_the_energy():
  m = _four_body(symmetrize=True)
  pos = _clusters(3)
  forces = np.asarray(uenn.load_force_field(m)(pos))
  fd = _central_difference(uenn.load_energy_field(m), pos)
  np.testing.assert_allclose(forces, fd, rtol=1e-6, atol=1e-10 * np.max(np.abs(fd)))
  assert np.max(np.abs(forces)) > 1e-3  # not trivially zero


def test_training_predictor_is_the_models_force_in_standardized_units():
  """What training fits (energy.four_body_forces on r_ij / s_in, in units of s_F = s_E / s_in) is the saved model's
  force; and the gradient of the relabelling-averaged energy is the relabelling average of the forces."""
  m = _four_body()
  pos = _clusters(4)
  s_in, s_f = 5.0, 0.13
  x = data.relative_vectors(pos) / s_in
  kw = dict(eps=0.1)
  f_std = jax.jit(lambda p, v: energy.four_body_forces(p, v, **kw))(m.params, x)
  np.testing.assert_allclose(np.swapaxes(np.asarray(f_std), -1, -2) * s_f, jax.jit(models.model_force_fn(m))(pos),
                             rtol=1e-12, atol=1e-14)
  averaged = jax.jit(data.symmetrize_permutations(lambda p, v: energy.four_body_forces(p, v, **kw), 4))(m.params, x)
  symmetric = jax.jit(lambda p, v: energy.four_body_forces(p, v, symmetrize=True, **kw))(m.params, x)
  np.testing.assert_allclose(symmetric, averaged, rtol=1e-10, atol=1e-13)


def test_many_body_forces_are_minus_the_gradient_of_the_energy_free_and_periodic(many_body_fields):
  _, forces, energy_field = many_body_fields
  pos, side = _box()
  for box in (None, side):  # the fields keep one compiled neighbor list: periodic last, as the next tests use
    f = np.asarray(forces(pos, box))
    atoms = [0, 21]  # a few atoms keep the number of energy calls small
    h = 1e-5
    for a, x in itertools.product(atoms, range(3)):
      d = np.zeros_like(pos)
      d[a, x] = h
      fd = -(float(energy_field(pos + d, box)) - float(energy_field(pos - d, box))) / (2 * h)
      assert f[a, x] == pytest.approx(fd, rel=1e-6, abs=1e-10), (box, a, x)
    assert np.max(np.abs(f)) > 1e-4


def test_training_path_matches_the_md_path_on_a_periodic_box(many_body_fields):
  """Descriptors from positions on a fixed pair list (training) equal the dense descriptors of eq. 51, and the
  packed-box forces and energy of training equal the saved model's force field and energy (after scales)."""
  m, forces, energy_field = many_body_fields
  pos, side = _box()
  pairs = energy.box_pairs(pos, side, BASIS["r_cut"])
  d = energy.vector_descriptors_of_pairs(jnp.asarray(pos), jnp.asarray(pairs), side, scalar_row=True, **BASIS)
  np.testing.assert_allclose(d[:, :3], descriptors.vector_descriptors(pos, side, **BASIS), rtol=1e-12, atol=1e-13)
  np.testing.assert_allclose(d[:, 3], descriptors.scalar_descriptors(pos, side, **BASIS), rtol=1e-12, atol=1e-13)
  boxes = data.BoxSet(pos, np.asarray([side]), np.asarray([len(pos)]), np.zeros_like(pos), {})
  layout = energy.BoxLayout(len(pos) + 3, len(pairs) + 10)  # padding atoms and pairs must not count
  x, _ = energy.pack_boxes(boxes, [pairs], layout, dtype=np.float64)
  e_std, f_std = jax.jit(lambda p, v: energy.box_forces(
      p, v, layout, descriptor_scale=m.scales["inputs"], scalar_scale=m.scales["feature_inputs"], eps=m.eps,
      **BASIS))(m.params, jnp.asarray(x[0]))
  s = float(m.scales["energy"])
  np.testing.assert_allclose(np.asarray(f_std)[:len(pos)] * s, forces(pos, side), rtol=1e-10, atol=1e-13)
  assert np.all(np.asarray(f_std)[len(pos):] == 0)
  assert float(e_std) * s + len(pos) * float(m.scales["energy_offset"]) == pytest.approx(
      float(energy_field(pos, side)), rel=1e-12)


# --- Conservative by construction -------------------------------------------------------------------------------


def test_lambda_and_loop_work_vanish_for_the_conservative_model_only():
  pos = _clusters(6, seed=4)
  cons = models.model_force_fn(_four_body())
  lam = np.asarray(diagnostics.antisymmetric_fraction(cons, pos))
  work = np.asarray(diagnostics.loop_work(cons, pos, jax.random.PRNGKey(0), radius=0.05, n_points=64))
  assert np.max(lam) < 1e-13
  # The trapezoid rule on the loop is exact to rounding for a smooth integrand; the kink of the head's scalar
  # softsign at 0 (eq. 14) leaves up to ~1e-10 eV of quadrature error on random weights (a trained model: 1e-17).
  assert np.max(np.abs(work)) < 1e-9
  direct = models.four_body_force_fn(uenn.init_uenn(jax.random.PRNGKey(0), (6, 8, 4), dtype=F64),
                                     {"inputs": [5.0] * 6, "targets": [0.13] * 4})
  assert np.min(np.asarray(diagnostics.antisymmetric_fraction(direct, pos))) > 1e-2
  assert np.max(np.abs(np.asarray(diagnostics.loop_work(direct, pos, jax.random.PRNGKey(0))))) > 1e-8


# --- Symmetry -------------------------------------------------------------------------------------------------


def test_four_body_energy_invariant_and_forces_equivariant():
  m = _four_body(symmetrize=True)
  e, f = jax.jit(models.model_energy_fn(m)), jax.jit(models.model_force_fn(m))
  pos = _clusters(5, seed=2)
  key = jax.random.PRNGKey(7)
  uenn.assert_invariant(e, pos, key=key, in_axis=-1, num_trials=4, rtol=1e-12)
  uenn.assert_equivariant(f, pos, key=key, in_axis=-1, out_axis=-1, num_trials=4, reflection=True, rtol=1e-11)
  t = jnp.asarray([1.5, -20.0, 3.0], F64)
  np.testing.assert_allclose(e(pos + t), e(pos), rtol=1e-12)
  np.testing.assert_allclose(f(pos + t), f(pos), rtol=1e-10, atol=1e-14)
  # Relabelling the atoms: E unchanged, forces relabelled, for all 24 permutations (the averaged energy).
  perms = np.asarray(list(itertools.permutations(range(4))))  # (24, 4)
  relabelled = pos[:, perms]  # (5, 24, 4, 3)
  np.testing.assert_allclose(e(relabelled), np.broadcast_to(e(pos)[:, None], (5, 24)), rtol=1e-12)
  np.testing.assert_allclose(f(relabelled), np.asarray(f(pos))[:, perms], rtol=1e-10, atol=1e-14)
  # Without the average the network depends on the labels (so the check above can fail).
  plain = jax.jit(models.model_energy_fn(_four_body(symmetrize=False)))
  assert np.max(np.abs(plain(pos[:, [1, 0, 2, 3]]) - plain(pos))) > 1e-6


def test_many_body_energy_invariant_and_forces_equivariant(many_body_fields):
  _, f, e = many_body_fields
  pos, side = _box()
  # Periodic: translating (and wrapping into the box) and relabelling change nothing but the labels.
  shifted = (pos + np.asarray([4.2, -7.1, 11.3])) % side
  perm = np.random.default_rng(0).permutation(len(pos))
  assert float(e(shifted, side)) == pytest.approx(float(e(pos, side)), rel=1e-12)
  assert float(e(pos[perm], side)) == pytest.approx(float(e(pos, side)), rel=1e-12)
  np.testing.assert_allclose(f(shifted, side), f(pos, side), rtol=1e-9, atol=1e-13)
  np.testing.assert_allclose(f(pos[perm], side), np.asarray(f(pos, side))[perm], rtol=1e-9, atol=1e-13)
  # Free space: rotations and reflections.
  key = jax.random.PRNGKey(3)
  uenn.assert_invariant(e, jnp.asarray(pos), key=key, in_axis=-1, num_trials=1, rtol=1e-12)
  uenn.assert_equivariant(f, jnp.asarray(pos), key=key, in_axis=-1, out_axis=-1, num_trials=1, reflection=True,
                          rtol=1e-11)


# --- Files ----------------------------------------------------------------------------------------------------


def test_conservative_model_files_round_trip_and_direct_models_have_no_energy(tmp_path):
  m = _four_body(symmetrize=True)
  models.save_model(str(tmp_path), m)
  back = models.load_model(str(tmp_path))
  assert (back.forces, back.head_hidden, back.eps, back.symmetrize) == ("conservative", (8,), 0.1, True)
  assert set(back.params) == {"uenn", "head"} and float(back.scales["energy_offset"]) == -0.01
  pos = _clusters(2)
  np.testing.assert_array_equal(uenn.load_energy_field(str(tmp_path))(pos), uenn.load_energy_field(m)(pos))
  np.testing.assert_array_equal(uenn.load_force_field(str(tmp_path))(pos), uenn.load_force_field(m)(pos))
  direct = models.Model(kind="four_body", params=uenn.init_uenn(jax.random.PRNGKey(0), (6, 8, 4)), sizes=(6, 8, 4),
                        scales={"inputs": [5.0] * 6, "targets": [0.13] * 4})
  models.save_model(str(tmp_path / "direct"), direct)
  assert models.load_model(str(tmp_path / "direct")).forces == "direct"
  with pytest.raises(ValueError, match="has no energy"):
    uenn.load_energy_field(str(tmp_path / "direct"))
  with pytest.raises(ValueError, match="params must be"):
    models.Model(kind="four_body", params=direct.params, sizes=(6, 8, 4), scales=direct.scales, forces="conservative")
  with pytest.raises(ValueError, match="forces must be one of"):
    models.Model(kind="four_body", params=direct.params, sizes=(6, 8, 4), scales=direct.scales, forces="both")
  with pytest.raises(ValueError, match=r"needs the scales \['energy'\]"):
    models.Model(kind="four_body", params=m.params, sizes=(6, 8, 5), scales={"inputs": [5.0] * 6},
                 forces="conservative")


def test_many_body_conservative_model_file_round_trip(tmp_path, many_body_fields):
  """The scalar feature row and its scales survive the file: the loaded workdir gives the same E and F."""
  m, forces, energy_field = many_body_fields
  models.save_model(str(tmp_path), m)
  back = models.load_model(str(tmp_path))
  assert (back.forces, back.scalar_features, back.head_hidden) == ("conservative", True, (8,))
  np.testing.assert_array_equal(back.scales["feature_inputs"], m.scales["feature_inputs"])
  pos, side = _box()
  assert float(uenn.load_energy_field(str(tmp_path))(pos, side)) == float(energy_field(pos, side))
  # The same numbers to float64 rounding: on a GPU two compilations of one function may sum in another order.
  np.testing.assert_allclose(uenn.load_force_field(str(tmp_path))(pos, side), forces(pos, side), rtol=1e-12,
                             atol=1e-15)


# --- NVE conserves the model's own energy -----------------------------------------------------------------------


# A small conservative model trained on the Sec. 4.1 data (test force RMSE 0.0026 eV/A), made with
#   python -m experiments.four_body --config=experiments/configs/four_body.py:conservative \
#     --config.sizes="(6,32,32,16)" --config.head_hidden="(32,)" --config.steps=40000 --config.dtype=float64
TRAINED = os.path.join(os.path.dirname(__file__), "data", "conservative_four_body")


def test_nve_conserves_the_models_own_energy_like_the_analytical_run():
  """The Sec. 4.4 protocol (10 samples, 10 K, 1 fs, 10,000 steps): the conservative model's own total energy
  KE + E_model drifts no more than 10x the analytical LJ run's, while its potential energy really moves."""
  trained_four_body = models.load_model(TRAINED)
  assert trained_four_body.conservative
  positions0 = jnp.broadcast_to(jnp.asarray(FOUR_BODY_POSITIONS, F64), (10, 4, 3))
  momenta0 = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), positions0, ARGON_MASS, 10.0)
  model_energy = models.model_energy_fn(trained_four_body, dtype=F64)
  drift, deviation, pe_range = {}, {}, {}
  for name, force_fn, energy_fn in (("analytical", lj_forces, lj_energy),
                                    ("conservative", models.model_force_fn(trained_four_body, dtype=F64),
                                     model_energy)):
    traj = simulate.nve_trajectory(force_fn, positions0, momenta0, n_steps=10_000, record_every=10)
    e = np.asarray(quantity.total_energy(traj.positions, traj.momenta, ARGON_MASS, energy_fn))  # (1001, 10)
    drift[name] = float(np.mean(np.abs(e[-1] - e[0])))
    deviation[name] = float(np.max(np.abs(e - e[0])))
    pe_range[name] = float(np.min(np.ptp(np.asarray(energy_fn(traj.positions)), axis=0)))
  assert drift["conservative"] < 10 * drift["analytical"], drift
  assert deviation["conservative"] < 10 * deviation["analytical"], deviation
  assert pe_range["conservative"] > 1e4 * deviation["conservative"], (pe_range, deviation)


def test_ase_calculator_gives_the_conservative_energy_and_its_gradient():
  # UENNCalculator on a conservative many-atom model: "energy" is load_energy_field's, forces its -gradient
  # (checked against ASE's own central differences of the calculator's energy), in a periodic cubic cell.
  from tests import external
  external.require("ase")
  from ase import Atoms
  from ase.calculators.fd import calculate_numerical_forces

  from unitary_enn.calculator import UENNCalculator
  model = _many_body()
  positions, side = _box()
  atoms = Atoms(f"Ar{len(positions)}", positions=positions, cell=[side] * 3, pbc=True)
  calc = UENNCalculator(model)
  atoms.calc = calc
  assert "energy" in calc.implemented_properties
  e = atoms.get_potential_energy()
  np.testing.assert_allclose(e, float(models.load_energy_field(model)(positions, side)), rtol=1e-12)
  f = atoms.get_forces()
  np.testing.assert_allclose(f, np.asarray(models.load_force_field(model)(positions, side)), rtol=1e-10, atol=1e-12)
  numeric = calculate_numerical_forces(atoms, eps=1e-5)
  np.testing.assert_allclose(f, numeric, atol=1e-7 + 1e-5 * np.abs(f).max())
  assert np.abs(f).max() > 1e-4


@pytest.mark.parametrize("fmt", ["Dense", "Sparse", "OrderedSparse"])
def test_many_body_forces_in_blocks_equal_the_whole_and_minus_the_gradient(fmt):
  """The gradient recomputes each block of the descriptor sum (`jax.checkpoint`) instead of keeping its pair terms,
  through the written-out gradient of the Gaussian sums: with 108 atoms in blocks of 7 rows or 500 pairs the
  forces equal those computed in one block, and both equal central differences of the energy, on every jax-md
  list format."""
  from jax_md import partition

  from benchmarks import md_throughput
  from unitary_enn import neighbors
  m = _many_body()
  pos, box = md_throughput.fcc_state(3, "float64", 60.0)  # 108 atoms in a 15.7 A box
  pos = jnp.asarray(pos)
  disp, _ = neighbors.periodic_space(box)
  nbr = partition.neighbor_list(disp, box, m.r_cut, format=getattr(partition, fmt)).allocate(pos)
  block, one_block = (7, len(pos)) if fmt == "Dense" else (500, nbr.idx.shape[1])
  whole = np.asarray(jax.jit(models.many_body_force_fn(m, disp, block=one_block))(pos, nbr))
  blocked = np.asarray(jax.jit(models.many_body_force_fn(m, disp, block=block))(pos, nbr))
  assert np.max(np.abs(whole)) > 1e-3
  np.testing.assert_allclose(blocked, whole, rtol=1e-10, atol=1e-12)
  energy_fn = jax.jit(models.many_body_energy_fn(m, disp, block=block))
  h = 1e-5
  for a, x in ((0, 0), (50, 1), (107, 2)):
    d = jnp.zeros_like(pos).at[a, x].set(h)
    fd = -(float(energy_fn(pos + d, nbr)) - float(energy_fn(pos - d, nbr))) / (2 * h)
    assert blocked[a, x] == pytest.approx(fd, rel=1e-6, abs=1e-10), (a, x)


def test_many_body_force_jacobian_is_minus_the_hessian_through_the_written_out_gradient():
  """The descriptor sums have a custom VJP (reverse mode only): the force Jacobian of a conservative many-atom
  model on a neighbor list (`diagnostics.force_jacobian`, reverse mode) equals -jax.hessian(E) (forward over
  reverse), so lambda = 0 to rounding; forward mode through the sums raises instead of giving a wrong answer."""
  from jax_md import partition

  from unitary_enn import neighbors
  m = _many_body()
  pos, side = _box(n=12)
  pos = jnp.asarray(pos)
  disp, _ = neighbors.periodic_space(side)
  nbr = partition.neighbor_list(disp, side, m.r_cut, format=partition.Dense).allocate(pos)
  energy_fn, force_fn = models.many_body_energy_fn(m, disp), models.many_body_force_fn(m, disp)
  hess = np.asarray(jax.hessian(lambda p: energy_fn(p, nbr))(pos)).reshape(3 * len(pos), -1)
  jac = np.asarray(diagnostics.force_jacobian(lambda p: force_fn(p, nbr), pos))
  assert np.max(np.abs(hess)) > 1e-2
  np.testing.assert_allclose(jac, -hess, rtol=1e-10, atol=1e-13 * np.max(np.abs(hess)))
  assert float(diagnostics.antisymmetric_fraction(lambda p: force_fn(p, nbr), pos)) < 1e-12
  with pytest.raises(TypeError, match="forward-mode"):
    jax.jacfwd(lambda p: energy_fn(p, nbr))(pos)

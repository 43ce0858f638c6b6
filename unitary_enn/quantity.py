"""Physical quantities of states and trajectories: energies, temperature, pressure, momenta, RMSDs (metal units).

    kinetic_energy(momenta, mass) / temperature(momenta, mass) / temperature_from_kinetic_energy(ke, n_atoms)
    total_energy(positions, momenta, mass, energy_fn) (eq. 48)     pressure(ke, virial, volume) (virial theorem)
    position_rmsd (eq. 49) / energy_rmsd (eq. 50) / relative_energy_drift / max_relative_energy_deviation
    net_momentum / angular_momentum / min_pair_distances
    maxwell_boltzmann_momenta(key, positions, mass, temperature)   initial momenta (docs/decisions.md §8)

Positions `(..., N, 3)` in A, momenta `(..., N, 3)` in eV ps / A, masses scalar or `(N,)` in eV ps^2 / A^2,
energies in eV, temperatures in K. All pure and jit/vmap-able unless noted.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks
from unitary_enn.constants import ARGON_MASS, FOUR_BODY_TEMPERATURE, KB
from unitary_enn.potentials import lj_energy

Array = jax.Array


def _vectors3(name: str, x) -> Array:
  """`x` as a real array `(..., N, 3)` (lists accepted); TypeError / ValueError naming `name` otherwise."""
  x = checks.as_array(name, x)
  checks.check_shape(name, x, (..., None, 3))
  return x


def _same_shape(*named) -> None:
  (n0, a0), *rest = named
  for n1, a1 in rest:
    if a1.shape != a0.shape:
      raise ValueError(f"{n1} has shape {tuple(a1.shape)}, expected the shape of {n0} {tuple(a0.shape)}")


def _dof(n_atoms: int, dof) -> int:
  """Degrees of freedom: 3N - 3 by default (centre-of-mass momentum removed); a positive integer."""
  if dof is None:
    if n_atoms < 2:
      raise ValueError(f"{n_atoms} atom(s) have no degree of freedom once the centre of mass is fixed; pass dof")
    return 3 * n_atoms - 3
  return checks.positive_int("dof", dof)


def _energy_series(energy) -> Array:
  """Energies `(steps + 1, ...)` with E(0) != 0 where concrete (the relative change is undefined at 0)."""
  energy = checks.as_array("energy", energy)
  if energy.ndim < 1 or energy.shape[0] < 1:
    raise ValueError(f"energy has shape {tuple(energy.shape)}, expected (steps + 1, ...) with at least one step")
  if checks.is_concrete(energy) and np.any(np.asarray(energy[0]) == 0):
    raise ValueError("energy[0] is 0 for some sample: a change relative to E(0) is undefined there")
  return energy


def per_atom_masses(mass, n_atoms: int, dtype) -> Array:
  """Masses as `(N, 1)`, from a scalar or an `(N,)` array (eV ps^2 / A^2); concrete masses must be > 0 and finite."""
  m = checks.as_array("mass", mass).astype(dtype)
  if checks.is_concrete(m) and not bool(np.all(np.isfinite(np.asarray(m))) and np.all(np.asarray(m) > 0)):
    raise ValueError(f"mass must be positive and finite (eV ps^2 / A^2), got {mass}")
  if m.ndim == 0:
    return jnp.full((n_atoms, 1), m, dtype)
  if m.shape != (n_atoms,):
    raise ValueError(f"mass has shape {tuple(m.shape)}, expected a scalar or ({n_atoms},)")
  return m[:, None]


def maxwell_boltzmann_momenta(key: Array, positions: Array, mass=ARGON_MASS,
                              temperature: float = FOUR_BODY_TEMPERATURE) -> Array:
  """Maxwell-Boltzmann momenta, centre-of-mass momentum removed, rescaled to KE = (3N - 3)/2 k_B T exactly.

  Each sample (leading axes of `positions`) gets its own draw and is rescaled on its own (docs/decisions.md §8).

  Args:
    key: PRNG key.
    positions: `(..., N, 3)` in A; only its shape and dtype are used.
    mass: scalar or `(N,)` in eV ps^2 / A^2 (default argon).
    temperature: in K, > 0.

  Returns:
    momenta `(..., N, 3)` in eV ps / A with `sum_i p_i = 0` and temperature(p) = `temperature`.
  """
  checks.prng_key("key", key)
  positions = checks.as_array("positions", positions)
  checks.check_shape("positions", positions, (..., None, 3))
  n = positions.shape[-2]
  if n < 2:
    raise ValueError(f"positions has {n} atom(s); removing the centre-of-mass momentum needs N >= 2")
  temperature = checks.positive("temperature (K)", temperature)
  dtype = positions.dtype if jnp.issubdtype(positions.dtype, jnp.floating) else jnp.result_type(float)
  m = per_atom_masses(mass, n, dtype)
  if checks.is_concrete(m) and not bool(jnp.all(m > 0)):
    raise ValueError(f"mass must be positive, got {mass}")
  kt = KB * temperature
  p = jnp.sqrt(m * kt) * jax.random.normal(key, positions.shape, dtype)
  p = p - (m / jnp.sum(m)) * jnp.sum(p, axis=-2, keepdims=True)
  target = 0.5 * (3 * n - 3) * kt
  return p * jnp.sqrt(target / kinetic_energy(p, mass))[..., None, None]


def kinetic_energy(momenta: Array, mass=ARGON_MASS) -> Array:
  """sum_i p_i^2 / 2 m_i in eV: `(..., N, 3)` -> `(...)`."""
  momenta = _vectors3("momenta", momenta)
  m = per_atom_masses(mass, momenta.shape[-2], momenta.dtype)
  return 0.5 * jnp.sum(momenta * momenta / m, axis=(-1, -2))


def temperature(momenta: Array, mass=ARGON_MASS, dof: int | None = None) -> Array:
  """Kinetic temperature 2 KE / (dof k_B) in K: `(..., N, 3)` -> `(...)`.

  dof defaults to 3N - 3 (centre-of-mass momentum removed, docs/decisions.md §8), so the initial momenta of
  `maxwell_boltzmann_momenta` read exactly the requested temperature.
  """
  momenta = _vectors3("momenta", momenta)
  n = momenta.shape[-2]
  dof = _dof(n, dof)
  return 2.0 * kinetic_energy(momenta, mass) / (dof * KB)


def potential_energy(positions: Array) -> Array:
  """Analytical LJ potential energy of a free cluster (eq. 40) in eV: `(..., N, 3)` -> `(...)`.

  The paper evaluates U with the analytical potential for both runs, at each run's own positions.
  """
  return lj_energy(positions)


def total_energy(positions: Array, momenta: Array, mass=ARGON_MASS,
                 energy_fn: Callable[[Array], Array] = lj_energy) -> Array:
  """H = sum p^2 / 2m + U (eq. 48) in eV, U from `energy_fn` (analytical LJ by default): `(...)`."""
  positions, momenta = _vectors3("positions", positions), _vectors3("momenta", momenta)
  _same_shape(("positions", positions), ("momenta", momenta))
  return kinetic_energy(momenta, mass) + energy_fn(positions)


def position_rmsd(a: Array, b: Array) -> Array:
  """RMSD of positions over samples and atoms (eq. 49), per step.

  RMSD = sqrt( 1/(N_s N_at) sum_{samples, atoms} |r^a - r^p|^2 ), the squared norm over x, y, z.

  Args:
    a, b: `(..., N_s, N_at, 3)` in A (e.g. `(steps + 1, 10, 4, 3)`).

  Returns:
    `(...)` in A.
  """
  a, b = _vectors3("a", a), _vectors3("b", b)
  _same_shape(("a", a), ("b", b))
  return jnp.sqrt(jnp.mean(jnp.sum((a - b) ** 2, axis=-1), axis=(-1, -2)))


def energy_rmsd(a: Array, b: Array) -> Array:
  """RMSD of total energies over samples (eq. 50): `(..., N_s)` eV -> `(...)` eV."""
  a, b = checks.as_array("a", a), checks.as_array("b", b)
  _same_shape(("a", a), ("b", b))
  if a.ndim < 1 or a.shape[-1] < 1:
    raise ValueError(f"a has shape {tuple(a.shape)}, expected (..., N_s) with N_s >= 1 samples")
  return jnp.sqrt(jnp.mean((a - b) ** 2, axis=-1))


def relative_energy_drift(energy: Array) -> Array:
  """|E(end) - E(0)| / |E(0)| per sample: `(steps + 1, ...)` -> `(...)`."""
  energy = _energy_series(energy)
  return jnp.abs(energy[-1] - energy[0]) / jnp.abs(energy[0])


def max_relative_energy_deviation(energy: Array) -> Array:
  """max_t |E(t) - E(0)| / |E(0)| per sample: `(steps + 1, ...)` -> `(...)`."""
  energy = _energy_series(energy)
  return jnp.max(jnp.abs(energy - energy[0]), axis=0) / jnp.abs(energy[0])


def net_momentum(momenta: Array) -> Array:
  """sum_i p_i: `(..., N, 3)` -> `(..., 3)` eV ps / A."""
  momenta = _vectors3("momenta", momenta)
  return jnp.sum(momenta, axis=-2)


def angular_momentum(positions: Array, momenta: Array) -> Array:
  """sum_i r_i x p_i about the origin: `(..., N, 3)` -> `(..., 3)` eV ps."""
  positions, momenta = _vectors3("positions", positions), _vectors3("momenta", momenta)
  _same_shape(("positions", positions), ("momenta", momenta))
  return jnp.sum(jnp.cross(positions, momenta), axis=-2)


def min_pair_distances(positions: Array) -> Array:
  """Smallest interatomic distance of each configuration: `(..., N, 3)` -> `(...)` A, jit-able.

  (`structures.min_pair_distance` is the NumPy version for one large, possibly periodic, configuration.)
  """
  positions = _vectors3("positions", positions)
  n = positions.shape[-2]
  if n < 2:
    raise ValueError(f"positions holds {n} atom(s); a pair distance needs at least 2")
  i, j = np.triu_indices(n, k=1)
  return jnp.min(jnp.linalg.norm(positions[..., j, :] - positions[..., i, :], axis=-1), axis=-1)


def temperature_from_kinetic_energy(kinetic_energy, n_atoms: int, dof: int | None = None):
  """T = 2 KE / (dof k_B) in K from kinetic energies in eV (any shape); dof defaults to 3N - 3 (`temperature`)."""
  dof = _dof(checks.positive_int("n_atoms", n_atoms), dof)
  return 2.0 * np.asarray(kinetic_energy, np.float64) / (dof * KB)


def pressure(kinetic_energy, virial, volume):
  """P = (2 KE + W) / (3 V) in eV / A^3 (virial theorem), W = sum over pairs of r_ij f(r_ij) (`lj_cut_virial_fn`).

  Multiply by `GPA_PER_EV_A3` for GPa. With lj/cut there is no tail correction (as in LAMMPS by default).
  """
  if checks.is_concrete(volume) and not (np.all(np.isfinite(np.asarray(volume))) and np.all(np.asarray(volume) > 0)):
    raise ValueError(f"volume must be positive and finite (A^3), got {volume}")
  return (2.0 * kinetic_energy + virial) / (3.0 * volume)

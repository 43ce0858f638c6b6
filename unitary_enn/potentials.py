"""Lennard-Jones argon (Rahman 1964; paper eq. 39-41) in metal units: Angstrom, eV, ps.

Three levels (DESIGN habit 2): `lj_pair_energy` on squared distances, `lj_energy`/`lj_forces` dense over all
pairs, in free space (box=None) or a cubic periodic box with minimum image. With r_cut the potential is
truncated without shift, like LAMMPS `pair_style lj/cut`.

Shapes: positions `(..., N, 3)` in A -> energy `(...)` in eV, forces `(..., N, 3)` in eV/A.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from unitary_enn import checks

Array = jax.Array

# Units and constants (SPEC 5).
AMU = 1.0364269e-4  # 1 u in eV ps^2 / A^2
KB = 8.617333262e-5  # Boltzmann constant, eV / K
ARGON_EPSILON = 120.0 * KB  # eV (eps / k_B = 120 K): 0.0103408 eV
ARGON_SIGMA = 3.4  # A
ARGON_MASS = 39.948 * AMU  # eV ps^2 / A^2


def lj_pair_energy(r2: Array, epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """U(r) = 4 eps ((sigma/r)^12 - (sigma/r)^6) (eq. 39) as a function of r^2 (no sqrt: smooth gradients)."""
  s6 = (sigma * sigma / r2) ** 3
  return 4.0 * epsilon * (s6 * s6 - s6)


def lj_pair_force_magnitude(r: Array, epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """-dU/dr at distance r in eV/A (positive = repulsive)."""
  s6 = (sigma / r) ** 6
  return 24.0 * epsilon * (2.0 * s6 * s6 - s6) / r


def minimum_image(dr: Array, box: float | None) -> Array:
  """Wrap displacements into [-box/2, box/2) for a cubic periodic box of side `box` (A); free space if None."""
  if box is None:
    return dr
  return dr - box * jnp.round(dr / box)


def _validate(positions, box, r_cut):
  if positions.ndim < 2 or positions.shape[-1] != 3:
    raise ValueError(f"positions has shape {tuple(positions.shape)}, expected (..., N, 3) in A")
  checks.check_finite("positions", positions)
  if box is not None:
    if r_cut is None:
      raise ValueError("a periodic box needs r_cut: the untruncated LJ sum over images is not defined here")
    if not box >= 2 * r_cut:
      raise ValueError(f"box side {box} A is smaller than 2 * r_cut = {2 * r_cut} A: the minimum-image "
                       "convention would miss neighbours")


def lj_energy(positions: Array, box: float | None = None, r_cut: float | None = None, *,
              epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """Total LJ energy in eV, summed over all pairs (eq. 40).

  Args:
    positions: `(..., N, 3)` in A.
    box: side of a cubic periodic box in A (minimum image), or None for free space.
    r_cut: truncation radius in A without shift (lj/cut), or None for the full pair sum (free space only).

  Returns:
    `(...)` energies in eV.
  """
  positions = jnp.asarray(positions)
  _validate(positions, box, r_cut)
  dr = minimum_image(positions[..., None, :, :] - positions[..., :, None, :], box)
  r2 = jnp.sum(dr * dr, axis=-1)
  n = positions.shape[-2]
  mask = ~jnp.eye(n, dtype=bool)
  if r_cut is not None:
    mask = mask & (r2 < r_cut * r_cut)
  # Safe masking: excluded pairs (the diagonal r = 0) get r2 = 1 inside, so no inf/NaN leaks into gradients.
  e = jnp.where(mask, lj_pair_energy(jnp.where(mask, r2, 1.0), epsilon, sigma), 0.0)
  return 0.5 * jnp.sum(e, axis=(-1, -2))


def lj_forces(positions: Array, box: float | None = None, r_cut: float | None = None, *,
              epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """F_i = -dU/dr_i (eq. 41) in eV/A, `(..., N, 3)`; arguments as in `lj_energy`."""
  positions = jnp.asarray(positions)
  _validate(positions, box, r_cut)
  energy = lambda p: jnp.sum(lj_energy(p, box, r_cut, epsilon=epsilon, sigma=sigma))
  return -jax.grad(energy)(positions)


def lj_forces_reference(positions, epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA):
  """Free-space LJ forces from the closed form in NumPy float64, `(..., N, 3)` -> `(..., N, 3)` eV/A.

  F_i = -sum_j f(r_ij) (r_j - r_i) / r_ij with f = -dU/dr: independent of JAX and of autodiff, so it serves
  both as the float64 target generator for data sets and as a cross-check of `lj_forces`.
  """
  import numpy as np
  pos = np.asarray(positions, dtype=np.float64)
  dr = pos[..., None, :, :] - pos[..., :, None, :]  # dr[..., i, j] = r_j - r_i
  r = np.linalg.norm(dr, axis=-1)
  n = pos.shape[-2]
  off = ~np.eye(n, dtype=bool)
  r_safe = np.where(off, r, 1.0)
  s6 = (sigma / r_safe) ** 6
  f = np.where(off, 24.0 * epsilon * (2.0 * s6 * s6 - s6) / r_safe, 0.0)
  return -np.sum((f / r_safe)[..., None] * dr, axis=-2)


# --- Periodic lj/cut on jax-md neighbor lists (paper Sec. 4.5 targets, SPEC 9 and 13) ---------------------


def lj_cut_pair_energy(r2: Array, r_cut: float, epsilon: float = ARGON_EPSILON,
                       sigma: float = ARGON_SIGMA) -> Array:
  """U(r) of eq. 39 for r < r_cut, 0 beyond, without shift (LAMMPS `lj/cut`), from r^2; safely masked.

  jax-md's `energy.lennard_jones` switches smoothly from 2 sigma to r_cutoff instead (SPEC 13), which is a
  different potential; this is the plain truncation. Excluded pairs (r >= r_cut, r = 0) give 0 and a finite,
  zero gradient.
  """
  inside = (r2 < r_cut * r_cut) & (r2 > 0)
  return jnp.where(inside, lj_pair_energy(jnp.where(inside, r2, 1.0), epsilon, sigma), 0.0)


def lj_cut_neighbor_list(displacement_fn, box, *, r_cut: float = 10.0, epsilon: float = ARGON_EPSILON,
                         sigma: float = ARGON_SIGMA, format=None, dr_threshold: float = 0.0,
                         capacity_multiplier: float = 1.25):
  """Truncated, unshifted LJ argon (LAMMPS `pair_style lj/cut r_cut`) on a jax-md neighbor list.

  Args:
    displacement_fn: `jax_md.space.periodic(box)[0]` (minimum image) or `space.free()[0]`.
    box: cubic side in A for the cell list (needs box >= 2 r_cut when periodic).
    r_cut: truncation radius in A (SPEC 9: 10 A). No shift: U jumps by U(r_cut) at r_cut.
    format: jax-md `partition.Dense` (default), `Sparse` or `OrderedSparse`.

  Returns:
    (neighbor_fn, energy_fn, force_fn): `energy_fn(positions, neighbor) -> ()` total energy in eV;
    `force_fn(positions, neighbor) -> (N, 3)` in eV/A from the closed form F_i = sum_j U'(r_ij) r_ij / r_ij
    (not autodiff, so a test can compare it with -grad energy_fn). Positions `(N, 3)` in A inside [0, box]
    for a periodic box. The caller checks `neighbor.did_buffer_overflow`.
  """
  from jax_md import partition

  from unitary_enn.descriptors import neighbor_pairs

  format = partition.Dense if format is None else format
  neighbor_fn = partition.neighbor_list(displacement_fn, box, r_cut, dr_threshold=dr_threshold,
                                        capacity_multiplier=capacity_multiplier, format=format)

  def energy_fn(positions, neighbor):
    _, _, dr, valid, once = neighbor_pairs(positions, neighbor, displacement_fn)
    r2 = jnp.where(valid, jnp.sum(dr * dr, axis=-1), 0.0)
    e = jnp.sum(lj_cut_pair_energy(r2, r_cut, epsilon, sigma))
    return e if once else 0.5 * e

  def force_fn(positions, neighbor):
    n = positions.shape[0]
    i, j, dr, valid, once = neighbor_pairs(positions, neighbor, displacement_fn)
    r2 = jnp.sum(dr * dr, axis=-1)
    inside = valid & (r2 > 0) & (r2 < r_cut * r_cut)
    r = jnp.sqrt(jnp.where(inside, r2, 1.0))
    # F_i = -dU/dr_i = U'(r) r_hat_ij = -f(r) r_hat_ij with f = -dU/dr (repulsive f > 0 pushes i away from j).
    pair = jnp.where(inside[:, None], -(lj_pair_force_magnitude(r, epsilon, sigma) / r)[:, None] * dr, 0.0)
    f = jnp.zeros((n, 3), pair.dtype).at[i].add(pair)
    if once:
      f = f.at[j].add(-pair)
    return f

  return neighbor_fn, energy_fn, force_fn

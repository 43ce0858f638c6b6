"""Reference potentials: Lennard-Jones argon (Rahman 1964; paper eq. 39-41) in metal units (A, eV, ps).

Three levels, as jax-md's `energy.py` has them:

  pair kernels      `lj_pair_energy` (from r^2), `lj_pair_force_magnitude` (-dU/dr), `lj_cut_pair_energy`
  dense             `lj_energy` / `lj_forces` over all pairs, free space (box=None) or a cubic periodic box with
                    minimum image; with r_cut the potential is truncated without shift (LAMMPS `pair_style lj/cut`)
  neighbor lists    `lj_cut_neighbor_list(displacement_fn, box)` -> (neighbor_fn, energy_fn, force_fn), and the
                    builders `lj_cut_energy_fn` / `lj_cut_force_fn` / `lj_cut_virial_fn(displacement_fn)` whose
                    functions take `(positions, neighbor, **displacement_kwargs)` (e.g. box=... for jax-md's
                    fractional coordinates), all over one pair helper

Shapes: positions `(..., N, 3)` in A -> energy `(...)` in eV, forces `(..., N, 3)` in eV/A.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition

from unitary_enn import checks
from unitary_enn.constants import ARGON_EPSILON, ARGON_SIGMA
from unitary_enn.neighbors import minimum_image, neighbor_pairs

Array = jax.Array


def lj_pair_energy(r2: Array, epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """U(r) = 4 eps ((sigma/r)^12 - (sigma/r)^6) (eq. 39) as a function of r^2 (no sqrt: smooth gradients)."""
  s6 = (sigma * sigma / r2) ** 3
  return 4.0 * epsilon * (s6 * s6 - s6)


def lj_pair_force_magnitude(r: Array, epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """-dU/dr at distance r in eV/A (positive = repulsive)."""
  s6 = (sigma / r) ** 6
  return 24.0 * epsilon * (2.0 * s6 * s6 - s6) / r


def _validate(positions, box, r_cut, epsilon=ARGON_EPSILON, sigma=ARGON_SIGMA):
  positions = checks.as_array("positions", positions)
  if positions.ndim < 2 or positions.shape[-1] != 3:
    raise ValueError(f"positions has shape {tuple(positions.shape)}, expected (..., N, 3) in A")
  checks.check_finite("positions", positions)
  epsilon, sigma = checks.positive("epsilon (eV)", epsilon), checks.positive("sigma (A)", sigma)
  if r_cut is not None:
    r_cut = checks.positive("r_cut", r_cut)
  if box is not None:
    if r_cut is None:
      raise ValueError("a periodic box needs r_cut: the untruncated LJ sum over images is not defined here")
    box = checks.check_box(box, r_cut)
  checks.check_no_coincident(positions, box, tol=overflow_distance(positions.dtype, epsilon, sigma))
  return positions, box, r_cut


def overflow_distance(dtype, epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> float:
  """The pair distance (A) below which the LJ energy or force would overflow `dtype` (inf, then NaN): ~0.01 A in
  float32, negligible in float64 (where 1e-8 A, the coincidence test, is used)."""
  big = float(jnp.finfo(jnp.dtype(dtype)).max) / max(4.0 * 12.0 * epsilon, 1.0)
  # 4 eps (sigma/r)^12 and the force 48 eps sigma^12 / r^13 stay below `big` with a margin for the sums.
  return max(float(sigma) * (1e-6 * big) ** (-1.0 / 13.0), 1e-8)


def _dense_energy(positions, box, r_cut, epsilon, sigma):
  dr = minimum_image(positions[..., None, :, :] - positions[..., :, None, :], box)
  r2 = jnp.sum(dr * dr, axis=-1)
  n = positions.shape[-2]
  mask = ~jnp.eye(n, dtype=bool)
  if r_cut is not None:
    mask = mask & (r2 < r_cut * r_cut)
  # Safe masking: excluded pairs (the diagonal r = 0) get r2 = 1 inside, so no inf/NaN leaks into gradients.
  # A NaN distance (NaN positions under jit) is carried into the sum rather than masked away.
  poison = jnp.where(~jnp.eye(n, dtype=bool) & jnp.isnan(r2), r2, 0.0)
  e = jnp.where(mask, lj_pair_energy(jnp.where(mask, r2, 1.0), epsilon, sigma), 0.0) + poison
  return 0.5 * jnp.sum(e, axis=(-1, -2))


def lj_energy(positions: Array, box: float | None = None, r_cut: float | None = None, *,
              epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """Total LJ energy in eV, summed over all pairs (eq. 40).

  Args:
    positions: `(..., N, 3)` in A (lists accepted). Two atoms at the same place are an error (U is singular).
    box: side of a cubic periodic box in A (minimum image; box >= 2 r_cut), or None for free space.
    r_cut: truncation radius in A without shift (lj/cut), or None for the full pair sum (free space only).

  Returns:
    `(...)` energies in eV.
  """
  positions, box, r_cut = _validate(positions, box, r_cut, epsilon, sigma)
  return _dense_energy(positions, box, r_cut, epsilon, sigma)


def lj_forces(positions: Array, box: float | None = None, r_cut: float | None = None, *,
              epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """F_i = -dU/dr_i (eq. 41) in eV/A, `(..., N, 3)`; arguments as in `lj_energy`."""
  positions, box, r_cut = _validate(positions, box, r_cut, epsilon, sigma)
  energy = lambda p: jnp.sum(_dense_energy(p, box, r_cut, epsilon, sigma))
  return -jax.grad(energy)(positions)


def lj_forces_reference(positions, epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA):
  """Free-space LJ forces from the closed form in NumPy float64, `(..., N, 3)` -> `(..., N, 3)` eV/A.

  F_i = -sum_j f(r_ij) (r_j - r_i) / r_ij with f = -dU/dr: independent of JAX and of autodiff, so it serves
  both as the float64 target generator for data sets and as a cross-check of `lj_forces`.
  """
  pos = checks.as_array("positions", positions, numpy=True).astype(np.float64)
  checks.check_shape("positions", pos, (..., None, 3))
  checks.check_finite("positions", pos)
  checks.check_no_coincident(pos)
  dr = pos[..., None, :, :] - pos[..., :, None, :]  # dr[..., i, j] = r_j - r_i
  r = np.linalg.norm(dr, axis=-1)
  n = pos.shape[-2]
  off = ~np.eye(n, dtype=bool)
  r_safe = np.where(off, r, 1.0)
  s6 = (sigma / r_safe) ** 6
  f = np.where(off, 24.0 * epsilon * (2.0 * s6 * s6 - s6) / r_safe, 0.0)
  return -np.sum((f / r_safe)[..., None] * dr, axis=-2)


# --- lj/cut on jax-md neighbor lists (the Sec. 4.5 targets; docs/decisions.md §9 and §13) -------------------


def lj_cut_pair_energy(r2: Array, r_cut: float, epsilon: float = ARGON_EPSILON,
                       sigma: float = ARGON_SIGMA) -> Array:
  """U(r) of eq. 39 for r < r_cut, 0 beyond, without shift (LAMMPS `lj/cut`), from r^2; safely masked.

  jax-md's `energy.lennard_jones` switches smoothly from 2 sigma to r_cutoff instead (docs/decisions.md §13),
  which is a different potential; this is the plain truncation. Excluded pairs (r >= r_cut, r = 0) give 0 and a
  finite, zero gradient.
  """
  inside = (r2 < r_cut * r_cut) & (r2 > 0)
  return jnp.where(inside, lj_pair_energy(jnp.where(inside, r2, 1.0), epsilon, sigma), 0.0)


def _lj_cut_pairs(positions, neighbor, displacement_fn, r_cut, epsilon, sigma):
  """The one pair loop of lj/cut on a neighbor list.

  Returns:
    (i, j, dr `(P, 3)` r_ij = r_j - r_i, r `(P,)` (1 where masked), inside `(P,)`, f `(P,)` = -dU/dr (0 where
    masked), u `(P,)` = U(r) (0 where masked), once) — see `neighbors.neighbor_pairs` for `once`.
  """
  i, j, dr, valid, once = neighbor_pairs(positions, neighbor, displacement_fn)
  r2 = jnp.sum(dr * dr, axis=-1)
  poison = jnp.where(valid & jnp.isnan(r2), r2, 0.0)  # a NaN distance must not drop out (NaN > 0 is False)
  inside = valid & (r2 > 0) & (r2 < r_cut * r_cut)
  r2_safe = jnp.where(inside, r2, 1.0)
  r = jnp.sqrt(r2_safe)
  f = jnp.where(inside, lj_pair_force_magnitude(r, epsilon, sigma), 0.0) + poison
  u = jnp.where(inside, lj_pair_energy(r2_safe, epsilon, sigma), 0.0) + poison
  return i, j, dr, r, inside, f, u, once


def lj_cut_energy_fn(displacement_fn, *, r_cut: float = 10.0, epsilon: float = ARGON_EPSILON,
                     sigma: float = ARGON_SIGMA):
  """lj/cut potential energy on a jax-md neighbor list: `energy_fn(positions, neighbor, **displacement_kwargs)
  -> ()` in eV. Any jax-md format."""
  def energy_fn(positions, neighbor, **kwargs):
    disp = functools.partial(displacement_fn, **kwargs) if kwargs else displacement_fn
    *_, u, once = _lj_cut_pairs(positions, neighbor, disp, r_cut, epsilon, sigma)
    e = jnp.sum(u)
    return e if once else 0.5 * e
  return energy_fn


def lj_cut_force_fn(displacement_fn, *, r_cut: float = 10.0, epsilon: float = ARGON_EPSILON,
                    sigma: float = ARGON_SIGMA):
  """lj/cut forces from the closed form F_i = sum_j U'(r_ij) r_ij / r_ij (not autodiff, so a test can compare it
  with -grad of the energy): `force_fn(positions (N, 3), neighbor, **displacement_kwargs) -> (N, 3)` eV/A."""
  def force_fn(positions, neighbor, **kwargs):
    disp = functools.partial(displacement_fn, **kwargs) if kwargs else displacement_fn
    i, j, dr, r, inside, f, _, once = _lj_cut_pairs(positions, neighbor, disp, r_cut, epsilon, sigma)
    # F_i = -dU/dr_i = U'(r) r_hat_ij = -f(r) r_hat_ij with f = -dU/dr (repulsive f > 0 pushes i away from j).
    pair = -(f / r)[:, None] * dr
    out = jnp.zeros(positions.shape, pair.dtype).at[i].add(pair)
    return out.at[j].add(-pair) if once else out
  return force_fn


def lj_cut_virial_fn(displacement_fn, *, r_cut: float = 10.0, epsilon: float = ARGON_EPSILON,
                     sigma: float = ARGON_SIGMA):
  """Pair virial W = sum_{i<j} r_ij f(r_ij), f = -dU/dr of lj/cut (eV): `virial_fn(positions, neighbor, **kw)`.

  With the kinetic energy it gives the pressure (`quantity.pressure`); W = -3 V dU/dV for a homogeneous scaling.
  """
  def virial_fn(positions, neighbor, **kwargs):
    disp = functools.partial(displacement_fn, **kwargs) if kwargs else displacement_fn
    _, _, _, r, _, f, _, once = _lj_cut_pairs(positions, neighbor, disp, r_cut, epsilon, sigma)
    w = jnp.sum(r * f)
    return w if once else 0.5 * w
  return virial_fn


def lj_cut_neighbor_list(displacement_fn, box, *, r_cut: float = 10.0, epsilon: float = ARGON_EPSILON,
                         sigma: float = ARGON_SIGMA, format=None, dr_threshold: float = 0.0,
                         capacity_multiplier: float = 1.25):
  """Truncated, unshifted LJ argon (LAMMPS `pair_style lj/cut r_cut`) on a jax-md neighbor list.

  Args:
    displacement_fn: `jax_md.space.periodic(box)[0]` (minimum image) or `space.free()[0]`.
    box: cubic side in A for the cell list (needs box >= 2 r_cut when periodic).
    r_cut: truncation radius in A (10 A in Sec. 4.5). No shift: U jumps by U(r_cut) at r_cut.
    format: jax-md `partition.Dense` (default), `Sparse` or `OrderedSparse`.

  Returns:
    (neighbor_fn, energy_fn, force_fn): `energy_fn(positions, neighbor) -> ()` total energy in eV;
    `force_fn(positions, neighbor) -> (N, 3)` in eV/A (`lj_cut_force_fn`). The caller checks the list
    (`neighbors.NeighborManager` does).
  """
  format = partition.Dense if format is None else format
  neighbor_fn = partition.neighbor_list(displacement_fn, box, r_cut, dr_threshold=dr_threshold,
                                        capacity_multiplier=capacity_multiplier, format=format)
  kw = dict(r_cut=r_cut, epsilon=epsilon, sigma=sigma)
  return neighbor_fn, lj_cut_energy_fn(displacement_fn, **kw), lj_cut_force_fn(displacement_fn, **kw)

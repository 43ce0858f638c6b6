"""Reference potentials in metal units (A, eV, ps): Lennard-Jones argon (Rahman 1964; paper eq. 39-41) and the
Axilrod-Teller-Muto three-body dispersion term (a target no pair model can fit; not in the paper).

Three levels, as jax-md's `energy.py` has them:

  pair kernels      `lj_pair_energy` (from r^2), `lj_pair_force_magnitude` (-dU/dr), `lj_cut_pair_energy`
  dense             `lj_energy` / `lj_forces` over all pairs, free space (box=None) or a cubic periodic box with
                    minimum image; with r_cut the potential is truncated without shift (LAMMPS `pair_style lj/cut`)
  neighbor lists    `lj_cut_neighbor_list(displacement_fn, box)` -> (neighbor_fn, energy_fn, force_fn), and the
                    builders `lj_cut_energy_fn` / `lj_cut_force_fn` / `lj_cut_virial_fn(displacement_fn)` whose
                    functions take `(positions, neighbor, **displacement_kwargs)` (e.g. box=... for jax-md's
                    fractional coordinates), all over one pair helper

Axilrod-Teller-Muto (LAMMPS `pair_style atm cutoff cutoff_triple`), the same three levels:

  triple kernel     `atm_triple_energy(r_ij, r_ik)`: nu (1 + 3 cos g_i cos g_j cos g_k) / (r_ij r_jk r_ik)^3
  dense             `atm_energy` / `atm_forces`, and `lj_atm_energy` / `lj_atm_forces` (lj/cut + ATM, LAMMPS
                    `pair_style hybrid/overlay lj/cut 10.0 atm cutoff cutoff_triple`), free or periodic
  neighbor lists    `atm_energy_fn` / `atm_force_fn` / `lj_atm_force_fn(displacement_fn)`: triples (i, j, k) from
                    pairs of neighbours of i on a jax-md `Dense` list; forces are -jax.grad of the energy

A triple counts (LAMMPS `pair_atm.cpp`) when each of its three distances is <= cutoff and r_ij r_jk r_ik <=
cutoff_triple^3. In a periodic box the two sides from i are minimum images and r_jk = r_ik - r_ij, which is
LAMMPS's ghost-atom geometry whenever box >= 2 cutoff.

Shapes: positions `(..., N, 3)` in A -> energy `(...)` in eV, forces `(..., N, 3)` in eV/A.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition

from unitary_enn import checks
from unitary_enn.constants import ARGON_ATM_NU, ARGON_EPSILON, ARGON_SIGMA, ATM_CUTOFF, ATM_CUTOFF_TRIPLE
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


# --- Axilrod-Teller-Muto three-body dispersion (LAMMPS `pair_style atm`) -----------------------------------


def atm_triple_energy(r_ij: Array, r_ik: Array, nu: float = ARGON_ATM_NU) -> Array:
  """E_ijk = nu (1 + 3 cos g_i cos g_j cos g_k) / (r_ij r_jk r_ik)^3 from the two sides at atom i, in eV.

  With r_jk = r_ik - r_ij and the angles g at the three corners, cos g_i cos g_j cos g_k = -(r_ij.r_ik)
  (r_ij.r_jk)(r_jk.r_ik) / (r_ij r_jk r_ik)^2, so E = nu (r6 - 3 p) / r6^(5/2) with r6 = r_ij^2 r_jk^2 r_ik^2 and p
  that product of dot products: no square roots of lengths, no angles (the form of LAMMPS `pair_atm.cpp`).

  Args:
    r_ij, r_ik: `(..., 3)` vectors from atom i to atoms j and k in A.
    nu: the triple-dipole coefficient in eV A^9 (argon: `constants.ARGON_ATM_NU`, 45.89).

  Returns:
    `(...)` energies in eV (unmasked: the callers exclude degenerate and out-of-cutoff triples).
  """
  r_jk = r_ik - r_ij
  a = jnp.sum(r_ij * r_ij, axis=-1)
  b = jnp.sum(r_ik * r_ik, axis=-1)
  c = jnp.sum(r_jk * r_jk, axis=-1)
  r6 = a * b * c
  p = jnp.sum(r_ij * r_ik, axis=-1) * jnp.sum(r_ij * r_jk, axis=-1) * jnp.sum(r_jk * r_ik, axis=-1)
  return nu * (r6 - 3.0 * p) / (r6 * r6 * jnp.sqrt(r6))


def _atm_masked(r_ij, r_ik, valid, cutoff, cutoff_triple, nu):
  """Triple energies where `valid` and inside LAMMPS's cutoffs, 0 elsewhere, with finite gradients everywhere."""
  r_jk = r_ik - r_ij
  a = jnp.sum(r_ij * r_ij, axis=-1)
  b = jnp.sum(r_ik * r_ik, axis=-1)
  c = jnp.sum(r_jk * r_jk, axis=-1)
  c2 = cutoff * cutoff
  t6 = cutoff_triple ** 6
  inside = valid & (a > 0) & (b > 0) & (c > 0) & (a <= c2) & (b <= c2) & (c <= c2) & (a * b * c <= t6)
  # Safe masking: excluded triples get an equilateral stand-in of unit sides, so no inf/NaN reaches a gradient.
  safe_ij = jnp.where(inside[..., None], r_ij, jnp.array([1.0, 0.0, 0.0], r_ij.dtype))
  safe_ik = jnp.where(inside[..., None], r_ik, jnp.array([0.5, 0.75 ** 0.5, 0.0], r_ik.dtype))
  return jnp.where(inside, atm_triple_energy(safe_ij, safe_ik, nu), 0.0)


def _check_atm_cutoffs(cutoff, cutoff_triple):
  cutoff = checks.positive("cutoff", cutoff)
  cutoff_triple = checks.positive("cutoff_triple", cutoff_triple)
  return cutoff, cutoff_triple


@functools.partial(jax.jit, static_argnames=("box", "cutoff", "cutoff_triple", "nu"))
def _dense_atm_energy(positions, box, cutoff, cutoff_triple, nu):
  n = positions.shape[0]
  d = minimum_image(positions[None, :, :] - positions[:, None, :], box)  # d[i, j] = r_j - r_i
  idx = jnp.arange(n)

  def row(i):  # all triples i < j < k of atom i, from its two minimum-image sides
    order = (i < idx[:, None]) & (idx[:, None] < idx[None, :])
    return jnp.sum(_atm_masked(d[i][:, None, :], d[i][None, :, :], order, cutoff, cutoff_triple, nu))

  return jnp.sum(jax.lax.map(row, idx))


def _validate_atm(positions, box, cutoff, cutoff_triple):
  positions = checks.as_array("positions", positions)
  checks.check_shape("positions", positions, (None, 3))
  checks.check_finite("positions", positions)
  cutoff, cutoff_triple = _check_atm_cutoffs(cutoff, cutoff_triple)
  box = checks.check_box(box, cutoff)
  checks.check_no_coincident(positions, box)
  return positions, box, cutoff, cutoff_triple


def atm_energy(positions: Array, box: float | None = None, *, cutoff: float = ATM_CUTOFF,
               cutoff_triple: float = ATM_CUTOFF_TRIPLE, nu: float = ARGON_ATM_NU) -> Array:
  """Axilrod-Teller-Muto energy in eV, summed over every triple once (dense: all N^3 / 6 triples).

  Args:
    positions: `(N, 3)` in A. Memory and time grow as N^3 (rows of N^2 in turn): for tests and small systems;
      `atm_energy_fn` on a neighbor list for large ones.
    box: side of a cubic periodic box in A (minimum image; box >= 2 cutoff), or None for free space.
    cutoff: each pair distance of a triple must be <= cutoff (A).
    cutoff_triple: and r_ij r_jk r_ik <= cutoff_triple^3 (A), as LAMMPS `pair_style atm cutoff cutoff_triple`.
    nu: triple-dipole coefficient in eV A^9 (argon by default, `constants.ARGON_ATM_NU`).

  Returns:
    `()` energy in eV, in the positions' dtype.
  """
  positions, box, cutoff, cutoff_triple = _validate_atm(positions, box, cutoff, cutoff_triple)
  return _dense_atm_energy(positions, box, cutoff, cutoff_triple, float(nu))


def atm_forces(positions: Array, box: float | None = None, *, cutoff: float = ATM_CUTOFF,
               cutoff_triple: float = ATM_CUTOFF_TRIPLE, nu: float = ARGON_ATM_NU) -> Array:
  """F_i = -dE_ATM/dr_i in eV/A, `(N, 3)`, by jax.grad; arguments as in `atm_energy`."""
  positions, box, cutoff, cutoff_triple = _validate_atm(positions, box, cutoff, cutoff_triple)
  return -jax.grad(_dense_atm_energy)(positions, box, cutoff, cutoff_triple, float(nu))


def lj_atm_energy(positions: Array, box: float | None = None, *, r_cut: float = 10.0, cutoff: float = ATM_CUTOFF,
                  cutoff_triple: float = ATM_CUTOFF_TRIPLE, nu: float = ARGON_ATM_NU,
                  epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """lj/cut (r_cut, no shift) plus Axilrod-Teller-Muto, in eV: LAMMPS `pair_style hybrid/overlay lj/cut r_cut
  atm cutoff cutoff_triple`. Dense (see `atm_energy`); positions `(N, 3)` A."""
  return (lj_energy(positions, box, r_cut, epsilon=epsilon, sigma=sigma)
          + atm_energy(positions, box, cutoff=cutoff, cutoff_triple=cutoff_triple, nu=nu))


def lj_atm_forces(positions: Array, box: float | None = None, *, r_cut: float = 10.0, cutoff: float = ATM_CUTOFF,
                  cutoff_triple: float = ATM_CUTOFF_TRIPLE, nu: float = ARGON_ATM_NU,
                  epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA) -> Array:
  """-grad of `lj_atm_energy` in eV/A, `(N, 3)`."""
  return (lj_forces(positions, box, r_cut, epsilon=epsilon, sigma=sigma)
          + atm_forces(positions, box, cutoff=cutoff, cutoff_triple=cutoff_triple, nu=nu))


def _atm_rows(positions, neighbor, displacement_fn, cutoff, cutoff_triple, nu, block):
  """Sum over the rows of a Dense neighbor list of the triples i < j < k with j, k neighbours of i."""
  if partition.is_sparse(neighbor.format):
    raise ValueError("the ATM neighbor-list energy needs a jax-md Dense neighbor list (triples are pairs of "
                     "neighbours of one atom)")
  positions = jnp.asarray(positions)
  n = positions.shape[0]
  idx = neighbor.idx
  m = idx.shape[1]
  block = block or max(1, min(n, (1 << 21) // max(m * m, 1)))
  n_blocks = -(-n // block)
  rows = jnp.arange(n_blocks * block).reshape(n_blocks, block)
  pair_map = jax.vmap(jax.vmap(displacement_fn, (0, None)), (0, 0))  # (b, M, 3), (b, 3) -> r_j - r_i

  def one_block(i):
    ic = jnp.minimum(i, n - 1)
    nbr = idx[ic]  # (b, M)
    ok = (nbr < n) & (i[:, None] < n) & (nbr > i[:, None])  # j > i: each triple once, from its lowest index
    dr = pair_map(positions[jnp.minimum(nbr, n - 1)], positions[ic])  # (b, M, 3)
    valid = ok[:, :, None] & ok[:, None, :] & (nbr[:, :, None] < nbr[:, None, :])  # j < k
    return jnp.sum(_atm_masked(dr[:, :, None, :], dr[:, None, :, :], valid, cutoff, cutoff_triple, nu))

  return jnp.sum(jax.lax.map(one_block, rows))


def atm_energy_fn(displacement_fn, *, cutoff: float = ATM_CUTOFF, cutoff_triple: float = ATM_CUTOFF_TRIPLE,
                  nu: float = ARGON_ATM_NU, block: int | None = None):
  """Axilrod-Teller-Muto energy on a jax-md `Dense` neighbor list: `energy_fn(positions, neighbor, **kw) -> ()` eV.

  Each triple i < j < k is taken once, in the row of its lowest index i, from two neighbours j, k of i; the
  third side r_jk = r_ik - r_ij is checked against the cutoff. The list's cutoff must be >= `cutoff` (a longer
  list, e.g. lj/cut's 10 A, only adds candidates that the mask drops). Cost ~ N M^2 / 2 for M neighbours a row.
  `**kw` go to the displacement (e.g. box=... for fractional coordinates). block: rows per block (automatic).
  """
  cutoff, cutoff_triple = _check_atm_cutoffs(cutoff, cutoff_triple)

  def energy_fn(positions, neighbor, **kwargs):
    disp = functools.partial(displacement_fn, **kwargs) if kwargs else displacement_fn
    return _atm_rows(positions, neighbor, disp, cutoff, cutoff_triple, float(nu), block)
  return energy_fn


def atm_force_fn(displacement_fn, **atm_kwargs):
  """-jax.grad of `atm_energy_fn(displacement_fn, **atm_kwargs)`: `force_fn(positions, neighbor, **kw) -> (N, 3)`."""
  energy_fn = atm_energy_fn(displacement_fn, **atm_kwargs)

  def force_fn(positions, neighbor, **kwargs):
    return -jax.grad(energy_fn)(positions, neighbor, **kwargs)
  return force_fn


def lj_atm_energy_fn(displacement_fn, *, r_cut: float = 10.0, cutoff: float = ATM_CUTOFF,
                     cutoff_triple: float = ATM_CUTOFF_TRIPLE, nu: float = ARGON_ATM_NU,
                     epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA, block: int | None = None):
  """lj/cut + ATM energy on one `Dense` neighbor list of cutoff >= max(r_cut, cutoff): `energy_fn(positions,
  neighbor, **kw) -> ()` eV (LAMMPS `pair_style hybrid/overlay lj/cut r_cut atm cutoff cutoff_triple`)."""
  lj = lj_cut_energy_fn(displacement_fn, r_cut=r_cut, epsilon=epsilon, sigma=sigma)
  atm = atm_energy_fn(displacement_fn, cutoff=cutoff, cutoff_triple=cutoff_triple, nu=nu, block=block)
  return lambda positions, neighbor, **kw: lj(positions, neighbor, **kw) + atm(positions, neighbor, **kw)


def lj_atm_force_fn(displacement_fn, *, r_cut: float = 10.0, cutoff: float = ATM_CUTOFF,
                    cutoff_triple: float = ATM_CUTOFF_TRIPLE, nu: float = ARGON_ATM_NU,
                    epsilon: float = ARGON_EPSILON, sigma: float = ARGON_SIGMA, block: int | None = None):
  """lj/cut forces (closed form) plus ATM forces (-jax.grad) on one `Dense` neighbor list of cutoff >= max(r_cut,
  cutoff): `force_fn(positions (N, 3), neighbor, **kw) -> (N, 3)` eV/A. A builder for
  `simulate.run_nve_neighbor_list`."""
  lj = lj_cut_force_fn(displacement_fn, r_cut=r_cut, epsilon=epsilon, sigma=sigma)
  atm = atm_force_fn(displacement_fn, cutoff=cutoff, cutoff_triple=cutoff_triple, nu=nu, block=block)
  return lambda positions, neighbor, **kw: lj(positions, neighbor, **kw) + atm(positions, neighbor, **kw)

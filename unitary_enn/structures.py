"""Configurations: four-atom clusters, random periodic boxes, FCC crystals and the argon cross (Sec. 4.1, 4.4, 4.5).

    generate_clusters(n_configs) -> (n_configs, 4, 3)        free clusters of Sec. 4.1, no pair closer than r_min
    four_body_initial_positions(n_samples) -> (n, 4, 3)       the start of the MD of Sec. 4.4
    random_box(side) -> (n, 3)                                random sequential insertion in a periodic box (Sec. 4.5)
    fcc_lattice(n_cells, a) -> (4 n^3, 3)                     FCC sites
    cross_geometry / cross_mask / cross_atom_count / argon_cross   the 3-D cross of Sec. 4.5 (Fig. 11-13)
    unwrap_to_sites(positions, sites, box)                    periodic images next to their lattice sites
    min_pair_distance(positions, box=None) -> float           the closest pair of one configuration

Positions are float64 NumPy arrays in A (JAX where noted); boxes are cubic sides in A.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks
from unitary_enn.constants import (ARGON_FCC_LATTICE_CONSTANT, CROSS_BAR_WIDTH_CELLS, FCC_BASIS,
                                   FOUR_BODY_POSITION_STD, FOUR_BODY_POSITIONS, FOUR_BODY_R_MIN, PAPER_CROSS_CELLS)

Array = jax.Array


def generate_clusters(n_configs: int, *, n_atoms: int = 4, position_std: float = FOUR_BODY_POSITION_STD,
                      r_min: float = FOUR_BODY_R_MIN,
                      seed: int = 0, batch: int = 65536) -> np.ndarray:
  """Random free clusters (Sec. 4.1): coordinates ~ Normal(0, position_std) A, redrawn while any pair < r_min.

  Returns:
    positions `(n_configs, n_atoms, 3)` float64 in A; every pair distance is >= r_min.
  """
  n_configs = checks.positive_int("n_configs", n_configs)
  if checks.positive_int("n_atoms", n_atoms) < 2:
    raise ValueError(f"need n_atoms >= 2, got {n_atoms}")
  position_std = checks.positive("position_std", position_std)
  r_min = checks.positive("r_min", r_min, allow_zero=True)
  batch = checks.positive_int("batch", batch)
  rng = np.random.default_rng(seed)
  iu = np.triu_indices(n_atoms, k=1)
  out, have, drawn = np.empty((n_configs, n_atoms, 3)), 0, 0
  while have < n_configs:
    if drawn >= max(20 * batch, 1 << 20) and have == 0:
      raise ValueError(f"no cluster of {n_atoms} atoms with every pair >= r_min = {r_min} A among {drawn:,} draws "
                       f"of Normal(0, {position_std} A) coordinates: r_min is too large for position_std")
    cand = rng.normal(0.0, position_std, size=(batch, n_atoms, 3))
    drawn += batch
    d = np.linalg.norm(cand[:, None, :, :] - cand[:, :, None, :], axis=-1)[:, iu[0], iu[1]]
    ok = cand[np.all(d >= r_min, axis=1)]
    take = min(len(ok), n_configs - have)
    out[have:have + take] = ok[:take]
    have += take
  return out


def four_body_initial_positions(n_samples: int = 10, dtype=None) -> Array:
  """The Sec. 4.4 starting configuration repeated for each sample: `(n_samples, 4, 3)` in A."""
  n_samples = checks.positive_int("n_samples", n_samples)
  dtype = jnp.result_type(float) if dtype is None else checks.float_dtype("dtype", dtype, allow_complex=False)
  return jnp.broadcast_to(jnp.asarray(FOUR_BODY_POSITIONS, dtype), (n_samples, 4, 3))


def random_box(side: float, *, max_atoms: int = 4000, r_min: float = FOUR_BODY_R_MIN, max_trials: int = 50,
               seed=0) -> np.ndarray:
  """Random sequential insertion of atoms into a cubic periodic box (Sec. 4.5, docs/decisions.md §9).

  `max_atoms` insertions are attempted one after the other; each draws up to `max_trials` uniform
  positions and keeps the first whose minimum-image distance to every atom already placed is >= r_min.
  An insertion that fails `max_trials` times is given up and the next one starts, so dense small boxes
  end with fewer atoms (with the defaults a set of the 10 paper boxes holds ~37,200 atoms; the paper's
  two test sets held 74,506). A grid of cells of side <= r_min / sqrt(3) holds at most one atom each,
  so a trial only looks at the few cells within r_min, and the trials of one insertion are tested
  together (the first accepted one wins, which is the same distribution as trying them in turn).

  Args:
    side: box side in A (positions lie in [0, side)).
    max_atoms: number of insertions attempted.
    r_min: minimum distance between atoms (minimum image) in A.
    max_trials: trials per insertion before giving up on it.
    seed: anything `np.random.default_rng` accepts.

  Returns:
    positions `(n, 3)` float64 in A, n <= max_atoms.
  """
  side, r_min = checks.positive("side", side), checks.positive("r_min", r_min)
  if not r_min <= side / 2:
    raise ValueError(f"r_min must lie in (0, side / 2] = (0, {side / 2}] A, got {r_min}")
  max_atoms = checks.positive_int("max_atoms", max_atoms, allow_zero=True)
  max_trials = checks.positive_int("max_trials", max_trials)
  rng = np.random.default_rng(seed)
  n_cells = int(np.floor(side / (r_min / np.sqrt(3.0)))) + 1  # cell diagonal < r_min: one atom per cell
  cell = side / n_cells
  reach = int(np.ceil(r_min / cell))
  rng_offsets = range(-reach, reach + 1)
  # Cells whose nearest point to the home cell is closer than r_min.
  offsets = np.array([(a, b, c) for a in rng_offsets for b in rng_offsets for c in rng_offsets
                      if (max(abs(a) - 1, 0) ** 2 + max(abs(b) - 1, 0) ** 2 + max(abs(c) - 1, 0) ** 2)
                      * cell * cell < r_min * r_min])
  mult = np.array([n_cells * n_cells, n_cells, 1])
  grid = np.full(n_cells ** 3, -1, np.int64)
  pos = np.zeros((max_atoms + 1, 3))
  r2_min = r_min * r_min
  n = 0

  def attempt(m):
    cand = rng.uniform(0.0, side, size=(m, 3))
    home = np.minimum((cand / cell).astype(np.int64), n_cells - 1)
    idx = grid[((home[:, None, :] + offsets[None]) % n_cells) @ mult]  # (m, n_offsets); -1 = empty
    d = pos[idx] - cand[:, None, :]
    d -= side * np.round(d / side)
    ok = np.all((np.einsum("ijk,ijk->ij", d, d) >= r2_min) | (idx < 0), axis=1)
    if not ok.any():
      return None
    k = int(np.argmax(ok))
    return cand[k], int(home[k] @ mult)

  first = min(4, max_trials)  # most insertions succeed at once: test a few trials before all the rest
  for _ in range(max_atoms):
    hit = attempt(first) or (attempt(max_trials - first) if max_trials > first else None)
    if hit is None:
      continue
    pos[n], grid[hit[1]] = hit[0], n
    n += 1
  return pos[:n].copy()


def min_pair_distance(positions, box: float | None = None, chunk: int = 512) -> float:
  """Smallest distance between two atoms of `(N, 3)` positions in A (minimum image when `box` is given); inf for
  fewer than two atoms."""
  p = checks.as_array("positions", positions, numpy=True).astype(np.float64)
  checks.check_positions(p, min_atoms=0)
  box = checks.check_box(box)
  chunk = checks.positive_int("chunk", chunk)
  best = np.inf
  for s in range(0, len(p), chunk):
    d = p[None, :, :] - p[s:s + chunk, None, :]
    if box is not None:
      d -= box * np.round(d / box)
    r2 = np.einsum("ijk,ijk->ij", d, d)
    r2[np.arange(len(r2)), s + np.arange(len(r2))] = np.inf
    best = min(best, float(r2.min()) if r2.size else np.inf)
  return float(np.sqrt(best))


def cells_per_side(n_cells) -> tuple[int, int, int]:
  """(n_x, n_y, n_z) from one positive integer (a cube) or three; ValueError otherwise."""
  cells = (n_cells,) * 3 if np.ndim(n_cells) == 0 else tuple(np.asarray(n_cells).tolist())
  if len(cells) != 3 or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1
                                for c in cells):
    raise ValueError(f"n_cells must be a positive integer or three of them, got {n_cells!r}")
  return tuple(int(c) for c in cells)


def fcc_lattice(n_cells, lattice_constant: float = ARGON_FCC_LATTICE_CONSTANT) -> np.ndarray:
  """Sites of an FCC crystal of n_x x n_y x n_z cubic unit cells, 4 atoms per cell (Sec. 4.5, docs/decisions.md §10).

  Site (i, j, k, b) sits at ((i, j, k) + basis_b) a with the basis (0,0,0), (1/2,1/2,0), (1/2,0,1/2), (0,1/2,1/2);
  cells run in C order (i slowest), the basis fastest. Nearest neighbours are a / sqrt(2) apart (12 of them).

  Args:
    n_cells: an int (a cube) or three ints.
    lattice_constant: a in A (argon: 5.24411).

  Returns:
    `(4 n_x n_y n_z, 3)` float64 positions in A, inside [0, n a) per axis; the periodic box is n_cells * a.
  """
  cells = cells_per_side(n_cells)
  a = checks.positive("lattice_constant", lattice_constant)
  grid = np.stack(np.meshgrid(*(np.arange(c) for c in cells), indexing="ij"), axis=-1).reshape(-1, 1, 3)
  return ((grid + np.asarray(FCC_BASIS)[None]).reshape(-1, 3) * a).astype(np.float64)


def _cross_args(n_cells, bar_width_cells) -> tuple[int, int]:
  n = cells_per_side(n_cells)
  if len(set(n)) != 1:
    raise ValueError(f"the cross is cut from a cubic crystal: n_cells must be one integer, got {n_cells!r}")
  k = bar_width_cells
  if not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 1 <= k < n[0]):
    raise ValueError(f"bar_width_cells must be an integer number of unit cells in 1..n_cells - 1 = {n[0] - 1} (so "
                     f"that the bar faces fall midway between lattice planes, inside the crystal), got "
                     f"{bar_width_cells!r}")
  return n[0], int(k)


def cross_geometry(box: float, n_cells: int, bar_width_cells: int = CROSS_BAR_WIDTH_CELLS):
  """Centre and bar width of the 3-D cross cut from a cubic crystal of `n_cells`^3 cells in a box of side `box`.

  The three bars run along x, y, z through the centre and are `bar_width_cells` unit cells wide (a = box /
  n_cells). The centre is the box centre moved by a / 4 along each axis, midway between two atomic planes, so
  that every bar face lies a / 4 from the nearest plane: the cut is symmetric, and thermal displacements
  (~0.1 A at 60 K) cannot move atoms across it, so the count is exact (`cross_atom_count`).

  Returns:
    (centre `(3,)` in A, bar width in A).
  """
  n, k = _cross_args(n_cells, bar_width_cells)
  box = checks.positive("box", box)
  a = box / n
  return np.full(3, 0.5 * box + 0.25 * a), k * a


def cross_mask(positions, centre, bar_width: float) -> np.ndarray:
  """Atoms inside the union of three orthogonal square bars of side `bar_width` through `centre`.

  The bar along x holds |y - c_y| < w/2 and |z - c_z| < w/2 (any x); an atom is in the cross when at least two
  of its three coordinates are within w/2 of the centre.

  Args:
    positions: `(N, 3)` A.  centre: `(3,)` A.  bar_width: w in A.

  Returns:
    `(N,)` bool.
  """
  p = checks.as_array("positions", positions, numpy=True).astype(np.float64)
  checks.check_shape("positions", p, (None, 3))
  checks.check_finite("positions", p)
  c = checks.as_array("centre", centre, numpy=True).astype(np.float64)
  checks.check_finite("centre", c)
  checks.check_shape("centre", c, (3,))
  w = checks.positive("bar_width", bar_width)
  return np.sum(np.abs(p - c) < 0.5 * w, axis=1) >= 2


def cross_atom_count(n_cells: int = PAPER_CROSS_CELLS, bar_width_cells: int = CROSS_BAR_WIDTH_CELLS) -> int:
  """Atoms in the cross of `cross_geometry`: 12 k^2 n - 8 k^3 for n^3 cells and bars k cells wide.

  Each bar holds (2k)^2 columns of the a/2 grid with n atoms each (4 k^2 n); the three bars share the central
  cube of (2k)^3 grid points, half of them FCC sites (4 k^3), counted three times: 3 * 4 k^2 n - 2 * 4 k^3.
  The paper's 50^3 crystal with k = 7 gives 26,656 (the paper reports 26,679 for its own cut).
  """
  n, k = _cross_args(n_cells, bar_width_cells)
  return 12 * k * k * n - 8 * k ** 3


def argon_cross(n_cells: int = PAPER_CROSS_CELLS, bar_width_cells: int = CROSS_BAR_WIDTH_CELLS,
                lattice_constant: float = ARGON_FCC_LATTICE_CONSTANT) -> np.ndarray:
  """The cross cut from a perfect FCC crystal: `(cross_atom_count(n_cells, bar_width_cells), 3)` float64, A."""
  positions = fcc_lattice(n_cells, lattice_constant)
  n, _ = _cross_args(n_cells, bar_width_cells)
  centre, width = cross_geometry(n * float(lattice_constant), n, bar_width_cells)
  return positions[cross_mask(positions, centre, width)]


def unwrap_to_sites(positions, sites, box: float) -> np.ndarray:
  """Each atom's periodic image nearest its lattice site: sites + minimum_image(positions - sites), `(N, 3)` A.

  A crystal thermalized in a periodic box has atoms of the faces wrapped to the opposite side; cutting a
  free-space piece needs them back beside their neighbours.
  """
  p = checks.as_array("positions", positions, numpy=True).astype(np.float64)
  s = checks.as_array("sites", sites, numpy=True).astype(np.float64)
  checks.check_shape("positions", p, (None, 3))
  checks.check_shape("sites", s, p.shape)
  checks.check_finite("positions", p)
  checks.check_finite("sites", s)
  box = checks.positive("box", box)
  d = p - s
  return s + d - box * np.round(d / box)

"""Spaces and neighbor lists: minimum image, the pairs of a jax-md list, and ONE checked neighbor-list manager.

Every neighbor list of the package goes through `NeighborManager` (jax-md's `partition.neighbor_list` underneath,
as its docstring prescribes): allocated outside jit with a capacity multiplier, updated inside jit, checked after
every jitted call or chunk (`neighbor_error`: overflow, or cells smaller than the cutoff after the box shrank),
and reallocated with more capacity when it went bad, so that no result ever comes from an overflowed list.

    minimum_image(dr, box)                           wrap displacements into a cubic periodic box
    periodic_space(box)                              jax-md's periodic space, wrapping by rounding (faster on CPU)
    neighbor_pairs(positions, neighbor, disp)        all pairs of a list as flat (i, j, r_ij, valid, once)
    neighbor_format(name)                            "dense" | "sparse" | "ordered_sparse" -> jax-md format
    NeighborManager(displacement_fn, box, r_cut)     allocate / reallocate, checked
    free_space(positions, r_cut)                     the free space and a bounded cell-list box for a cloud
    neighbor_list_model(build, r_cut=...)            `model(positions, box=None, **kw)`: a neighbor-list function
                                                     made safe to call on any configuration

Units: A. Positions `(N, 3)`; a periodic box is a cubic side (positions inside [0, box]), None is free space.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition, space

from unitary_enn import checks

Array = jax.Array

NEIGHBOR_FORMATS = ("dense", "sparse", "ordered_sparse")
_FORMATS = {"dense": partition.Dense, "sparse": partition.Sparse, "ordered_sparse": partition.OrderedSparse}


def minimum_image(dr: Array, box: float | None) -> Array:
  """Wrap displacements into [-box/2, box/2) for a cubic periodic box of side `box` (A); free space if None."""
  if box is None:
    return dr
  return dr - box * jnp.round(dr / box)


def neighbor_format(format):
  """A jax-md neighbor-list format from its name ("dense", "sparse", "ordered_sparse") or the format itself."""
  if not isinstance(format, str):
    return format
  if format not in _FORMATS:
    raise ValueError(f"format must be one of {NEIGHBOR_FORMATS} (or a jax-md format), got {format!r}")
  return _FORMATS[format]


def periodic_space(box: float):
  """jax-md's `space.periodic(box)` with the minimum image taken by rounding (`minimum_image`).

  jax-md wraps a displacement with `mod(dR + box / 2, box) - box / 2`, which XLA's CPU code does not vectorize:
  the descriptor sum took 1.13x as long with it on 4,000 and 32,000 atoms (benchmarks/RESULTS.md, "Network MD
  on one machine, second pass", item 1). Rounding is also exact for a pair that needs no image, where the mod
  form rounds dR + box / 2 to the precision of box.

  Returns:
    (displacement_fn, shift_fn): displacement_fn(Ra, Rb, perturbation=None, **unused) -> the minimum image of
    Ra - Rb, as jax-md's (`perturbation` as there); shift_fn is jax-md's.
  """
  box = checks.positive("box (A)", box)
  _, shift_fn = space.periodic(box)

  def displacement_fn(Ra, Rb, perturbation=None, **unused_kwargs):
    dR = minimum_image(Ra - Rb, box)
    return dR if perturbation is None else space.raw_transform(perturbation, dR)
  return displacement_fn, shift_fn


def pair_displacements(displacement_fn):
  """`f(r_j (P, 3), r_i (P, 3)) -> r_ij = r_j - r_i (P, 3)`: jax-md's displacement(Ra, Rb) = Ra - Rb, vmapped."""
  return jax.vmap(displacement_fn)


def row_displacements(displacement_fn):
  """`f(r_j (3, b, M), r_i (3, b)) -> r_ij (3, b, M)`: the displacements of a block of list rows, coordinates first.

  jax-md's displacement(Ra, Rb) of 3-vectors, mapped over the trailing axes; for an elementwise displacement
  (free space, `periodic_space`) the arithmetic then runs on `(b, M)`-shaped arrays with no transposes, which
  XLA's CPU code handles much faster than `(b, M, 3)` ones.
  """
  return jax.vmap(jax.vmap(displacement_fn, (1, None), 1), (1, 1), 1)


def neighbor_pairs(positions: Array, neighbor: partition.NeighborList, displacement_fn) -> tuple:
  """All pairs of a jax-md neighbor list as flat arrays (used for pair energies, forces and virials).

  Returns:
    (i, j, dr, valid, once): centre indices `(P,)`, neighbour indices `(P,)` (clipped into range), r_ij = r_j - r_i
    `(P, 3)` in A, a mask `(P,)` (False for padding and self pairs), and `once` = True when each unordered pair is
    listed once (`OrderedSparse`), so that a pair term must also be given to j; False when both (i, j) and (j, i)
    appear.
  """
  n = positions.shape[0]
  idx = neighbor.idx
  if partition.is_sparse(neighbor.format):
    i, j = idx[0], idx[1]
    once = neighbor.format is partition.OrderedSparse
  else:
    i = jnp.broadcast_to(jnp.arange(n)[:, None], idx.shape).reshape(-1)
    j = idx.reshape(-1)
    once = False
  valid = (i < n) & (j < n) & (i != j)
  ic, jc = jnp.minimum(i, n - 1), jnp.minimum(j, n - 1)
  dr = pair_displacements(displacement_fn)(positions[jc], positions[ic])
  return ic, jc, dr, valid, once


def neighbor_error(neighbor) -> str | None:
  """Why a neighbor list cannot be trusted (overflow, cells smaller than the cutoff), or None."""
  if bool(neighbor.did_buffer_overflow):
    return "overflowed"
  if bool(neighbor.cell_size_too_small):
    return "has cells smaller than the cutoff (the box shrank)"
  return None


def isolated_atoms(neighbor, n_atoms: int) -> int:
  """How many atoms have no neighbour at all in the list (cutoff plus skin): atoms that left a free cluster."""
  idx = np.asarray(neighbor.idx)
  if partition.is_sparse(neighbor.format):
    seen = np.zeros(n_atoms + 1, bool)
    ok = (idx[0] < n_atoms) & (idx[1] < n_atoms) & (idx[0] != idx[1])
    seen[idx[0][ok]] = True
    seen[idx[1][ok]] = True
    return int(n_atoms - seen[:n_atoms].sum())
  return int(np.sum(np.all(idx >= n_atoms, axis=1)))


class NeighborManager:
  """A jax-md neighbor list allocated outside jit, checked, and reallocated with more capacity when it goes bad.

  Args:
    displacement_fn: jax-md displacement (`space.periodic(box)[0]`, `space.free()[0]`, or a general space).
    box: the box of the cell list (A, or a box matrix for general spaces).
    r_cut: neighbour cutoff in A.
    format: a name of `NEIGHBOR_FORMATS` or a jax-md format.
    dr_threshold: the skin in A (0 rebuilds at every update).
    capacity_multiplier: spare capacity of a new list; multiplied by 1.25 at each reallocation.
    stats: a dict whose "allocations" and "reallocations" are counted (made if None).
    label: names the list in errors.
    **neighbor_kwargs: more `partition.neighbor_list` arguments (e.g. fractional_coordinates=True).
  """

  def __init__(self, displacement_fn, box, r_cut: float, *, format="dense", dr_threshold: float = 0.0,
               capacity_multiplier: float = 1.25, stats: dict | None = None, label: str = "neighbor list",
               **neighbor_kwargs):
    self.format = neighbor_format(format)
    self.multiplier = checks.positive("capacity_multiplier", capacity_multiplier)
    self.stats = stats if stats is not None else {}
    self.stats.setdefault("allocations", 0)
    self.stats.setdefault("reallocations", 0)
    self.label = label
    self._make = lambda m: partition.neighbor_list(displacement_fn, box, float(r_cut), dr_threshold=dr_threshold,
                                                   capacity_multiplier=m, format=self.format, **neighbor_kwargs)
    self.neighbor_fn = self._make(self.multiplier)

  def allocate(self, positions, max_attempts: int = 8, **kwargs):
    """A list for `positions` (outside jit) that holds every neighbour; grows the capacity until it does.

    A scalar `box=` (a side, e.g. the barostat's current one) is handed to jax-md as a Python float: jax-md keeps
    the cell size computed from it as static pytree metadata, where an array breaks jit's cache comparisons.
    """
    if "box" in kwargs and np.ndim(kwargs["box"]) == 0:
      kwargs["box"] = float(kwargs["box"])
    for _ in range(max_attempts):
      neighbor = self.neighbor_fn.allocate(positions, **kwargs)
      self.stats["allocations"] += 1
      if neighbor_error(neighbor) is None:
        return neighbor
      self.grow()
    raise RuntimeError(f"{self.label}: could not allocate a neighbor list that holds all neighbours after "
                       f"{max_attempts} attempts (capacity multiplier {self.multiplier:.3g}); are atoms "
                       "collapsing onto each other?")

  def grow(self) -> None:
    """Raise the capacity multiplier by 1.25 for the next allocation."""
    self.multiplier = max(self.multiplier * 1.25, 1.0)
    self.neighbor_fn = self._make(self.multiplier)

  def reallocate(self, positions, **kwargs):
    """After a list went bad: a larger one for `positions`."""
    self.stats["reallocations"] += 1
    self.grow()
    return self.allocate(positions, **kwargs)


def free_space(positions, r_cut: float, *, room: float = 1.3):
  """The free space for a cloud of atoms, with a cell-list box whose size does not grow with empty space.

  jax-md's cell list needs a box even in free space. Its cell indices wrap, so any box gives the same neighbours
  (distances use the free metric); a box smaller than the cloud only puts more candidates in a cell. The box here
  is `room` times the cloud's extent plus 2 r_cut, but never more cells than about 8 per atom, so a few atoms far
  apart (one atom escaping a cluster) cost no more memory than a compact cloud.

  Returns:
    (displacement_fn, cell_box): `space.free()`'s displacement and the box side in A for the cell list.
  """
  p = checks.as_array("positions", positions, numpy=True).astype(np.float64)
  checks.check_positions(p, min_atoms=0)
  r_cut, room = checks.positive("r_cut", r_cut), checks.positive("room", room)
  extent = float(np.max(p.max(axis=0) - p.min(axis=0))) if len(p) else 0.0
  cells_cap = max(3.0, np.ceil((8.0 * len(p)) ** (1.0 / 3.0)))
  cell_box = min(room * (extent + 2.0 * r_cut), cells_cap * r_cut)
  displacement_fn, _ = space.free()
  return displacement_fn, max(cell_box, 3.0 * r_cut)


def neighbor_list_model(build: Callable, *, r_cut: float, format="dense", capacity_multiplier: float = 1.25,
                        max_reallocations: int = 4) -> Callable:
  """Wrap a neighbor-list computation so that it is safe to call on any configuration.

  Args:
    build: `build(displacement_fn) -> fn(positions, neighbor, **kwargs)`, the jax-md-style computation.
    r_cut: neighbour cutoff in A.
    format: jax-md neighbor list format (name or format).
    capacity_multiplier: spare capacity of a newly allocated list.
    max_reallocations: how often one call may reallocate before giving up with an error.

  Returns:
    `model(positions, box=None, **kwargs)`: positions `(N, 3)` in A (lists accepted); box = cubic periodic side in
    A (positions inside [0, box], box >= 2 r_cut) or None for free space. The list for a given (N, box, dtype)
    is allocated once outside jit and updated inside jit on later calls; whenever it goes bad it is reallocated
    and the call redone, so a result never comes from an overflowed list. `model.stats` counts calls and
    (re)allocations. `fn` must depend on positions only through displacements (true of descriptors and pair
    potentials), since free-space positions are used as given with a bounded, wrapping cell list.
  """
  r_cut = checks.positive("r_cut", r_cut)
  fmt = neighbor_format(format)
  cache: dict[tuple, dict[str, Any]] = {}
  stats = {"calls": 0, "allocations": 0, "reallocations": 0}

  def model(positions, box=None, **kwargs):
    positions = checks.as_array("positions", positions)
    box = checks.check_box(box, r_cut)
    checks.check_positions(positions, box, inside_box=True)
    n = positions.shape[0]
    stats["calls"] += 1
    key = (n, box, str(positions.dtype))
    entry = cache.get(key)
    if entry is None:
      if box is None:
        displacement_fn, cell_box = free_space(positions, r_cut)
      else:
        displacement_fn, cell_box = periodic_space(box)[0], box
      manager = NeighborManager(displacement_fn, cell_box, r_cut, format=fmt,
                                capacity_multiplier=capacity_multiplier, stats=stats)
      fn = build(displacement_fn)

      @jax.jit
      def step(p, neighbor, kw):
        neighbor = neighbor.update(p)
        return fn(p, neighbor, **kw), neighbor

      entry = dict(manager=manager, step=step, neighbor=manager.allocate(positions))
      cache.clear()  # keep one list: a new (N, box) usually means the old one is done with
      cache[key] = entry
    for attempt in range(max_reallocations + 1):
      out, neighbor = entry["step"](positions, entry["neighbor"], kwargs)
      if neighbor_error(neighbor) is None:
        entry["neighbor"] = neighbor
        return out
      if attempt == max_reallocations:
        break
      entry["neighbor"] = entry["manager"].reallocate(positions)
    raise RuntimeError(f"the neighbor list still overflows after {max_reallocations} reallocations "
                       f"(N = {n}, box = {box}); check the positions for a collapse of atoms")

  model.stats = stats
  return model

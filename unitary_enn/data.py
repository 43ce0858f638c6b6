"""Data sets: the four-atom clusters of Sec. 4.1, splits, equivariance-preserving standardization, npz cache;
periodic boxes with per-atom vector descriptors for Sec. 4.5 and for targets no pair model can fit.

Layout: network inputs and targets use the layer layout `(samples, 3, M)` (coordinates, then vectors).
Positions and forces use the physics layout `(samples, N, 3)`.

Many-atom targets (`BoxSet`, atoms of many periodic cubic boxes concatenated):

    many_body_dataset(target="lj_cut")    random argon boxes (Sec. 4.5), lj/cut forces (the paper's target)
    many_body_dataset(target="lj_atm")    the same boxes, lj/cut + Axilrod-Teller-Muto three-body forces
    emt_dataset(system="Cu" | "CuAu")     FCC copper, or a random Cu-Au alloy, with ASE's EMT forces and energies
                                          (needs the `ase` package, the test extra)
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import time
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks, descriptors, files
from unitary_enn.constants import (ARGON_ATM_NU, ATM_CUTOFF, ATM_CUTOFF_TRIPLE, EMT_LATTICE_CONSTANTS,
                                   FOUR_BODY_POSITION_STD, FOUR_BODY_R_MIN, PAPER_BOX_SIDES, PAPER_R_CUT,
                                   THERMAL_DISPLACEMENT_300K)
from unitary_enn.neighbors import NeighborManager, periodic_space
from unitary_enn.potentials import (atm_energy_fn, atm_force_fn, lj_cut_energy_fn, lj_cut_force_fn,
                                    lj_forces_reference)
from unitary_enn.structures import (fcc_lattice, fcc_slab, generate_clusters, random_box, random_occupancy,
                                    thermal_rattle)


def pair_indices(n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
  """(i, j) with i < j in the order (1,2), (1,3), ..., (N-1,N) of eq. 42 (0-based)."""
  i, j = np.triu_indices(n_atoms, k=1)
  return i, j


def relative_vectors(positions):
  """Inputs of eq. 42: r_ij = r_j - r_i for all pairs i < j, in the layer layout.

  Args:
    positions: `(..., N, 3)` (NumPy or JAX).

  Returns:
    `(..., 3, N (N - 1) / 2)`; for N = 4 the columns are r12, r13, r14, r23, r24, r34.
  """
  i, j = pair_indices(positions.shape[-2])
  dr = positions[..., j, :] - positions[..., i, :]
  return dr.swapaxes(-1, -2)


def permutation_matrices(n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
  """How relabelling the atoms acts on the eq. 42 inputs and on the forces, for all n_atoms! relabellings.

  Relabelling r'_a = r_{pi(a)} maps the pair vectors to signed pair vectors (r'_ij = r_{pi(j)} - r_{pi(i)}) and
  the forces to F'_a = F_{pi(a)}; both are linear in the columns of the layer layout.

  Returns:
    (p_in `(n!, P, P)`, p_out `(n!, n, n)`) with inputs' = inputs @ p_in[k], forces' = forces @ p_out[k]
    (P = n (n - 1) / 2 pairs); k = 0 is the identity.
  """
  i, j = pair_indices(n_atoms)
  column = {(a, b): c for c, (a, b) in enumerate(zip(i.tolist(), j.tolist()))}
  perms = list(itertools.permutations(range(n_atoms)))
  p_in = np.zeros((len(perms), len(i), len(i)))
  p_out = np.zeros((len(perms), n_atoms, n_atoms))
  for k, pi in enumerate(perms):
    for c, (a, b) in enumerate(zip(i.tolist(), j.tolist())):
      u, v = pi[a], pi[b]
      p_in[k, column[(min(u, v), max(u, v))], c] = 1.0 if u < v else -1.0
    for a in range(n_atoms):
      p_out[k, pi[a], a] = 1.0
  return p_in, p_out


def permutation_augmentation(n_atoms: int):
  """`augment(key, inputs, targets)`: each sample's atoms relabelled at random (a training-loop hook).

  The physics does not depend on the labels of identical atoms, but the network of Sec. 4.2 is not
  permutation-equivariant, so relabelled copies are new training data for free (n! per configuration).
  Works on standardized data too: the input scale is one number for all pair columns.
  """
  p_in, p_out = permutation_matrices(n_atoms)

  def augment(key, inputs, targets):
    k = jax.random.randint(key, (inputs.shape[0],), 0, len(p_in))
    a = jnp.asarray(p_in, inputs.dtype)[k]
    b = jnp.asarray(p_out, targets.dtype)[k]
    exact = jax.lax.Precision.HIGHEST  # a permutation must not round the data
    return (jnp.einsum("sxp,spq->sxq", inputs, a, precision=exact),
            jnp.einsum("sxa,sab->sxb", targets, b, precision=exact))

  return augment


def symmetrize_permutations(predict, n_atoms: int):
  """`predict(params, inputs)` averaged over all n_atoms! relabellings: exactly permutation-equivariant.

    predict_sym(params, x) = (1/n!) sum_k predict(params, x @ p_in[k]) @ p_out[k]^T

  The physical force field is unchanged by relabelling identical atoms, so the average keeps what the network
  learned and cancels the part of its error that depends on the labels (a group average, like the
  symmetrization used for invariant networks); it stays O(n) / U(n) equivariant, since relabelling acts on
  the vector columns only. Costs n! evaluations (24 for four atoms).
  """
  p_in, p_out = permutation_matrices(n_atoms)

  def predict_sym(params, inputs):
    a = jnp.asarray(p_in, inputs.dtype)
    b = jnp.asarray(p_out, inputs.real.dtype)
    x = jnp.einsum("...xp,kpq->k...xq", inputs, a, precision=jax.lax.Precision.HIGHEST)  # (n!, ..., rows, P)
    y = predict(params, x.reshape((-1,) + inputs.shape[1:]) if inputs.ndim > 2 else x)
    y = y.reshape(x.shape[:-1] + y.shape[-1:])
    return jnp.einsum("k...xb,kab->...xa", y, b, precision=jax.lax.Precision.HIGHEST) / len(p_in)

  return predict_sym


@dataclasses.dataclass(frozen=True)
class Scales:
  """Equivariance-preserving standardization (docs/decisions.md §4): divide, never subtract a mean.

  `inputs` holds one scale per input vector channel `(M_in,)` (or the same number repeated);
  `targets` one per output channel `(M_out,)`. Units: A for inputs, eV/A for force targets.
  """
  inputs: np.ndarray
  targets: np.ndarray

  def to_dict(self) -> dict:
    return {"inputs": np.asarray(self.inputs).tolist(), "targets": np.asarray(self.targets).tolist()}

  @classmethod
  def from_dict(cls, d: dict) -> "Scales":
    return cls(np.asarray(d["inputs"], np.float64), np.asarray(d["targets"], np.float64))


def rms_scale(x: np.ndarray, per_channel: bool = False) -> np.ndarray:
  """Standard deviation about zero over samples and coordinates of `(samples, n, M)`, -> `(M,)`.

  One scalar for all channels unless `per_channel`; never per coordinate (that would break equivariance).
  """
  x = np.asarray(x)
  if per_channel:
    s = np.sqrt(np.mean(np.abs(x) ** 2, axis=(0, 1)))
  else:
    s = np.full(x.shape[-1], np.sqrt(np.mean(np.abs(x) ** 2)))
  if np.any(s == 0):
    raise ValueError("cannot standardize: a channel is identically zero")
  return s


def fit_scales(inputs: np.ndarray, targets: np.ndarray, *, per_channel_inputs: bool = False) -> Scales:
  """Scales from the training split only."""
  return Scales(rms_scale(inputs, per_channel_inputs), rms_scale(targets, False))


@dataclasses.dataclass
class Split:
  """One split of a data set: positions `(S, N, 3)` A, inputs `(S, 3, M_in)` A, targets `(S, 3, M_out)` eV/A."""
  positions: np.ndarray
  inputs: np.ndarray
  targets: np.ndarray

  def __len__(self) -> int:
    return len(self.inputs)


def split_fractions(n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> list[slice]:
  """Contiguous slices for train / validation / test (the samples are i.i.d., so no shuffle is needed)."""
  if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
    raise ValueError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
  a = int(round(fractions[0] * n))
  b = a + int(round(fractions[1] * n))
  if a == 0 or b == a or b == n:
    raise ValueError(f"{n} samples are too few to split {fractions}")
  return [slice(0, a), slice(a, b), slice(b, n)]


def _cache_path(cache_dir: str, kind: str, params: dict) -> str:
  key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
  return os.path.join(cache_dir, f"{kind}_{key}.npz")


def _read_cache(path: str | None, log=None, keys: Sequence[str] = ()) -> dict | None:
  """The arrays of a cache file, or None when there is none; a damaged one (unreadable, or without one of `keys`,
  or with a non-finite value) is removed (and rebuilt by the caller) with a warning naming it."""
  if not path or not os.path.exists(path):
    return None
  try:
    arrays = files.load_npz(path)
    missing = [k for k in keys if k not in arrays]
    if missing:
      raise files.FileFormatError(f"{path!r} lacks the array(s) {missing}")
    bad = [k for k, a in arrays.items() if np.issubdtype(a.dtype, np.number) and not np.all(np.isfinite(a))]
    if bad:
      raise files.FileFormatError(f"{path!r} holds NaN or Inf in {bad}")
    return arrays
  except files.FileFormatError as e:
    msg = f"{e}; removing it and computing the data again"
    (log or (lambda m: warnings.warn(m, RuntimeWarning, stacklevel=3)))(msg)
    os.remove(path)
    return None


def four_body_dataset(n_configs: int, *, seed: int = 0, r_min: float = FOUR_BODY_R_MIN,
                      position_std: float = FOUR_BODY_POSITION_STD,
                      fractions: Sequence[float] = (0.6, 0.2, 0.2),
                      cache_dir: str | None = None) -> dict[str, Split]:
  """The Sec. 4.1 data set: positions, relative-vector inputs (eq. 42) and LJ force targets (eq. 43).

  Forces come from the full pair sum in float64 (no cutoff for the free cluster, docs/decisions.md §6). With `cache_dir`
  the arrays are stored once as npz, keyed by the generation parameters, and reused on the next call.

  Returns:
    {"train", "validation", "test"} -> `Split`; inputs `(S, 3, 6)`, targets `(S, 3, 4)`.
  """
  gen = dict(n_configs=int(n_configs), seed=int(seed), r_min=float(r_min), position_std=float(position_std),
             n_atoms=4, version=1)
  path = _cache_path(cache_dir, "four_body", gen) if cache_dir else None
  cached = _read_cache(path, keys=("positions", "forces"))
  if cached is not None:
    positions, forces = cached["positions"], cached["forces"]
  else:
    positions = generate_clusters(n_configs, n_atoms=4, position_std=position_std, r_min=r_min, seed=seed)
    forces = lj_forces_reference(positions)
    if path:
      files.save_npz(path, positions=positions, forces=forces)
  checks.check_finite("positions", positions)
  inputs = relative_vectors(positions)
  targets = forces.swapaxes(-1, -2)
  names = ("train", "validation", "test")
  return {name: Split(positions[s], inputs[s], targets[s])
          for name, s in zip(names, split_fractions(len(positions), fractions))}


# --- Sec. 4.5: random argon in periodic boxes, vector descriptors, lj/cut forces (docs/decisions.md §9) ------------------

TARGETS = ("lj_cut", "lj_atm")


@dataclasses.dataclass
class BoxSet:
  """Periodic boxes with per-atom descriptors and forces, atoms of all boxes concatenated.

  positions `(A, 3)` A (box b holds rows offsets[b]:offsets[b + 1], inside [0, side_b)); box_sides `(B,)` A;
  counts `(B,)` atoms per box; forces `(A, 3)` eV/A (the target's: lj/cut, docs/decisions.md §9, or another);
  descriptors: basis name -> `(A, 3, S K)` vector descriptors (eq. 51, layer layout, one block of K per
  neighbour species). Several species: `species` `(A,)` integer indices into `symbols` (chemical symbols);
  None for one species (argon). `energies` `(B,)` eV: the potential energy of each box where the target has one.
  """
  positions: np.ndarray
  box_sides: np.ndarray
  counts: np.ndarray
  forces: np.ndarray
  descriptors: dict
  species: np.ndarray | None = None
  energies: np.ndarray | None = None
  symbols: tuple | None = None

  def __len__(self) -> int:
    return len(self.positions)

  @property
  def offsets(self) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(self.counts)])

  @property
  def n_species(self) -> int:
    return len(self.symbols) if self.symbols else 1

  def boxes(self):
    """Yield (side, positions) per box."""
    o = self.offsets
    for b, side in enumerate(self.box_sides):
      yield float(side), self.positions[o[b]:o[b + 1]]

  def box_species(self):
    """Yield the `(n_b,)` species of each box (None without species)."""
    o = self.offsets
    for b in range(len(self.box_sides)):
      yield None if self.species is None else self.species[o[b]:o[b + 1]]

  @staticmethod
  def concatenate(sets: Sequence["BoxSet"]) -> "BoxSet":
    def cat(name):
      parts = [getattr(s, name) for s in sets]
      return None if any(p is None for p in parts) else np.concatenate(parts)
    symbols = {s.symbols for s in sets}
    if len(symbols) != 1:
      raise ValueError(f"cannot concatenate box sets of different species {sorted(map(str, symbols))}")
    return BoxSet(np.concatenate([s.positions for s in sets]), np.concatenate([s.box_sides for s in sets]),
                  np.concatenate([s.counts for s in sets]), np.concatenate([s.forces for s in sets]),
                  {k: np.concatenate([s.descriptors[k] for s in sets]) for k in sets[0].descriptors},
                  cat("species"), cat("energies"), sets[0].symbols)


def box_features(boxes: Sequence[tuple[float, np.ndarray]], bases: dict, *, r_cut: float = PAPER_R_CUT,
                 cutoff: str = "cosine", format="dense", potential: str | None = "lj_cut",
                 species: Sequence[np.ndarray] | None = None,
                 n_species: int | None = None) -> tuple[dict, np.ndarray | None]:
  """Vector descriptors for several bases and lj/cut forces of periodic boxes, through jax-md, in float64.

  One checked neighbor list per box (`neighbors.NeighborManager`) serves all bases and the forces.

  Args:
    boxes: (side, positions `(n, 3)` in [0, side)) pairs, A.
    bases: name -> dict(r_s=`(K,)` A, eta=A^-2).
    r_cut: descriptor cutoff and LJ truncation radius in A.
    potential: "lj_cut" for lj/cut forces, or None for descriptors only.
    species: optional `(n,)` integer species per box (descriptors in one block of K per neighbour species).
    n_species: the number of species S with `species`.

  Returns:
    (descriptors: name -> `(A, 3, S K)` float64, forces `(A, 3)` float64 eV/A or None), atoms of all boxes in
    order.
  """
  if potential not in ("lj_cut", None):
    raise ValueError(f"potential must be 'lj_cut' or None, got {potential!r}")
  if species is not None:
    if n_species is None:
      raise ValueError("box_features needs n_species with species")
    if len(species) != len(boxes):
      raise ValueError(f"species lists {len(species)} boxes, boxes {len(boxes)}")
  s = n_species if species is not None else 1
  out_d: dict[str, list] = {k: [] for k in bases}
  out_f = []
  with jax.enable_x64(True):
    builders = {}
    for b, (side, pos) in enumerate(boxes):
      side = checks.check_box(side, r_cut)
      pos = np.asarray(pos, np.float64)
      checks.check_positions(pos, side, inside_box=True, min_atoms=0)
      spec = None if species is None else jnp.asarray(np.asarray(species[b]), jnp.int32)
      if len(pos) < 2:
        for k, basis in bases.items():
          out_d[k].append(np.zeros((len(pos), 3, s * len(basis["r_s"]))))
        out_f.append(np.zeros((len(pos), 3)))
        continue
      if side not in builders:  # reuse jax-md's functions (and their compiled code) across boxes of a side
        displacement_fn, _ = periodic_space(side)
        fns = {k: descriptors.vector_descriptors_neighbor_list(displacement_fn, side, r_cut=r_cut, cutoff=cutoff,
                                                               n_species=n_species if species is not None else None,
                                                               **basis)[1] for k, basis in bases.items()}
        force_fn = lj_cut_force_fn(displacement_fn, r_cut=r_cut) if potential else None
        compute = jax.jit(lambda p, nbrs, sp, fns=fns, force_fn=force_fn: (
            {k: f(p, nbrs, species=sp) for k, f in fns.items()}, force_fn(p, nbrs) if force_fn else None))
        builders[side] = (NeighborManager(displacement_fn, side, r_cut, format=format,
                                          label=f"box of side {side} A"), compute)
      manager, compute = builders[side]
      d, f = compute(pos, manager.allocate(pos), spec)
      for k in bases:
        out_d[k].append(np.asarray(d[k]))
      out_f.append(np.asarray(f) if f is not None else None)
  forces = np.concatenate(out_f) if potential else None
  return {k: np.concatenate(v) for k, v in out_d.items()}, forces


def reference_box_energies_forces(boxes: Sequence[tuple[float, np.ndarray]], potential: str, *,
                                  r_cut: float = PAPER_R_CUT, atm_cutoff: float = ATM_CUTOFF,
                                  atm_cutoff_triple: float = ATM_CUTOFF_TRIPLE, nu: float = ARGON_ATM_NU,
                                  log=None) -> tuple[np.ndarray, np.ndarray]:
  """Energies and forces of a reference potential on periodic boxes, through jax-md neighbor lists, in float64.

  Args:
    boxes: (side, positions `(n, 3)`) pairs, A.
    potential: "lj_cut" (truncated at r_cut, no shift) or "atm" (the Axilrod-Teller-Muto term alone, LAMMPS
      `pair_style atm atm_cutoff atm_cutoff_triple` with coefficient nu in eV A^9; triples on a list of cutoff
      atm_cutoff).

  Returns:
    (energies `(B,)` eV, forces `(A, 3)` eV/A).
  """
  if potential not in ("lj_cut", "atm"):
    raise ValueError(f"potential must be 'lj_cut' or 'atm', got {potential!r}")
  list_cut = r_cut if potential == "lj_cut" else atm_cutoff
  energies, forces = [], []
  with jax.enable_x64(True):
    builders = {}
    for side, pos in boxes:
      side = checks.check_box(side, list_cut)
      pos = np.asarray(pos, np.float64)
      if len(pos) < 2:
        energies.append(0.0)
        forces.append(np.zeros((len(pos), 3)))
        continue
      if side not in builders:
        displacement_fn, _ = periodic_space(side)
        if potential == "lj_cut":
          e_fn, f_fn = lj_cut_energy_fn(displacement_fn, r_cut=r_cut), lj_cut_force_fn(displacement_fn, r_cut=r_cut)
        else:
          kw = dict(cutoff=atm_cutoff, cutoff_triple=atm_cutoff_triple, nu=nu)
          e_fn, f_fn = atm_energy_fn(displacement_fn, **kw), atm_force_fn(displacement_fn, **kw)
        compute = jax.jit(lambda p, nbrs, e_fn=e_fn, f_fn=f_fn: (e_fn(p, nbrs), f_fn(p, nbrs)))
        builders[side] = (NeighborManager(displacement_fn, side, list_cut, label=f"box of side {side} A"), compute)
      manager, compute = builders[side]
      e, f = compute(pos, manager.allocate(pos))
      energies.append(float(e))
      forces.append(np.asarray(f))
  return np.asarray(energies), np.concatenate(forces)


def _basis_key(b: dict) -> dict:
  return dict(r_s=[round(float(x), 10) for x in np.asarray(b["r_s"])],
              eta=np.round(np.asarray(b["eta"], np.float64), 10).tolist())


def _cached_descriptors(boxes, bases, gen, *, r_cut, cutoff, cache_dir, log, species=None, n_species=None,
                        kind="many_body_desc"):
  """Descriptors per basis, read from the cache (keyed by `gen` and the basis) or computed and stored (float32)."""
  desc, missing = {}, {}
  for name, b in bases.items():
    path = _cache_path(cache_dir, kind, dict(gen, cutoff=cutoff, **_basis_key(b))) if cache_dir else None
    cached = _read_cache(path, log, keys=("descriptors",))
    if cached is not None:
      desc[name] = cached["descriptors"]
    else:
      missing[name] = (b, path)
  if missing:
    d, _ = box_features(boxes, {k: v[0] for k, v in missing.items()}, r_cut=r_cut, cutoff=cutoff, potential=None,
                        species=species, n_species=n_species)
    for name, (b, path) in missing.items():
      desc[name] = d[name].astype(np.float32)
      if path:
        files.save_npz(path, descriptors=desc[name])
  return desc, bool(missing)


def random_box_set(*, seed: int, sides: Sequence[float] = PAPER_BOX_SIDES, max_atoms: int = 4000,
                   r_min: float = FOUR_BODY_R_MIN, max_trials: int = 50, bases: dict, r_cut: float = PAPER_R_CUT,
                   cutoff: str = "cosine", target: str = "lj_cut", atm_cutoff: float = ATM_CUTOFF,
                   atm_cutoff_triple: float = ATM_CUTOFF_TRIPLE, nu: float = ARGON_ATM_NU,
                   cache_dir: str | None = None, log=None) -> BoxSet:
  """One set of random periodic boxes (docs/decisions.md §9) with descriptors for `bases` and target forces; cached.

  Box b of the set is drawn with seed (seed, b). With `cache_dir`, positions and lj/cut forces are stored once per
  generation parameters, descriptors once per (generation parameters, basis), and the three-body forces of
  "lj_atm" once per (generation parameters, ATM parameters), as npz files; descriptors are stored in float32
  (their float64 values differ from it by ~1e-7 relative). Both targets share the boxes and descriptors.

  Args:
    seed: the set's seed.
    sides: box sides in A.
    max_atoms, r_min, max_trials: as in `random_box`.
    bases: name -> dict(r_s=`(K,)` A, eta=A^-2) of the vector descriptors wanted.
    r_cut, cutoff: descriptor cutoff (A) and function; r_cut is also the LJ truncation radius.
    target: "lj_cut" (the paper's, docs/decisions.md §9) or "lj_atm": lj/cut plus the Axilrod-Teller-Muto
      three-body term (`potentials.atm_energy`; LAMMPS `pair_style hybrid/overlay lj/cut r_cut atm atm_cutoff
      atm_cutoff_triple`, coefficient nu in eV A^9). atm_cutoff must be <= r_cut, so that the target depends only
      on what the descriptors see.
    log: optional callable for progress lines.

  Returns:
    A `BoxSet` with the target's forces and the energies of each box (eV).
  """
  if target not in TARGETS:
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
  if target == "lj_atm" and atm_cutoff > r_cut:
    raise ValueError(f"atm_cutoff {atm_cutoff} A exceeds the descriptor cutoff r_cut {r_cut} A: the target would "
                     "depend on atoms the descriptors do not see")
  gen = dict(seed=int(seed), sides=[float(s) for s in sides], max_atoms=int(max_atoms), r_min=float(r_min),
             max_trials=int(max_trials), r_cut=float(r_cut), potential="lj/cut argon", version=1)
  base_path = _cache_path(cache_dir, "many_body_set", gen) if cache_dir else None
  t0 = time.time()
  cached = _read_cache(base_path, log, keys=("positions", "box_sides", "counts", "forces"))
  if cached is not None:
    positions, box_sides, counts, forces = (cached[k] for k in ("positions", "box_sides", "counts", "forces"))
    energies = cached.get("energies")
    made = False
  else:
    boxes = [random_box(s, max_atoms=max_atoms, r_min=r_min, max_trials=max_trials, seed=(int(seed), b))
             for b, s in enumerate(sides)]
    positions = np.concatenate(boxes)
    box_sides = np.asarray(sides, np.float64)
    counts = np.array([len(b) for b in boxes])
    made = True
  offsets = np.concatenate([[0], np.cumsum(counts)])
  boxes = [(float(s), positions[offsets[b]:offsets[b + 1]]) for b, s in enumerate(box_sides)]
  if made:
    energies, forces = reference_box_energies_forces(boxes, "lj_cut", r_cut=r_cut)
    if base_path:
      files.save_npz(base_path, positions=positions, box_sides=box_sides, counts=counts, forces=forces,
                     energies=energies)
  desc, computed = _cached_descriptors(boxes, bases, gen, r_cut=r_cut, cutoff=cutoff, cache_dir=cache_dir, log=log)

  if target == "lj_atm":
    atm = dict(cutoff=float(atm_cutoff), cutoff_triple=float(atm_cutoff_triple), nu=float(nu))
    atm_path = _cache_path(cache_dir, "many_body_atm", dict(gen, atm=atm)) if cache_dir else None
    cached = _read_cache(atm_path, log, keys=("energies", "forces"))
    if cached is not None:
      e_atm, f_atm = cached["energies"], cached["forces"]
    else:
      e_atm, f_atm = reference_box_energies_forces(boxes, "atm", atm_cutoff=atm_cutoff,
                                                   atm_cutoff_triple=atm_cutoff_triple, nu=nu)
      computed = True
      if atm_path:
        files.save_npz(atm_path, energies=e_atm, forces=f_atm)
    forces = forces + f_atm
    energies = None if energies is None else energies + e_atm
  if log:
    log(f"box set seed {seed} ({target}): {len(positions):,} atoms in {len(counts)} boxes {counts.tolist()}, "
        f"{'made' if made or computed else 'loaded'} in {time.time() - t0:.1f} s")
  return BoxSet(positions, box_sides, counts, forces, {k: desc[k] for k in bases}, energies=energies)


def many_body_dataset(*, seed: int = 0, n_sets: Sequence[int] = (6, 2, 2), **set_kwargs) -> dict[str, BoxSet]:
  """The Sec. 4.5 data: sets of random boxes with seeds seed, seed + 1, ...; split into train / validation /
  test by whole sets (the paper: 10 sets, 6 / 2 / 2). `set_kwargs` go to `random_box_set` (target="lj_atm"
  for the three-body target).

  Returns:
    {"train", "validation", "test"} -> `BoxSet`.
  """
  if len(n_sets) != 3 or min(n_sets) < 1:
    raise ValueError(f"n_sets must be three positive numbers of sets (train, validation, test), got {n_sets}")
  sets = [random_box_set(seed=seed + k, **set_kwargs) for k in range(sum(n_sets))]
  a, b = n_sets[0], n_sets[0] + n_sets[1]
  return {"train": BoxSet.concatenate(sets[:a]), "validation": BoxSet.concatenate(sets[a:b]),
          "test": BoxSet.concatenate(sets[b:])}


# --- FCC metals from ASE's effective-medium theory (EMT): one and two species ----------------------------------------

EMT_SYSTEMS = {"Cu": ("Cu",), "CuAu": ("Cu", "Au")}
EMT_TEMPERATURES = (300.0, 600.0, 900.0, 1200.0)  # K, thermal displacements (`structures.thermal_rattle`)
EMT_STRAINS = (-0.02, 0.0, 0.02, 0.04)  # isotropic, relative to the lattice constant
EMT_ALLOY_FRACTIONS = (0.25, 0.5, 0.75)  # fraction of the second species (Au)


def metal_configurations(system: str, *, seed: int, n_cells: int = 4,
                         temperatures: Sequence[float] = EMT_TEMPERATURES, strains: Sequence[float] = EMT_STRAINS,
                         vacancies: Sequence[int] = (1, 2), slab_layers: int = 4,
                         alloy_fractions: Sequence[float] = EMT_ALLOY_FRACTIONS,
                         displacement_300k: float = THERMAL_DISPLACEMENT_300K) -> list[dict]:
  """One set of periodic FCC configurations of an EMT system, all in cubic boxes of n_cells^3 conventional cells.

  Cubic boxes because the descriptors of this package take one periodic side: isotropic strains, vacancies and
  random alloys keep the box cubic, and the surface is an FCC (001) slab in a cubic box with a vacuum gap along z
  (`structures.fcc_slab`: periodic in all three directions, the gap wider than the cutoffs of EMT, 5.9 A, and of
  the descriptors). The lattice constant is EMT's own (`constants.EMT_LATTICE_CONSTANTS`; alloys by Vegard's law,
  unrelaxed); temperatures are Gaussian thermal displacements (`structures.thermal_rattle`).

  The set holds, for a one-species system ("Cu"): bulk at every (temperature, strain); bulk with each number of
  vacancies in `vacancies` at the lowest and the third temperature; the slab at the same two. For an alloy
  ("CuAu"): random occupancy with the Au fraction cycling through `alloy_fractions`, at every (temperature,
  strain), plus vacancies and a slab as above at the middle fraction.

  Returns:
    A list of dict(side A, positions `(n, 3)` A in [0, side), species `(n,)` int32 indices into
    `EMT_SYSTEMS[system]`, label str).
  """
  if system not in EMT_SYSTEMS:
    raise ValueError(f"system must be one of {sorted(EMT_SYSTEMS)}, got {system!r}")
  symbols = EMT_SYSTEMS[system]
  a_of = [EMT_LATTICE_CONSTANTS[s] for s in symbols]
  rng_key = lambda k: (int(seed), k)
  configs = []

  def lattice_constant(fraction):
    return a_of[0] if len(symbols) == 1 else (1.0 - fraction) * a_of[0] + fraction * a_of[1]

  def occupancy(n, fraction, k):
    if len(symbols) == 1:
      return np.zeros(n, np.int32)
    return random_occupancy(n, (1.0 - fraction, fraction), seed=rng_key(1000 + k))

  def add(sites, side, fraction, temperature, label):
    k = len(configs)
    pos = thermal_rattle(sites, temperature, seed=rng_key(k), displacement_300k=displacement_300k, box=side)
    configs.append(dict(side=float(side), positions=pos, species=occupancy(len(pos), fraction, k), label=label))

  fractions = list(alloy_fractions) if len(symbols) > 1 else [0.0]
  middle = fractions[len(fractions) // 2]
  for t_i, temperature in enumerate(temperatures):
    for s_i, strain in enumerate(strains):
      fraction = fractions[(t_i + s_i) % len(fractions)]
      a = lattice_constant(fraction) * (1.0 + strain)
      add(fcc_lattice(n_cells, a), n_cells * a, fraction, temperature,
          f"bulk T={temperature:g} K strain={strain:+g}" + (f" x={fraction:g}" if len(symbols) > 1 else ""))
  a0 = lattice_constant(middle)
  low = sorted(temperatures)[:1] + sorted(temperatures)[2:3]
  rng = np.random.default_rng(rng_key(999))
  for n_vac in vacancies:
    for temperature in low:
      sites = fcc_lattice(n_cells, a0)
      keep = np.ones(len(sites), bool)
      keep[rng.choice(len(sites), size=n_vac, replace=False)] = False
      add(sites[keep], n_cells * a0, middle, temperature, f"{n_vac} vacancies T={temperature:g} K")
  if slab_layers:
    for temperature in low:
      sites, side = fcc_slab(n_cells, a0, slab_layers)
      add(sites, side, middle, temperature, f"(001) slab, {slab_layers} layers T={temperature:g} K")
  return configs


def emt_energies_forces(configs: Sequence[dict], symbols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """Energies and forces of ASE's effective-medium theory (`ase.calculators.emt.EMT`) on periodic cubic boxes.

  Args:
    configs: dict(side, positions `(n, 3)` A, species `(n,)` indices into `symbols`) per box.
    symbols: chemical symbols in species order.

  Returns:
    (energies `(B,)` eV, forces `(A, 3)` eV/A), float64, atoms of all boxes in order.
  """
  try:
    from ase import Atoms
    from ase.calculators.emt import EMT
  except ImportError as e:  # an optional dependency (the test extra)
    raise ImportError(f"the EMT data sets need ASE ({e}); pip install ase") from None
  energies, forces = [], []
  for c in configs:
    atoms = Atoms([symbols[int(s)] for s in c["species"]], positions=c["positions"], cell=[c["side"]] * 3,
                  pbc=True)
    atoms.calc = EMT()
    energies.append(float(atoms.get_potential_energy()))
    forces.append(np.asarray(atoms.get_forces(), np.float64))
  return np.asarray(energies), np.concatenate(forces)


def emt_box_set(*, system: str = "Cu", seed: int, bases: dict, r_cut: float = 6.0, cutoff: str = "cosine",
                cache_dir: str | None = None, log=None, **config_kwargs) -> BoxSet:
  """One set of EMT configurations (`metal_configurations`) with ASE's EMT forces and energies and descriptors.

  With `cache_dir`, positions, species, forces and energies are stored once per generation parameters, and
  descriptors (in blocks per neighbour species, float32) once per (generation parameters, basis), as npz files.
  Needs ASE when the set is not cached.

  Args:
    system: "Cu" or "CuAu" (`EMT_SYSTEMS`).
    seed: the set's seed.
    bases: name -> dict(r_s=`(K,)` A, eta=A^-2).
    r_cut, cutoff: the descriptor cutoff (A; every box side must be >= 2 r_cut) and function.
    **config_kwargs: passed to `metal_configurations`.

  Returns:
    A `BoxSet` with species, symbols and energies.
  """
  symbols = EMT_SYSTEMS.get(system)
  if symbols is None:
    raise ValueError(f"system must be one of {sorted(EMT_SYSTEMS)}, got {system!r}")
  gen = dict(system=system, seed=int(seed), r_cut=float(r_cut), potential="ase emt", version=1,
             **{k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in sorted(config_kwargs.items())})
  path = _cache_path(cache_dir, "emt_set", gen) if cache_dir else None
  t0 = time.time()
  cached = _read_cache(path, log, keys=("positions", "species", "box_sides", "counts", "forces", "energies"))
  made = cached is None
  if cached is not None:
    positions, species, box_sides, counts, forces, energies = (
        cached[k] for k in ("positions", "species", "box_sides", "counts", "forces", "energies"))
  else:
    configs = metal_configurations(system, seed=seed, **config_kwargs)
    for c in configs:
      checks.check_box(c["side"], r_cut)
    energies, forces = emt_energies_forces(configs, symbols)
    positions = np.concatenate([c["positions"] for c in configs])
    species = np.concatenate([c["species"] for c in configs]).astype(np.int32)
    box_sides = np.asarray([c["side"] for c in configs])
    counts = np.asarray([len(c["positions"]) for c in configs])
    if path:
      files.save_npz(path, positions=positions, species=species, box_sides=box_sides, counts=counts, forces=forces,
                     energies=energies)
  offsets = np.concatenate([[0], np.cumsum(counts)])
  boxes = [(float(s), positions[offsets[b]:offsets[b + 1]]) for b, s in enumerate(box_sides)]
  box_species = [species[offsets[b]:offsets[b + 1]] for b in range(len(box_sides))]
  desc, computed = _cached_descriptors(boxes, bases, gen, r_cut=r_cut, cutoff=cutoff, cache_dir=cache_dir, log=log,
                                       species=box_species, n_species=len(symbols), kind="emt_desc")
  if log:
    log(f"EMT {system} set seed {seed}: {len(positions):,} atoms in {len(counts)} boxes, "
        f"{'made' if made or computed else 'loaded'} in {time.time() - t0:.1f} s")
  return BoxSet(positions, box_sides, counts, forces, {k: desc[k] for k in bases}, species=species,
                energies=energies, symbols=tuple(symbols))


def emt_dataset(*, system: str = "Cu", seed: int = 0, n_sets: Sequence[int] = (6, 2, 2),
                **set_kwargs) -> dict[str, BoxSet]:
  """EMT data: sets of `metal_configurations` with seeds seed, seed + 1, ..., split by whole sets into train /
  validation / test. `set_kwargs` go to `emt_box_set`.

  Returns:
    {"train", "validation", "test"} -> `BoxSet`.
  """
  if len(n_sets) != 3 or min(n_sets) < 1:
    raise ValueError(f"n_sets must be three positive numbers of sets (train, validation, test), got {n_sets}")
  sets = [emt_box_set(system=system, seed=seed + k, **set_kwargs) for k in range(sum(n_sets))]
  a, b = n_sets[0], n_sets[0] + n_sets[1]
  return {"train": BoxSet.concatenate(sets[:a]), "validation": BoxSet.concatenate(sets[a:b]),
          "test": BoxSet.concatenate(sets[b:])}

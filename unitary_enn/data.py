"""Data sets: the four-atom clusters of Sec. 4.1, splits, equivariance-preserving standardization, npz cache.

Layout: network inputs and targets use the layer layout `(samples, 3, M)` (coordinates, then vectors).
Positions and forces use the physics layout `(samples, N, 3)`.
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
from jax_md import space

from unitary_enn import checks, descriptors, files
from unitary_enn.constants import FOUR_BODY_POSITION_STD, FOUR_BODY_R_MIN, PAPER_BOX_SIDES, PAPER_R_CUT
from unitary_enn.neighbors import NeighborManager
from unitary_enn.potentials import lj_cut_force_fn, lj_forces_reference
from unitary_enn.structures import generate_clusters, random_box


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

@dataclasses.dataclass
class BoxSet:
  """Periodic boxes with per-atom descriptors and forces, atoms of all boxes concatenated.

  positions `(A, 3)` A (box b holds rows offsets[b]:offsets[b + 1], inside [0, side_b)); box_sides `(B,)` A;
  counts `(B,)` atoms per box; forces `(A, 3)` eV/A (lj/cut, docs/decisions.md §9); descriptors: basis name ->
  `(A, 3, K)` vector descriptors (eq. 51, layer layout).
  """
  positions: np.ndarray
  box_sides: np.ndarray
  counts: np.ndarray
  forces: np.ndarray
  descriptors: dict

  def __len__(self) -> int:
    return len(self.positions)

  @property
  def offsets(self) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(self.counts)])

  def boxes(self):
    """Yield (side, positions) per box."""
    o = self.offsets
    for b, side in enumerate(self.box_sides):
      yield float(side), self.positions[o[b]:o[b + 1]]

  @staticmethod
  def concatenate(sets: Sequence["BoxSet"]) -> "BoxSet":
    return BoxSet(np.concatenate([s.positions for s in sets]), np.concatenate([s.box_sides for s in sets]),
                  np.concatenate([s.counts for s in sets]), np.concatenate([s.forces for s in sets]),
                  {k: np.concatenate([s.descriptors[k] for s in sets]) for k in sets[0].descriptors})


def box_features(boxes: Sequence[tuple[float, np.ndarray]], bases: dict, *, r_cut: float = PAPER_R_CUT,
                 cutoff: str = "cosine", format="dense") -> tuple[dict, np.ndarray]:
  """Vector descriptors for several bases and lj/cut forces of periodic boxes, through jax-md, in float64.

  One checked neighbor list per box (`neighbors.NeighborManager`) serves all bases and the forces.

  Args:
    boxes: (side, positions `(n, 3)` in [0, side)) pairs, A.
    bases: name -> dict(r_s=`(K,)` A, eta=A^-2).
    r_cut: descriptor cutoff and LJ truncation radius in A.

  Returns:
    (descriptors: name -> `(A, 3, K)` float64, forces `(A, 3)` float64 eV/A), atoms of all boxes in order.
  """
  out_d: dict[str, list] = {k: [] for k in bases}
  out_f = []
  with jax.enable_x64(True):
    builders = {}
    for side, pos in boxes:
      side = checks.check_box(side, r_cut)
      pos = np.asarray(pos, np.float64)
      checks.check_positions(pos, side, inside_box=True, min_atoms=0)
      if len(pos) < 2:
        for k, b in bases.items():
          out_d[k].append(np.zeros((len(pos), 3, len(b["r_s"]))))
        out_f.append(np.zeros((len(pos), 3)))
        continue
      if side not in builders:  # reuse jax-md's functions (and their compiled code) across boxes of a side
        displacement_fn, _ = space.periodic(side)
        fns = {k: descriptors.vector_descriptors_neighbor_list(displacement_fn, side, r_cut=r_cut, cutoff=cutoff,
                                                               **b)[1] for k, b in bases.items()}
        force_fn = lj_cut_force_fn(displacement_fn, r_cut=r_cut)
        compute = jax.jit(lambda p, nbrs, fns=fns, force_fn=force_fn: (
            {k: f(p, nbrs) for k, f in fns.items()}, force_fn(p, nbrs)))
        builders[side] = (NeighborManager(displacement_fn, side, r_cut, format=format,
                                          label=f"box of side {side} A"), compute)
      manager, compute = builders[side]
      d, f = compute(pos, manager.allocate(pos))
      for k in bases:
        out_d[k].append(np.asarray(d[k]))
      out_f.append(np.asarray(f))
  return {k: np.concatenate(v) for k, v in out_d.items()}, np.concatenate(out_f)


def _basis_key(b: dict) -> dict:
  return dict(r_s=[round(float(x), 10) for x in np.asarray(b["r_s"])],
              eta=np.round(np.asarray(b["eta"], np.float64), 10).tolist())


def random_box_set(*, seed: int, sides: Sequence[float] = PAPER_BOX_SIDES, max_atoms: int = 4000,
                   r_min: float = FOUR_BODY_R_MIN, max_trials: int = 50, bases: dict, r_cut: float = PAPER_R_CUT,
                   cutoff: str = "cosine", cache_dir: str | None = None, log=None) -> BoxSet:
  """One set of random periodic boxes (docs/decisions.md §9) with descriptors for `bases` and lj/cut forces; cached.

  Box b of the set is drawn with seed (seed, b). With `cache_dir`, positions and forces are stored once per
  generation parameters and descriptors once per (generation parameters, basis), as npz files; descriptors
  are stored in float32 (their float64 values differ from it by ~1e-7 relative).

  Args:
    seed: the set's seed.
    sides: box sides in A.
    max_atoms, r_min, max_trials: as in `random_box`.
    bases: name -> dict(r_s=`(K,)` A, eta=A^-2) of the vector descriptors wanted.
    r_cut, cutoff: descriptor cutoff (A) and function; r_cut is also the LJ truncation radius.
    log: optional callable for progress lines.

  Returns:
    A `BoxSet`.
  """
  gen = dict(seed=int(seed), sides=[float(s) for s in sides], max_atoms=int(max_atoms), r_min=float(r_min),
             max_trials=int(max_trials), r_cut=float(r_cut), potential="lj/cut argon", version=1)
  base_path = _cache_path(cache_dir, "many_body_set", gen) if cache_dir else None
  t0 = time.time()
  cached = _read_cache(base_path, log, keys=("positions", "box_sides", "counts", "forces"))
  if cached is not None:
    positions, box_sides, counts, forces = (cached[k] for k in ("positions", "box_sides", "counts", "forces"))
    made = False
  else:
    boxes = [random_box(s, max_atoms=max_atoms, r_min=r_min, max_trials=max_trials, seed=(int(seed), b))
             for b, s in enumerate(sides)]
    positions = np.concatenate(boxes)
    box_sides = np.asarray(sides, np.float64)
    counts = np.array([len(b) for b in boxes])
    forces = None
    made = True
  offsets = np.concatenate([[0], np.cumsum(counts)])
  boxes = [(float(s), positions[offsets[b]:offsets[b + 1]]) for b, s in enumerate(box_sides)]

  desc, missing = {}, {}
  for name, b in bases.items():
    path = (_cache_path(cache_dir, "many_body_desc", dict(gen, cutoff=cutoff, **_basis_key(b)))
            if cache_dir else None)
    cached = _read_cache(path, log, keys=("descriptors",))
    if cached is not None:
      desc[name] = cached["descriptors"]
    else:
      missing[name] = (b, path)
  if missing or forces is None:
    d, f_new = box_features(boxes, {k: v[0] for k, v in missing.items()}, r_cut=r_cut, cutoff=cutoff)
    forces = f_new if forces is None else forces
    for name, (b, path) in missing.items():
      desc[name] = d[name].astype(np.float32)
      if path:
        files.save_npz(path, descriptors=desc[name])
  if made and base_path:
    files.save_npz(base_path, positions=positions, box_sides=box_sides, counts=counts, forces=forces)
  if log:
    log(f"box set seed {seed}: {len(positions):,} atoms in {len(counts)} boxes {counts.tolist()}, "
        f"{'made' if made or missing else 'loaded'} in {time.time() - t0:.1f} s")
  return BoxSet(positions, box_sides, counts, forces, {k: desc[k] for k in bases})


def many_body_dataset(*, seed: int = 0, n_sets: Sequence[int] = (6, 2, 2), **set_kwargs) -> dict[str, BoxSet]:
  """The Sec. 4.5 data: sets of random boxes with seeds seed, seed + 1, ...; split into train / validation /
  test by whole sets (the paper: 10 sets, 6 / 2 / 2). `set_kwargs` go to `random_box_set`.

  Returns:
    {"train", "validation", "test"} -> `BoxSet`.
  """
  if len(n_sets) != 3 or min(n_sets) < 1:
    raise ValueError(f"n_sets must be three positive numbers of sets (train, validation, test), got {n_sets}")
  sets = [random_box_set(seed=seed + k, **set_kwargs) for k in range(sum(n_sets))]
  a, b = n_sets[0], n_sets[0] + n_sets[1]
  return {"train": BoxSet.concatenate(sets[:a]), "validation": BoxSet.concatenate(sets[a:b]),
          "test": BoxSet.concatenate(sets[b:])}

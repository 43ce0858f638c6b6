"""Data sets: the four-atom clusters of Sec. 4.1, splits, equivariance-preserving standardization, npz cache.

Layout: network inputs and targets use the layer layout `(samples, 3, M)` (coordinates, then vectors).
Positions and forces use the physics layout `(samples, N, 3)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Sequence

import numpy as np

from unitary_enn import checks
from unitary_enn.potentials import lj_forces_reference


def generate_clusters(n_configs: int, *, n_atoms: int = 4, position_std: float = 3.0, r_min: float = 2.8,
                      seed: int = 0, batch: int = 65536) -> np.ndarray:
  """Random free clusters (Sec. 4.1): coordinates ~ Normal(0, position_std) A, redrawn while any pair < r_min.

  Returns:
    positions `(n_configs, n_atoms, 3)` float64 in A; every pair distance is >= r_min.
  """
  if n_configs < 1 or n_atoms < 2:
    raise ValueError(f"need n_configs >= 1 and n_atoms >= 2, got {n_configs} and {n_atoms}")
  rng = np.random.default_rng(seed)
  iu = np.triu_indices(n_atoms, k=1)
  out, have = np.empty((n_configs, n_atoms, 3)), 0
  while have < n_configs:
    cand = rng.normal(0.0, position_std, size=(batch, n_atoms, 3))
    d = np.linalg.norm(cand[:, None, :, :] - cand[:, :, None, :], axis=-1)[:, iu[0], iu[1]]
    ok = cand[np.all(d >= r_min, axis=1)]
    take = min(len(ok), n_configs - have)
    out[have:have + take] = ok[:take]
    have += take
  return out


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


@dataclasses.dataclass(frozen=True)
class Scales:
  """Equivariance-preserving standardization (SPEC 4): divide, never subtract a mean.

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


def four_body_dataset(n_configs: int, *, seed: int = 0, r_min: float = 2.8, position_std: float = 3.0,
                      fractions: Sequence[float] = (0.6, 0.2, 0.2),
                      cache_dir: str | None = None) -> dict[str, Split]:
  """The Sec. 4.1 data set: positions, relative-vector inputs (eq. 42) and LJ force targets (eq. 43).

  Forces come from the full pair sum in float64 (no cutoff for the free cluster, SPEC 6). With `cache_dir`
  the arrays are stored once as npz, keyed by the generation parameters, and reused on the next call.

  Returns:
    {"train", "validation", "test"} -> `Split`; inputs `(S, 3, 6)`, targets `(S, 3, 4)`.
  """
  gen = dict(n_configs=int(n_configs), seed=int(seed), r_min=float(r_min), position_std=float(position_std),
             n_atoms=4, version=1)
  path = _cache_path(cache_dir, "four_body", gen) if cache_dir else None
  if path and os.path.exists(path):
    with np.load(path) as f:
      positions, forces = f["positions"], f["forces"]
  else:
    positions = generate_clusters(n_configs, n_atoms=4, position_std=position_std, r_min=r_min, seed=seed)
    forces = lj_forces_reference(positions)
    if path:
      os.makedirs(cache_dir, exist_ok=True)
      tmp = path + ".tmp.npz"
      np.savez(tmp, positions=positions, forces=forces)
      os.replace(tmp, path)
  checks.check_finite("positions", positions)
  inputs = relative_vectors(positions)
  targets = forces.swapaxes(-1, -2)
  names = ("train", "validation", "test")
  return {name: Split(positions[s], inputs[s], targets[s])
          for name, s in zip(names, split_fractions(len(positions), fractions))}

"""Files: training checkpoints, trained force models, results and metrics.

A workdir of a training run holds
  checkpoint.pkl   the latest training state (resume point), written atomically
  model.pkl        the best-on-validation model with what is needed to use it (`load_force_field`)
  metrics.jsonl    one JSON line per evaluation
  results.json     the headline figures of the run
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks

CHECKPOINT = "checkpoint.pkl"
MODEL = "model.pkl"
METRICS = "metrics.jsonl"
RESULTS = "results.json"


def _to_numpy(tree):
  return jax.tree.map(lambda x: np.asarray(x) if isinstance(x, (jax.Array, np.ndarray)) else x, tree)


def save_pickle(path: str, obj: Any) -> None:
  """Pickle `obj` (JAX arrays converted to NumPy) atomically: a kill mid-write leaves the old file intact."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "wb") as f:
    pickle.dump(_to_numpy(obj), f, protocol=pickle.HIGHEST_PROTOCOL)
  os.replace(tmp, path)


def load_pickle(path: str) -> Any:
  with open(path, "rb") as f:
    return pickle.load(f)


def write_json(path: str, obj: Any) -> None:
  """Write JSON atomically (NumPy scalars and arrays become plain numbers and lists)."""
  def default(o):
    if isinstance(o, (np.ndarray, jax.Array)):
      return np.asarray(o).tolist()
    if isinstance(o, np.generic):
      return o.item()
    raise TypeError(f"not JSON serializable: {type(o)}")
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, default=default)
    f.write("\n")
  os.replace(tmp, path)


def append_jsonl(path: str, record: dict) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")


def read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def package_versions() -> dict[str, str]:
  """Versions of the packages a result depends on, for results.json."""
  import importlib.metadata as md
  import platform
  out = {"python": platform.python_version()}
  for name in ("unitary_enn", "jax", "jaxlib", "jax-md", "flax", "optax", "numpy", "ml-collections"):
    try:
      out[name] = md.version(name)
    except md.PackageNotFoundError:
      out[name] = "not installed"
  return out


def save_model(workdir: str, model: dict) -> None:
  """Store a trained model: a dict with "kind" and whatever its `kind` needs to rebuild the force field."""
  if "kind" not in model:
    raise ValueError("model dict needs a 'kind'")
  save_pickle(os.path.join(workdir, MODEL), model)


def load_model(workdir: str) -> dict:
  path = os.path.join(workdir, MODEL)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no trained model in {workdir!r} (expected {MODEL}); run a training "
                            "experiment with --workdir pointing there first")
  return load_pickle(path)


_FORCE_FIELDS: dict[str, Callable[[dict], Callable]] = {}


def register_force_field(kind: str):
  """Decorator: register a builder `model dict -> forces(positions, box=None)` for a model kind."""
  def deco(builder):
    _FORCE_FIELDS[kind] = builder
    return builder
  return deco


def load_force_field(workdir: str) -> Callable:
  """The force field of a trained run: `forces(positions, box=None)`, positions `(N, 3)` A -> `(N, 3)` eV/A.

  Works for any experiment workdir that trained a force model (the four-atom model takes N = 4).
  """
  model = load_model(workdir)
  kind = model["kind"]
  if kind not in _FORCE_FIELDS:
    raise ValueError(f"model kind {kind!r} in {workdir!r} has no force field; known: {sorted(_FORCE_FIELDS)}")
  return _FORCE_FIELDS[kind](model)


@register_force_field("four_body")
def _four_body_force_field(model: dict) -> Callable:
  # One definition of the model's forces, shared with MD (`md.four_body_force_fn`, pure and grad-able).
  from unitary_enn.md import model_force_fn

  n_atoms = int(model["n_atoms"])
  _forces = jax.jit(model_force_fn(model))

  def forces(positions, box=None):
    """Predicted forces `(..., 4, 3)` in eV/A for positions `(..., 4, 3)` in A (free cluster)."""
    if box is not None:
      raise ValueError("the four-atom model is a free cluster: box must be None")
    checks.check_shape("positions", positions, (..., n_atoms, 3))
    checks.check_finite("positions", positions)
    return _forces(jnp.asarray(positions))

  return forces


@register_force_field("many_body")
def _many_body_force_field(model: dict) -> Callable:
  """Descriptor model of Sec. 4.5: positions of any N (free or in a cubic periodic box) -> forces."""
  from unitary_enn.descriptors import descriptor_model
  from unitary_enn.network import apply_uenn

  params = jax.tree.map(jnp.asarray, model["params"])
  dtype = params[0]["W"].real.dtype
  in_scale = jnp.asarray(model["scales"]["inputs"], dtype)
  out_scale = jnp.asarray(model["scales"]["targets"], dtype)
  activation = model.get("activation", "softsign")

  def apply(descriptors):  # (N, 3, K) -> (N, 3) eV/A
    y = apply_uenn(params, descriptors.astype(dtype) / in_scale, activation=activation) * out_scale
    return y[..., 0]

  # Neighbor lists are allocated per (N, box), updated inside jit, and reallocated on overflow. The sums are
  # taken in the network's dtype (displacements in the positions'), as `md.many_body_force_fn` does.
  model_fn = descriptor_model(apply, r_s=np.asarray(model["r_s"]), eta=model["eta"], r_cut=model["r_cut"],
                              cutoff=model.get("cutoff", "cosine"), dtype=dtype)

  def forces(positions, box=None):
    """Predicted forces `(N, 3)` in eV/A for positions `(N, 3)` in A.

    box: side of a cubic periodic box in A (needs box >= 2 r_cut and positions inside [0, box]), or None
    for free space.
    """
    return model_fn(positions, box)

  forces.stats = model_fn.stats
  return forces


def write_extxyz(path: str, frames, *, steps=None, dt: float | None = None, symbol: str = "Ar",
                 cell: float | None = None, append: bool = False, precision: int = 8) -> None:
  """Write frames as extended XYZ (ASE `ase.io.read(path, ":")`, OVITO), one frame after another.

  Each frame: the atom count, a comment line `Lattice="..." Properties=species:S:1:pos:R:3 step=K Time=T
  pbc="F F F"` and one line per atom `Ar x y z` (A). Free space: pbc is false; `cell` (a cubic side in A, for
  viewers) is written as the Lattice when given.

  Args:
    path: file to write.  frames: `(F, N, 3)` or `(N, 3)` positions in A.
    steps: `(F,)` MD step of each frame (default 0, 1, ...).  dt: ps per step, for Time = step * dt (ps).
    symbol: chemical symbol of every atom.  cell: optional cubic cell side in A.
    append: add to an existing file.  precision: decimals of the coordinates.
  """
  f = np.asarray(frames, np.float64)
  if f.ndim == 2:
    f = f[None]
  checks.check_shape("frames", f, (None, None, 3))
  checks.check_finite("frames", f)
  steps = np.arange(len(f)) if steps is None else np.asarray(steps)
  if steps.shape != (len(f),):
    raise ValueError(f"steps has shape {steps.shape}, expected ({len(f)},)")
  lattice = f'Lattice="{cell:g} 0 0 0 {cell:g} 0 0 0 {cell:g}" ' if cell is not None else ""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fmt = f"{symbol} %.{precision}f %.{precision}f %.{precision}f"
  with open(path, "a" if append else "w") as fh:
    for frame, step in zip(f, steps):
      time_txt = f" Time={float(step) * dt:.6f}" if dt is not None else ""
      fh.write(f"{len(frame)}\n{lattice}Properties=species:S:1:pos:R:3 step={int(step)}{time_txt} "
               'pbc="F F F"\n')
      np.savetxt(fh, frame, fmt=fmt)

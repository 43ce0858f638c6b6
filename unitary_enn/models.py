"""Trained models: a typed, versioned record, a safe file format, and the force function of each kind.

    Model(kind, params, sizes, scales, ...)          a frozen record; defaults are applied here, once
    save_model(workdir, model) / load_model(path)    `model.npz`: arrays plus JSON metadata, never a pickle
    convert_legacy(workdir)                          a `model.pkl` of unitary_enn 0.1 -> `model.npz`, reading only
                                                     arrays and plain values (python -m unitary_enn.models convert)
    four_body_force_fn(params, scales, ...)          the four-atom network of Sec. 4.2 as a pure force function
    four_body_energy_fn(params, scales, ...)         the energy of a conservative four-atom model
    model_force_fn(model, dtype=None)                the same from a four_body Model (or its workdir)
    model_energy_fn(model, dtype=None)               its energy (conservative models)
    many_body_force_fn(model, displacement_fn)       the Sec. 4.5 descriptor network on a jax-md neighbor list
    many_body_energy_fn(model, displacement_fn)      the energy of a conservative many-atom model on a list
    load_force_field(workdir)                        `forces(positions, box=None, species=None)`, checked, any kind
    load_energy_field(workdir)                       `energy(positions, box=None)`, checked, conservative models
    species_indices(model, species)                  chemical symbols or indices -> indices into `Model.species`

Kinds: "four_body" (6 relative vectors -> 4 forces, N = 4, free cluster) and "many_body" (vector descriptors of
eq. 51 -> the force on each atom, any N, free or periodic). Units: positions in A, forces in eV/A, energies in eV.

Forces: "direct" (the paper: the network's output vectors are the forces) or "conservative" (an invariant energy
from the same layers, E = sum of atomic energies for many atoms, and F = -dE/dR by `jax.grad`; `energy.py`,
docs/decisions.md §16). A conservative model's `params` is {"uenn": [...], "head": [...]}, its scales add
"energy" (s_E, eV) and "energy_offset" (e_0, eV per atom); files without a "forces" entry are direct models.

A many_body model may have several species (`Model.species`, chemical symbols in channel order; None is one
species, argon): its input is the descriptors in the layout of `descriptors.center_species_channels`, S * S * K
channels, and its force functions take the species of each atom. It may have a linear path (`Model.linear`,
coefficients c `(M_in,)` in eV/A per descriptor unit): the force is then D c + network(D), the closed-form
linear map of the descriptors (`descriptors.fit_linear_force_map`) plus a network trained on what it leaves.

The file `model.npz` holds every array of the record (parameters under `params/...`, scales, the radial basis)
and one entry `metadata`: a JSON text with the kind, sizes, activation, cutoff, dtype, format version and the
package versions that wrote it. It is read with `numpy.load(allow_pickle=False)`, so loading a model runs no
code from the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jax_md import partition

from unitary_enn import checks, energy, files, kernels, network, parallel
from unitary_enn.data import relative_vectors, symmetrize_permutations
from unitary_enn.descriptors import (center_species_channels, scalar_descriptors_neighbor_list,
                                     vector_descriptors_neighbor_list)
from unitary_enn.neighbors import neighbor_list_model
from unitary_enn.network import apply_uenn

Array = jax.Array
ForceFn = Callable[..., Array]

MODEL_FILE = "model.npz"
LEGACY_MODEL_FILE = "model.pkl"
FORMAT = "unitary_enn model"
FORMAT_VERSION = 1
KINDS = ("four_body", "many_body")


@dataclasses.dataclass(frozen=True)
class Basis:
  """The radial basis of the vector descriptors (eq. 51-52): centres r_s `(K,)` A, eta A^-2, cutoff radius A."""
  r_s: np.ndarray
  eta: float
  r_cut: float
  cutoff: str = "cosine"


@dataclasses.dataclass(frozen=True)
class Model:
  """A trained force model and everything needed to evaluate it.

  Attributes:
    kind: one of `KINDS`.
    params: the `apply_uenn` parameter list (NumPy arrays).
    sizes: vector widths of the network, input first.
    scales: {"inputs": `(M_in,)`, "targets": `(M_out,)`}: the network sees inputs / scale and predicts
      targets / scale (A and eV/A; standardization by scalars keeps equivariance).
    activation: hidden-layer activation name.
    dtype: the dtype the network was trained in ("float32" or "float64").
    n_atoms: four_body only: 4.
    symmetrize: four_body only: predict with the average over the 24 relabellings of the atoms.
    basis: many_body only: the descriptor basis.
    eps: 0 for the paper's unit vectors (eq. 9); > 0 for smooth ones in every layer (docs/decisions.md §14).
    info: free-form metadata (e.g. the training results); not used to evaluate.
    species: many_body only: chemical symbols in channel order (S of them), or None for one species. The
      network's input then has S * S * len(basis.r_s) channels (`descriptors.center_species_channels`).
    linear: many_body only: coefficients c `(sizes[0],)` in eV/A per descriptor unit of a linear path, or None.
      The force is D c + network(D / scales["inputs"]) * scales["targets"], D the (unscaled) input descriptors.

    forces: "direct" (the network predicts forces, the paper) or "conservative" (F = -grad E, `energy.py`).
    head_hidden: conservative only: hidden widths of the invariant energy head (informative; the params hold it).
    scalar_features: many_body conservative only: the scalar descriptors (eq. 34) ride along as one invariant
      feature row (Sec. 3.3) of the vector descriptors, divided by scales["feature_inputs"] `(K,)`.
  """
  kind: str
  params: Any
  sizes: tuple
  scales: dict
  activation: str = "softsign"
  dtype: str = "float32"
  n_atoms: int | None = None
  symmetrize: bool = False
  basis: Basis | None = None
  eps: float = 0.0
  info: dict = dataclasses.field(default_factory=dict)
  species: tuple | None = None
  linear: np.ndarray | None = None

  forces: str = "direct"
  head_hidden: tuple = ()
  scalar_features: bool = False

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"unknown model kind {self.kind!r}; expected one of {KINDS}")
    object.__setattr__(self, "sizes", checks.sizes("sizes", self.sizes))
    object.__setattr__(self, "params", jax.tree.map(np.asarray, self.params))
    object.__setattr__(self, "scales", {k: np.asarray(v, np.float64) for k, v in self.scales.items()})
    if self.kind == "four_body" and self.n_atoms is None:
      object.__setattr__(self, "n_atoms", 4)
    if self.kind == "many_body" and self.basis is None:
      raise ValueError("a many_body model needs its descriptor basis")
    if self.dtype not in ("float32", "float64"):
      raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
    object.__setattr__(self, "eps", checks.positive("eps", self.eps, allow_zero=True))
    if self.species is not None:
      if self.kind != "many_body":
        raise ValueError("species are for many_body models")
      species = tuple(self.species)
      if not species or not all(isinstance(x, str) and x for x in species) or len(set(species)) != len(species):
        raise ValueError(f"species must be distinct chemical symbols, got {self.species!r}")
      object.__setattr__(self, "species", species)
    if self.kind == "many_body":
      expected = self.n_species ** 2 * len(np.asarray(self.basis.r_s))
      if self.sizes[0] != expected:
        raise ValueError(f"the network takes {self.sizes[0]} input channels; {self.n_species} species and "
                         f"{len(np.asarray(self.basis.r_s))} radial centres give {expected}")
    if self.linear is not None:
      if self.kind != "many_body":
        raise ValueError("a linear path is for many_body models")
      linear = np.asarray(self.linear, np.float64)
      checks.check_shape("linear", linear, (self.sizes[0],))
      checks.check_finite("linear", linear)
      object.__setattr__(self, "linear", linear)

    if self.forces not in energy.FORCE_KINDS:
      raise ValueError(f"forces must be one of {energy.FORCE_KINDS}, got {self.forces!r}")
    object.__setattr__(self, "head_hidden", tuple(int(h) for h in self.head_hidden))
    if self.conservative:
      if not energy.is_energy_params(self.params):
        raise ValueError("a conservative model's params must be the {'uenn': [...], 'head': [...]} dict of "
                         "energy.init_energy_network")
      missing = {"inputs", "energy"} - set(self.scales)
      if missing:
        raise ValueError(f"a conservative model needs the scales {sorted(missing)}")
      object.__setattr__(self, "scales", {"energy_offset": np.zeros(()), **self.scales})
    if self.scalar_features and (self.kind != "many_body" or not self.conservative
                                 or "feature_inputs" not in self.scales):
      raise ValueError("scalar_features needs a conservative many_body model with scales['feature_inputs']")

  @property
  def conservative(self) -> bool:
    """True when forces are -grad of the model's energy."""
    return self.forces == "conservative"

  @property
  def r_cut(self) -> float:
    """The descriptor cutoff in A (many_body)."""
    return float(self.basis.r_cut)

  @property
  def n_species(self) -> int:
    """Number of species S (1 without `species`)."""
    return len(self.species) if self.species else 1


def _flatten(tree, prefix: str) -> dict[str, np.ndarray]:
  """Nested dicts and lists of arrays -> {"prefix/0/W": array, ...}."""
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      if "/" in str(k):
        raise ValueError(f"parameter names must not contain '/': {k!r}")
      out.update(_flatten(v, f"{prefix}/{k}"))
    return out
  if isinstance(tree, (list, tuple)):
    out = {}
    for k, v in enumerate(tree):
      out.update(_flatten(v, f"{prefix}/{k}"))
    return out
  return {prefix: np.asarray(tree)}


def _unflatten(flat: dict[str, np.ndarray], prefix: str):
  """Inverse of `_flatten`: integer path parts become list indices."""
  root: dict = {}
  for key, value in flat.items():
    if not key.startswith(prefix + "/"):
      continue
    parts = key[len(prefix) + 1:].split("/")
    node = root
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = value

  def listify(node):
    if not isinstance(node, dict):
      return node
    node = {k: listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
      return [node[str(i)] for i in range(len(node))]
    return node

  return listify(root)


def model_path(path: str) -> str:
  """`path` itself if it is a file, else the model file in the workdir `path`."""
  return path if os.path.isfile(path) else os.path.join(path, MODEL_FILE)


def save_model(workdir: str, model: Model) -> str:
  """Write `model` to `<workdir>/model.npz` (atomically); returns the path."""
  if not isinstance(model, Model):
    raise TypeError(f"save_model takes a Model, got {type(model).__name__}")
  arrays = _flatten(model.params, "params")
  arrays.update({f"scales/{k}": v for k, v in model.scales.items()})
  meta = dict(format=FORMAT, format_version=FORMAT_VERSION, kind=model.kind, sizes=list(model.sizes),
              activation=model.activation, dtype=model.dtype, n_atoms=model.n_atoms, symmetrize=model.symmetrize,
              eps=model.eps, info=model.info, versions=files.package_versions())
  if model.conservative:
    meta.update(forces=model.forces, head_hidden=list(model.head_hidden), scalar_features=model.scalar_features)
  if model.basis is not None:
    arrays["basis/r_s"] = np.asarray(model.basis.r_s, np.float64)
    meta["basis"] = dict(eta=float(model.basis.eta), r_cut=float(model.basis.r_cut), cutoff=model.basis.cutoff)
  if model.species is not None:
    meta["species"] = list(model.species)
  if model.linear is not None:
    arrays["linear"] = np.asarray(model.linear, np.float64)
  arrays["metadata"] = np.asarray(files.to_json(meta, indent=None))
  path = os.path.join(workdir, MODEL_FILE)
  files.save_npz(path, **arrays)
  return path


def load_model(path: str) -> Model:
  """The model saved in a workdir (or the model file itself); never unpickles.

  Raises:
    FileNotFoundError: no model there (with a hint for a workdir holding an old `model.pkl`).
    files.FileFormatError: the file is damaged, not a model, or of an unknown format version.
  """
  if isinstance(path, Model):
    return path
  file = model_path(os.fspath(path))
  if not os.path.exists(file):
    folder = path if os.path.isdir(path) else os.path.dirname(file)
    if os.path.exists(os.path.join(folder, LEGACY_MODEL_FILE)):
      raise FileNotFoundError(
          f"{folder!r} holds a model written by unitary_enn 0.1 ({LEGACY_MODEL_FILE}, a pickle), which is never "
          "loaded implicitly because unpickling a file can run its code. If you trust it, convert it once with "
          f"`python -m unitary_enn.models convert {folder}`")
    raise FileNotFoundError(f"no trained model at {path!r} (expected {MODEL_FILE}); run a training experiment "
                            "with --workdir pointing there first")
  arrays = files.load_npz(file)
  if "metadata" not in arrays:
    raise files.FileFormatError(f"{file!r} is an npz file but not a unitary_enn model (no metadata entry)")
  try:
    meta = json.loads(str(arrays["metadata"]))
  except json.JSONDecodeError as e:
    raise files.FileFormatError(f"{file!r}: its metadata is not valid JSON ({e}); the file is damaged") from None
  if meta.get("format") != FORMAT:
    raise files.FileFormatError(f"{file!r} is not a unitary_enn model (format {meta.get('format')!r})")
  version = meta.get("format_version")
  if version != FORMAT_VERSION:
    raise files.FileFormatError(
        f"{file!r} has model format version {version!r}; this unitary_enn reads version {FORMAT_VERSION}: "
        "use the unitary_enn release that wrote it, or a newer one")
  try:
    basis = None
    if "basis" in meta:
      basis = Basis(arrays["basis/r_s"], meta["basis"]["eta"], meta["basis"]["r_cut"], meta["basis"]["cutoff"])
    scales = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("scales/")}
    return Model(kind=meta["kind"], params=_unflatten(arrays, "params"), sizes=tuple(meta["sizes"]), scales=scales,
                 activation=meta["activation"], dtype=meta["dtype"], n_atoms=meta.get("n_atoms"),
                 symmetrize=bool(meta.get("symmetrize", False)), basis=basis, eps=float(meta.get("eps", 0.0)),
                 info=meta.get("info", {}), species=meta.get("species"), linear=arrays.get("linear"),
                 forces=meta.get("forces", "direct"), head_hidden=tuple(meta.get("head_hidden", ())),
                 scalar_features=bool(meta.get("scalar_features", False)))
  except (KeyError, TypeError, ValueError) as e:
    raise files.FileFormatError(f"{file!r}: incomplete or inconsistent model ({type(e).__name__}: {e})") from None


def from_legacy_dict(d: dict) -> Model:
  """A Model from the dict that unitary_enn 0.1 pickled (its defaults applied: softsign, cosine, no symmetrize)."""
  kind = d.get("kind")
  basis = None
  if kind == "many_body":
    basis = Basis(np.asarray(d["r_s"], np.float64), float(d["eta"]), float(d["r_cut"]), d.get("cutoff", "cosine"))
  return Model(kind=kind, params=d["params"], sizes=tuple(d["sizes"]), scales=dict(d["scales"]),
               activation=d.get("activation", "softsign"), dtype=d.get("dtype", "float32"),
               n_atoms=d.get("n_atoms"), symmetrize=bool(d.get("symmetrize", False)), basis=basis)


class _ArraysOnlyUnpickler(pickle.Unpickler):
  """Unpickles NumPy arrays, dtypes and plain containers only; any other class or function is refused."""
  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "ndarray"),
              ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
              ("numpy", "dtype"), ("builtins", "complex"), ("_codecs", "encode")}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a model file holds only arrays and numbers")


def convert_legacy(workdir: str) -> str:
  """Convert `<workdir>/model.pkl` (unitary_enn 0.1) to `<workdir>/model.npz`; returns the new path.

  The pickle is read with an unpickler that accepts only NumPy arrays and plain values, so a crafted file fails
  with an UnpicklingError instead of running code. The old file is left in place.
  """
  src = os.path.join(workdir, LEGACY_MODEL_FILE)
  if not os.path.exists(src):
    raise FileNotFoundError(f"no {LEGACY_MODEL_FILE} in {workdir!r}")
  try:
    with open(src, "rb") as f:
      d = _ArraysOnlyUnpickler(f).load()
  except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
    raise files.FileFormatError(f"cannot convert {src!r}: {type(e).__name__}: {e}") from None
  if not isinstance(d, dict) or d.get("kind") not in KINDS:
    raise files.FileFormatError(f"{src!r} is not a unitary_enn 0.1 model (kind {d.get('kind') if isinstance(d, dict) else None!r})")
  return save_model(workdir, from_legacy_dict(d))


# --- Force functions ------------------------------------------------------------------------------------


def _cast_params(params, dtype):
  """(params as JAX arrays in `dtype`, the dtype); dtype None keeps the params' float dtype."""
  params = jax.tree.map(jnp.asarray, params)
  if dtype is None:
    return params, jnp.finfo(jax.tree.leaves(params)[0].dtype).dtype
  dtype = jnp.dtype(dtype)
  return jax.tree.map(lambda p: p.astype(dtype), params), dtype


def _getter(scales):
  return (lambda name: getattr(scales, name)) if hasattr(scales, "inputs") else (lambda name: scales[name])


def four_body_energy_fn(params, scales, activation: str | Callable = "softsign", *, dtype=None,
                        symmetrize: bool = False, eps: float = 0.0, precision=None) -> Callable:
  """The energy of a conservative four-atom model: `energy_fn(positions)`, `(..., 4, 3)` A -> `(...)` eV.

  E = s_E E_std(r_ij / s_in) + 4 e_0 (`energy.four_body_energy_of_positions`): the UENN on the six relative vectors
  (eq. 42), the Gram invariants of its output vectors and a scalar head (Sec. 3.6). Translation, rotation and
  reflection invariant; with `symmetrize`, averaged over the 24 relabellings (permutation invariant).

  Args:
    params: {"uenn": [...], "head": [...]} (`energy.init_energy_network`); arrays or tracers.
    scales: {"inputs": `(6,)` A, "energy": eV, "energy_offset": eV per atom (default 0)}.
    activation, dtype, symmetrize, eps, precision: as in `four_body_force_fn`.
  """
  params, dtype = _cast_params(params, dtype)
  get = _getter(scales)
  try:
    offset = get("energy_offset")
  except (KeyError, AttributeError):
    offset = 0.0
  in_scale = jnp.asarray(get("inputs"), dtype).reshape(-1)[0]  # one scalar for all pairs (docs/decisions.md §4)
  inner = energy.four_body_energy_of_positions(params, in_scale, jnp.asarray(get("energy"), dtype),
                                               jnp.asarray(offset, dtype), activation=activation, eps=eps,
                                               precision=precision, symmetrize=symmetrize)

  def energy_fn(positions: Array, **unused_kwargs) -> Array:
    positions = checks.as_array("positions", positions)  # complex positions: a TypeError, not a dropped Im part
    checks.check_shape("positions", positions, (..., 4, 3))
    return inner(positions.astype(dtype))

  return energy_fn


def conservative_force_fn(energy_fn: Callable) -> ForceFn:
  """`force_fn(positions, **kwargs) = -d energy_fn / d positions`, for energies of one or many configurations
  (`(..., N, 3)` -> `(...)`: every leading index is an independent configuration)."""
  def force_fn(positions: Array, **kwargs) -> Array:
    return -jax.grad(lambda p: jnp.sum(energy_fn(p, **kwargs)))(positions)
  return force_fn


def four_body_force_fn(params, scales, activation: str | Callable = "softsign", *,
                       dtype=None, symmetrize: bool = False, eps: float = 0.0, precision=None) -> ForceFn:
  """The four-atom network of Sec. 4.2 as a force function `positions -> forces` (eq. 42-43).

  The inputs are the six relative vectors r_ij = r_j - r_i (eq. 42, `data.relative_vectors`) divided by the
  input scale; the four output vectors times the target scale are the forces F1..F4. Being built from
  relative vectors and scalar scales, the function is translation invariant and O(3) equivariant.
  Conservative parameters ({"uenn", "head"}, `energy.init_energy_network`) give F = -grad of
  `four_body_energy_fn` instead (scales then need "energy").

  Args:
    params: the `apply_uenn` parameter list (NumPy or JAX arrays, or tracers: the result is differentiable
      with respect to them when this builder is called inside the differentiated function).
    scales: {"inputs": `(6,)` A, "targets": `(4,)` eV/A} (a dict, `Model.scales` or `data.Scales`).
    activation: hidden-layer activation, as in training.
    dtype: the float dtype to evaluate in (params and scales are cast); None keeps the params' dtype.
    symmetrize: average the network over the 24 relabellings of the atoms (`data.symmetrize_permutations`),
      as a model trained with `symmetrize=True` predicts (a conservative model averages its energy).
    eps: smooth unit vectors (`network.apply_uenn`), as the model was trained.
    precision: of the network's products (`layers.PRECISIONS`; default full float32).

  Returns:
    `force_fn(positions)`: `(..., 4, 3)` in A -> `(..., 4, 3)` in eV/A, pure (no value checks inside).
  """
  if energy.is_energy_params(params):
    return conservative_force_fn(four_body_energy_fn(params, scales, activation, dtype=dtype, symmetrize=symmetrize,
                                                     eps=eps, precision=precision))
  params, dtype = _cast_params(params, dtype)
  get = _getter(scales)
  in_scale = jnp.asarray(get("inputs"), dtype)
  out_scale = jnp.asarray(get("targets"), dtype)

  def predict(p, x):
    return apply_uenn(p, x, activation=activation, eps=eps, precision=precision)

  if symmetrize:
    predict = symmetrize_permutations(predict, 4)

  def force_fn(positions: Array, **unused_kwargs) -> Array:
    positions = checks.as_array("positions", positions)  # complex positions: a TypeError, not a dropped Im part
    checks.check_shape("positions", positions, (..., 4, 3))
    x = relative_vectors(positions.astype(dtype)) / in_scale
    y = predict(params, x) * out_scale
    return jnp.swapaxes(y, -1, -2)

  return force_fn


def _kind(model: Model, kind: str, caller: str) -> Model:
  if model.kind != kind:
    raise ValueError(f"{caller} needs a {kind} model, got a {model.kind!r} model")
  return model


def model_force_fn(model: Model | str, *, dtype=None, precision=None) -> ForceFn:
  """`four_body_force_fn` of a trained four_body model (a `Model` or the workdir holding it).

  Args:
    model: a four_body `Model`, or its workdir / file.
    dtype: evaluation dtype; None = the dtype the model was trained in. MD in float64 passes jnp.float64.
    precision: of the network's products (`layers.PRECISIONS`; default full float32).
  """
  model = _kind(load_model(model), "four_body", "model_force_fn")
  return four_body_force_fn(model.params, model.scales, model.activation, dtype=dtype, symmetrize=model.symmetrize,
                            eps=model.eps, precision=precision)


def species_indices(model: Model, species, n_atoms: int) -> np.ndarray | None:
  """The species of N atoms as `(N,)` int32 indices into `model.species`, from chemical symbols or indices.

  Args:
    model: a many_body `Model`.
    species: `(N,)` chemical symbols (str) or integer indices into `model.species`; None for a one-species model.
    n_atoms: N.

  Returns:
    `(N,)` int32, or None for a one-species model (which ignores species; given ones must all be that species).
  """
  s_count = model.n_species
  if species is None:
    if s_count > 1:
      raise ValueError(f"this model has {s_count} species {list(model.species)}: pass species, ({n_atoms},) "
                       "chemical symbols or indices into them")
    return None
  arr = np.asarray(species)
  if arr.shape != (n_atoms,):
    raise ValueError(f"species has shape {arr.shape}, expected ({n_atoms},): one chemical symbol or index per atom")
  if arr.dtype.kind in "USO":
    known = {sym: k for k, sym in enumerate(model.species or ())}
    unknown = sorted({str(x) for x in arr.tolist()} - set(known))
    if model.species is None:
      if len({str(x) for x in arr.tolist()}) > 1:
        raise ValueError(f"this model has one species; species holds {sorted({str(x) for x in arr.tolist()})}")
      return None
    if unknown:
      raise ValueError(f"species holds {unknown}, which this model does not know; its species are "
                       f"{list(model.species)}")
    idx = np.asarray([known[str(x)] for x in arr.tolist()], np.int32)
  elif arr.dtype.kind in "iu":
    if arr.size and (arr.min() < 0 or arr.max() >= s_count):
      raise ValueError(f"species indices must lie in 0..{s_count - 1}, got values from {arr.min()} to {arr.max()}")
    idx = arr.astype(np.int32)
  else:
    raise TypeError(f"species must hold chemical symbols or integer indices, got dtype {arr.dtype}")
  return idx if s_count > 1 else None

def _conservative(model: Model, caller: str) -> Model:
  if not model.conservative:
    raise ValueError(f"{caller}: this {model.kind} model predicts forces directly (forces='direct', the paper's "
                     "network), so it has no energy; train one with forces='conservative' (e.g. "
                     f"--config=experiments/configs/{model.kind}.py:conservative)")
  return model


def model_energy_fn(model: Model | str, *, dtype=None, precision=None) -> Callable:
  """`four_body_energy_fn` of a trained conservative four_body model: `(..., 4, 3)` A -> `(...)` eV."""
  model = _conservative(_kind(load_model(model), "four_body", "model_energy_fn"), "model_energy_fn")
  return four_body_energy_fn(model.params, model.scales, model.activation, dtype=dtype, symmetrize=model.symmetrize,
                             eps=model.eps, precision=precision)


def _many_body_parts(model: Model, displacement_fn, block, descriptor_dtype, precision=None, sum_kernel="auto"):
  """(params, dtype, descriptors_of(positions, neighbor, rows=None) -> standardized `(N, 3 [+ 1], K)` network
  inputs; with `rows`, `neighbor` is those rows of a Dense list's idx and the inputs are theirs, `(R, ...)`)."""
  params = jax.tree.map(jnp.asarray, model.params)
  dtype = jnp.dtype(model.dtype)
  b = model.basis
  kw = dict(r_s=b.r_s, eta=b.eta, r_cut=b.r_cut, cutoff=b.cutoff, block=block, sum_kernel=sum_kernel)
  _, descriptor_fn = vector_descriptors_neighbor_list(displacement_fn, 3.0 * b.r_cut, **kw)
  _, scalar_fn = scalar_descriptors_neighbor_list(displacement_fn, 3.0 * b.r_cut, **kw)

  def descriptors_of(positions, neighbor, rows=None):
    kw = dict(dtype=descriptor_dtype or dtype, precision=precision, rows=rows)
    d = descriptor_fn(positions, neighbor, **kw).astype(dtype)
    d = d / jnp.asarray(model.scales["inputs"], dtype)
    if model.scalar_features:  # the scalar descriptors (eq. 34) as a feature row (Sec. 3.3)
      s = scalar_fn(positions, neighbor, **kw).astype(dtype)
      d = jnp.concatenate([d, (s / jnp.asarray(model.scales["feature_inputs"], dtype))[:, None, :]], axis=1)
    return d

  return params, dtype, descriptors_of


def _check_sum_kernel(sum_kernel: str, mesh) -> None:
  """A ValueError for an unknown `sum_kernel`, or for the Pallas kernel over a device mesh: under `shard_map` the
  kernel's interpreted form (what the CPU tests run) fails jax's varying-axes check, so the pair has never run."""
  kernels.check_sum_kernel(sum_kernel)
  if sum_kernel == "pallas" and mesh is not None:
    raise ValueError("sum_kernel='pallas' does not run over a device mesh yet; use sum_kernel='xla' with mesh, or "
                     "one device")


def many_body_energy_fn(model: Model | str, displacement_fn, *, block: int | None = None, descriptor_dtype=None,
                        precision=None, per_atom: bool = False, mesh=None, sum_kernel: str = "auto"):
  """The energy of a conservative many-atom model on a jax-md neighbor list: E = sum_i e(D_i) (Sec. 3.5-3.6).

  e(D_i) = s_E e_std(D_i / s_D) + e_0: vector descriptors (eq. 51; with `model.scalar_features`, the scalar ones of
  eq. 34 as a feature row) -> UENN -> Gram invariants of its output vectors -> scalar head. Arguments as in
  `many_body_force_fn`; with `mesh` the atomic energies of a Dense list's rows are computed over the mesh's devices
  (`parallel.shard_rows`), and -grad E sums every device's contribution to each position.

  Returns:
    `energy_fn(positions (N, 3) A, neighbor, **unused) -> ()` eV (or the atomic energies `(N,)` with per_atom),
    in the positions' dtype, pure, jit- and grad-able; `-jax.grad(energy_fn)` is `many_body_force_fn`'s force.
  """
  model = _conservative(_kind(load_model(model), "many_body", "many_body_energy_fn"), "many_body_energy_fn")
  _check_sum_kernel(sum_kernel, mesh)
  params, dtype, descriptors_of = _many_body_parts(model, displacement_fn, block, descriptor_dtype, precision,
                                                   sum_kernel)
  e_scale = jnp.asarray(model.scales["energy"], dtype)
  e_offset = jnp.asarray(model.scales["energy_offset"], dtype)

  def atomic(positions, neighbor, rows=None):
    return energy.apply_energy_network(params, descriptors_of(positions, neighbor, rows), activation=model.activation,
                                       n_features=int(model.scalar_features), eps=model.eps,
                                       precision=precision) * e_scale + e_offset

  sharded = None if mesh is None else parallel.shard_rows(lambda p, idx, rows: atomic(p, idx, rows), mesh)

  def energy_fn(positions, neighbor, **unused_kwargs):
    if sharded is None:
      e = atomic(positions, neighbor)
    elif partition.is_sparse(neighbor.format):
      raise ValueError("an energy function over a device mesh needs a Dense neighbor list")
    else:
      e = sharded(positions, neighbor.idx)
    e = e.astype(positions.dtype)
    return e if per_atom else jnp.sum(e)

  energy_fn.r_cut = model.r_cut
  return energy_fn


def many_body_force_fn(model: Model | str, displacement_fn, *, block: int | None = None, descriptor_dtype=None,
                       precision=None, mesh=None, species=None, network_block: int | str | None = "auto",
                       sum_kernel: str = "auto"):
  """The trained Sec. 4.5 force network (vector descriptors eq. 51 -> ENN -> force) on a jax-md neighbor list.

  For a conservative model the force is -grad of `many_body_energy_fn` with respect to the positions (through the
  descriptors and the displacements on the neighbor list).

  Args:
    model: a many_body `Model`, or its workdir / file.
    displacement_fn: jax-md displacement (`space.free()[0]` for the cross, `space.periodic(box)[0]` for a box).
    block: rows per block of the descriptor sum (default automatic).
    descriptor_dtype: dtype of the descriptor sums and of the linear path (default: the network's; displacements
      are always taken in the positions' dtype, so float64 MD feeds the float32 network float32 sums at float32
      cost).
    precision: of the network's products (`layers.PRECISIONS`; default full float32).
    mesh: a device mesh (`parallel.device_mesh`): the atoms' rows of a Dense neighbor list are partitioned over
      its devices (`parallel.shard_rows`), positions replicated, forces gathered; the same numbers to rounding.

    species: the default species of `force_fn`: `(N,)` integer indices into `model.species` (or symbols), so
      that `functools.partial(many_body_force_fn, model, species=...)` is a force builder for MD drivers
      (`simulate.run_nve_neighbor_list`) that call `force_fn(positions, neighbor)`.
    network_block: atoms per block of the (direct) network: "auto" (`network.network_block`: cache-sized on CPU,
      all at once on GPU/TPU), None (all at once) or a number (`network.apply_uenn`'s block). Same forces to
      rounding.
    sum_kernel: how the descriptor sums are computed: "auto" (the default: "pallas" on an NVIDIA GPU with a
      Dense list and no mesh, else "xla"; `kernels.resolve_sum_kernel`), "xla" (the Gaussians, then a product) or
      "pallas" (one GPU kernel, `unitary_enn.kernels`; Dense lists, no mesh; interpreted, and slower, on the
      CPU). Same forces to rounding.

  Returns:
    `force_fn(positions (N, 3) A, neighbor, species=<default>, **unused) -> (N, 3)` eV/A in the positions'
    dtype, pure and jit-able; species: `(N,)` integer indices into `model.species`, required when the model has
    several (`species_indices` converts symbols). With a linear path the force is D c + network. The neighbor
    list must have a cutoff >= `model.r_cut`; the caller checks it.
  """
  model = _kind(load_model(model), "many_body", "many_body_force_fn")
  _check_sum_kernel(sum_kernel, mesh)
  if model.conservative:
    energy_fn = many_body_energy_fn(model, displacement_fn, block=block, descriptor_dtype=descriptor_dtype,
                                    precision=precision, mesh=mesh, sum_kernel=sum_kernel)

    def force_fn(positions, neighbor, **unused_kwargs):
      return -jax.grad(energy_fn)(positions, neighbor)

    force_fn.r_cut = model.r_cut
    return force_fn
  params = jax.tree.map(jnp.asarray, model.params)
  dtype = jnp.dtype(model.dtype)
  in_scale = jnp.asarray(model.scales["inputs"], dtype)
  out_scale = jnp.asarray(model.scales["targets"], dtype)
  n_species = model.n_species
  b = model.basis
  _, descriptor_fn = vector_descriptors_neighbor_list(displacement_fn, 3.0 * b.r_cut, r_s=b.r_s, eta=b.eta,
                                                      r_cut=b.r_cut, cutoff=b.cutoff, block=block,
                                                      n_species=n_species if n_species > 1 else None,
                                                      sum_kernel=sum_kernel)
  sum_dtype = jnp.dtype(descriptor_dtype) if descriptor_dtype is not None else dtype
  linear = None if model.linear is None else jnp.asarray(model.linear, sum_dtype)
  network_rows = network.network_block(model.sizes) if network_block == "auto" else network_block
  default_species = species
  if default_species is not None and not isinstance(default_species, jax.Array):
    idx = species_indices(model, default_species, len(default_species))
    default_species = None if idx is None else jnp.asarray(idx)

  def row_forces(positions, neighbor, species, rows=None):
    """Forces `(R, 3)` of the centres `rows` (all atoms when None; then `neighbor` is the list, else its rows)."""
    kw = dict(dtype=sum_dtype, precision=precision, rows=rows)
    if n_species > 1:
      d = descriptor_fn(positions, neighbor, species=species, **kw)
      d = center_species_channels(d, species if rows is None else species[jnp.minimum(rows, len(species) - 1)],
                                  n_species)
    else:
      d = descriptor_fn(positions, neighbor, **kw)
    y = apply_uenn(params, d.astype(dtype) / in_scale, activation=model.activation, eps=model.eps,
                   precision=precision, block=network_rows) * out_scale
    f = y[..., 0]
    if linear is not None:
      f = f.astype(sum_dtype) + jnp.einsum("nxk,k->nx", d, linear, precision=jax.lax.Precision.HIGHEST)
    return f

  sharded = None if mesh is None else parallel.shard_rows(
      lambda p, idx, rows, sp: row_forces(p, idx, sp, rows), mesh)

  def force_fn(positions, neighbor, species=default_species, **unused_kwargs):
    if n_species > 1 and species is None:
      raise ValueError(f"this model has {n_species} species {list(model.species)}: pass species=(N,) indices")
    if sharded is None:
      return row_forces(positions, neighbor, species).astype(positions.dtype)
    if partition.is_sparse(neighbor.format):
      raise ValueError("a force function over a device mesh needs a Dense neighbor list")
    sp = jnp.zeros(positions.shape[0], jnp.int32) if species is None else species
    return sharded(positions, neighbor.idx, sp).astype(positions.dtype)

  force_fn.r_cut = model.r_cut
  return force_fn


def _four_body_checked(model: Model, fn: Callable) -> Callable:
  n_atoms = int(model.n_atoms)
  fn_jit = jax.jit(fn)

  def checked(positions, box=None):
    if box is not None:
      raise ValueError("the four-atom model is a free cluster: box must be None")
    positions = checks.as_array("positions", positions)
    checks.check_shape("positions", positions, (..., n_atoms, 3))
    checks.check_finite("positions", positions)
    return fn_jit(positions)

  return checked


def load_force_field(model: Model | str) -> Callable:
  """The force field of a trained model: `forces(positions, box=None, species=None)`, positions `(N, 3)` A ->
  `(N, 3)` eV/A.

  Works for any experiment workdir that trained a force model (or a `Model`, or a model file). The four-atom model
  takes N = 4 (also batched, `(..., 4, 3)`) in free space; a many-body model takes any N, in free space
  (box=None) or in a cubic periodic box of side `box` A (box >= 2 r_cut, positions inside [0, box]), through a
  checked neighbor list that is reallocated when it overflows. A model of several species needs `species`: `(N,)`
  chemical symbols (e.g. ["Cu", "Au", ...]) or integer indices into `Model.species`. Inputs are validated
  (shape, finiteness, species) before anything is traced. Direct or conservative models alike (then F = -grad E;
  `load_energy_field` gives E).
  """
  model = load_model(model)
  if model.kind == "four_body":
    checked4 = _four_body_checked(model, model_force_fn(model))

    def forces(positions, box=None, species=None):
      """Predicted forces `(..., 4, 3)` in eV/A for positions `(..., 4, 3)` in A (free cluster)."""
      if species is not None:
        raise ValueError("the four-atom model is argon only: species must be None")
      return checked4(positions, box)

    return forces

  checked = neighbor_list_model(lambda displacement_fn: many_body_force_fn(model, displacement_fn),
                                r_cut=model.r_cut)

  def forces(positions, box=None, species=None):
    """Predicted forces `(N, 3)` in eV/A for positions `(N, 3)` in A; box: cubic periodic side in A, or None;
    species: `(N,)` symbols or indices (models of several species)."""
    if species is None and model.n_species == 1:
      return checked(positions, box)
    checks.check_shape("positions", positions, (None, 3))
    idx = species_indices(model, species, np.shape(positions)[0])
    if idx is None:
      return checked(positions, box)
    return checked(positions, box, species=jnp.asarray(idx))

  forces.stats = checked.stats
  return forces


def load_energy_field(model: Model | str) -> Callable:
  """The potential energy of a trained conservative model: `energy(positions, box=None)` in eV.

  The counterpart of `load_force_field` (same inputs, same checks): positions `(..., 4, 3)` A -> `(...)` eV for the
  four-atom model, `(N, 3)` A -> a scalar (the sum of atomic energies) for a many-body model, in free space or a
  periodic box. `load_force_field(model)` equals -grad of it.

  Raises:
    ValueError: the model predicts forces directly (the paper's network) and has no energy.
  """
  model = _conservative(load_model(model), "load_energy_field")
  if model.kind == "four_body":
    checked4 = _four_body_checked(model, model_energy_fn(model))

    def energy_field(positions, box=None):
      """Potential energy `(...)` in eV of positions `(..., 4, 3)` in A (free cluster)."""
      return checked4(positions, box)

    return energy_field

  checked = neighbor_list_model(lambda displacement_fn: many_body_energy_fn(model, displacement_fn),
                                r_cut=model.r_cut)

  def energy_field(positions, box=None):
    """Potential energy in eV of positions `(N, 3)` in A; box: cubic periodic side in A, or None."""
    return checked(positions, box)

  energy_field.stats = checked.stats
  return energy_field


def main(argv=None) -> int:
  """`python -m unitary_enn.models convert WORKDIR...` | `show WORKDIR_OR_FILE`."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if len(argv) < 2 or argv[0] not in ("convert", "show"):
    print("usage: python -m unitary_enn.models convert WORKDIR [WORKDIR ...]   (model.pkl of 0.1 -> model.npz)\n"
          "       python -m unitary_enn.models show WORKDIR_OR_FILE", file=sys.stderr)
    return 2
  if argv[0] == "convert":
    for workdir in argv[1:]:
      print(f"wrote {convert_legacy(workdir)}")
    return 0
  m = load_model(argv[1])
  summary = dict(kind=m.kind, forces=m.forces, sizes=list(m.sizes), activation=m.activation, dtype=m.dtype,
                 n_atoms=m.n_atoms, symmetrize=m.symmetrize,
                 parameters=int(sum(np.size(p) for p in jax.tree.leaves(m.params))),
                 species=list(m.species) if m.species else None, linear_path=m.linear is not None)
  if m.conservative:
    summary["head_hidden"] = list(m.head_hidden)
  if m.basis is not None:
    summary["basis"] = dict(r_s=[float(m.basis.r_s[0]), float(m.basis.r_s[-1]), len(m.basis.r_s)], eta=m.basis.eta,
                            r_cut=m.basis.r_cut, cutoff=m.basis.cutoff)
  print(files.to_json(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main())

r"""Train a force model on your own data: any file ASE reads with forces (extended XYZ, ASE trajectories, ...).

  python -m experiments.train_forces --make_example=/tmp/cu.xyz          # a small EMT copper data set (ASE)
  python -m experiments.train_forces --data=/tmp/cu.xyz --workdir=/tmp/cu_model
  python -m experiments.train_forces --data=train.xyz --validation_data=val.xyz --test_data=test.xyz
  python -m experiments.train_forces --data=FILE --config.r_cut=6.0 --config.steps=20000
  python -m experiments.train_forces --data=/tmp/cu.xyz --config=experiments/configs/train_forces.py:conservative \
      --workdir=/tmp/cu_cons_model                                       # F = -grad E, energies too (one species)

Data: every frame of `ase.io.read(FILE, ":")` with forces (per-atom "forces" of the file, or its calculator's); one
or several species; each frame a free cluster (pbc all False) or a cubic periodic cell (pbc all True, cell a *
identity; the descriptors of this package take one periodic side, docs/decisions.md §9); energies are optional: the
direct model (the default, Sec. 4.5) predicts forces and does not use them; the conservative model
(`--config=experiments/configs/train_forces.py:conservative`) is fitted to them too (`config.energy_weight`) when
every training frame has one, and predicts energies. Frames are split into train / validation / test by
`config.split` unless --validation_data / --test_data give those sets.

Model: the many-body model of experiments/many_body.py, trained by its `train_network` with the loop of
unitary_enn/training.py: vector descriptors (eq. 51; one block per neighbour species) -> ENN -> force, with the
closed-form linear map of the descriptors as a linear path beside the network (`config.linear_path`). The basis
(cutoff, Gaussian centres and width) comes from the config, or is derived from the data's nearest-neighbour
distances where the config leaves it 0 (`derive_basis`). With `config.forces = "conservative"` (one species): an
atomic energy from the same layers, E = sum over atoms, F = -grad E (`many_body.train_conservative`, trained on
whole frames; free clusters sit in a box large enough that no image is within r_cut, `padded_sides`); the model
then conserves energy in MD and gives ASE's calculator an energy, with the per-atom offset fitted to the data's
energies.

Writes to --workdir: model.npz (`unitary_enn.load_force_field(workdir)`, `unitary_enn.calculator.UENNCalculator(
workdir)`), results.json (force RMSE per split and per species, the basis, the data), metrics.jsonl,
figures/loss.png, figures/parity.png, and checkpoint.msgpack (rerun the same command to resume).
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import app

from experiments.common import RESULTS, experiment_main, force_rmse, prepare_workdir, setup_dtype

FORCES = ("direct", "conservative")
EXAMPLE_SYSTEMS = {"Cu": ("Cu",), "CuAu": ("Cu", "Au")}


# --- Data -------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Frame:
  """One configuration: positions `(n, 3)` A (inside [0, box) when periodic), box side A or None (free),
  chemical symbols `(n,)`, forces `(n, 3)` eV/A, energy eV or None."""
  positions: object
  box: float | None
  symbols: object
  forces: object
  energy: float | None


def read_frames(path: str) -> list[Frame]:
  """Every frame of a file ASE reads (`ase.io.read(path, ":")`), checked: forces present, cell cubic or free."""
  import numpy as np
  import ase.io

  from unitary_enn.calculator import cubic_box
  if not os.path.exists(path):
    raise FileNotFoundError(f"no data file {path!r}")
  try:
    images = ase.io.read(path, ":")
  except Exception as e:  # ASE raises many kinds for an unreadable file
    raise ValueError(f"ASE cannot read {path!r} ({type(e).__name__}: {e}); give a file ase.io.read opens, e.g. "
                     "extended XYZ with a forces column") from None
  if not images:
    raise ValueError(f"{path!r} holds no frames")
  frames = []
  for k, atoms in enumerate(images):
    forces = atoms.arrays.get("forces")
    energy = None
    if atoms.calc is not None:
      results = getattr(atoms.calc, "results", {})
      if forces is None and "forces" in results:
        forces = results["forces"]
      energy = results.get("energy")
    if forces is None:
      raise ValueError(f"{path!r}, frame {k}: no forces (an extended XYZ file needs a 'forces' per-atom column "
                       "or forces= in the calculator results)")
    forces = np.asarray(forces, np.float64)
    if forces.shape != (len(atoms), 3) or not np.all(np.isfinite(forces)):
      raise ValueError(f"{path!r}, frame {k}: forces must be finite, shape ({len(atoms)}, 3); got {forces.shape}")
    try:
      box = cubic_box(atoms)
    except ValueError as e:
      raise ValueError(f"{path!r}, frame {k}: {e}") from None
    positions = np.asarray(atoms.get_positions(), np.float64)
    if not np.all(np.isfinite(positions)):
      raise ValueError(f"{path!r}, frame {k}: positions hold NaN or Inf")
    if box is not None:
      positions = np.mod(positions, box)
    frames.append(Frame(positions, box, np.asarray(atoms.get_chemical_symbols()), forces,
                        None if energy is None else float(energy)))
  return frames


def nearest_distances(frames, max_frames: int = 64):
  """(median nearest-neighbour distance, smallest pair distance) in A over (up to `max_frames` of) the frames."""
  import numpy as np
  nearest, smallest = [], np.inf
  step = max(1, len(frames) // max_frames)
  for f in frames[::step]:
    p = f.positions
    if len(p) < 2:
      continue
    rows = []
    for s in range(0, len(p), 512):  # rows in chunks: memory O(512 N)
      d = p[None] - p[s:s + 512, None]
      if f.box is not None:
        d -= f.box * np.round(d / f.box)
      r2 = np.einsum("ijk,ijk->ij", d, d)
      r2[np.arange(len(r2)), s + np.arange(len(r2))] = np.inf
      rows.append(np.sqrt(r2.min(axis=1)))
    r = np.concatenate(rows)
    nearest.append(r)
    smallest = min(smallest, float(r.min()))
  if not nearest:
    raise ValueError("the data hold no frame with two or more atoms")
  return float(np.median(np.concatenate(nearest))), smallest


def derive_basis(config, frames) -> dict:
  """The descriptor basis: config values, with those left 0 derived from the data.

  r_cut = 2.4 x the median nearest-neighbour distance (FCC metals: between the third and fourth shells, about
  EMT's own cutoff for copper; argon near its minimum: 9 A), at most half the smallest periodic box side; r_s from
  0.8 x the smallest pair distance (rounded down to 0.1 A) to r_cut in `n_descriptors` Gaussians; eta =
  1 / spacing^2 (neighbouring Gaussians cross near 0.78 of their peak).

  Returns:
    dict(r_cut, r_s_start, r_s_step, n_descriptors, eta, nearest_neighbour_distance, min_pair_distance,
    derived=[names of the entries derived]).
  """
  import math
  r_nn, r_min = nearest_distances(frames)
  boxes = [f.box for f in frames if f.box is not None]
  half_box = min(boxes) / 2 if boxes else math.inf
  derived = []
  r_cut = float(config.r_cut)
  if r_cut <= 0:
    r_cut = min(math.floor(24 * r_nn) / 10, math.floor(10 * half_box) / 10)
    derived.append("r_cut")
  elif r_cut > half_box:
    raise ValueError(f"config.r_cut = {r_cut} A, but the smallest periodic box of the data has side "
                     f"{2 * half_box:g} A; the minimum image needs r_cut <= side / 2 = {half_box:g} A")
  start = float(config.r_s_start)
  if start <= 0:
    start = math.floor(8 * r_min) / 10
    derived.append("r_s_start")
  n = int(config.n_descriptors)
  if n < 2:
    raise ValueError(f"config.n_descriptors must be >= 2, got {n}")
  if start >= r_cut:
    raise ValueError(f"r_s_start = {start} A must be below r_cut = {r_cut} A")
  step = (r_cut - start) / (n - 1)
  eta = float(config.eta)
  if eta <= 0:
    eta = 1.0 / step ** 2
    derived.append("eta")
  return dict(r_cut=r_cut, r_s_start=start, r_s_step=step, n_descriptors=n, eta=eta,
              nearest_neighbour_distance=r_nn, min_pair_distance=r_min, derived=derived)


def box_set(frames, symbols, basis: dict, cutoff: str, log):
  """A `data.BoxSet` of frames: descriptors (float64 sums, stored float32) in blocks per neighbour species."""
  import jax
  import numpy as np

  from unitary_enn import data, descriptors
  index = {s: k for k, s in enumerate(symbols)}
  n_species = len(symbols)
  desc = []
  t0 = time.time()
  with jax.enable_x64(True):
    for k, f in enumerate(frames):
      species = np.asarray([index[s] for s in f.symbols], np.int32)
      d = descriptors.vector_descriptors(f.positions, f.box, r_s=basis["r_s"], eta=basis["eta"],
                                         r_cut=basis["r_cut"], cutoff=cutoff,
                                         species=species if n_species > 1 else None,
                                         n_species=n_species if n_species > 1 else None)
      desc.append(np.asarray(d, np.float32))
      if log and (k + 1) % 100 == 0:
        log(f"descriptors of {k + 1} / {len(frames)} frames ({time.time() - t0:.0f} s)")
  species = np.concatenate([[index[s] for s in f.symbols] for f in frames]).astype(np.int32)
  energies = [f.energy for f in frames]
  return data.BoxSet(
      positions=np.concatenate([f.positions for f in frames]),
      box_sides=np.asarray([f.box if f.box is not None else 0.0 for f in frames]),
      counts=np.asarray([len(f.positions) for f in frames]),
      forces=np.concatenate([f.forces for f in frames]),
      descriptors={"network": np.concatenate(desc)},
      species=species if n_species > 1 else None,
      energies=None if any(e is None for e in energies) else np.asarray(energies),
      symbols=tuple(symbols))


def split_frames(config, frames, validation, test):
  """{"train", "validation", "test"} -> frames: given sets, the rest of `frames` by `config.split` (shuffled)."""
  import numpy as np
  fractions = np.asarray(config.split, np.float64)
  if fractions.shape != (3,) or np.any(fractions < 0) or fractions[0] <= 0:
    raise ValueError(f"config.split must be three fractions (train, validation, test), train > 0; got "
                     f"{tuple(config.split)}")
  fractions = fractions * np.asarray([1.0, validation is None, test is None])
  fractions /= fractions.sum()
  order = np.random.default_rng(int(config.data_seed)).permutation(len(frames))
  counts = np.floor(fractions * len(frames)).astype(int)
  for k in (1, 2):  # every set that comes from --data gets at least one frame
    if fractions[k] > 0:
      counts[k] = max(counts[k], 1)
  counts[0] = len(frames) - counts[1] - counts[2]
  if counts[0] < 1:
    raise ValueError(f"--data holds {len(frames)} frame(s): too few to split into train / validation / test by "
                     f"{tuple(config.split)}; give more frames or --validation_data and --test_data")
  cut = np.cumsum(counts)
  picked = [[frames[i] for i in order[a:b]] for a, b in zip([0, *cut[:-1]], cut)]
  return {"train": picked[0], "validation": validation if validation is not None else picked[1],
          "test": test if test is not None else picked[2]}


# --- An example data set ----------------------------------------------------------------------------------------


def write_example_data(path: str, system: str = "Cu", *, n_bulk: int = 240, n_clusters: int = 60, n_cells: int = 3,
                       seed: int = 0) -> str:
  """Write an example data set computed with ASE's EMT: periodic FCC bulk and free icosahedral clusters.

  Bulk: `n_bulk` cubic boxes of n_cells^3 conventional cells (108 atoms for 3), isotropic strains of -2, 0, +2 %,
  atoms displaced at random by 0.02-0.12 A per coordinate (thermal-like); clusters: `n_clusters` 55-atom icosahedra, displaced the
  same way, in free space. For "CuAu" a random fraction 0-50 % of the sites is gold. Extended XYZ with energy and
  forces, written by `ase.io.write`.

  Returns:
    `path`.
  """
  import numpy as np
  import ase.io
  from ase.build import bulk
  from ase.calculators.emt import EMT
  from ase.calculators.singlepoint import SinglePointCalculator
  from ase.cluster import Icosahedron

  if system not in EXAMPLE_SYSTEMS:
    raise ValueError(f"example system must be one of {sorted(EXAMPLE_SYSTEMS)}, got {system!r}")
  symbols = EXAMPLE_SYSTEMS[system]
  rng = np.random.default_rng(seed)
  a0 = 3.6  # EMT copper's lattice constant is 3.59 A
  frames = []
  for k in range(n_bulk + n_clusters):
    if k < n_bulk:
      atoms = bulk(symbols[0], "fcc", a=a0, cubic=True).repeat(n_cells)
      atoms.set_cell(atoms.get_cell() * (1 + (-0.02, 0.0, 0.02)[k % 3]), scale_atoms=True)
    else:
      atoms = Icosahedron(symbols[0], 3, latticeconstant=a0)
      atoms.center(vacuum=5.0)
      atoms.pbc = False
    if len(symbols) > 1:
      gold = rng.random(len(atoms)) < rng.uniform(0.0, 0.5)
      atoms.symbols[gold] = symbols[1]
    atoms.positions += rng.normal(0.0, rng.uniform(0.02, 0.12), (len(atoms), 3))
    if atoms.pbc.all():
      atoms.wrap()
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    frames.append(atoms)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  ase.io.write(path, frames, format="extxyz")
  return path


# --- Training ---------------------------------------------------------------------------------------------------


def _validate(config):
  from unitary_enn import checks, training
  training.check_config(config)
  checks.sizes("config.hidden", config.hidden, minimum=0)
  if config.forces not in FORCES:
    raise ValueError(f"config.forces must be one of {FORCES}, got {config.forces!r}")
  if config.forces == "conservative" and config.linear_path:
    raise ValueError("config.linear_path must be False for config.forces='conservative' (F = -grad E has no linear "
                     "path); --config=experiments/configs/train_forces.py:conservative sets both")
  if config.energy_weight < 0:
    raise ValueError(f"config.energy_weight must be >= 0, got {config.energy_weight}")
  if config.cutoff not in ("cosine", "polynomial"):
    raise ValueError(f"config.cutoff must be 'cosine' or 'polynomial', got {config.cutoff!r}")


def per_species_rmse(predicted, target, species, symbols) -> dict:
  """Force RMSE (eV/A) over the atoms of each species."""
  import numpy as np
  if species is None:
    return {symbols[0]: force_rmse(predicted, target)}
  return {s: force_rmse(predicted[species == k], target[species == k]) for k, s in enumerate(symbols)
          if np.any(species == k)}


def padded_sides(boxes, r_cut: float):
  """The box side of every frame for the conservative model's pair lists, `(B,)` A: a periodic frame's own; for a
  free cluster (side 0), 2 (extent + r_cut), where the minimum image of every pair is the pair itself and every
  image lies farther than r_cut (so the periodic sums equal the free ones)."""
  import numpy as np
  return np.asarray([side if side > 0 else 2.0 * (float(np.ptp(pos, axis=0).max()) + r_cut)
                     for side, pos in boxes.boxes()])


def train_conservative(config, ds, bases, workdir, dtype) -> dict:
  """Train the conservative model (F = -grad E) of experiments/many_body.py on the frames, with their energies
  where every frame of a split has one; returns what `many_body.train_network` returns, plus results entries."""
  from experiments import many_body
  # Free clusters in a box large enough that the minimum image changes nothing (`padded_sides`).
  boxed = {name: dataclasses.replace(s, box_sides=padded_sides(s, float(config.r_cut))) for name, s in ds.items()}
  energies = {name: s.energies for name, s in ds.items()}
  if energies["train"] is None and config.energy_weight:
    print(f"train_forces: the training frames hold no energies (every frame needs one): energy_weight "
          f"{config.energy_weight} not used, forces only", flush=True)
    config.energy_weight = 0.0  # the caller's resolved copy
  out = many_body.train_conservative(config, workdir, boxed, bases, "network", dtype, energies=energies,
                                     label="train_forces")
  extra = dict(out["extra"], energies_used=energies["train"] is not None)
  return dict(model=out["model"], rmse=out["rmse"], predictions=out["predictions"], result=out["result"],
              num_params=out["n_params"], sizes=out["sizes"], extra=extra)


def train_and_evaluate(config, workdir: str, data: str | None = None, validation_data: str | None = None,
                       test_data: str | None = None, make_example: str | None = None,
                       example_system: str = "Cu") -> dict | None:
  """Read the data, derive the basis, compute descriptors, train (resumable), evaluate and write the results."""
  import ml_collections
  import numpy as np

  from experiments import many_body
  from unitary_enn import descriptors, files, models, plots

  log = lambda s: print(f"train_forces: {s}", flush=True)
  if make_example:
    t0 = time.time()
    write_example_data(make_example, example_system)
    log(f"wrote an EMT {example_system} example data set to {make_example} ({time.time() - t0:.0f} s); train on it "
        f"with python -m experiments.train_forces --data={make_example}")
    if not data:
      return None
  if not data:
    raise app.UsageError("give the training data: --data=FILE (any file ase.io.read opens, with forces), or "
                         "--make_example=FILE to write an example data set")
  _validate(config)
  dtype = setup_dtype(config)
  prepare_workdir(workdir)
  t0 = time.time()
  frames = read_frames(data)
  given = {name: read_frames(path) if path else None for name, path in (("validation", validation_data),
                                                                         ("test", test_data))}
  sets = split_frames(config, frames, given["validation"], given["test"])
  all_frames = [f for fs in sets.values() for f in fs]
  symbols = tuple(sorted({s for f in all_frames for s in f.symbols.tolist()}))
  missing = sorted(set(symbols) - {s for f in sets["train"] for s in f.symbols.tolist()})
  if missing:
    raise ValueError(f"species {missing} occur in the validation or test data but not in the training data")
  if config.forces == "conservative" and len(symbols) > 1:
    raise ValueError(f"config.forces='conservative' takes one species for now; the data hold {list(symbols)}: "
                     "use config.forces='direct' (the default), which takes several")
  b = derive_basis(config, all_frames)
  r_s = descriptors.radial_grid(b["r_s_start"], b["n_descriptors"], b["r_s_step"])
  basis = dict(r_s=r_s, eta=b["eta"], r_cut=b["r_cut"])
  log(f"{len(frames)} frames in {data}; species {list(symbols)}; frames train / validation / test "
      f"{', '.join(str(len(v)) for v in sets.values())}; nearest-neighbour distance {b['nearest_neighbour_distance']:.3f} A, "
      f"smallest pair distance {b['min_pair_distance']:.3f} A; basis r_cut {b['r_cut']:g} A, r_s {r_s[0]:g} .. "
      f"{r_s[-1]:g} A ({len(r_s)}), eta {b['eta']:.4g} A^-2" + (f" (derived: {', '.join(b['derived'])})"
                                                              if b["derived"] else ""))
  ds = {name: box_set(fs, symbols, basis, config.cutoff, log) for name, fs in sets.items()}
  data_time = time.time() - t0

  # The network trainer of experiments/many_body.py reads the basis from the config: hand it the resolved one.
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.r_cut, resolved.eta, resolved.r_s_start = b["r_cut"], b["eta"], b["r_s_start"]
  bases = {"network": dict(r_s=r_s, eta=b["eta"])}
  x_train = many_body.network_inputs(ds["train"], "network")
  linear_map = descriptors.fit_linear_force_map(x_train, ds["train"].forces)
  coef = linear_map if config.linear_path else None
  linear_rmse = {name: force_rmse(descriptors.apply_linear_force_map(linear_map, many_body.network_inputs(
      s, "network")), s.forces) for name, s in ds.items()}
  log(f"linear map of the descriptors: test force RMSE {linear_rmse['test']:.4g} eV/A")
  if config.forces == "conservative":
    net = train_conservative(resolved, ds, bases, workdir, dtype)
  else:
    net = many_body.train_network(resolved, ds, "network", bases, coef, workdir, dtype,
                                  "network" + (" with linear path" if coef is not None else ""))
  model = dataclasses.replace(net["model"], species=symbols, info=dict(
      trained_by="experiments.train_forces", data=os.path.abspath(data), test_force_rmse=net["rmse"]["test"]))
  models.save_model(workdir, model)

  rmse_species = {name: per_species_rmse(net["predictions"][name], s.forces, s.species, symbols)
                  for name, s in ds.items()}
  history = net["result"].history
  test = ds["test"]
  results = dict(
      experiment="train_forces",
      data=os.path.abspath(data), validation_data=validation_data and os.path.abspath(validation_data),
      test_data=test_data and os.path.abspath(test_data),
      species=list(symbols), forces=config.forces,
      frames={name: len(fs) for name, fs in sets.items()}, atoms={name: len(s) for name, s in ds.items()},
      periodic_frames=sum(f.box is not None for f in all_frames), free_frames=sum(f.box is None for f in all_frames),
      frames_with_energy=sum(f.energy is not None for f in all_frames),
      test_force_rmse=net["rmse"]["test"], validation_force_rmse=net["rmse"]["validation"],
      train_force_rmse=net["rmse"]["train"], force_rmse_per_species=rmse_species, units="eV/A",
      linear_map_force_rmse=linear_rmse, linear_path=bool(config.linear_path),
      kept_linear_map=net.get("kept_linear", False), **net.get("extra", {}),
      test_force_rms=float(np.sqrt(np.mean(test.forces ** 2))),
      basis=dict(r_cut=b["r_cut"], r_s_start=b["r_s_start"], r_s_step=b["r_s_step"], n_descriptors=len(r_s),
                 eta=b["eta"], cutoff=config.cutoff, derived_from_data=b["derived"]),
      nearest_neighbour_distance=b["nearest_neighbour_distance"], min_pair_distance=b["min_pair_distance"],
      num_params=net["num_params"], sizes=list(net["sizes"]), steps=net["result"].steps,
      best_step=net["result"].best_step, wall_time_s=history[-1]["time"] if history else 0.0,
      data_time_s=data_time, load_average=list(os.getloadavg()), config=config.to_dict(),
      versions=files.package_versions())
  files.write_json(os.path.join(workdir, RESULTS), results)
  plots.plot_loss({("conservative ENN" if config.forces == "conservative" else "ENN")
                   + (" + linear path" if coef is not None else ""): history},
                  os.path.join(workdir, "figures", "loss.png"), title=f"train_forces, {'-'.join(symbols)}: loss")
  plots.plot_parity(test.forces, net["predictions"]["test"], os.path.join(workdir, "figures", "parity.png"),
                    rmse=net["rmse"]["test"], title=f"{'-'.join(symbols)}, test set, {len(test):,} atoms")
  per = ", ".join(f"{s} {v:.4f}" for s, v in rmse_species["test"].items())
  e_test = results.get("test_energy_rmse_eV_per_atom")
  log(f"test force RMSE {net['rmse']['test']:.4f} eV/A ({per}; linear map {linear_rmse['test']:.4f}; force RMS "
      f"{results['test_force_rms']:.3f})" + (f", test energy RMSE {e_test * 1e3:.2f} meV/atom" if e_test is not None
                                             else "") + f"; model in {os.path.join(workdir, models.MODEL_FILE)}, "
      f"results in {os.path.join(workdir, RESULTS)}")
  return results


def _flags():
  from absl import flags
  return dict(
      data=flags.DEFINE_string("data", None, "Training data: a file ase.io.read opens (extended XYZ, .traj) with "
                               "forces; split by config.split unless the other sets are given."),
      validation_data=flags.DEFINE_string("validation_data", None, "Validation frames (optional)."),
      test_data=flags.DEFINE_string("test_data", None, "Test frames (optional)."),
      make_example=flags.DEFINE_string("make_example", None, "Write an example data set (ASE EMT) to this file "
                                       "and exit (or train on --data afterwards)."),
      example_system=flags.DEFINE_enum("example_system", "Cu", sorted(EXAMPLE_SYSTEMS),
                                       "Species of --make_example."))


if __name__ == "__main__":
  experiment_main("train_forces", train_and_evaluate, extra_flags=_flags)

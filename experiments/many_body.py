r"""Many-atom forces (paper Sec. 4.5): vector descriptors (eq. 51) -> ENN -> force, on the paper's pair target and
on targets no pair model can fit.

  python -m experiments.many_body                        # lj/cut argon, quick default (~10 minutes on 2 CPU cores)
  python -m experiments.many_body --config=experiments/configs/many_body.py:atm         # argon + three-body ATM
  python -m experiments.many_body --config=experiments/configs/many_body.py:emt         # EMT copper (needs ase)
  python -m experiments.many_body --config=experiments/configs/many_body.py:emt_alloy   # EMT Cu-Au random alloy
  python -m experiments.many_body --config=experiments/configs/many_body.py:paper --workdir=runs/many_body_paper
  python -m experiments.many_body --config.r_s_start=2.8 --config.n_descriptors=73   # the paper's basis
  python -m experiments.many_body --config=experiments/configs/many_body.py:conservative   # F = -grad E

`config.forces` chooses the model: "direct" (the paper: descriptors -> ENN -> the force vector) or "conservative"
(descriptors -> the same layers ending in `energy_vectors` vectors -> Gram invariants -> a scalar head -> the atomic
energy; E = sum of atomic energies, F = -dE/dR by jax.grad through the descriptors, `unitary_enn.energy`; with
`scalar_features`, the scalar descriptors of eq. 34 ride along as an invariant feature row, Sec. 3.3). A
conservative model trains on whole periodic boxes: each step evaluates the descriptors of every atom of
`batch_size` boxes from the positions on the boxes' fixed pair lists and matches -grad E to the lj/cut forces (plus
`energy_weight` times the squared error of the lj/cut energy per atom); its energy offset per atom is then fitted
to the training boxes' lj/cut energies.

Targets (`config.target`):
  lj_cut   random periodic argon boxes (docs/decisions.md §9), lj/cut forces: the paper's target, a pair potential
  lj_atm   the same boxes, lj/cut plus the Axilrod-Teller-Muto three-body dispersion (`potentials.atm_energy`,
           LAMMPS `pair_style hybrid/overlay lj/cut 10.0 atm cutoff cutoff_triple`)
  emt      FCC metal from ASE's effective-medium theory (`config.system`: "Cu", or "CuAu" with random occupancy):
           bulk at several temperatures and strains, vacancies, a (001) slab (`data.metal_configurations`)

Data: descriptors (one block per neighbour species; the network's input puts each atom's channels into the block
of its own species, `descriptors.center_species_channels`) and forces computed once and cached ($UENN_CACHE_DIR
or ~/.cache/unitary_enn). Training samples are atoms. Models, all evaluated on the same test atoms:
  linear      the closed-form least-squares map from descriptors to force (docs/decisions.md §9), per basis in
              `config.linear_references`, fitted on the training sets
  network     the ENN of Sec. 4.5; with `config.linear_path` (the default) it has a linear path beside it,
              F = D c + ENN(D): c is the linear map above on the network's basis and the ENN learns what it
              leaves (standardized), so the model starts where the linear map ends
  plain       with `config.compare_plain`, also the paper's direct network without the linear path (in plain/)
The conservative network of the conservative-mode issue is not part of this binary yet; its column is left empty.
None of these models predicts energies, so no energy error is given (the data hold EMT and LJ+ATM energies).
Force-field cost: atom-steps/s of each force field (descriptors and model, on a neighbor list built once) on the
largest test box, compilation excluded, beside the reference potential's. For many-body targets, `config.nve_steps` > 0 runs NVE
with the network and with the reference potential from the same start and reports position RMSD and temperature
vs step: LJ+ATM with this package's MD (`simulate.run_nve_neighbor_list`, a free FCC argon cube), EMT with ASE's
velocity Verlet in a periodic box (the network through a small ASE calculator inside this file).

Writes to --workdir: results.json (with `table`: every model's test force RMSE, parameters, training time and cost),
metrics.jsonl, figures/loss.png (Fig. 9), figures/parity.png (Fig. 10), figures/nve_rmsd.png and
figures/nve_temperature.png (with NVE), model.npz (`uenn.load_force_field(workdir)` gives forces for any positions,
box and species) and checkpoint.msgpack (rerun the same command to resume).
"""

from __future__ import annotations

import functools
import os
import time

from absl import logging

from experiments.common import RESULTS, cache_dir, experiment_main, force_rmse, prepare_workdir, setup_dtype
from unitary_enn.constants import MANY_BODY_PAPER_TEST_RMSE

TARGETS = ("lj_cut", "lj_atm", "emt")
TARGET_NAMES = {"lj_cut": "lj/cut argon", "lj_atm": "LJ+ATM argon", "emt": "EMT"}


def basis_name(start: float, count: int) -> str:
  return f"r_s from {float(start):g} A, {int(count)} descriptors"


def bases_of(config) -> tuple[str, dict]:
  """The network's basis name and all bases (network + linear references): name -> dict(r_s, eta)."""
  from unitary_enn import descriptors
  net = basis_name(config.r_s_start, config.n_descriptors)
  specs = [(config.r_s_start, config.n_descriptors)] + [tuple(b) for b in config.linear_references]
  bases = {}
  for start, count in specs:
    bases[basis_name(start, count)] = dict(
        r_s=descriptors.radial_grid(float(start), int(count), float(config.r_s_step)), eta=float(config.eta))
  return net, bases


def target_name(config) -> str:
  return f"EMT {config.system}" if config.target == "emt" else TARGET_NAMES[config.target]


def _validate(config):
  from unitary_enn import checks, training
  training.check_config(config)
  checks.sizes("config.hidden", config.hidden, minimum=0)
  if config.target not in TARGETS:
    raise ValueError(f"config.target must be one of {TARGETS}, got {config.target!r}")
  if len(config.n_sets) != 3 or min(config.n_sets) < 1:
    raise ValueError(f"config.n_sets must be three positive numbers (train, validation, test), got "
                     f"{config.n_sets}")
  if config.target != "emt":
    for side in config.box_sides:
      if side < 2 * config.r_cut:
        raise ValueError(f"config.box_sides holds {side} A < 2 * r_cut = {2 * config.r_cut} A")
  if config.target == "lj_atm" and config.atm_cutoff > config.r_cut:
    raise ValueError(f"config.atm_cutoff {config.atm_cutoff} A must be <= config.r_cut {config.r_cut} A")
  if config.n_descriptors < 1:
    raise ValueError(f"config.n_descriptors must be >= 1, got {config.n_descriptors}")
  if config.nve_steps < 0 or (config.nve_steps and config.nve_steps % config.nve_record_every):
    raise ValueError(f"config.nve_steps ({config.nve_steps}) must be 0 or a multiple of config.nve_record_every "
                     f"({config.nve_record_every})")

  if config.forces not in ("direct", "conservative"):
    raise ValueError(f"config.forces must be 'direct' or 'conservative', got {config.forces!r}")
  if config.energy_weight < 0:
    raise ValueError(f"config.energy_weight must be >= 0, got {config.energy_weight}")


def box_energies(boxes, pairs, r_cut: float):
  """lj/cut potential energy of every box of a `data.BoxSet` (eV, `(B,)`) from its ordered pairs, in float64."""
  import jax
  import numpy as np

  from unitary_enn import potentials
  out = []
  with jax.enable_x64(True):
    for (side, pos), q in zip(boxes.boxes(), pairs):
      dr = np.asarray(pos, np.float64)[q[:, 1]] - np.asarray(pos, np.float64)[q[:, 0]]
      dr -= side * np.round(dr / side)
      r2 = np.sum(dr * dr, axis=-1)
      out.append(0.5 * float(np.sum(np.asarray(potentials.lj_cut_pair_energy(r2, r_cut)))))  # each pair twice
  return np.asarray(out)


def train_conservative(config, workdir: str, ds: dict, bases: dict, net_basis: str, dtype, energies: dict | None = None,
                       label: str = "many_body") -> dict:
  """Train the conservative many-atom model on whole boxes; returns the parts of results.json it measures.

  Args:
    energies: split -> the reference energy of each box `(B,)` eV, or None for a split without energies; None
      (the default) takes the lj/cut energies of the boxes (the Sec. 4.5 target). Energies enter the loss with
      `config.energy_weight` after a per-atom reference (their least-squares energy per atom over the training
      boxes) is taken off, and fit the model's offset e_0 afterwards; without training energies e_0 is 0 and no
      energy error is reported.
    label: the prefix of the progress lines.

  Returns:
    dict(rmse={split: force RMSE eV/A}, predictions={split: (A, 3) forces}, model=the Model, result=TrainResult,
    n_params, sizes, extra results).
  """
  import time as _time

  import jax
  import jax.numpy as jnp
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import data, energy, models, training

  basis = bases[net_basis]
  s_d = data.rms_scale(ds["train"].descriptors[net_basis], per_channel=True)
  s_f = float(np.sqrt(np.mean(ds["train"].forces ** 2)))
  s_e = s_f  # eV: s_F times 1 A, so that the standardized forces are -dE_std/dR with R in A (energy.box_forces)
  t0 = _time.time()
  pairs = {name: [energy.box_pairs(pos, side, config.r_cut) for side, pos in split.boxes()]
           for name, split in ds.items()}
  layout = energy.BoxLayout(0, 0)
  for name, split in ds.items():
    layout = layout.union(energy.BoxLayout.fitting(split, pairs[name]))
  if energies is None:
    e_ref = {name: box_energies(split, pairs[name], config.r_cut) for name, split in ds.items()}
    what = "pair lists and lj/cut energies"
  else:
    e_ref = {name: None if energies.get(name) is None else np.asarray(energies[name], np.float64) for name in ds}
    what = "pair lists"
  if config.energy_weight and e_ref["train"] is None:
    raise ValueError(f"config.energy_weight = {config.energy_weight}, but the training boxes have no energies")
  counts = {name: split.counts.astype(np.float64) for name, split in ds.items()}

  def per_atom(e):  # least squares over the training boxes: min_e0 sum_b (e_b - N_b e0)^2; 0 without energies
    return 0.0 if e_ref["train"] is None else float(np.sum(counts["train"] * e) / np.sum(counts["train"] ** 2))

  # A per-atom reference off the energies the loss sees (for data whose energies are far from 0, e.g. DFT).
  e_atom = per_atom(e_ref["train"])
  packed = {name: energy.pack_boxes(split, pairs[name], layout, force_scale=s_f, energy_scale=s_e,
                                    energies=None if e_ref[name] is None else e_ref[name] - counts[name] * e_atom,
                                    dtype=np.dtype(config.dtype))
            for name, split in ds.items()}
  print(f"{label}: conservative: {what} of {sum(len(v) for v in pairs.values())} boxes in "
        f"{_time.time() - t0:.0f} s; every box padded to {layout.n_atoms:,} atoms and {layout.n_pairs:,} ordered "
        "pairs", flush=True)

  geometry = dict(r_s=np.asarray(basis["r_s"]), eta=float(basis["eta"]), r_cut=float(config.r_cut),
                  cutoff=config.cutoff)
  features = bool(config.scalar_features)
  s_s = None
  if features:  # per-channel RMS of the scalar descriptors (eq. 34) over the training atoms
    desc = jax.jit(lambda x: energy.box_descriptors(x, layout, scalar_row=True, **geometry)[:, 3])
    sums = [np.asarray(desc(jnp.asarray(x)), np.float64)[:n] for x, n in zip(packed["train"][0], ds["train"].counts)]
    s_s = data.rms_scale(np.concatenate(sums)[:, None, :], per_channel=True)
  sizes = (int(config.n_descriptors), *(int(h) for h in config.hidden), int(config.energy_vectors))
  params = energy.init_energy_network(jax.random.PRNGKey(config.seed), sizes, tuple(config.head_hidden),
                                      n_features=int(features), dtype=dtype)
  n_params = uenn.count_params(params)
  kwargs = dict(geometry, descriptor_scale=np.asarray(s_d), scalar_scale=s_s, activation=config.activation,
                eps=config.eps, precision=config.precision)
  loss_fn = energy.box_loss(kwargs, layout, float(config.energy_weight))
  print(f"{label}: conservative forces, {n_params:,} parameters {sizes} + head {tuple(config.head_hidden)}"
        f"{', scalar descriptors as a feature row' if features else ''}, "
        f"{len(ds['train']):,} training atoms in {len(ds['train'].counts)} boxes ({config.batch_size} per step), "
        f"{len(ds['validation']):,} validation, {len(ds['test']):,} test; basis {net_basis}; optimizer "
        f"{config.optimizer}, {config.steps:,} steps", flush=True)
  result = training.train(loss_fn, params, packed["train"], packed["validation"], config, workdir)
  best = result.best_params

  predict = jax.jit(lambda p, x: energy.box_forces(p, x, layout, **kwargs))
  predictions, raw_e = {}, {}
  for name, split in ds.items():
    f_all, e_all = [], []
    for b, n in enumerate(split.counts):
      e, f = predict(best, jnp.asarray(packed[name][0][b]))
      f_all.append(np.asarray(f, np.float64)[:n] * s_f)
      e_all.append(float(e) * s_e)
    predictions[name], raw_e[name] = np.concatenate(f_all), np.asarray(e_all)
  rmse = {name: force_rmse(predictions[name], split.forces) for name, split in ds.items()}
  # Least-squares energy offset per atom on the training boxes: min sum_b (E_b - E_model_b - N_b e0)^2.
  offset = per_atom(None if e_ref["train"] is None else e_ref["train"] - raw_e["train"])
  e_rmse = {name: None if e_ref[name] is None else float(np.sqrt(np.mean(
      ((raw_e[name] + counts[name] * offset - e_ref[name]) / counts[name]) ** 2))) for name in ds}
  scales = dict(inputs=s_d, targets=[s_f], energy=s_e, energy_offset=offset)
  if features:
    scales["feature_inputs"] = s_s
  model = models.Model(kind="many_body", params=best, sizes=sizes, activation=config.activation, eps=config.eps,
                       scales=scales, dtype=config.dtype,
                       basis=models.Basis(basis["r_s"], float(config.eta), float(config.r_cut), config.cutoff),
                       forces="conservative", head_hidden=tuple(config.head_hidden), scalar_features=features)
  extra = dict(test_energy_rmse_eV_per_atom=e_rmse["test"], validation_energy_rmse_eV_per_atom=e_rmse["validation"],
               train_energy_rmse_eV_per_atom=e_rmse["train"], energy_offset_eV_per_atom=offset,
               energy_scale_eV=s_e, head_hidden=list(config.head_hidden),
               padded_layout=dict(atoms=layout.n_atoms, pairs=layout.n_pairs))
  return dict(rmse=rmse, predictions=predictions, model=model, result=result, n_params=n_params, sizes=sizes,
              target_force_std=s_f, extra=extra)


def load_data(config, bases, log):
  """The train / validation / test `data.BoxSet`s of the config's target."""
  from unitary_enn import data
  common = dict(seed=config.data_seed, n_sets=tuple(config.n_sets), bases=bases, r_cut=config.r_cut,
                cutoff=config.cutoff, cache_dir=cache_dir(config), log=log)
  if config.target == "emt":
    return data.emt_dataset(system=config.system, n_cells=config.emt_cells, temperatures=tuple(config.temperatures),
                            strains=tuple(config.strains), vacancies=tuple(config.vacancies),
                            slab_layers=config.slab_layers, **common)
  extra = dict(atm_cutoff=config.atm_cutoff, atm_cutoff_triple=config.atm_cutoff_triple) \
      if config.target == "lj_atm" else {}
  return data.many_body_dataset(sides=tuple(config.box_sides), max_atoms=config.max_atoms, r_min=config.r_min,
                                max_trials=config.max_trials, target=config.target, **extra, **common)


def network_inputs(split, basis: str):
  """`(A, 3, S S K)` float32: a split's descriptors with each atom's channels in its own species' block."""
  from unitary_enn import descriptors
  return descriptors.center_species_channels(split.descriptors[basis], split.species, split.n_species)


def channel_scales(x):
  """Per-channel RMS over atoms and coordinates `(M,)` (docs/decisions.md §4); a channel that is zero on every
  training atom (a species pair absent from them) gets 1."""
  import numpy as np
  s = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=(0, 1)))
  return np.where(s > 0, s, 1.0)


def data_summary(ds) -> dict:
  """The results.json entries that describe the data sets: atom counts, boxes and the test forces' range."""
  test = ds["test"]
  return dict(num_test_atoms=len(test), num_train_atoms=len(ds["train"]), num_validation_atoms=len(ds["validation"]),
              atoms_per_box={name: [dict(side=float(a), atoms=int(b)) for a, b in zip(s.box_sides, s.counts)]
                             for name, s in ds.items()},
              test_force_range=[float(test.forces.min()), float(test.forces.max())])


def train_network(config, ds, basis, bases, linear_coef, workdir, dtype, label):
  """Train the ENN on `basis` (with the linear path `linear_coef` `(M,)`, or without when None) in `workdir`.

  Returns:
    dict(model=the `models.Model`, predictions: split -> `(A, 3)` eV/A, rmse: split -> eV/A, result=the
    `training.TrainResult`, num_params, sizes).
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import models, training

  x = {name: network_inputs(split, basis) for name, split in ds.items()}
  linear_part = {name: (x[name] @ linear_coef if linear_coef is not None else 0.0) for name in ds}
  y = {name: split.forces - linear_part[name] for name, split in ds.items()}  # eV/A, float64
  in_scale = channel_scales(x["train"])
  out_scale = float(np.sqrt(np.mean(y["train"] ** 2)))

  def standardized(name):
    return (jnp.asarray(x[name] / in_scale, dtype), jnp.asarray(y[name][:, :, None] / out_scale, dtype))

  sizes = (int(x["train"].shape[-1]), *(int(h) for h in config.hidden), 1)
  params = uenn.init_uenn(jax.random.PRNGKey(config.seed), sizes, dtype=dtype)
  if linear_coef is not None:
    # The output layer starts at zero, so the model starts exactly at the linear map and training moves it only
    # where the network lowers the error (a zero-initialized residual branch).
    params[-1] = jax.tree.map(jnp.zeros_like, params[-1])
  n_params = uenn.count_params(params)

  def predict(p, inputs):
    return uenn.apply_uenn(p, inputs, activation=config.activation, eps=config.eps, precision=config.precision)

  print(f"many_body: {label}: {n_params:,} parameters {sizes}, {len(x['train']):,} training atoms, "
        f"{len(x['validation']):,} validation, {len(x['test']):,} test; basis {basis}"
        f"{', linear path' if linear_coef is not None else ''}; optimizer {config.optimizer}, {config.steps:,} "
        f"steps, workdir {workdir}", flush=True)
  result = training.train(training.mse_loss(predict), params, standardized("train"), standardized("validation"),
                          config, workdir)
  best = result.best_params
  kept_linear = False
  if linear_coef is not None:
    # Model selection on the validation set includes the starting point, the linear map itself (zero output
    # layer): the network with a linear path is never worse than the linear map on validation.
    start_val = float(np.mean(y["validation"] ** 2)) / out_scale ** 2
    if start_val <= result.best_val:
      best, kept_linear = params, True
      print(f"many_body: {label}: no training step beat the linear map on validation; keeping it", flush=True)
  predict_jit = jax.jit(predict)

  def forces(name):  # eV/A, (A, 3)
    inputs, _ = standardized(name)
    net = np.concatenate([np.asarray(predict_jit(best, inputs[s:s + 8192]), np.float64)[..., 0] * out_scale
                          for s in range(0, len(inputs), 8192)])
    return net + linear_part[name]

  predictions = {name: forces(name) for name in ds}
  rmse = {name: force_rmse(predictions[name], split.forces) for name, split in ds.items()}
  symbols = ds["train"].symbols
  model = models.Model(kind="many_body", params=best, sizes=sizes, activation=config.activation, eps=config.eps,
                       scales=dict(inputs=in_scale, targets=np.full(1, out_scale)), dtype=config.dtype,
                       basis=models.Basis(bases[basis]["r_s"], float(config.eta), float(config.r_cut),
                                          config.cutoff),
                       species=symbols if symbols and len(symbols) > 1 else None, linear=linear_coef)
  models.save_model(workdir, model)
  return dict(model=model, predictions=predictions, rmse=rmse, result=result, num_params=n_params, sizes=sizes,
              kept_linear=kept_linear)


def cost_box(ds):
  """(side, positions, species or None for one species) of the test box with the most atoms: where force-field
  costs are measured."""
  import numpy as np
  test = ds["test"]
  b = int(np.argmax(test.counts))
  o = test.offsets
  species = None if test.n_species == 1 else test.species[o[b]:o[b + 1]]
  return float(test.box_sides[b]), test.positions[o[b]:o[b + 1]], species


def atom_steps_per_s(builder, r_cut, side, positions, species, repeats: int) -> float:
  """Atom-steps/s of a force field: jitted calls on a periodic box with its neighbor list built once.

  The cost per MD step when the list is not rebuilt (with a skin, jax-md rebuilds it only after atoms have moved
  half the skin); compilation excluded.
  """
  import jax
  import jax.numpy as jnp
  from unitary_enn import neighbors
  displacement_fn, _ = neighbors.periodic_space(side)
  positions = jnp.asarray(positions)
  neighbor = neighbors.NeighborManager(displacement_fn, side, r_cut).allocate(positions)
  fn = jax.jit(builder(displacement_fn))
  kw = {} if species is None else dict(species=jnp.asarray(species))
  jax.block_until_ready(fn(positions, neighbor, **kw))
  t0 = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(positions, neighbor, **kw))
  return len(positions) * repeats / (time.perf_counter() - t0)


def linear_force_builder(coef, basis: dict, config, n_species: int):
  """`builder(displacement_fn) -> force_fn(positions, neighbor, species=None)`: the linear map D c, float32 sums."""
  import jax
  import jax.numpy as jnp

  from unitary_enn import descriptors

  def builder(displacement_fn):
    _, descriptor_fn = descriptors.vector_descriptors_neighbor_list(
        displacement_fn, 3.0 * config.r_cut, r_s=basis["r_s"], eta=basis["eta"], r_cut=config.r_cut,
        cutoff=config.cutoff, n_species=n_species if n_species > 1 else None)
    c = jnp.asarray(coef, jnp.float32)

    def force_fn(positions, neighbor, species=None):
      d = descriptor_fn(positions, neighbor, species=species, dtype=jnp.float32)
      d = descriptors.center_species_channels(d, species, n_species) if n_species > 1 else d
      return jnp.einsum("nxk,k->nx", d, c, precision=jax.lax.Precision.HIGHEST).astype(positions.dtype)
    return force_fn
  return builder


def reference_cost(config, side, positions, species, symbols, repeats: int) -> dict:
  """Atom-steps/s of the target's reference potential on the cost box (float64; EMT: ASE's Python EMT)."""
  import jax
  from unitary_enn import potentials
  if config.target == "emt":
    import numpy as np
    from ase import Atoms
    from ase.calculators.emt import EMT
    names = [symbols[0]] * len(positions) if species is None else [symbols[int(s)] for s in species]
    atoms = Atoms(names, positions=positions, cell=[side] * 3, pbc=True)
    atoms.calc = EMT()
    atoms.get_forces()
    repeats = max(1, repeats // 4)  # Python: slow
    t0 = time.perf_counter()
    for k in range(repeats):
      atoms.positions = positions + 1e-9 * (k + 1)  # a new configuration each call, so nothing is cached
      np.asarray(atoms.get_forces())
    return dict(name="ASE EMT (Python)", atom_steps_per_s=len(positions) * repeats / (time.perf_counter() - t0))
  with jax.enable_x64(True):
    if config.target == "lj_cut":
      builder, name = functools.partial(potentials.lj_cut_force_fn, r_cut=config.r_cut), "lj/cut (jax-md, float64)"
    else:
      builder = functools.partial(potentials.lj_atm_force_fn, r_cut=config.r_cut, cutoff=config.atm_cutoff,
                                  cutoff_triple=config.atm_cutoff_triple)
      name = "lj/cut + ATM (jax-md, float64)"
    return dict(name=name, atom_steps_per_s=atom_steps_per_s(builder, config.r_cut, side, positions, None, repeats))


def _emt_calculator(forces_fn, side: float, species):
  """A minimal ASE calculator around `load_force_field(...)` for a periodic cubic box (private to this binary)."""
  import numpy as np
  from ase.calculators.calculator import Calculator, all_changes

  class _NetworkCalculator(Calculator):
    implemented_properties = ["forces"]

    def calculate(self, atoms=None, properties=("forces",), system_changes=all_changes):
      super().calculate(atoms, properties, system_changes)
      positions = np.mod(self.atoms.get_positions(), side)
      self.results["forces"] = np.asarray(forces_fn(positions, side, species), np.float64)

  return _NetworkCalculator()


def nve_lj_atm(config, model, log) -> dict:
  """NVE of a free FCC argon cube with LJ+ATM and with the network, from the same start (float64, 1 fs)."""
  import jax
  import numpy as np

  from unitary_enn import constants, models, potentials, quantity, simulate, structures
  with jax.enable_x64(True):
    pos = structures.fcc_lattice(config.nve_cells, constants.ARGON_FCC_LATTICE_CONSTANT)
    mom = np.asarray(quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(config.seed), pos, constants.ARGON_MASS,
                                                        config.nve_temperature))
    kw = dict(dt=config.nve_dt, n_steps=config.nve_steps, r_cut=config.r_cut, record_every=config.nve_record_every,
              chunk_steps=config.nve_record_every * max(1, 100 // config.nve_record_every),
              log=lambda s: log(s))
    runs = {
        "reference": simulate.run_nve_neighbor_list(functools.partial(
            potentials.lj_atm_force_fn, r_cut=config.r_cut, cutoff=config.atm_cutoff,
            cutoff_triple=config.atm_cutoff_triple), pos, mom, label="nve LJ+ATM", **kw),
        "network": simulate.run_nve_neighbor_list(functools.partial(models.many_body_force_fn, model), pos, mom,
                                                  label="nve network", **kw)}
  steps = runs["reference"].steps
  temperature = {k: r.temperature[::config.nve_record_every] for k, r in runs.items()}
  rmsd = np.asarray(quantity.position_rmsd(runs["reference"].positions[:, None], runs["network"].positions[:, None]))
  return dict(system=f"free FCC argon cube, {len(pos)} atoms, a = {constants.ARGON_FCC_LATTICE_CONSTANT} A",
              engine="unitary_enn.simulate.run_nve_neighbor_list (jax-md velocity Verlet, float64)",
              steps=steps, position_rmsd=rmsd, temperature=temperature,
              atom_steps_per_s={k: r.stats["atom_steps_per_s"] for k, r in runs.items()})


def nve_emt(config, model, log) -> dict:
  """NVE of a periodic FCC box with ASE's EMT and with the network, ASE velocity Verlet, same start."""
  import jax
  import numpy as np
  from ase import Atoms, units
  from ase.calculators.emt import EMT
  from ase.md.verlet import VelocityVerlet

  from unitary_enn import constants, data, models, quantity, structures
  symbols = data.EMT_SYSTEMS[config.system]
  fraction = 0.5 if len(symbols) > 1 else 0.0
  a = (1 - fraction) * constants.EMT_LATTICE_CONSTANTS[symbols[0]] + (
      fraction * constants.EMT_LATTICE_CONSTANTS[symbols[-1]])
  sites = structures.fcc_lattice(config.emt_cells, a)
  side = config.emt_cells * a
  species = (structures.random_occupancy(len(sites), (1 - fraction, fraction), seed=(config.seed, 7))
             if len(symbols) > 1 else np.zeros(len(sites), np.int32))
  start = Atoms([symbols[int(s)] for s in species], positions=sites, cell=[side] * 3, pbc=True)
  with jax.enable_x64(True):  # Maxwell-Boltzmann velocities in A/ps, centre-of-mass momentum removed
    mass = start.get_masses() * constants.AMU
    momenta = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(config.seed), sites, mass,
                                                 2 * config.nve_temperature)
    start.set_velocities(np.asarray(momenta) / mass[:, None] / (1000 * units.fs))
  forces_fn = models.load_force_field(model)
  runs = {}
  for name, calc in (("reference", EMT()), ("network", _emt_calculator(forces_fn, side, species))):
    atoms = start.copy()
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=config.nve_dt * 1000 * units.fs)
    frames, temps = [atoms.get_positions()], [atoms.get_temperature()]
    atoms.get_forces()  # compiles the network before the clock starts
    t0 = time.perf_counter()
    for k in range(config.nve_steps // config.nve_record_every):
      dyn.run(config.nve_record_every)
      frames.append(atoms.get_positions())
      temps.append(atoms.get_temperature())
    rate = len(atoms) * config.nve_steps / (time.perf_counter() - t0)
    log(f"nve {name}: {config.nve_steps} steps, T {temps[-1]:.1f} K, {rate:,.0f} atom-steps/s")
    runs[name] = dict(frames=np.asarray(frames), temperature=np.asarray(temps), rate=rate)
  steps = np.arange(len(runs["reference"]["frames"])) * config.nve_record_every
  d = runs["reference"]["frames"] - runs["network"]["frames"]
  rmsd = np.sqrt(np.mean(np.sum(d * d, axis=-1), axis=-1))
  return dict(system=f"periodic FCC {config.system} box, {len(sites)} atoms, side {side:.3f} A, "
                     f"started at 2 x {config.nve_temperature:g} K", engine="ASE 3 VelocityVerlet",
              steps=steps, position_rmsd=rmsd, temperature={k: r["temperature"] for k, r in runs.items()},
              atom_steps_per_s={k: r["rate"] for k, r in runs.items()})


def train_and_evaluate(config, workdir: str) -> dict:
  """Generate (or load) the data, fit the linear references, train the network(s), evaluate, time, run NVE, write."""
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import descriptors, files, models, plots

  _validate(config)
  dtype = setup_dtype(config)
  prepare_workdir(workdir)
  log = lambda s: print(f"many_body: {s}", flush=True)
  t0 = time.time()
  net_basis, bases = bases_of(config)
  ds = load_data(config, bases, log)
  data_time = time.time() - t0
  logging.info("data: %s atoms in %.1f s", {k: len(v) for k, v in ds.items()}, data_time)
  symbols = ds["train"].symbols
  n_species = ds["train"].n_species

  # Closed-form linear references (docs/decisions.md §9), fitted on the training sets only.
  t1 = time.time()
  linear, coefs = {}, {}
  for name in bases:
    x = {split: network_inputs(s, name) for split, s in ds.items()}
    coefs[name] = descriptors.fit_linear_force_map(x["train"], ds["train"].forces)
    linear[name] = dict(
        r_s_start=float(bases[name]["r_s"][0]), n_descriptors=len(bases[name]["r_s"]), num_params=len(coefs[name]),
        **{f"{split}_force_rmse": force_rmse(descriptors.apply_linear_force_map(coefs[name], x[split]),
                                             s.forces) for split, s in ds.items()})
    log(f"linear reference, {name}: test force RMSE {linear[name]['test_force_rmse']:.3g} eV/A")
  linear_time = time.time() - t1

  if config.forces == "conservative":
    if n_species > 1 or config.target != "lj_cut" or config.linear_path:
      raise ValueError("the conservative many-body model trains on lj/cut argon (one species, no linear path); "
                       f"got target {config.target!r}, {n_species} species, linear_path={config.linear_path}")
    out = train_conservative(config, workdir, ds, bases, net_basis, dtype)
    models.save_model(workdir, out["model"])
    return _write_conservative_results(config, workdir, ds, net_basis, linear, out, data_time, linear_time)

  net = train_network(config, ds, net_basis, bases, coefs[net_basis] if config.linear_path else None, workdir,
                      dtype, "network" + (" with linear path" if config.linear_path else ""))
  plain = None
  if config.compare_plain and config.linear_path:
    plain = train_network(config, ds, net_basis, bases, None, os.path.join(workdir, "plain"), dtype,
                          "the paper's direct network (no linear path)")
  rmse = net["rmse"]

  # Force-field cost on the largest test box, compilation excluded.
  side, cost_pos, cost_species = cost_box(ds)
  reps = int(config.cost_repeats)
  from unitary_enn import models
  costs = {"linear": atom_steps_per_s(linear_force_builder(coefs[net_basis], bases[net_basis], config, n_species),
                                      config.r_cut, side, cost_pos, cost_species, reps),
           "network": atom_steps_per_s(functools.partial(models.many_body_force_fn, net["model"]), config.r_cut,
                                       side, cost_pos, cost_species, reps)}
  if plain is not None:
    costs["plain"] = atom_steps_per_s(functools.partial(models.many_body_force_fn, plain["model"]), config.r_cut,
                                      side, cost_pos, cost_species, reps)
  reference = reference_cost(config, side, cost_pos, cost_species, symbols, reps)
  log(f"force-field cost on a test box of {len(cost_pos):,} atoms: " + ", ".join(
      f"{k} {v:,.0f}" for k, v in costs.items()) + f" atom-steps/s; reference {reference['name']} "
      f"{reference['atom_steps_per_s']:,.0f}")

  nve = None
  if config.nve_steps and config.target != "lj_cut":
    nve = (nve_lj_atm if config.target == "lj_atm" else nve_emt)(config, net["model"], log)
    log(f"NVE ({nve['system']}): position RMSD at the end {nve['position_rmsd'][-1]:.3g} A; "
        f"T reference {nve['temperature']['reference'][-1]:.1f} K, network {nve['temperature']['network'][-1]:.1f} K")

  def train_time(r):
    return r["result"].history[-1]["time"] if r["result"].history else 0.0

  network_label = "network with linear path" if config.linear_path else "paper's direct network"
  table = {"linear": dict(test_force_rmse=linear[net_basis]["test_force_rmse"], energy_rmse_mev_per_atom=None,
                          num_params=len(coefs[net_basis]), train_time_s=linear_time / len(bases),
                          atom_steps_per_s=costs["linear"])}
  if plain is not None:
    table["paper's direct network"] = dict(test_force_rmse=plain["rmse"]["test"], energy_rmse_mev_per_atom=None,
                                           num_params=plain["num_params"], train_time_s=train_time(plain),
                                           atom_steps_per_s=costs["plain"])
  table[network_label] = dict(test_force_rmse=rmse["test"], energy_rmse_mev_per_atom=None,
                              num_params=net["num_params"] + (len(coefs[net_basis]) if config.linear_path else 0),
                              train_time_s=train_time(net) + (linear_time / len(bases) if config.linear_path else 0),
                              atom_steps_per_s=costs["network"])
  table["conservative network"] = None  # the conservative-mode issue's model, not in this binary yet

  history = net["result"].history
  test = ds["test"]
  # The linear reference of the network's basis in standardized units, y = x c (docs/decisions.md §9, §14). With
  # smooth unit vectors (eps > 0) the network is x -> x G near zero input, and G times the rounding of a perfect
  # crystal's descriptors (0 by symmetry) is the force it predicts there; c is the physical value of G.
  # With the linear path the network fits what the linear map leaves, so its own reference response is 0, not c.
  net_model = net["model"]
  in_scale, out_scale = np.asarray(net_model.scales["inputs"]), float(np.asarray(net_model.scales["targets"])[0])
  response_target = None if config.linear_path else coefs[net_basis] * in_scale / out_scale
  response = (np.asarray(uenn.network.linear_response_at_zero(net_model.params, eps=config.eps,
                                                              activation=config.activation), np.float64)[:, 0]
              if config.eps else None)
  results = dict(
      experiment="many_body",
      forces=config.forces,
      target=config.target,
      target_name=target_name(config),
      species=list(symbols) if symbols else ["Ar"],
      test_force_rmse=rmse["test"],
      validation_force_rmse=rmse["validation"],
      train_force_rmse=rmse["train"],
      units="eV/A",
      linear_path=bool(config.linear_path),
      kept_linear_map=net["kept_linear"],
      paper_test_force_rmse=MANY_BODY_PAPER_TEST_RMSE,
      linear_reference=linear,
      plain_network=None if plain is None else dict(
          test_force_rmse=plain["rmse"]["test"], validation_force_rmse=plain["rmse"]["validation"],
          train_force_rmse=plain["rmse"]["train"], num_params=plain["num_params"], steps=plain["result"].steps,
          best_step=plain["result"].best_step, wall_time_s=train_time(plain)),
      table=table,
      reference_potential=reference,
      cost_box=dict(side=side, atoms=len(cost_pos)),
      basis=net_basis,
      **data_summary(ds),
      test_force_rms=float(np.sqrt(np.mean(test.forces ** 2))),
      target_force_std=float(np.sqrt(np.mean(ds["train"].forces ** 2))),
      # eps > 0: |G| of the network's response at zero input and |G - c| / |c|, eV/A per standardized unit.
      zero_input_gain_eV_A=float(np.linalg.norm(response) * out_scale) if response is not None else None,
      linear_response_rel_error=(float(np.linalg.norm(response - response_target) / np.linalg.norm(response_target))
                                 if response is not None and response_target is not None else None),
      linear_reference_gain_eV_A=(float(np.linalg.norm(response_target) * out_scale)
                                  if response_target is not None else None),
      num_params=net["num_params"],
      steps=net["result"].steps,
      best_step=net["result"].best_step,
      steps_per_s=float(np.median([r["steps_per_s"] for r in history])) if history else None,
      wall_time_s=train_time(net),
      data_time_s=data_time,
      linear_time_s=linear_time,
      nve=None if nve is None else dict(
          system=nve["system"], engine=nve["engine"], dt_ps=config.nve_dt, steps=np.asarray(nve["steps"]).tolist(),
          position_rmsd=np.asarray(nve["position_rmsd"]).tolist(),
          temperature={k: np.asarray(v).tolist() for k, v in nve["temperature"].items()},
          atom_steps_per_s=nve["atom_steps_per_s"]),
      load_average=list(os.getloadavg()),
      config=config.to_dict(),
      versions=files.package_versions(),
  )
  files.write_json(os.path.join(workdir, RESULTS), results)
  curves = {"ENN" + (" + linear path" if config.linear_path else ""): history}
  if plain is not None:
    curves["ENN (paper's, direct)"] = plain["result"].history
  plots.plot_loss(curves, os.path.join(workdir, "figures", "loss.png"),
                  title=f"Many atoms, {target_name(config)}: loss vs step (paper Fig. 9)")
  plots.plot_parity(test.forces, net["predictions"]["test"], os.path.join(workdir, "figures", "parity.png"),
                    rmse=rmse["test"], title=f"{target_name(config)}, test set, {len(test):,} atoms (paper Fig. 10)")
  if nve is not None:
    plots.plot_vs_step(nve["steps"], {"network vs reference": nve["position_rmsd"]},
                       os.path.join(workdir, "figures", "nve_rmsd.png"), ylabel="position RMSD (A)", logy=True,
                       title=f"NVE, {target_name(config)}")
    plots.plot_vs_step(nve["steps"], {f"reference ({target_name(config)})": nve["temperature"]["reference"],
                                      "network": nve["temperature"]["network"]},
                       os.path.join(workdir, "figures", "nve_temperature.png"), ylabel="temperature (K)",
                       title=f"NVE, {target_name(config)}")
  refs = ", ".join(f"{v['test_force_rmse']:.2g} ({k})" for k, v in linear.items())
  plain_txt = f"; paper's direct network {plain['rmse']['test']:.5f}" if plain is not None else ""
  log(f"{target_name(config)}: test force RMSE {rmse['test']:.5f} eV/A over {len(test):,} test atoms (validation "
      f"{rmse['validation']:.5f}, train {rmse['train']:.5f}; paper {MANY_BODY_PAPER_TEST_RMSE}){plain_txt}; linear "
      f"references {refs}; training {results['wall_time_s']:.0f} s, data {data_time:.0f} s; results in "
      f"{os.path.join(workdir, RESULTS)}")
  return results


def _write_conservative_results(config, workdir, ds, net_basis, linear, out, data_time, linear_time) -> dict:
  """results.json and the figures of a conservative model (`train_conservative`)."""
  import numpy as np

  from unitary_enn import files, plots
  rmse, predictions, result = out["rmse"], out["predictions"], out["result"]
  history = result.history
  test = ds["test"]
  results = dict(
      experiment="many_body",
      forces=config.forces,
      test_force_rmse=rmse["test"],
      validation_force_rmse=rmse["validation"],
      train_force_rmse=rmse["train"],
      units="eV/A",
      paper_test_force_rmse=MANY_BODY_PAPER_TEST_RMSE,
      linear_reference=linear,
      basis=net_basis,
      **data_summary(ds),
      target_force_std=out["target_force_std"],
      num_params=out["n_params"],
      steps=result.steps,
      best_step=result.best_step,
      steps_per_s=float(np.median([r["steps_per_s"] for r in history])) if history else None,
      wall_time_s=history[-1]["time"] if history else 0.0,
      data_time_s=data_time,
      linear_time_s=linear_time,
      **out["extra"],
      config=config.to_dict(),
      versions=files.package_versions(),
  )
  files.write_json(os.path.join(workdir, RESULTS), results)
  plots.plot_loss({"ENN": history}, os.path.join(workdir, "figures", "loss.png"),
                  title="Many atoms: loss vs step (paper Fig. 9)")
  plots.plot_parity(test.forces, predictions["test"], os.path.join(workdir, "figures", "parity.png"),
                    rmse=rmse["test"], title=f"Many atoms, test set, {len(test):,} atoms (paper Fig. 10)")
  refs = ", ".join(f"{v['test_force_rmse']:.2g} ({k})" for k, v in linear.items())
  print(f"many_body: {config.forces} forces: test force RMSE {rmse['test']:.5f} eV/A over {len(test):,} test atoms "
        f"(validation {rmse['validation']:.5f}, train {rmse['train']:.5f}; paper {MANY_BODY_PAPER_TEST_RMSE}); "
        f"linear references {refs}; training {results['wall_time_s']:.0f} s, data {data_time:.0f} s; results in "
        f"{os.path.join(workdir, RESULTS)}", flush=True)
  return results


if __name__ == "__main__":
  experiment_main("many_body", train_and_evaluate)

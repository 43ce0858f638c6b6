r"""Many-atom forces (paper Sec. 4.5): vector descriptors (eq. 51) of random periodic argon -> ENN -> force.

  python -m experiments.many_body                        # quick default, ~10 minutes on 2 CPU cores
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

Data: sets of 10 random periodic boxes (docs/decisions.md §9), per-atom vector descriptors and lj/cut forces computed once
through jax-md and cached ($UENN_CACHE_DIR or ~/.cache/unitary_enn). Training samples are atoms. Besides the
network, the closed-form linear least-squares map from descriptors to force (docs/decisions.md §9) is fitted on the
training sets for each basis in `config.linear_references` and evaluated on the same test atoms.

Writes to --workdir: results.json, metrics.jsonl, figures/loss.png (Fig. 9), figures/parity.png (Fig. 10),
model.npz (`uenn.load_force_field(workdir)` gives forces for any positions and box) and checkpoint.msgpack
(rerun the same command to resume).
"""

from __future__ import annotations

import os
import time

from absl import logging

from experiments.common import RESULTS, cache_dir, experiment_main, force_rmse, prepare_workdir, setup_dtype
from unitary_enn.constants import MANY_BODY_PAPER_TEST_RMSE



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


def _validate(config):
  from unitary_enn import checks, training
  training.check_config(config)
  checks.sizes("config.hidden", config.hidden, minimum=0)
  if len(config.n_sets) != 3 or min(config.n_sets) < 1:
    raise ValueError(f"config.n_sets must be three positive numbers (train, validation, test), got "
                     f"{config.n_sets}")
  for side in config.box_sides:
    if side < 2 * config.r_cut:
      raise ValueError(f"config.box_sides holds {side} A < 2 * r_cut = {2 * config.r_cut} A")
  if config.n_descriptors < 1:
    raise ValueError(f"config.n_descriptors must be >= 1, got {config.n_descriptors}")
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


def train_conservative(config, workdir: str, ds: dict, bases: dict, net_basis: str, dtype) -> dict:
  """Train the conservative many-atom model on whole boxes; returns the parts of results.json it measures.

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
  e_ref = {name: box_energies(split, pairs[name], config.r_cut) for name, split in ds.items()}
  packed = {name: energy.pack_boxes(split, pairs[name], layout, force_scale=s_f, energies=e_ref[name],
                                    energy_scale=s_e, dtype=np.dtype(config.dtype))
            for name, split in ds.items()}
  print(f"many_body: conservative: pair lists and lj/cut energies of {sum(len(v) for v in pairs.values())} boxes in "
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
  print(f"many_body: conservative forces, {n_params:,} parameters {sizes} + head {tuple(config.head_hidden)}"
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
  n_train = ds["train"].counts.astype(np.float64)
  offset = float(np.sum(n_train * (e_ref["train"] - raw_e["train"])) / np.sum(n_train ** 2))
  e_rmse = {name: float(np.sqrt(np.mean(((raw_e[name] + split.counts * offset - e_ref[name]) / split.counts) ** 2)))
            for name, split in ds.items()}
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


def train_and_evaluate(config, workdir: str) -> dict:
  """Generate (or load) the boxes and descriptors, fit the linear references, train, evaluate, write."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import data, descriptors, files, models, plots, training

  _validate(config)
  dtype = setup_dtype(config)
  prepare_workdir(workdir)
  t0 = time.time()
  net_basis, bases = bases_of(config)
  ds = data.many_body_dataset(
      seed=config.data_seed, n_sets=tuple(config.n_sets), sides=tuple(config.box_sides),
      max_atoms=config.max_atoms, r_min=config.r_min, max_trials=config.max_trials, bases=bases,
      r_cut=config.r_cut, cutoff=config.cutoff, cache_dir=cache_dir(config),
      log=lambda s: print(f"many_body: {s}", flush=True))
  data_time = time.time() - t0
  logging.info("data: %s atoms in %.1f s", {k: len(v) for k, v in ds.items()}, data_time)

  # Closed-form linear references (docs/decisions.md §9), fitted on the training sets only.
  t1 = time.time()
  linear = {}
  for name in bases:
    coef = descriptors.fit_linear_force_map(ds["train"].descriptors[name], ds["train"].forces)
    linear[name] = dict(
        r_s_start=float(bases[name]["r_s"][0]), n_descriptors=len(bases[name]["r_s"]),
        **{f"{split}_force_rmse": force_rmse(descriptors.apply_linear_force_map(coef, s.descriptors[name]),
                                             s.forces) for split, s in ds.items()})
    print(f"many_body: linear reference, {name}: test force RMSE {linear[name]['test_force_rmse']:.3g} eV/A",
          flush=True)
  linear_time = time.time() - t1

  if config.forces == "conservative":
    out = train_conservative(config, workdir, ds, bases, net_basis, dtype)
    models.save_model(workdir, out["model"])
    return _write_results(config, workdir, ds, net_basis, linear, out, data_time, linear_time)

  # The network: descriptors (N, 3, K) / per-channel RMS -> ENN -> force (N, 3, 1) / RMS (docs/decisions.md §4, §9).
  x_train = ds["train"].descriptors[net_basis]
  y_train = ds["train"].forces[:, :, None]
  scales = data.fit_scales(x_train, y_train, per_channel_inputs=True)
  in_scale = np.asarray(scales.inputs, np.float64)
  out_scale = np.asarray(scales.targets, np.float64)

  def standardized(split):
    return (jnp.asarray(split.descriptors[net_basis] / in_scale, dtype),
            jnp.asarray(split.forces[:, :, None] / out_scale, dtype))

  sizes = (int(config.n_descriptors), *(int(h) for h in config.hidden), 1)
  params = uenn.init_uenn(jax.random.PRNGKey(config.seed), sizes, dtype=dtype)
  n_params = uenn.count_params(params)

  def predict(p, x):
    return uenn.apply_uenn(p, x, activation=config.activation, eps=config.eps, precision=config.precision)

  loss_fn = training.mse_loss(predict)

  print(f"many_body: {n_params:,} parameters {sizes}, {len(ds['train']):,} training atoms, "
        f"{len(ds['validation']):,} validation, {len(ds['test']):,} test; basis {net_basis}; optimizer "
        f"{config.optimizer}, {config.steps:,} steps, workdir {workdir}", flush=True)
  result = training.train(loss_fn, params, standardized(ds["train"]), standardized(ds["validation"]),
                          config, workdir)

  best = result.best_params
  predict_jit = jax.jit(predict)

  def forces(split):  # eV/A, (A, 3)
    x, _ = standardized(split)
    return np.concatenate([np.asarray(predict_jit(best, x[s:s + 8192]), np.float64)[..., 0] * out_scale[0]
                           for s in range(0, len(x), 8192)])

  predictions = {name: forces(split) for name, split in ds.items()}
  rmse = {name: force_rmse(predictions[name], split.forces) for name, split in ds.items()}
  model = models.Model(kind="many_body", params=best, sizes=sizes, activation=config.activation, eps=config.eps,
                       scales=scales.to_dict(), dtype=config.dtype,
                       basis=models.Basis(bases[net_basis]["r_s"], float(config.eta), float(config.r_cut),
                                          config.cutoff))
  models.save_model(workdir, model)
  out = dict(rmse=rmse, predictions=predictions, model=model, result=result, n_params=n_params, sizes=sizes,
             target_force_std=float(out_scale[0]), extra={})
  return _write_results(config, workdir, ds, net_basis, linear, out, data_time, linear_time)


def _write_results(config, workdir, ds, net_basis, linear, out, data_time, linear_time) -> dict:
  """results.json and the figures of a trained model (either kind)."""
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
      num_test_atoms=len(test),
      num_train_atoms=len(ds["train"]), num_validation_atoms=len(ds["validation"]),
      atoms_per_box={name: [dict(side=float(a), atoms=int(b)) for a, b in zip(s.box_sides, s.counts)]
                     for name, s in ds.items()},
      test_force_range=[float(test.forces.min()), float(test.forces.max())],
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

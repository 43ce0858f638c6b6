r"""Many-atom forces (paper Sec. 4.5): vector descriptors (eq. 51) of random periodic argon -> ENN -> force.

  python -m experiments.many_body                        # quick default, ~10 minutes on 2 CPU cores
  python -m experiments.many_body --config=experiments/configs/many_body.py:paper --workdir=runs/many_body_paper
  python -m experiments.many_body --config.r_s_start=2.8 --config.n_descriptors=73   # the paper's basis

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

  history = result.history
  test = ds["test"]
  # The linear reference of the network's basis in standardized units, y = x c (docs/decisions.md §9, §14). With
  # smooth unit vectors (eps > 0) the network is x -> x G near zero input, and G times the rounding of a perfect
  # crystal's descriptors (0 by symmetry) is the force it predicts there; c is the physical value of G.
  coef = descriptors.fit_linear_force_map(x_train, ds["train"].forces)
  response_target = coef * in_scale / out_scale[0]
  response = (np.asarray(uenn.network.linear_response_at_zero(best, eps=config.eps, activation=config.activation),
                         np.float64)[:, 0] if config.eps else None)
  results = dict(
      experiment="many_body",
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
      target_force_std=float(out_scale[0]),
      # eps > 0: |G| of the network's response at zero input and |G - c| / |c|, eV/A per standardized unit.
      zero_input_gain_eV_A=float(np.linalg.norm(response) * out_scale[0]) if response is not None else None,
      linear_response_rel_error=(float(np.linalg.norm(response - response_target) / np.linalg.norm(response_target))
                                 if response is not None else None),
      linear_reference_gain_eV_A=float(np.linalg.norm(response_target) * out_scale[0]),
      num_params=n_params,
      steps=result.steps,
      best_step=result.best_step,
      steps_per_s=float(np.median([r["steps_per_s"] for r in history])) if history else None,
      wall_time_s=history[-1]["time"] if history else 0.0,
      data_time_s=data_time,
      linear_time_s=linear_time,
      config=config.to_dict(),
      versions=files.package_versions(),
  )
  files.write_json(os.path.join(workdir, RESULTS), results)
  plots.plot_loss({"ENN": history}, os.path.join(workdir, "figures", "loss.png"),
                  title="Many atoms: loss vs step (paper Fig. 9)")
  plots.plot_parity(test.forces, predictions["test"], os.path.join(workdir, "figures", "parity.png"),
                    rmse=rmse["test"], title=f"Many atoms, test set, {len(test):,} atoms (paper Fig. 10)")
  refs = ", ".join(f"{v['test_force_rmse']:.2g} ({k})" for k, v in linear.items())
  print(f"many_body: test force RMSE {rmse['test']:.5f} eV/A over {len(test):,} test atoms (validation "
        f"{rmse['validation']:.5f}, train {rmse['train']:.5f}; paper {MANY_BODY_PAPER_TEST_RMSE}); linear references "
        f"{refs}; training {results['wall_time_s']:.0f} s, data {data_time:.0f} s; results in "
        f"{os.path.join(workdir, RESULTS)}", flush=True)
  return results


if __name__ == "__main__":
  experiment_main("many_body", train_and_evaluate)

r"""The non-equivariant baseline (paper Sec. 4.3) and what symmetry buys, on the four-atom data.

  python -m experiments.baseline                      # quick default
  python -m experiments.baseline --config=experiments/configs/baseline.py:paper

Trains the equivariant network and the paper's scalar MLPs (A) 18-50-90-100-80-50-12 and
(B) 18-75-120-150-110-70-12 on the same data and split, (i) with full-batch FIRE as in the paper (dt_max halved
for A, divided by 3 for B) and (ii) with the Adam schedule of the equivariant quick config. Every model is
evaluated on the test set and on the test set under one random rotation or reflection per configuration.
A learning curve (test RMSE vs number of training configurations, equal Adam budget) follows.

Writes to --workdir: results.json, figures/loss_comparison.png (Fig. 4 beside Fig. 2, FIRE),
figures/loss_comparison_adam.png, figures/learning_curve.png, and one resumable sub-run per model and setting.
"""

from __future__ import annotations

import os
import time

from experiments.common import RESULTS, experiment_main, force_rmse, prepare_workdir
from unitary_enn.constants import FOUR_BODY_PAPER_TEST_RMSE
from experiments.four_body import FourBodyData

LABELS = {"enn": "ENN", "mlp_a": "MLP (A)", "mlp_b": "MLP (B)"}


def model_fns(name: str, config, dtype):
  """(init(key) -> params, predict(params, x `(S, 3, 6)`) -> `(S, 3, 4)`) for "enn", "mlp_a" or "mlp_b"."""
  import jax.numpy as jnp

  import unitary_enn as uenn

  if name == "enn":
    sizes = tuple(config.enn_sizes)
    return (lambda key: uenn.init_uenn(key, sizes, dtype=dtype),
            lambda p, x: uenn.apply_uenn(p, x, activation=config.activation))
  if name not in ("mlp_a", "mlp_b"):
    raise ValueError(f"unknown model {name!r}; expected enn, mlp_a or mlp_b")
  sizes = tuple(config[f"{name}_sizes"])
  if sizes[0] != 18 or sizes[-1] != 12:
    raise ValueError(f"config.{name}_sizes must map 18 inputs to 12 outputs, got {sizes}")

  def predict(p, x):
    # The paper flattens the 6 input vectors to 18 numbers and reads the 12 outputs back as 4 vectors.
    flat = jnp.reshape(x, x.shape[:-2] + (18,))
    return jnp.reshape(uenn.apply_mlp(p, flat), x.shape[:-2] + (3, 4))

  return (lambda key: uenn.init_mlp(key, sizes, dtype=dtype)), predict


def train_config(config, name: str, optimizer: str, steps: int, eval_every: int):
  """The `training.train` config of one sub-run."""
  import ml_collections
  fire = config.fire.to_dict()
  fire["dt_max"] = fire["dt_max"] * float(config.fire_dt_max_factor[name])
  return ml_collections.ConfigDict(dict(
      optimizer=optimizer, steps=int(steps), eval_every=int(eval_every), checkpoint_every=int(eval_every),
      patience=0, seed=int(config.seed), batch_size=int(config.batch_size),
      learning_rate=float(config.learning_rate), warmup_steps=int(config.warmup_steps),
      end_lr_factor=float(config.end_lr_factor), fire=fire))


def random_orthogonal_batch(seed: int, count: int, dtype):
  """One Haar-random O(3) matrix (rotation or reflection) per configuration, `(count, 3, 3)`."""
  import jax

  import unitary_enn as uenn
  keys = jax.random.split(jax.random.PRNGKey(seed), count)
  return jax.vmap(lambda k: uenn.random_unitary(k, 3, dtype))(keys)


def train_and_evaluate(config, workdir: str) -> dict:
  import jax
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import files, plots, training

  t_start = time.time()
  # Every sub-run's training config is checked before the data is generated.
  for name in set(config.models) | set(config.curve_models):
    model_fns(name, config, None)
    for setting, steps, every in (("fire", config.fire_steps, config.fire_eval_every),
                                  ("adam", config.adam_steps, config.adam_eval_every),
                                  ("adam", config.curve_steps, config.curve_eval_every)):
      training.check_config(train_config(config, name, setting, steps, every))
  prepare_workdir(workdir)
  fb = FourBodyData(config)
  ds, dtype = fb.splits, fb.dtype
  test = ds["test"]
  q = random_orthogonal_batch(config.rotation_seed, len(test), dtype)
  rot_inputs, rot_targets = np.asarray(q @ test.inputs), np.asarray(q @ test.targets)
  n_reflections = int(np.sum(np.linalg.det(np.asarray(q)) < 0))

  def fit(name, optimizer, steps, eval_every, n_train, subdir):
    init, predict = model_fns(name, config, dtype)
    loss_fn = training.mse_loss(predict)
    x_tr, y_tr = fb.standardized("train")
    if n_train:
      x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    params = init(jax.random.PRNGKey(config.seed))
    tc = train_config(config, name, optimizer, steps, eval_every)
    print(f"baseline: {LABELS[name]} ({uenn.count_params(params):,} parameters), {optimizer}, {steps:,} steps, "
          f"{len(x_tr):,} training configurations -> {subdir}", flush=True)
    res = training.train(loss_fn, params, (x_tr, y_tr), fb.standardized("validation"), tc,
                         os.path.join(workdir, subdir))
    best = res.best_params
    rmse = {f"{s}_force_rmse": force_rmse(fb.forces(predict, best, ds[s].inputs), ds[s].targets)
            for s in ("train", "validation", "test")}
    rmse["rotated_test_force_rmse"] = force_rmse(fb.forces(predict, best, rot_inputs), rot_targets)
    rmse.update(num_params=uenn.count_params(params), steps=res.steps, best_step=res.best_step)
    return rmse, res.history

  models, histories = {}, {"fire": {}, "adam": {}}
  fire_subset = int(config.fire_train_subset) or None
  for name in config.models:
    models[name] = {}
    for setting, steps, every, n_train in (
        ("fire", config.fire_steps, config.fire_eval_every, fire_subset),
        ("adam", config.adam_steps, config.adam_eval_every, None)):
      models[name][setting], histories[setting][LABELS[name]] = fit(
          name, setting, steps, every, n_train, os.path.join(setting, name))
      r = models[name][setting]
      print(f"baseline: {LABELS[name]:8s} {setting}: test {r['test_force_rmse']:.5f}  rotated test "
            f"{r['rotated_test_force_rmse']:.5f}  train {r['train_force_rmse']:.5f} eV/A", flush=True)

  n_train_all = len(ds["train"])
  sizes = [int(s) for s in config.curve_sizes if s <= n_train_all]
  curve = {"sizes": sizes}
  for name in config.curve_models:
    curve[name] = [fit(name, "adam", config.curve_steps, config.curve_eval_every, n,
                       os.path.join("curve", f"{name}_{n}"))[0]["test_force_rmse"] for n in sizes]

  results = dict(
      experiment="baseline",
      units="eV/A",
      models=models,
      learning_curve=curve,
      rotated_test=dict(num_configurations=len(test), num_reflections=n_reflections, seed=config.rotation_seed),
      fire_train_configurations=fire_subset or n_train_all,
      paper_enn_test_force_rmse=FOUR_BODY_PAPER_TEST_RMSE,
      wall_time_s=time.time() - t_start,
      config=config.to_dict(),
      versions=files.package_versions(),
  )
  files.write_json(os.path.join(workdir, RESULTS), results)
  fig = os.path.join(workdir, "figures")
  plots.plot_loss(histories["fire"], os.path.join(fig, "loss_comparison.png"),
                  title="FIRE, full batch: ENN vs scalar MLPs (paper Fig. 2 and 4)")
  plots.plot_loss(histories["adam"], os.path.join(fig, "loss_comparison_adam.png"),
                  title="Adam, mini-batch: ENN vs scalar MLPs")
  plots.plot_learning_curve(curve, {k: LABELS[k] for k in config.curve_models},
                            os.path.join(fig, "learning_curve.png"))
  print(f"baseline: done in {results['wall_time_s']:.0f} s; results in {os.path.join(workdir, RESULTS)}")
  return results


if __name__ == "__main__":
  experiment_main("baseline", train_and_evaluate)

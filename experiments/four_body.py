r"""Four-atom forces (paper Sec. 4.1-4.2): train the equivariant network on LJ argon clusters.

  python -m experiments.four_body                        # quick default, a few minutes on a laptop CPU
  python -m experiments.four_body --config=experiments/configs/four_body.py:paper --workdir=runs/paper
  python -m experiments.four_body --config.steps=100000  # any config key can be overridden

Writes to --workdir: results.json, metrics.jsonl, figures/loss.png (Fig. 2), figures/parity.png (Fig. 3),
model.pkl (`uenn.load_force_field(workdir)` loads it) and checkpoint.pkl (rerun the same command to resume).
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.common import cache_dir, force_rmse, run_app, setup_dtype  # noqa: F401 (re-exported)

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_HERE, "configs", "four_body.py"), "Experiment config (path[:variant]).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", os.path.join("workdirs", "four_body"),
                               "Where results, figures and checkpoints go.")


def train_and_evaluate(config, workdir: str) -> dict:
  """Generate (or load) the data, train, evaluate on the test split, write results and figures."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import data, io, plots, training

  dtype = setup_dtype(config)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.time()
  ds = data.four_body_dataset(config.n_configs, seed=config.data_seed, r_min=config.r_min,
                              position_std=config.position_std, cache_dir=cache_dir(config))
  logging.info("data: %s configurations in %.1f s", {k: len(v) for k, v in ds.items()}, time.time() - t0)
  scales = data.fit_scales(ds["train"].inputs, ds["train"].targets)
  in_scale = jnp.asarray(scales.inputs, dtype)
  out_scale = jnp.asarray(scales.targets, dtype)

  def standardized(split):
    return (jnp.asarray(split.inputs, dtype) / in_scale, jnp.asarray(split.targets, dtype) / out_scale)

  sizes = tuple(config.sizes)
  if sizes[0] != 6 or sizes[-1] != 4:
    raise ValueError(f"config.sizes must start with 6 input vectors and end with 4 force vectors, got {sizes}")
  params = uenn.init_uenn(jax.random.PRNGKey(config.seed), sizes, dtype=dtype)
  n_params = uenn.count_params(params)

  def predict(p, x):
    return uenn.apply_uenn(p, x, activation=config.activation)

  def loss_fn(p, x, y):
    return jnp.mean(jnp.abs(predict(p, x) - y) ** 2)

  print(f"four_body: {n_params:,} parameters {sizes}, {len(ds['train']):,} training configurations, "
        f"optimizer {config.optimizer}, {config.steps:,} steps, workdir {workdir}", flush=True)
  result = training.train(loss_fn, params, standardized(ds["train"]), standardized(ds["validation"]),
                          config, workdir)

  best = result.best_params
  predict_jit = jax.jit(predict)

  def forces(split):  # eV/A, layer layout (S, 3, 4)
    x, _ = standardized(split)
    return np.concatenate([np.asarray(predict_jit(best, x[s:s + 8192]) * out_scale)
                           for s in range(0, len(x), 8192)])

  rmse = {name: force_rmse(forces(split), split.targets) for name, split in ds.items()}
  test_pred = forces(ds["test"])
  model = dict(kind="four_body", n_atoms=4, params=best, sizes=sizes, activation=config.activation,
               scales=scales.to_dict(), dtype=config.dtype)
  io.save_model(workdir, model)

  history = result.history
  results = dict(
      experiment="four_body",
      test_force_rmse=rmse["test"],
      validation_force_rmse=rmse["validation"],
      train_force_rmse=rmse["train"],
      units="eV/A",
      paper_test_force_rmse=0.00118,
      target_force_std=float(scales.targets[0]),
      num_params=n_params,
      steps=result.steps,
      best_step=result.best_step,
      wall_time_s=history[-1]["time"] if history else 0.0,
      num_train=len(ds["train"]), num_validation=len(ds["validation"]), num_test=len(ds["test"]),
      config=config.to_dict(),
      versions=io.package_versions(),
  )
  io.write_json(os.path.join(workdir, io.RESULTS), results)
  plots.plot_loss({"ENN": history}, os.path.join(workdir, "figures", "loss.png"),
                  title="Four atoms: loss vs step (paper Fig. 2)")
  plots.plot_parity(ds["test"].targets, test_pred, os.path.join(workdir, "figures", "parity.png"),
                    rmse=rmse["test"], title="Four atoms, test set (paper Fig. 3)")
  print(f"four_body: test force RMSE {rmse['test']:.5f} eV/A (validation {rmse['validation']:.5f}, "
        f"train {rmse['train']:.5f}; paper 0.00118 after 10^7 FIRE steps); "
        f"wall time {results['wall_time_s']:.0f} s; results in {os.path.join(workdir, io.RESULTS)}",
        flush=True)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  run_app(main)

r"""Four-atom forces (paper Sec. 4.1-4.2): train the equivariant network on LJ argon clusters.

  python -m experiments.four_body                        # quick default, a few minutes on a laptop CPU
  python -m experiments.four_body --config=experiments/configs/four_body.py:paper --workdir=runs/paper
  python -m experiments.four_body --config.steps=100000  # any config key can be overridden

Writes to --workdir: results.json, metrics.jsonl, figures/loss.png (Fig. 2), figures/parity.png (Fig. 3),
model.npz (`uenn.load_force_field(workdir)` loads it) and checkpoint.msgpack (rerun the same command to resume).
"""

from __future__ import annotations

import os
import time

from absl import logging

from experiments.common import RESULTS, cache_dir, experiment_main, force_rmse, prepare_workdir, setup_dtype
from unitary_enn.constants import FOUR_BODY_PAPER_TEST_RMSE


class FourBodyData:
  """The four-atom splits (Sec. 4.1) with the training split's scales, standardized on request."""

  def __init__(self, config):
    import jax.numpy as jnp
    from unitary_enn import data

    self.dtype = setup_dtype(config)
    t0 = time.time()
    self.splits = data.four_body_dataset(config.n_configs, seed=config.data_seed, r_min=config.r_min,
                                         position_std=config.position_std, cache_dir=cache_dir(config))
    logging.info("data: %s configurations in %.1f s", {k: len(v) for k, v in self.splits.items()},
                 time.time() - t0)
    self.scales = data.fit_scales(self.splits["train"].inputs, self.splits["train"].targets)
    self.in_scale = jnp.asarray(self.scales.inputs, self.dtype)
    self.out_scale = jnp.asarray(self.scales.targets, self.dtype)

  def standardized(self, name: str, inputs=None, targets=None):
    """(inputs, targets) of split `name` (or the arrays given) divided by the scales: `(S, 3, 6)`, `(S, 3, 4)`."""
    import jax.numpy as jnp
    split = self.splits[name]
    x = split.inputs if inputs is None else inputs
    y = split.targets if targets is None else targets
    return jnp.asarray(x, self.dtype) / self.in_scale, jnp.asarray(y, self.dtype) / self.out_scale

  def augmentation(self, config):
    """The mini-batch hook of `config.augment_permutations` (random relabelling of the 4 atoms), or None."""
    from unitary_enn import data
    return data.permutation_augmentation(4) if config.get("augment_permutations", False) else None

  def predictor(self, predict, config):
    """`predict` itself, or its average over the 24 relabellings when `config.symmetrize`."""
    from unitary_enn import data
    return data.symmetrize_permutations(predict, 4) if config.get("symmetrize", False) else predict

  def forces(self, predict, params, inputs, batch: int = 8192):
    """Forces in eV/A, layer layout `(S, 3, 4)`, from `predict(params, standardized inputs)`."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    predict_jit = jax.jit(predict)
    x = jnp.asarray(inputs, self.dtype) / self.in_scale
    return np.concatenate([np.asarray(predict_jit(params, x[s:s + batch]) * self.out_scale)
                           for s in range(0, len(x), batch)])


def train_and_evaluate(config, workdir: str) -> dict:
  """Generate (or load) the data, train, evaluate on the test split, write results and figures."""
  import jax

  import unitary_enn as uenn
  from unitary_enn import checks, files, models, plots, training

  # Everything that can be checked before the data is generated (and before the workdir is touched).
  training.check_config(config)
  sizes = checks.sizes("config.sizes", config.sizes)
  if sizes[0] != 6 or sizes[-1] != 4:
    raise ValueError(f"config.sizes must start with 6 input vectors and end with 4 force vectors, got {sizes}")
  prepare_workdir(workdir)
  fb = FourBodyData(config)
  ds, scales, dtype = fb.splits, fb.scales, fb.dtype

  params = uenn.init_uenn(jax.random.PRNGKey(config.seed), sizes, dtype=dtype)
  n_params = uenn.count_params(params)

  def predict(p, x):
    return uenn.apply_uenn(p, x, activation=config.activation, eps=config.eps, precision=config.precision)

  loss_fn = training.mse_loss(predict)

  print(f"four_body: {n_params:,} parameters {sizes}, {len(ds['train']):,} training configurations, "
        f"optimizer {config.optimizer}, {config.steps:,} steps, workdir {workdir}", flush=True)
  predict_eval = fb.predictor(predict, config)
  result = training.train(loss_fn, params, fb.standardized("train"), fb.standardized("validation"),
                          config, workdir, augment=fb.augmentation(config),
                          eval_loss_fn=training.mse_loss(predict_eval))

  best = result.best_params

  def forces(split):  # eV/A, layer layout (S, 3, 4)
    return fb.forces(predict_eval, best, split.inputs)

  rmse = {name: force_rmse(forces(split), split.targets) for name, split in ds.items()}
  test_pred = forces(ds["test"])
  model = models.Model(kind="four_body", n_atoms=4, params=best, sizes=sizes, activation=config.activation, eps=config.eps,
                       scales=scales.to_dict(), dtype=config.dtype, symmetrize=bool(config.get("symmetrize", False)))
  models.save_model(workdir, model)

  history = result.history
  results = dict(
      experiment="four_body",
      test_force_rmse=rmse["test"],
      validation_force_rmse=rmse["validation"],
      train_force_rmse=rmse["train"],
      units="eV/A",
      paper_test_force_rmse=FOUR_BODY_PAPER_TEST_RMSE,
      target_force_std=float(scales.targets[0]),
      num_params=n_params,
      steps=result.steps,
      best_step=result.best_step,
      wall_time_s=history[-1]["time"] if history else 0.0,
      num_train=len(ds["train"]), num_validation=len(ds["validation"]), num_test=len(ds["test"]),
      config=config.to_dict(),
      versions=files.package_versions(),
  )
  files.write_json(os.path.join(workdir, RESULTS), results)
  plots.plot_loss({"ENN": history}, os.path.join(workdir, "figures", "loss.png"),
                  title="Four atoms: loss vs step (paper Fig. 2)")
  plots.plot_parity(ds["test"].targets, test_pred, os.path.join(workdir, "figures", "parity.png"),
                    rmse=rmse["test"], title="Four atoms, test set (paper Fig. 3)")
  print(f"four_body: test force RMSE {rmse['test']:.5f} eV/A (validation {rmse['validation']:.5f}, "
        f"train {rmse['train']:.5f}; paper {FOUR_BODY_PAPER_TEST_RMSE} after 10^7 FIRE steps); "
        f"wall time {results['wall_time_s']:.0f} s; results in {os.path.join(workdir, RESULTS)}",
        flush=True)
  return results


if __name__ == "__main__":
  experiment_main("four_body", train_and_evaluate)

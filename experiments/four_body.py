r"""Four-atom forces (paper Sec. 4.1-4.2): train the equivariant network on LJ argon clusters.

  python -m experiments.four_body                        # quick default, a few minutes on a laptop CPU
  python -m experiments.four_body --config=experiments/configs/four_body.py:paper --workdir=runs/paper
  python -m experiments.four_body --config.steps=100000  # any config key can be overridden
  python -m experiments.four_body --config=experiments/configs/four_body.py:conservative   # F = -grad E

`config.forces` chooses the model: "direct" (the paper's network: its 4 output vectors are the forces) or
"conservative" (the same layers end in M vectors, whose Gram invariants feed a small scalar head that gives the
cluster's energy E; F = -dE/dR by jax.grad, `unitary_enn.energy`). Both train on the same data with the eq. 44 loss
on the forces (force matching); a conservative model adds `config.energy_weight` times the squared error of the
LJ energy (standardized), and its energy offset is fitted to the training energies after training, so that its
total energy is comparable with the analytical one in MD.

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
    """The mini-batch hook of `config.augment_permutations` (random relabelling of the 4 atoms), or None.

    Targets may carry more columns than the 4 forces (the energy of a conservative model): those are kept.
    """
    from unitary_enn import data
    if not config.get("augment_permutations", False):
      return None
    relabel = data.permutation_augmentation(4)

    def augment(key, inputs, targets):
      import jax.numpy as jnp
      x, f = relabel(key, inputs, targets[..., :4])
      return x, jnp.concatenate([f, targets[..., 4:]], axis=-1)

    return augment

  def energies(self, name: str):
    """LJ energies `(S,)` in eV of split `name` (full pair sum in float64, as the forces, docs/decisions.md §6)."""
    import jax
    import numpy as np
    from unitary_enn.potentials import lj_energy
    with jax.enable_x64(True):
      return np.asarray(jax.jit(lj_energy)(np.asarray(self.splits[name].positions, np.float64)))

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


def _check_config(config):
  from unitary_enn import checks
  sizes = checks.sizes("config.sizes", config.sizes)
  if config.forces not in ("direct", "conservative"):
    raise ValueError(f"config.forces must be 'direct' or 'conservative', got {config.forces!r}")
  if config.forces == "direct" and (sizes[0] != 6 or sizes[-1] != 4):
    raise ValueError(f"config.sizes must start with 6 input vectors and end with 4 force vectors, got {sizes}")
  if config.forces == "conservative" and sizes[0] != 6:
    raise ValueError(f"config.sizes must start with 6 input vectors (the pair vectors), got {sizes}")
  if config.energy_weight < 0:
    raise ValueError(f"config.energy_weight must be >= 0, got {config.energy_weight}")
  return sizes


class ConservativeFourBody:
  """The conservative model's pieces for training: predictors of standardized forces (and energies) and the loss.

  Targets carry a fifth column: (E / s_E, 0, 0) with s_E = s_in s_F the energy scale (`unitary_enn.energy`).
  """

  def __init__(self, config, fb: FourBodyData):
    self.config = config
    self.energy_scale = float(fb.scales.inputs[0] * fb.scales.targets[0])  # eV
    self.e_ref = {name: fb.energies(name) for name in fb.splits}

  def targets(self, fb: FourBodyData, name: str):
    """(standardized inputs, targets `(S, 3, 5)`): forces, then the energy in the first row of the last column."""
    import jax.numpy as jnp
    x, y = fb.standardized(name)
    e = jnp.zeros((y.shape[0], 3, 1), y.dtype).at[:, 0, 0].set(jnp.asarray(self.e_ref[name] / self.energy_scale,
                                                                           y.dtype))
    return x, jnp.concatenate([y, e], axis=-1)

  def energy_and_forces(self, symmetrize: bool):
    """`fn(params, x) -> (E_std (S,), F_std (S, 3, 4))`, F = -dE/dR."""
    import jax
    import jax.numpy as jnp
    from unitary_enn import energy
    kw = dict(activation=self.config.activation, eps=self.config.eps, precision=self.config.precision,
              symmetrize=symmetrize)

    def total(p, v):
      e = energy.four_body_energy(p, v, **kw)
      return jnp.sum(e), e

    def fn(p, x):
      (_, e), g = jax.value_and_grad(total, argnums=1, has_aux=True)(p, x)
      d = jnp.asarray(energy.pair_incidence(4), g.dtype)
      return e, -jnp.einsum("...xp,pa->...xa", g, d, precision=jax.lax.Precision.HIGHEST)

    return fn

  def loss(self, symmetrize: bool):
    """Eq. 44 on the forces (standardized), plus energy_weight x the squared standardized energy error."""
    import jax.numpy as jnp
    fn = self.energy_and_forces(symmetrize)
    w = float(self.config.energy_weight)

    def loss_fn(p, x, y):
      e, f = fn(p, x)
      out = jnp.mean((f - y[..., :4]) ** 2)
      return out + w * jnp.mean((e - y[:, 0, 4]) ** 2) if w else out

    return loss_fn

  def forces_predictor(self, symmetrize: bool):
    """`predict(params, x) -> F_std (S, 3, 4)`, for `FourBodyData.forces`."""
    from unitary_enn import energy
    c = self.config
    return lambda p, x: energy.four_body_forces(p, x, activation=c.activation, eps=c.eps, precision=c.precision,
                                                symmetrize=symmetrize)

  def raw_energies(self, params, fb: FourBodyData, name: str, symmetrize: bool, batch: int = 8192):
    """s_E E_std in eV (no offset) of split `name`."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from unitary_enn import energy
    c = self.config
    fn = jax.jit(lambda p, x: energy.four_body_energy(p, x, activation=c.activation, eps=c.eps,
                                                      precision=c.precision, symmetrize=symmetrize))
    x = jnp.asarray(fb.splits[name].inputs, fb.dtype) / fb.in_scale
    return np.concatenate([np.asarray(fn(params, x[s:s + batch]), np.float64)
                           for s in range(0, len(x), batch)]) * self.energy_scale


def train_and_evaluate(config, workdir: str) -> dict:
  """Generate (or load) the data, train, evaluate on the test split, write results and figures."""
  import jax
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import energy, files, models, plots, training

  # Everything that can be checked before the data is generated (and before the workdir is touched).
  training.check_config(config)
  sizes = _check_config(config)
  conservative = config.forces == "conservative"
  prepare_workdir(workdir)
  fb = FourBodyData(config)
  ds, scales, dtype = fb.splits, fb.scales, fb.dtype
  symmetrize = bool(config.get("symmetrize", False))

  if conservative:
    cons = ConservativeFourBody(config, fb)
    params = energy.init_energy_network(jax.random.PRNGKey(config.seed), sizes, tuple(config.head_hidden),
                                        dtype=dtype)
    loss_fn, eval_loss_fn = cons.loss(False), cons.loss(symmetrize)
    predict_eval = cons.forces_predictor(symmetrize)
    train_xy, val_xy = cons.targets(fb, "train"), cons.targets(fb, "validation")
  else:
    params = uenn.init_uenn(jax.random.PRNGKey(config.seed), sizes, dtype=dtype)

    def predict(p, x):
      return uenn.apply_uenn(p, x, activation=config.activation, eps=config.eps, precision=config.precision)

    loss_fn = training.mse_loss(predict)
    predict_eval = fb.predictor(predict, config)
    eval_loss_fn = training.mse_loss(predict_eval)
    train_xy, val_xy = fb.standardized("train"), fb.standardized("validation")
  n_params = uenn.count_params(params)

  print(f"four_body: {config.forces} forces, {n_params:,} parameters {sizes}"
        f"{' + head ' + str(tuple(config.head_hidden)) if conservative else ''}, {len(ds['train']):,} training "
        f"configurations, optimizer {config.optimizer}, {config.steps:,} steps, workdir {workdir}", flush=True)
  result = training.train(loss_fn, params, train_xy, val_xy, config, workdir, augment=fb.augmentation(config),
                          eval_loss_fn=eval_loss_fn)

  best = result.best_params

  def forces(split):  # eV/A, layer layout (S, 3, 4)
    return fb.forces(predict_eval, best, split.inputs)

  rmse = {name: force_rmse(forces(split), split.targets) for name, split in ds.items()}
  test_pred = forces(ds["test"])
  extra = {}
  if conservative:
    # The energy offset per atom that makes the model's energies match LJ on average over the training split
    # (forces do not see it; MD drifts and energy comparisons do).
    raw = {name: cons.raw_energies(best, fb, name, symmetrize) for name in ds}
    offset = float(np.mean(cons.e_ref["train"] - raw["train"])) / 4
    e_rmse = {name: float(np.sqrt(np.mean((raw[name] + 4 * offset - cons.e_ref[name]) ** 2))) for name in ds}
    model_scales = dict(scales.to_dict(), energy=cons.energy_scale, energy_offset=offset)
    extra = dict(test_energy_rmse_eV=e_rmse["test"], validation_energy_rmse_eV=e_rmse["validation"],
                 train_energy_rmse_eV=e_rmse["train"], energy_offset_eV_per_atom=offset,
                 energy_scale_eV=cons.energy_scale, target_energy_std_eV=float(np.std(cons.e_ref["train"])),
                 head_hidden=list(config.head_hidden))
  else:
    model_scales = scales.to_dict()
  model = models.Model(kind="four_body", n_atoms=4, params=best, sizes=sizes, activation=config.activation,
                       eps=config.eps, scales=model_scales, dtype=config.dtype, symmetrize=symmetrize,
                       forces=config.forces, head_hidden=tuple(config.head_hidden) if conservative else ())
  models.save_model(workdir, model)

  history = result.history
  results = dict(
      experiment="four_body",
      forces=config.forces,
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
      **extra,
      config=config.to_dict(),
      versions=files.package_versions(),
  )
  files.write_json(os.path.join(workdir, RESULTS), results)
  plots.plot_loss({"ENN": history}, os.path.join(workdir, "figures", "loss.png"),
                  title="Four atoms: loss vs step (paper Fig. 2)")
  plots.plot_parity(ds["test"].targets, test_pred, os.path.join(workdir, "figures", "parity.png"),
                    rmse=rmse["test"], title="Four atoms, test set (paper Fig. 3)")
  energy_line = (f"test energy RMSE {extra['test_energy_rmse_eV']:.2e} eV (LJ energy std "
                 f"{extra['target_energy_std_eV']:.3g} eV); " if conservative else "")
  print(f"four_body: {config.forces} forces: test force RMSE {rmse['test']:.5f} eV/A (validation "
        f"{rmse['validation']:.5f}, train {rmse['train']:.5f}; paper {FOUR_BODY_PAPER_TEST_RMSE} after 10^7 FIRE "
        f"steps); {energy_line}"
        f"wall time {results['wall_time_s']:.0f} s; results in {os.path.join(workdir, RESULTS)}",
        flush=True)
  return results


if __name__ == "__main__":
  experiment_main("four_body", train_and_evaluate)

r"""The unitary case itself: complex U(n) tasks, the UENN against an MLP with as many parameters.

  python -m experiments.unitary                       # quick default, minutes on 2 CPU cores
  python -m experiments.unitary --config=experiments/configs/unitary.py:paper --workdir=runs/unitary_paper

Two U(n)-equivariant maps of M complex vectors in C^n (`unitary_enn.quantum`), for each n in config.ns:
  loewdin   X -> X (X^H X)^(-1/2), the orthonormal set closest to X (Loewdin 1950);
  dynamics  Psi -> exp(-i H(Psi) dt) Psi, one step of mean-field dynamics, H = g P + g2 P^2, P = Psi Psi^H.
Each is learned by the UENN (complex weights, softsign with residue; Sec. 3.2) and by a real MLP on the stacked
real and imaginary parts with the same depth and parameter count, both predicting the correction f(X) - X on
the same data with the same optimizer (Adam or FIRE, complex gradients conjugated). Errors are relative,
||pred - target||_F / ||target||_F over a set, on the test set and on the test set under one Haar-random
U(n) per sample. The learned dynamics step is rolled out against the exact propagation (norms, overlaps).
A learning curve (error vs training-set size, same optimizer budget) runs at n = config.curve_n.

Writes to --workdir: results.json, table.md (the summary table), figures/*.png, and one resumable sub-run per
model (TASK/nN/MODEL, curve/TASK/MODEL_SIZE): rerun the same command to pick up where it stopped.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Callable, NamedTuple

import numpy as np

from experiments.common import experiment_main, prepare_workdir, setup_dtype

TASKS = ("loewdin", "dynamics")
MODELS = ("uenn", "mlp")  # the comparison of every task
CAYLEY_MODELS = ("uenn_cayley", "mlp_cayley")  # dynamics only, those in config.cayley_models
LABELS = {"uenn": "UENN", "mlp": "MLP", "uenn_cayley": "UENN, Cayley step", "mlp_cayley": "MLP, Cayley step"}
SPLITS = ("train", "validation", "test", "rotated_test")


def num_vectors(config, task: str, n: int) -> int:
  """M for a task: Loewdin takes at most n vectors (more cannot be linearly independent in C^n)."""
  if task == "loewdin":
    return min(int(config.loewdin_vectors), n)
  if task == "dynamics":
    return int(config.dynamics_orbitals)
  raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def models_for(config, task: str) -> tuple[str, ...]:
  """The models trained on a task: UENN and MLP, plus config.cayley_models (unitary steps) for the dynamics."""
  extra = tuple(config.cayley_models) if task == "dynamics" else ()
  unknown = [k for k in extra if k not in CAYLEY_MODELS]
  if unknown:
    raise ValueError(f"config.cayley_models has {unknown}; expected a subset of {CAYLEY_MODELS}")
  return MODELS + extra


def reference_fn(config, task: str) -> Callable:
  """The exact map X `(..., n, M)` -> f(X) of a task (evaluate it in complex128 for reference values)."""
  from unitary_enn import quantum
  if task == "loewdin":
    return quantum.loewdin
  if task == "dynamics":
    return functools.partial(quantum.propagate_exact, dt=float(config.dt), g=float(config.g), g2=float(config.g2))
  raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


class TaskData(NamedTuple):
  """One task at one n: complex128 (inputs, targets) per split, the test unitaries and three scalar scales."""
  task: str
  n: int
  m: int
  splits: dict  # name -> quantum.ComplexData, `(S, n, m)` complex128
  unitaries: np.ndarray  # `(num_test, n, n)`, the Haar-random U of the rotated test set
  in_scale: float  # rms vector norm of the training inputs X
  delta_scale: float  # rms vector norm of the training corrections f(X) - X
  target_scale: float  # rms vector norm of the training targets f(X)


def make_task_data(config, task: str, n: int) -> TaskData:
  """Draw the data of `task` in C^n, split it, and build the Haar-rotated test set with exact targets.

  Standardization is by two scalars only (never a mean, never a per-coordinate scale): both commute with every
  U, so the standardized models stay U(n)-equivariant.
  """
  import jax
  import jax.numpy as jnp

  from unitary_enn import quantum, testing
  m = num_vectors(config, task, n)
  counts = dict(train=int(config.num_train), validation=int(config.num_validation), test=int(config.num_test))
  total = sum(counts.values())
  seed = (int(config.data_seed), TASKS.index(task), n)
  if task == "loewdin":
    data = quantum.loewdin_dataset(total, n, m, seed=seed, anisotropy=config.anisotropy,
                                   normalize=config.normalize, max_condition=config.max_condition)
  else:
    data = quantum.dynamics_dataset(total, n, m, dt=config.dt, g=config.g, g2=config.g2, seed=seed,
                                    anisotropy=config.anisotropy, normalize=config.normalize)
  splits, start = {}, 0
  for name, count in counts.items():
    splits[name] = quantum.ComplexData(data.inputs[start:start + count], data.targets[start:start + count])
    start += count
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.PRNGKey(int(config.rotation_seed) * 1000 + n), counts["test"])
    u = jax.jit(jax.vmap(lambda k: testing.random_unitary(k, n, jnp.complex128)))(keys)
    x_rot = u @ jnp.asarray(splits["test"].inputs, jnp.complex128)
    # Targets of the rotated inputs from the reference itself, not from U f(X): the comparison then also
    # checks, on every sample, that the reference is equivariant.
    y_rot = jax.jit(reference_fn(config, task))(x_rot)
    splits["rotated_test"] = quantum.ComplexData(np.asarray(x_rot), np.asarray(y_rot))
  x, y = splits["train"]

  def rms_norm(a):
    return float(np.sqrt(np.mean(np.sum(np.abs(a) ** 2, axis=-2))))

  return TaskData(task, n, m, splits, np.asarray(u), rms_norm(x), rms_norm(y - x), rms_norm(y))


def mlp_param_count(d: int, width: int, depth: int) -> int:
  """Real parameters of the MLP d -> width (x depth) -> d."""
  return d * width + (depth - 1) * width * width + width * d + depth * width + d


def matched_mlp_width(target: int, d: int, depth: int) -> int:
  """The hidden width whose MLP d -> width (x depth) -> d has the parameter count closest to `target`."""
  if depth < 1:
    raise ValueError(f"the MLP needs at least one hidden layer, got depth {depth}")
  best, width = None, 1
  while True:
    diff = mlp_param_count(d, width, depth) - target
    if best is None or abs(diff) < abs(best[0]):
      best = (diff, width)
    if diff > 0:
      return best[1]
    width += 1


def residual_model(config, kind: str) -> bool:
  """Whether `kind` predicts the correction f(X) - X (always so for the Cayley step) rather than f(X)."""
  return bool(config.residual) or kind.endswith("_cayley")


def model_fns(kind: str, data: TaskData, config, dtype):
  """(init(key) -> params, apply(params, x) -> y) on standardized complex data `(..., n, m)` -> `(..., n, m)`.

  "uenn": the network of Sec. 3.2, sizes (m, *config.uenn_hidden, m), complex weights.
  "mlp": a real MLP on the 2 n m stacked real and imaginary parts, same depth, width matched in parameters.
  "uenn_cayley", "mlp_cayley": the same networks output generator vectors Phi; the step is
    `quantum.cayley_step(Psi, Phi)`, unitary by construction (norms kept to rounding), and `apply` returns its
    standardized correction.
  x is X / in_scale; y is (f(X) - X) / delta_scale for residual models, f(X) / target_scale otherwise.
  """
  import jax.numpy as jnp

  import unitary_enn as uenn
  from unitary_enn import quantum
  base, _, head = kind.partition("_")
  if base not in ("uenn", "mlp") or head not in ("", "cayley"):
    raise ValueError(f"unknown model {kind!r}; expected one of {MODELS + CAYLEY_MODELS}")
  n, m = data.n, data.m
  real = jnp.dtype(dtype)
  cdtype = jnp.result_type(real, jnp.complex64)
  hidden = tuple(int(h) for h in config.uenn_hidden)
  sizes = (m, *hidden, m)
  if base == "uenn":
    def init(key):
      return uenn.init_uenn(key, sizes, dtype=cdtype)

    def net(p, x):
      return uenn.apply_uenn(p, x, activation=config.activation)
  else:
    n_uenn = 2 * 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))  # W and b, complex
    d = 2 * n * m
    width = matched_mlp_width(n_uenn, d, len(hidden))

    def init(key):
      return uenn.init_mlp(key, (d, *([width] * len(hidden)), d), dtype=real)

    def net(p, x):
      flat = jnp.concatenate([jnp.real(x), jnp.imag(x)], axis=-2).reshape(x.shape[:-2] + (d,))
      out = uenn.apply_mlp(p, flat).reshape(x.shape[:-2] + (2 * n, m))
      return (out[..., :n, :] + 1j * out[..., n:, :]).astype(cdtype)

  if head != "cayley":
    return init, net

  def apply(p, x):
    psi = data.in_scale * x
    return (quantum.cayley_step(psi, data.delta_scale * net(p, x)) - psi) / data.delta_scale

  return init, apply


def physical_predictor(apply: Callable, data: TaskData, residual: bool) -> Callable:
  """`predict(params, X) -> f(X)` in physical units: X + s apply(params, X / s_in) (residual) or s apply(...).

  Scalars and the identity: U(n)-equivariant whenever `apply` is.
  """
  def predict(params, x):
    if residual:
      return x + data.delta_scale * apply(params, x / data.in_scale)
    return data.target_scale * apply(params, x / data.in_scale)
  return predict


def train_config(config, steps: int | None = None):
  """The `training.train` config of one sub-run."""
  import ml_collections
  return ml_collections.ConfigDict(dict(
      optimizer=config.optimizer, steps=int(steps or config.steps), eval_every=int(config.eval_every),
      checkpoint_every=int(config.checkpoint_every), patience=int(config.patience), seed=int(config.seed),
      batch_size=int(config.batch_size), learning_rate=float(config.learning_rate),
      warmup_steps=int(config.warmup_steps), end_lr_factor=float(config.end_lr_factor),
      fire=config.fire.to_dict()))


def fit(config, data: TaskData, kind: str, workdir: str | None, num_train: int | None = None, log=print):
  """Train model `kind` on `data` (its first `num_train` training samples); resumes from `workdir`.

  Returns:
    (result: training.TrainResult, predict(params, X) -> f(X) in physical units, number of parameters).
  """
  import jax
  import jax.numpy as jnp

  import unitary_enn as uenn
  from unitary_enn import training
  dtype = setup_dtype(config)
  cdtype = jnp.result_type(dtype, jnp.complex64)
  init, apply = model_fns(kind, data, config, dtype)
  params = init(jax.random.PRNGKey(int(config.seed)))
  residual = residual_model(config, kind)

  def standardized(split, count=None):
    x, y = data.splits[split]
    x, y = x[:count], y[:count]
    out = (y - x) / data.delta_scale if residual else y / data.target_scale
    return jnp.asarray(x / data.in_scale, cdtype), jnp.asarray(out, cdtype)

  train_xy = standardized("train", num_train)
  n_params = uenn.count_params(params)
  log(f"unitary: {data.task} n={data.n} M={data.m}: {LABELS[kind]} ({n_params:,} real parameters), "
      f"{len(train_xy[0]):,} training samples, {config.optimizer}, {config.steps:,} steps -> {workdir}")
  result = training.train(training.mse_loss(apply), params, train_xy, standardized("validation"),
                          train_config(config), workdir, log=log)
  return result, physical_predictor(apply, data, residual), n_params


def predict_batched(predict: Callable, params, x: np.ndarray, dtype, batch: int = 1024) -> np.ndarray:
  """f(X) for complex128 NumPy inputs, run in the networks' complex dtype, returned as complex128 NumPy.

  Every batch has the same shape (the last one is padded with copies of a sample), so a model compiles once
  for all splits.
  """
  import jax
  import jax.numpy as jnp
  cdtype = jnp.result_type(dtype, jnp.complex64)
  fn = jax.jit(predict)
  outs = []
  for s in range(0, len(x), batch):
    chunk = x[s:s + batch]
    pad = batch - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
    outs.append(np.asarray(fn(params, jnp.asarray(chunk.astype(cdtype))), np.complex128)[:batch - pad])
  return np.concatenate(outs)


def relative_error(pred: np.ndarray, target: np.ndarray) -> float:
  """||pred - target||_F / ||target||_F over a whole set (all samples, coordinates and vectors)."""
  return float(np.linalg.norm(pred - target) / np.linalg.norm(target))


def evaluate(predict: Callable, params, data: TaskData, dtype) -> dict:
  """Relative errors of f(X) on every split; for dynamics also relative to the step's change f(X) - X."""
  out = {}
  for split in SPLITS:
    x, y = data.splits[split]
    pred = predict_batched(predict, params, x, dtype)
    out[f"{split}_relative_error"] = relative_error(pred, y)
    if data.task == "dynamics":
      out[f"{split}_increment_relative_error"] = relative_error(pred - x, y - x)
  return out


def exact_rollout(config, x0: np.ndarray) -> np.ndarray:
  """The exact trajectory `(rollout_steps + 1, S, n, M)` complex128 from states `x0` `(S, n, M)`."""
  import jax
  import jax.numpy as jnp

  from unitary_enn import quantum
  with jax.enable_x64(True):
    step = reference_fn(config, "dynamics")
    return np.asarray(jax.jit(lambda p: quantum.rollout(step, p, int(config.rollout_steps)))(
        jnp.asarray(x0, jnp.complex128)))


def model_rollout(predict: Callable, params, config, x0: np.ndarray, dtype) -> np.ndarray:
  """The trajectory of the learned step, `(rollout_steps + 1, S, n, M)`, run in the networks' complex dtype."""
  import jax
  import jax.numpy as jnp

  from unitary_enn import quantum
  cdtype = jnp.result_type(dtype, jnp.complex64)
  run = jax.jit(lambda p, x: quantum.rollout(functools.partial(predict, p), x, int(config.rollout_steps)))
  return np.asarray(run(params, jnp.asarray(x0.astype(cdtype))), np.complex128)


def rollout_metrics(model: np.ndarray, exact: np.ndarray) -> dict:
  """Compare a rollout `(T + 1, S, n, M)` with the exact one, step by step.

  Returns, per step 0..T (arrays): state_error (||Psi - Psi_exact||_F / ||Psi_exact||_F over the states),
  norm_deviation_max / _mean (|‖psi_m(t)‖ / ‖psi_m(0)‖ - 1| over states and orbitals), overlap (mean
  |<psi_exact, psi>| / (‖psi_exact‖ ‖psi‖), 1 for an orbital right up to its phase), exact_distance
  (||Psi_exact(t) - Psi(0)||_F / ||Psi(0)||_F: how far the exact states travel) and exact_norm_deviation_max.
  """
  t = len(exact)
  with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
    state_error = (np.linalg.norm((model - exact).reshape(t, -1), axis=1)
                   / np.linalg.norm(exact.reshape(t, -1), axis=1))
    norms = np.linalg.norm(model, axis=-2)  # (T + 1, S, M)
    norm_dev = np.abs(norms / norms[:1] - 1.0).reshape(t, -1)
    exact_norms = np.linalg.norm(exact, axis=-2)
    overlap = (np.abs(np.sum(np.conj(exact) * model, axis=-2)) / (exact_norms * norms)).reshape(t, -1)
    distance = np.linalg.norm((exact - exact[:1]).reshape(t, -1), axis=1) / np.linalg.norm(exact[0])
  return dict(state_error=state_error, norm_deviation_max=norm_dev.max(axis=1),
              norm_deviation_mean=norm_dev.mean(axis=1), overlap=overlap.mean(axis=1), exact_distance=distance,
              exact_norm_deviation_max=np.abs(exact_norms / exact_norms[:1] - 1.0).reshape(t, -1).max(axis=1))


def _finite(value):
  """NaN and Inf (a diverged MLP rollout) become None, so results.json stays strict JSON."""
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [_finite(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


def _fmt(e) -> str:
  return "n/a" if e is None else f"{e:.2e}"


def _fmt_ratio(r) -> str:
  return "n/a" if r is None else f"{r:.1f}"


def model_pairs(by_model: dict) -> list[tuple[str, str]]:
  """The (equivariant, non-equivariant) pairs present in one task's results: (uenn, mlp), (uenn_cayley, ...)."""
  return [(u, m) for u, m in (("uenn", "mlp"), ("uenn_cayley", "mlp_cayley")) if u in by_model and m in by_model]


def summary_table(results: dict) -> str:
  """The markdown tables of the README: errors per task and n, MLP / UENN ratios, and the rollouts."""
  lines = ["| task | n | M | model pair | params | test: equivariant | test: MLP | Haar-rotated: equivariant | "
           "Haar-rotated: MLP | rotated MLP / equivariant |", "|---|---|---|---|---|---|---|---|---|---|"]
  for task, by_n in results["tasks"].items():
    for r in by_n.values():
      for u, m in model_pairs(r["models"]):
        ru, rm = r["models"][u], r["models"][m]
        lines.append(
            f"| {task} | {r['n']} | {r['m']} | {LABELS[u]} / {LABELS[m]} | {ru['num_params']:,} / "
            f"{rm['num_params']:,} | {_fmt(ru['test_relative_error'])} | {_fmt(rm['test_relative_error'])} | "
            f"{_fmt(ru['rotated_test_relative_error'])} | {_fmt(rm['rotated_test_relative_error'])} | "
            f"{_fmt_ratio(r['rotated_ratio'].get(u))} |")
  if "dynamics" in results["tasks"]:
    by_n = results["tasks"]["dynamics"]
    kinds = list(next(iter(by_n.values()))["models"])
    lines += ["", "Dynamics, relative error of the step's change f(X) - X (what the models learn), test / "
              "Haar-rotated test:", "", "| n | " + " | ".join(LABELS[k] for k in kinds) + " |",
              "|---|" + "---|" * len(kinds)]
    for r in by_n.values():
      cells = [f"{_fmt(r['models'][k]['test_increment_relative_error'])} / "
               f"{_fmt(r['models'][k]['rotated_test_increment_relative_error'])}" for k in kinds]
      lines.append(f"| {r['n']} | " + " | ".join(cells) + " |")
    steps = results["rollout_steps"]
    lines += ["", f"Dynamics rollout: {steps} learned steps from Haar-rotated test states against the exact "
              "propagation (max norm deviation: over all orbitals, states and steps; the exact states move "
              "||Psi(T) - Psi(0)|| / ||Psi(0)|| = travel):", "",
              "| n | travel | model | state error at T | max norm deviation | 1 - overlap at T |",
              "|---|---|---|---|---|---|"]
    for r in by_n.values():
      for k in kinds:
        ro = r["models"][k]["rollout"]["rotated_test"]
        overlap = ro["overlap_final"]
        lines.append(f"| {r['n']} | {ro['exact_distance_final']:.2f} | {LABELS[k]} | "
                     f"{_fmt(ro['state_error_final'])} | {_fmt(ro['norm_deviation_max_all'])} | "
                     f"{_fmt(None if overlap is None else 1.0 - overlap)} |")
  return "\n".join(lines) + "\n"


def _save(fig, path: str) -> None:
  import matplotlib.pyplot as plt
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


STYLES = {"uenn": ("C0", "-"), "mlp": ("C1", "-"), "uenn_cayley": ("C0", "--"), "mlp_cayley": ("C1", "--")}


def _plot_errors_vs_n(results: dict, task: str, path: str) -> None:
  from unitary_enn import plots  # noqa: F401  (selects matplotlib's Agg backend)
  import matplotlib.pyplot as plt
  by_n = results["tasks"][task]
  ns = [r["n"] for r in by_n.values()]
  fig, ax = plt.subplots(figsize=(6, 4.2))
  for kind in next(iter(by_n.values()))["models"]:
    color, ls = STYLES[kind]
    ax.plot(ns, [r["models"][kind]["test_relative_error"] for r in by_n.values()], "o", ls=ls, color=color,
            label=f"{LABELS[kind]}, test")
    ax.plot(ns, [r["models"][kind]["rotated_test_relative_error"] for r in by_n.values()], "x", ls=ls,
            color=color, alpha=0.6, label=f"{LABELS[kind]}, Haar-rotated test")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xticks(ns, [str(n) for n in ns])
  ax.set_xlabel("n (vectors in C^n)")
  ax.set_ylabel("relative error ||f - f_exact|| / ||f_exact||")
  ax.set_title(f"{task}: equal parameters, data and optimizer", fontsize=10)
  ax.legend(fontsize=7)
  _save(fig, path)


def _plot_learning_curve(curve: dict, task: str, path: str) -> None:
  from unitary_enn import plots  # noqa: F401  (selects matplotlib's Agg backend)
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for kind in MODELS:
    color, _ = STYLES[kind]
    ax.plot(curve["sizes"], curve[kind]["test"], "o-", color=color, label=f"{LABELS[kind]}, test")
    ax.plot(curve["sizes"], curve[kind]["rotated_test"], "x--", color=color,
            label=f"{LABELS[kind]}, Haar-rotated test")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("training samples")
  ax.set_ylabel("relative error ||f - f_exact|| / ||f_exact||")
  ax.set_title(f"{task}, n = {curve['n']}: data efficiency at equal optimizer budget", fontsize=10)
  ax.legend(fontsize=8)
  _save(fig, path)


def _plot_rollouts(rollouts: dict, ns, kinds, path: str, dt: float) -> None:
  """One row per n: state error, max norm deviation and 1 - overlap vs rollout step (Haar-rotated states)."""
  from unitary_enn import plots  # noqa: F401  (selects matplotlib's Agg backend)
  import matplotlib.pyplot as plt
  quantities = (("state_error", "||Psi - Psi_exact|| / ||Psi_exact||"),
                ("norm_deviation_max", "max_m | ||psi_m(t)|| / ||psi_m(0)|| - 1 |"),
                ("infidelity", "1 - mean |<psi_exact, psi>| / norms"))
  fig, axes = plt.subplots(len(ns), 3, figsize=(12, 2.8 * len(ns)), squeeze=False)
  for row, n in enumerate(ns):
    for col, (name, ylabel) in enumerate(quantities):
      ax = axes[row, col]
      for kind in kinds:
        m = rollouts[(n, kind, "rotated_test")]
        values = 1.0 - m["overlap"] if name == "infidelity" else m[name]
        values = np.where(np.asarray(values, np.float64) > 0, values, np.nan)
        color, ls = STYLES[kind]
        ax.plot(np.arange(len(values)), values, color=color, ls=ls, lw=1.2, label=LABELS[kind])
      ax.set_yscale("log")
      ax.set_title(f"n = {n}", fontsize=9)
      ax.set_ylabel(ylabel, fontsize=8)
      if row == len(ns) - 1:
        ax.set_xlabel(f"rollout step (dt = {dt})")
      if row == 0 and col == 0:
        ax.legend(fontsize=7)
  _save(fig, path)


def train_and_evaluate(config, workdir: str) -> dict:
  """Every task at every n, every model; learning curves, rollouts, figures, results.json and table.md."""
  from unitary_enn import files, plots

  t_start = time.time()
  load_start = os.getloadavg()
  prepare_workdir(workdir)
  dtype = setup_dtype(config)
  for task in config.tasks:
    num_vectors(config, task, 2)  # unknown task names fail here, before any training
  fig = os.path.join(workdir, "figures")
  results = dict(experiment="unitary", tasks={}, rollout_steps=int(config.rollout_steps))
  rollouts, exact, curve_data = {}, {}, {}
  for task in config.tasks:
    results["tasks"][task] = {}
    for n in config.ns:
      t0 = time.time()
      data = make_task_data(config, task, n)
      print(f"unitary: {task} n={n} M={data.m}: data in {time.time() - t0:.1f} s (input scale "
            f"{data.in_scale:.3f}, correction scale {data.delta_scale:.4f})", flush=True)
      if n == config.curve_n:
        curve_data[task] = data
      entry = dict(n=n, m=data.m, in_scale=data.in_scale, delta_scale=data.delta_scale,
                   target_scale=data.target_scale, models={})
      histories = {}
      for kind in models_for(config, task):
        t0 = time.time()
        res, predict, n_params = fit(config, data, kind, os.path.join(workdir, task, f"n{n}", kind))
        r = dict(num_params=n_params, steps=res.steps, best_step=res.best_step, train_time_s=time.time() - t0)
        r.update(evaluate(predict, res.best_params, data, dtype))
        if task == "dynamics":
          # Test and rotated test states in one batch: one compilation, one exact reference per n.
          r["rollout"], count = {}, int(config.rollout_samples)
          x0 = np.concatenate([data.splits[split].inputs[:count] for split in ("test", "rotated_test")])
          if n not in exact:
            exact[n] = exact_rollout(config, x0)
          traj = model_rollout(predict, res.best_params, config, x0, dtype)
          for k, split in enumerate(("test", "rotated_test")):
            part = slice(k * len(x0) // 2, (k + 1) * len(x0) // 2)
            m = rollout_metrics(traj[:, part], exact[n][:, part])
            rollouts[(n, kind, split)] = m
            r["rollout"][split] = dict(
                state_error_final=float(m["state_error"][-1]),
                norm_deviation_max_all=float(np.max(m["norm_deviation_max"])),
                overlap_final=float(m["overlap"][-1]), exact_distance_final=float(m["exact_distance"][-1]),
                exact_norm_deviation_max_all=float(np.max(m["exact_norm_deviation_max"])), per_step=dict(m))
        entry["models"][kind] = r
        histories[LABELS[kind]] = res.history
        print(f"unitary: {task} n={n} {LABELS[kind]}: test {r['test_relative_error']:.3e}  Haar-rotated test "
              f"{r['rotated_test_relative_error']:.3e}  train {r['train_relative_error']:.3e}", flush=True)
      entry["rotated_ratio"] = {u: entry["models"][m]["rotated_test_relative_error"]
                                / entry["models"][u]["rotated_test_relative_error"]
                                for u, m in model_pairs(entry["models"])}
      results["tasks"][task][f"n{n}"] = entry
      plots.plot_loss(histories, os.path.join(fig, f"{task}_loss_n{n}.png"),
                      title=f"{task}, n = {n}: loss vs step (standardized units)")

  # Learning curves at n = curve_n: smaller training sets, same optimizer budget; the main run is the last point.
  results["learning_curve"] = {}
  for task, data in curve_data.items():
    sizes = sorted({int(s) for s in config.curve_sizes if s < config.num_train})
    curve = dict(n=data.n, sizes=sizes + [int(config.num_train)])
    for kind in MODELS:
      test, rotated = [], []
      for size in sizes:
        res, predict, _ = fit(config, data, kind, os.path.join(workdir, "curve", task, f"{kind}_{size}"), size)
        ev = evaluate(predict, res.best_params, data, dtype)
        test.append(ev["test_relative_error"])
        rotated.append(ev["rotated_test_relative_error"])
      main = results["tasks"][task][f"n{data.n}"]["models"][kind]
      curve[kind] = dict(test=test + [main["test_relative_error"]],
                         rotated_test=rotated + [main["rotated_test_relative_error"]])
    results["learning_curve"][task] = curve
    _plot_learning_curve(curve, task, os.path.join(fig, f"{task}_learning_curve.png"))

  for task in config.tasks:
    _plot_errors_vs_n(results, task, os.path.join(fig, f"{task}_errors_vs_n.png"))
  goals = dict(rotated_ratio={task: {key: r["rotated_ratio"] for key, r in by_n.items()}
                              for task, by_n in results["tasks"].items()})
  goals["rotated_10x_every_n"] = {
      u: bool(all(r["rotated_ratio"][u] >= 10 for by_n in results["tasks"].values() for r in by_n.values()
                  if u in r["rotated_ratio"])) for u in ("uenn", "uenn_cayley")
      if any(u in r["rotated_ratio"] for by_n in results["tasks"].values() for r in by_n.values())}
  if "dynamics" in config.tasks:
    kinds = models_for(config, "dynamics")
    _plot_rollouts(rollouts, tuple(config.ns), kinds, os.path.join(fig, "dynamics_rollout.png"), config.dt)
    for u in (k for k in kinds if k.startswith("uenn")):
      dev = {key: max(r["models"][u]["rollout"][s]["norm_deviation_max_all"] for s in ("test", "rotated_test"))
             for key, r in results["tasks"]["dynamics"].items()}
      goals[f"{u}_rollout_max_norm_deviation"] = dev
      goals[f"{u}_rollout_norms_within_1_percent"] = bool(all(v < 0.01 for v in dev.values()))
  results.update(
      goals=goals,
      units="relative errors ||pred - target||_F / ||target||_F over a set; time in units of 1/g",
      wall_time_s=time.time() - t_start,
      load_average_start=list(load_start), load_average_end=list(os.getloadavg()), cpu_count=os.cpu_count(),
      config=config.to_dict(),
      versions=files.package_versions(),
  )
  results = _finite(results)
  files.write_json(os.path.join(workdir, "results.json"), results)
  table = summary_table(results)
  files.atomic_write(os.path.join(workdir, "table.md"), lambda f: f.write(table.encode()))
  print(table, flush=True)
  print(f"unitary: done in {results['wall_time_s']:.0f} s (load average {load_start[0]:.1f} at the start, "
        f"{results['load_average_end'][0]:.1f} at the end, {os.cpu_count()} CPUs); results in "
        f"{os.path.join(workdir, 'results.json')}", flush=True)
  return results


if __name__ == "__main__":
  experiment_main("unitary", train_and_evaluate)

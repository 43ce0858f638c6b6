"""One generic, jitted training loop for every experiment.

    result = train(loss_fn, params, train_xy, val_xy, config, workdir)

* `loss_fn(params, inputs, targets) -> scalar` (mean squared error in standardized units, eq. 44).
* `config` (an ml_collections ConfigDict or any attribute object) chooses the optimizer:
    optimizer = "fire": full-batch FIRE (`config.fire`: the FIRE arguments, `variant` included), as in the paper;
    optimizer = "adam": mini-batches of `batch_size`, warm-up then cosine decay of `learning_rate`.
  and `steps`, `eval_every` (steps per jitted chunk; validation after each), `checkpoint_every`, `seed`,
  optional `patience` (evaluations without improvement before stopping early; 0 = never), `microbatch`
  (samples per chunk of the full-batch gradient, summed exactly; default `DEFAULT_MICROBATCH`) and
  `max_nonfinite_steps` (default `DEFAULT_MAX_NONFINITE`). `check_config` validates them all.
* Dispatch: the `eval_every` steps between evaluations run as one compiled `lax.scan`, so an accelerator gets
  a chunk of steps per Python dispatch; `scan = False` runs the same steps with the same keys one dispatch each
  (for debugging; tests/test_training.py checks both give the same parameters).
* Several devices: `devices` (0 or absent = every device jax sees when there is more than one and the mini-batch
  splits evenly over them, else one; n = the first n)
  makes the loop data-parallel (`parallel`): parameters and optimizer state are replicated, each mini-batch (and
  each chunk of a full-batch gradient) is split over the devices along the sample axis, and XLA sums the
  gradients over them. Results equal one device's to float rounding (tests/test_parallel.py). Several hosts: call
  `jax.distributed.initialize()` first in every process; the mesh then spans every host's devices.
* Non-finite steps: a step whose loss or gradient holds NaN or Inf changes no parameter (FIRE resets its velocity
  and shrinks dt; Adam skips the step, `optax.apply_if_finite`) and is counted. When `max_nonfinite_steps` of them
  have occurred the remaining steps of the chunk are not run and `train` raises `NonFiniteError`, which names the
  step and carries the parameters of the last finite step.
* Progress: one line per evaluation with the losses, steps/s and ETA. Metrics: `metrics.jsonl`.
* Resume: the loop saves `checkpoint.msgpack` (params, optimizer state, best params, PRNG key; flax msgpack, the
  previous one kept beside it) and picks it up when started again in the same workdir, continuing the same
  trajectory. A torn last line of metrics.jsonl (a kill mid-write) is dropped with a warning.
* Complex parameters: the optimizers built here conjugate `jax.grad`'s output first (docs/decisions.md §4).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flax import serialization

from unitary_enn import checks, files, parallel
from unitary_enn.fire import check_hyperparameters, conjugate_complex_grads, fire

Array = jax.Array


def mse_loss(predict: Callable) -> Callable:
  """The loss of eq. 44: `(params, inputs, targets) -> mean |predict(params, inputs) - targets|^2`."""
  def loss_fn(params, inputs, targets):
    return jnp.mean(jnp.abs(predict(params, inputs) - targets) ** 2)
  return loss_fn


class NonFiniteError(FloatingPointError):
  """Training stopped after `config.max_nonfinite_steps` steps with a non-finite loss or gradient.

  Attributes:
    step: the step at which the limit was reached (no step after it was run).
    last_finite_step: how many steps had been taken when loss and gradient were last finite.
    params: the parameters at that point (after `last_finite_step` steps).
  """

  def __init__(self, message: str, *, step: int, last_finite_step: int, params):
    super().__init__(message)
    self.step, self.last_finite_step, self.params = step, last_finite_step, params


def _get(config, key, default=None):
  return config.get(key, default) if hasattr(config, "get") else getattr(config, key, default)


def check_config(config) -> None:
  """Validate the training entries of `config` (ValueError naming the entry); `train` calls it first, and the
  experiment binaries call it before generating any data."""
  checks.positive_int("config.steps", config.steps)
  checks.positive_int("config.eval_every", config.eval_every)
  for key in ("checkpoint_every", "patience", "microbatch", "warmup_steps"):
    if _get(config, key) is not None:
      checks.positive_int(f"config.{key}", _get(config, key), allow_zero=True)
  checks.positive_int("config.max_nonfinite_steps", _get(config, "max_nonfinite_steps", DEFAULT_MAX_NONFINITE))
  name = config.optimizer
  if name == "fire":
    check_hyperparameters(**dict(config.fire))
  elif name == "adam":
    checks.positive("config.learning_rate", config.learning_rate, allow_zero=True)
    checks.positive("config.end_lr_factor", _get(config, "end_lr_factor", 0.01), allow_zero=True)
    checks.positive_int("config.batch_size", _get(config, "batch_size", 0))
  else:
    raise ValueError(f"unknown optimizer {name!r}; expected 'fire' or 'adam'")
  checks.positive_int("config.devices", _get(config, "devices", 0) or 0, allow_zero=True)


def make_optimizer(config) -> optax.GradientTransformation:
  """The optimizer of a config: "fire" (full batch) or "adam" (mini-batch, warm-up + cosine decay).

  Neither changes a parameter on a non-finite gradient: FIRE treats it as uphill (velocity reset, dt shrunk) and
  counts it in `ScaleByFireState.nonfinite`; Adam skips the step (`optax.apply_if_finite`), its moments untouched.
  """
  name = config.optimizer
  if name == "fire":
    return fire(**dict(config.fire))
  if name == "adam":
    lr = float(config.learning_rate)
    warmup = int(min(config.get("warmup_steps", 0), max(config.steps - 1, 0)))
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else lr, peak_value=lr, warmup_steps=warmup,
        decay_steps=max(int(config.steps), warmup + 1), end_value=lr * float(config.get("end_lr_factor", 0.01)))
    # apply_if_finite gives up after `max_consecutive_errors` bad steps; `train` stops long before that.
    return optax.apply_if_finite(optax.chain(conjugate_complex_grads(), optax.adam(schedule)),
                                 max_consecutive_errors=2 ** 30)
  raise ValueError(f"unknown optimizer {name!r}; expected 'fire' or 'adam'")


class TrainState(NamedTuple):
  step: int
  params: Any
  opt_state: Any
  key: Array
  best_params: Any
  best_val: float
  best_step: int
  nonfinite: int = 0  # steps skipped so far because their loss or gradient was not finite


@dataclasses.dataclass
class TrainResult:
  best_params: Any
  params: Any
  best_val: float
  best_step: int
  steps: int
  history: list[dict]
  wall_time: float  # seconds spent in this process (resumed runs add to `history`'s `time`)


def microbatched(value_and_grad: Callable, micro: int, constrain: Callable = lambda a: a) -> Callable:
  """`value_and_grad(params, x, y)` of a mean loss over all of x, summed over chunks of `micro` samples.

  Equal to one call on all samples (up to rounding), for losses that are means over the sample axis; much
  faster for large batches on CPUs, whose caches hold a chunk's activations but not a 60,000-sample batch's.
  `constrain(array)` is applied to each chunk's inputs and targets (`parallel.batch_constraint`: a chunk split over
  devices).
  """
  def fn(params, x, y):
    n = x.shape[0]
    k = n // micro
    if k <= 1:
      return value_and_grad(params, constrain(x), constrain(y))
    head = (x[:k * micro].reshape((k, micro) + x.shape[1:]), y[:k * micro].reshape((k, micro) + y.shape[1:]))

    def body(acc, xy):
      value, grads = value_and_grad(params, *map(constrain, xy))
      return jax.tree.map(lambda a, b: a + b * (micro / n), acc, (value, grads)), None

    zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: value_and_grad(params, head[0][0], head[1][0])))
    total, _ = jax.lax.scan(body, zero, head)
    if n > k * micro:
      value, grads = value_and_grad(params, constrain(x[k * micro:]), constrain(y[k * micro:]))
      total = jax.tree.map(lambda a, b: a + b * ((n - k * micro) / n), total, (value, grads))
    return total
  return fn


def batched_loss(loss_fn: Callable, params, inputs, targets, batch: int = 1024) -> float:
  """Mean of `loss_fn` over a data set evaluated in batches (same value as one call when it is an MSE)."""
  n = len(inputs)
  total = 0.0
  for s in range(0, n, batch):
    x, y = inputs[s:s + batch], targets[s:s + batch]
    total += float(loss_fn(params, x, y)) * len(x)
  return total / n


def _fmt_time(s: float) -> str:
  if not math.isfinite(s):
    return "?"
  s = int(s)
  return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def train(loss_fn: Callable,
          params,
          train_data: tuple[Array, Array],
          val_data: tuple[Array, Array],
          config,
          workdir: str | None = None,
          log: Callable[[str], None] = print,
          monitor: dict[str, tuple[Array, Array]] | None = None,
          augment: Callable | None = None,
          eval_loss_fn: Callable | None = None) -> TrainResult:
  """Minimize `loss_fn` on `train_data`, keep the best parameters on `val_data`.

  Args:
    loss_fn: `(params, inputs, targets) -> scalar`.
    params: initial parameters (ignored when a checkpoint in `workdir` is resumed).
    train_data, val_data: `(inputs, targets)` arrays, sample axis first, already standardized.
    config: see the module docstring.
    workdir: where checkpoints and metrics go; None trains in memory without resume.
    log: where progress lines go.
    monitor: more `(inputs, targets)` sets, by name, whose loss is recorded at each evaluation as
      `NAME_loss` in the history (a test set for time-to-accuracy); they never choose parameters.
    augment: `augment(key, inputs, targets) -> (inputs, targets)` applied to each mini-batch (for example
      `data.permutation_augmentation`); not used with full-batch FIRE.
    eval_loss_fn: the loss of validation and monitored sets, when it differs from the training loss (for
      example that of a symmetrized predictor, `data.symmetrize_permutations`); default `loss_fn`.

  Returns:
    A `TrainResult`; `history` lists the evaluation records of the whole run (resumed parts included).
  """
  check_config(config)
  steps = int(config.steps)
  eval_every = max(1, min(int(config.eval_every), steps))
  ckpt_every = int(config.get("checkpoint_every", eval_every)) or eval_every
  patience = int(config.get("patience", 0) or 0)
  max_bad = int(config.get("max_nonfinite_steps", DEFAULT_MAX_NONFINITE))
  full_batch = config.optimizer == "fire"
  scan = bool(config.get("scan", True))
  batch_size = int(config.get("batch_size", 0) or 0)
  x_train, y_train = (jnp.asarray(a) for a in train_data)
  x_val, y_val = (jnp.asarray(a) for a in val_data)
  for name, a in (("train inputs", x_train), ("train targets", y_train), ("validation inputs", x_val),
                  ("validation targets", y_val)):
    if not bool(jnp.all(jnp.isfinite(a))):
      raise ValueError(f"{name} contain NaN or Inf")
  if len(x_train) != len(y_train) or len(x_val) != len(y_val):
    raise ValueError("inputs and targets must have the same number of samples")
  if not len(x_train) or not len(x_val):
    raise ValueError(f"the training and validation sets must not be empty, got {len(x_train)} and {len(x_val)} "
                     "samples")
  monitor = {name: tuple(jnp.asarray(a) for a in xy) for name, xy in (monitor or {}).items()}

  mesh = training_mesh(config)
  if mesh is not None and not full_batch and batch_size % mesh.devices.size:
    d = mesh.devices.size
    if int(_get(config, "devices", 0) or 0):
      raise ValueError(f"config.batch_size = {batch_size} must be a multiple of the {d} devices (config.devices)")
    log(f"training on one device: config.batch_size = {batch_size} does not split over the {d} devices jax sees "
        "(set config.devices)")
    mesh = None
  constrain = lambda a: parallel.batch_constraint(a, mesh)  # noqa: E731
  if mesh is not None:
    d = mesh.devices.size
    log(f"data-parallel training over {d} devices ({', '.join(str(x) for x in mesh.devices.flat)})")
    x_train, y_train, x_val, y_val = parallel.replicate((x_train, y_train, x_val, y_val), mesh)
  optimizer = make_optimizer(config)
  value_and_grad = jax.value_and_grad(loss_fn)
  micro = int(config.get("microbatch", 0) or 0) or DEFAULT_MICROBATCH
  if full_batch:
    value_and_grad = microbatched(value_and_grad, micro, constrain)
  n_train = x_train.shape[0]

  def live_step(params, opt_state, bad, last_good, key):
    if full_batch:
      x, y = x_train, y_train
    else:
      if augment is not None:
        key, sub = jax.random.split(key)
      idx = jax.random.randint(key, (batch_size,), 0, n_train)
      x, y = x_train[idx], y_train[idx]
      if augment is not None:
        x, y = augment(sub, x, y)
      x, y = constrain(x), constrain(y)
    loss, grads = value_and_grad(params, x, y)
    ok = jnp.isfinite(loss) & _all_finite(grads)
    # A non-finite loss with a finite gradient is handed on as a non-finite gradient, so that the optimizer reacts
    # to every bad step alike (no update; FIRE: velocity reset, dt shrunk).
    grads = jax.tree.map(lambda g: jnp.where(ok, g, jnp.full_like(g, jnp.nan)), grads)
    updates, new_state = optimizer.update(grads, opt_state, params)
    new_params = jax.tree.map(lambda p, u: jnp.where(ok, p + u, p).astype(p.dtype), params, updates)
    # The parameters at which loss and gradient were last finite: what NonFiniteError hands back.
    last_good = jax.tree.map(lambda p, g: jnp.where(ok, p, g), params, last_good)
    return ((new_params, new_state, bad + jnp.where(ok, 0, 1).astype(bad.dtype), last_good),
            (loss, jnp.where(ok, 0, 1)))

  def one_step(carry, key):
    # Status per step: 0 = applied, 1 = non-finite (skipped), 2 = not run (the non-finite limit was reached).
    params, opt_state, bad, last_good = carry
    live = lambda _: live_step(params, opt_state, bad, last_good, key)
    out_shape = jax.eval_shape(live, None)[1]

    def stopped(_):
      return (params, opt_state, bad, last_good), (jnp.full(out_shape[0].shape, jnp.nan, out_shape[0].dtype),
                                        jnp.full(out_shape[1].shape, 2, out_shape[1].dtype))

    return jax.lax.cond(bad < max_bad, live, stopped, None)

  @jax.jit
  def run_chunk(carry, key):
    return jax.lax.scan(one_step, carry, jax.random.split(key, eval_every))

  def run_tail(carry, key, n):
    # The last chunk may be shorter; it is run step by step rather than compiled for a second length. With
    # config.scan = False every chunk is: the same steps with the same keys, one dispatch each.
    step_fn = jax.jit(one_step)
    out = []
    for k in jax.random.split(key, n):
      carry, o = step_fn(carry, k)
      out.append(o)
    return carry, jax.tree.map(lambda *a: jnp.stack(a), *out)

  eval_loss = jax.jit(eval_loss_fn or loss_fn)
  ckpt_path = os.path.join(workdir, CHECKPOINT) if workdir else None
  metrics_path = os.path.join(workdir, METRICS) if workdir else None
  if workdir:
    files.check_writable(workdir)

  fresh = TrainState(0, params, optimizer.init(params), jax.random.PRNGKey(int(config.get("seed", 0)) + 1),
                     params, float("inf"), 0, 0)
  saved = files.load_checkpoint(ckpt_path, log=log) if ckpt_path else None
  if saved is not None:
    if not _same_problem(saved.get("config_key"), config):
      raise ValueError(f"{ckpt_path} was written by a run with another config (only "
                       f"{', '.join(RESUMABLE_CHANGES)} may change on resume); use a fresh --workdir "
                       f"or delete it. Saved: {saved.get('config_key')}")
    state = _restore_state(fresh, saved, ckpt_path)
    # Keep the history consistent with the checkpoint: drop records written after it.
    history = [r for r in files.read_jsonl(metrics_path, warn=log) if r["step"] <= state.step]
    files.write_jsonl(metrics_path, history)
    log(f"resuming from step {state.step} of {steps} ({ckpt_path})")
  else:
    state = fresh
    history = []
    if metrics_path and os.path.exists(metrics_path):
      os.remove(metrics_path)
  if mesh is not None:
    state = state._replace(params=parallel.replicate(state.params, mesh),
                           opt_state=parallel.replicate(state.opt_state, mesh),
                           best_params=parallel.replicate(state.best_params, mesh))

  def save(state):
    if ckpt_path:
      tree = serialization.to_state_dict(dict(params=state.params, opt_state=state.opt_state, key=state.key,
                                              best_params=state.best_params))
      files.save_checkpoint(ckpt_path, dict(tree, step=state.step, best_val=state.best_val,
                                            best_step=state.best_step, nonfinite=state.nonfinite,
                                            config_key=_resume_key(config)))

  step, params, opt_state, key = state.step, state.params, state.opt_state, state.key
  best_params, best_val, best_step = state.best_params, state.best_val, state.best_step
  bad = jnp.asarray(state.nonfinite, jnp.int32)
  last_good, last_good_step = params, step
  chunk = run_chunk
  if scan and mesh is None and steps - step >= eval_every:
    # The chunk and the evaluation are compiled before the clock starts, so that the history's `time` (and
    # benchmarks/time_to_accuracy) counts training, not compilation: on an H200 compiling the chunk took 34 of
    # the first chunk's 36 s, and with the chunk compiled first, the evaluation's compilation (new matmul shapes,
    # autotuned again) still took ~37 s of the first chunk's 42 s (benchmarks/results/gpu_h200_2026-11-30b/).
    t_compile = time.time()
    chunk = run_chunk.lower((params, opt_state, bad, last_good), jax.random.split(key)[1]).compile()
    t_eval = time.time()
    for x_eval, y_eval in [(x_val, y_val)] + list(monitor.values()):
      batched_loss(eval_loss, params, x_eval, y_eval)  # pure: the same losses are computed again below
    log(f"compiled a chunk of {eval_every} steps in {t_eval - t_compile:.1f} s and the evaluation in "
        f"{time.time() - t_eval:.1f} s")
  t_start = time.time()
  t_prev = history[-1]["time"] if history else 0.0
  bad_evals = 0
  last_saved = step
  while step < steps:
    n = min(eval_every, steps - step)
    key, sub = jax.random.split(key)
    t0 = time.time()
    carry = (params, opt_state, bad, last_good)
    carry, (losses, status) = chunk(carry, sub) if n == eval_every and scan else run_tail(carry, sub, n)
    params, opt_state, bad, last_good = carry
    losses, status = np.asarray(losses), np.asarray(status)
    if np.any(status == 0):
      last_good_step = step + int(np.flatnonzero(status == 0)[-1])
    if np.any(status):
      where = step + np.flatnonzero(status == 1) + 1
      msg = (f"training loss or gradient became non-finite at step {where[0] if len(where) else step}"
             + (f" (and at {len(where) - 1} more step(s) of steps {step + 1}..{step + n})" if len(where) > 1 else "")
             + f"; {int(bad)} such step(s) in all, each skipped (no parameter changed)")
      if int(bad) >= max_bad:
        stop_at = int(where[-1]) if len(where) else step
        msg = (f"{msg}. Stopped at step {stop_at}: config.max_nonfinite_steps = {max_bad} reached. The parameters "
               f"after {last_good_step} steps, the last at which loss and gradient were finite, are "
               "NonFiniteError.params. Lower the learning rate (or FIRE's dt_max), or check the data and the "
               "model for overflow")
        log(msg)
        raise NonFiniteError(msg, step=stop_at, last_finite_step=last_good_step, params=last_good)
      log(f"warning: {msg}; training goes on (config.max_nonfinite_steps = {max_bad})")
    step += n
    val = batched_loss(eval_loss, params, x_val, y_val)
    if not math.isfinite(val):
      log(f"warning: the validation loss at step {step} is {val}: these parameters are never kept as the best")
    dt_chunk = time.time() - t0
    # For full-batch FIRE the loss at the last (finite) step is the training loss; for mini-batches the chunk mean.
    done = losses[status == 0]
    train_loss = float("nan") if not len(done) else float(done[-1]) if full_batch else float(done.mean())
    improved = val < best_val
    if improved:
      best_params, best_val, best_step = params, val, step
      bad_evals = 0
    else:
      bad_evals += 1
    elapsed = t_prev + time.time() - t_start
    rate = n / dt_chunk
    record = dict(step=step, train_loss=train_loss, val_loss=val, time=elapsed, steps_per_s=rate)
    if int(bad):
      record["nonfinite_steps"] = int(bad)
    for name, (x_mon, y_mon) in monitor.items():
      record[f"{name}_loss"] = batched_loss(eval_loss, params, x_mon, y_mon)
    history.append(record)
    if metrics_path:
      files.append_jsonl(metrics_path, record)
    log(f"step {step:>8d}/{steps}  train {train_loss:.4e}  val {val:.4e}{' *' if improved else '  '}  "
        f"{rate:7.1f} steps/s  elapsed {_fmt_time(elapsed)}  ETA {_fmt_time((steps - step) / rate)}")
    stop = patience and bad_evals >= patience
    if step - last_saved >= ckpt_every or step >= steps or stop:
      save(TrainState(step, params, opt_state, key, best_params, best_val, best_step, int(bad)))
      last_saved = step
    if stop:
      log(f"early stop at step {step}: validation loss has not improved for {patience} evaluations")
      break
  return TrainResult(best_params=best_params, params=params, best_val=best_val, best_step=best_step,
                     steps=step, history=history, wall_time=time.time() - t_start)


CHECKPOINT = "checkpoint.msgpack"
METRICS = "metrics.jsonl"

# Samples per chunk of a full-batch gradient (`microbatched`); `config.microbatch` overrides it.
DEFAULT_MICROBATCH = 256

# Steps with a non-finite loss or gradient (each skipped) after which training stops; `config.max_nonfinite_steps`.
DEFAULT_MAX_NONFINITE = 10

# Config entries that may change between a run and its resumption (they do not change the problem). The nve_* and
# cost_repeats entries of experiments/many_body.py only set what is measured after training.
RESUMABLE_CHANGES = ("steps", "eval_every", "checkpoint_every", "patience", "cache_dir", "microbatch",
                     "max_nonfinite_steps", "devices", "scan", "nve_steps", "nve_record_every", "cost_repeats")


def training_mesh(config):
  """The data-parallel mesh that `config.devices` asks for (see the module docstring), or None for one device."""
  n = int(_get(config, "devices", 0) or 0)
  devices = jax.devices()  # every host's, after jax.distributed.initialize()
  if n > len(devices):
    raise ValueError(f"config.devices = {n}, but jax sees {len(devices)} device(s): {devices}")
  devices = devices[:n] if n else devices
  return parallel.device_mesh(devices) if len(devices) > 1 else None


def _all_finite(tree) -> Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def _resume_key(config) -> str:
  """What must match for a checkpoint to be resumed: every config entry but `RESUMABLE_CHANGES`."""
  items = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
  return json.dumps({k: v for k, v in items.items() if k not in RESUMABLE_CHANGES}, sort_keys=True,
                    default=str)


def _same_problem(saved_key, config) -> bool:
  """Whether a checkpoint's `config_key` matches `config` up to `RESUMABLE_CHANGES`; entries of that list are
  dropped from the saved key too, so checkpoints written before an entry joined the list still resume."""
  if not isinstance(saved_key, str):
    return False
  try:
    saved = json.loads(saved_key)
  except ValueError:
    return False
  if not isinstance(saved, dict):
    return False
  kept = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
  return json.dumps(kept, sort_keys=True, default=str) == _resume_key(config)


def _restore_state(fresh: TrainState, saved: dict, path: str) -> TrainState:
  """The TrainState of a checkpoint, restored into the structure of `fresh` (same optimizer and parameters)."""
  template = serialization.to_state_dict(dict(params=fresh.params, opt_state=fresh.opt_state, key=fresh.key,
                                              best_params=fresh.best_params))
  try:
    tree = serialization.from_state_dict(
        dict(params=fresh.params, opt_state=fresh.opt_state, key=fresh.key, best_params=fresh.best_params),
        {k: saved[k] for k in template})
  except (KeyError, ValueError, TypeError) as e:
    raise files.FileFormatError(f"{path!r} does not fit this run's parameters or optimizer ({e}); delete it or use "
                                "a fresh --workdir") from None
  tree = jax.tree.map(jnp.asarray, tree)
  return TrainState(int(saved["step"]), tree["params"], tree["opt_state"], tree["key"], tree["best_params"],
                    float(saved["best_val"]), int(saved["best_step"]), int(saved.get("nonfinite", 0)))

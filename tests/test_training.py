"""The generic training loop: it lowers the loss, keeps the best parameters, resumes exactly after a kill."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import training
from tests.test_layers import _random


def _problem(dtype=jnp.float64, n=256):
  x = _random(jax.random.PRNGKey(0), (n, 3, 3), dtype)
  y = uenn.softsign(x @ jnp.asarray([[1.0, 0.5], [-0.3, 0.2], [0.4, -1.0]], dtype))
  params = uenn.init_uenn(jax.random.PRNGKey(1), (3, 8, 2), dtype=dtype)
  loss = lambda p, a, b: jnp.mean(jnp.abs(uenn.apply_uenn(p, a) - b) ** 2)
  return params, (x[:192], y[:192]), (x[192:], y[192:]), loss


def _config(**kw):
  c = ml_collections.ConfigDict(dict(optimizer="adam", learning_rate=1e-2, warmup_steps=5, end_lr_factor=0.1,
                                     batch_size=32, steps=60, eval_every=10, checkpoint_every=20, seed=0,
                                     patience=0, max_nonfinite_steps=10, fire=dict(variant="fire2")))
  c.update(kw)
  return c


@pytest.mark.parametrize("optimizer", ["adam", "fire"])
def test_training_lowers_the_loss_and_keeps_the_best(optimizer, tmp_path):
  params, tr, va, loss = _problem()
  cfg = _config(optimizer=optimizer, steps=200, eval_every=50)
  lines = []
  res = training.train(loss, params, tr, va, cfg, str(tmp_path), log=lines.append)
  l0 = float(loss(params, *va))
  assert res.best_val < 0.5 * l0
  np.testing.assert_allclose(float(loss(res.best_params, *va)), res.best_val, rtol=1e-10)
  assert res.best_val == min(r["val_loss"] for r in res.history)
  metrics = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [m["step"] for m in metrics] == [50, 100, 150, 200]
  # one line for compiling the scanned chunk (before the clock starts), then one per evaluation
  assert lines[0].startswith("compiled a chunk of 50 steps in ")
  assert all("steps/s" in l and "ETA" in l for l in lines[1:])


def test_nothing_compiles_after_the_clock_starts():
  """The scanned chunk and the evaluation are compiled before the first timed chunk: once the "compiled" line is
  logged, no XLA compilation happens (on a GPU the evaluation's, left in the first chunk, cost ~37 s of its 42)."""
  from jax._src import monitoring
  params, tr, va, loss = _problem()
  events = []

  def listener(name, duration, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
      events.append("compile")
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    training.train(loss, params, tr, va, _config(steps=200, eval_every=50), None, log=events.append,
                   monitor={"extra": tuple(a[:37] for a in va)})
  finally:
    monitoring.unregister_event_duration_listener(listener)
  first = next(i for i, e in enumerate(events) if e.startswith("compiled a chunk"))
  assert "compile" in events[:first]
  assert "compile" not in events[first:], events[first:]


def test_complex_network_trains_through_the_loop():
  params, tr, va, loss = _problem(jnp.complex128)
  res = training.train(loss, params, tr, va, _config(steps=150, eval_every=50), None, log=lambda s: None)
  assert res.best_val < 0.3 * float(loss(params, *va))


def test_resume_after_a_kill_continues_the_same_trajectory(tmp_path):
  params, tr, va, loss = _problem()
  full = training.train(loss, params, tr, va, _config(), str(tmp_path / "a"), log=lambda s: None)

  class Killed(Exception):
    pass

  def killer(line):
    if line.startswith("step       30"):  # after the step-20 checkpoint, before the step-40 one
      raise Killed

  with pytest.raises(Killed):
    training.train(loss, params, tr, va, _config(), str(tmp_path / "b"), log=killer)
  lines = []
  resumed = training.train(loss, params, tr, va, _config(), str(tmp_path / "b"), log=lines.append)
  assert lines[0].startswith("resuming from step 20")
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_allclose(a, b, rtol=1e-12)
  assert [r["step"] for r in resumed.history] == [10, 20, 30, 40, 50, 60]
  # A changed problem must not be resumed silently.
  with pytest.raises(ValueError, match="another config"):
    training.train(loss, params, tr, va, _config(learning_rate=0.5), str(tmp_path / "b"), log=lambda s: None)
  # A key saved with entries that may change on resume (also ones that joined the list later) still matches.
  saved = json.dumps(dict(_config(steps=999, nve_steps=1000, cost_repeats=8).to_dict()), sort_keys=True)
  assert training._same_problem(saved, _config())
  assert not training._same_problem(saved, _config(learning_rate=0.5))
  assert not training._same_problem("not json", _config()) and not training._same_problem(None, _config())


@pytest.mark.parametrize("variant", ["paper", "fire2"])
def test_full_batch_fire_resumes_with_its_state(variant, tmp_path):
  """FIRE's velocity, dt, alpha and count survive a kill and a resume: the resumed run ends where an uninterrupted
  one does (a restart with fresh FIRE state would not: its dt would start again from 0.001)."""
  params, tr, va, loss = _problem()
  cfg = _config(optimizer="fire", steps=60, fire=dict(variant=variant))
  full = training.train(loss, params, tr, va, cfg, str(tmp_path / "a"), log=lambda s: None)

  class Killed(Exception):
    pass

  def killer(line):
    if line.startswith("step       30"):
      raise Killed

  with pytest.raises(Killed):
    training.train(loss, params, tr, va, cfg, str(tmp_path / "b"), log=killer)
  resumed = training.train(loss, params, tr, va, cfg, str(tmp_path / "b"), log=lambda s: None)
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_adam_schedule_warms_up_linearly_then_decays_by_a_cosine():
  cfg = _config(learning_rate=2e-3, warmup_steps=10, steps=110, end_lr_factor=0.01)
  opt = training.make_optimizer(cfg)
  params = {"w": jnp.zeros(())}
  state = opt.init(params)
  seen = []
  for _ in range(110):  # with a gradient of 1, Adam's first step size is the learning rate itself
    updates, state = opt.update({"w": jnp.ones(())}, state, params)
    seen.append(-float(updates["w"]))
  lr = lambda t: 2e-3 * t / 10 if t <= 10 else 2e-5 + (2e-3 - 2e-5) * 0.5 * (1 + np.cos(np.pi * (t - 10) / 100))
  # Adam's normalized step for a constant gradient is 1 (up to eps), so the update is the scheduled rate.
  np.testing.assert_allclose(seen, [lr(t) for t in range(110)], rtol=1e-5, atol=1e-10)


def test_early_stopping_and_nan_detection(tmp_path):
  params, tr, va, loss = _problem()
  res = training.train(loss, params, tr, va, _config(learning_rate=0.0, warmup_steps=0, patience=2, steps=100),
                       None, log=lambda s: None)
  assert res.steps == 30  # evaluations 2 and 3 did not improve on the first
  bad = (tr[0].at[0, 0, 0].set(jnp.nan), tr[1])
  with pytest.raises(ValueError, match="train inputs contain NaN"):
    training.train(loss, params, bad, va, _config(), None)
  params32, tr32, va32, _ = _problem(jnp.float32)
  with pytest.raises(FloatingPointError, match="non-finite at step"):  # weights ~1e30: squares overflow
    training.train(loss, params32, tr32, va32, _config(learning_rate=1e30, warmup_steps=0), None,
                   log=lambda s: None)


def _nan_beyond_one(p, x, y):
  """A least-squares loss pulling w[0] to 3, undefined (NaN value and gradient) for w[0] > 1."""
  return jnp.mean((x @ p["w"] - y) ** 2) + 0.0 * jnp.sqrt(1.0 - p["w"][0])


@pytest.mark.parametrize("variant", ["paper"])  # fire2 reacts alike (tests/test_fire.py)
def test_fire_training_stops_inside_the_chunk_and_hands_back_the_last_finite_parameters(variant):
  """Row "FIRE after one NaN gradient: ... the loop notices only at the end of a chunk": the loop skips each
  non-finite step and stops after config.max_nonfinite_steps of them, without running the rest of a long chunk,
  naming the step; NonFiniteError.params are parameters with a finite loss."""
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 2), jnp.float64)
  y = x @ jnp.asarray([3.0, -1.0])
  cfg = _config(optimizer="fire", steps=4000, eval_every=2000, max_nonfinite_steps=4,
                fire=dict(variant=variant, dt=0.01, dt_max=0.1))
  lines = []
  with pytest.raises(training.NonFiniteError, match=r"non-finite at step (\d+).*Stopped at step") as err:
    training.train(_nan_beyond_one, {"w": jnp.zeros(2)}, (x, y), (x, y), cfg, None, log=lines.append)
  e = err.value
  first = int(str(e).split("non-finite at step ")[1].split()[0])
  assert e.step == first + 3 < 2000  # four non-finite steps in a row (full batch, parameters unchanged), then stop
  assert e.last_finite_step == first - 2  # step first - 1 (finite) took w[0] past 1
  assert float(e.params["w"][0]) <= 1.0 and np.isfinite(float(_nan_beyond_one(e.params, x, y)))
  assert "max_nonfinite_steps = 4" in lines[-1]


def test_adam_skips_non_finite_mini_batches_without_poisoning_the_parameters(tmp_path):
  """A loss that is NaN on every mini-batch holding sample 0 (its gradient stays finite): those steps are skipped
  and counted, the others train, and the parameters stay finite; with Adam's moments untouched by NaN."""
  params, tr, va, loss = _problem()
  marker = tr[0][0, 0, 0]

  def poisoned(p, a, b):
    return loss(p, a, b) + jnp.where(jnp.any(a[:, 0, 0] == marker), jnp.nan, 0.0)

  lines = []
  res = training.train(poisoned, params, tr, va, _config(steps=100, eval_every=100, max_nonfinite_steps=50),
                       str(tmp_path), log=lines.append)
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(res.params))
  skipped = res.history[-1]["nonfinite_steps"]
  assert 3 <= skipped < 50  # ~15% of batches of 32 out of 192 hold sample 0
  assert any("became non-finite" in l and "training goes on" in l for l in lines)
  assert res.best_val < 0.5 * float(loss(params, *va))


@pytest.mark.parametrize("key,value,match", [
    ("steps", 0, "config.steps must be a positive integer"), ("steps", -5, "config.steps"),
    ("eval_every", 0, "config.eval_every"), ("max_nonfinite_steps", 0, "config.max_nonfinite_steps"),
    ("batch_size", 0, "config.batch_size"), ("learning_rate", float("nan"), "config.learning_rate"),
    ("patience", -1, "config.patience"),
])
def test_bad_training_config_is_rejected_before_any_step(key, value, match):
  """Row "--config.steps=0 or negative: writes an untrained model ... then crashes in plotting" (library side)."""
  params, tr, va, loss = _problem(n=200)
  with pytest.raises(ValueError, match=match):
    training.train(loss, params, tr, va, _config(**{key: value}), None, log=lambda s: None)
  with pytest.raises(ValueError, match="FIRE f_dec must be < 1"):
    training.check_config(_config(optimizer="fire", fire=dict(variant="paper", f_dec=2.0)))
  with pytest.raises(ValueError, match="validation sets must not be empty, got 192 and 0"):
    training.train(loss, params, tr, (va[0][:0], va[1][:0]), _config(), None, log=lambda s: None)


def test_unknown_optimizer():
  with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
    training.make_optimizer(_config(optimizer="sgd"))


def test_monitor_records_a_set_that_never_chooses_parameters_and_augment_sees_every_batch(tmp_path):
  params, tr, va, loss = _problem()
  seen = []

  def augment(key, x, y):  # an identity hook that counts its calls per compiled step
    seen.append(x.shape)
    return x, y

  cfg = _config(steps=40, eval_every=20)
  res = training.train(loss, params, tr, va, cfg, str(tmp_path), log=lambda s: None,
                       monitor={"test": va}, augment=augment)
  assert seen and all(s == (32, 3, 3) for s in seen)
  for r in res.history:
    np.testing.assert_allclose(r["test_loss"], r["val_loss"], rtol=1e-12)  # the same set, so the same loss
  # The network is odd (x -> -x flips every layer's output), so flipping inputs and targets together leaves
  # each step's loss and gradient unchanged: the same trajectory as the identity hook (same random stream);
  # a hook that breaks the pairing (flip the inputs only) must train differently.
  run = lambda hook: training.train(loss, params, tr, va, cfg, None, log=lambda s: None, augment=hook)
  same = run(lambda key, x, y: (x, y))
  np.testing.assert_allclose(run(lambda key, x, y: (-x, -y)).best_val, same.best_val, rtol=1e-9)
  assert abs(run(lambda key, x, y: (-x, y)).best_val - same.best_val) > 1e-3 * same.best_val


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
@pytest.mark.parametrize("n", [192, 200, 20])
def test_microbatched_gradient_equals_the_full_batch_gradient(dtype, n):
  """Chunks of 32 (with a remainder for n = 200; one call for n = 20) sum to the one-call loss and gradient."""
  params, _, _, loss = _problem(dtype, n=256)
  x = _random(jax.random.PRNGKey(5), (n, 3, 3), dtype)
  y = _random(jax.random.PRNGKey(6), (n, 3, 2), dtype)
  want = jax.value_and_grad(loss)(params, x, y)
  got = jax.jit(training.microbatched(jax.value_and_grad(loss), 32))(params, x, y)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_full_batch_fire_is_the_same_with_and_without_chunks():
  params, tr, va, loss = _problem()
  runs = [training.train(loss, params, tr, va, _config(optimizer="fire", steps=30, eval_every=10,
                                                       microbatch=m), None, log=lambda s: None)
          for m in (10_000, 48)]
  for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params)):
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["adam", "fire"])
def test_scanned_chunks_equal_one_dispatch_per_step(optimizer):
  # The steps between evaluations run as one lax.scan (one dispatch per chunk); config.scan = False runs the same
  # steps with the same per-step keys one jit call each. Mini-batch draws (Adam) and FIRE's state must agree.
  params, tr, va, loss = _problem()
  runs = [training.train(loss, params, tr, va, _config(optimizer=optimizer, steps=20, eval_every=10, scan=scan),
                         None, log=lambda s: None) for scan in (True, False)]
  moved = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(params)))
  assert moved > 1e-3
  for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
  assert [r["val_loss"] for r in runs[0].history] == pytest.approx([r["val_loss"] for r in runs[1].history],
                                                                   rel=1e-10)

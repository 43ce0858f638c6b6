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
                                     patience=0, fire=dict(variant="fire2")))
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
  assert all("steps/s" in l and "ETA" in l for l in lines)


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


def test_unknown_optimizer():
  with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
    training.make_optimizer(_config(optimizer="sgd"))

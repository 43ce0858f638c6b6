"""The non-equivariant baseline (Sec. 4.3): parameter counts, the helper tells an MLP apart, a tiny run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from experiments import baseline
from experiments.configs import baseline as baseline_config


def test_paper_parameter_counts():
  config = baseline_config.get_config()
  counts = {}
  for name in ("enn", "mlp_a", "mlp_b"):
    init, _ = baseline.model_fns(name, config, jnp.float32)
    counts[name] = uenn.count_params(init(jax.random.PRNGKey(0)))
  assert counts == {"enn": 52_000, "mlp_a": 27_382, "mlp_b": 53_927}


def test_assert_equivariant_catches_an_mlp():
  config = baseline_config.get_config()
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 3, 6), jnp.float64)
  init, predict = baseline.model_fns("mlp_b", config, jnp.float64)
  params = init(jax.random.PRNGKey(1))
  with pytest.raises(AssertionError, match="not equivariant"):
    uenn.assert_equivariant(lambda v: predict(params, v), x, key=jax.random.PRNGKey(2))
  init, predict = baseline.model_fns("enn", config, jnp.float64)
  params = init(jax.random.PRNGKey(1))
  uenn.assert_equivariant(lambda v: predict(params, v), x, key=jax.random.PRNGKey(2))


def test_fire_dt_max_is_scaled_per_model():
  config = baseline_config.get_config()
  dt = {n: baseline.train_config(config, n, "fire", 10, 5).fire.dt_max for n in ("enn", "mlp_a", "mlp_b")}
  np.testing.assert_allclose([dt["enn"], dt["mlp_a"], dt["mlp_b"]], [0.01, 0.005, 0.01 / 3])


def test_random_orthogonal_batch_holds_rotations_and_reflections():
  q = np.asarray(baseline.random_orthogonal_batch(0, 200, jnp.float64))
  np.testing.assert_allclose(q @ q.transpose(0, 2, 1), np.broadcast_to(np.eye(3), q.shape), atol=1e-12)
  det = np.linalg.det(q)
  assert 60 < np.sum(det < 0) < 140  # about half are reflections


def test_tiny_run_writes_results_and_figures(tmp_path, monkeypatch):
  monkeypatch.setenv("UENN_CACHE_DIR", str(tmp_path / "cache"))
  workdir = str(tmp_path / "run")
  results = baseline.train_and_evaluate(baseline_config.get_config("tiny"), workdir)
  for f in ("results.json", "figures/loss_comparison.png", "figures/loss_comparison_adam.png",
            "figures/learning_curve.png"):
    assert os.path.getsize(os.path.join(workdir, f)) > 0, f
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  assert set(on_disk["models"]) == {"enn", "mlp_a", "mlp_b"}
  for setting in ("fire", "adam"):
    enn = on_disk["models"]["enn"][setting]
    for key in ("train_force_rmse", "validation_force_rmse", "test_force_rmse", "rotated_test_force_rmse"):
      assert np.isfinite(enn[key])
    # The equivariant network's error is unchanged by rotating the test set (exact by construction).
    # (float32: the rotation only changes rounding, ~1e-7 relative.)
    np.testing.assert_allclose(enn["rotated_test_force_rmse"], enn["test_force_rmse"], rtol=1e-5)
  # The MLPs are not equivariant: rotating the test set changes their error far beyond rounding.
  for name in ("mlp_a", "mlp_b"):
    mlp = on_disk["models"][name]["adam"]
    assert abs(mlp["rotated_test_force_rmse"] / mlp["test_force_rmse"] - 1) > 1e-3, name
  curve = on_disk["learning_curve"]
  assert curve["sizes"] == [30, 100, 300] and len(curve["enn"]) == 3 and len(curve["mlp_b"]) == 3
  assert results["rotated_test"]["num_reflections"] > 0

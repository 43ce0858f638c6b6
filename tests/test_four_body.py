"""End to end: the four-atom experiment binary (Sec. 4.1-4.2) on its tiny config, and its force field."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from experiments import four_body
from experiments.configs import four_body as four_body_config
from unitary_enn import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("four_body"))
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("UENN_CACHE_DIR", os.path.join(workdir, "cache"))
    results = four_body.train_and_evaluate(four_body_config.get_config("tiny"), workdir)
    yield workdir, results


def test_run_writes_results_figures_and_model(tiny_run):
  workdir, results = tiny_run
  for f in ("results.json", "metrics.jsonl", "model.npz", "checkpoint.msgpack", "figures/loss.png",
            "figures/parity.png"):
    assert os.path.getsize(os.path.join(workdir, f)) > 0, f
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  for key in ("test_force_rmse", "validation_force_rmse", "num_params", "steps", "wall_time_s", "config",
              "versions"):
    assert key in on_disk
  assert on_disk["num_params"] == 2 * (6 * 8 + 8 * 4)
  assert on_disk["steps"] == 60
  # The network beats predicting zero force, whose RMSE is the target scale.
  assert on_disk["test_force_rmse"] < on_disk["target_force_std"]
  assert on_disk["versions"]["jax"] == jax.__version__


def test_force_field_is_equivariant_and_translation_invariant(tiny_run):
  workdir, _ = tiny_run
  forces = uenn.load_force_field(workdir)
  pos = jnp.asarray(uenn.data.generate_clusters(1, seed=5)[0])
  f = forces(pos)
  assert f.shape == (4, 3)
  assert float(jnp.abs(f).max()) > 0
  # The stored scales are scalars, so the standardized model is still O(3)-equivariant.
  uenn.assert_equivariant(forces, pos, key=jax.random.PRNGKey(0), in_axis=-1, out_axis=-1, reflection=True,
                          rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(forces(pos + jnp.array([1.0, -7.0, 2.5])), f, rtol=1e-4, atol=1e-6)
  # Batched positions work too.
  assert forces(jnp.stack([pos, pos])).shape == (2, 4, 3)


def test_force_field_rejects_bad_positions(tiny_run):
  forces = uenn.load_force_field(tiny_run[0])
  with pytest.raises(ValueError, match=r"positions has shape \(5, 3\), expected \(\.\.\., 4, 3\)"):
    forces(jnp.zeros((5, 3)))
  with pytest.raises(ValueError, match="positions contains 1 non-finite"):
    forces(jnp.ones((4, 3)).at[2, 0].set(jnp.inf))
  with pytest.raises(ValueError, match="box must be None"):
    forces(jnp.ones((4, 3)), box=20.0)
  with pytest.raises(FileNotFoundError, match="no trained model"):
    uenn.load_force_field(os.path.join(tiny_run[0], "nowhere"))


def test_rerun_resumes_instead_of_retraining(tiny_run, capsys):
  workdir, results = tiny_run
  again = four_body.train_and_evaluate(four_body_config.get_config("tiny"), workdir)
  assert "resuming from step 60" in capsys.readouterr().out
  assert again["test_force_rmse"] == results["test_force_rmse"]


def test_binary_rejects_unknown_config_key(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.four_body", f"--workdir={tmp_path}",
       "--config=experiments/configs/four_body.py:tiny", "--config.stpes=10"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "unknown config key 'stpes'" in proc.stderr and "--config.stpes=10" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert "\\'" not in proc.stderr and "\\n" not in proc.stderr  # no escaped quotes or newlines (reliability row)


def test_configs():
  paper = four_body_config.get_config("paper")
  assert tuple(paper.sizes) == (6, 50, 90, 100, 80, 50, 4)
  assert paper.optimizer == "fire" and paper.n_configs == 100_000 and paper.steps == 10_000_000
  assert paper.fire.dt_max == 0.01 and paper.fire.mass == 0.1 and paper.fire.variant == "paper"
  with pytest.raises(ValueError, match="unknown config 'fast'"):
    four_body_config.get_config("fast")


def test_symmetrized_run_saves_a_relabelling_equivariant_force_field(tmp_path, monkeypatch):
  """A tiny run with random relabelling and the 24-relabelling average: its saved force field (the one MD
  uses) gives relabelled forces for relabelled atoms, rotated forces for rotated atoms, and its test RMSE is
  that of the symmetrized predictor."""
  monkeypatch.setenv("UENN_CACHE_DIR", str(tmp_path / "cache"))
  config = four_body_config.get_config("tiny")
  with config.unlocked():
    config.augment_permutations = True
    config.symmetrize = True
  results = four_body.train_and_evaluate(config, str(tmp_path / "run"))
  forces = uenn.load_force_field(str(tmp_path / "run"))
  pos = np.random.default_rng(0).normal(scale=3.0, size=(5, 4, 3))
  f = np.asarray(forces(pos))
  for perm in ([1, 0, 3, 2], [3, 1, 2, 0], [2, 3, 0, 1]):
    np.testing.assert_allclose(np.asarray(forces(pos[:, perm])), f[:, perm], atol=1e-6)
  u = np.asarray(uenn.random_unitary(jax.random.PRNGKey(0), 3, jnp.float64))
  np.testing.assert_allclose(np.asarray(forces(pos @ u.T)), f @ u.T, atol=1e-6)
  test = data.four_body_dataset(config.n_configs, seed=config.data_seed, r_min=config.r_min,
                                position_std=config.position_std, cache_dir=str(tmp_path / "cache"))["test"]
  pred = np.asarray(forces(test.positions))
  rmse = float(np.sqrt(np.mean((pred - test.targets.swapaxes(-1, -2)) ** 2)))
  assert rmse == pytest.approx(results["test_force_rmse"], rel=1e-4)


def test_accurate_config_relabels_and_symmetrizes():
  accurate = four_body_config.get_config("accurate")
  assert accurate.augment_permutations and accurate.symmetrize and accurate.optimizer == "adam"
  assert tuple(accurate.sizes) == (6, 50, 90, 100, 80, 50, 4) and accurate.n_configs == 100_000

"""End to end: the four-atom MD binary (Sec. 4.4) on its tiny config, training its models first (the default):
the direct model in-process below, the conservative one by the binary itself."""

import contextlib
import io
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import four_body, four_body_md
from experiments.configs import four_body as four_body_config
from experiments.configs import four_body_md as md_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ("position_rmsd.png", "x_atom1.png", "energy_rmsd.png", "energy_sample1.png")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """The tiny four_body model is trained (in-process, to save a JAX start-up) where the binary trains it when no
  train_workdir is given, <workdir>/train; the binary then finds it there and runs the MD."""
  workdir = str(tmp_path_factory.mktemp("four_body_md"))
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("UENN_CACHE_DIR", os.path.join(workdir, "cache"))
    four_body.train_and_evaluate(four_body_config.get_config("tiny"), os.path.join(workdir, "train"))
    with contextlib.redirect_stdout(io.StringIO()) as out:
      results = four_body_md.run(md_config.get_config("tiny"), workdir)
  return workdir, results, out.getvalue()


def test_smoke_run_writes_results_and_four_figures(tiny_run):
  workdir, _, out = tiny_run
  assert "no --train_workdir given; reusing the model trained earlier in" in out
  assert "no --conservative_workdir given, so training the 'conservative_tiny' model first" in out
  assert "md[network]: step     400/400" in out and "md[conservative]: step     400/400" in out  # progress
  for f in FIGURES:
    assert os.path.getsize(os.path.join(workdir, "figures", f)) > 0, f
  with np.load(os.path.join(workdir, "trajectories.npz")) as t:
    assert t["network_positions"].shape == (41, 3, 4, 3)  # every 10th of 400 steps, 3 samples
    assert t["analytical_total_energy"].shape == (401, 3)
    assert t["conservative_positions"].shape == (41, 3, 4, 3)
    assert t["conservative_own_total_energy"].shape == (401, 3)
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  assert on_disk["trained_here"] is True and on_disk["train_workdir"] == os.path.join(workdir, "train")
  for key in ("position_rmsd_100_A", "position_rmsd_400_A", "energy_rmsd_400_eV", "energy_drift_rel_analytical",
              "energy_drift_rel_network", "lambda_network", "position_rmsd_400_A_net_force_removed",
              "energy_drift_rel_network_net_force_removed", "lambda_network_net_force_removed",
              "config", "versions", "wall_time_s"):
    assert key in on_disk, key
  assert set(on_disk["runs"]) == set(four_body_md.VARIANTS)
  assert on_disk["conservative_trained_here"] is True
  assert on_disk["conservative_workdir"] == os.path.join(workdir, "train_conservative")
  # The five figures per force field.
  assert set(on_disk["force_fields"]) == {"analytical", "direct", "conservative"}
  for ff in on_disk["force_fields"].values():
    assert set(ff) == {"agreement_horizon_steps", "position_rmsd_100_A", "position_rmsd_400_A", "energy_rmsd_400_eV",
                       "energy_drift_rel", "lambda"}
  assert on_disk["versions"]["jax"] == jax.__version__
  assert on_disk["n_samples"] == 3 and on_disk["n_steps"] == 400
  assert abs(on_disk["initial_temperature_K"] - 10.0) < 1e-9


def test_smoke_run_physics(tiny_run):
  _, r, _ = tiny_run
  runs = r["runs"]
  assert runs["analytical"]["energy_max_deviation_rel"] < 1e-5  # velocity Verlet at 1 fs, float64
  assert r["conservativeness"]["analytical"]["lambda_mean"] < 1e-12
  assert r["conservativeness"]["analytical"]["loop_work_abs_max_eV"] < 1e-12
  assert r["lambda_network"] > 1e-3 and r["conservativeness"]["network"]["loop_work_abs_mean_eV"] > 0
  assert 0 < r["position_rmsd_100_A"] < r["position_rmsd_400_A"]
  # Net force removal conserves momentum; adding torque removal conserves angular momentum too.
  assert runs["network"]["net_momentum_change"] > 1e-8
  assert runs["network_net_force_removed"]["net_momentum_change"] < 1e-12
  assert runs["network_net_force_torque_removed"]["angular_momentum_change"] < 1e-12
  g = r["gradient_through_md"]
  assert g["grad_finite"] and g["grad_norm"] > 0 and g["fd_rel_error"] < 1e-5


def test_smoke_run_conservative_model(tiny_run):
  """F = -grad E: lambda and the loop work vanish, momentum and angular momentum are conserved without any removal,
  the run conserves its own total energy, and the gradient through its MD matches a finite difference."""
  _, r, _ = tiny_run
  runs, cons = r["runs"], r["runs"]["conservative"]
  assert r["conservativeness"]["conservative"]["lambda_mean"] < 1e-12
  assert r["conservativeness"]["conservative"]["loop_work_abs_max_eV"] < 1e-9
  assert cons["net_momentum_change"] < 1e-12 and cons["angular_momentum_change"] < 1e-10
  assert cons["own_energy_drift_rel"] < 1e-5 < runs["network"]["energy_drift_rel"]
  assert r["force_fields"]["conservative"]["energy_drift_rel"] == cons["own_energy_drift_rel"]
  assert r["force_fields"]["conservative"]["lambda"] == r["lambda_conservative"] < 1e-12
  # The agreement horizon is the first step past 0.1 A (the RMSD grows from 0 at step 0).
  horizon = r["force_fields"]["direct"]["agreement_horizon_steps"]
  assert horizon is None or 0 < horizon <= 400
  assert horizon is None or (r["position_rmsd_100_A"] <= 0.1) == (horizon > 100)
  g = r["gradient_through_md_conservative"]
  assert g["grad_finite"] and g["grad_norm"] > 0 and g["fd_rel_error"] < 1e-5
  assert "['uenn']" in g["fd_parameter"]


def test_config_and_flag_errors(tmp_path):
  config = md_config.get_config("tiny").copy_and_resolve_references()
  config.unlock()
  config.position_rmsd_steps = (100, 5000)
  with pytest.raises(ValueError, match=r"config.position_rmsd_steps has steps \[5000\] outside 0..n_steps=400"):
    four_body_md.run(config, str(tmp_path), train_workdir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown config 'fast'"):
    md_config.get_config("fast")
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.four_body_md", f"--workdir={tmp_path}",
       "--config=experiments/configs/four_body_md.py:tiny", f"--train_workdir={tmp_path / 'nowhere'}"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "no trained model" in proc.stderr and "Traceback" not in proc.stderr


def test_quick_default_has_no_conservative_run(tiny_run, tmp_path):
  # The conservative run is opt-in (its training alone takes ~17 min at the quick budget): with no conservative
  # workdir or train config, the binary runs the four direct force fields and reports no conservative figures.
  assert md_config.get_config().conservative_train_config == "" == md_config.get_config().conservative_workdir
  workdir, _, _ = tiny_run
  config = md_config.get_config("tiny")
  config.conservative_train_config = ""
  with contextlib.redirect_stdout(io.StringIO()):
    r = four_body_md.run(config, str(tmp_path / "md"), train_workdir=os.path.join(workdir, "train"))
  assert set(r["force_fields"]) == {"analytical", "direct"} and "conservative" not in r["runs"]
  assert r["gradient_through_md_conservative"] is None and "conservative_workdir" not in r
  assert np.isfinite(r["runs"]["network"]["position_rmsd_final_A"])

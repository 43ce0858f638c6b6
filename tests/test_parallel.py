"""Several devices (`unitary_enn.parallel`): sharded results equal single-device ones.

jax fixes its device count when it starts, so the checks run in a fresh process with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (four CPU "devices"; correctness and the communication pattern,
not speed): tests/parallel_checks.py computes every quantity on one device and over the four, and prints the
differences, which are asserted here.
"""

import json
import os
import subprocess
import sys

import jax
import pytest

from unitary_enn import parallel

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def results():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run([sys.executable, os.path.join(HERE, "parallel_checks.py")], env=env, capture_output=True,
                        text=True, timeout=900, cwd=os.path.dirname(HERE))
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices_were_used(results):
  assert results["devices"] == 4
  assert results["force_devices"] == 4 and results["replica_devices"] == 4


def test_sharded_forces_equal_single_device_forces(results):
  # A periodic box of a few thousand atoms, float64: the rows' descriptors and network outputs are computed by
  # the device that holds them; nothing is summed across devices, so agreement is to rounding or better.
  assert results["n_atoms"] >= 2000
  assert results["max_force"] > 1e-4  # a non-trivial force field
  assert results["force_diff"] <= 1e-12 * max(1.0, results["max_force"])


def test_sharded_forces_with_species_and_linear_path(results):
  # A two-species model with a linear path: each device takes its rows' species for the centre channels.
  assert results["species_max_force"] > 1e-4
  assert results["species_force_diff"] <= 1e-12 * max(1.0, results["species_max_force"])


def test_sharded_conservative_energy_and_forces(results):
  # F = -grad E over a mesh: each device sums its rows' atomic energies; jax adds up every device's contribution
  # to the gradient with respect to the replicated positions.
  assert results["conservative_max_force"] > 1e-4
  assert results["conservative_energy_diff"] < 1e-12
  assert results["conservative_force_diff"] <= 1e-12 * max(1.0, results["conservative_max_force"])


def test_sharded_md_equals_single_device_md(results):
  # 100 steps of float64 velocity Verlet on a neighbor list, forces sharded over four devices.
  assert results["md_displacement"] > 0.1  # atoms moved
  assert results["md_position_diff"] < 1e-9


@pytest.mark.parametrize("optimizer", ["adam", "fire"])
def test_data_parallel_training_equals_single_device(results, optimizer):
  # Same seed, same steps: mini-batches (Adam) or full-batch chunks (FIRE) split over four devices; the
  # gradients are summed across devices (all-reduce), so parameters agree to float32 rounding.
  assert "over 4 devices" in results[f"train_{optimizer}_log"]
  assert results[f"train_{optimizer}_param_change"] > 1e-3
  assert results[f"train_{optimizer}_param_diff"] < 1e-5


def test_replicas_sharded_over_devices(results):
  # Independent four-atom samples placed with parallel.shard_batch: jit runs each device's share.
  assert results["replica_diff"] < 1e-12


def test_one_device_mesh_and_bad_input():
  mesh = parallel.device_mesh(jax.devices()[:1])
  x = jax.numpy.ones((3, 2))
  assert parallel.batch_constraint(x, mesh) is x
  with pytest.raises(ValueError, match="at least one device"):
    parallel.device_mesh([])
  with pytest.raises(ValueError, match="config.devices = 2"):
    from unitary_enn import training
    training.training_mesh({"devices": 2}) if len(jax.devices()) == 1 else pytest.skip("more than one device")

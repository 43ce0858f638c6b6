"""experiments/train_forces.py: a model trained from an extended XYZ file of two species, evaluated through the ASE
calculator and `load_force_field` (the same numbers), plus the data checks a user meets first."""

import json
import os

import numpy as np
import pytest

from tests import external

ase = external.require("ase")

import ase.io  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402

from experiments import train_forces  # noqa: E402
from experiments.configs import train_forces as train_forces_config  # noqa: E402
from unitary_enn import models  # noqa: E402
from unitary_enn.calculator import UENNCalculator  # noqa: E402


def _trained(tmp_path_factory, system: str, seed: int, variant: str) -> dict:
  """A tiny EMT data set of `system` (9 periodic boxes, 3 free clusters, with energies) and a model of the config
  `variant` trained on it for a few steps."""
  folder = tmp_path_factory.mktemp(system.lower())
  data = str(folder / f"{system.lower()}.xyz")
  train_forces.write_example_data(data, system, n_bulk=9, n_clusters=3, n_cells=3, seed=seed)
  config = train_forces_config.get_config(variant)
  workdir = str(folder / "model")
  results = train_forces.train_and_evaluate(config, workdir, data=data)
  return dict(data=data, workdir=workdir, results=results, config=config)


@pytest.fixture(scope="module")
def cuau(tmp_path_factory):
  """Cu-Au data and a direct model of two species."""
  return _trained(tmp_path_factory, "CuAu", 1, "tiny")


def test_trains_two_species_and_writes_its_outputs(cuau):
  r = cuau["results"]
  assert r["species"] == ["Au", "Cu"]
  assert r["periodic_frames"] == 9 and r["free_frames"] == 3 and r["frames_with_energy"] == 12
  assert set(r["force_rmse_per_species"]["test"]) <= {"Au", "Cu"}
  assert 0 < r["test_force_rmse"] < r["test_force_rms"]  # better than predicting zero
  assert sorted(r["basis"]["derived_from_data"]) == ["eta", "r_cut", "r_s_start"]
  # r_cut derived from the data: at most half the smallest box, so the minimum image holds.
  assert r["basis"]["r_cut"] <= 3 * 3.6 * 0.98 / 2
  for name in ("results.json", "model.npz", "metrics.jsonl", "figures/parity.png", "figures/loss.png"):
    assert os.path.exists(os.path.join(cuau["workdir"], name)), name
  model = models.load_model(cuau["workdir"])
  assert model.species == ("Au", "Cu")
  with open(os.path.join(cuau["workdir"], "results.json")) as f:
    assert json.load(f)["test_force_rmse"] == r["test_force_rmse"]


def test_calculator_reproduces_load_force_field(cuau):
  frames = ase.io.read(cuau["data"], ":")
  field = models.load_force_field(cuau["workdir"])
  calc = UENNCalculator(cuau["workdir"])
  for atoms in (frames[0], frames[-1]):  # a periodic box and a free cluster
    atoms = atoms.copy()
    atoms.calc = calc
    box = float(atoms.cell[0, 0]) if atoms.pbc.all() else None
    positions = np.mod(atoms.positions, box) if box else atoms.positions
    expected = np.asarray(field(positions, box, atoms.get_chemical_symbols()))
    got = atoms.get_forces()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
  silver = frames[-1].copy()
  silver.symbols[:3] = "Ag"
  silver.calc = calc
  with pytest.raises(ValueError, match=r"\['Ag'\].*\['Au', 'Cu'\]"):
    silver.get_forces()


def test_resume_continues_without_retraining(cuau, capsys):
  # Same config and workdir: the checkpoint at the last step is picked up, so no step runs again.
  train_forces.train_and_evaluate(cuau["config"], cuau["workdir"], data=cuau["data"])
  assert "resuming from step 40 of 40" in capsys.readouterr().out


def _write(path, frames):
  ase.io.write(path, frames, format="extxyz")
  return path


def test_clear_errors_for_bad_data(tmp_path):
  config = train_forces_config.get_config("tiny")
  atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[[8, 0, 0], [0, 9, 0], [0, 0, 8]], pbc=True)
  atoms.calc = SinglePointCalculator(atoms, forces=np.zeros((2, 3)))
  with pytest.raises(ValueError, match="cubic periodic cell"):
    train_forces.train_and_evaluate(config, str(tmp_path / "w1"), data=_write(str(tmp_path / "orth.xyz"), [atoms]))
  plain = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])
  with pytest.raises(ValueError, match="no forces"):
    train_forces.train_and_evaluate(config, str(tmp_path / "w2"), data=_write(str(tmp_path / "nof.xyz"), [plain]))
  with pytest.raises(FileNotFoundError, match="no data file"):
    train_forces.train_and_evaluate(config, str(tmp_path / "w3"), data=str(tmp_path / "missing.xyz"))
  config.forces = "conservative"
  with pytest.raises(ValueError, match="linear_path must be False"):
    train_forces.train_and_evaluate(config, str(tmp_path / "w4"), data=str(tmp_path / "orth.xyz"))


def test_ase_trajectories_read_like_extended_xyz(cuau, tmp_path):
  from ase.io.trajectory import Trajectory
  frames = ase.io.read(cuau["data"], ":")
  path = str(tmp_path / "cuau.traj")
  with Trajectory(path, "w") as traj:
    for atoms in frames:
      traj.write(atoms)
  a, b = train_forces.read_frames(cuau["data"]), train_forces.read_frames(path)
  assert len(a) == len(b) == len(frames)
  for x, y in zip(a, b):
    assert x.box == y.box and list(x.symbols) == list(y.symbols) and x.energy == y.energy
    np.testing.assert_array_equal(x.forces, y.forces)
    np.testing.assert_array_equal(x.positions, y.positions)


def test_given_validation_and_test_sets_replace_their_split(cuau):
  config = train_forces_config.get_config("tiny")
  frames = train_forces.read_frames(cuau["data"])
  own = train_forces.split_frames(config, frames, None, None)
  assert [len(v) for v in own.values()] == [10, 1, 1]
  assert sum(len(v) for v in own.values()) == len(frames)
  given = frames[:2]
  sets = train_forces.split_frames(config, frames, given, None)
  assert sets["validation"] is given
  assert len(sets["train"]) + len(sets["test"]) == len(frames) and len(sets["test"]) >= 1
  both = train_forces.split_frames(config, frames, given, given)
  assert len(both["train"]) == len(frames)


def test_conservative_model_refuses_several_species(cuau, tmp_path):
  config = train_forces_config.get_config("conservative_tiny")
  with pytest.raises(ValueError, match=r"one species for now.*\['Au', 'Cu'\]"):
    train_forces.train_and_evaluate(config, str(tmp_path / "w"), data=cuau["data"])


# --- The conservative model (F = -grad E) on one species -----------------------------------------------------------


@pytest.fixture(scope="module")
def cu_conservative(tmp_path_factory):
  """Cu data and a conservative model (F = -grad E)."""
  return _trained(tmp_path_factory, "Cu", 2, "conservative_tiny")


def test_free_cluster_in_its_padded_box_has_its_free_space_descriptors():
  # The conservative model trains on pair lists of periodic boxes; a free cluster gets a box of side
  # 2 (extent + r_cut): every pair is its own minimum image and no image is within r_cut. Checked against the
  # free-space sums of descriptors.vector_descriptors (jax-md, no box) and a brute-force pair count.
  import jax
  from unitary_enn import data, descriptors, energy
  from ase.cluster import Icosahedron
  atoms = Icosahedron("Cu", 3, latticeconstant=3.6)
  pos = atoms.positions + np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape) - 7.0  # off the origin
  r_cut, r_s, eta = 5.2, np.linspace(1.6, 5.2, 12), 9.3
  boxes = data.BoxSet(pos, np.asarray([0.0]), np.asarray([len(pos)]), np.zeros_like(pos), {})
  (side,) = train_forces.padded_sides(boxes, r_cut)
  assert side == pytest.approx(2 * (np.ptp(pos, axis=0).max() + r_cut))
  pairs = energy.box_pairs(pos, side, r_cut)
  d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
  assert len(pairs) == np.sum((d < r_cut) & (d > 0))
  with jax.enable_x64(True):
    got = energy.vector_descriptors_of_pairs(np.asarray(pos), pairs, side, r_s=r_s, eta=eta, r_cut=r_cut)
    want = descriptors.vector_descriptors(pos, None, r_s=r_s, eta=eta, r_cut=r_cut)
  assert np.abs(np.asarray(want)).max() > 0.1
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-12)


def test_conservative_model_trains_and_predicts_energies(cu_conservative):
  r = cu_conservative["results"]
  assert r["forces"] == "conservative" and r["species"] == ["Cu"] and r["energies_used"]
  assert r["periodic_frames"] == 9 and r["free_frames"] == 3 and r["frames_with_energy"] == 12
  assert np.isfinite(r["test_energy_rmse_eV_per_atom"]) and np.isfinite(r["test_force_rmse"])
  model = models.load_model(cu_conservative["workdir"])
  assert model.conservative and model.species == ("Cu",)
  # The per-atom offset is the least-squares one on the training frames: the energies the calculator gives them
  # have zero count-weighted mean error, sum_b N_b (E_model_b - E_b) = 0 (to float32 rounding).
  sets = train_forces.split_frames(cu_conservative["config"], train_forces.read_frames(cu_conservative["data"]),
                                   None, None)
  energy_field = models.load_energy_field(cu_conservative["workdir"])
  n = np.asarray([len(f.positions) for f in sets["train"]], np.float64)
  err = np.asarray([float(energy_field(f.positions, f.box)) - f.energy for f in sets["train"]])
  spread = np.abs(np.asarray([f.energy for f in sets["train"]])).max()
  assert np.std(err / n) > 0  # a tiny model: not exact, so the test below is not empty
  assert abs(np.sum(n * err)) / np.sum(n * n) < 1e-5 * max(spread, 1.0)


def test_conservative_calculator_forces_are_minus_the_energy_gradient(cu_conservative):
  # ASE's calculator gives an energy for a conservative model, and its forces are -dE/dR: central differences of
  # that energy, on a periodic box and a free cluster of the data. In float64 (the model's float32 weights
  # widened): the float32 energy of these frames moves by ~1e-4 eV with the rounding of its descriptors, too much
  # for a difference quotient.
  import dataclasses
  import jax
  frames = ase.io.read(cu_conservative["data"], ":")
  model = models.load_model(cu_conservative["workdir"])
  assert "energy" in UENNCalculator(model).implemented_properties
  rng = np.random.default_rng(0)
  h = 1e-3
  with jax.enable_x64(True):
    model = dataclasses.replace(model, dtype="float64",
                                params=jax.tree.map(lambda x: np.asarray(x, np.float64), model.params))
    calc = UENNCalculator(model)
    for atoms in (frames[0], frames[-1]):
      atoms = atoms.copy()
      atoms.calc = calc
      forces = atoms.get_forces()
      assert np.isfinite(atoms.get_potential_energy()) and np.abs(forces).max() > 1e-2
      for i in rng.choice(len(atoms), 3, replace=False):
        for k in range(3):
          e = []
          for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[i, k] += sign * h
            moved.calc = calc
            e.append(moved.get_potential_energy())
          assert -(e[0] - e[1]) / (2 * h) == pytest.approx(forces[i, k], abs=1e-3 * np.abs(forces).max())

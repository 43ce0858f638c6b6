"""The many-atom experiment (Sec. 4.5): configs, a :tiny end-to-end run, and the saved force field."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from experiments import many_body
from experiments.configs import many_body as many_body_config
from tests import external
from unitary_enn import constants, models, structures


def test_configs():
  paper = many_body_config.get_config("paper")
  assert tuple(paper.n_sets) == (6, 2, 2) and paper.optimizer == "fire" and paper.steps == 1_000_000
  assert (paper.n_descriptors, *paper.hidden, 1) == (73, 200, 100, 50, 10, 1)
  assert paper.r_s_start == 2.8 and paper.eta == 100.0 and paper.r_cut == 10.0
  assert tuple(paper.box_sides) == constants.PAPER_BOX_SIDES
  quick = many_body_config.get_config()
  # The quick lj/cut run trains the network with a linear path beside it and the paper's network in plain/.
  assert quick.linear_path and quick.compare_plain and not paper.linear_path
  net, bases = many_body.bases_of(quick)
  assert len(bases[net]["r_s"]) == quick.n_descriptors
  assert set(bases) >= {many_body.basis_name(2.8, 73), many_body.basis_name(2.6, 75)}
  with pytest.raises(ValueError, match="unknown config"):
    many_body_config.get_config("huge")


def test_tiny_run_writes_results_figures_and_a_force_field(tmp_path, monkeypatch):
  monkeypatch.setenv("UENN_CACHE_DIR", str(tmp_path / "cache"))
  workdir = str(tmp_path / "run")
  config = many_body_config.get_config("tiny")
  assert not config.linear_path  # the paper's network by default on lj/cut
  config.linear_path = config.compare_plain = True
  results = many_body.train_and_evaluate(config, workdir)
  for f in ("results.json", "figures/loss.png", "figures/parity.png", "model.npz", "metrics.jsonl"):
    assert os.path.getsize(os.path.join(workdir, f)) > 0, f
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  assert on_disk["units"] == "eV/A" and np.isfinite(on_disk["test_force_rmse"])
  (name, ref), = on_disk["linear_reference"].items()
  assert ref["n_descriptors"] == config.n_descriptors and np.isfinite(ref["test_force_rmse"])
  boxes = on_disk["atoms_per_box"]["test"]
  assert on_disk["num_test_atoms"] == sum(b["atoms"] for b in boxes) > 0
  assert results["test_force_rmse"] == on_disk["test_force_rmse"]
  # The table: the linear map, the paper's direct network (trained in plain/) and the network with a linear path,
  # which starts at the linear map (zero output layer) and keeps the parameters that do best on validation.
  table = on_disk["table"]
  assert set(table) == {"linear", "paper's direct network", "network with linear path", "conservative network"}
  assert table["linear"]["test_force_rmse"] == ref["test_force_rmse"]
  assert table["paper's direct network"]["test_force_rmse"] == on_disk["plain_network"]["test_force_rmse"]
  assert on_disk["validation_force_rmse"] <= ref["validation_force_rmse"] * (1 + 1e-6)
  assert all(v["atom_steps_per_s"] > 0 for v in table.values() if v)
  assert models.load_model(os.path.join(workdir, "plain")).linear is None
  assert any(f.startswith("many_body_desc") for f in os.listdir(tmp_path / "cache"))

  # The saved force field: the network on the dense descriptors, for any N, periodic or free.
  forces = uenn.load_force_field(workdir)
  model = models.load_model(workdir)
  side = float(config.box_sides[0])
  pos = structures.random_box(side, max_atoms=40, seed=123)

  assert model.linear is not None and model.linear.shape == (config.n_descriptors,)  # the linear path is saved

  def reference(p, box):  # descriptors in float64, the network in its own dtype (as the force field does)
    d = uenn.vector_descriptors(jnp.asarray(p, jnp.float64), box, r_s=model.basis.r_s, eta=model.basis.eta,
                                r_cut=model.r_cut)
    x = (d / np.asarray(model.scales["inputs"])).astype(model.dtype)
    y = uenn.apply_uenn(jax.tree.map(jnp.asarray, model.params), x)
    return np.asarray(y[..., 0]) * model.scales["targets"][0] + np.asarray(d) @ model.linear

  got = forces(pos, side)
  assert got.shape == (40, 3)
  np.testing.assert_allclose(got, reference(pos, side), rtol=1e-4, atol=1e-5)
  more = structures.random_box(side, max_atoms=60, seed=5)  # another N
  np.testing.assert_allclose(forces(more, side), reference(more, side), rtol=1e-4, atol=1e-5)
  free = pos * 1.1
  uenn.assert_equivariant(lambda p: forces(p), jnp.asarray(free), key=jax.random.PRNGKey(0), in_axis=-1,
                          out_axis=-1, rtol=1e-4, atol=1e-4)

  with pytest.raises(ValueError, match="smaller than 2 \\* r_cut"):
    forces(pos, 15.0)
  with pytest.raises(ValueError, match="non-finite"):
    forces(np.where(np.arange(40)[:, None] == 3, np.nan, pos), side)
  with pytest.raises(ValueError, match="outside the periodic box"):
    forces(pos + side, side)


def test_emt_alloy_tiny_run_carries_species_end_to_end(tmp_path, monkeypatch):
  """EMT Cu-Au (ASE): data with species, the linear map and the network on the species layout, a model that
  knows its species, the force-field cost, and NVE with ASE's velocity Verlet against EMT."""
  external.require("ase")
  monkeypatch.setenv("UENN_CACHE_DIR", str(tmp_path / "cache"))
  workdir = str(tmp_path / "run")
  config = many_body_config.get_config("emt_alloy_tiny")
  with config.unlocked():
    config.temperatures = (600.0,)
    config.vacancies = ()
    config.compare_plain = False
  results = many_body.train_and_evaluate(config, workdir)
  assert results["species"] == ["Cu", "Au"] and results["target_name"] == "EMT CuAu"
  model = models.load_model(workdir)
  assert model.species == ("Cu", "Au") and model.sizes[0] == 4 * config.n_descriptors
  nve = results["nve"]
  assert len(nve["steps"]) == config.nve_steps // config.nve_record_every + 1
  assert nve["position_rmsd"][0] == 0.0 and nve["position_rmsd"][-1] > 0.0
  assert abs(nve["temperature"]["reference"][0] - nve["temperature"]["network"][0]) < 1e-9
  assert results["reference_potential"]["name"].startswith("ASE EMT")
  assert results["validation_force_rmse"] <= results["linear_reference"][results["basis"]]["validation_force_rmse"] * (
      1 + 1e-6)

"""The argon cross of Sec. 4.5 (Fig. 11-14): FCC lattice, cross cut, pressure, NVE on neighbor lists, files, binary."""

import contextlib
import functools
import io as stdio
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import external
from unitary_enn import constants, files, potentials, quantity, simulate, structures, thermalize
from unitary_enn.constants import ARGON_MASS
from unitary_enn.potentials import lj_energy, lj_forces

A = constants.ARGON_FCC_LATTICE_CONSTANT


def _pair_distances(positions, box=None):
  d = positions[:, None] - positions[None]
  if box is not None:
    d -= box * np.round(d / box)
  r = np.linalg.norm(d, axis=-1)
  return r[~np.eye(len(r), dtype=bool)].reshape(len(r), -1)


# --- Lattice and cross --------------------------------------------------------------------------------------


def test_fcc_lattice_count_and_nearest_neighbours():
  assert structures.fcc_lattice((2, 3, 4)).shape == (4 * 24, 3)
  p = structures.fcc_lattice(3)
  assert p.shape == (108, 3) and p.min() >= 0 and p.max() < 3 * A
  r = _pair_distances(p, 3 * A)
  nearest = r.min(axis=1)
  np.testing.assert_allclose(nearest, A / np.sqrt(2), rtol=1e-12)  # 3.708 A for argon
  assert np.all(np.sum(np.abs(r - A / np.sqrt(2)) < 1e-9, axis=1) == 12)  # 12 nearest neighbours
  assert np.all(np.sum(np.abs(r - A) < 1e-9, axis=1) == 6)  # then 6 at a
  assert len(np.unique(np.round(p, 9), axis=0)) == len(p)
  with pytest.raises(ValueError, match="n_cells"):
    structures.fcc_lattice(0)
  with pytest.raises(ValueError, match="lattice_constant"):
    structures.fcc_lattice(2, float("nan"))


@pytest.mark.parametrize("n, k", [(5, 2), (6, 1), (7, 3), (8, 4), (6, 5)])
def test_cross_count_matches_closed_form(n, k):
  cross = structures.argon_cross(n, k)
  assert len(cross) == structures.cross_atom_count(n, k) == 12 * k * k * n - 8 * k ** 3
  # The bar faces lie a/4 from the nearest atomic planes, so thermal-size displacements keep the count.
  p = structures.fcc_lattice(n, A) + np.random.default_rng(0).normal(0, 0.25, (4 * n ** 3, 3))
  centre, width = structures.cross_geometry(n * A, n, k)
  assert structures.cross_mask(p, centre, width).sum() == structures.cross_atom_count(n, k)
  # Symmetric under the cubic symmetry about the centre: the same count along every bar.
  arms = np.abs(cross - centre) < width / 2
  counts = [np.sum((arms.sum(1) == 2) & ~arms[:, i]) for i in range(3)]
  assert counts[0] == counts[1] == counts[2]


def test_paper_cross_size():
  # The paper's 50^3 crystal (500,000 atoms) with 7-cell bars: 26,656 atoms (paper: 26,679), counted directly.
  p = structures.fcc_lattice(50)
  assert len(p) == 500_000
  centre, width = structures.cross_geometry(50 * A, 50, 7)
  assert structures.cross_mask(p, centre, width).sum() == structures.cross_atom_count() == 26_656
  assert abs(26_656 - constants.PAPER_CROSS_ATOMS) / constants.PAPER_CROSS_ATOMS < 1e-3


def test_cross_input_errors():
  with pytest.raises(ValueError, match="bar_width_cells"):
    structures.cross_atom_count(5, 5)
  with pytest.raises(ValueError, match="bar_width_cells"):
    structures.cross_geometry(5 * A, 5, 2.5)
  with pytest.raises(ValueError, match="positions contains 1 non-finite"):
    structures.cross_mask(np.array([[0.0, np.nan, 0.0]]), np.zeros(3), 1.0)
  with pytest.raises(ValueError, match="smaller than 2 \\* r_cut"):
    thermalize.thermalize_fcc(3, time_ps=0.1)


# --- Pressure -----------------------------------------------------------------------------------------------


def test_virial_pressure_is_minus_dE_dV():
  """W = -3 V dU/dV for lj/cut in a periodic box: the virial against a finite difference of the dense energy."""
  from jax_md import partition, space

  n, r_cut = 4, 10.0
  box = n * A * 1.01
  pos = structures.fcc_lattice(n, A * 1.01) + np.random.default_rng(1).normal(0, 0.1, (4 * n ** 3, 3))
  pos %= box
  displacement_fn, _ = space.periodic(box)
  neighbor = partition.neighbor_list(displacement_fn, box, r_cut, format=partition.OrderedSparse).allocate(pos)
  w = float(potentials.lj_cut_virial_fn(displacement_fn, r_cut=r_cut)(jnp.asarray(pos), neighbor))
  h = 1e-6
  energy = [float(lj_energy(pos * s, box * s, r_cut)) for s in (1 + h, 1 - h)]
  de_dv = (energy[0] - energy[1]) / (((1 + h) ** 3 - (1 - h) ** 3) * box ** 3)
  volume = box ** 3
  assert w == pytest.approx(-3 * volume * de_dv, rel=1e-6)
  assert float(quantity.pressure(0.0, w, volume)) == pytest.approx(-de_dv, rel=1e-6)


# --- NVE on neighbor lists ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cross():
  pos = jnp.asarray(structures.argon_cross(5, 2))  # 176 atoms
  mom = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), pos, ARGON_MASS, constants.CROSS_TEMPERATURE)
  return pos, mom


def test_nve_conserves_energy_and_equals_dense_md(small_cross):
  """With a cutoff beyond the cross (no truncation) the chunked neighbor-list NVE equals the dense free-space
  velocity Verlet of Sec. 4.4 (`simulate.nve_trajectory` with `lj_forces`), and its energy error is velocity
  Verlet's own: bounded, and 4x smaller at half the time step (O(dt^2), no drift from chunks or lists)."""
  pos, mom = small_cross
  r_cut = 40.0  # the cross spans 26 A: every pair is inside, so U is the smooth full LJ sum
  deviation = {}
  for dt, n_steps in ((0.001, 300), (0.0005, 600)):
    run = simulate.run_nve_neighbor_list(functools.partial(potentials.lj_cut_force_fn, r_cut=r_cut), pos, mom, dt=dt,
                                   n_steps=n_steps, r_cut=r_cut, record_every=n_steps // 30, chunk_steps=n_steps // 3,
                                   energy_fn_builder=functools.partial(potentials.lj_cut_energy_fn, r_cut=r_cut), log=None)
    assert run.positions.shape == (31, 176, 3) and run.kinetic_energy.shape == (n_steps + 1,)
    assert run.potential_energy[0] == pytest.approx(float(lj_energy(pos)), rel=1e-12)
    e = run.kinetic_energy[::n_steps // 30] + run.potential_energy
    deviation[dt] = np.max(np.abs(e - e[0])) / abs(e[0])
    assert run.temperature[0] == pytest.approx(60.0) and run.temperature.min() < 40.0  # it moved
    if dt == 0.001:
      dense = simulate.nve_trajectory(lj_forces, pos, mom, n_steps=300, record_every=10)
      np.testing.assert_allclose(run.positions, np.asarray(dense.positions), rtol=0, atol=1e-9)
      np.testing.assert_allclose(run.momenta, np.asarray(dense.momenta[-1]), rtol=0, atol=1e-10)
  assert deviation[0.001] < 5e-6
  assert 3.5 < deviation[0.001] / deviation[0.0005] < 4.5


@pytest.fixture(scope="module")
def compressing_cross(small_cross):
  """The small cross at 60 K plus an inward velocity field (3 A/ps at 12 A from the centre): it densifies, so
  atoms gain neighbours and a neighbor list sized on the start overflows mid-run."""
  pos, mom = small_cross
  return pos, mom - ARGON_MASS * 0.25 * (pos - pos.mean(axis=0))


@pytest.fixture(scope="module")
def reference_run(compressing_cross):
  """lj/cut 10 A with a generous list that never overflows."""
  pos, mom = compressing_cross
  run = simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, pos, mom, n_steps=400, record_every=10, chunk_steps=50,
                                 capacity_multiplier=3.0, log=None)
  assert run.stats["reallocations"] == 0
  return run


def test_overflowing_neighbor_list_is_reallocated_and_chunk_redone(compressing_cross, reference_run):
  pos, mom = compressing_cross
  lines = []
  # Capacity 1.0: the lists are exactly full at allocation, so the first atom that gains a neighbour (or cell
  # that gains an atom) overflows them; the chunk must be thrown away and redone with a larger list.
  run = simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, pos, mom, n_steps=400, record_every=10, chunk_steps=50,
                                 capacity_multiplier=1.0, log=lines.append)
  assert run.stats["reallocations"] >= 1 and run.stats["redone_steps"] >= 50
  assert any("overflowed during steps" in line and "redoing the chunk" in line for line in lines)
  np.testing.assert_allclose(run.positions, reference_run.positions, rtol=0, atol=1e-9)
  np.testing.assert_allclose(run.kinetic_energy, reference_run.kinetic_energy, rtol=1e-10)


def test_killed_run_resumes_from_checkpoint(compressing_cross, reference_run, tmp_path):
  pos, mom = compressing_cross
  ckpt = str(tmp_path / "nve.msgpack")

  def kill_after_first_chunk(line):
    if "step      50/" in line:
      raise KeyboardInterrupt

  kwargs = dict(n_steps=400, record_every=10, chunk_steps=50, capacity_multiplier=3.0, checkpoint=ckpt)
  with pytest.raises(KeyboardInterrupt):
    simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, pos, mom, log=kill_after_first_chunk, **kwargs)
  lines = []
  run = simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, pos, mom, log=lines.append, **kwargs)
  assert "resuming" in lines[0] and "at step 50" in lines[0]
  np.testing.assert_allclose(run.positions, reference_run.positions, rtol=0, atol=1e-9)
  np.testing.assert_allclose(run.kinetic_energy, reference_run.kinetic_energy, rtol=1e-10)
  with pytest.raises(ValueError, match="belongs to a different run"):
    simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, pos, mom, log=None, **dict(kwargs, n_steps=200))


def test_nve_input_errors(small_cross):
  pos, mom = small_cross
  bad = pos.at[3, 1].set(jnp.nan)
  with pytest.raises(ValueError, match="positions contains 1 non-finite"):
    simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, bad, mom, n_steps=10, log=None)
  with pytest.raises(ValueError, match="momenta has shape"):
    simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, pos, mom[:5], n_steps=10, log=None)
  with pytest.raises(ValueError, match="format must be one of"):
    simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, pos, mom, n_steps=10, format="csr", log=None)
  with pytest.raises(ValueError, match="multiple of record_every"):
    simulate.run_nve_neighbor_list(potentials.lj_cut_force_fn, pos, mom, n_steps=10, record_every=3, log=None)


# --- Trajectory files ---------------------------------------------------------------------------------------


def test_extxyz_reads_back_with_ase(tmp_path):
  ase_io = external.require("ase.io")
  frames = np.random.default_rng(2).uniform(-50, 300, (3, 17, 3))
  path = str(tmp_path / "t.xyz")
  files.write_extxyz(path, frames, steps=[0, 100, 200], dt=0.001, cell=262.2)
  atoms = ase_io.read(path, index=":")
  assert len(atoms) == 3
  for a, f, step in zip(atoms, frames, (0, 100, 200)):
    np.testing.assert_allclose(a.get_positions(), f, rtol=0, atol=1e-8)
    assert set(a.get_chemical_symbols()) == {"Ar"} and not a.pbc.any()
    assert a.info["step"] == step and a.info["Time"] == pytest.approx(step * 0.001)
    np.testing.assert_allclose(a.cell.lengths(), 262.2)


# --- The binary ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """The tiny many_body model is trained in-process where the binary would train it (<workdir>/train); the
  binary then reuses it, trains the tiny conservative model itself (<workdir>/train_conservative) and runs the
  whole experiment on its tiny config."""
  from experiments import common, cross_md
  from experiments.configs import cross_md as cross_config

  workdir = str(tmp_path_factory.mktemp("cross_md"))
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("UENN_CACHE_DIR", workdir)
    with contextlib.redirect_stdout(stdio.StringIO()):
      common.train_model("many_body", "tiny", os.path.join(workdir, "train"))
    with contextlib.redirect_stdout(stdio.StringIO()) as out:
      results = cross_md.run(cross_config.get_config("tiny"), workdir)
  return workdir, results, out.getvalue()


def test_smoke_run_writes_results_figures_and_trajectories(tiny_run):
  workdir, results, out = tiny_run
  assert "reusing the model trained earlier" in out
  assert "md[network]: step     200/200" in out and "thermalize: box fixed at" in out
  assert "md[conservative]: step     200/200" in out
  for f in ("position_rmsd.png", "temperature.png", "cross.png", "thermalization.png"):
    assert os.path.getsize(os.path.join(workdir, "figures", f)) > 0, f
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  assert on_disk["n_atoms"] == 176 == on_disk["cross"]["sites_in_cross"]
  assert on_disk["cross"]["paper_size_atoms"] == 26_656
  for key in ("final_position_rmsd_A", "mean_abs_temperature_difference_K", "energy_drift_rel_analytical",
              "atom_steps_per_s_analytical", "atom_steps_per_s_network", "final_position_rmsd_A_conservative",
              "mean_abs_temperature_difference_K_conservative", "energy_drift_rel_conservative",
              "own_energy_drift_rel_conservative", "atom_steps_per_s_conservative"):
    assert np.isfinite(on_disk[key]) and on_disk[key] >= 0, key
  assert on_disk["final_position_rmsd_A"] > 0 and on_disk["atom_steps_per_s_network"] > 0
  assert on_disk["trained_here"] is True and on_disk["config"]["n_cells"] == 5
  # The jitted neighbor-list network equals the workdir's own force field (models.load_force_field).
  assert on_disk["network_on_initial_cross"]["md_vs_load_force_field_max_abs_eV_A"] < 1e-5
  assert on_disk["network_on_initial_cross"]["conservative_md_vs_load_force_field_max_abs_eV_A"] < 1e-5
  # F = -grad E of a translation-invariant energy: no net force; its NVE keeps its own energy (the tiny model's
  # forces are far from lj/cut, so the lj/cut energy at its positions is not conserved).
  assert on_disk["network_on_initial_cross"]["conservative_net_force_eV_A"] < 1e-9
  assert on_disk["own_energy_drift_rel_conservative"] < 1e-2
  assert on_disk["own_energy_drift_rel_conservative"] < 0.01 * on_disk["energy_drift_rel_network"]
  assert results["final_position_rmsd_A"] == on_disk["final_position_rmsd_A"]
  with np.load(os.path.join(workdir, "series.npz")) as s:
    assert s["analytical_temperature"].shape == s["network_temperature"].shape == (201,)
    assert s["conservative_temperature"].shape == (201,) and s["conservative_own_total_energy"].shape == (21,)
    assert s["position_rmsd"].shape == s["position_rmsd_conservative"].shape == (21,)
    assert np.mean(np.abs(s["network_temperature"] - s["analytical_temperature"])) == pytest.approx(
        on_disk["mean_abs_temperature_difference_K"])


def test_smoke_run_xyz_reads_back_with_ase(tiny_run):
  ase_io = external.require("ase.io")
  workdir, _, _ = tiny_run
  for name in ("analytical", "network"):
    frames = ase_io.read(os.path.join(workdir, "trajectories", f"{name}.xyz"), index=":")
    assert [a.info["step"] for a in frames] == [0, 50, 100, 150, 200]
    ckpt, = [f for f in os.listdir(os.path.join(workdir, "checkpoints")) if f.startswith(name) and "previous" not in f]
    recorded = files.load_checkpoint(os.path.join(workdir, "checkpoints", ckpt))["frames"]  # every 10 steps
    for a in frames:
      np.testing.assert_allclose(a.get_positions(), recorded[a.info["step"] // 10], rtol=0, atol=1e-7)


def test_rerun_reads_finished_stages_back(tiny_run):
  from experiments import cross_md
  from experiments.configs import cross_md as cross_config
  workdir, first, _ = tiny_run
  config = cross_config.get_config("tiny").copy_and_resolve_references()
  config.conservative_train_config = ""  # as the quick default: no conservative run
  with contextlib.redirect_stdout(stdio.StringIO()) as out:
    again = cross_md.run(config, workdir)
  assert "resuming from" in out.getvalue() and "thermalize: step" not in out.getvalue()
  assert "md[conservative]" not in out.getvalue() and "conservative" not in again["runs"]
  for key in ("n_atoms", "final_position_rmsd_A", "mean_abs_temperature_difference_K",
              "energy_drift_rel_analytical"):
    assert again[key] == first[key], key


def test_config_errors(tmp_path):
  from absl import app

  from experiments import cross_md
  from experiments.configs import cross_md as cross_config
  with pytest.raises(ValueError, match="unknown config 'huge'"):
    cross_config.get_config("huge")
  config = cross_config.get_config("tiny").copy_and_resolve_references()
  config.unlock()
  config.xyz_every = 15
  with pytest.raises(ValueError, match="config.xyz_every"):
    cross_md.run(config, str(tmp_path))
  config.xyz_every, config.n_cells = 50, 3
  with pytest.raises(ValueError, match="2 \\* r_cut"):
    cross_md.run(config, str(tmp_path))
  config.n_cells, config.sum_kernel = 5, "triton"
  with pytest.raises(ValueError, match="sum_kernel must be one of"):
    cross_md.run(config, str(tmp_path))
  config.sum_kernel, config.network_format = "pallas", "ordered_sparse"
  with pytest.raises(ValueError, match="network_format='dense'"):
    cross_md.run(config, str(tmp_path))
  with pytest.raises(app.UsageError, match="no trained model"):
    cross_md.main(cross_config.get_config("tiny"), str(tmp_path), str(tmp_path / "nowhere"))
  paper = cross_config.get_config("paper")
  assert (paper.n_cells, paper.thermalize_ps, paper.n_steps, paper.dt, paper.bar_width_cells) == (
      50, 10.0, 20_000, 0.001, 7)

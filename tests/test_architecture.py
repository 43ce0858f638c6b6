"""The package's structure: imports run one way (no circles), the deprecated `md` shim, a light import."""

import ast
import os
import subprocess
import sys
import warnings

import pytest

import unitary_enn as uenn

PACKAGE = os.path.dirname(os.path.abspath(uenn.__file__))


def _imports(path: str) -> dict[str, list[tuple[str, bool]]]:
  """unitary_enn modules imported by a file: {module: [(line, inside a function?)]}."""
  tree = ast.parse(open(path).read())
  found: dict = {}

  def visit(node, nested):
    for child in ast.iter_child_nodes(node):
      inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      names = []
      if isinstance(child, ast.Import):
        names = [a.name for a in child.names]
      elif isinstance(child, ast.ImportFrom) and child.module:
        if child.module == "unitary_enn":
          names = [f"unitary_enn.{a.name}" for a in child.names]
        else:
          names = [child.module]
      for name in names:
        if name.startswith("unitary_enn.") and name.count(".") == 1:
          mod = name.split(".")[1]
          if os.path.exists(os.path.join(PACKAGE, f"{mod}.py")):
            found.setdefault(mod, []).append((child.lineno, inner))
      visit(child, inner)

  visit(tree, False)
  return found


def _graph():
  mods = sorted(f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py") and f not in ("__init__.py", "md.py"))
  return {m: _imports(os.path.join(PACKAGE, f"{m}.py")) for m in mods}


def test_the_import_graph_has_no_circle():
  graph = {m: set(deps) - {m} for m, deps in _graph().items()}
  state: dict = {}

  def visit(m, path):
    state[m] = "open"
    for d in graph.get(m, ()):
      if state.get(d) == "open":
        cycle = path[path.index(d):] + [d]
        pytest.fail(f"import circle: {' -> '.join(cycle)}")
      if d not in state:
        visit(d, path + [d])
    state[m] = "done"

  for m in graph:
    if m not in state:
      visit(m, [m])


def test_no_import_of_the_package_is_deferred_into_a_function():
  # A deferred import hides a circle; modules import each other at the top.
  deferred = [f"{m}.py:{line} imports {d}" for m, deps in _graph().items() for d, uses in deps.items()
              for line, nested in uses if nested]
  assert not deferred, deferred


def test_md_is_a_deprecated_shim_that_still_answers():
  sys.modules.pop("unitary_enn.md", None)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from unitary_enn import md
  assert any(issubclass(w.category, DeprecationWarning) and "unitary_enn.md is deprecated" in str(w.message)
             for w in caught)
  from unitary_enn import simulate, thermalize
  assert md.run_nve is simulate.run_nve and md.thermalize_fcc is thermalize.thermalize_fcc


def test_import_is_light_and_public_names_resolve():
  code = ("import sys, unitary_enn as u; heavy = sorted(m for m in sys.modules if m.startswith('jax_md'));"
          "print(len(heavy)); u.lj_energy; u.load_force_field; u.vector_descriptors; "
          "print(int(any(m.startswith('jax_md') for m in sys.modules)))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
  assert out == ["0", "1"], out  # jax-md loads only when a name that needs it is used
  assert {"init_uenn", "apply_uenn", "fire", "random_unitary", "load_force_field"} <= set(uenn.__all__)
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    uenn.nope

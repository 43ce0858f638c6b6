"""What every experiment binary shares: flag handling, the data cache, dtype set-up, error figures."""

from __future__ import annotations

import os
import sys

from absl import app


def run_app(main) -> None:
  """`absl.app.run(main)`, but an unknown `--config.KEY` stops with one clear line instead of a traceback."""
  try:
    app.run(main)
  except (AttributeError, KeyError) as e:
    overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
    key = str(e).strip("\"'")
    culprit = [a for a in overrides if key.split()[0].strip("'\"") in a]
    if not overrides:
      raise
    sys.stderr.write(f"error: unknown config key {key} in {culprit[0] if culprit else overrides}: "
                     "check the spelling against the config file (--helpfull lists the keys)\n")
    sys.exit(2)


def cache_dir(config) -> str:
  """The data cache folder: config.cache_dir, else $UENN_CACHE_DIR, else ~/.cache/unitary_enn."""
  return (config.get("cache_dir") or os.environ.get("UENN_CACHE_DIR")
          or os.path.join(os.path.expanduser("~"), ".cache", "unitary_enn"))


def setup_dtype(config):
  """Turn on 64-bit JAX when the config asks for float64; returns the JAX dtype."""
  import jax
  if config.dtype not in ("float32", "float64"):
    raise ValueError(f"config.dtype must be 'float32' or 'float64', got {config.dtype!r}")
  if config.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  return jnp.dtype(config.dtype)


def force_rmse(pred, target) -> float:
  """Root mean square of the force error over all components, in the units of the inputs (eV/A)."""
  import numpy as np
  return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)))

"""Input validation shared by the library: clear errors that name the argument and what was expected.

Checks on values (NaN, Inf) only run on concrete arrays; inside `jit` they are skipped, because a traced
value has no value yet. Entry points that users call directly (data generators, `load_force_field`, the
experiment binaries) therefore validate before they trace.
"""

from __future__ import annotations

import jax
import numpy as np


def is_concrete(x) -> bool:
  """True when `x` holds values (NumPy, a committed jax.Array), False for a tracer inside jit/vmap/grad."""
  return not isinstance(x, jax.core.Tracer)


def check_finite(name: str, x) -> None:
  """Raise ValueError naming `name` if concrete `x` holds NaN or Inf."""
  if not is_concrete(x):
    return
  arr = np.asarray(x)
  if arr.size and not np.all(np.isfinite(arr)):
    bad = np.argwhere(~np.isfinite(arr))
    raise ValueError(
        f"{name} contains {len(bad)} non-finite value(s) (NaN or Inf), first at index {tuple(bad[0])}"
    )


def check_shape(name: str, x, expected: tuple) -> None:
  """Raise ValueError unless `x.shape` matches `expected`; None in `expected` matches any size.

  A leading Ellipsis in `expected` matches any number of batch axes.
  """
  shape = tuple(np.shape(x))
  exp = tuple(expected)
  if exp and exp[0] is Ellipsis:
    tail = exp[1:]
    ok = len(shape) >= len(tail) and all(
        e is None or e == s for e, s in zip(tail, shape[len(shape) - len(tail):]))
  else:
    ok = len(shape) == len(exp) and all(e is None or e == s for e, s in zip(exp, shape))
  if not ok:
    pretty = "(" + ", ".join("..." if e is Ellipsis else ("*" if e is None else str(e)) for e in exp) + ")"
    raise ValueError(f"{name} has shape {shape}, expected {pretty}")

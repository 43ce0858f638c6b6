"""Input validation shared by the library: clear errors that name the argument and what was expected.

Checks on values (NaN, Inf, ranges) only run on concrete arrays; inside `jit` they are skipped, because a traced
value has no value yet. Entry points that users call directly (data generators, force fields, drivers, the
experiment binaries) therefore validate before they trace.
"""

from __future__ import annotations

import math
import numbers

import jax
import numpy as np


def is_concrete(x) -> bool:
  """True when `x` holds values (NumPy, a committed jax.Array), False for a tracer inside jit/vmap/grad."""
  return not isinstance(x, jax.core.Tracer)


def as_array(name: str, x, *, kind: str = "real", numpy: bool = False):
  """`x` as an array (lists and tuples accepted): kind "real" (ints become floats), "complex", "number"
  (real or complex) or "integer"; anything else (strings, objects, booleans) is a TypeError naming `name`.

  numpy=True returns a NumPy array (for static values such as a radial basis, which must stay constants under jit).
  """
  import jax.numpy as jnp
  if isinstance(x, (str, bytes)) or x is None:
    raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
  try:
    arr = x if isinstance(x, (jax.Array, jax.core.Tracer)) else np.asarray(x)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{name} must be an array of numbers ({e})") from None
  dt = arr.dtype
  ok = {"real": np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer),
        "complex": np.issubdtype(dt, np.number) and not np.issubdtype(dt, np.bool_),
        "number": np.issubdtype(dt, np.number) and not np.issubdtype(dt, np.bool_),
        "integer": np.issubdtype(dt, np.integer)}[kind]
  if not ok or dt == np.bool_:
    what = {"number": "real or complex"}.get(kind, kind)
    raise TypeError(f"{name} must hold {what} numbers, got dtype {dt}")
  if kind == "real" and np.issubdtype(dt, np.integer):
    arr = arr.astype(jnp.result_type(float))
  if numpy:
    return np.asarray(arr)
  return jnp.asarray(arr) if not isinstance(arr, jax.core.Tracer) else arr


def prng_key(name: str, key):
  """`key` if it is a JAX PRNG key (`jax.random.PRNGKey(seed)`, uint32 `(2,)`, or a typed `jax.random.key`);
  TypeError naming `name` otherwise (an int seed, a float array)."""
  if isinstance(key, jax.core.Tracer):
    return key
  dt = getattr(key, "dtype", None)
  if dt is not None and jax.dtypes.issubdtype(dt, jax.dtypes.prng_key):
    return key
  if dt is not None and np.dtype(dt) == np.uint32 and np.shape(key)[-1:] == (2,):
    return key
  raise TypeError(f"{name} must be a JAX PRNG key such as jax.random.PRNGKey(0), got {type(key).__name__}"
                  + (f" of dtype {dt} and shape {np.shape(key)}" if dt is not None else f" {key!r}"))


def float_dtype(name: str, dtype, *, allow_complex: bool = True):
  """`dtype` as a NumPy dtype if it is a floating (or, with allow_complex, complex) type; TypeError otherwise."""
  try:
    dt = np.dtype(dtype)
  except TypeError:
    raise TypeError(f"{name} must be a float{' or complex' if allow_complex else ''} dtype, got {dtype!r}") from None
  if not (np.issubdtype(dt, np.floating) or (allow_complex and np.issubdtype(dt, np.complexfloating))):
    raise TypeError(f"{name} must be a float{' or complex' if allow_complex else ''} dtype, got {dt}")
  return dt


def layer_params(name: str, params, *, bias_shape=None) -> list:
  """A non-empty list of layers {"W": `(M_k, M_{k+1})`, "b": ...} whose widths chain; ValueError naming `name`.

  bias_shape: a function `W.shape -> expected b shape` (default: b has W's shape, the equivariant layer).
  """
  if isinstance(params, dict) or not isinstance(params, (list, tuple)):
    raise ValueError(f"{name} must be a list of layers {{'W', 'b'}} (from init_uenn / init_mlp), got "
                     f"{type(params).__name__}")
  if not params:
    raise ValueError(f"{name} is empty: a network needs at least one layer (init_uenn(key, sizes) with "
                     "len(sizes) >= 2)")
  prev = None
  for k, layer in enumerate(params):
    if not isinstance(layer, dict) or "W" not in layer or "b" not in layer:
      raise ValueError(f"{name}[{k}] must be a dict with 'W' and 'b', got {type(layer).__name__}")
    w, b = np.shape(layer["W"]), np.shape(layer["b"])
    want_b = bias_shape(w) if bias_shape else w
    if len(w) != 2 or b != tuple(want_b):
      raise ValueError(f"{name}[{k}] has W {w} and b {b}; expected W (M_in, M_out) and b {tuple(want_b)}")
    if prev is not None and w[0] != prev:
      raise ValueError(f"{name}[{k}]['W'] has {w[0]} inputs but layer {k - 1} has {prev} outputs")
    prev = w[1]
  return list(params)


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


def positive(name: str, value, *, allow_zero: bool = False) -> float:
  """`value` as a float; ValueError naming `name` unless it is a finite number > 0 (>= 0 with allow_zero)."""
  what = "non-negative" if allow_zero else "positive"
  if isinstance(value, (bool, str, bytes)) or value is None or np.ndim(value) != 0:
    raise ValueError(f"{name} must be a {what}, finite number, got {value!r}")
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a {what}, finite number, got {value!r}") from None
  if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
    raise ValueError(f"{name} must be a {what}, finite number, got {value!r}")
  return v


def positive_int(name: str, value, *, allow_zero: bool = False) -> int:
  """`value` as an int; ValueError naming `name` unless it is an integer (not a bool, float or string) > 0."""
  if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
    raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")
  v = int(value)
  if v < 0 or (v == 0 and not allow_zero):
    raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")
  return v


def sizes(name: str, values, *, minimum: int = 2) -> tuple[int, ...]:
  """A sequence of at least `minimum` positive integers (layer widths); strings and floats are rejected."""
  if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
    raise ValueError(f"{name} must be a sequence of positive integers, got {values!r}")
  out = tuple(positive_int(f"{name}[{k}]", v) for k, v in enumerate(values))
  if len(out) < minimum:
    raise ValueError(f"{name} must list at least {minimum} positive integers, got {tuple(values)!r}")
  return out


def check_box(box, r_cut: float | None = None) -> float | None:
  """Validate a cubic periodic box side (A) against the cutoff; returns it as a float (None = free space).

  The minimum-image convention sees every neighbour once only when box >= 2 r_cut.
  """
  if box is None:
    return None
  if np.ndim(box) != 0:
    raise ValueError(f"box must be the side of a cubic box in A (a scalar) or None, got shape {np.shape(box)}")
  if not is_concrete(box):
    raise ValueError("box must be a concrete number (it fixes array shapes of the neighbor list), not a tracer")
  try:
    side = float(box)
  except (TypeError, ValueError):
    raise ValueError(f"box must be a number of A or None, got {box!r}") from None
  if not math.isfinite(side) or side <= 0:
    raise ValueError(f"box must be a positive, finite side length in A (None for free space), got {box!r}")
  if r_cut is not None and side < 2.0 * r_cut:
    raise ValueError(f"box side {side} A is smaller than 2 * r_cut = {2.0 * r_cut} A: with the minimum-image "
                     "convention a neighbour could be seen through two images; use a larger box")
  return side


def check_positions(positions, box: float | None = None, *, inside_box: bool = False, min_atoms: int = 1) -> None:
  """Positions `(N, 3)` A: shape, at least `min_atoms` atoms, finiteness, and (inside_box) 0 <= x <= box."""
  check_shape("positions", positions, (None, 3))
  if positions.shape[0] < min_atoms:
    raise ValueError(f"positions holds {positions.shape[0]} atom(s), expected at least {min_atoms}")
  check_finite("positions", positions)
  if box is not None and inside_box and is_concrete(positions):
    p = np.asarray(positions)
    bad = np.argwhere((p < 0) | (p > box))
    if len(bad):
      i = int(bad[0][0])
      raise ValueError(
          f"positions has {len(np.unique(bad[:, 0]))} atom(s) outside the periodic box [0, {box}] A, first atom "
          f"{i} at {p[i].tolist()}; wrap them into the box first (e.g. positions % box)")


def check_no_coincident(positions, box: float | None = None, *, tol: float = 1e-8, budget: int = 1 << 22) -> None:
  """Raise ValueError naming the atoms when two concrete positions `(..., N, 3)` coincide (within `tol` A).

  Pair potentials and unit vectors are undefined there; a NaN from deep inside a formula would be the alternative.
  Works in blocks of about `budget` pairs, over configurations and rows at once.
  """
  if not is_concrete(positions):
    return
  p = np.asarray(positions, np.float64).reshape((-1,) + np.shape(positions)[-2:])
  n = p.shape[1]
  rows = max(1, min(n, budget // max(n, 1)))
  confs = max(1, budget // max(rows * n, 1))
  for c in range(0, len(p), confs):
    block = p[c:c + confs]
    for a in range(0, n, rows):
      d = block[:, None, :, :] - block[:, a:a + rows, None, :]  # (configs, rows, N, 3)
      if box is not None:
        d -= box * np.round(d / box)
      r2 = np.einsum("sijk,sijk->sij", d, d)
      r = np.arange(r2.shape[1])
      r2[:, r, a + r] = np.inf
      hit = np.argwhere(r2 <= tol * tol)
      if len(hit):
        s, i, j = int(c + hit[0][0]), int(a + hit[0][1]), int(hit[0][2])
        where = f" in configuration {s}" if len(p) > 1 else ""
        d = float(np.sqrt(r2[hit[0][0], hit[0][1], j]))
        if d <= 1e-8:
          raise ValueError(f"atoms {i} and {j}{where} sit at the same position {p[s, i].tolist()} A; the "
                           "potential is singular there")
        raise ValueError(f"atoms {i} and {j}{where} are only {d:.3g} A apart (atom {i} at {p[s, i].tolist()} A), "
                         f"closer than {tol:.3g} A, where the potential overflows this dtype")

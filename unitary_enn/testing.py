"""Equivariance test helpers, shipped so that users can test their own layers the way we test ours.

    U = random_unitary(key, 3, jnp.complex64)         # Haar-random in U(3)
    assert_equivariant(f, x, key=key)                  # f(U'x) == U' f(x) for several random U
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks
from unitary_enn.layers import dot

Array = jax.Array


def random_unitary(key: Array, n: int, dtype=jnp.complex64) -> Array:
  """A Haar-random matrix in U(n) (complex dtype) or O(n) (real dtype, both determinants equally likely).

  QR of a Ginibre matrix with the phases of R's diagonal moved into Q (Mezzadri 2007); without that
  correction the distribution is not Haar.
  """
  checks.prng_key("key", key)
  n = checks.positive_int("n", n)
  dtype = jnp.dtype(checks.float_dtype("dtype", dtype))
  if jnp.issubdtype(dtype, jnp.complexfloating):
    kr, ki = jax.random.split(key)
    real = jnp.finfo(dtype).dtype
    z = (jax.random.normal(kr, (n, n), real) + 1j * jax.random.normal(ki, (n, n), real)).astype(dtype)
  else:
    z = jax.random.normal(key, (n, n), dtype)
  q, r = jnp.linalg.qr(z)
  d = jnp.diagonal(r)
  phase = jnp.where(jnp.abs(d) > 0, d / jnp.abs(d), 1.0)
  return (q * phase[None, :]).astype(dtype)


def _act(u: Array, x: Array, axis: int, n_features: int) -> Array:
  """Apply U' = diag(U, I_m) to the coordinate `axis` of x (the first n entries of that axis)."""
  x = jnp.moveaxis(x, axis, -1)
  n = u.shape[0]
  # full precision (`layers.dot`'s default): jax's GPU default for float32/complex64 (TensorFloat-32) would itself
  # break equivariance at ~5e-4
  vec = dot(x[..., :n], u.T)
  if x.shape[-1] > n:
    if x.shape[-1] - n != n_features:
      raise ValueError(f"axis {axis} has {x.shape[-1]} entries, expected n={n} plus "
                       f"n_features={n_features}")
    vec = jnp.concatenate([vec, x[..., n:].astype(vec.dtype)], axis=-1)
  return jnp.moveaxis(vec, -1, axis)


def _default_tol(dtype) -> float:
  return 1e-9 if jnp.finfo(dtype).bits >= 64 else 2e-4


def assert_equivariant(fn: Callable[[Array], Array],
                       x: Array,
                       *,
                       key: Array,
                       n: int | None = None,
                       n_features: int = 0,
                       in_axis: int = -2,
                       out_axis: int = -2,
                       group: str | None = None,
                       num_trials: int = 3,
                       rtol: float | None = None,
                       atol: float | None = None,
                       reflection: bool = False) -> None:
  """Assert fn(U' x) == U' fn(x) for `num_trials` Haar-random U.

  Args:
    fn: the function to test.
    x: an input; its `in_axis` holds n vector coordinates followed by `n_features` invariant rows.
    key: PRNG key for the random group elements.
    n: vector dimension; default `x.shape[in_axis] - n_features`.
    in_axis / out_axis: where the coordinates sit in the input / output (-2 for the layer layout,
      -1 for positions `(N, 3)`).
    group: "unitary" (U(n)) or "orthogonal" (O(n)); default from x's dtype.
    num_trials: how many random U to try.
    rtol, atol: tolerances relative to the output scale; defaults depend on the precision.
    reflection: also test one pure reflection diag(-1, 1, ..., 1) (O(n) only).

  Raises:
    AssertionError naming the trial and the relative error when the function is not equivariant.
  """
  x = jnp.asarray(x)
  n = x.shape[in_axis] - n_features if n is None else n
  if group is None:
    group = "unitary" if jnp.iscomplexobj(x) else "orthogonal"
  if group not in ("unitary", "orthogonal"):
    raise ValueError(f"group must be 'unitary' or 'orthogonal', got {group!r}")
  real = jnp.finfo(x.dtype).dtype
  gdtype = jnp.result_type(real, jnp.complex64) if group == "unitary" else real
  tol = _default_tol(real)
  rtol = tol if rtol is None else rtol
  atol = tol if atol is None else atol

  fx = jnp.asarray(fn(x))
  mats = [random_unitary(k, n, gdtype) for k in jax.random.split(key, num_trials)]
  if reflection:
    mats.append(jnp.diag(jnp.ones(n, real).at[0].set(-1.0)).astype(gdtype))
  scale = float(jnp.max(jnp.abs(fx))) + 1e-30
  for i, u in enumerate(mats):
    lhs = jnp.asarray(fn(_act(u, x, in_axis, n_features)))
    rhs = _act(u, fx, out_axis, n_features)
    err = float(jnp.max(jnp.abs(lhs - rhs)))
    if not err <= atol * scale + rtol * float(jnp.max(jnp.abs(rhs))):
      raise AssertionError(
          f"not equivariant: trial {i} ({group}, n={n}), max |f(Ux) - U f(x)| = {err:.3e}, "
          f"output scale {scale:.3e}")


def assert_invariant(fn: Callable[[Array], Array], x: Array, *, key: Array, n: int | None = None,
                     n_features: int = 0, in_axis: int = -2, group: str | None = None,
                     num_trials: int = 3, rtol: float | None = None) -> None:
  """Assert fn(U' x) == fn(x) for `num_trials` Haar-random U (see `assert_equivariant` for the arguments)."""
  x = jnp.asarray(x)
  n = x.shape[in_axis] - n_features if n is None else n
  if group is None:
    group = "unitary" if jnp.iscomplexobj(x) else "orthogonal"
  real = jnp.finfo(x.dtype).dtype
  gdtype = jnp.result_type(real, jnp.complex64) if group == "unitary" else real
  rtol = _default_tol(real) if rtol is None else rtol
  fx = np.asarray(fn(x))
  for i, k in enumerate(jax.random.split(key, num_trials)):
    u = random_unitary(k, n, gdtype)
    fux = np.asarray(fn(_act(u, x, in_axis, n_features)))
    err = float(np.max(np.abs(fux - fx)))
    scale = float(np.max(np.abs(fx))) + 1e-30
    if not err <= rtol * scale:
      raise AssertionError(f"not invariant: trial {i}, max |f(Ux) - f(x)| = {err:.3e}, scale {scale:.3e}")

"""The equivariant layer of Ma & Chan (2023), Sec. 3.2, and its vector activations.

Layout contract: a layer input `x` has shape `(..., n + m, M)`: the last axis indexes the M vectors
("nodes"), the axis before it their coordinates (n vector coordinates, then m invariant scalar features,
Sec. 3.3), and batch axes lead. A unitary U in U(n) (orthogonal in O(n) for real data) acts on the first n
rows of that axis: U' = diag(U, I_m).

Everything here is pure and jit/vmap/grad-able, for real and complex dtypes. Every norm is "safe": its value
and gradient are finite at 0 (docs/decisions.md §1, the double-`where` pattern of jax-md's `util.safe_mask`).

Precision: every contraction takes a `precision` (`PRECISIONS`), "highest" by default: float32 and complex64
products are computed in full float32 on every backend, so a model gives the same numbers to float32 rounding on
CPU and GPU (jax's GPU default for float32 matmuls is TensorFloat-32, which breaks equivariance at ~1e-3).
"tf32" (GPU only), "bf16" (bfloat16 inputs, float32 accumulation) and "default" (the backend's choice) trade
accuracy for speed. "bf16x3", "bf16x6", "bf16x9" and "tf32x3" are XLA's dot algorithms that split each float32
into 3 bfloat16 (2 TensorFloat-32) pieces and add 3, 6 or 9 of their products on a GPU's tensor cores, about
16, 22 and 24 bits of the product (tf32x3: about 21); the CPU computes the bf16 ones in float32 and has no
TensorFloat-32. `benchmarks.precision` measures each one's error and speed on the default device. float64 products
are always exact.

Two forms of the layer's elementwise work, written for GPUs and off (`UNROLL_NORMS`, `ONE_PRODUCT`): every
figure of benchmarks/RESULTS.md and README.md was computed without them. They give the same values to float32
rounding, not to the bit (XLA's CPU code contracts the unrolled squares into fused multiply-adds).

Smooth unit vectors (a departure from eq. 9, off by default): with `eps > 0` the unit vector of the `e b` term
is e = x / sqrt(||x||^2 + eps^2), continuous (and smooth) at x = 0, where eq. 9's x / ||x|| jumps; `eps` is in
the units of the layer's input. docs/decisions.md §14.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks

Array = jax.Array
Activation = Callable[[Array], Array]

PRECISIONS = ("highest", "tf32", "bf16", "default", "bf16x3", "bf16x6", "bf16x9", "tf32x3")
_ALGORITHMS = {"tf32": "TF32_TF32_F32", "bf16": "BF16_BF16_F32", "bf16x3": "BF16_BF16_F32_X3",
               "bf16x6": "BF16_BF16_F32_X6", "bf16x9": "BF16_BF16_F32_X9", "tf32x3": "TF32_TF32_F32_X3"}


def _vectors(name: str, x, axis: int = -2, min_ndim: int = 1):
  """`x` as a real or complex array (lists accepted) with an axis `axis`; TypeError / ValueError otherwise."""
  x = checks.as_array(name, x, kind="number")
  if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
    raise TypeError(f"axis must be an integer, got {axis!r}")
  if x.ndim < max(min_ndim, 1) or not -x.ndim <= axis < x.ndim:
    raise ValueError(f"{name} has shape {tuple(x.shape)}: expected at least {max(min_ndim, 1)} axes and an axis "
                     f"{axis} to take norms over")
  return x


def _scalar(name: str, value) -> float:
  """A finite real number (Python or 0-d array); ValueError naming `name` otherwise."""
  if isinstance(value, (bool, str, bytes)) or value is None or np.ndim(value) != 0 or np.iscomplexobj(value):
    raise ValueError(f"{name} must be a finite real number, got {value!r}")
  v = float(value)
  if not np.isfinite(v):
    raise ValueError(f"{name} must be a finite real number, got {value!r}")
  return v


def resolve_precision(precision, dtype=None):
  """The `precision` argument of a jax contraction for a precision name (`PRECISIONS`) and operand dtype.

  None means "highest". 64-bit operands always get `Precision.HIGHEST`. Complex operands have no dot algorithm
  presets, so the algorithm names give them the backend's `DEFAULT` (TensorFloat-32 on NVIDIA GPUs).
  A `jax.lax.Precision` or `DotAlgorithmPreset` passes through unchanged.
  """
  if precision is None:
    precision = "highest"
  if not isinstance(precision, str):
    return precision
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
  if precision == "highest" or (dtype is not None and jnp.finfo(dtype).bits >= 64):
    return jax.lax.Precision.HIGHEST
  if precision == "default":
    return jax.lax.Precision.DEFAULT
  if dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
    return jax.lax.Precision.DEFAULT
  return getattr(jax.lax.DotAlgorithmPreset, _ALGORITHMS[precision])


def dot(a: Array, b: Array, precision=None) -> Array:
  """`a @ b` at the given precision name (see `resolve_precision`)."""
  return jnp.matmul(a, b, precision=resolve_precision(precision, jnp.result_type(a, b)))


# On the H200 (lease 7, benchmarks/RESULTS.md "Leases 5-7") the network's work besides its products took 15.8 ms
# of a 62.7-76 ms network MD step at 1M atoms: each norm over the coordinate axis was a reduction kernel of its
# own, with the compares and selects of eq. 9 and softsign in further kernels, and x W + e b's sum a kernel that
# read both products. Reading each layer's input and writing its output once would be about 2-4 ms. Neither form
# below has been timed on a GPU yet (benchmarks/gpu_lease.sh does); on 2 CPU cores both together made network MD
# 1.07-1.08x faster but four-atom training 0.90x (benchmarks/RESULTS.md, "The layers' elementwise work").
UNROLL_NORMS = False  # True: ||x||^2 over a coordinate axis of at most 8 as a sum of slices, which XLA fuses
ONE_PRODUCT = False  # True: x W + e b as one product [x, e] [W; b] (no sum of two products afterwards)
_UNROLLED_AXIS = 8


def squared_norm(x: Array, axis: int = -2, keepdims: bool = True) -> Array:
  """sum_i |x_i|^2 over `axis` (real): as one reduction, or with `UNROLL_NORMS` on an axis of at most 8 numbers
  as a sum of its slices, elementwise work that XLA can fuse with what reads and writes x (the same value to
  float32 rounding)."""
  axis = axis % x.ndim
  if not UNROLL_NORMS or x.shape[axis] > _UNROLLED_AXIS:
    return jnp.sum(jnp.real(x * jnp.conj(x)), axis=axis, keepdims=keepdims)
  total = None
  for i in range(x.shape[axis]):
    v = jax.lax.index_in_dim(x, i, axis, keepdims)
    sq = jnp.real(v) * jnp.real(v) + jnp.imag(v) * jnp.imag(v) if jnp.iscomplexobj(v) else v * v
    total = sq if total is None else total + sq
  return total


def safe_norm(x: Array, axis: int = -2, keepdims: bool = True) -> Array:
  """Euclidean (complex modulus) norm ||v|| = sqrt(sum_i |v_i|^2) with a finite gradient at 0.

  Args:
    x: real or complex array.
    axis: the coordinate axis the norm runs over (default -2, the layout above).
    keepdims: keep the reduced axis (size 1) so the result broadcasts against `x`.

  Returns:
    Real array of norms; the gradient at a zero vector is 0 instead of NaN.
  """
  x = _vectors("x", x, axis)
  sq = squared_norm(x, axis, keepdims)
  positive = sq > 0
  # The inner `where` keeps sqrt's derivative away from 0 in the branch that is discarded, so the
  # gradient of the masked branch is 0 rather than 0 * inf = NaN.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def unit_threshold(dtype) -> float:
  """The norm below which eq. 9's unit vector is 0: sqrt of the dtype's smallest normal number (1.08e-19 in
  float32, 1.5e-154 in float64), where the squares in ||x|| would reach the subnormal range."""
  return float(np.sqrt(np.finfo(jnp.finfo(dtype).dtype).tiny))


def unit_vectors(x: Array, axis: int = -2) -> Array:
  """e = x / ||x|| column by column (eq. 9); 0 where ||x|| < `unit_threshold`, with finite gradients there.

  Squaring a column whose components are ~1e-19 (float32) underflows, and backends flush such squares to zero
  differently (XLA's CPU code and an H200 disagreed: benchmarks/RESULTS.md, "GPU: one H200"), which moved eq. 9's
  jump from 0 to a backend-dependent place and gave vectors longer than 1 where only the smaller components'
  squares were flushed. So columns with ||x||^2 < tiny / eps^2 (float32: 2^-80) are normalized after an exact
  scaling by 1 / `unit_threshold` (2^63 in float32), where nothing underflows: e is a unit vector, or 0 below the
  threshold, on every backend. Larger columns take x / ||x|| as before: the same values to the bit, gradients to
  rounding.
  """
  x = _vectors("x", x, axis)
  real = jnp.finfo(x.dtype).dtype
  tau = unit_threshold(real)
  norm = safe_norm(x, axis=axis, keepdims=True)
  large = norm >= tau / float(np.finfo(real).eps)  # ||x||^2 >= tiny / eps^2
  plain = jnp.where(large, x / jnp.where(large, norm, 1.0), 0.0)  # the expression of before, to the bit
  y = jnp.where(large, 0.0, x) * jnp.asarray(1.0 / tau, real).astype(x.dtype)  # exact: a power of 2
  sq_y = squared_norm(y, axis)
  kept = sq_y >= 1.0  # ||x|| >= unit_threshold
  scaled = jnp.where(kept, y / jnp.sqrt(jnp.where(kept, sq_y, 1.0)).astype(x.dtype), 0.0)
  return jnp.where(large, plain, scaled)


def smooth_unit_vectors(x: Array, eps: float, axis: int = -2) -> Array:
  """e = x / sqrt(||x||^2 + eps^2) column by column: eq. 9 made continuous and smooth at x = 0 (eps > 0).

  Equivariant like eq. 9 (it scales x by a function of ||x||); |e| < 1, and e -> x / ||x|| for ||x|| >> eps.
  """
  x = _vectors("x", x, axis)
  eps = checks.positive("eps", eps)
  sq = squared_norm(x, axis)
  return x * jax.lax.rsqrt(sq + jnp.asarray(eps, sq.dtype) ** 2)


def augmented_unit_vectors(x: Array, n_features: int = 0, eps: float = 0.0) -> Array:
  """e' = (x_vec / ||x_vec||, 1) for inputs carrying `n_features` scalar feature rows (Sec. 3.3).

  The normalization covers the n vector coordinates only; the feature rows of e' are the constant 1, so the
  bias of the feature rows is one scalar per output node.

  Args:
    x: `(..., n + n_features, M)`.
    n_features: m, the number of trailing invariant feature rows.
    eps: 0 for eq. 9; > 0 for `smooth_unit_vectors` (in the units of x).

  Returns:
    `(..., n + n_features, M)`, same dtype as `x`.
  """
  x = _vectors("x", x, -2, min_ndim=2)
  n_features = checks.positive_int("n_features", n_features, allow_zero=True)
  if n_features >= x.shape[-2]:
    raise ValueError(f"n_features={n_features} must leave at least one vector coordinate in x.shape[-2]="
                     f"{x.shape[-2]}")
  eps = checks.positive("eps", eps, allow_zero=True)
  normalize = unit_vectors if not eps else functools.partial(smooth_unit_vectors, eps=eps)
  if n_features == 0:
    return normalize(x)
  vec, feat = x[..., :-n_features, :], x[..., -n_features:, :]
  return jnp.concatenate([normalize(vec), jnp.ones_like(feat)], axis=-2)


def glorot_uniform(key: Array, shape: tuple[int, int], dtype=jnp.float32) -> Array:
  """Normalized Xavier init (Glorot & Bengio 2010): U(-l, l), l = sqrt(6 / (fan_in + fan_out)).

  For a complex dtype the real and imaginary parts are drawn independently with half the variance each
  (docs/decisions.md §1 decision), so E|w|^2 matches the real case.
  """
  checks.prng_key("key", key)
  if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2:
    raise ValueError(f"shape must be (fan_in, fan_out), got {shape!r}")
  fan_in, fan_out = (checks.positive_int(f"shape[{k}]", v) for k, v in enumerate(shape))
  shape = (fan_in, fan_out)
  checks.float_dtype("dtype", dtype)
  limit = jnp.sqrt(6.0 / (fan_in + fan_out))
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    real_dtype = jnp.finfo(dtype).dtype
    kr, ki = jax.random.split(key)
    half = limit / jnp.sqrt(2.0)
    re = jax.random.uniform(kr, shape, real_dtype, -half, half)
    im = jax.random.uniform(ki, shape, real_dtype, -half, half)
    return (re + 1j * im).astype(dtype)
  return jax.random.uniform(key, shape, dtype, -limit, limit)


def init_dense(key: Array, m_in: int, m_out: int, dtype=jnp.float32) -> dict[str, Array]:
  """Parameters of one equivariant layer: W by normalized Xavier, b = 0 (Sec. 4.2). Both `(m_in, m_out)`."""
  m_in, m_out = checks.positive_int("m_in", m_in), checks.positive_int("m_out", m_out)
  return {
      "W": glorot_uniform(key, (m_in, m_out), dtype),
      "b": jnp.zeros((m_in, m_out), dtype),
  }


def equivariant_dense(params: dict[str, Array], x: Array, n_features: int = 0, *, precision=None,
                      eps: float = 0.0) -> Array:
  """y = x W + e b (eq. 6), with e = x / ||x|| (eq. 9) or e' of Sec. 3.3 when features are present.

  Args:
    params: {"W": `(M_in, M_out)`, "b": `(M_in, M_out)`}.
    x: `(..., n + n_features, M_in)`.
    n_features: number of trailing invariant feature rows.
    precision: of the two products, a name of `PRECISIONS` (default "highest": full float32).
    eps: 0 for eq. 9; > 0 for the smooth unit vector x / sqrt(||x||^2 + eps^2) (`smooth_unit_vectors`).

  Returns:
    y: `(..., n + n_features, M_out)`. Equivariant: dense(U'x) = U' dense(x) for U' = diag(U, I).
  """
  (params,) = checks.layer_params("params", [params])
  x = _vectors("x", x, -2, min_ndim=2)
  if x.shape[-1] != params["W"].shape[0]:
    raise ValueError(f"x has shape {tuple(x.shape)}, expected (..., n + n_features, {params['W'].shape[0]}): the "
                     "last axis holds the input vectors")
  e = augmented_unit_vectors(x, n_features, eps)
  if ONE_PRODUCT:
    return dot(jnp.concatenate([x, e], axis=-1), jnp.concatenate([params["W"], params["b"]], axis=0), precision)
  return dot(x, params["W"], precision) + dot(e, params["b"], precision)


def identity(u: Array) -> Array:
  """The identity activation (eq. 15), used on the output layer."""
  return u


def softsign(u: Array, a: float = 0.1) -> Array:
  """Softsign with residue, sigma(u) = u / (1 + ||u||) + a u (eq. 14), acting on each column of `u`.

  Args:
    u: `(..., n, M)`; the norm runs over axis -2.
    a: the residue that keeps gradients alive for large ||u|| (the paper uses 0.1).
  """
  u = _vectors("u", u)
  if checks.is_concrete(a):
    _scalar("a", a)
  return u / (1.0 + safe_norm(u)) + a * u


def vector_leaky_relu(u: Array, c: float = 1.0, k: float = 0.01) -> Array:
  """Vector leaky ReLU (eq. 16): u where ||u|| >= c, else k u. k = 0 gives the vector ReLU.

  Args:
    u: `(..., n, M)`; the norm runs over axis -2.
    c: threshold on the norm, c >= 0.
    k: slope below the threshold, 0 <= k < 1.
  """
  u = _vectors("u", u)
  if not _scalar("vector_leaky_relu: c", c) >= 0:
    raise ValueError(f"vector_leaky_relu: c must be >= 0, got {c}")
  if not 0 <= _scalar("vector_leaky_relu: k", k) < 1:
    raise ValueError(f"vector_leaky_relu: k must satisfy 0 <= k < 1, got {k}")
  return jnp.where(safe_norm(u) >= c, u, k * u)


ACTIVATIONS: dict[str, Activation] = {
    "softsign": softsign,
    "identity": identity,
    "vector_relu": functools.partial(vector_leaky_relu, k=0.0),
    "vector_leaky_relu": vector_leaky_relu,
}


def get_activation(activation: str | Activation) -> Activation:
  """An activation by name (one of `ACTIVATIONS`) or the callable itself."""
  if callable(activation):
    return activation
  try:
    return ACTIVATIONS[activation]
  except KeyError:
    raise ValueError(
        f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)} or a callable"
    ) from None

"""Stacks of equivariant layers (Sec. 3.2), invariant heads (Sec. 3.6) and the scalar MLP baseline (Sec. 4.3).

Contract:
  init_uenn(key, sizes, *, dtype, n_features) -> params, a list of {"W", "b"} dicts, one per layer.
  apply_uenn(params, x, ...) maps `(..., n + n_features, sizes[0])` to `(..., n + n_features, sizes[-1])`;
  it is U(n)-equivariant for complex data and O(n)-equivariant for real data, for any n.
  `UENN` is the same network as a Flax linen module (it calls the same functions).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks
from unitary_enn.layers import (Activation, dot, equivariant_dense, get_activation, glorot_uniform, init_dense,
                                safe_norm, softsign)

Array = jax.Array
Params = Any


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
  """At least two positive integer layer widths; a string, a float or a bool is a ValueError (never truncated)."""
  return checks.sizes("sizes", sizes)


def _check_n_features(n_features, x=None) -> int:
  n_features = checks.positive_int("n_features", n_features, allow_zero=True)
  if x is not None and n_features >= x.shape[-2]:
    raise ValueError(f"n_features={n_features} must be >= 0 and leave at least one vector coordinate "
                     f"in x.shape[-2]={x.shape[-2]}")
  return n_features


def init_uenn(key: Array, sizes: Sequence[int], *, dtype=jnp.float32, n_features: int = 0) -> Params:
  """Initialize an equivariant network with vector widths `sizes` (input, hidden..., output).

  Args:
    key: PRNG key.
    sizes: number of vector nodes per layer, e.g. (6, 50, 90, 100, 80, 50, 4) for Sec. 4.2.
    dtype: float dtype for O(n) networks, complex dtype for U(n) networks.
    n_features: accepted for symmetry with `apply_uenn`; the parameter shapes do not depend on it.

  Returns:
    A list of {"W": `(M_k, M_{k+1})`, "b": `(M_k, M_{k+1})`}; 2 * sum_k M_k M_{k+1} entries in all.
  """
  checks.prng_key("key", key)
  _check_n_features(n_features)
  checks.float_dtype("dtype", dtype)
  sizes = _check_sizes(sizes)
  keys = jax.random.split(key, len(sizes) - 1)
  return [init_dense(k, m_in, m_out, dtype) for k, m_in, m_out in zip(keys, sizes[:-1], sizes[1:])]


def apply_uenn(params: Params,
               x: Array,
               *,
               activation: str | Activation = softsign,
               output_activation: str | Activation = "identity",
               n_features: int = 0,
               precision=None,
               eps: float = 0.0,
               block: int | None = None) -> Array:
  """Run the network: x_{k+1} = sigma(x_k W_k + e_k b_k) (eq. 6, 12), identity on the last layer.

  Args:
    params: from `init_uenn`.
    x: `(..., n + n_features, sizes[0])`.
    activation: hidden-layer activation (name or callable); softsign with residue a = 0.1 by default.
    output_activation: output-layer activation; identity by default (eq. 15).
    n_features: number of trailing invariant scalar feature rows in `x` (Sec. 3.3).
    precision: of every product, a name of `layers.PRECISIONS`; default "highest" (full float32).
    eps: 0 for the paper's unit vectors (eq. 9); > 0 for smooth ones, x / sqrt(||x||^2 + eps^2), in every layer
      (`layers.smooth_unit_vectors`; eps in the units of each layer's input, standardized units for the first).
    block: None to run all of x at once, or rows of x's leading axis per block (`jax.lax.map` over blocks; x needs
      at least 3 axes). The rows are independent, so the result is the same to rounding; on CPU, blocks of a few
      thousand atoms keep each layer's activations in cache (`network_block` chooses one).

  Returns:
    `(..., n + n_features, sizes[-1])`.
  """
  params = checks.layer_params("params", params)
  x = checks.as_array("x", x, kind="number")
  m_in = params[0]["W"].shape[0]
  if x.ndim < 2 or x.shape[-1] != m_in:
    raise ValueError(
        f"x has shape {tuple(x.shape)}, expected (..., n + n_features, {m_in}): the last axis holds "
        f"the {m_in} input vectors and the axis before it their coordinates")
  _check_n_features(n_features, x)
  checks.check_finite("x", x)
  checks.positive("eps", eps, allow_zero=True)
  act, out_act = get_activation(activation), get_activation(output_activation)

  def layers(x):
    for i, layer in enumerate(params):
      x = equivariant_dense(layer, x, n_features, precision=precision, eps=eps)
      x = out_act(x) if i == len(params) - 1 else act(x)
    return x

  if block is None:
    return layers(x)
  block = checks.positive_int("block", block)
  if x.ndim < 3:
    raise ValueError(f"block needs x with a leading axis of rows, (rows, ..., n + n_features, {m_in}); "
                     f"got shape {tuple(x.shape)}")
  return map_blocks(layers, x, block)


NETWORK_CPU_BUDGET = 1 << 20  # numbers in the widest activation of one block on CPU (4 MB float32: cache-sized)


def map_blocks(fn, x: Array, block: int) -> Array:
  """fn over blocks of `block` rows of x's leading axis (`jax.lax.map`; the last block padded by repeating the
  last row), concatenated: `fn(x)` for a row-wise fn, computed a block at a time. Rows are spread evenly over the
  fewest blocks of at most `block` rows."""
  n = x.shape[0]
  if n <= block:
    return fn(x)
  n_blocks = -(-n // block)
  block = -(-n // n_blocks)
  rows = jnp.minimum(jnp.arange(n_blocks * block), n - 1).reshape(n_blocks, block)
  y = jax.lax.map(lambda r: fn(x[r]), rows)
  return y.reshape((n_blocks * block,) + y.shape[2:])[:n]


def network_block(sizes: Sequence[int], n_coordinates: int = 3, platform: str | None = None) -> int | None:
  """Rows (atoms) per block of `apply_uenn(..., block=...)` for the default device: on CPU, so that the widest
  activation `(rows, n_coordinates, max(sizes))` holds about `NETWORK_CPU_BUDGET` numbers; None (all rows at
  once) on GPU/TPU, whose memory holds the whole batch.

  On 2 CPU cores, the Sec. 4.5 network (widest layer 200) ran 1.3x faster per atom on 4,000 atoms and 1.6x on
  32,000-108,000 in blocks of 2,000 atoms than all at once (benchmarks/RESULTS.md, "Network MD on one
  machine, second pass", item 2).
  """
  platform = platform or jax.devices()[0].platform
  if platform != "cpu":
    return None
  widest = max(_check_sizes(sizes)) * checks.positive_int("n_coordinates", n_coordinates)
  return max(1, NETWORK_CPU_BUDGET // widest)


class EquivariantDense(nn.Module):
  """One equivariant layer y = x W + e b (eq. 6) as a Flax module; same math as `equivariant_dense`."""
  features: int
  n_features: int = 0
  param_dtype: Any = jnp.float32
  precision: Any = None
  eps: float = 0.0

  @nn.compact
  def __call__(self, x: Array) -> Array:
    m_in = x.shape[-1]
    w = self.param("W", lambda k, s: glorot_uniform(k, s, self.param_dtype), (m_in, self.features))
    b = self.param("b", lambda k, s: jnp.zeros(s, self.param_dtype), (m_in, self.features))
    return equivariant_dense({"W": w, "b": b}, x, self.n_features, precision=self.precision, eps=self.eps)


class UENN(nn.Module):
  """The unitary-equivariant feedforward network as a Flax linen module.

  `sizes[0]` is taken from the input; `sizes[1:]` are the layer widths. `to_pure_params` converts its
  variables to the list that `apply_uenn` takes, and the two give the same outputs.
  """
  sizes: Sequence[int]
  activation: str | Activation = softsign
  output_activation: str | Activation = "identity"
  n_features: int = 0
  param_dtype: Any = jnp.float32
  precision: Any = None
  eps: float = 0.0

  @nn.compact
  def __call__(self, x: Array) -> Array:
    act, out_act = get_activation(self.activation), get_activation(self.output_activation)
    widths = tuple(self.sizes[1:])
    for i, width in enumerate(widths):
      x = EquivariantDense(width, self.n_features, self.param_dtype, self.precision, self.eps, name=f"layer_{i}")(x)
      x = out_act(x) if i == len(widths) - 1 else act(x)
    return x

  @staticmethod
  def to_pure_params(variables) -> Params:
    """Flax variables of a `UENN` -> the parameter list used by `apply_uenn`."""
    layers = variables["params"]
    return [dict(layers[f"layer_{i}"]) for i in range(len(layers))]


def linear_response_at_zero(params: Params, *, eps: float, activation: str | Activation = softsign,
                            output_activation: str | Activation = "identity", precision=None) -> Array:
  """G `(sizes[0], sizes[-1])` with apply_uenn(params, x, eps=eps) = x G + O(|x|^2) near x = 0 (eps > 0).

  With smooth unit vectors every layer is differentiable at 0, and equivariance makes its linear part a map of
  the vector channels only (the same for every coordinate), so the whole network is x -> x G to first order:
  for a perfect crystal, whose descriptors are 0 up to rounding, the output is G times the rounding.
  docs/decisions.md §14. Eq. 9 (eps = 0) jumps at 0 and has no linear response: a ValueError.
  """
  checks.positive("eps", eps)
  m_in = params[0]["W"].shape[0]
  dtype = params[0]["W"].dtype
  # Channel a of input a is e_a with one coordinate: forward-mode derivative at 0 along each e_a at once.
  basis = jnp.eye(m_in, dtype=dtype)[:, None, :]
  _, g = jax.jvp(lambda x: apply_uenn(params, x, activation=activation, output_activation=output_activation,
                                      precision=precision, eps=eps), (jnp.zeros_like(basis),), (basis,))
  return g[:, 0, :]


def count_params(params: Params) -> int:
  """Number of real parameters: complex entries count twice (real and imaginary part)."""
  return int(sum(np.size(p) * (2 if jnp.iscomplexobj(p) else 1) for p in jax.tree.leaves(params)))


# --- Invariant heads (Sec. 3.6, docs/decisions.md §11) --------------------------------------------------------------


def invariant_features(x: Array, n_features: int = 0, *, precision=None) -> Array:
  """Turn vectors into U(n)-invariant scalars: the Gram matrix G = x^H x and the feature rows.

  For real x, G is symmetric: its upper triangle (norms squared on the diagonal, inner products off it)
  gives M (M + 1) / 2 invariants. For complex x, G is Hermitian: the real diagonal plus the real and
  imaginary parts of the upper triangle give M^2 invariants. Feature rows are invariant already.

  Args:
    x: `(..., n + n_features, M)`.
    n_features: trailing invariant feature rows.

  Returns:
    Real `(..., n_invariants)`; `n_invariants = num_invariants(M, complex, n_features)`.
  """
  x = checks.as_array("x", x, kind="number")
  if x.ndim < 2:
    raise ValueError(f"x has shape {tuple(x.shape)}, expected (..., n + n_features, M)")
  n_features = _check_n_features(n_features, x)
  vec = x[..., :x.shape[-2] - n_features, :]
  m = x.shape[-1]
  gram = dot(jnp.swapaxes(jnp.conj(vec), -1, -2), vec, precision)
  iu = np.triu_indices(m)
  parts = [jnp.real(gram[..., iu[0], iu[1]])]
  if jnp.iscomplexobj(x):
    ju = np.triu_indices(m, k=1)
    parts.append(jnp.imag(gram[..., ju[0], ju[1]]))
  if n_features:
    feat = x[..., x.shape[-2] - n_features:, :]
    parts += [jnp.real(feat).reshape(feat.shape[:-2] + (-1,))]
    if jnp.iscomplexobj(feat):
      parts.append(jnp.imag(feat).reshape(feat.shape[:-2] + (-1,)))
  return jnp.concatenate(parts, axis=-1)


def num_invariants(m: int, is_complex: bool = False, n_features: int = 0) -> int:
  """Length of `invariant_features` for M vectors."""
  m = checks.positive_int("m", m)
  n_features = _check_n_features(n_features)
  n = m * (m + 1) // 2 + (m * (m - 1) // 2 if is_complex else 0)
  return n + n_features * m * (2 if is_complex else 1)


def scalar_softsign(u: Array, a: float = 0.1) -> Array:
  """Scalar softsign with residue u / (1 + |u|) + a u, the scalar form of eq. 14."""
  return u / (1.0 + jnp.abs(u)) + a * u


def init_mlp(key: Array, sizes: Sequence[int], *, dtype=jnp.float32) -> Params:
  """A conventional scalar MLP (Sec. 4.3): W by normalized Xavier `(d_in, d_out)`, b = 0 `(d_out,)`."""
  checks.prng_key("key", key)
  checks.float_dtype("dtype", dtype)
  sizes = _check_sizes(sizes)
  keys = jax.random.split(key, len(sizes) - 1)
  return [{"W": glorot_uniform(k, (a, b), dtype), "b": jnp.zeros((b,), dtype)}
          for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def apply_mlp(params: Params, x: Array, *, activation=scalar_softsign, precision=None) -> Array:
  """Run the scalar MLP on `(..., sizes[0])`; `activation` on hidden layers, identity on the output."""
  params = checks.layer_params("params", params, bias_shape=lambda w: w[1:])
  x = checks.as_array("x", x, kind="number")
  d_in = params[0]["W"].shape[0]
  if x.ndim < 1 or x.shape[-1] != d_in:
    raise ValueError(f"x has shape {tuple(x.shape)}, expected (..., {d_in})")
  checks.check_finite("x", x)
  for i, layer in enumerate(params):
    x = dot(x, layer["W"], precision) + layer["b"]
    if i < len(params) - 1:
      x = activation(x)
  return x


def init_invariant_head(key: Array, m: int, hidden: Sequence[int], n_out: int = 1, *,
                        is_complex: bool = False, n_features: int = 0, dtype=jnp.float32) -> Params:
  """An invariant head: `invariant_features` of M vectors -> scalar MLP with widths `hidden` -> n_out."""
  return init_mlp(key, (num_invariants(m, is_complex, n_features), *hidden, n_out), dtype=dtype)


def apply_invariant_head(params: Params, x: Array, *, n_features: int = 0, precision=None) -> Array:
  """Invariant scalars (e.g. an energy) from vectors `(..., n + n_features, M)` -> `(..., n_out)`."""
  checks.layer_params("params", params, bias_shape=lambda w: w[1:])
  return apply_mlp(params, invariant_features(x, n_features, precision=precision), precision=precision)


def vector_norms(x: Array) -> Array:
  """||x^(alpha)|| of each column of `(..., n, M)` -> `(..., M)`; the simplest invariants."""
  x = checks.as_array("x", x, kind="number")
  if x.ndim < 2:
    raise ValueError(f"x has shape {tuple(x.shape)}, expected (..., n, M)")
  return safe_norm(x, keepdims=False)

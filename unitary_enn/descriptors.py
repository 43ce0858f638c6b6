"""Atom-centred descriptors (paper Sec. 3.5, 4.5) and the learnable vector GNN layer (eq. 32), on jax-md.

Three levels, as jax-md's `energy.py` has them:

  kernels on distances   `cosine_cutoff` (eq. 52), `polynomial_cutoff` (C2), `edge_features` (eq. 33)
  dense, all pairs       `scalar_descriptors` (eq. 34) and `vector_descriptors` (eq. 35 / 51), with
                         `positions (N, 3)` A and `box` = cubic side in A (periodic, minimum image) or None
  neighbor lists         `scalar_descriptors_neighbor_list` / `vector_descriptors_neighbor_list(displacement_fn,
                         box, ...) -> (neighbor_fn, descriptor_fn)`, jax-md `Dense`, `Sparse`, `OrderedSparse`

and `descriptor_model`, which runs them (and a network on them) on any configuration through the checked
neighbor-list driver `neighbors.neighbor_list_model`.

Conventions. r_ij = r_j - r_i, r_ij = |r_ij|; a sum over j runs over the neighbours j != i with r_ij < r_c.
Descriptors use the layer layout: vector descriptors `(N, 3, C)`, scalar ones `(N, C)`, with
C = n_species * len(r_s) channels in blocks, one block of len(r_s) per *neighbour* species (eq. 30):
channel d * len(r_s) + a holds the sum over neighbours of species d. With node features v_jd in general
(eq. 31-32) block d is weighted by v_jd; one-hot species is the special case. A pair at r_ij = 0 contributes
nothing (its direction is undefined, the convention e = 0 of eq. 9).

Several species, the network's input. The sums above see the neighbours' species but not the species of atom i
itself, which a force model needs too (a Cu and an Au atom in the same surroundings feel different forces).
`center_species_channels` puts atom i's channels into the block of its own species: for S species the network
input has S * S * K channels, channel (c * S + d) * K + a holding D_i^{d,a} when atom i is of species c and 0
otherwise (c: species of atom i, d: species of the neighbours, a: radial centre). Every row of the first layer,
and of a linear map, then has its own weights per (c, d) pair; with one species the layout is the plain one.

Units: A for positions, box, r_s and r_cut; A^-2 for eta. Vector descriptors are dimensionless (unit vectors
times Gaussians). The paper's basis (Sec. 4.5): `paper_r_s()` = 2.8, 2.9, ..., 10.0 A (73), eta = 100 A^-2,
r_cut = 10 A, cosine cutoff.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition

from unitary_enn import checks, kernels
from unitary_enn.layers import get_activation, glorot_uniform, resolve_precision
from unitary_enn.constants import PAPER_N_DESCRIPTORS, PAPER_R_S_START, PAPER_R_S_STEP
from unitary_enn.neighbors import minimum_image, neighbor_format, neighbor_list_model, row_displacements

Array = jax.Array
CutoffFn = Callable[[Array, float], Array]


# --- Kernels on distances -----------------------------------------------------------------------------


def _sin_pi(t: Array) -> Array:
  """sin(pi t) for |t| <= 1/2 by its Taylor polynomial in t, to below the rounding of t's dtype.

  7 terms (degree 13, truncation error < 7e-10 at |t| = 1/2) for 32-bit floats and narrower, 13 terms (degree 25,
  < 2e-23) for float64. XLA's CPU code calls a scalar libm cosine: the descriptor sum took 1.21-1.25x as long
  with it on 4,000 and 32,000 atoms; the polynomial vectorizes (benchmarks/RESULTS.md, "Network MD on one
  machine, second pass", item 1).
  """
  terms = 13 if jnp.finfo(t.dtype).bits > 32 else 7
  coef = [(-1) ** k * math.pi ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(terms)]
  t2 = t * t
  p = coef[-1]
  for c in coef[-2::-1]:
    p = p * t2 + c
  return t * p


def cosine_cutoff(r: Array, r_cut: float) -> Array:
  """f_c(r) = (cos(pi r / r_c) + 1) / 2 for r < r_c, else 0 (eq. 52).

  Evaluated as 1/2 - sin(pi t) / 2 with t = r / r_c - 1/2 in [-1/2, 1/2] (`_sin_pi`), equal to the cosine form to
  the rounding of r's dtype.

  Continuous with a continuous first derivative at r_c; the second derivative jumps there (by
  pi^2 / (2 r_c^2)), so it is only C1 although Sec. 3.5 asks for C2 (see `polynomial_cutoff`).
  """
  r = jnp.asarray(r)
  r = r if jnp.issubdtype(r.dtype, jnp.floating) else r.astype(jnp.float32)
  t = jnp.clip(r / r_cut - 0.5, -0.5, 0.5)  # clipped: finite values and gradients beyond r_c, masked below
  return jnp.where(r < r_cut, 0.5 - 0.5 * _sin_pi(t), 0.0)


def polynomial_cutoff(r: Array, r_cut: float) -> Array:
  """f_c(r) = 1 - 10 x^3 + 15 x^4 - 6 x^5 with x = r / r_c, for r < r_c, else 0 (C2 at r_c).

  f_c(0) = 1, f_c(r_c) = 0, and f_c', f_c'' vanish at both ends, which is what Sec. 3.5 asks of f_c.
  """
  x = r / r_cut
  return jnp.where(x < 1.0, 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x), 0.0)


CUTOFFS: dict[str, CutoffFn] = {"cosine": cosine_cutoff, "polynomial": polynomial_cutoff}


def get_cutoff(cutoff: str | CutoffFn) -> CutoffFn:
  """A cutoff function by name (one of `CUTOFFS`) or the callable `f(r, r_cut)` itself."""
  if callable(cutoff):
    return cutoff
  try:
    return CUTOFFS[cutoff]
  except KeyError:
    raise ValueError(f"unknown cutoff {cutoff!r}; expected one of {sorted(CUTOFFS)} or a callable") from None


def radial_grid(start: float, n: int, step: float = 0.1) -> np.ndarray:
  """Centres r_s^a = start + a * step, a = 0..n-1 (A), float64."""
  n, step = checks.positive_int("n", n), checks.positive("step", step)
  if isinstance(start, (bool, str)) or not np.isfinite(float(start)):
    raise ValueError(f"start must be a finite number of A, got {start!r}")
  return start + step * np.arange(n, dtype=np.float64)


def paper_r_s() -> np.ndarray:
  """The paper's 73 centres r_s = 2.8 + 0.1 a A, a = 0..72 (Sec. 4.5), ending at r_c = 10 A."""
  return radial_grid(PAPER_R_S_START, PAPER_N_DESCRIPTORS, PAPER_R_S_STEP)


def gaussian_basis(r: Array, r_s: Array, eta: Array | float) -> Array:
  """exp(-eta (r - r_s)^2) for each centre: `(...)` -> `(..., K)`; eta is a scalar or `(K,)` in A^-2."""
  d = r[..., None] - r_s
  return jnp.exp(-eta * d * d)


def edge_features(r: Array, *, r_s: Array, eta: Array | float, r_cut: float,
                  cutoff: str | CutoffFn = "cosine") -> Array:
  """Gaussian edge features e^b(r) = exp(-eta_b (r - r_s^b)^2) f_c(r) (eq. 33): `(...)` -> `(..., K)`.

  Zero for r >= r_cut. The i = j case of eq. 33 (r = 0) is excluded by the callers' masks.
  """
  r = jnp.asarray(r)
  r_s = jnp.asarray(r_s, r.dtype)
  return gaussian_basis(r, r_s, jnp.asarray(eta, r.dtype)) * get_cutoff(cutoff)(r, r_cut)[..., None]


def _pair_terms(d: Array, valid: Array, r_cut: float, cutoff: CutoffFn, vector: bool):
  """Distances, cutoff weights and unit vectors of pairs, safely masked (no NaN/inf in values or gradients).

  The factors of a pair's terms in eq. 34-35 other than its Gaussians: f_c(r_ij), which `_row_sums` multiplies
  into the pair's unit vector (vector sums) or its K Gaussians (scalar sums), and r_ij / r_ij (vector).

  Args:
    d: `(3, ...)` r_ij = r_j - r_i in A, coordinates first (`neighbors.row_displacements`).
    valid: `(...)` bool, False for padding and self pairs.
    r_cut, cutoff: the cutoff radius in A and function.
    vector: also return the unit vectors (eq. 35).

  Returns:
    r `(...)` in A (1 for invalid pairs, so that their Gaussians and gradients stay finite), the cutoff weight
    f_c `(...)` and the unit vectors `(3, ...)` (coordinates first; None when not `vector`), zero for invalid
    pairs, r = 0 or r >= r_cut. A pair whose distance is NaN (a NaN position, under jit where it cannot be
    rejected) gets a NaN weight, so the atoms that see it get NaN descriptors instead of losing a neighbour; an
    infinite distance (an atom at infinity, or a squared distance that overflows) is beyond the cutoff.

    Coordinates come first because XLA's CPU code for `(..., 3)` arrays is slow (benchmarks/RESULTS.md, "Network
    MD on one machine, before and after"). With them first, the cutoff weight on the 3 components of the unit
    vector is faster than on the K Gaussians, which it was not when pairs were `(..., 3)` arrays ("Network MD
    on one machine, second pass", item 1).
  """
  r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
  # Comparisons with NaN are False, so the tests are written as "not outside": a NaN distance stays in, and its
  # NaN reaches the sums, where "0 < r2 < r_cut^2" would silently drop the pair. (A separate NaN test added to
  # every pair's weight cost 7% of the sum on 32,000 atoms.)
  valid = valid & ~(r2 <= 0) & ~(r2 >= r_cut * r_cut)
  r = jnp.sqrt(jnp.where(valid, r2, 1.0))
  fc = jnp.where(valid, cutoff(r, r_cut), 0.0)
  return r, fc, (jnp.where(valid, d / r, 0.0) if vector else None)


def _pair_weights(fc: Array, u: Array | None, vector: bool) -> Array:
  """The weight of a pair's Gaussians in eq. 34 / 35: f_c `(...)` or f_c r_ij / r_ij, one pair per row `(..., 3)`."""
  return jnp.moveaxis(u * fc, 0, -1) if vector else fc


# --- The sum over a pair's Gaussians: the full basis or the band around r -------------------------------
#
# A pair at distance r needs only the centres whose Gaussian exp(-eta (r - r_s)^2) does not underflow; the
# band holds those consecutive centres, computed exactly as `gaussian_basis` computes them (same r, same
# centres, same operations) and scatter-added into their K channels, so that every channel, however small,
# equals the full sum's to rounding. Dropping more (e.g. all Gaussians below 2^-24, 9 of the 73 centres of
# Sec. 4.5) is exact to rounding relative to the largest channel but not per channel, and the network reads
# the direction of every channel through e = x / |x| (eq. 9): a channel made only of Gaussian tails still
# carries the direction of its nearest neighbours (down to |x| ~ 1e-19 in a float32 network, below which
# |x|^2 underflows in `layers.safe_norm` and e = 0), and zeroing it changed the forces of a trained Sec. 4.5
# network by 9% of their largest value (6.2e-3 of 0.067 eV/A; `python -m benchmarks.descriptor_sum --cells=5
# --bands=9,21 --model=WORKDIR`).

BAND_MAX_FRACTION = 1 / 4  # automatic band only when it holds at most this fraction of the centres


def _band_width(r_s, eta, dtype) -> int | None:
  """The narrowest band of centres per pair that gives every channel of the sum to rounding, or None.

  A Gaussian farther than sqrt(-ln(tiny) / eta) from r underflows to zero (tiny: the smallest subnormal
  number of `dtype`, whether or not the backend flushes subnormals; float32: 1.02 A for eta = 100 A^-2,
  float64: 2.73 A), so the full sum holds nothing of it either. The band holds the kb consecutive centres nearest
  to r (`_band_start`), so every centre left out lies at least kb / 2 grid steps from r; kb is the smallest width
  for which that is beyond reach.

  Args:
    r_s: `(K,)` centres in A.
    eta: scalar or `(K,)` in A^-2.
    dtype: the float dtype of the sum.

  Returns:
    kb, or None when the centres or eta are traced, the centres are not a uniform grid (to 1e-3 of a step),
    eta differs between centres, or the band would hold more than half of the centres.
  """
  if not (checks.is_concrete(r_s) and checks.is_concrete(eta)):
    return None
  r_s = np.asarray(r_s, np.float64)
  eta = np.asarray(eta, np.float64)
  k = r_s.shape[0] if r_s.ndim == 1 else 0
  if k < 4 or not np.all(np.isfinite(r_s)) or not np.all(eta == eta.flat[0]) or not eta.flat[0] > 0:
    return None
  step = (r_s[-1] - r_s[0]) / (k - 1)
  if not step > 0:
    return None
  off_grid = float(np.max(np.abs(r_s - (r_s[0] + step * np.arange(k)))))
  if off_grid > 1e-3 * step:
    return None
  tiny = float(np.finfo(dtype).smallest_subnormal)
  # Reach of a Gaussian above underflow, plus the grid's irregularity and the rounding of the band index.
  reach = math.sqrt(-math.log(tiny) / float(eta.flat[0])) + 2.0 * off_grid + 1e-3 * step
  kb = int(math.ceil(2.0 * reach / step))
  return kb if 2 * kb <= k else None


def _auto_band(r_s, eta, dtype) -> int | None:
  """The band used when none is asked for: `_band_width` when it is at most `BAND_MAX_FRACTION` of the
  centres, else None (the full sum).

  The band replaces K exponentials per pair by kb and a scatter-add of kb x 3 numbers; on a 2-core AMD EPYC
  (XLA CPU) it paid at kb = 9 of 73 (1.1-1.2x), not at 16 or 19 (0.8-1.0x): benchmarks/descriptor_sum.py.
  The exact band of the paper's basis in float32 is 21 of 73, so its sums are full.
  """
  kb = _band_width(r_s, eta, dtype)
  return kb if kb is not None and kb <= BAND_MAX_FRACTION * np.shape(r_s)[0] else None


def _band_start(r: Array, r_s: Array, kb: int) -> Array:
  """First centre c of the band [c, c + kb) around each r: `(...)` -> `(...)` int32 in [0, K - kb].

  With x = (r - r_s[0]) / step, c = floor(x - kb/2 + 1) puts x in [c + kb/2 - 1, c + kb/2), so the centres
  c - 1 and c + kb are at least kb / 2 steps away (further still where c is clipped at the ends).
  """
  k = r_s.shape[0]
  x = jax.lax.stop_gradient((r - r_s[0]) * ((k - 1) / (r_s[-1] - r_s[0])))
  return jnp.clip(jnp.floor(x - (kb / 2 - 1)), 0, k - kb).astype(jnp.int32)


def _banded_gaussians(r: Array, r_s: Array, eta: Array, kb: int) -> tuple[Array, Array]:
  """The band of Gaussians around each r: c `(...)` int32 and exp(-eta (r - r_s[c + t])^2) `(..., kb)`.

  Bit for bit the values `gaussian_basis` gives at centres c .. c + kb - 1 (eta must be one value).
  """
  k = r_s.shape[0]
  windows = jnp.stack([r_s[t:t + k - kb + 1] for t in range(kb)], axis=-1)  # windows[c, t] = r_s[c + t]
  c = _band_start(r, r_s, kb)
  d = r[..., None] - windows[c]
  eta = eta if jnp.ndim(eta) == 0 else eta[0]
  return c, jnp.exp(-eta * d * d)


def _band_payload(g: Array, w: Array, v: Array, vector: bool) -> Array:
  """What a pair adds to its band of channels: g `(P, kb)`, w `(P, [3])`, v `(P, S)` -> `(P, kb, S, [3])`."""
  if vector:
    return g[:, :, None, None] * (v[:, :, None] * w[:, None, :])[:, None]
  return g[:, :, None] * (v * w[:, None])[:, None]


def _band_scatter(acc: Array, rows: Array, c: Array, payload: Array, mode=None) -> Array:
  """acc[rows, c + t] += payload[:, t] for t < kb: acc `(R, K, S, [3])`, rows and c `(P,)` int."""
  dims = jax.lax.ScatterDimensionNumbers(update_window_dims=tuple(range(1, payload.ndim)),
                                         inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0, 1))
  return jax.lax.scatter_add(acc, jnp.stack([rows, c], axis=-1), payload, dims,
                             mode=mode or jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _band_layout(acc: Array, vector: bool) -> Array:
  """`(R, K, S, [3])` -> the layer layout `(R, [3,] S, K)`."""
  return jnp.transpose(acc, (0, 3, 2, 1) if vector else (0, 2, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _gaussian_sums(r: Array, w: Array, v: Array, r_s: Array, eta: Array, precision, sum_kernel: str = "xla") -> Array:
  """sum_m w[x, b, m] v[b, m, s] exp(-eta (r[b, m] - r_s[k])^2) -> `(b, X, S, K)`: the sums of eq. 34 (X = 1, w = f_c)
  and eq. 35 (X = 3, w = f_c r_ij / r_ij) over a block of pairs `(b, m)`, with its gradient written out.

  Autodiff of the contraction forms the `(b, m, K)` cotangent of the Gaussians, a product over the 3 x S (x, s)
  axes only, and then reduces it over K. The gradient below contracts over the K centres instead:
  dL/dw v = C . g and dL/dr = 2 eta sum_{x,s} w v (C . (r_s - r) g), two products of the same shape as the
  forward one (`jax.checkpoint` around each block recomputes g instead of keeping it). Measured in
  benchmarks/RESULTS.md, "Conservative MD: the gradient of the descriptor sum".

  Reverse mode only, as for any `jax.custom_vjp`: `jax.grad`, `jax.jacrev` and `jax.hessian` (forward over
  reverse) go through the descriptor sums; `jax.jvp` and `jax.jacfwd` of a function of them raise a TypeError.
  (A `jax.custom_jvp` with the same products was no faster than autodiff: JAX transposes it into the
  (3 S, K) x (K, m) product order.) The centres and widths get their exact gradient, computed only when they
  are differentiated (`symbolic_zeros`), so that a basis replicated over devices (`shard_map`) gets no
  per-device cotangent.

  sum_kernel "pallas" computes the sums in one kernel (`kernels.gaussian_sums`) instead of the Gaussians and a
  product, and the two contractions of the gradient in another (`kernels.gaussian_sums_vjp`); neither writes
  the Gaussians to memory (the basis' own gradient, when asked for, computes them in XLA).
  """
  if sum_kernel == "pallas":
    return _fused_sums(r, w, v, r_s, eta)
  return _contract_pairs(w, v, gaussian_basis(r, r_s, eta), precision)


def _fused_sums(r: Array, w: Array, v: Array, r_s: Array, eta: Array) -> Array:
  """`_gaussian_sums`'s value by `kernels.gaussian_sums`: w `(X, b, m)`, v `(b, m, S)` -> `(b, X, S, K)`."""
  x, s = w.shape[0], v.shape[-1]
  wv = jnp.moveaxis(w[..., None] * v, 3, 1).reshape((x * s,) + r.shape)  # channel x * S + s
  out = kernels.gaussian_sums(r, wv, r_s, eta)
  return out.reshape(out.shape[:1] + (x, s) + out.shape[2:])


def _contract_pairs(w: Array, v: Array, g: Array, precision) -> Array:
  """sum_m w[x, b, m] v[b, m, s] g[b, m, k] -> `(b, X, S, K)`: the product of `_gaussian_sums` and its forward rule."""
  return jnp.einsum("xbms,bmk->bxsk", w[..., None] * v, g, precision=precision)


def _gaussian_sums_fwd(r, w, v, r_s, eta, precision, sum_kernel):
  # symbolic_zeros: the inputs come as CustomVJPPrimal(value, perturbed)
  r, w, v, basis = r.value, w.value, v.value, (r_s.perturbed or eta.perturbed)
  r_s, eta = r_s.value, eta.value
  if sum_kernel == "pallas":  # the Gaussians are never in memory
    return _fused_sums(r, w, v, r_s, eta), (r, w, v, r_s, eta, None, basis)
  g = gaussian_basis(r, r_s, eta)
  return _contract_pairs(w, v, g, precision), (r, w, v, r_s, eta, g, basis)


def _gaussian_sums_bwd(precision, sum_kernel, res, c):
  r, w, v, r_s, eta, g, basis = res
  wv = w[..., None] * v  # (X, b, m, S)
  scalar_eta = jnp.ndim(eta) == 0
  if sum_kernel == "pallas":  # both contractions over the centres in one kernel, the Gaussians in registers
    x, s = w.shape[0], v.shape[-1]
    a, h = kernels.gaussian_sums_vjp(r, c.reshape(c.shape[:1] + (x * s,) + c.shape[3:]), r_s, eta)
    a, h = (jnp.moveaxis(t.reshape((x, s) + r.shape), 1, 3) for t in (a, h))  # (X, b, m, S)
    dr = 2 * jnp.sum(wv * h, axis=(0, 3))  # h holds eta
    g = gaussian_basis(r, r_s, eta) if basis else None
  else:
    d = r_s - r[..., None]  # (b, m, K)
    a = jnp.einsum("bxsk,bmk->xbms", c, g, precision=precision)  # dL/d(w v)
    # dg_k/dr = 2 eta_k (r_s,k - r) g_k; a K-dependent eta goes inside the product
    h = jnp.einsum("bxsk,bmk->xbms", c, g * d if scalar_eta else eta * g * d, precision=precision)
    dr = (2 * eta if scalar_eta else 2) * jnp.sum(wv * h, axis=(0, 3))
  dr_s = deta = None  # zero: the basis is not differentiated
  if basis:
    d = r_s - r[..., None]
    p = jnp.einsum("bxsk,xbms->bmk", c, wv, precision=precision) * g  # dL/dg g
    dr_s = (-jnp.sum(2 * eta * d * p, axis=(0, 1))).astype(r_s.dtype)
    deta = -jnp.sum(d * d * p, axis=(0, 1))
    deta = (jnp.sum(deta) if scalar_eta else deta).astype(jnp.result_type(eta))
  return (dr.astype(r.dtype), jnp.sum(a * v, axis=3).astype(w.dtype),
          jnp.sum(a * w[..., None], axis=0).astype(v.dtype), dr_s, deta)


_gaussian_sums.defvjp(_gaussian_sums_fwd, _gaussian_sums_bwd, symbolic_zeros=True)


def _row_sums(r: Array, fc: Array, u: Array | None, v: Array, r_s: Array, eta: Array, band: int | None,
              vector: bool, precision=None, sum_kernel: str = "xla") -> Array:
  """Sums over axis 1 of a block of pairs `(b, m)`: sum_m [u] f_c v exp(-eta (r - r_s)^2) -> `(b, [3,] S, K)`.

  Args:
    r, fc, u: `(b, m)` distances in A, `(b, m)` cutoff weights and `(3, b, m)` unit vectors (or None) from
    `_pair_terms`; v: `(b | 1, m, S)` node features of the neighbours; band: the band width (`_band_width`) or
    None for the full basis; precision: of the contraction over neighbours (`layers.PRECISIONS`, default full
    float32); sum_kernel: "xla" or "pallas" (`kernels`; the full basis only, band None).
  """
  if band is None:
    prec = resolve_precision(precision, r.dtype)
    # f_c on the 3 components of the unit vector, not on the K Gaussians: 1-7% faster on CPU
    w = u * fc if vector else fc[None]
    out = _gaussian_sums(r, w, jnp.broadcast_to(v, r.shape + v.shape[-1:]), r_s, eta, prec, sum_kernel)
    return out if vector else out[:, 0]
  b, m = r.shape
  c, g = _banded_gaussians(r, r_s, eta, band)
  v = jnp.broadcast_to(v, (b, m, v.shape[-1]))
  w = _pair_weights(fc, u, vector)
  payload = _band_payload(g.reshape(b * m, band), w.reshape((b * m,) + w.shape[2:]), v.reshape(b * m, -1),
                          vector)
  acc = jnp.zeros((b, r_s.shape[0]) + payload.shape[2:], payload.dtype)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, m)).reshape(-1)
  return _band_layout(_band_scatter(acc, rows, c.reshape(-1), payload), vector)


def _band_option(band, r_s, eta, dtype, sum_kernel: str = "xla") -> int | None:
  """The band width to use: None = automatic (`_auto_band`), 0 / False = full sum, or a width in centres
  (at least `_band_width`). The fused kernel (sum_kernel "pallas") always takes the full basis: None."""
  if sum_kernel == "pallas":
    return None
  if band is None:
    return _auto_band(r_s, eta, dtype)
  if band is False or band == 0:
    return None
  exact = _band_width(r_s, eta, dtype)
  k = r_s.shape[0]
  if not isinstance(band, (int, np.integer)) or isinstance(band, bool) or band < 0:
    raise ValueError(f"band must be None (automatic), 0 (full sum) or a number of centres, got {band!r}")
  if band >= k:
    return None
  if exact is None or band < exact:
    need = (f"a band >= {exact}" if exact is not None else "the full sum (band=0): its centres are not a "
            "uniform grid with one eta, or an exact band would hold more than half of them")
    raise ValueError(f"band={band} would drop Gaussians that do not underflow in {jnp.dtype(dtype).name}; "
                     f"this basis needs {need}")
  return int(band)


# --- Validation ----------------------------------------------------------------------------------------


def _check_basis(r_s, eta, r_cut):
  r_s = checks.as_array("r_s", r_s, numpy=True).astype(np.float64)
  if r_s.ndim != 1 or r_s.size == 0:
    raise ValueError(f"r_s must be a non-empty 1-D sequence of centres in A, got shape {r_s.shape}")
  if not np.all(np.isfinite(r_s)):
    raise ValueError("r_s contains NaN or Inf")
  eta_arr = checks.as_array("eta", eta, numpy=True).astype(np.float64)
  if eta_arr.ndim not in (0, 1) or (eta_arr.ndim == 1 and eta_arr.shape != r_s.shape):
    raise ValueError(f"eta must be a scalar or have the shape of r_s {r_s.shape}, got {eta_arr.shape}")
  if not np.all((eta_arr > 0) & np.isfinite(eta_arr)):
    raise ValueError(f"eta must be positive and finite (A^-2), got {eta}")
  return r_s, eta_arr, checks.positive("r_cut (A)", r_cut)


def _node_features(n_atoms: int, species, n_species, node_features, dtype) -> tuple[Array, int]:
  """Node features v_jd `(N, S)`: all ones (one species), one-hot species, or given features."""
  if node_features is not None:
    if species is not None:
      raise ValueError("give either species or node_features, not both")
    v = jnp.asarray(node_features, dtype)
    checks.check_shape("node_features", v, (n_atoms, None))
    checks.check_finite("node_features", v)
    return v, v.shape[1]
  if species is None:
    if n_species not in (None, 1):
      raise ValueError(f"n_species={n_species} needs a species array of shape ({n_atoms},)")
    return jnp.ones((n_atoms, 1), dtype), 1
  species = jnp.asarray(species)
  checks.check_shape("species", species, (n_atoms,))
  if not jnp.issubdtype(species.dtype, jnp.integer):
    raise ValueError(f"species must hold integers 0..n_species-1, got dtype {species.dtype}")
  if n_species is None:
    if not checks.is_concrete(species):
      raise ValueError("n_species must be given when species is traced")
    n_species = int(np.max(np.asarray(species))) + 1
  if checks.is_concrete(species):
    s = np.asarray(species)
    if s.min() < 0 or s.max() >= n_species:
      raise ValueError(f"species must lie in 0..{n_species - 1}, got values from {s.min()} to {s.max()}")
  return jax.nn.one_hot(species, n_species, dtype=dtype), int(n_species)


def _float_dtype(positions):
  dtype = jnp.asarray(positions).dtype
  return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.dtype(jnp.float32)


CPU_BLOCK_BUDGET = 1 << 22  # numbers in a block's largest intermediate on CPU (16 MB float32: cache-sized)
ACCELERATOR_BLOCK_BUDGET = 1 << 28  # on a GPU/TPU that does not report its memory
MAX_BLOCK_BUDGET = 1 << 30
ACCELERATOR_MEMORY_FRACTION = 1 / 16  # of the free device memory, for one intermediate (several are live)


def _block_budget(platform: str, memory_stats: dict | None = None, itemsize: int = 4) -> int:
  """Numbers per block intermediate for a device: cache-sized on CPU, from the free memory on GPU/TPU.

  Args:
    platform: "cpu", "gpu", "cuda", "rocm", "tpu", ...
    memory_stats: the device's `memory_stats()` (None when it has none): `bytes_limit` and `bytes_in_use`.
    itemsize: bytes per number.

  Returns:
    `CPU_BLOCK_BUDGET` on CPU; elsewhere `ACCELERATOR_MEMORY_FRACTION` of the free bytes in numbers, rounded
    down to a power of two (so that small changes of the free memory do not change block sizes and force a
    recompilation) within [CPU_BLOCK_BUDGET, MAX_BLOCK_BUDGET]; `ACCELERATOR_BLOCK_BUDGET` without stats.
  """
  if platform == "cpu":
    return CPU_BLOCK_BUDGET
  stats = memory_stats or {}
  limit, used = stats.get("bytes_limit"), stats.get("bytes_in_use", 0)
  if not limit:
    return ACCELERATOR_BLOCK_BUDGET
  numbers = int(max(limit - used, 0) * ACCELERATOR_MEMORY_FRACTION) // max(int(itemsize), 1)
  if numbers < 1:
    return CPU_BLOCK_BUDGET
  return int(min(max(1 << (numbers.bit_length() - 1), CPU_BLOCK_BUDGET), MAX_BLOCK_BUDGET))


def _device_budget(itemsize: int = 4) -> int:
  """`_block_budget` of the default device (the first of `jax.devices()`)."""
  device = jax.devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # backends without memory statistics
    stats = None
  return _block_budget(device.platform, stats, itemsize)


def _block_size(n_rows: int, row_cost: int, budget: int | None = None, *, itemsize: int = 4) -> int:
  """Rows per block so that a block's largest intermediate holds at most about `budget` numbers.

  The rows are spread evenly over the fewest blocks that respect the budget, so the last block is not mostly
  padding (4,000 atoms in blocks of 307 would compute 4,298 rows; in 14 blocks of 286, 4,004).

  budget None: from the default device (`_block_budget`). An explicit `block` of the public functions
  bypasses this function.
  """
  if budget is None:
    budget = _device_budget(itemsize)
  largest = int(max(1, min(n_rows, budget // max(row_cost, 1))))
  n_blocks = -(-int(n_rows) // largest)
  return int(max(1, -(-int(n_rows) // max(n_blocks, 1))))


def _pair_cost(k: int, band: int | None, s: int, vector: bool, sum_kernel: str = "xla") -> int:
  """Numbers per pair in the largest intermediate of `_row_sums`: the Gaussians `(b, m, S K)` of the full sum,
  the band's payload `(P, kb, S, [3])`, or the weights `(X S, m, b)` and displacements `(3, b, m)` of the fused
  kernel, which holds no Gaussians in memory."""
  x = 3 if vector else 1
  if sum_kernel == "pallas":
    return x * s + 3
  return band * s * x if band else k * s


# --- Dense versions (all pairs) ------------------------------------------------------------------------


def _dense_sums(positions, node_feat, r_s, eta, *, box, r_cut, cutoff, vector, block, band=None, precision=None):
  """Sums over all pairs (eq. 34-35) in blocks of `block` rows; `(N, [3,] S * K)`.

  band: None = automatic (`_auto_band`), 0 = the full basis, or a width of at least `_band_width`.
  """
  kb = _band_option(band, r_s, eta, jnp.asarray(node_feat).dtype)
  return _dense_sums_jit(positions, node_feat, r_s, eta, box=box, r_cut=r_cut, cutoff=cutoff, vector=vector,
                         block=block, band=kb, precision=precision)


@functools.partial(jax.jit, static_argnames=("box", "r_cut", "cutoff", "vector", "block", "band", "precision"))
def _dense_sums_jit(positions, node_feat, r_s, eta, *, box, r_cut, cutoff, vector, block, band, precision):
  n = positions.shape[0]
  n_blocks = -(-n // block)
  rows = jnp.arange(n_blocks * block).reshape(n_blocks, block)
  j = jnp.arange(n)
  p = positions.T  # (3, N): coordinates first

  def one_block(i):
    d = minimum_image(p[:, None, :] - p[:, jnp.minimum(i, n - 1), None], box)  # (3, b, N)
    valid = (i[:, None] != j[None, :]) & (i[:, None] < n)
    r, fc, u = _pair_terms(d, valid, r_cut, cutoff, vector)
    return _row_sums(r, fc, u, node_feat[None], r_s, eta, band, vector, precision)

  out = jax.lax.map(jax.checkpoint(one_block), rows)  # recomputed in the gradient, as in `_dense_row_sums`
  out = out.reshape((n_blocks * block,) + out.shape[2:])[:n]
  return out.reshape(out.shape[:-2] + (-1,))


def _dense(positions, box, r_s, eta, r_cut, cutoff, species, n_species, node_features, vector, block):
  r_s, eta, r_cut = _check_basis(r_s, eta, r_cut)
  positions = checks.as_array("positions", positions)
  checks.check_positions(positions)
  box = checks.check_box(box, r_cut)
  dtype = _float_dtype(positions)
  positions = positions.astype(dtype)
  v, s = _node_features(positions.shape[0], species, n_species, node_features, dtype)
  if block is None:
    block = _block_size(positions.shape[0], positions.shape[0] * _pair_cost(
        len(r_s), _band_option(None, r_s, eta, dtype), s, vector))
  block = checks.positive_int("block", block)
  return _dense_sums(positions, v, jnp.asarray(r_s, dtype), jnp.asarray(eta, dtype), box=box, r_cut=r_cut,
                     cutoff=get_cutoff(cutoff), vector=vector, block=int(block))


def vector_descriptors(positions: Array, box: float | None = None, *, r_s: Sequence[float], eta: float,
                       r_cut: float, cutoff: str | CutoffFn = "cosine", species=None, n_species: int | None = None,
                       node_features=None, block: int | None = None) -> Array:
  """Vector descriptors D_i^a = sum_j (r_ij / r_ij) exp(-eta (r_ij - r_s^a)^2) f_c(r_ij) (eq. 35 / 51), dense.

  All N^2 pairs are visited in blocks of rows (memory O(block N K)); use the neighbor-list versions or
  `descriptor_model` for large systems. Rotation-equivariant (O(3)), translation- and permutation-invariant.

  Args:
    positions: `(N, 3)` in A.
    box: side of a cubic periodic box in A (minimum image; needs box >= 2 r_cut), or None for free space.
    r_s: `(K,)` Gaussian centres in A (e.g. `paper_r_s()`).
    eta: Gaussian width parameter in A^-2, a scalar or `(K,)` (the paper: 100).
    r_cut: cutoff radius in A (the paper: 10).
    cutoff: "cosine" (eq. 52, the paper), "polynomial" (C2), or a callable `f(r, r_cut)`.
    species: optional `(N,)` integers in 0..n_species-1; channels come in one block per neighbour species.
    n_species: number of species (default: max(species) + 1).
    node_features: optional `(N, S)` node features v_jd instead of one-hot species (eq. 32).
    block: rows per block (default: automatic).

  Returns:
    `(N, 3, S * K)` in the layer layout, S = number of species (1 without species); positions' float dtype.
  """
  return _dense(positions, box, r_s, eta, r_cut, cutoff, species, n_species, node_features, True, block)


def scalar_descriptors(positions: Array, box: float | None = None, *, r_s: Sequence[float], eta: float,
                       r_cut: float, cutoff: str | CutoffFn = "cosine", species=None, n_species: int | None = None,
                       node_features=None, block: int | None = None) -> Array:
  """Scalar descriptors D_i^a = sum_j exp(-eta (r_ij - r_s^a)^2) f_c(r_ij) (eq. 34, Behler-Parrinello), dense.

  Arguments as in `vector_descriptors`. Returns `(N, S * K)`, rotation- and translation-invariant.
  """
  return _dense(positions, box, r_s, eta, r_cut, cutoff, species, n_species, node_features, False, block)


# --- Neighbor-list versions ----------------------------------------------------------------------------


def _dense_row_sums(positions, idx, rows, node_feat, r_s, eta, *, displacement_fn, r_cut, cutoff, vector, block,
                    band, precision, sum_kernel="xla"):
  """The sums of the centres `rows` `(R,)` (global atom indices; >= N for padding) whose neighbours are the rows
  `idx` `(R, M)` of a Dense list: `(R, [3,] S, K)`. All positions `(N, 3)` are given; a device that holds some
  rows of the list computes them alone (`parallel.sharded_many_body_force_fn`).
  """
  n = positions.shape[0]
  dtype = node_feat.dtype
  r_count, m = idx.shape
  s, k = node_feat.shape[1], r_s.shape[0]
  block = block or _block_size(r_count, m * _pair_cost(k, band, s, vector, sum_kernel),
                               itemsize=jnp.dtype(dtype).itemsize)
  n_blocks = -(-r_count // block)
  p, row_map = positions.T, row_displacements(displacement_fn)  # coordinates first: (3, N), (3, b, M)

  def sums(width):
    """The sums over the first `width` columns of the list."""
    def one_block(local):
      # Rows `local` of the list, `(b,)`; those past its end repeat its last row, marked as padding (i = n).
      inside = local < r_count
      local = jnp.minimum(local, r_count - 1)
      nbr, i = idx[local, :width], jnp.where(inside, rows[local], n)  # (b, width), (b,)
      valid = (nbr < n) & (i[:, None] < n) & (nbr != i[:, None])
      jc = jnp.minimum(nbr, n - 1)
      d = row_map(p[:, jc], p[:, jnp.minimum(i, n - 1)]).astype(dtype)
      r, fc, u = _pair_terms(d, valid, r_cut, cutoff, vector)
      return _row_sums(r, fc, u, node_feat[jc], r_s, eta, band, vector, precision, sum_kernel)

    # jax.checkpoint: the gradient (conservative models) recomputes each block's pair terms instead of keeping
    # them for every block (rows x M x K numbers; benchmarks/RESULTS.md, "Conservative MD: the gradient of the
    # descriptor sum").
    out = jax.lax.map(jax.checkpoint(one_block), jnp.arange(n_blocks * block).reshape(n_blocks, block))
    return out.reshape((n_blocks * block,) + out.shape[2:])[:r_count]

  narrow = _narrow_width(m)
  if narrow is None:
    return sums(m)
  # jax-md's Dense lists hold each row's neighbours first and pad the rest with N; a list allocated with spare
  # capacity (x1.25 by default) keeps its last ~20% of columns empty. Those are skipped when they hold no
  # neighbour, which is checked, not assumed.
  return jax.lax.cond(jnp.any(idx[:, narrow:] < n), lambda: sums(m), lambda: sums(narrow))


NARROW_FRACTION = 13 / 16  # of a Dense list's columns: the narrow sum, used while the rest holds no neighbour


def _narrow_width(m: int) -> int | None:
  """The columns of the narrow sum of a Dense list of `m` columns (`NARROW_FRACTION`, rounded up to a multiple
  of 4), or None when that leaves out fewer than 8 columns.

  A list allocated with jax-md's default spare capacity (x1.25) fills about 1 / 1.25 = 80% of its columns at
  most (150 of 187 in the FCC argon of benchmarks/md_throughput.py), so the narrow sum, 152 columns, skips 19%
  of the pairs' work; when atoms crowd into more columns the full sum runs (`jax.lax.cond`).
  """
  narrow = -(-int(math.ceil(NARROW_FRACTION * m)) // 4) * 4
  return narrow if narrow <= m - 8 else None


def _check_sum_kernel(sum_kernel: str, format) -> None:
  """A ValueError unless `sum_kernel` is one of `kernels.SUM_KERNELS` and, for "pallas", the list is Dense
  ("auto" chooses where the sums are traced: `kernels.resolve_sum_kernel`)."""
  kernels.check_sum_kernel(sum_kernel)
  if sum_kernel == "pallas" and partition.is_sparse(neighbor_format(format)):
    raise ValueError(f"sum_kernel='pallas' needs a Dense neighbor list, got format={format!r}; use sum_kernel='xla'")


def _neighbor_list_sums(positions, neighbor, node_feat, r_s, eta, *, displacement_fn, r_cut, cutoff, vector,
                        block, band=None, precision=None, sum_kernel="auto"):
  """Sums over neighbours of eq. 33-35 terms for any jax-md format; `(N, [3,] S, K)` flattened to channels.

  Displacements are taken in the positions' dtype; the pair terms and sums in the dtype of `node_feat`.
  band: None = automatic (`_auto_band`), 0 = the full basis, or a width of at least `_band_width`.
  block: rows (Dense) or pairs (Sparse) per block; None = `_block_size` for the default device.
  sum_kernel: "auto" (`kernels.resolve_sum_kernel`), "xla" or "pallas" (`kernels`: the full basis in one kernel,
  Dense lists only; the band is then not used).
  """
  n = positions.shape[0]
  dtype = node_feat.dtype
  s, k = node_feat.shape[1], r_s.shape[0]
  _check_sum_kernel(sum_kernel, neighbor.format)
  sum_kernel = kernels.resolve_sum_kernel(sum_kernel, sparse=partition.is_sparse(neighbor.format), band=band)
  kb = _band_option(band, r_s, eta, dtype, sum_kernel)
  out_shape = (n, 3, s * k) if vector else (n, s * k)
  pair_cost = (kb or k) * s * (3 if vector else 1)  # numbers per pair in the largest intermediate
  itemsize = jnp.dtype(dtype).itemsize

  if not partition.is_sparse(neighbor.format):
    sums = _dense_row_sums(positions, neighbor.idx, jnp.arange(n), node_feat, r_s, eta,
                           displacement_fn=displacement_fn, r_cut=r_cut, cutoff=cutoff, vector=vector, block=block,
                           band=kb, precision=precision, sum_kernel=sum_kernel)
    return sums.reshape(out_shape)

  # Sparse formats: pairs in chunks, scatter-added onto their centres (and, for OrderedSparse, neighbours).
  ordered = neighbor.format is partition.OrderedSparse
  n_pairs = neighbor.idx.shape[1]
  block = block or _block_size(n_pairs, pair_cost, itemsize=itemsize)
  n_blocks = -(-n_pairs // block)
  pad = n_blocks * block - n_pairs
  idx = jnp.pad(neighbor.idx, ((0, 0), (0, pad)), constant_values=n).reshape(2, n_blocks, block)
  drop = jax.lax.GatherScatterMode.FILL_OR_DROP
  p, pair_map = positions.T, jax.vmap(displacement_fn, (1, 1), 1)  # coordinates first: (3, N), (3, b)

  def pair_payloads(i, j):
    """What the block's pairs add to their centres i (and, OrderedSparse, to their neighbours j): a tuple of
    (target rows, [band starts,] payload) per side; recomputed in the gradient (`jax.checkpoint` below)."""
    valid = (i < n) & (j < n) & (i != j)
    ic, jc = jnp.minimum(i, n - 1), jnp.minimum(j, n - 1)
    d = pair_map(p[:, jc], p[:, ic]).astype(dtype)
    r, fc, u = _pair_terms(d, valid, r_cut, cutoff, vector)
    w = _pair_weights(fc, u, vector)  # (b, [3])
    if kb is not None:  # acc is (n, K, S, [3]); the pair's band goes to j's species block (eq. 30)
      c, g = _banded_gaussians(r, r_s, eta, kb)
      out = ((jnp.where(valid, i, n), c, _band_payload(g, w, node_feat[jc], vector)),)
      if ordered:  # r_ji = -r_ij; the pair sits in the block of i's species
        out += ((jnp.where(valid, j, n), c, _band_payload(g, -w if vector else w, node_feat[ic], vector)),)
      return out
    g = gaussian_basis(r, r_s, eta)
    to_i = g[:, None, :] * node_feat[jc][:, :, None]  # (b, S, K): block of j's species
    to_i = (w[:, :, None, None] * to_i[:, None] if vector else w[:, None, None] * to_i)
    out = ((jnp.where(valid, i, n), to_i.reshape((block,) + out_shape[1:])),)
    if ordered:  # r_ji = -r_ij; the pair sits in the block of i's species
      to_j = g[:, None, :] * node_feat[ic][:, :, None]
      to_j = (-w[:, :, None, None] * to_j[:, None] if vector else w[:, None, None] * to_j)
      out += ((jnp.where(valid, j, n), to_j.reshape((block,) + out_shape[1:])),)
    return out

  # The gradient (conservative models) recomputes each block's pair terms instead of keeping them for every
  # block (pairs x K numbers); the scatter-adds stay outside, so that the scan's carry is not kept either.
  pair_payloads = jax.checkpoint(pair_payloads)

  def body(acc, ij):
    for side in pair_payloads(*ij):
      if kb is not None:
        acc = _band_scatter(acc, *side, drop)  # (rows, band starts, payload)
      else:
        rows, payload = side
        acc = acc.at[rows].add(payload, mode="drop")
    return acc, None

  if kb is None:
    acc, _ = jax.lax.scan(body, jnp.zeros(out_shape, dtype), (idx[0], idx[1]))
    return acc
  acc0 = jnp.zeros((n, k, s) + ((3,) if vector else ()), dtype)
  acc, _ = jax.lax.scan(body, acc0, (idx[0], idx[1]))
  return _band_layout(acc, vector).reshape(out_shape)


def _descriptor_fn(displacement_fn, r_s, eta, r_cut, cutoff_fn, vector, block, species=None, n_species=None,
                   sum_kernel="auto"):
  """`descriptor_fn(positions, neighbor, *, species, node_features, dtype)`: the sums of eq. 34 / 51 on a list.

  `dtype` (default: the positions') is that of the Gaussian sums; displacements are always taken in the
  positions' precision. With `rows` `(R,)` (global atom indices), `neighbor` is the idx `(R, M)` of those rows of
  a Dense list and only their sums are computed, `(R, [3,] S * K)`: one device's rows under a mesh, where "auto"
  is XLA's form. sum_kernel: "auto", "xla" or "pallas" (`kernels`), checked by the callers.
  """
  def descriptor_fn(positions: Array, neighbor, *, species=species, node_features=None, dtype=None,
                    precision=None, rows=None) -> Array:
    positions = jnp.asarray(positions, _float_dtype(positions))
    dtype = jnp.dtype(dtype) if dtype is not None else positions.dtype
    v, _ = _node_features(positions.shape[0], species, n_species, node_features, dtype)
    r_s_, eta_ = np.asarray(r_s, dtype), np.asarray(eta, dtype)
    if rows is None:
      return _neighbor_list_sums(positions, neighbor, v, r_s_, eta_, displacement_fn=displacement_fn, r_cut=r_cut,
                                 cutoff=cutoff_fn, vector=vector, block=block, precision=precision,
                                 sum_kernel=sum_kernel)
    # Some rows only: `neighbor` is those rows of a Dense list's idx, `(R, M)` (`parallel.shard_rows`).
    kernel = kernels.resolve_sum_kernel(sum_kernel, mesh=True)
    sums = _dense_row_sums(positions, neighbor, rows, v, r_s_, eta_, displacement_fn=displacement_fn, r_cut=r_cut,
                           cutoff=cutoff_fn, vector=vector, block=block,
                           band=_band_option(None, r_s_, eta_, dtype, kernel), precision=precision, sum_kernel=kernel)
    return sums.reshape(sums.shape[:-2] + (-1,))
  return descriptor_fn


def _descriptors_neighbor_list(displacement_fn, box, r_s, eta, r_cut, cutoff, species, n_species, format,
                               dr_threshold, capacity_multiplier, block, vector, neighbor_kwargs, sum_kernel):
  r_s, eta, r_cut = _check_basis(r_s, eta, r_cut)
  _check_sum_kernel(sum_kernel, format)
  neighbor_fn = partition.neighbor_list(displacement_fn, box, r_cut, dr_threshold=dr_threshold,
                                        capacity_multiplier=capacity_multiplier, format=neighbor_format(format),
                                        **neighbor_kwargs)
  return neighbor_fn, _descriptor_fn(displacement_fn, r_s, eta, r_cut, get_cutoff(cutoff), vector, block, species,
                                     n_species, sum_kernel)


def vector_descriptors_neighbor_list(displacement_fn, box, *, r_s: Sequence[float], eta: float, r_cut: float,
                                     cutoff: str | CutoffFn = "cosine", species=None,
                                     n_species: int | None = None, format=partition.Dense,
                                     dr_threshold: float = 0.0, capacity_multiplier: float = 1.25,
                                     block: int | None = None, sum_kernel: str = "auto", **neighbor_kwargs):
  """Vector descriptors (eq. 51) on a jax-md neighbor list, in the style of `energy.*_neighbor_list`.

  Args:
    displacement_fn: from `jax_md.space.periodic(box)` or `space.free()`.
    box: the box of the cell list in A (the periodic side; for free space any box holding the positions).
    r_s, eta, r_cut, cutoff, species, n_species: as in `vector_descriptors`.
    format: `partition.Dense`, `partition.Sparse` or `partition.OrderedSparse`.
    dr_threshold, capacity_multiplier, **neighbor_kwargs: passed to `partition.neighbor_list`.
    block: rows (Dense) or pairs (Sparse) per block of the sum (default: automatic).
    sum_kernel: "auto" (the default: "pallas" on an NVIDIA GPU with a Dense list, else "xla";
      `kernels.resolve_sum_kernel`), "xla" (the Gaussians, then a product) or "pallas" (one GPU kernel that keeps
      the Gaussians in registers, `unitary_enn.kernels`; Dense lists; interpreted on the CPU, 2-4x slower there).

  Returns:
    (neighbor_fn, descriptor_fn). `neighbor_fn.allocate(positions)` outside jit, `neighbor.update(positions)`
    inside; `descriptor_fn(positions, neighbor, *, species=..., node_features=None, dtype=None)
    -> (N, 3, S * K)`. `dtype` (default: the positions') is that of the Gaussian sums: displacements are
    always taken in the positions' precision, so float64 MD can feed a float32 network float32 sums at
    float32 cost (`models.many_body_force_fn` does). The caller checks the list (`neighbors.NeighborManager`),
    or uses `descriptor_model`, which does.
  """
  return _descriptors_neighbor_list(displacement_fn, box, r_s, eta, r_cut, cutoff, species, n_species, format,
                                    dr_threshold, capacity_multiplier, block, True, neighbor_kwargs, sum_kernel)


def scalar_descriptors_neighbor_list(displacement_fn, box, *, r_s: Sequence[float], eta: float, r_cut: float,
                                     cutoff: str | CutoffFn = "cosine", species=None,
                                     n_species: int | None = None, format=partition.Dense,
                                     dr_threshold: float = 0.0, capacity_multiplier: float = 1.25,
                                     block: int | None = None, sum_kernel: str = "auto", **neighbor_kwargs):
  """Scalar descriptors (eq. 34) on a jax-md neighbor list; as `vector_descriptors_neighbor_list`, `(N, S*K)`."""
  return _descriptors_neighbor_list(displacement_fn, box, r_s, eta, r_cut, cutoff, species, n_species, format,
                                    dr_threshold, capacity_multiplier, block, False, neighbor_kwargs, sum_kernel)


def descriptor_model(apply_fn: Callable[[Array], Any] | None = None, *, r_s: Sequence[float], eta: float,
                     r_cut: float, cutoff: str | CutoffFn = "cosine", kind: str = "vector",
                     n_species: int | None = None, format=partition.Dense, capacity_multiplier: float = 1.25,
                     block: int | None = None, dtype=None, sum_kernel: str = "auto") -> Callable:
  """`model(positions, box=None, *, species=None) = apply_fn(descriptors)` on checked jax-md neighbor lists.

  Args:
    apply_fn: what to do with the descriptors inside the same jit (e.g. a network); None returns them.
    r_s, eta, r_cut, cutoff: the basis, as in `vector_descriptors`.
    kind: "vector" (eq. 51, `(N, 3, S * K)`) or "scalar" (eq. 34, `(N, S * K)`).
    n_species: number of species when `species` is passed at call time (default 1).
    format, capacity_multiplier: of the jax-md neighbor list.
    dtype: of the descriptor sums, as in `vector_descriptors_neighbor_list` (default: the positions').
    sum_kernel: "auto", "xla" or "pallas", as in `vector_descriptors_neighbor_list`.

  Returns:
    `model(positions (N, 3) A, box=None, *, species=None)`; see `neighbor_list_model` for the guarantees.
    With apply_fn None it equals `vector_descriptors(positions, box, ...)` (or the scalar ones).
  """
  if kind not in ("vector", "scalar"):
    raise ValueError(f"kind must be 'vector' or 'scalar', got {kind!r}")
  r_s, eta, r_cut = _check_basis(r_s, eta, r_cut)
  _check_sum_kernel(sum_kernel, format)
  cutoff_fn = get_cutoff(cutoff)
  apply_fn = apply_fn or (lambda d: d)

  def build(displacement_fn):
    descriptor_fn = _descriptor_fn(displacement_fn, r_s, eta, r_cut, cutoff_fn, kind == "vector", block,
                                   n_species=n_species, sum_kernel=sum_kernel)

    def fn(positions, neighbor, species=None):
      return apply_fn(descriptor_fn(positions, neighbor, species=species, dtype=dtype))
    return fn

  inner = neighbor_list_model(build, r_cut=r_cut, format=format, capacity_multiplier=capacity_multiplier)

  def model(positions, box=None, *, species=None):
    if species is not None:
      if n_species is None:
        raise ValueError("pass n_species to descriptor_model to use species")
      s = np.asarray(species)
      checks.check_shape("species", s, (np.shape(positions)[0],))
      if s.min() < 0 or s.max() >= n_species:
        raise ValueError(f"species must lie in 0..{n_species - 1}, got values from {s.min()} to {s.max()}")
      return inner(positions, box, species=jnp.asarray(s, jnp.int32))
    return inner(positions, box)

  model.stats = inner.stats
  return model


# --- The learnable vector GNN layer (eq. 32) ----------------------------------------------------------


def init_vector_gnn(key: Array, n_edge: int, n_out: int, n_species: int = 1, *, dtype=jnp.float32) -> dict:
  """Weights w_{b d a} of the vector GNN layer (eq. 32): `{"w": (n_edge, n_species, n_out)}`, Glorot uniform.

  n_edge = number of Gaussian edge features b (len(r_s)), n_species = node features d, n_out = channels a.
  """
  checks.prng_key("key", key)
  n_edge, n_out, n_species = (checks.positive_int(k, v) for k, v in (("n_edge", n_edge), ("n_out", n_out),
                                                                      ("n_species", n_species)))
  w = glorot_uniform(key, (n_edge * n_species, n_out), dtype).reshape(n_species, n_edge, n_out)
  return {"w": jnp.swapaxes(w, 0, 1)}


def identity_vector_gnn(n_edge: int, *, dtype=jnp.float32) -> dict:
  """w_{b 1 a} = delta_{ba} with one species: the GNN layer that reduces to eq. 51 (with identity sigma)."""
  return {"w": jnp.eye(n_edge, dtype=dtype)[:, None, :]}


def apply_vector_gnn(params: dict, edge_sums: Array, *, activation="identity", precision=None) -> Array:
  """The vector GNN layer D_i^a = sigma(sum_{j,b,d} (u_ij/|u_ij|) e_ij^b v_jd w_bda) (eq. 32).

  The sum over neighbours j does not involve w, so it is done once, by the descriptor functions with node
  features v (`vector_descriptors(..., species=...)`), and the layer is a linear map of those sums followed
  by an equivariant vector activation; exact, and cheap enough to train on precomputed sums.

  Args:
    params: {"w": `(B, S, A)`} from `init_vector_gnn`.
    edge_sums: `(..., 3, S * B)` = sum_j (u_ij/|u_ij|) e_ij^b v_jd in the block layout of this module.
    activation: a vector activation (name or callable), e.g. "identity" or "softsign".

  Returns:
    `(..., 3, A)`, equivariant in the coordinate axis.
  """
  if not isinstance(params, dict) or "w" not in params or np.ndim(params["w"]) != 3:
    raise ValueError("params must be {'w': (n_edge, n_species, n_out)} from init_vector_gnn")
  w = params["w"]
  b, s, a = w.shape
  edge_sums = checks.as_array("edge_sums", edge_sums)
  checks.check_shape("edge_sums", edge_sums, (..., 3, None))
  if edge_sums.shape[-1] != b * s:
    raise ValueError(f"edge_sums has {edge_sums.shape[-1]} channels, expected n_species * n_edge = {s} * {b}")
  g = edge_sums.reshape(edge_sums.shape[:-1] + (s, b))
  prec = resolve_precision(precision, jnp.result_type(g, w))
  return get_activation(activation)(jnp.einsum("...xsb,bsa->...xa", g, w, precision=prec))


def vector_gnn(params: dict, positions: Array, box: float | None = None, *, r_s: Sequence[float], eta: float,
               r_cut: float, cutoff: str | CutoffFn = "cosine", species=None, node_features=None,
               activation="identity") -> Array:
  """The vector GNN layer (eq. 32) on positions `(N, 3)` A, dense; species one-hot node features.

  Returns `(N, 3, A)`. With one species, `identity_vector_gnn` weights and identity activation it equals
  `vector_descriptors` (eq. 51) exactly.
  """
  n_species = params["w"].shape[1]
  if species is None and node_features is None and n_species != 1:
    raise ValueError(f"the layer has {n_species} node features: pass species or node_features")
  sums = vector_descriptors(positions, box, r_s=r_s, eta=eta, r_cut=r_cut, cutoff=cutoff, species=species,
                            n_species=n_species if species is not None else None, node_features=node_features)
  return apply_vector_gnn(params, sums, activation=activation)


# --- The network input for several species ---------------------------------------------------------------


def center_species_channels(descriptors, species, n_species: int):
  """Descriptors `(N, 3, C)` -> `(N, 3, S C)`: atom i's channels in the block of its own species c, zeros elsewhere.

  The layout of the module docstring: channel c * C + j holds D_i^j when species_i == c. Works on NumPy arrays
  (returns NumPy) and on JAX arrays or tracers (returns JAX). With n_species = 1 it returns `descriptors` unchanged.

  Args:
    descriptors: `(N, 3, C)` (C = S K from the neighbour-species blocks) or `(N, C)` scalar ones.
    species: `(N,)` integers in 0..n_species-1.
    n_species: S.
  """
  if n_species == 1:
    return descriptors
  middle = (1,) * (np.ndim(descriptors) - 2)  # the coordinate axis of vector descriptors
  if isinstance(descriptors, np.ndarray) and not isinstance(species, jax.Array):
    onehot = np.eye(n_species, dtype=descriptors.dtype)[np.asarray(species)]
    x = descriptors[..., None, :] * onehot.reshape((len(onehot),) + middle + (n_species, 1))
    return x.reshape(descriptors.shape[:-1] + (-1,))
  descriptors = jnp.asarray(descriptors)
  onehot = jax.nn.one_hot(species, n_species, dtype=descriptors.dtype)
  x = descriptors[..., None, :] * onehot.reshape((onehot.shape[0],) + middle + (n_species, 1))
  return x.reshape(descriptors.shape[:-1] + (-1,))


# --- The closed-form linear reference (docs/decisions.md §9) --------------------------------------------------------


def fit_linear_force_map(descriptors, forces, *, rcond: float | None = None) -> np.ndarray:
  """Least-squares c minimizing sum_i |F_i - sum_a c_a D_i^a|^2 over atoms i: the linear reference
  (docs/decisions.md §9).

  For a pair potential F_i = sum_j U'(r_ij) r_ij / r_ij exactly, so a linear map of the vector descriptors
  reproduces the force up to how well sum_a c_a exp(-eta (r - r_s^a)^2) f_c(r) fits U'(r) on the distances
  that occur. The map is a scalar per channel (the same for x, y, z), hence O(3)-equivariant. Solved by
  NumPy's SVD least squares in float64 on columns scaled to unit RMS (the Gaussians overlap strongly).

  Args:
    descriptors: `(A, 3, K)` vector descriptors of A atoms.
    forces: `(A, 3)` target forces in eV/A.
    rcond: cut-off ratio of small singular values (NumPy's default when None).

  Returns:
    c `(K,)` in eV/A per descriptor unit, float64.
  """
  x = np.asarray(descriptors, np.float64)
  f = np.asarray(forces, np.float64)
  checks.check_shape("descriptors", x, (None, 3, None))
  checks.check_shape("forces", f, (x.shape[0], 3))
  a = x.reshape(-1, x.shape[-1])
  scale = np.sqrt(np.mean(a * a, axis=0))
  scale = np.where(scale > 0, scale, 1.0)
  c, *_ = np.linalg.lstsq(a / scale, f.reshape(-1), rcond=rcond)
  return c / scale


def apply_linear_force_map(coefficients, descriptors) -> np.ndarray:
  """F_i = sum_a c_a D_i^a: `(K,)` and `(A, 3, K)` -> `(A, 3)` eV/A (NumPy, float64)."""
  return np.asarray(descriptors, np.float64) @ np.asarray(coefficients, np.float64)

"""Values, not only symmetries: the layer, the network, the Flax module, the invariants and the vector GNN layer
against NumPy forward passes written from the paper (eq. 6, 9, 12, 14-16, Sec. 3.3, eq. 32-34, 51, 52).

A layer that used e = x instead of x / ||x|| (eq. 9), or dropped the softsign residue (eq. 14), would still be
equivariant and pass every symmetry test; `test_wrong_unit_vectors_fail_values_but_pass_equivariance` and
`test_wrong_softsign_residue_is_caught` show that the value tests here catch both.

The references below use NumPy only (float64 / complex128, explicit loops over columns and atoms), never
unitary_enn, so they can disagree with it.
"""

from __future__ import annotations

import functools
import itertools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import descriptors, layers

DTYPES = [np.float64, np.complex128]
RESIDUE = 0.1  # a of eq. 14 in all the paper's experiments
RTOL = 1e-12


# --- NumPy reference, written from the paper ------------------------------------------------------------


def _rand(rng, shape, dtype):
  if np.issubdtype(dtype, np.complexfloating):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
  return rng.standard_normal(shape)


def _column_norm(v):
  """||v|| = sqrt(sum_i |v_i|^2) of one vector (complex modulus, Sec. 3.2)."""
  return float(np.sqrt(sum(abs(c) ** 2 for c in v)))


def _columns(x):
  """Yield (index, column) over every batch entry and vector alpha of a `(..., rows, M)` array."""
  for idx in np.ndindex(x.shape[:-2]):
    for alpha in range(x.shape[-1]):
      yield idx + (slice(None), alpha), x[idx + (slice(None), alpha)]


def ref_unit_vectors(x, n_features=0):
  """e' = (x / ||x||, 1) column by column (eq. 9, 18): the norm over the n vector rows only, e = 0 at x = 0."""
  x = np.asarray(x)
  n = x.shape[-2] - n_features
  e = np.zeros_like(x)
  for where, col in _columns(x):
    norm = _column_norm(col[:n])
    out = np.ones_like(col)
    out[:n] = col[:n] / norm if norm > 0 else 0.0
    e[where] = out
  return e


def ref_dense(W, b, x, n_features=0):
  """y = x W + e b (eq. 6): y_i^beta = sum_alpha (x_i^alpha W_alpha^beta + e_i^alpha b_alpha^beta)."""
  e = ref_unit_vectors(x, n_features)
  return np.einsum("...ia,ab->...ib", np.asarray(x), W) + np.einsum("...ia,ab->...ib", e, b)


def _columnwise(scale_fn):
  """An activation sigma(u) = s(||u||) u acting on each column u of `(..., rows, M)` (eq. 12).

  With feature rows the norm covers all n + m rows of the column, ||x'|| of eq. 20 (invariant under
  U' = diag(U, I_m), eq. 19), as `unitary_enn.layers` does.
  """
  def act(u):
    u = np.asarray(u)
    out = np.zeros_like(u)
    for where, col in _columns(u):
      out[where] = scale_fn(_column_norm(col)) * col
    return out
  return act


ref_softsign = _columnwise(lambda r: 1.0 / (1.0 + r) + RESIDUE)  # eq. 14, u / (1 + ||u||) + a u
ref_identity = _columnwise(lambda r: 1.0)  # eq. 15


def ref_leaky_relu(c, k):
  """eq. 16: u if ||u|| >= c else k u."""
  return _columnwise(lambda r: 1.0 if r >= c else k)


# The library's activations by name, with the constants of their documented defaults (vector_leaky_relu:
# c = 1, k = 0.01; vector_relu: c = 1, k = 0).
REF_ACTIVATIONS = {
    "softsign": ref_softsign,
    "identity": ref_identity,
    "vector_relu": ref_leaky_relu(1.0, 0.0),
    "vector_leaky_relu": ref_leaky_relu(1.0, 0.01),
}


def ref_network(params, x, n_features=0, activation=ref_softsign):
  """x_{k+1} = sigma(x_k W_k + e_k b_k) (eq. 6, 12): `activation` on hidden layers, identity (eq. 15) on the last."""
  x = np.asarray(x)
  for i, layer in enumerate(params):
    y = ref_dense(np.asarray(layer["W"]), np.asarray(layer["b"]), x, n_features)
    x = ref_identity(y) if i == len(params) - 1 else activation(y)
  return x


def assert_values(got, want, rtol=RTOL):
  """got == want to `rtol` relative to the output scale (elementwise rtol fails on cancelling sums near 0)."""
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape, (got.shape, want.shape)
  np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.max(np.abs(want))))


def _layer_params(rng, m_in, m_out, dtype):
  return {"W": _rand(rng, (m_in, m_out), dtype), "b": _rand(rng, (m_in, m_out), dtype)}  # b != 0: e b matters


def _input(rng, batch, n, n_features, m, dtype):
  """`(batch, n + n_features, m)`, batch >= 2, with zero columns: x[0, :n, 1] (vector part only) and x[1, :, 0]."""
  x = _rand(rng, (batch, n + n_features, m), dtype)
  x[0, :n, 1] = 0.0  # the vector part vanishes, the feature rows (if any) do not: e' = (0, 1)
  x[1, :, 0] = 0.0
  return x


# --- The layer, the activations, the network, the Flax module -------------------------------------------


NS = (2, 3, 5)  # vector dimensions: each test compiles one jit for all three (compiles dominate the run time)


@pytest.mark.parametrize("n_features", [0, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=["real", "complex"])
def test_dense_layer_values(dtype, n_features):
  rng = np.random.default_rng(100 + n_features)
  p = _layer_params(rng, 4, 3, dtype)
  xs = [_input(rng, 3, n, n_features, 4, dtype) for n in NS]
  layer = jax.jit(lambda p, xs: [(uenn.equivariant_dense(p, x, n_features),
                                  uenn.augmented_unit_vectors(x, n_features)) for x in xs])
  for n, x, (y, e) in zip(NS, xs, layer(jax.tree.map(jnp.asarray, p), [jnp.asarray(x) for x in xs])):
    assert_values(y, ref_dense(p["W"], p["b"], x, n_features))
    assert_values(e, ref_unit_vectors(x, n_features))
    assert np.all(np.asarray(e)[0, :n, 1] == 0)  # e = 0 for a zero vector (eq. 9)
    assert np.max(np.abs(ref_unit_vectors(x, n_features) @ p["b"])) > 0.5  # the e b term matters here


@pytest.mark.parametrize("name", sorted(REF_ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES, ids=["real", "complex"])
def test_activation_values(dtype, name):
  assert set(layers.ACTIVATIONS) == set(REF_ACTIVATIONS), "a new activation needs a NumPy reference here"
  rng = np.random.default_rng(7)
  u = _rand(rng, (4, 3, 6), dtype) * rng.uniform(0.05, 1.5, (4, 1, 6))  # norms on both sides of c = 1
  u[2, :, 3] = 0.0
  norms = np.sqrt(np.sum(np.abs(u) ** 2, axis=-2))
  assert np.any((norms > 0) & (norms < 0.9)) and np.any(norms > 1.1)
  assert_values(layers.ACTIVATIONS[name](jnp.asarray(u)), REF_ACTIVATIONS[name](u))


@pytest.mark.parametrize("dtype", DTYPES, ids=["real", "complex"])
def test_network_values(dtype):
  """The default network: softsign with residue on hidden layers, identity on the output (Sec. 4.2)."""
  rng = np.random.default_rng(200)
  sizes = (4, 6, 5, 2)
  params = [_layer_params(rng, a, b, dtype) for a, b in zip(sizes[:-1], sizes[1:])]
  cases = ((2, 0), (3, 2), (5, 1))  # (n, n_features)
  xs = [_input(rng, 3, n, m, sizes[0], dtype) for n, m in cases]
  net = jax.jit(lambda p, xs: [uenn.apply_uenn(p, x, n_features=m) for x, (_, m) in zip(xs, cases)])
  for (_, m), x, y in zip(cases, xs, net(jax.tree.map(jnp.asarray, params), [jnp.asarray(x) for x in xs])):
    assert_values(y, ref_network(params, x, m))


def test_network_values_with_other_hidden_activations():
  names = ("identity", "vector_relu", "vector_leaky_relu")
  rng = np.random.default_rng(11)
  params = [_layer_params(rng, a, b, np.complex128) for a, b in ((3, 5), (5, 4))]
  x = _input(rng, 4, 3, 1, 3, np.complex128)
  net = jax.jit(lambda p, x: [uenn.apply_uenn(p, x, activation=name, n_features=1) for name in names])
  for name, y in zip(names, net(jax.tree.map(jnp.asarray, params), jnp.asarray(x))):
    assert_values(y, ref_network(params, x, 1, REF_ACTIVATIONS[name]))


@pytest.mark.parametrize("dtype, n_features", [(np.float64, 0), (np.complex128, 1)], ids=["real", "complex"])
def test_flax_module_values(dtype, n_features):
  """UENN initialized by Flax, converted by `to_pure_params`, against the NumPy network on those parameters."""
  rng = np.random.default_rng(12 + n_features)
  x = _input(rng, 3, 3, n_features, 5, dtype)
  module = uenn.UENN(sizes=(5, 7, 4, 2), n_features=n_features, param_dtype=dtype)
  variables = jax.jit(module.init)(jax.random.PRNGKey(0), jnp.asarray(x))
  apply = jax.jit(module.apply)
  pure = uenn.UENN.to_pure_params(variables)
  assert [tuple(p["W"].shape) for p in pure] == [(5, 7), (7, 4), (4, 2)]
  assert all(p["W"].dtype == dtype for p in pure)
  ref_params = [{k: np.asarray(v) for k, v in p.items()} for p in pure]
  assert_values(apply(variables, jnp.asarray(x)), ref_network(ref_params, x, n_features))
  # b = 0 at init hides the e b term: give the module random biases and compare again.
  params = flax.core.unfreeze(variables)["params"]
  for i, p in enumerate(ref_params):
    p["b"] = _rand(rng, p["b"].shape, dtype)
    params[f"layer_{i}"]["b"] = jnp.asarray(p["b"])
  got = apply({"params": params}, jnp.asarray(x))
  assert_values(got, ref_network(ref_params, x, n_features))
  assert_values(uenn.UENN.to_pure_params({"params": params})[0]["b"], ref_params[0]["b"], rtol=0)


# --- Invariants (Sec. 3.6) ------------------------------------------------------------------------------


def ref_invariants(x, n_features, is_complex):
  """The Gram matrix G_ab = <x_a, x_b> = sum_i conj(x_ia) x_ib over the n vector rows, in the order of the
  `invariant_features` docstring: Re G on the upper triangle (row by row, diagonal included), then (complex)
  Im G on the strict upper triangle, then the feature rows (row by row), then (complex) their imaginary parts."""
  x = np.asarray(x)
  n, m = x.shape[-2] - n_features, x.shape[-1]
  out = []
  for idx in np.ndindex(x.shape[:-2]):
    v = x[idx]
    gram = lambda a, b: sum(np.conj(v[i, a]) * v[i, b] for i in range(n))
    row = [gram(a, b).real for a in range(m) for b in range(a, m)]
    if is_complex:
      row += [gram(a, b).imag for a in range(m) for b in range(a + 1, m)]
    feat = [v[n + f, a] for f in range(n_features) for a in range(m)]
    row += [np.real(h) for h in feat] + ([np.imag(h) for h in feat] if is_complex else [])
    out.append(row)
  return np.asarray(out, np.float64).reshape(x.shape[:-2] + (-1,))


@pytest.mark.parametrize("n_features", [0, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=["real", "complex"])
def test_invariant_features_values_and_order(dtype, n_features):
  rng = np.random.default_rng(13)
  m = 4
  x = _rand(rng, (2, 3, 3 + n_features, m), dtype)
  is_complex = np.issubdtype(dtype, np.complexfloating)
  got = uenn.invariant_features(jnp.asarray(x), n_features)
  assert got.shape == (2, 3, uenn.num_invariants(m, is_complex, n_features))
  assert not np.iscomplexobj(np.asarray(got))
  assert_values(got, ref_invariants(x, n_features, is_complex))


def test_num_invariants_counts():
  # Real: M (M + 1) / 2 entries of a symmetric Gram matrix; complex: M^2 real numbers of a Hermitian one;
  # plus the feature rows, twice for complex.
  for m, n_features in itertools.product((1, 2, 5), (0, 3)):
    assert uenn.num_invariants(m, False, n_features) == m * (m + 1) // 2 + n_features * m
    assert uenn.num_invariants(m, True, n_features) == m * m + 2 * n_features * m


# --- Descriptors (eq. 34, 51) and the vector GNN layer (eq. 32) -------------------------------------------

R_CUT = 4.0
R_S = np.array([0.8, 1.6, 2.3, 3.1, 3.8])  # A
ETA = 1.5  # A^-2


def _cosine_cutoff(r, r_cut):
  """eq. 52: (cos(pi r / r_c) + 1) / 2 for r < r_c, else 0."""
  return 0.5 * (np.cos(np.pi * r / r_cut) + 1.0) if r < r_cut else 0.0


def _pairs(pos, box, r_cut):
  """Yield (i, j, r_ij = r_j - r_i) for j != i with r_ij < r_c; in a periodic cubic box by trying the 27 images
  (for box >= 2 r_c at most one is within r_c, which is the minimum image)."""
  shifts = [np.zeros(3)] if box is None else [np.array(s) * box for s in itertools.product((-1, 0, 1), repeat=3)]
  for i, j in itertools.product(range(len(pos)), repeat=2):
    if i == j:
      continue
    seen = 0
    for shift in shifts:
      d = pos[j] + shift - pos[i]
      if np.sqrt(d @ d) < r_cut:
        seen += 1
        yield i, j, d
    assert seen <= 1


def ref_gnn(w, pos, box, species, r_s, eta, r_cut, activation):
  """eq. 32 as a triple sum: D_i^a = sigma( sum_{j != i, r_ij < r_c} sum_b sum_d (r_ij / |r_ij|) e_ij^b v_jd w_bda )
  with e_ij^b = exp(-eta (r_ij - r_s^b)^2) f_c(r_ij) (eq. 33, 52) and v_jd one-hot species."""
  n_edge, n_species, n_out = w.shape
  out = np.zeros((len(pos), 3, n_out))
  for i, j, d in _pairs(pos, box, r_cut):
    r = np.sqrt(d @ d)
    for b in range(n_edge):
      e = np.exp(-eta * (r - r_s[b]) ** 2) * _cosine_cutoff(r, r_cut)
      for s in range(n_species):
        v = 1.0 if species[j] == s else 0.0
        for a in range(n_out):
          out[i, :, a] += d / r * e * v * w[b, s, a]
  return activation(out)


def ref_descriptors(pos, box, species, n_species, r_s, eta, r_cut):
  """eq. 51 (vector) and eq. 34 (scalar) with one block of channels per neighbour species (eq. 30):
  channel d * K + k sums over neighbours of species d. eta may be one per channel (eq. 33)."""
  k = len(r_s)
  eta = np.broadcast_to(np.asarray(eta, np.float64), (k,))
  vec = np.zeros((len(pos), 3, n_species * k))
  scal = np.zeros((len(pos), n_species * k))
  for i, j, d in _pairs(pos, box, r_cut):
    r = np.sqrt(d @ d)
    for a in range(k):
      g = np.exp(-eta[a] * (r - r_s[a]) ** 2) * _cosine_cutoff(r, r_cut)
      vec[i, :, species[j] * k + a] += d / r * g
      scal[i, species[j] * k + a] += g
  return vec, scal


def _atoms(box, seed, n=12):
  """n atoms in [0, side)^3 with two species; side = box, or 2 r_c for free space so that some pairs are cut."""
  rng = np.random.default_rng(seed)
  side = box if box is not None else 2.0 * R_CUT
  pos = rng.uniform(0.0, side, (n, 3))
  species = np.arange(n) % 2
  rng.shuffle(species)
  d = np.stack([pos[j] - pos[i] for i, j in itertools.combinations(range(n), 2)])
  direct = np.linalg.norm(d, axis=-1)
  assert min(direct) < R_CUT < max(direct)  # the cutoff matters
  if box is not None:  # and some neighbours are seen only through the periodic boundary
    image = np.linalg.norm(d - box * np.round(d / box), axis=-1)
    assert np.any((image < R_CUT) & (direct >= R_CUT))
  return pos, species


@pytest.mark.parametrize("activation", ["identity", "softsign"])
@pytest.mark.parametrize("box", [None, 2.0 * R_CUT + 0.5], ids=["free", "periodic"])
def test_vector_gnn_values_two_species(box, activation):
  pos, species = _atoms(box, seed=21)
  rng = np.random.default_rng(22)
  w = rng.standard_normal((len(R_S), 2, 3))  # w_bda, random: no identity weights, both species weighted
  want = ref_gnn(w, pos, box, species, R_S, ETA, R_CUT, REF_ACTIVATIONS[activation])
  assert np.max(np.abs(want)) > 0.1
  kw = dict(r_s=R_S, eta=ETA, r_cut=R_CUT)
  got = descriptors.vector_gnn({"w": jnp.asarray(w)}, jnp.asarray(pos), box, species=jnp.asarray(species),
                        activation=activation, **kw)
  assert_values(got, want)
  # The same layer on precomputed neighbour sums in the block layout (channel d * K + b).
  sums, _ = ref_descriptors(pos, box, species, 2, R_S, ETA, R_CUT)
  assert_values(descriptors.apply_vector_gnn({"w": jnp.asarray(w)}, jnp.asarray(sums), activation=activation), want)


@pytest.mark.parametrize("box", [None, 2.0 * R_CUT + 0.5], ids=["free", "periodic"])
def test_descriptor_values_two_species(box):
  pos, species = _atoms(box, seed=23)
  eta = np.array([1.0, 1.5, 2.0, 2.5, 3.0])  # one eta per channel (eq. 33)
  vec, scal = ref_descriptors(pos, box, species, 2, R_S, eta, R_CUT)
  assert np.max(np.abs(vec[..., len(R_S):])) > 0.1 and np.max(np.abs(vec[..., :len(R_S)])) > 0.1
  kw = dict(r_s=R_S, eta=eta, r_cut=R_CUT, species=jnp.asarray(species), n_species=2)
  assert_values(uenn.vector_descriptors(jnp.asarray(pos), box, **kw), vec)
  assert_values(uenn.scalar_descriptors(jnp.asarray(pos), box, **kw), scal)


# --- What symmetry tests cannot see ---------------------------------------------------------------------


def test_wrong_unit_vectors_fail_values_but_pass_equivariance(monkeypatch):
  """e = x instead of x / ||x|| (eq. 9) keeps the layer equivariant, but its values are wrong.

  The patched functions are jitted through lambdas made after the patch: jax memoizes the trace of a jitted
  function, so `jax.jit(uenn.equivariant_dense)` could reuse a trace made before the patch and hide it.
  """
  rng = np.random.default_rng(31)
  p = _layer_params(rng, 4, 3, np.complex128)
  x = _input(rng, 3, 3, 0, 4, np.complex128)
  params = [_layer_params(rng, a, b, np.complex128) for a, b in ((4, 5), (5, 2))]
  jp, jx, jparams = jax.tree.map(jnp.asarray, p), jnp.asarray(x), jax.tree.map(jnp.asarray, params)
  assert_values(jax.jit(lambda v: uenn.equivariant_dense(jp, v))(jx), ref_dense(p["W"], p["b"], x))  # right

  monkeypatch.setattr(layers, "unit_vectors", lambda x, axis=-2: x)
  layer = jax.jit(lambda v: uenn.equivariant_dense(jp, v))
  assert np.max(np.abs(np.asarray(layers.augmented_unit_vectors(jx)) - x)) == 0  # the patch took effect
  uenn.assert_equivariant(layer, jx, key=jax.random.PRNGKey(0))  # still equivariant ...
  with pytest.raises(AssertionError):  # ... but the values are wrong, and the value tests say so
    assert_values(layer(jx), ref_dense(p["W"], p["b"], x))
  with pytest.raises(AssertionError):
    assert_values(jax.jit(lambda p, v: uenn.apply_uenn(p, v))(jparams, jx), ref_network(params, x))


def test_wrong_softsign_residue_is_caught(monkeypatch):
  """softsign without the residue (a = 0 instead of 0.1, eq. 14) is equivariant but has the wrong values."""
  rng = np.random.default_rng(33)
  u = _rand(rng, (3, 3, 5), np.complex128)
  no_residue = functools.partial(uenn.softsign, a=0.0)
  uenn.assert_equivariant(jax.jit(no_residue), jnp.asarray(u), key=jax.random.PRNGKey(1))
  with pytest.raises(AssertionError):
    assert_values(jax.jit(no_residue)(jnp.asarray(u)), ref_softsign(u))

  params = [_layer_params(rng, a, b, np.complex128) for a, b in ((5, 6), (6, 2))]
  x = _input(rng, 3, 3, 0, 5, np.complex128)
  jp, jx = jax.tree.map(jnp.asarray, params), jnp.asarray(x)
  net = lambda: jax.jit(lambda p, v: uenn.apply_uenn(p, v, activation="softsign"))  # traced anew at each call
  assert_values(net()(jp, jx), ref_network(params, x))
  monkeypatch.setitem(layers.ACTIVATIONS, "softsign", no_residue)
  with pytest.raises(AssertionError):
    assert_values(net()(jp, jx), ref_network(params, x))

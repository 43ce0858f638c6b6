"""The layer (eq. 6, 9), its activations (eq. 14-16) and the safe norms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import layers

COMPLEX = [jnp.complex64, jnp.complex128]
REAL = [jnp.float32, jnp.float64]


def _random(key, shape, dtype):
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    kr, ki = jax.random.split(key)
    real = jnp.finfo(dtype).dtype
    return (jax.random.normal(kr, shape, real) + 1j * jax.random.normal(ki, shape, real)).astype(dtype)
  return jax.random.normal(key, shape, dtype)


FORMS = {"plain": (False, False), "unrolled_norms": (True, False), "one_product": (False, True),
         "both": (True, True)}


@pytest.fixture(params=list(FORMS))
def form(request, monkeypatch):
  """Each form of the layer's elementwise work (`layers.UNROLL_NORMS`, `layers.ONE_PRODUCT`), set for the test."""
  unroll, one = FORMS[request.param]
  monkeypatch.setattr(layers, "UNROLL_NORMS", unroll)
  monkeypatch.setattr(layers, "ONE_PRODUCT", one)
  return request.param


def _layer(key, m_in, m_out, dtype):
  k1, k2 = jax.random.split(key)
  p = uenn.init_dense(k1, m_in, m_out, dtype)
  p["b"] = _random(k2, (m_in, m_out), dtype)  # b = 0 at init would hide the e b term
  return p


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_dense_layer_is_unitary_equivariant(n, dtype, form):
  key = jax.random.PRNGKey(n)
  p = _layer(key, 4, 6, dtype)
  x = _random(jax.random.PRNGKey(10 + n), (7, n, 4), dtype)
  uenn.assert_equivariant(lambda v: uenn.equivariant_dense(p, v), x, key=jax.random.PRNGKey(1))


@pytest.mark.parametrize("dtype", REAL)
def test_dense_layer_is_orthogonal_equivariant_with_reflections(dtype):
  p = _layer(jax.random.PRNGKey(0), 5, 3, dtype)
  x = _random(jax.random.PRNGKey(1), (4, 3, 5), dtype)
  uenn.assert_equivariant(lambda v: uenn.equivariant_dense(p, v), x, key=jax.random.PRNGKey(2),
                          num_trials=5, reflection=True)


@pytest.mark.parametrize("act", [uenn.softsign, uenn.identity,
                                 functools.partial(uenn.vector_leaky_relu, c=1.5, k=0.1),
                                 functools.partial(uenn.vector_leaky_relu, c=1.0, k=0.0)])
@pytest.mark.parametrize("dtype", [jnp.complex128, jnp.float64])
def test_activations_are_equivariant(act, dtype):
  u = _random(jax.random.PRNGKey(3), (6, 3, 8), dtype)
  uenn.assert_equivariant(act, u, key=jax.random.PRNGKey(4))


def test_activation_formulas():
  u = jnp.array([[3.0, 0.1], [4.0, 0.0]])  # columns of norm 5 and 0.1
  np.testing.assert_allclose(uenn.softsign(u), u / (1 + jnp.array([5.0, 0.1])) + 0.1 * u, rtol=1e-12)
  np.testing.assert_allclose(uenn.vector_leaky_relu(u, c=1.0, k=0.2), u * jnp.array([1.0, 0.2]), rtol=1e-12)
  # The vector leaky ReLU thresholds on the norm, not on components.
  v = jnp.array([[0.8], [0.8]])  # norm 1.13 > 1, every component < 1
  np.testing.assert_allclose(uenn.vector_leaky_relu(v, c=1.0, k=0.0), v)
  with pytest.raises(ValueError, match="k must satisfy"):
    uenn.vector_leaky_relu(u, c=1.0, k=1.0)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_norm_and_unit_vectors_finite_at_zero(dtype):
  x = jnp.zeros((3, 2), dtype)
  assert float(uenn.safe_norm(x).max()) == 0.0
  assert np.all(np.asarray(uenn.unit_vectors(x)) == 0)
  f = lambda x: jnp.sum(jnp.abs(uenn.unit_vectors(x)) ** 2) + jnp.sum(uenn.safe_norm(x))
  g = jax.grad(f)(x)
  assert np.all(np.isfinite(np.asarray(g)))
  # The gradient of the norm away from 0 is the unit vector (for real data).
  if dtype == jnp.float64:
    y = jnp.array([[3.0], [4.0]])
    np.testing.assert_allclose(jax.grad(lambda y: uenn.safe_norm(y).sum())(y), y / 5.0, rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64, jnp.float64])
def test_unit_vectors_near_underflow_are_unit_or_zero_like_the_exact_formula(dtype, form):
  """Columns from 1e-25 to 1e-15 in float32 (1e-160 to 1e-150 in float64), components of mixed sizes, against
  x / ||x|| computed in float64 from x scaled up first (0 below `unit_threshold`): squaring x itself underflowed
  there, which made eq. 9 depend on the backend's flush-to-zero (an H200 and XLA's CPU code disagreed) and gave
  vectors longer than 1 where only the smaller components' squares were flushed."""
  real = jnp.finfo(dtype).dtype
  tau = layers.unit_threshold(dtype)
  assert tau == pytest.approx(np.sqrt(np.finfo(real).tiny))
  rng = np.random.default_rng(0)
  mags = 10.0 ** rng.uniform(-6, 4, size=(1, 400)) * tau  # column sizes around the threshold
  shape = rng.uniform(0.01, 1.0, size=(3, 400)) * rng.choice([-1, 1], size=(3, 400))
  shape[rng.random((3, 400)) < 0.2] = 0.0  # some components exactly 0
  x = shape * mags
  if jnp.issubdtype(dtype, jnp.complexfloating):
    x = x * np.exp(1j * rng.uniform(0, 2 * np.pi, size=x.shape))
  x = np.asarray(jnp.asarray(x, dtype))  # what the dtype holds
  e = np.asarray(uenn.unit_vectors(jnp.asarray(x)))
  scaled = x.astype(np.complex128 if np.iscomplexobj(x) else np.float64) / tau
  norm = np.linalg.norm(scaled, axis=0) * tau
  expected = np.where(norm >= tau, scaled / np.where(norm > 0, norm / tau, 1.0), 0.0)
  eps = float(np.finfo(real).eps)
  near = np.abs(norm / tau - 1.0) < 4 * eps  # within rounding of the threshold: either side is right
  np.testing.assert_allclose(e[:, ~near], expected[:, ~near], rtol=0, atol=4 * eps)
  lengths = np.linalg.norm(e, axis=0)
  assert np.all((np.abs(lengths - 1.0) < 4 * eps) | (lengths == 0.0))
  assert 50 < np.sum(lengths > 0) < 350  # both sides of the threshold were drawn
  # e depends on the direction alone: scaling a column by 2^-40 keeps it while it stays above the threshold.
  y = jnp.asarray(x[:, ~near & (norm > 2.0**41 * tau)])
  np.testing.assert_allclose(uenn.unit_vectors(y * 2.0**-40), uenn.unit_vectors(y), rtol=0, atol=4 * eps)


def test_unit_vector_gradient_is_the_projector_over_the_norm():
  """d e / d x = (I - e e^T) / ||x|| for a real column (the scale taken out of the norm carries no gradient)."""
  x = jnp.array([[3e-10], [-4e-10], [12e-10]])
  jac = jax.jacobian(lambda v: uenn.unit_vectors(v)[:, 0])(x)[:, :, 0]
  e = x[:, 0] / 13e-10
  np.testing.assert_allclose(jac, (np.eye(3) - np.outer(e, e)) / 13e-10, rtol=1e-12)
  from jax.test_util import check_grads
  check_grads(lambda v: jnp.sum(uenn.unit_vectors(v) * jnp.array([[1.0], [2.0], [-0.5]])),
                            (x * 1e9,), order=2, modes=["rev"])


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_layer_value_and_gradient_finite_with_zero_columns(dtype, form):
  p = _layer(jax.random.PRNGKey(0), 3, 2, dtype)
  x = _random(jax.random.PRNGKey(1), (3, 3), dtype).at[:, 1].set(0)  # one zero input vector
  for inp in (x, jnp.zeros_like(x)):
    y = uenn.equivariant_dense(p, inp)
    assert np.all(np.isfinite(np.asarray(y)))
    loss = lambda p, v: jnp.sum(jnp.abs(uenn.softsign(uenn.equivariant_dense(p, v))) ** 2)
    gp, gx = jax.grad(loss, argnums=(0, 1))(p, inp)
    assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves((gp, gx)))
  # e = 0 for the zero column, so the b row of that input contributes nothing.
  e = uenn.unit_vectors(x)
  np.testing.assert_array_equal(np.asarray(e[:, 1]), 0)


@pytest.mark.parametrize("dtype", [jnp.complex128, jnp.float64])
def test_scalar_features_equivariance(dtype, form):
  """x' = (x, h) in C^(n+m) is acted on by U' = diag(U, I_m) (Sec. 3.3)."""
  n, m = 3, 2
  p = _layer(jax.random.PRNGKey(5), 4, 5, dtype)
  x = _random(jax.random.PRNGKey(6), (8, n + m, 4), dtype)
  f = lambda v: uenn.softsign(uenn.equivariant_dense(p, v, n_features=m))
  uenn.assert_equivariant(f, x, key=jax.random.PRNGKey(7), n_features=m)
  # The feature rows of e' are 1: the feature-row bias is the column sum of b, one scalar per output.
  e = uenn.augmented_unit_vectors(x, m)
  np.testing.assert_allclose(np.asarray(e[:, n:, :]), 1.0)
  np.testing.assert_allclose(np.asarray(uenn.safe_norm(e[:, :n, :])), 1.0, rtol=1e-6)


def test_glorot_init_statistics():
  w = uenn.glorot_uniform(jax.random.PRNGKey(0), (300, 500), jnp.float64)
  limit = np.sqrt(6 / 800)
  assert float(jnp.abs(w).max()) <= limit
  np.testing.assert_allclose(float(jnp.var(w)), limit ** 2 / 3, rtol=0.02)
  wc = uenn.glorot_uniform(jax.random.PRNGKey(0), (300, 500), jnp.complex128)
  np.testing.assert_allclose(float(jnp.mean(jnp.abs(wc) ** 2)), limit ** 2 / 3, rtol=0.02)
  np.testing.assert_allclose(float(jnp.var(wc.real)), float(jnp.var(wc.imag)), rtol=0.05)


def test_unknown_activation_name():
  with pytest.raises(ValueError, match="unknown activation 'relu'"):
    uenn.get_activation("relu")


@pytest.mark.parametrize("dtype,n_features,eps", [(jnp.float32, 0, 0.0), (jnp.complex64, 2, 0.0),
                                                   (jnp.float64, 2, 0.3), (jnp.complex128, 0, 0.0)])
def test_layer_forms_give_the_network_and_its_gradients_to_rounding(dtype, n_features, eps, monkeypatch):
  """`UNROLL_NORMS` and `ONE_PRODUCT` (written for GPUs) change how the network is computed, not what: its outputs
  and its gradients with respect to the weights and the input agree with the plain form to the dtype's rounding,
  for real and complex data, scalar features and smooth unit vectors."""
  sizes = (5, 8, 6, 2)
  params = uenn.init_uenn(jax.random.PRNGKey(0), sizes, dtype=dtype)
  params = [dict(p, b=_random(jax.random.fold_in(jax.random.PRNGKey(1), i), p["b"].shape, dtype))
            for i, p in enumerate(params)]
  x = _random(jax.random.PRNGKey(2), (7, 3 + n_features, 5), dtype)
  x = x.at[0, :3, 1].set(0)  # a zero vector: eq. 9's e = 0 and its gradient path
  run = lambda p, v: uenn.apply_uenn(p, v, n_features=n_features, eps=eps)
  loss = lambda p, v: jnp.sum(jnp.abs(run(p, v)) ** 2)
  results = {}
  for name, (unroll, one) in FORMS.items():
    monkeypatch.setattr(layers, "UNROLL_NORMS", unroll)
    monkeypatch.setattr(layers, "ONE_PRODUCT", one)
    y = jax.jit(lambda p, v: run(p, v))(params, x)  # a fresh function: traced under this form
    grads = jax.jit(jax.grad(lambda p, v: loss(p, v), argnums=(0, 1)))(params, x)
    results[name] = jax.tree.leaves((y, grads))
  eps_dtype = float(jnp.finfo(dtype).eps)
  for name in ("unrolled_norms", "one_product", "both"):
    for got, want in zip(results[name], results["plain"]):
      got, want = np.asarray(got), np.asarray(want)
      assert np.all(np.isfinite(got))
      np.testing.assert_allclose(got, want, rtol=0, atol=64 * eps_dtype * float(np.abs(want).max()),
                                 err_msg=name)


def test_layer_forms_change_the_computation(monkeypatch):
  """What each form does to the traced network: `UNROLL_NORMS` removes every reduction over the coordinate axis
  (3 numbers; a long axis, here 12, keeps its reduction), `ONE_PRODUCT` takes one product per layer instead of
  two, each at full precision."""
  sizes = (5, 8, 6, 2)
  params = uenn.init_uenn(jax.random.PRNGKey(0), sizes)
  x = _random(jax.random.PRNGKey(2), (7, 3, 5), jnp.float32)

  def count(unroll, one, v=x):
    monkeypatch.setattr(layers, "UNROLL_NORMS", unroll)
    monkeypatch.setattr(layers, "ONE_PRODUCT", one)
    eqns = jax.make_jaxpr(lambda p, v: uenn.apply_uenn(p, v))(params, v).jaxpr.eqns
    dots = [e for e in eqns if e.primitive.name == "dot_general"]
    assert all(e.params["precision"] == (jax.lax.Precision.HIGHEST,) * 2 for e in dots)
    return sum(e.primitive.name == "reduce_sum" for e in eqns), len(dots)

  plain_reductions, plain_dots = count(False, False)
  assert plain_dots == 2 * (len(sizes) - 1) and plain_reductions > 0
  assert count(True, False) == (0, plain_dots)
  assert count(False, True) == (plain_reductions, len(sizes) - 1)
  assert count(True, True, _random(jax.random.PRNGKey(3), (7, 12, 5), jnp.float32))[0] == plain_reductions

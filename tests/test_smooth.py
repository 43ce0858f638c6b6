"""Smooth unit vectors e = x / sqrt(|x|^2 + eps^2) (docs/decisions.md §14), against eq. 9's e = x / |x|.

What is checked: the formula and its limits, that eps = 0 is eq. 9 to the bit (and the paper's configs keep it),
U(n) / O(n) equivariance with feature rows, continuity at x = 0 in every direction (where eq. 9 jumps), finite
first and second derivatives at 0 that equal their limits, and the mechanism that matters for MD: a perfect
crystal, whose descriptors are zero up to rounding, gets zero force from a smooth network and O(1) from eq. 9.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unitary_enn as uenn
from unitary_enn import data, descriptors, layers, models, structures

EPS = 0.05


def _normal(key, shape, dtype=jnp.float64):
  if jnp.issubdtype(jnp.dtype(dtype), jnp.complexfloating):
    kr, ki = jax.random.split(key)
    return (jax.random.normal(kr, shape) + 1j * jax.random.normal(ki, shape)).astype(dtype)
  return jax.random.normal(key, shape, dtype)


def _params(key, sizes, dtype=jnp.float64):
  """A network whose b are random too (b = 0 at init would hide the e b term)."""
  params = uenn.init_uenn(key, sizes, dtype=dtype)
  keys = jax.random.split(jax.random.fold_in(key, 1), len(params))
  return [dict(p, b=0.5 * _normal(k, p["b"].shape, dtype)) for p, k in zip(params, keys)]


def _directions(key, count, shape, dtype=jnp.float64):
  """`count` random inputs of `shape` with every column of norm 1 (the direction of approach to 0)."""
  v = _normal(key, (count, *shape), dtype)
  return v / jnp.linalg.norm(v, axis=-2, keepdims=True)


def test_formula_bounds_and_the_large_norm_limit():
  x = _normal(jax.random.PRNGKey(0), (5, 3, 7), jnp.complex128) * jnp.logspace(-4, 2, 7)
  e = uenn.smooth_unit_vectors(x, EPS)
  norm = np.linalg.norm(np.asarray(x), axis=-2, keepdims=True)
  np.testing.assert_allclose(e, np.asarray(x) / np.sqrt(norm ** 2 + EPS ** 2), rtol=1e-13)
  assert np.all(np.linalg.norm(np.asarray(e), axis=-2) < 1)
  # |x| >> eps: eq. 9 up to eps^2 / (2 |x|^2); |x| << eps: the linear map x / eps.
  big = norm[..., 0, :] > 10
  diff = np.linalg.norm(np.asarray(e - uenn.unit_vectors(x)), axis=-2)
  assert np.all(diff[big] <= 0.51 * EPS ** 2 / norm[..., 0, :][big] ** 2)
  small = np.broadcast_to(norm < 1e-3, e.shape)
  np.testing.assert_allclose(np.asarray(e)[small], np.asarray(x / EPS)[small], rtol=0.51 * (1e-3 / EPS) ** 2)


def test_eps_zero_is_eq9_to_the_bit_and_the_paper_configs_keep_it():
  from experiments.configs import four_body, four_body_md, many_body, cross_md
  x = _normal(jax.random.PRNGKey(1), (4, 5, 6))  # 3 vector rows + 2 feature rows
  params = _params(jax.random.PRNGKey(2), (6, 8, 3))
  # A NumPy forward pass of eq. 6, 9, 14 with the feature rows of Sec. 3.3.
  h = np.asarray(x)
  for i, p in enumerate(params):
    vec = h[:, :3]
    e = np.concatenate([vec / np.linalg.norm(vec, axis=1, keepdims=True), np.ones_like(h[:, 3:])], axis=1)
    y = h @ np.asarray(p["W"]) + e @ np.asarray(p["b"])
    h = y / (1 + np.linalg.norm(y, axis=1, keepdims=True)) + 0.1 * y if i == 0 else y
  default, explicit = jax.jit(lambda x: (uenn.apply_uenn(params, x, n_features=2),
                                         uenn.apply_uenn(params, x, n_features=2, eps=0.0)))(x)
  assert np.array_equal(explicit, default)
  np.testing.assert_allclose(default, h, rtol=1e-12)
  assert np.array_equal(uenn.augmented_unit_vectors(x, 2, 0.0), uenn.augmented_unit_vectors(x, 2))
  for variant in ("paper", "quick", "accurate", "tiny"):
    assert four_body.get_config(variant).eps == 0.0
  for variant in ("paper", "quick", "tiny"):
    assert many_body.get_config(variant).eps == 0.0
  # The MD experiments' paper variants train the paper's model.
  assert four_body_md.get_config("paper").train_config == "paper"
  assert cross_md.get_config("paper").train_config == "paper"
  # The four-atom MD trains the "smooth" variant by default, the cross MD eq. 9; a "smooth" variant is the quick
  # set-up at the same budget with only eps changed.
  assert four_body_md.get_config().train_config == "smooth" and cross_md.get_config().train_config == "quick"
  for configs, eps in ((four_body, 0.1), (many_body, 1.0)):
    quick, smooth = configs.get_config("quick").to_dict(), configs.get_config("smooth").to_dict()
    if configs is many_body:  # the quick many-body run adds a linear path; the smooth one is the paper's network
      for key in ("linear_path", "compare_plain"):
        assert quick.pop(key) and not smooth.pop(key)
    assert smooth.pop("eps") == eps and quick.pop("eps") == 0.0 and smooth == quick


def _lipschitz_bound(params, eps, a=0.1):
  """An a-priori Lipschitz constant of the smooth network: prod_k (|W_k| + |b_k| / eps) (1 + a) per hidden layer,
  from |d e / d x| <= 1 / eps and |d softsign / d u| <= 1 + a (spectral norms)."""
  bound = 1.0
  for i, p in enumerate(params):
    bound *= np.linalg.norm(np.asarray(p["W"]), 2) + np.linalg.norm(np.asarray(p["b"]), 2) / eps
    bound *= (1 + a) if i < len(params) - 1 else 1.0
  return bound


@pytest.mark.parametrize("dtype", [jnp.complex128, jnp.float64])
def test_smooth_network_is_equivariant_with_feature_rows(dtype):
  n = 3
  params = _params(jax.random.PRNGKey(3), (5, 7, 4), dtype)
  x = _normal(jax.random.PRNGKey(4), (6, n + 2, 5), dtype)
  # Columns of every size around eps, where the smooth form differs from eq. 9 the most.
  x = x.at[:, :n].multiply(jnp.logspace(-3, 1, 5))
  fn = jax.jit(functools.partial(uenn.apply_uenn, params, n_features=2, eps=EPS))
  uenn.assert_equivariant(fn, x, key=jax.random.PRNGKey(5), n_features=2, num_trials=2,
                          reflection=not jnp.iscomplexobj(x))
  if jnp.iscomplexobj(x):  # the Flax module computes the same
    flax_net = uenn.UENN(sizes=(5, 7, 4), n_features=2, param_dtype=dtype, eps=EPS)
    variables = {"params": {f"layer_{i}": p for i, p in enumerate(params)}}
    np.testing.assert_allclose(jax.jit(flax_net.apply)(variables, x), fn(x), rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_continuous_at_zero_in_every_direction(dtype):
  """|f(1e-12 v) - f(0)| <= 1e-12 Lipschitz bound for 64 directions v, for the network and a layer with one zero
  column; eq. 9 jumps by O(1) there whatever the size of the step."""
  params = _params(jax.random.PRNGKey(6), (5, 9, 9, 3), dtype)
  v = _directions(jax.random.PRNGKey(7), 64, (3, 5), dtype)
  x = _normal(jax.random.PRNGKey(8), (3, 5), dtype).at[:, 2].set(0)

  @jax.jit
  def probe(v):
    smooth, eq9 = (functools.partial(uenn.apply_uenn, params, eps=eps) for eps in (EPS, 0.0))
    layer = jax.vmap(lambda a: uenn.equivariant_dense(params[0], a, eps=EPS))
    zero = jnp.zeros((1, 3, 5), dtype)
    return (smooth(zero), smooth(1e-12 * v), smooth(1e-13 * v), eq9(zero), eq9(1e-12 * v),
            layer(x + 1e-12 * v * (jnp.arange(5) == 2)), layer(x[None]))

  s0, s12, s13, e0, e12, layer_near, layer_at = (np.asarray(a) for a in probe(v))
  assert np.array_equal(s0, np.zeros_like(s0)) and np.array_equal(e0, np.zeros_like(e0))  # xW, e(0), sigma(0) = 0
  jumps = np.max(np.abs(s12 - s0), axis=(1, 2))
  bound = 1e-12 * _lipschitz_bound(params, EPS)
  assert np.max(jumps) <= bound, f"|f(1e-12 v) - f(0)| = {np.max(jumps):.2e} > {bound:.2e}"
  np.testing.assert_allclose(s13, s12 / 10, rtol=1e-6)  # linear in the step: no jump
  assert np.min(np.max(np.abs(e12 - e0), axis=(1, 2))) > 1e-2  # eq. 9 jumps in every direction
  # One column at zero, the others not: the same, column by column.
  assert np.max(np.abs(layer_near - layer_at)) <= 1e-12 * np.linalg.norm(np.asarray(params[0]["b"][2]), 2) / EPS


def test_first_and_second_derivatives_at_zero_are_finite_and_the_limits():
  """The network is C^1 at 0 (its Jacobian at 0 is the limit of the Jacobians nearby); second derivatives, and
  gradients with respect to the parameters at x = 0 (training on a perfect crystal), are finite."""
  params = _params(jax.random.PRNGKey(9), (4, 6, 2))
  zero = jnp.zeros((3, 4))
  directions = _directions(jax.random.PRNGKey(10), 8, (3, 4))
  h = 1e-10

  @jax.jit
  def probe(params, directions):
    net = functools.partial(uenn.apply_uenn, params, eps=EPS)
    jac = jax.jacfwd(net)
    fd = (net(h * directions[0]) - net(-h * directions[0])) / (2 * h)
    hess = jax.hessian(lambda a: jnp.sum(net(a) ** 2) + jnp.sum(net(a)))(zero)
    grads = jax.grad(lambda p: jnp.sum(uenn.apply_uenn(p, zero, eps=EPS)))(params)
    unit = lambda a: layers.smooth_unit_vectors(a, EPS)
    e_jac = jax.jacfwd(unit)(jnp.zeros((3, 1)))
    e_hess = jax.hessian(lambda a: unit(a)[0, 0])(jnp.zeros((3, 1)))
    return jac(zero), jax.vmap(jac)(1e-12 * directions), fd, hess, grads, e_jac, e_hess

  j0, j_near, fd, hess, grads, e_jac, e_hess = jax.tree.map(np.asarray, probe(params, directions))
  assert np.all(np.isfinite(j0)) and np.max(np.abs(j0)) > 0
  np.testing.assert_allclose(j_near, np.broadcast_to(j0, j_near.shape), atol=1e-6 * np.max(np.abs(j0)))
  # Finite differences agree with autodiff at 0.
  np.testing.assert_allclose(fd, np.tensordot(j0, np.asarray(directions[0]), axes=2), rtol=1e-6, atol=1e-9)
  assert np.all(np.isfinite(hess))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  # The smooth unit vector itself: Jacobian I / eps and zero second derivative at 0 (it is odd in x).
  np.testing.assert_allclose(e_jac[:, 0, :, 0], np.eye(3) / EPS, rtol=1e-12)
  np.testing.assert_array_equal(e_hess, np.zeros_like(e_hess))


def test_eps_is_saved_with_the_model_and_used_by_its_force_function(tmp_path):
  params = _params(jax.random.PRNGKey(12), (6, 8, 4), jnp.float32)
  scales = {"inputs": np.full(6, 4.5), "targets": np.full(4, 0.13)}
  pos = jnp.asarray(structures.generate_clusters(4, seed=3))
  forces = {}
  for eps in (0.0, 0.3):
    models.save_model(str(tmp_path / f"eps{eps}"), models.Model(kind="four_body", params=params, sizes=(6, 8, 4),
                                                                scales=scales, eps=eps))
    loaded = models.load_model(str(tmp_path / f"eps{eps}"))
    assert loaded.eps == eps
    forces[eps] = np.asarray(jax.jit(models.model_force_fn(loaded, dtype=jnp.float64))(pos))
  x = data.relative_vectors(pos) / 4.5
  expected = np.swapaxes(np.asarray(uenn.apply_uenn(jax.tree.map(lambda p: p.astype(jnp.float64), params), x, eps=0.3)),
                         -1, -2) * 0.13
  np.testing.assert_allclose(forces[0.3], expected, rtol=1e-10)
  assert np.max(np.abs(forces[0.3] - forces[0.0])) > 1e-4
  with pytest.raises(ValueError, match="eps"):
    models.Model(kind="four_body", params=params, sizes=(6, 8, 4), scales=scales, eps=-1.0)


def test_perfect_crystal_gets_zero_force_from_the_smooth_network_and_noise_from_eq9():
  """The mechanism behind the FCC figures of the README: descriptor sums of a perfect crystal are 0 up to rounding;
  eq. 9 turns that rounding into unit vectors (O(1) output), the smooth form into at most its Lipschitz bound
  times the rounding, in float32 and in float64."""
  a, n = 5.26, 2
  basis = dict(r_s=descriptors.radial_grid(3.0, 6, 0.4), eta=8.0, r_cut=n * a / 2)
  box = structures.random_box(n * a, max_atoms=30, seed=2)  # standardize by a random box: RMS 1 per channel
  scale = np.sqrt(np.mean(np.asarray(descriptors.vector_descriptors(box, n * a, **basis)) ** 2, axis=(0, 1)))
  for dtype, noise_below in ((jnp.float32, 1e-4), (jnp.float64, 1e-12)):
    d = descriptors.vector_descriptors(jnp.asarray(structures.fcc_lattice(n, a), dtype), n * a, **basis)
    x = d / jnp.asarray(scale, dtype)
    noise = float(jnp.max(jnp.linalg.norm(x, axis=-2)))
    assert d.dtype == dtype and 0 < noise < noise_below  # zero by symmetry, up to rounding
    params = _params(jax.random.PRNGKey(13), (6, 12, 1), dtype)
    eq9, smooth = (float(jnp.max(jnp.abs(y))) for y in
                   jax.jit(lambda x: (uenn.apply_uenn(params, x), uenn.apply_uenn(params, x, eps=EPS)))(x))
    assert eq9 > 1e-2, f"{dtype.__name__}: eq. 9 gives {eq9:.2e}"
    assert smooth <= _lipschitz_bound(params, EPS) * noise, f"{dtype.__name__}: smooth gives {smooth:.2e}"
    if dtype == jnp.float64:
      assert smooth < 1e-8, f"float64: smooth gives {smooth:.2e}"


def test_study_bins_and_horizon_against_hand_counts():
  from experiments.smooth_study import agreement_horizon, binned_force_errors
  ref = np.array([[0.001, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, -0.5], [0.3, 0.4, 0.0]])  # |F| 0.001, 0.02, 0.5, 0.5
  pred = ref + np.array([[0.001, 0.0, 0.0], [0.0, 0.0, 0.003], [0.0, 0.0, 0.0], [0.0, 0.0, 0.06]])
  rows = binned_force_errors(ref, pred, (0.0, 0.01, 0.1, 1.0, 10.0))
  assert [r["n_atoms"] for r in rows] == [1, 1, 2, 0] and rows[3]["rmse"] is None
  assert rows[0]["rmse"] == pytest.approx(np.sqrt(1e-6 / 3)) and rows[0]["relative"] == pytest.approx(1.0)
  assert rows[2]["rmse"] == pytest.approx(np.sqrt(0.06 ** 2 / 6))
  assert rows[2]["force_rms"] == pytest.approx(np.sqrt(0.5 / 6))
  steps = np.arange(0, 100, 10)
  assert agreement_horizon(steps, np.linspace(0, 0.2, 10), 0.1) == 50
  assert agreement_horizon(steps, np.zeros(10), 0.1) is None


def test_linear_response_at_zero_is_the_first_order_of_the_network():
  params = _params(jax.random.PRNGKey(14), (5, 7, 2))
  g = uenn.network.linear_response_at_zero(params, eps=EPS)
  assert g.shape == (5, 2)
  x = _normal(jax.random.PRNGKey(15), (4, 3, 5))  # any n: the response acts on channels only
  t = 1e-10
  np.testing.assert_allclose(jax.jit(uenn.apply_uenn, static_argnames="eps")(params, t * x, eps=EPS) / t, x @ g,
                             rtol=1e-5, atol=1e-8)
  with pytest.raises(ValueError, match="eps"):
    uenn.network.linear_response_at_zero(params, eps=0.0)

"""Networks: equivariance of the stack, parameter counts, the Flax module, invariant heads, the MLP."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import unitary_enn as uenn
from tests.test_layers import _random


def _with_random_biases(params, key, dtype):
  keys = jax.random.split(key, len(params))
  return [dict(W=p["W"], b=0.3 * _random(k, p["b"].shape, dtype)) for p, k in zip(params, keys)]


def test_paper_network_has_52000_parameters():
  params = uenn.init_uenn(jax.random.PRNGKey(0), (6, 50, 90, 100, 80, 50, 4))
  assert uenn.count_params(params) == 52_000
  assert all(jnp.all(p["b"] == 0) for p in params)  # b = 0 at init (Sec. 4.2)


def test_baseline_mlps_have_the_papers_parameter_counts():
  a = uenn.init_mlp(jax.random.PRNGKey(0), (18, 50, 90, 100, 80, 50, 12))
  b = uenn.init_mlp(jax.random.PRNGKey(0), (18, 75, 120, 150, 110, 70, 12))
  assert uenn.count_params(a) == 27_382
  assert uenn.count_params(b) == 53_927


@pytest.mark.parametrize("n", [2, 3, 5])
def test_complex_network_is_unitary_equivariant(n):
  dtype = jnp.complex128
  params = _with_random_biases(uenn.init_uenn(jax.random.PRNGKey(n), (3, 7, 5, 2), dtype=dtype),
                               jax.random.PRNGKey(9), dtype)
  x = _random(jax.random.PRNGKey(1), (4, n, 3), dtype)
  uenn.assert_equivariant(lambda v: uenn.apply_uenn(params, v), x, key=jax.random.PRNGKey(2))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_real_network_is_o3_equivariant(dtype):
  params = _with_random_biases(uenn.init_uenn(jax.random.PRNGKey(0), (6, 12, 9, 4), dtype=dtype),
                               jax.random.PRNGKey(1), dtype)
  x = _random(jax.random.PRNGKey(2), (5, 3, 6), dtype)
  uenn.assert_equivariant(lambda v: uenn.apply_uenn(params, v), x, key=jax.random.PRNGKey(3),
                          num_trials=4, reflection=True)


def test_complex_network_with_scalar_features_is_equivariant():
  n, m, dtype = 3, 2, jnp.complex128
  params = _with_random_biases(uenn.init_uenn(jax.random.PRNGKey(0), (4, 6, 3), dtype=dtype),
                               jax.random.PRNGKey(1), dtype)
  x = _random(jax.random.PRNGKey(2), (5, n + m, 4), dtype)
  f = lambda v: uenn.apply_uenn(params, v, n_features=m)
  assert f(x).shape == (5, n + m, 3)
  uenn.assert_equivariant(f, x, key=jax.random.PRNGKey(3), n_features=m)


def test_network_gradient_finite_at_zero_input():
  params = uenn.init_uenn(jax.random.PRNGKey(0), (3, 5, 2), dtype=jnp.float64)
  loss = lambda p, x: jnp.sum(uenn.apply_uenn(p, x) ** 2)
  for x in (jnp.zeros((4, 3, 3)), jnp.zeros((4, 3, 3)).at[:, :, 0].set(1.0)):
    gp, gx = jax.grad(loss, argnums=(0, 1))(params, x)
    assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves((gp, gx)))


def test_flax_module_matches_pure_functions():
  x = _random(jax.random.PRNGKey(0), (4, 3, 6), jnp.float64)
  module = uenn.UENN(sizes=(6, 10, 4), param_dtype=jnp.float64)
  variables = module.init(jax.random.PRNGKey(1), x)
  pure = uenn.UENN.to_pure_params(variables)
  assert uenn.count_params(pure) == 2 * (6 * 10 + 10 * 4)
  pure = _with_random_biases(pure, jax.random.PRNGKey(2), jnp.float64)
  variables = {"params": {f"layer_{i}": p for i, p in enumerate(pure)}}
  np.testing.assert_allclose(module.apply(variables, x), uenn.apply_uenn(pure, x), rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_invariant_head_is_invariant(dtype):
  m = 4
  x = _random(jax.random.PRNGKey(0), (5, 3, m), dtype)
  is_complex = jnp.iscomplexobj(x)
  feats = uenn.invariant_features(x)
  assert feats.shape == (5, uenn.num_invariants(m, is_complex))
  head = uenn.init_invariant_head(jax.random.PRNGKey(1), m, (16, 8), 1, is_complex=is_complex,
                                  dtype=jnp.float64)
  head = [dict(W=p["W"], b=p["b"] + 0.1) for p in head]
  uenn.assert_invariant(lambda v: uenn.apply_invariant_head(head, v), x, key=jax.random.PRNGKey(2))
  # The Gram invariants determine the vectors up to U: a changed inner product changes them.
  y = x.at[:, :, 0].multiply(1.5)
  assert not np.allclose(uenn.invariant_features(y), feats)


def test_complex_network_learns_complex_target():
  """Training complex weights on a complex equivariant target lowers the loss (with conjugated gradients)."""
  dtype = jnp.complex128
  key = jax.random.PRNGKey(0)
  x = _random(key, (256, 3, 2), dtype)
  a = jnp.array([[1.0 + 0.5j, -0.3j], [0.2, 0.7 - 0.2j]], dtype)
  y = x @ a + 0.5 * uenn.unit_vectors(x) @ a.T  # a U(3)-equivariant complex target
  params = uenn.init_uenn(jax.random.PRNGKey(1), (2, 16, 2), dtype=dtype)
  loss = lambda p: jnp.mean(jnp.abs(uenn.apply_uenn(p, x) - y) ** 2)
  opt = optax.chain(uenn.conjugate_complex_grads(), optax.adam(1e-2))
  state = opt.init(params)

  @jax.jit
  def step(p, s):
    l, g = jax.value_and_grad(loss)(p)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, l

  l0 = float(loss(params))
  for _ in range(300):
    params, state, _ = step(params, state)
  assert float(loss(params)) < 0.05 * l0
  assert all(jnp.iscomplexobj(p) for p in jax.tree.leaves(params))


def test_bad_inputs_get_clear_errors():
  params = uenn.init_uenn(jax.random.PRNGKey(0), (6, 5, 4))
  with pytest.raises(ValueError, match=r"x has shape \(3, 5\), expected \(\.\.\., n \+ n_features, 6\)"):
    uenn.apply_uenn(params, jnp.ones((3, 5)))
  with pytest.raises(ValueError, match="non-finite"):
    uenn.apply_uenn(params, jnp.ones((2, 3, 6)).at[0, 1, 2].set(jnp.nan))
  with pytest.raises(ValueError, match="n_features=3"):
    uenn.apply_uenn(params, jnp.ones((3, 6)), n_features=3)
  with pytest.raises(ValueError, match="sizes"):
    uenn.init_uenn(jax.random.PRNGKey(0), (6,))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex128])
def test_network_in_blocks_of_rows_equals_the_whole_and_keeps_equivariance(dtype):
  """apply_uenn(..., block=b) runs the rows in blocks (lax.map); rows are independent, so it equals the plain
  call to rounding for any b, including b that does not divide the rows and b >= rows; gradients agree too."""
  from tests.test_layers import _layer
  keys = jax.random.split(jax.random.PRNGKey(5), 4)
  params = [_layer(k, m, m2, dtype) for k, m, m2 in zip(keys, (7, 9, 6), (9, 6, 2))]
  x = _random(jax.random.PRNGKey(9), (23, 3, 7), dtype)
  want = uenn.apply_uenn(params, x, eps=0.05)
  tol = 2e-6 if jnp.dtype(dtype) == jnp.float32 else 1e-12
  for block in (1, 5, 8, 23, 100):
    got = jax.jit(lambda p, x, b=block: uenn.apply_uenn(p, x, eps=0.05, block=b))(params, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
  g = lambda b: jax.grad(lambda p: jnp.sum(jnp.abs(uenn.apply_uenn(p, x, eps=0.05, block=b)) ** 2))(params)
  for a, b in zip(jax.tree.leaves(g(None)), jax.tree.leaves(g(5))):
    np.testing.assert_allclose(a, b, rtol=50 * tol, atol=50 * tol)
  with pytest.raises(ValueError, match="block needs x with a leading axis of rows"):
    uenn.apply_uenn(params, x[0], block=2)
  with pytest.raises(ValueError, match="block"):
    uenn.apply_uenn(params, x, block=0)


def test_network_block_is_cache_sized_on_cpu_and_whole_on_accelerators():
  from unitary_enn import network
  sizes = (73, 200, 100, 50, 10, 1)
  rows = network.network_block(sizes, platform="cpu")
  assert rows == network.NETWORK_CPU_BUDGET // 600  # widest activation: 3 coordinates x 200 vectors a row
  assert network.network_block(sizes, platform="gpu") is None and network.network_block(sizes, platform="tpu") is None
  assert network.network_block((4, 8), n_coordinates=2, platform="cpu") == network.NETWORK_CPU_BUDGET // 16


@pytest.mark.parametrize("alloy", [False, True])
def test_many_body_forces_with_the_network_in_blocks_equal_the_whole(monkeypatch, alloy):
  """models.many_body_force_fn runs the network in cache-sized blocks of atoms on CPU: with a budget so small
  that 108 atoms take 6 blocks the forces equal those of the network run at once, on Dense and Sparse lists, for
  one species in float64 and for two species with a linear path in float32."""
  from benchmarks import md_throughput
  from jax_md import partition
  from tests.test_targets import _alloy_model
  from unitary_enn import models, neighbors, network
  pos, box = md_throughput.fcc_state(3, "float64", 60.0)  # 108 atoms in a 15.7 A box
  disp, _ = neighbors.periodic_space(box)
  if alloy:
    model = _alloy_model()  # sizes (20, 6, 1), r_cut 5 A, float32
    kw = dict(species=jnp.asarray(np.random.default_rng(2).integers(0, 2, len(pos))))
    pos, tol = pos.astype(np.float32), 2e-6
  else:
    r_cut = 0.49 * box
    basis = models.Basis(np.linspace(2.8, r_cut, 20), 10.0, r_cut, "cosine")
    params = uenn.init_uenn(jax.random.PRNGKey(1), (20, 16, 8, 1), dtype=jnp.float64)
    model = models.Model(kind="many_body", params=params, sizes=(20, 16, 8, 1), activation="softsign",
                         scales=dict(inputs=np.ones(20), targets=np.ones(1)), dtype="float64", basis=basis)
    kw, tol = {}, 1e-12
  pos = jnp.asarray(pos)
  for fmt in (partition.Dense, partition.Sparse):
    nbr = partition.neighbor_list(disp, box, model.r_cut, format=fmt).allocate(pos)
    monkeypatch.setattr(network, "NETWORK_CPU_BUDGET", 1 << 20)
    whole = np.asarray(jax.jit(models.many_body_force_fn(model, disp))(pos, nbr, **kw))
    monkeypatch.setattr(network, "NETWORK_CPU_BUDGET", 3 * 20 * 20)  # widest layer 20: 20 atoms a block, 6 blocks
    assert network.network_block(model.sizes, platform="cpu") == 20
    blocked = np.asarray(jax.jit(models.many_body_force_fn(model, disp))(pos, nbr, **kw))
    assert np.max(np.abs(whole)) > 1e-3
    np.testing.assert_allclose(blocked, whole, rtol=tol, atol=tol * np.max(np.abs(whole)))

"""FIRE as an optax transformation (docs/decisions.md §4): against a NumPy transcription, on Rosenbrock, on a stiff cluster."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import unitary_enn as uenn

P = dict(dt=0.001, dt_max=0.01, mass=0.1, n_min=5, f_inc=1.1, f_dec=0.5, alpha_start=0.1, f_alpha=0.99)


def numpy_fire(grad, x, steps, variant):
  """A direct transcription of docs/decisions.md §4 (paper) and of the FIRE 2.0 step (fire2) on a flat vector."""
  x = np.array(x, dtype=np.float64)
  v = np.zeros_like(x)
  dt, alpha, n = P["dt"], P["alpha_start"], 0
  traj = []
  for _ in range(steps):
    f = -grad(x)
    if variant == "paper":
      x = x + v * dt
      v = v + f / P["mass"] * dt
      power = f @ v
      n += 1
      v = (1 - alpha) * v + alpha * np.linalg.norm(v) * f / np.linalg.norm(f)
      if power > 0 and n > P["n_min"]:
        dt, alpha = min(dt * P["f_inc"], P["dt_max"]), alpha * P["f_alpha"]
      if power <= 0:
        dt, v, alpha, n = dt * P["f_dec"], np.zeros_like(v), P["alpha_start"], 0
    else:
      power = f @ v
      if power > 0 or not np.any(v):
        n += 1
        if n > P["n_min"]:
          dt, alpha = min(dt * P["f_inc"], P["dt_max"]), alpha * P["f_alpha"]
      else:
        n, dt, alpha = 0, dt * P["f_dec"], P["alpha_start"]
        x = x - 0.5 * dt * v
        v = np.zeros_like(v)
      v = v + f / P["mass"] * dt
      v = (1 - alpha) * v + alpha * np.linalg.norm(v) * f / np.linalg.norm(f)
      x = x + dt * v
    traj.append(x.copy())
  return np.array(traj)


def run_optax(opt, loss, params, steps):
  state = opt.init(params)

  def body(carry, _):
    p, s = carry
    u, s = opt.update(jax.grad(loss)(p), s, p)
    p = optax.apply_updates(p, u)
    return (p, s), p

  (_, final_state), traj = jax.jit(lambda p, s: jax.lax.scan(body, (p, s), None, length=steps))(params, state)
  return traj, final_state


CURV = np.array([1.0, 50.0, 5000.0, 3.0, 200.0])  # stiff enough to trigger uphill resets within 50 steps


@pytest.mark.parametrize("variant", ["paper", "fire2"])
def test_fire_matches_numpy_transcription_on_a_quadratic(variant):
  x0 = np.array([1.0, -0.5, 0.3, 2.0, -1.0])
  ref = numpy_fire(lambda x: CURV * x, x0, 50, variant)
  # Two leaves, so the power and the norms must be global over the pytree.
  params = {"a": jnp.asarray(x0[:3]), "b": jnp.asarray(x0[3:])}
  loss = lambda p: 0.5 * (jnp.sum(CURV[:3] * p["a"] ** 2) + jnp.sum(CURV[3:] * p["b"] ** 2))
  traj, state = run_optax(uenn.fire(variant=variant), loss, params, 50)
  ours = np.concatenate([traj["a"], traj["b"]], axis=1)
  np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
  assert float(state[1].dt) < P["dt_max"]  # the run did see uphill resets


@pytest.mark.parametrize("variant", ["paper", "fire2"])
def test_complex_parameters_follow_the_real_transcription(variant):
  """A complex leaf behaves as its (Re, Im) pair: fire() conjugates jax.grad's output (docs/decisions.md §4 trap)."""
  c = np.array([1.0 - 2.0j, 0.5j])
  z0 = np.array([0.3 + 0.1j, -1.0 + 0.0j])
  k = np.array([4.0, 300.0])
  loss = lambda z: jnp.sum(k * jnp.abs(z - c) ** 2)
  traj, _ = run_optax(uenn.fire(variant=variant), loss, jnp.asarray(z0), 50)
  kk = np.concatenate([k, k])
  cr = np.concatenate([c.real, c.imag])
  ref = numpy_fire(lambda x: 2 * kk * (x - cr), np.concatenate([z0.real, z0.imag]), 50, variant)
  np.testing.assert_allclose(np.concatenate([traj.real, traj.imag], axis=1), ref, rtol=1e-10, atol=1e-12)


def test_unconjugated_complex_gradient_diverges_and_conjugated_converges():
  """docs/decisions.md §4: sgd on |z - i|^2 from z = 0 runs away with raw jax.grad and converges once conjugated."""
  loss = lambda z: jnp.abs(z - 1j) ** 2
  for opt, ok in ((optax.sgd(0.1), False), (optax.chain(uenn.conjugate_complex_grads(), optax.sgd(0.1)), True)):
    z = jnp.zeros((), jnp.complex128)
    s = opt.init(z)
    for _ in range(50):
      u, s = opt.update(jax.grad(loss)(z), s, z)
      z = optax.apply_updates(z, u)
    if ok:
      assert abs(complex(z) - 1j) < 1e-3
    else:
      assert abs(complex(z)) > 1e3


def rosenbrock(p):
  return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


@pytest.mark.parametrize("variant,atol", [("paper", 1e-3), ("fire2", 1e-6)])
def test_fire_minimizes_rosenbrock(variant, atol):
  # With the paper's defaults. Forward Euler crawls along the valley (and diverges at dt_max = 0.02);
  # fire2 is within 1e-4 by step ~400 (measured).
  traj, _ = run_optax(uenn.fire(variant=variant), rosenbrock, jnp.array([-1.2, 1.0]), 20_000)
  np.testing.assert_allclose(np.asarray(traj[-1]), [1.0, 1.0], atol=atol)
  assert float(rosenbrock(traj[-1])) < 1e-6 * float(rosenbrock(jnp.array([-1.2, 1.0])))


def lj13_energy(x):
  """13-atom LJ cluster in reduced units (eps = sigma = 1); global minimum -44.326801 (icosahedron)."""
  p = x.reshape(13, 3)
  iu = np.triu_indices(13, 1)
  r2 = jnp.sum((p[:, None] - p[None]) ** 2, -1)[iu]
  s6 = 1 / r2 ** 3
  return jnp.sum(4 * (s6 * s6 - s6))


def icosahedron(scale=1.1, noise=0.05, seed=0):
  g = (1 + 5 ** 0.5) / 2
  v = np.array([[0, 1, g], [0, -1, g], [0, 1, -g], [0, -1, -g], [1, g, 0], [-1, g, 0], [1, -g, 0],
                [-1, -g, 0], [g, 0, 1], [-g, 0, 1], [g, 0, -1], [-g, 0, -1]], float)
  v = v / np.linalg.norm(v[0]) * scale
  p = np.vstack([np.zeros(3), v])
  return (p + np.random.default_rng(seed).normal(0, noise, p.shape)).ravel()


def test_fire2_stays_at_the_minimum_of_a_stiff_cluster_where_paper_does_not():
  x0 = jnp.asarray(icosahedron())
  traj2, _ = run_optax(uenn.fire(variant="fire2"), lj13_energy, x0, 3000)
  e2 = np.array(jax.vmap(lj13_energy)(traj2))
  assert abs(e2[500] - (-44.326801)) < 1e-5
  assert np.max(np.abs(e2[500:] + 44.326801)) < 1e-5
  traj1, _ = run_optax(uenn.fire(variant="paper"), lj13_energy, x0, 3000)
  e1 = np.array(jax.vmap(lj13_energy)(traj1))
  # Forward Euler reaches the minimum and then leaves it (docs/decisions.md §4 measured -18.78 by step 3,000).
  assert e1.min() < -44.32
  assert e1[-1] > -44.0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.complex64])
def test_dtype_kept_and_no_recompilation(dtype):
  opt = uenn.fire()
  params = {"w": jnp.ones((3, 2), dtype), "b": jnp.zeros((2,), dtype)}
  state = opt.init(params)
  loss = lambda p: jnp.sum(jnp.abs(p["w"] - 0.5) ** 2) + jnp.sum(jnp.abs(p["b"] + 1) ** 2)

  @jax.jit
  def step(p, s):
    u, s = opt.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  for _ in range(3):
    params, state = step(params, state)
  assert step._cache_size() == 1
  assert all(l.dtype == dtype for l in jax.tree.leaves(params))
  fire_state = state[1]
  assert fire_state.dt.dtype == jnp.finfo(dtype).dtype
  assert fire_state.velocity["w"].dtype == dtype


def test_fire_rejects_bad_arguments():
  with pytest.raises(ValueError, match="unknown FIRE variant 'euler'"):
    uenn.fire(variant="euler")
  with pytest.raises(ValueError, match="dt_max must be a positive"):
    uenn.fire(dt_max=0.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(f_dec=2.0), "f_dec must be < 1"), (dict(f_dec=0.0), "f_dec must be a positive"),
    (dict(f_inc=0.9), "f_inc must be >= 1"), (dict(alpha_start=-1.0), "alpha_start must be a non-negative"),
    (dict(alpha_start=1.5), r"alpha_start must be in \[0, 1\]"), (dict(f_alpha=1.01), r"f_alpha must be in \(0, 1\]"),
    (dict(f_alpha=0.0), "f_alpha must be a positive"), (dict(dt=0.1), "dt must be <= dt_max"),
    (dict(n_min=-3), "n_min must be a non-negative integer"), (dict(n_min=2.5), "n_min must be a non-negative"),
    (dict(mass=-0.1), "mass must be a positive"), (dict(dt=float("nan")), "dt must be a positive, finite"),
    (dict(dt_max=float("inf")), "dt_max must be a positive, finite"), (dict(variant=None), "unknown FIRE variant"),
])
def test_fire_rejects_each_bad_hyperparameter(kwargs, match):
  """Row "FIRE with f_dec=2, alpha_start=-1, dt > dt_max, n_min=-3: accepted" of the reliability issue."""
  with pytest.raises(ValueError, match=match):
    uenn.fire(**kwargs)
  with pytest.raises(ValueError, match=match):
    uenn.scale_by_fire(**kwargs)
  uenn.fire(n_min=0, alpha_start=0.0, f_alpha=1.0, f_inc=1.0, dt=0.01)  # the edges are allowed


@pytest.mark.parametrize("variant", ["paper", "fire2"])
def test_one_nan_gradient_is_skipped_counted_and_forgotten(variant):
  """Row "FIRE after one NaN gradient: velocity NaN for good, dt grows, every parameter NaN next step".

  A NaN gradient at step 20 of a run on the quadratic: no parameter moves at that step, the velocity is reset to
  zero, dt shrinks by f_dec, the count says 1, and the run then goes on finite and still lowers the loss.
  """
  x0 = jnp.asarray([1.0, -0.5, 0.3, 2.0, -1.0])
  grad = lambda x: jnp.asarray(CURV) * x
  opt = uenn.fire(variant=variant)
  state = opt.init(x0)
  x = x0
  update = jax.jit(opt.update)
  for k in range(200):
    g = grad(x)
    if k == 20:
      g = g.at[3].set(jnp.nan)
      before, dt_before = x, float(state[1].dt)
    u, state = update(g, state, x)
    x = optax.apply_updates(x, u)
    if k == 20:
      np.testing.assert_array_equal(np.asarray(x), np.asarray(before))
      assert float(jnp.sum(jnp.abs(state[1].velocity))) == 0.0
      assert float(state[1].dt) == pytest.approx(dt_before * P["f_dec"])
      assert int(state[1].nonfinite) == 1 and int(state[1].count) == 0
    assert bool(jnp.all(jnp.isfinite(x))) and bool(jnp.all(jnp.isfinite(state[1].velocity)))
  assert int(state[1].nonfinite) == 1
  energy = lambda x: float(jnp.sum(jnp.asarray(CURV) * x * x))
  assert energy(x) < 0.1 * energy(x0)


@pytest.mark.parametrize("variant", ["paper", "fire2"])
def test_a_non_finite_power_is_uphill(variant):
  """An overflowing power F.v (finite F and v) resets the velocity and shrinks dt instead of growing it."""
  opt = uenn.scale_by_fire(variant=variant, n_min=0)
  x = jnp.asarray([1.0, 1.0], jnp.float32)
  state = opt.init(x)._replace(velocity=jnp.asarray([1e20, 1e20], jnp.float32))
  g = jnp.asarray([-1e20, -1e20], jnp.float32)  # F = -g along v: P = 2e40 = +inf in float32
  u, new = opt.update(g, state, x)
  assert float(new.dt) == pytest.approx(float(state.dt) * P["f_dec"])
  assert float(jnp.max(jnp.abs(new.velocity))) < 1e20  # reset (fire2 then takes one finite step from v = 0)
  assert int(new.nonfinite) == 0 and bool(jnp.all(jnp.isfinite(u)))
  # A force that overflows the velocity (F / m = inf) is uphill (paper) or skipped (fire2), never a NaN update.
  u, new = opt.update(jnp.asarray([-3e38, 0.0], jnp.float32), opt.init(x), x)
  assert float(jnp.sum(jnp.abs(u))) == 0.0 and bool(jnp.all(jnp.isfinite(new.velocity)))
  assert float(new.dt) == pytest.approx(P["dt"] * P["f_dec"])

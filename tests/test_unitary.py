"""The complex U(n) tasks (unitary_enn.quantum) and their experiment binary (experiments/unitary.py).

Targets: U(n)-equivariant to float64 rounding on Haar-random U, and equal to an independent computation
(Loewdin: eigendecomposition vs Newton-Schulz; dynamics: exact exponential vs RK4 of the nonlinear equation).
Training: the conjugated complex gradient trains the UENN, the raw `jax.grad` output does not. The tiny run of
the binary: files, and a trained UENN equivariant to float32 rounding.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import unitary_enn as uenn
from experiments import unitary
from experiments.configs import unitary as unitary_config
from unitary_enn import quantum


def _complex_gaussian(seed, shape):
  rng = np.random.default_rng(seed)
  return jnp.asarray((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2), jnp.complex128)


def _dagger(a):
  return jnp.conj(jnp.swapaxes(a, -1, -2))


# --- Loewdin orthonormalization ------------------------------------------------------------------------


@pytest.mark.parametrize("n,m", [(2, 2), (4, 3), (8, 3)])
def test_loewdin_is_unitary_equivariant_orthonormal_and_closest(n, m):
  x = _complex_gaussian(n, (5, n, m))
  loewdin = jax.jit(quantum.loewdin)
  q = loewdin(x)
  np.testing.assert_allclose(_dagger(q) @ q, np.broadcast_to(np.eye(m), (5, m, m)), atol=1e-12)
  uenn.assert_equivariant(loewdin, x, key=jax.random.PRNGKey(n))  # float64 tolerance 1e-9
  # Loewdin's theorem: no other orthonormal set Q V (V unitary, M x M) is closer to X.
  best = np.linalg.norm(q - x, axis=(-2, -1))
  for k in jax.random.split(jax.random.PRNGKey(10 + n), 4):
    v = uenn.random_unitary(k, m, jnp.complex128)
    assert np.all(np.linalg.norm(q @ v - x, axis=(-2, -1)) > best)


@pytest.mark.parametrize("n,m", [(2, 2), (4, 3), (8, 3)])
def test_loewdin_eigendecomposition_matches_newton_schulz(n, m):
  x = _complex_gaussian(20 + n, (6, n, m))
  np.testing.assert_allclose(jax.jit(quantum.loewdin_newton_schulz)(x), jax.jit(quantum.loewdin)(x), atol=1e-12)
  s = quantum.gram(x)
  inv_sqrt = quantum.inverse_sqrt_eigh(s)
  np.testing.assert_allclose(inv_sqrt @ s @ inv_sqrt, np.broadcast_to(np.eye(m), s.shape), atol=1e-11)
  np.testing.assert_allclose(quantum.inverse_sqrt_newton_schulz(s), inv_sqrt, rtol=1e-11, atol=1e-11)


def test_newton_schulz_converges_for_an_ill_conditioned_gram_matrix():
  """cond(S) = 1e6 (cond(X) = 1e3): 60 iterations still reach the eigendecomposition's S^(-1/2)."""
  u = np.asarray(uenn.random_unitary(jax.random.PRNGKey(0), 3, jnp.complex128))
  s = jnp.asarray(u @ np.diag([1.0, 1e-3, 1e-6]) @ u.conj().T)
  np.testing.assert_allclose(quantum.inverse_sqrt_newton_schulz(s), quantum.inverse_sqrt_eigh(s), rtol=1e-7)


# --- Mean-field dynamics --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 4, 8])
def test_dynamics_step_is_unitary_equivariant_and_keeps_the_gram_matrix(n):
  psi = _complex_gaussian(30 + n, (4, n, 3)) / np.sqrt(n)  # orbitals of norm ~1
  step = jax.jit(functools.partial(quantum.propagate_exact, dt=0.05, g=1.0, g2=0.5))
  uenn.assert_equivariant(step, psi, key=jax.random.PRNGKey(n))
  h = quantum.mean_field_hamiltonian(psi, 1.0, 0.5)
  np.testing.assert_allclose(h, _dagger(h), atol=1e-14)
  out = step(psi)
  np.testing.assert_allclose(quantum.gram(out), quantum.gram(psi), atol=1e-12)
  # H built from the new orbitals is the old H: the one-step exponential is the exact flow.
  np.testing.assert_allclose(quantum.mean_field_hamiltonian(out, 1.0, 0.5), h, atol=1e-12)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_exact_step_matches_rk4_of_the_nonlinear_equation(n):
  """RK4 on i dPsi/dt = H(Psi) Psi with H rebuilt at every stage (error ~ (|H| dt / substeps)^4)."""
  psi = _complex_gaussian(40 + n, (4, n, 3)) / np.sqrt(n)
  exact = quantum.propagate_exact(psi, 0.1, 1.0, 0.5)
  rk4 = quantum.propagate_rk4(psi, 0.1, 1.0, 0.5, substeps=200)
  assert float(jnp.max(jnp.abs(exact - psi))) > 0.1  # the step moves the orbitals
  np.testing.assert_allclose(rk4, exact, atol=1e-11)


def test_rollout_of_exact_steps_equals_one_long_step():
  psi = _complex_gaussian(5, (3, 4, 3)) / 2.0
  traj = quantum.rollout(functools.partial(quantum.propagate_exact, dt=0.02, g=1.0, g2=0.5), psi, 50)
  assert traj.shape == (51, 3, 4, 3)
  np.testing.assert_allclose(traj[0], psi)
  np.testing.assert_allclose(traj[-1], quantum.propagate_exact(psi, 1.0, 1.0, 0.5), atol=1e-12)


# --- Data -----------------------------------------------------------------------------------------------


def test_data_generators():
  d = quantum.loewdin_dataset(200, 4, 3, seed=1, anisotropy=3.0, normalize=True, max_condition=4.0)
  assert d.inputs.shape == d.targets.shape == (200, 4, 3) and d.inputs.dtype == np.complex128
  assert np.all(quantum.condition_numbers(d.inputs) <= 4.0)
  np.testing.assert_allclose(np.linalg.norm(d.inputs, axis=-2), 1.0, atol=1e-12)
  again = quantum.loewdin_dataset(200, 4, 3, seed=1, anisotropy=3.0, normalize=True, max_condition=4.0)
  np.testing.assert_array_equal(again.inputs, d.inputs)
  # The anisotropic frame: the first coordinate carries more weight than the last.
  power = np.mean(np.abs(d.inputs) ** 2, axis=(0, 2))
  assert power[0] > 2 * power[-1]
  dyn = quantum.dynamics_dataset(50, 2, 3, dt=0.01, g=1.0, g2=0.5, seed=2)
  np.testing.assert_allclose(dyn.targets, quantum.propagate_exact(jnp.asarray(dyn.inputs), 0.01, 1.0, 0.5))
  with pytest.raises(ValueError, match="need 1 <= m <= n"):
    quantum.loewdin_dataset(10, 2, 3)
  with pytest.raises(ValueError, match="anisotropy must be >= 1"):
    quantum.coordinate_scales(3, 0.5)
  with pytest.raises(ValueError, match="too few sets pass"):
    quantum.loewdin_dataset(10, 2, 2, max_condition=1.0001)


# --- Complex training -----------------------------------------------------------------------------------


def test_conjugated_gradient_trains_where_the_raw_gradient_does_not():
  """`jax.grad` of a real loss gives the conjugate of the ascent direction for complex parameters: fed to Adam
  as it is, the imaginary parts climb and the loss grows; conjugated (as `training.make_optimizer` does), the
  loss falls. Both runs share one compiled function: the raw run conjugates before the conjugating chain."""
  d = quantum.loewdin_dataset(64, 3, 3, seed=0, anisotropy=3.0, normalize=True)
  x, y = jnp.asarray(d.inputs), jnp.asarray(d.targets - d.inputs)
  params = uenn.init_uenn(jax.random.PRNGKey(0), (3, 8, 3), dtype=jnp.complex128)
  opt = optax.chain(uenn.conjugate_complex_grads(), optax.adam(1e-2))

  def loss(p):
    return jnp.mean(jnp.abs(uenn.apply_uenn(p, x) - y) ** 2)

  @jax.jit
  def final_loss(conjugate):
    def body(carry, _):
      p, s = carry
      g = jax.tree.map(lambda a: jnp.where(conjugate, a, jnp.conj(a)), jax.grad(loss)(p))
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    (p, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=100)
    return loss(p)

  start = float(loss(params))
  assert float(final_loss(True)) < 0.6 * start
  assert float(final_loss(False)) > start


# --- The experiment binary ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """The tiny config on the dynamics alone, UENN and MLP (every model costs seconds of compilation); the
  Loewdin data path is checked in `test_task_data`, the Cayley models in `test_cayley_models`."""
  workdir = str(tmp_path_factory.mktemp("unitary"))
  config = unitary_config.get_config("tiny")
  with config.unlocked():
    config.tasks = ("dynamics",)
    config.cayley_models = ()
  return workdir, config, unitary.train_and_evaluate(config, workdir)


def test_run_writes_results_and_figures(tiny_run):
  workdir, config, results = tiny_run
  for f in ("results.json", "table.md", "figures/dynamics_loss_n3.png", "figures/dynamics_errors_vs_n.png",
            "figures/dynamics_learning_curve.png", "figures/dynamics_rollout.png", "dynamics/n3/uenn/checkpoint.msgpack"):
    assert os.path.getsize(os.path.join(workdir, f)) > 0, f
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  assert on_disk["versions"]["jax"] == jax.__version__ and on_disk["config"]["ns"] == [3]
  dyn = on_disk["tasks"]["dynamics"]["n3"]["models"]
  assert set(dyn) == {"uenn", "mlp"}
  u, m = dyn["uenn"], dyn["mlp"]
  # Equal parameters: the MLP's width is the one closest to the UENN's count.
  assert u["num_params"] == 2 * 2 * (3 * 8 + 8 * 3)
  assert abs(m["num_params"] - u["num_params"]) <= 2 * 18 + 1
  # The UENN is as good on the Haar-rotated test set as on the test set; the MLP is not.
  assert u["rotated_test_relative_error"] == pytest.approx(u["test_relative_error"], rel=1e-4)
  assert 0 < u["test_increment_relative_error"] < 1
  assert m["rotated_test_relative_error"] > m["test_relative_error"] * (1 + 1e-3)
  roll = u["rollout"]["rotated_test"]
  assert len(roll["per_step"]["state_error"]) == config.rollout_steps + 1
  assert roll["per_step"]["state_error"][0] < 1e-6  # the initial states, rounded to complex64
  assert roll["exact_norm_deviation_max_all"] < 1e-12
  assert on_disk["learning_curve"]["dynamics"]["sizes"] == [config.num_train]
  assert "| dynamics | 3 | 3 | UENN / MLP |" in open(os.path.join(workdir, "table.md")).read()


def test_task_data():
  """Loewdin data of the binary: M clamped to n, the guard, unit vectors, exact rotated targets, scalar scales."""
  config = unitary_config.get_config("tiny")
  data = unitary.make_task_data(config, "loewdin", 2)
  assert data.m == 2 and data.splits["train"].inputs.shape == (config.num_train, 2, 2)
  x, y = data.splits["test"]
  xr, yr = data.splits["rotated_test"]
  np.testing.assert_allclose(xr, data.unitaries @ x, atol=1e-12)
  np.testing.assert_allclose(yr, data.unitaries @ y, atol=1e-11)
  assert np.all(quantum.condition_numbers(x) <= config.max_condition)
  np.testing.assert_allclose(np.linalg.norm(x, axis=-2), 1.0, atol=1e-12)
  assert data.in_scale == pytest.approx(1.0) and 0 < data.delta_scale < data.target_scale


@pytest.fixture(scope="module")
def tiny_dynamics_data():
  return unitary.make_task_data(unitary_config.get_config("tiny"), "dynamics", 3)


def test_trained_uenn_is_equivariant_to_float32_rounding(tiny_run, tiny_dynamics_data):
  workdir, config, _ = tiny_run
  data = tiny_dynamics_data
  # Resumes the finished sub-run: the trained parameters, no training.
  res, predict, _ = unitary.fit(config, data, "uenn", os.path.join(workdir, "dynamics", "n3", "uenn"),
                                log=lambda s: None)
  assert res.steps == config.steps
  x = jnp.asarray(data.splits["test"].inputs[:8], jnp.complex64)
  f = jax.jit(functools.partial(predict, res.best_params))
  assert f(x).dtype == jnp.complex64
  uenn.assert_equivariant(f, x, key=jax.random.PRNGKey(3), rtol=1e-5, atol=1e-5)


def test_cayley_models_are_equivariant_and_keep_norms(tiny_dynamics_data):
  """The Cayley-step models of the binary, with random weights: the UENN's is equivariant in complex64, and
  both keep each orbital's norm whatever the network outputs."""
  config = unitary_config.get_config("tiny")
  data = tiny_dynamics_data
  x = jnp.asarray(data.splits["test"].inputs[:8], jnp.complex64)
  for kind in unitary.CAYLEY_MODELS:
    init, apply = unitary.model_fns(kind, data, config, jnp.float32)
    params = init(jax.random.PRNGKey(0))
    params = [dict(W=p["W"], b=p["b"] + 0.1) for p in params]  # b = 0 at init would hide the e b term
    predict = jax.jit(functools.partial(unitary.physical_predictor(apply, data, True), params))
    out = predict(x)
    assert float(jnp.max(jnp.abs(out - x))) > 1e-3  # the step moves the orbitals
    np.testing.assert_allclose(jnp.linalg.norm(out, axis=-2), jnp.linalg.norm(x, axis=-2), rtol=2e-6)
    if kind == "uenn_cayley":
      uenn.assert_equivariant(predict, x, key=jax.random.PRNGKey(4), rtol=1e-5, atol=1e-5)


def test_matched_mlp_width():
  for target, d, depth in ((4864, 24, 2), (4864, 48, 2), (17920, 24, 3), (192, 18, 1)):
    w = unitary.matched_mlp_width(target, d, depth)
    count = unitary.mlp_param_count(d, w, depth)
    assert all(abs(count - target) <= abs(unitary.mlp_param_count(d, v, depth) - target) for v in (w - 1, w + 1))
  # The count matches what init_mlp builds.
  p = uenn.init_mlp(jax.random.PRNGKey(0), (24, 49, 49, 24))
  assert uenn.count_params(p) == unitary.mlp_param_count(24, 49, 2)


def test_configs():
  quick = unitary_config.get_config()
  assert tuple(quick.ns) == (2, 4, 8) and tuple(quick.tasks) == ("loewdin", "dynamics")
  assert quick.rollout_steps == 100 and quick.optimizer == "adam" and quick.fire.mass == 0.1
  paper = unitary_config.get_config("paper")
  assert paper.num_train > quick.num_train and paper.steps > quick.steps
  with pytest.raises(ValueError, match="unknown config 'fast'"):
    unitary_config.get_config("fast")
  with pytest.raises(ValueError, match="unknown task 'schrodinger'"):
    unitary.num_vectors(quick, "schrodinger", 4)
  with quick.unlocked():
    quick.cayley_models = ("uenn_cayley", "gnn_cayley")
  with pytest.raises(ValueError, match="cayley_models has \\['gnn_cayley'\\]"):
    unitary.models_for(quick, "dynamics")


def test_cayley_step_is_unitary_equivariant_and_crank_nicolson():
  psi = _complex_gaussian(7, (4, 4, 3)) / 2.0
  phi = _complex_gaussian(8, (4, 4, 3))
  out = quantum.cayley_step(psi, phi)
  np.testing.assert_allclose(quantum.gram(out), quantum.gram(psi), atol=1e-12)  # unitary for any Phi
  uenn.assert_equivariant(lambda v: quantum.cayley_step(v[..., :3], v[..., 3:]), jnp.concatenate([psi, phi], -1),
                          key=jax.random.PRNGKey(0), out_axis=-2)
  # Phi = -(i dt / 2) Psi (g + g2 S) gives the Crank-Nicolson step: error O(dt^3), so 8x smaller at dt / 2.
  def error(dt):
    phi = -0.5j * dt * (psi @ (1.0 * jnp.eye(3) + 0.5 * quantum.gram(psi)))
    return float(jnp.max(jnp.abs(quantum.cayley_step(psi, phi) - quantum.propagate_exact(psi, dt, 1.0, 0.5))))
  assert 7.0 < error(0.1) / error(0.05) < 9.0

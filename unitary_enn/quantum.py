"""Two U(n)-equivariant targets on complex vectors, with exact references and data generators.

Layout (the layer layout of `unitary_enn.layers`): M complex vectors in C^n are an array `(..., n, M)`, one
vector per column. A unitary U acts on the coordinates, X -> U X.

Symmetric (Loewdin) orthonormalization (Loewdin 1950):
    loewdin(X) = X S^(-1/2),   S = X^H X   (the Gram matrix, `(..., M, M)`, Hermitian positive definite)
  gives the orthonormal set closest to X in the Frobenius norm. It is nonlinear and U(n)-equivariant:
  (U X)^H (U X) = S, so loewdin(U X) = U loewdin(X). `inverse_sqrt_eigh` computes S^(-1/2) by eigendecomposition,
  `inverse_sqrt_newton_schulz` by Higham's coupled Newton-Schulz iteration, an independent check.

One step of mean-field dynamics: M orbitals psi_m (the columns of Psi) evolve under a Hamiltonian built from
themselves,
    H(Psi) = g P + g2 P^2,   P = Psi Psi^H = sum_m psi_m psi_m^H   (`(..., n, n)`, Hermitian)
    i d psi_m / dt = H(Psi) psi_m                                    (hbar = 1, time in units of 1/g)
  H(U Psi) = U H(Psi) U^H, so the flow is U(n)-equivariant. Along the exact flow the orbitals move by one
  common unitary exp(-i H t), which commutes with H, so H itself is conserved: one step of length dt is
  exactly Psi(t + dt) = exp(-i H(Psi(t)) dt) Psi(t) (`propagate_exact`, by eigendecomposition of H). The Gram
  matrix Psi^H Psi, hence each orbital's norm, is conserved too. `propagate_rk4` integrates the nonlinear
  equation itself (H rebuilt at every stage) with small RK4 sub-steps, an independent check of both facts.
  `cayley_step(Psi, Phi)` is a unitary step driven by any vectors Phi (e.g. a network's output): norm-preserving
  by construction, and the Crank-Nicolson step of the dynamics for the right Phi.

Everything here is pure and jit/vmap-able, for complex64 and complex128; the data generators draw with NumPy
and compute targets in complex128 (float64) whatever the global JAX precision. Every matrix product asks for full
precision (`layers.dot`): jax's default for complex64 on a GPU is TensorFloat-32, whose ~5e-4 relative rounding would
break the norm preservation of `cayley_step` (seen on an H200: 9e-6 instead of float32 rounding).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn.layers import dot

Array = jax.Array
Seed = Union[int, Sequence[int]]


def _dagger(x: Array) -> Array:
  return jnp.conj(jnp.swapaxes(x, -1, -2))


def gram(x: Array) -> Array:
  """The Gram matrix S = X^H X of the columns of `x` `(..., n, M)` -> `(..., M, M)`, Hermitian."""
  return dot(_dagger(x), x)


def inverse_sqrt_eigh(s: Array) -> Array:
  """S^(-1/2) of Hermitian positive-definite `s` `(..., M, M)` by eigendecomposition, S = V diag(w) V^H.

  Returns:
    V diag(w^(-1/2)) V^H, `(..., M, M)`, Hermitian; NaN/Inf where S is singular (guard the input instead).
  """
  w, v = jnp.linalg.eigh(s)
  return dot(v * (w ** -0.5)[..., None, :].astype(v.dtype), _dagger(v))


def inverse_sqrt_newton_schulz(s: Array, iterations: int = 60) -> Array:
  """S^(-1/2) of Hermitian positive-definite `s` `(..., M, M)` by the coupled Newton-Schulz iteration.

  With A = S / c, c = ||S||_F (so the spectrum of A lies in (0, 1]), Y_0 = A, Z_0 = I:
      T = (3 I - Z_k Y_k) / 2,   Y_{k+1} = Y_k T,   Z_{k+1} = T Z_k,
  Y_k -> A^(1/2) and Z_k -> A^(-1/2), quadratically once ||I - Z_k Y_k|| is small (N. J. Higham, Functions of
  Matrices: Theory and Computation, SIAM 2008, Ch. 6, the Newton-Schulz iteration; N. J. Higham, Stable
  iterations for the matrix square root, Numer. Algorithms 15 (1997) 227-242). Only matrix products: no
  eigendecomposition, so it checks `inverse_sqrt_eigh` independently. For an eigenvalue lambda of A, the
  matching eigenvalue p of Z_k Y_k starts at lambda and follows p <- p (3 - p)^2 / 4, growing by 9/4 per step
  while small; convergence therefore takes about log(1/lambda_min) / log(2.25) + 5 steps, and the default 60
  covers any condition number that float64 resolves.

  Returns:
    Z / sqrt(c) ~= S^(-1/2), `(..., M, M)`.
  """
  m = s.shape[-1]
  c = jnp.sqrt(jnp.sum(jnp.abs(s) ** 2, axis=(-2, -1), keepdims=True))
  eye = jnp.broadcast_to(jnp.eye(m, dtype=s.dtype), s.shape)
  a = s / c.astype(s.dtype)

  def body(_, yz):
    y, z = yz
    t = 0.5 * (3.0 * eye - dot(z, y))
    return dot(y, t), dot(t, z)

  _, z = jax.lax.fori_loop(0, iterations, body, (a, eye))
  return z / jnp.sqrt(c).astype(s.dtype)


def loewdin(x: Array) -> Array:
  """Symmetric orthonormalization X (X^H X)^(-1/2) of the columns of `x` `(..., n, M)`, M <= n (Loewdin 1950).

  P.-O. Loewdin, On the non-orthogonality problem connected with the use of atomic wave functions in the theory
  of molecules and crystals, J. Chem. Phys. 18 (1950) 365-375: among all orthonormal sets, X S^(-1/2) minimizes
  ||Q - X||_F. Here S^(-1/2) comes from `inverse_sqrt_eigh`.

  Returns:
    `(..., n, M)` with orthonormal columns. U(n)-equivariant: loewdin(U X) = U loewdin(X).
  """
  return dot(x, inverse_sqrt_eigh(gram(x)))


def loewdin_newton_schulz(x: Array, iterations: int = 60) -> Array:
  """`loewdin` with S^(-1/2) from `inverse_sqrt_newton_schulz` instead of an eigendecomposition."""
  return dot(x, inverse_sqrt_newton_schulz(gram(x), iterations))


def mean_field_hamiltonian(psi: Array, g: float = 1.0, g2: float = 0.0) -> Array:
  """H(Psi) = g P + g2 P^2 with the density matrix P = Psi Psi^H = sum_m psi_m psi_m^H.

  Args:
    psi: orbitals `(..., n, M)`, one per column.
    g: strength of the mean-field term sum_m psi_m psi_m^H (first order in P).
    g2: strength of the second-order term P^2, also U(n)-covariant: H(U Psi) = U H(Psi) U^H.

  Returns:
    Hermitian `(..., n, n)`.
  """
  p = dot(psi, _dagger(psi))
  return g * p + g2 * dot(p, p)


def propagate_exact(psi: Array, dt: float, g: float = 1.0, g2: float = 0.0) -> Array:
  """One step Psi(t + dt) = exp(-i H(Psi) dt) Psi of i dPsi/dt = H(Psi) Psi, exact (H is conserved).

  The exponential comes from the eigendecomposition of the Hermitian H = V diag(E) V^H:
  exp(-i H dt) = V diag(exp(-i E dt)) V^H, unitary to rounding, so every orbital keeps its norm.

  Args:
    psi: orbitals `(..., n, M)`, complex.
    dt: time step (units of 1/g).
    g, g2: see `mean_field_hamiltonian`.

  Returns:
    `(..., n, M)`, same dtype as `psi`.
  """
  energies, v = jnp.linalg.eigh(mean_field_hamiltonian(psi, g, g2))
  phases = jnp.exp(-1j * energies * dt).astype(psi.dtype)
  return dot(v * phases[..., None, :], dot(_dagger(v), psi))


def propagate_rk4(psi: Array, dt: float, g: float = 1.0, g2: float = 0.0, substeps: int = 64) -> Array:
  """One step of i dPsi/dt = H(Psi) Psi by `substeps` classical Runge-Kutta (RK4) sub-steps of dt/substeps.

  H is rebuilt from the current orbitals at every stage: this integrates the nonlinear mean-field equation
  itself, with no use of the fact that H is conserved, and so checks `propagate_exact` independently. Its
  error is O(dt^5 / substeps^4) per step.
  """
  h = dt / substeps

  def rhs(p):
    return -1j * dot(mean_field_hamiltonian(p, g, g2), p)

  def body(_, p):
    k1 = rhs(p)
    k2 = rhs(p + (0.5 * h) * k1)
    k3 = rhs(p + (0.5 * h) * k2)
    k4 = rhs(p + h * k3)
    return p + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

  return jax.lax.fori_loop(0, substeps, body, psi)


def rollout(step_fn, psi: Array, steps: int) -> Array:
  """Apply `step_fn` `steps` times: the trajectory `(steps + 1, ...)` of `psi`, the initial state first.

  Args:
    step_fn: `psi -> psi` (e.g. `functools.partial(propagate_exact, dt=0.02, g=1.0)` or a trained network).
    psi: initial orbitals `(..., n, M)`.
    steps: number of steps.
  """
  def body(p, _):
    p = step_fn(p)
    return p, p

  _, traj = jax.lax.scan(body, psi, None, length=steps)
  return jnp.concatenate([psi[None], traj], axis=0)


def cayley_step(psi: Array, phi: Array) -> Array:
  """Psi -> (I - G/2)^(-1) (I + G/2) Psi with G = Phi Psi^H - Psi Phi^H: a unitary step driven by vectors Phi.

  G is anti-Hermitian, so its Cayley transform is unitary and the step keeps every orbital's norm and the Gram
  matrix Psi^H Psi to rounding, whatever Phi is. The map is U(n)-equivariant when Phi(U Psi) = U Phi(Psi):
  G(U Psi) = U G U^H. With Phi = -(i dt / 2) Psi (g + g2 S), G = -i H dt and the step is the Crank-Nicolson
  (Cayley) propagator of i dPsi/dt = H Psi (A. Goldberg, H. M. Schey, J. L. Schwartz, Am. J. Phys. 35 (1967)
  177), exact to O(dt^3) per step; a network that outputs Phi learns the generator, not the step.

  Args:
    psi: orbitals `(..., n, M)`, complex.
    phi: generator vectors `(..., n, M)`, same dtype (e.g. a UENN's output).

  Returns:
    `(..., n, M)`. Cost: one dense n x n solve per sample (G has rank <= 2M; Woodbury would be cheaper for
    large n).
  """
  g = dot(phi, _dagger(psi)) - dot(psi, _dagger(phi))
  g_psi = dot(phi, dot(_dagger(psi), psi)) - dot(psi, dot(_dagger(phi), psi))
  eye = jnp.eye(psi.shape[-2], dtype=psi.dtype)
  return jnp.linalg.solve(eye - 0.5 * g, psi + 0.5 * g_psi)


# --- Data -----------------------------------------------------------------------------------------------


class ComplexData(NamedTuple):
  """Inputs and exact targets of one task, complex128 NumPy arrays `(S, n, M)`."""
  inputs: np.ndarray
  targets: np.ndarray


def coordinate_scales(n: int, anisotropy: float) -> np.ndarray:
  """Standard deviations `(n,)` of the coordinates: geometric from 1 down to 1/anisotropy, sum of squares 1.

  A fixed anisotropic frame (anisotropy > 1) makes the input distribution change under a unitary, so a
  Haar-rotated test set is out of distribution for a model that is not equivariant. With anisotropy = 1 the
  distribution is U(n)-invariant, and rotating a test set changes nothing for any model.
  """
  if not anisotropy >= 1.0:
    raise ValueError(f"anisotropy must be >= 1, got {anisotropy}")
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  d = anisotropy ** (-np.arange(n) / max(n - 1, 1))
  return d / np.sqrt(np.sum(d ** 2))


def random_vectors(rng: np.random.Generator, count: int, n: int, m: int, anisotropy: float = 1.0,
                   normalize: bool = False) -> np.ndarray:
  """`count` sets of M random vectors in C^n, `(count, n, m)` complex128: X = D Z, optionally normalized.

  Z has independent standard complex Gaussian entries (E|z|^2 = 1), D = diag(`coordinate_scales`), so each
  vector has E||x||^2 = 1; with `normalize` each vector is divided by its norm (unit vectors, as orbitals are).
  """
  z = (rng.standard_normal((count, n, m)) + 1j * rng.standard_normal((count, n, m))) / np.sqrt(2.0)
  x = coordinate_scales(n, anisotropy)[:, None] * z
  return x / np.linalg.norm(x, axis=-2, keepdims=True) if normalize else x


def condition_numbers(x) -> np.ndarray:
  """2-norm condition number sigma_max / sigma_min of each `(n, M)` set in `x` `(..., n, M)` (NumPy)."""
  sv = np.linalg.svd(np.asarray(x), compute_uv=False)
  with np.errstate(divide="ignore"):
    return sv[..., 0] / sv[..., -1]


def loewdin_dataset(count: int, n: int, m: int, *, seed: Seed = 0, anisotropy: float = 1.0,
                    normalize: bool = False, max_condition: float = 10.0) -> ComplexData:
  """Random linearly independent sets X `(count, n, m)` and their Loewdin orthonormalization, complex128.

  Sets with condition number cond(X) = sigma_max / sigma_min above `max_condition` are redrawn: the map
  X -> X S^(-1/2) grows steep as X approaches rank deficiency (S^(-1/2) has norm 1 / sigma_min), which would
  make the task ill-posed for any learner.

  Args:
    count: number of samples.
    n: vector dimension; m <= n vectors per sample (more cannot be linearly independent).
    seed: NumPy seed (an int or a sequence of ints).
    anisotropy, normalize: see `coordinate_scales` and `random_vectors`.
    max_condition: the guard on cond(X), > 1.
  """
  if not 1 <= m <= n:
    raise ValueError(f"loewdin_dataset: need 1 <= m <= n for m linearly independent vectors in C^n, got "
                     f"m={m}, n={n}")
  if not max_condition > 1:
    raise ValueError(f"max_condition must be > 1, got {max_condition}")
  rng = np.random.default_rng(seed)
  kept, have = [], 0
  for _ in range(1000):
    x = random_vectors(rng, max(2 * (count - have), 16), n, m, anisotropy, normalize)
    x = x[condition_numbers(x) <= max_condition]
    kept.append(x[:count - have])
    have += len(kept[-1])
    if have == count:
      break
  else:
    raise ValueError(f"loewdin_dataset: too few sets pass cond(X) <= {max_condition} (n={n}, m={m}, "
                     f"anisotropy={anisotropy}); raise max_condition or lower the anisotropy")
  x = np.concatenate(kept)
  with jax.enable_x64(True):
    y = np.asarray(jax.jit(loewdin)(jnp.asarray(x, jnp.complex128)))
  return ComplexData(x, y)


def dynamics_dataset(count: int, n: int, m: int, *, dt: float, g: float = 1.0, g2: float = 0.0, seed: Seed = 0,
                     anisotropy: float = 1.0, normalize: bool = False) -> ComplexData:
  """Random orbitals Psi `(count, n, m)` and their exact next step `propagate_exact(Psi, dt, g, g2)`, complex128.

  The exact flow is Psi -> W Psi with W = exp(-i H t) unitary, so the Gram matrix Psi^H Psi, every U(n)
  invariant of a state, is conserved along a rollout: an equivariant model meets no new invariants there. With
  anisotropy = 1 the states along a rollout are even distributed as the training inputs; with anisotropy > 1
  they leave the fixed frame, as a Haar-rotated test set does. Arguments as in `loewdin_dataset` and
  `propagate_exact`.
  """
  if n < 1 or m < 1:
    raise ValueError(f"dynamics_dataset: need n >= 1 and m >= 1, got n={n}, m={m}")
  x = random_vectors(np.random.default_rng(seed), count, n, m, anisotropy, normalize)
  with jax.enable_x64(True):
    y = np.asarray(jax.jit(propagate_exact)(jnp.asarray(x, jnp.complex128), dt, g, g2))
  return ComplexData(x, y)

"""How far a force field is from being conservative, and the rigid-body projections that help (direct forces).

    remove_net_force(forces, masses) / remove_net_torque(positions, forces, masses)   rigid-body projections
    without_net_force(force_fn, torque=False) -> force_fn                             a force field with them applied
    force_jacobian(force_fn, positions) -> (..., 3N, 3N)                              J = dF/dr
    antisymmetric_fraction(force_fn, positions) -> lambda = ||J - J^T|| / ||J||       0 for F = -grad U
    loop_work(force_fn, positions, key) -> closed-loop work (eV)                      0 for F = -grad U

A direct-force model (the paper's) need not be a gradient field (docs/decisions.md §12): the antisymmetric
fraction of its Jacobian and the work around small closed loops measure by how much, and `without_net_force`
restores momentum (and angular momentum) conservation, though not energy conservation.
Force functions map positions `(N, 3)` A to forces `(N, 3)` eV/A.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks
from unitary_enn.quantity import per_atom_masses

Array = jax.Array
ForceFn = Callable[[Array], Array]


def remove_net_force(forces: Array, masses=1.0) -> Array:
  """F_i - (m_i / M) sum_j F_j: zero net force, so the total momentum is conserved.

  For equal masses this subtracts the mean force. It is the projection that leaves the centre of mass
  unaccelerated and changes the forces least (in the M^-1 metric); it commutes with rotations.

  Args:
    forces: `(..., N, 3)` eV/A.
    masses: scalar or `(N,)` (only ratios matter).

  Returns:
    `(..., N, 3)` with `sum_i F_i = 0`.
  """
  forces = _vectors3("forces", forces)
  m = per_atom_masses(masses, forces.shape[-2], forces.dtype)
  total = jnp.sum(forces, axis=-2, keepdims=True)
  return forces - (m / jnp.sum(m)) * total


def remove_net_torque(positions: Array, forces: Array, masses=1.0) -> Array:
  """Subtract the rigid rotation that carries the net torque about the centre of mass.

  tau = sum_i d_i x F_i with d_i = r_i - r_com; I = sum_i m_i (|d_i|^2 1 - d_i d_i^T); alpha = I^-1 tau;
  F_i <- F_i - m_i alpha x d_i. The correction has zero net force and exactly cancels tau, so with
  `remove_net_force` both momentum and angular momentum are conserved. Equivariant under O(3) (tau and
  alpha are pseudovectors, alpha x d a true vector). Only for free clusters: in a periodic box angular
  momentum is not conserved anyway. Collinear configurations (singular I) are not supported.

  Args:
    positions: `(..., N, 3)` A.
    forces: `(..., N, 3)` eV/A.
    masses: scalar or `(N,)`.

  Returns:
    `(..., N, 3)` with `sum_i d_i x F_i = 0` (net force unchanged).

  Raises:
    ValueError: for concrete positions that are collinear (or one atom): the inertia tensor is singular there.
  """
  positions, forces = _vectors3("positions", positions), _vectors3("forces", forces)
  if positions.shape != forces.shape:
    raise ValueError(f"forces has shape {tuple(forces.shape)}, expected the shape of positions "
                     f"{tuple(positions.shape)}")
  if checks.is_concrete(positions):
    p = np.asarray(positions, np.float64).reshape((-1,) + positions.shape[-2:])
    d = p - p.mean(axis=-2, keepdims=True)
    sv = np.linalg.svd(d, compute_uv=False) if d.size else np.zeros((len(p), 1))
    # Rank < 2 (all atoms on one line): no rotation about that line moves them, the inertia tensor is singular.
    if sv.shape[1] < 2 or np.any(sv[:, 1] <= 1e-9 * sv[:, 0]):
      raise ValueError("positions are collinear (or a single atom) in some configuration: the inertia tensor is "
                       "singular and the net torque cannot be removed; use remove_net_force only")
  m = per_atom_masses(masses, forces.shape[-2], forces.dtype)
  com = jnp.sum(m * positions, axis=-2, keepdims=True) / jnp.sum(m)
  d = positions - com
  tau = jnp.sum(jnp.cross(d, forces), axis=-2)
  d2 = jnp.sum(d * d, axis=-1)
  eye = jnp.eye(3, dtype=forces.dtype)
  inertia = jnp.sum(m[..., None] * (d2[..., None, None] * eye - d[..., :, None] * d[..., None, :]), axis=-3)
  alpha = jnp.linalg.solve(inertia, tau[..., None])[..., 0]
  return forces - m * jnp.cross(jnp.broadcast_to(alpha[..., None, :], d.shape), d)


def without_net_force(force_fn: ForceFn, *, torque: bool = False, masses=1.0) -> ForceFn:
  """Wrap `force_fn` so that its forces sum to zero (and, with `torque`, have no net torque).

  Both projections commute with rotations and translations, so an equivariant `force_fn` stays
  equivariant. They make momentum (and angular momentum) conserved in NVE; they do not make a
  non-conservative field conservative (only its rigid-body part is removed).
  """
  if not callable(force_fn):
    raise TypeError(f"force_fn must be a function positions -> forces, got {type(force_fn).__name__}")

  def projected(positions: Array, **kwargs) -> Array:
    f = remove_net_force(force_fn(positions, **kwargs), masses)
    return remove_net_torque(positions, f, masses) if torque else f
  return projected


def _vectors3(name: str, x) -> Array:
  x = checks.as_array(name, x)
  checks.check_shape(name, x, (..., None, 3))
  return x


def _check_positions(positions, force_fn=None) -> Array:
  if force_fn is not None and not callable(force_fn):
    raise TypeError(f"force_fn must be a function positions -> forces, got {type(force_fn).__name__}")
  positions = _vectors3("positions", positions)
  checks.check_finite("positions", positions)
  return positions


@functools.partial(jax.jit, static_argnums=0)
def _jacobian(force_fn: ForceFn, positions: Array) -> Array:
  shape = positions.shape[-2:]
  dim = shape[0] * shape[1]
  flat = lambda r: force_fn(r.reshape(shape)).reshape(-1)
  # Reverse mode: the descriptor sums have a written-out gradient (`descriptors._gaussian_sums`), which
  # forward mode cannot go through; a square 3N x 3N Jacobian takes 3N passes in either mode.
  jac = jax.vmap(jax.jacrev(flat))(positions.reshape((-1, dim)))
  return jac.reshape(positions.shape[:-2] + (dim, dim))


def force_jacobian(force_fn: ForceFn, positions: Array) -> Array:
  """J = dF/dr, flattened: `(..., N, 3)` -> `(..., 3N, 3N)` in eV/A^2; J_ab = dF_a / dr_b.

  For a conservative field F = -grad U, J = -Hessian(U) is symmetric. Compiled once per `force_fn` and shape.
  """
  return _jacobian(force_fn, _check_positions(positions, force_fn))


@functools.partial(jax.jit, static_argnums=0)
def _antisymmetric_fraction(force_fn: ForceFn, positions: Array) -> Array:
  j = _jacobian(force_fn, positions)
  anti = jnp.sqrt(jnp.sum((j - jnp.swapaxes(j, -1, -2)) ** 2, axis=(-1, -2)))
  norm = jnp.sqrt(jnp.sum(j * j, axis=(-1, -2)))
  return jnp.where(norm > 0, anti / jnp.where(norm > 0, norm, 1.0), 0.0)  # J = 0 is symmetric: lambda = 0


def antisymmetric_fraction(force_fn: ForceFn, positions: Array) -> Array:
  """lambda = ||J - J^T||_F / ||J||_F per configuration (docs/decisions.md §12): 0 for a gradient field.

  Convention note: with the antisymmetric part defined as J_anti = (J - J^T)/2 the ratio is lambda / 2.
  Averaging over test configurations is left to the caller (mean of the returned values).

  Args:
    force_fn: `(N, 3)` A -> `(N, 3)` eV/A.
    positions: `(..., N, 3)` in A.

  Returns:
    `(...)` dimensionless, in [0, 2] (0 where J = 0).
  """
  return _antisymmetric_fraction(force_fn, _check_positions(positions, force_fn))


def random_planes(key: Array, n: int, dim: int, dtype=None) -> tuple[Array, Array]:
  """n random planes of R^dim: orthonormal pairs (u, v), each `(n, dim)` (QR of Gaussian vectors)."""
  dtype = jnp.result_type(float) if dtype is None else dtype
  q, _ = jnp.linalg.qr(jax.random.normal(key, (n, dim, 2), dtype))
  return q[..., 0], q[..., 1]


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _loop_work(force_fn, positions, u, v, radius, n_points):
  shape = positions.shape[-2:]
  dim = shape[0] * shape[1]
  r0 = positions.reshape((-1, dim))
  u, v = u.reshape((-1, dim)), v.reshape((-1, dim))
  theta = 2 * jnp.pi * jnp.arange(n_points, dtype=positions.dtype) / n_points
  c, s = jnp.cos(theta), jnp.sin(theta)

  def one(r, u, v):
    pts = r + radius * (c[:, None] * u + s[:, None] * v)
    tangent = radius * (-s[:, None] * u + c[:, None] * v)
    f = jax.vmap(lambda p: force_fn(p.reshape(shape)).reshape(-1))(pts)
    return jnp.sum(f * tangent) * (2 * jnp.pi / n_points)

  return jax.vmap(one)(r0, u, v).reshape(positions.shape[:-2])


def loop_work(force_fn: ForceFn, positions: Array, key: Array | None = None, *, radius: float = 0.05,
              n_points: int = 64, plane: tuple[Array, Array] | None = None) -> Array:
  """Work W = closed-loop integral of F . dr around a small circle in configuration space (0 if conservative).

  The circle r(theta) = r0 + radius (cos(theta) u + sin(theta) v) lies in a random plane of R^{3N}
  (u, v orthonormal, drawn per configuration from `key`, or given as `plane`); the trapezoidal rule on the
  periodic integrand converges exponentially in `n_points`. By Stokes, W ~ pi radius^2 v^T (J - J^T) u for
  small radius (exact for a linear field), so W / (pi radius^2) estimates the curl of the field in that plane
  (eV/A^2).

  Args:
    force_fn: `(N, 3)` A -> `(N, 3)` eV/A.
    positions: `(..., N, 3)` in A, the loop centres.
    key: PRNG key for the planes (when `plane` is None).
    radius: loop radius in A (in the 3N-dimensional space).
    n_points: quadrature points on the loop.
    plane: orthonormal directions (u, v), each `(..., 3N)` like the flattened positions, instead of random ones.

  Returns:
    `(...)` work in eV.
  """
  positions = _check_positions(positions, force_fn)
  radius = checks.positive("radius", radius)
  if checks.positive_int("n_points", n_points) < 3:
    raise ValueError(f"need n_points >= 3, got n_points={n_points}")
  batch, dim = positions.shape[:-2], positions.shape[-2] * positions.shape[-1]
  if plane is None:
    if key is None:
      raise ValueError("loop_work needs a PRNG key or an explicit plane=(u, v)")
    u, v = random_planes(key, int(np.prod(batch, dtype=int)), dim, positions.dtype)
  else:
    u, v = (jnp.asarray(a, positions.dtype) for a in plane)
    for name, a in (("plane[0]", u), ("plane[1]", v)):
      checks.check_shape(name, a, tuple(batch) + (dim,))
  return _loop_work(force_fn, positions, u, v, float(radius), int(n_points))

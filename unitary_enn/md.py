"""Molecular dynamics driven by a trained force model (paper Sec. 4.4), through jax-md, end to end differentiable.

Contract (metal units throughout: positions in A, momenta in eV ps / A, masses in eV ps^2 / A^2, forces in
eV/A, energies in eV, time in ps, temperature in K):

  four_body_force_fn(params, scales, activation) -> force_fn     the four-atom network as a force function
  model_force_fn(model_or_workdir, dtype=None) -> force_fn       the same from a model.pkl dict or a workdir
  force_fn(positions `(..., N, 3)`) -> forces `(..., N, 3)`       pure, jit/vmap/grad-able, no checks inside
  remove_net_force(forces, masses) / remove_net_torque(positions, forces, masses)   rigid-body projections
  without_net_force(force_fn, torque=False) -> force_fn          a force function with them applied
  maxwell_boltzmann_momenta(key, positions, mass, temperature) -> momenta   (SPEC 8: centre-of-mass
                                                                  momentum removed, KE = (3N - 3)/2 k_B T)
  nve_trajectory(force_fn, positions, momenta, mass=, dt=, n_steps=) -> Trajectory   pure (grad-able)
  run_nve(...) -> Trajectory                                     the same in jitted lax.scan chunks, with
                                                                  progress and a blow-up check per chunk
  kinetic_energy, potential_energy, temperature, total_energy (eq. 48), position_rmsd (eq. 49),
  energy_rmsd (eq. 50), relative_energy_drift, net_momentum, angular_momentum    observables on trajectories
  force_jacobian, antisymmetric_fraction, loop_work, random_planes   conservativeness of a force field (SPEC 12)

The integrator is jax-md's velocity Verlet (`simulate.nve`, which accepts a force function) in free space;
samples run together under `vmap`. A direct-force model need not be a gradient field (SPEC 12): the
antisymmetric fraction of its Jacobian and the work around small closed loops measure by how much, and
`without_net_force` restores momentum (and angular momentum) conservation, though not energy conservation.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks
from unitary_enn.potentials import ARGON_MASS, KB, lj_energy

Array = jax.Array
ForceFn = Callable[[Array], Array]

# Sec. 4.4 / SPEC 8: the initial positions (A) of the four argon atoms, 10 K, 1 fs.
FOUR_BODY_POSITIONS = ((3.0, 0.0, 0.1), (-3.0, -0.1, 0.0), (0.1, 2.5, 0.0), (0.0, -2.5, -0.1))
FOUR_BODY_TEMPERATURE = 10.0  # K
FOUR_BODY_DT = 0.001  # ps


# --- Model -> force function ----------------------------------------------------------------------------


def _scale(scales, name: str):
  return getattr(scales, name) if hasattr(scales, name) else scales[name]


def four_body_force_fn(params, scales, activation: str | Callable = "softsign", *,
                       dtype=None) -> ForceFn:
  """The four-atom network of Sec. 4.2 as a force function `positions -> forces` (eq. 42-43).

  The inputs are the six relative vectors r_ij = r_j - r_i (eq. 42, `data.relative_vectors`) divided by the
  input scale; the four output vectors times the target scale are the forces F1..F4. Being built from
  relative vectors and scalar scales, the function is translation invariant and O(3) equivariant.

  Args:
    params: the `apply_uenn` parameter list (NumPy or JAX arrays, or tracers: the result is differentiable
      with respect to them when this builder is called inside the differentiated function).
    scales: `data.Scales` or the dict stored in model.pkl, {"inputs": `(6,)` A, "targets": `(4,)` eV/A}.
    activation: hidden-layer activation, as in training.
    dtype: the float dtype to evaluate in (params and scales are cast); None keeps the params' dtype.

  Returns:
    `force_fn(positions)`: `(..., 4, 3)` in A -> `(..., 4, 3)` in eV/A, pure (no value checks inside).
  """
  from unitary_enn.data import relative_vectors
  from unitary_enn.network import apply_uenn

  params = jax.tree.map(jnp.asarray, params)
  if dtype is None:
    dtype = jnp.finfo(params[0]["W"].dtype).dtype
  else:
    dtype = jnp.dtype(dtype)
    params = jax.tree.map(lambda p: p.astype(dtype), params)
  in_scale = jnp.asarray(_scale(scales, "inputs"), dtype)
  out_scale = jnp.asarray(_scale(scales, "targets"), dtype)

  def force_fn(positions: Array, **unused_kwargs) -> Array:
    x = relative_vectors(positions.astype(dtype)) / in_scale
    y = apply_uenn(params, x, activation=activation) * out_scale
    return jnp.swapaxes(y, -1, -2)

  return force_fn


def model_force_fn(model_or_workdir: dict | str, *, dtype=None) -> ForceFn:
  """`four_body_force_fn` of a trained model: a model.pkl dict (`io.load_model`) or the workdir holding it.

  Args:
    model_or_workdir: the dict saved by `experiments.four_body` (kind "four_body"), or its workdir.
    dtype: evaluation dtype; None = the dtype the model was trained in. MD in float64 passes jnp.float64.
  """
  from unitary_enn import io
  model = io.load_model(model_or_workdir) if isinstance(model_or_workdir, str) else model_or_workdir
  if model.get("kind") != "four_body":
    raise ValueError(f"model_or_workdir holds a model of kind {model.get('kind')!r}; expected 'four_body'")
  return four_body_force_fn(model["params"], model["scales"], model.get("activation", "softsign"),
                            dtype=dtype)


# --- Net force and net torque removal (SPEC 12) ---------------------------------------------------------


def _masses(mass, n_atoms: int, dtype) -> Array:
  """Masses as `(N, 1)`, from a scalar or an `(N,)` array."""
  m = jnp.asarray(mass, dtype)
  if m.ndim == 0:
    return jnp.full((n_atoms, 1), m, dtype)
  if m.shape != (n_atoms,):
    raise ValueError(f"mass has shape {tuple(m.shape)}, expected a scalar or ({n_atoms},)")
  return m[:, None]


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
  m = _masses(masses, forces.shape[-2], forces.dtype)
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
  """
  m = _masses(masses, forces.shape[-2], forces.dtype)
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
  def projected(positions: Array, **kwargs) -> Array:
    f = remove_net_force(force_fn(positions, **kwargs), masses)
    return remove_net_torque(positions, f, masses) if torque else f
  return projected


# --- Initial velocities (SPEC 8) ------------------------------------------------------------------------


def maxwell_boltzmann_momenta(key: Array, positions: Array, mass=ARGON_MASS,
                              temperature: float = FOUR_BODY_TEMPERATURE) -> Array:
  """Maxwell-Boltzmann momenta, centre-of-mass momentum removed, rescaled to KE = (3N - 3)/2 k_B T exactly.

  Each sample (leading axes of `positions`) gets its own draw and is rescaled on its own (SPEC 8 decision).

  Args:
    key: PRNG key.
    positions: `(..., N, 3)` in A; only its shape and dtype are used.
    mass: scalar or `(N,)` in eV ps^2 / A^2 (default argon).
    temperature: in K, > 0.

  Returns:
    momenta `(..., N, 3)` in eV ps / A with `sum_i p_i = 0` and temperature(p) = `temperature`.
  """
  positions = jnp.asarray(positions)
  checks.check_shape("positions", positions, (..., None, 3))
  n = positions.shape[-2]
  if n < 2:
    raise ValueError(f"positions has {n} atom(s); removing the centre-of-mass momentum needs N >= 2")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0 K, got {temperature}")
  dtype = positions.dtype if jnp.issubdtype(positions.dtype, jnp.floating) else jnp.result_type(float)
  m = _masses(mass, n, dtype)
  if checks.is_concrete(m) and not bool(jnp.all(m > 0)):
    raise ValueError(f"mass must be positive, got {mass}")
  kt = KB * temperature
  p = jnp.sqrt(m * kt) * jax.random.normal(key, positions.shape, dtype)
  p = p - (m / jnp.sum(m)) * jnp.sum(p, axis=-2, keepdims=True)
  target = 0.5 * (3 * n - 3) * kt
  return p * jnp.sqrt(target / kinetic_energy(p, mass))[..., None, None]


# --- Observables -----------------------------------------------------------------------------------------


def kinetic_energy(momenta: Array, mass=ARGON_MASS) -> Array:
  """sum_i p_i^2 / 2 m_i in eV: `(..., N, 3)` -> `(...)`."""
  m = _masses(mass, momenta.shape[-2], momenta.dtype)
  return 0.5 * jnp.sum(momenta * momenta / m, axis=(-1, -2))


def temperature(momenta: Array, mass=ARGON_MASS, dof: int | None = None) -> Array:
  """Kinetic temperature 2 KE / (dof k_B) in K: `(..., N, 3)` -> `(...)`.

  dof defaults to 3N - 3 (centre-of-mass momentum removed, SPEC 8), so the initial momenta of
  `maxwell_boltzmann_momenta` read exactly the requested temperature.
  """
  n = momenta.shape[-2]
  dof = 3 * n - 3 if dof is None else dof
  return 2.0 * kinetic_energy(momenta, mass) / (dof * KB)


def potential_energy(positions: Array) -> Array:
  """Analytical LJ potential energy of a free cluster (eq. 40) in eV: `(..., N, 3)` -> `(...)`.

  The paper evaluates U with the analytical potential for both runs, at each run's own positions.
  """
  return lj_energy(positions)


def total_energy(positions: Array, momenta: Array, mass=ARGON_MASS,
                 energy_fn: Callable[[Array], Array] = lj_energy) -> Array:
  """H = sum p^2 / 2m + U (eq. 48) in eV, U from `energy_fn` (analytical LJ by default): `(...)`."""
  return kinetic_energy(momenta, mass) + energy_fn(positions)


def position_rmsd(a: Array, b: Array) -> Array:
  """RMSD of positions over samples and atoms (eq. 49), per step.

  RMSD = sqrt( 1/(N_s N_at) sum_{samples, atoms} |r^a - r^p|^2 ), the squared norm over x, y, z.

  Args:
    a, b: `(..., N_s, N_at, 3)` in A (e.g. `(steps + 1, 10, 4, 3)`).

  Returns:
    `(...)` in A.
  """
  return jnp.sqrt(jnp.mean(jnp.sum((a - b) ** 2, axis=-1), axis=(-1, -2)))


def energy_rmsd(a: Array, b: Array) -> Array:
  """RMSD of total energies over samples (eq. 50): `(..., N_s)` eV -> `(...)` eV."""
  return jnp.sqrt(jnp.mean((a - b) ** 2, axis=-1))


def relative_energy_drift(energy: Array) -> Array:
  """|E(end) - E(0)| / |E(0)| per sample: `(steps + 1, ...)` -> `(...)`."""
  return jnp.abs(energy[-1] - energy[0]) / jnp.abs(energy[0])


def max_relative_energy_deviation(energy: Array) -> Array:
  """max_t |E(t) - E(0)| / |E(0)| per sample: `(steps + 1, ...)` -> `(...)`."""
  return jnp.max(jnp.abs(energy - energy[0]), axis=0) / jnp.abs(energy[0])


def net_momentum(momenta: Array) -> Array:
  """sum_i p_i: `(..., N, 3)` -> `(..., 3)` eV ps / A."""
  return jnp.sum(momenta, axis=-2)


def angular_momentum(positions: Array, momenta: Array) -> Array:
  """sum_i r_i x p_i about the origin: `(..., N, 3)` -> `(..., 3)` eV ps."""
  return jnp.sum(jnp.cross(positions, momenta), axis=-2)


# --- NVE with jax-md ---------------------------------------------------------------------------------------


class Trajectory(NamedTuple):
  """Recorded states: positions and momenta `(frames, ..., N, 3)`; frame k is step k * record_every.

  Frame 0 is the initial state. Units: A, eV ps / A; `dt` in ps.
  """
  positions: Any
  momenta: Any
  dt: float
  record_every: int

  @property
  def steps(self) -> np.ndarray:
    return np.arange(len(self.positions)) * self.record_every


def _validate_md(positions, momenta, mass, dt, n_steps, record_every):
  for name, x in (("positions", positions), ("momenta", momenta)):
    checks.check_shape(name, x, (..., None, 3))
    checks.check_finite(name, x)
  if positions.ndim not in (2, 3):
    raise ValueError(f"positions has shape {tuple(positions.shape)}, expected (N, 3) or (samples, N, 3) in A")
  if momenta.shape != positions.shape:
    raise ValueError(f"momenta has shape {tuple(momenta.shape)}, expected the shape of positions "
                     f"{tuple(positions.shape)}")
  if checks.is_concrete(mass) and not bool(np.all(np.asarray(mass) > 0)):
    raise ValueError(f"mass must be positive (eV ps^2 / A^2), got {mass}")
  if not dt > 0:
    raise ValueError(f"dt must be > 0 ps, got {dt}")
  if int(n_steps) < 1 or int(record_every) < 1 or int(n_steps) % int(record_every):
    raise ValueError(f"n_steps ({n_steps}) must be a positive multiple of record_every ({record_every})")


def _nve_fns(force_fn: ForceFn, dt: float):
  """jax-md's velocity Verlet (`simulate.nve` with a force function) in free space, vmapped over samples."""
  # Imported here: importing jax_md costs seconds (it builds its rigid-body shapes at import), which users
  # of the force functions and diagnostics alone (and `io.load_force_field`) should not pay.
  from jax_md import simulate, space
  _, shift = space.free()
  init_fn, step_fn = simulate.nve(force_fn, shift, dt)
  init = jax.vmap(init_fn, in_axes=(None, 0, None, None, 0))
  step = jax.vmap(step_fn)
  return init, step


def _scan(step, state, n_frames: int, record_every: int):
  """Advance `n_frames * record_every` steps, recording positions and momenta every `record_every` steps."""
  def advance(s, _):
    if record_every > 1:
      s = jax.lax.fori_loop(0, record_every, lambda _, x: step(x), s)
    else:
      s = step(s)
    return s, (s.position, s.momentum)
  return jax.lax.scan(advance, state, None, length=n_frames)


def nve_trajectory(force_fn: ForceFn, positions: Array, momenta: Array, *, mass=ARGON_MASS,
                   dt: float = FOUR_BODY_DT, n_steps: int, record_every: int = 1) -> Trajectory:
  """Velocity Verlet NVE from (positions, momenta), all samples together; pure, jit- and grad-able.

  Use this inside `jax.grad` (e.g. the gradient of a trajectory observable with respect to the network
  parameters: build the force function from the parameters inside the differentiated function).

  Args:
    force_fn: `(N, 3)` A -> `(N, 3)` eV/A.
    positions: `(N, 3)` or `(samples, N, 3)` in A.
    momenta: same shape, eV ps / A.
    mass: scalar or `(N,)` in eV ps^2 / A^2.
    dt: time step in ps (jax-md's velocity Verlet rounds it to float32: 1 fs becomes 1.00000005 fs).
    n_steps: number of steps, a multiple of `record_every`.
    record_every: record a frame every this many steps.

  Returns:
    `Trajectory` with positions and momenta `(n_steps / record_every + 1, [samples,] N, 3)`.
  """
  positions, momenta = jnp.asarray(positions), jnp.asarray(momenta)
  _validate_md(positions, momenta, mass, dt, n_steps, record_every)
  single = positions.ndim == 2
  if single:
    positions, momenta = positions[None], momenta[None]
  init, step = _nve_fns(force_fn, dt)
  state = init(jax.random.PRNGKey(0), positions, 0.0, jnp.asarray(mass, positions.dtype), momenta)
  _, (pos, mom) = _scan(step, state, int(n_steps) // int(record_every), int(record_every))
  pos = jnp.concatenate([positions[None], pos])
  mom = jnp.concatenate([momenta[None], mom])
  if single:
    pos, mom = pos[:, 0], mom[:, 0]
  return Trajectory(pos, mom, dt, int(record_every))


def run_nve(force_fn: ForceFn, positions, momenta, *, mass=ARGON_MASS, dt: float = FOUR_BODY_DT,
            n_steps: int, record_every: int = 1, chunk_steps: int = 1000, label: str = "md",
            log: Callable[[str], None] | None = print,
            energy_fn: Callable[[Array], Array] | None = lj_energy) -> Trajectory:
  """`nve_trajectory` in jitted `lax.scan` chunks, with progress and a blow-up check after every chunk.

  Each chunk of `chunk_steps` steps is one compiled call (compiled once for all full chunks). After each
  chunk the state is checked for NaN/Inf (raises FloatingPointError naming the step) and a progress line
  is logged: step, steps/s, ETA and, when `energy_fn` is given, the relative change of the total energy
  (eq. 48) at that step in the worst sample.

  Args:
    as in `nve_trajectory`; `chunk_steps` must be a multiple of `record_every`.
    label: name of the run in progress lines; log: where they go (None = silent).
    energy_fn: potential energy for the progress line (analytical LJ by default), or None.

  Returns:
    `Trajectory` of NumPy arrays `(n_steps / record_every + 1, [samples,] N, 3)`.
  """
  positions, momenta = jnp.asarray(positions), jnp.asarray(momenta)
  _validate_md(positions, momenta, mass, dt, n_steps, record_every)
  if chunk_steps < 1 or chunk_steps % record_every:
    raise ValueError(f"chunk_steps ({chunk_steps}) must be a positive multiple of record_every "
                     f"({record_every})")
  single = positions.ndim == 2
  if single:
    positions, momenta = positions[None], momenta[None]
  init, step = _nve_fns(force_fn, dt)
  state = jax.jit(init)(jax.random.PRNGKey(0), positions, 0.0, jnp.asarray(mass, positions.dtype), momenta)

  @functools.partial(jax.jit, static_argnums=1)
  def advance(state, n_frames):
    return _scan(step, state, n_frames, record_every)

  if energy_fn is not None:
    energy = jax.jit(lambda p, q: total_energy(p, q, mass, energy_fn))
    e0 = np.asarray(energy(positions, momenta))
  else:
    e0 = None
  frames_p, frames_m = [np.asarray(positions)[None]], [np.asarray(momenta)[None]]
  done, t0 = 0, time.time()
  while done < n_steps:
    n = min(chunk_steps, n_steps - done)
    state, (pos, mom) = advance(state, n // record_every)
    pos, mom = np.asarray(pos), np.asarray(mom)
    finite = np.isfinite(pos).reshape(len(pos), -1).all(1) & np.isfinite(mom).reshape(len(mom), -1).all(1)
    if not finite.all():
      first = done + (int(np.argmin(finite)) + 1) * record_every
      raise FloatingPointError(f"{label}: positions or momenta became non-finite by step {first}; the force "
                               "field blew up (a smaller dt, or forces outside the model's training domain?)")
    frames_p.append(pos)
    frames_m.append(mom)
    done += n
    if log is not None:
      elapsed = time.time() - t0
      rate = done / max(elapsed, 1e-9)
      line = (f"{label}: step {done:>7d}/{n_steps}  {rate:8.0f} steps/s  "
              f"ETA {max(n_steps - done, 0) / rate:5.1f} s")
      if e0 is not None:
        e = np.asarray(energy(pos[-1], mom[-1]))
        line += f"  |E - E0| / |E0| now {np.max(np.abs(e - e0) / np.abs(e0)):.2e} (worst sample)"
      log(line)
  pos, mom = np.concatenate(frames_p), np.concatenate(frames_m)
  if single:
    pos, mom = pos[:, 0], mom[:, 0]
  return Trajectory(pos, mom, dt, int(record_every))


# --- Conservativeness of a force field (SPEC 12) ---------------------------------------------------------


def _check_positions(positions) -> Array:
  positions = jnp.asarray(positions)
  checks.check_shape("positions", positions, (..., None, 3))
  checks.check_finite("positions", positions)
  return positions


@functools.partial(jax.jit, static_argnums=0)
def _jacobian(force_fn: ForceFn, positions: Array) -> Array:
  shape = positions.shape[-2:]
  dim = shape[0] * shape[1]
  flat = lambda r: force_fn(r.reshape(shape)).reshape(-1)
  jac = jax.vmap(jax.jacfwd(flat))(positions.reshape((-1, dim)))
  return jac.reshape(positions.shape[:-2] + (dim, dim))


def force_jacobian(force_fn: ForceFn, positions: Array) -> Array:
  """J = dF/dr, flattened: `(..., N, 3)` -> `(..., 3N, 3N)` in eV/A^2; J_ab = dF_a / dr_b.

  For a conservative field F = -grad U, J = -Hessian(U) is symmetric. Compiled once per `force_fn` and shape.
  """
  return _jacobian(force_fn, _check_positions(positions))


@functools.partial(jax.jit, static_argnums=0)
def _antisymmetric_fraction(force_fn: ForceFn, positions: Array) -> Array:
  j = _jacobian(force_fn, positions)
  anti = jnp.sqrt(jnp.sum((j - jnp.swapaxes(j, -1, -2)) ** 2, axis=(-1, -2)))
  return anti / jnp.sqrt(jnp.sum(j * j, axis=(-1, -2)))


def antisymmetric_fraction(force_fn: ForceFn, positions: Array) -> Array:
  """lambda = ||J - J^T||_F / ||J||_F per configuration (SPEC 12): 0 for a gradient field.

  Convention note: with the antisymmetric part defined as J_anti = (J - J^T)/2 the ratio is lambda / 2.
  Averaging over test configurations is left to the caller (mean of the returned values).

  Args:
    force_fn: `(N, 3)` A -> `(N, 3)` eV/A.
    positions: `(..., N, 3)` in A.

  Returns:
    `(...)` dimensionless, in [0, 2].
  """
  return _antisymmetric_fraction(force_fn, _check_positions(positions))


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
  positions = _check_positions(positions)
  if not radius > 0 or n_points < 3:
    raise ValueError(f"need radius > 0 A and n_points >= 3, got radius={radius}, n_points={n_points}")
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


# --- Small helpers for experiments -----------------------------------------------------------------------


def four_body_initial_positions(n_samples: int = 10, dtype=None) -> Array:
  """The Sec. 4.4 starting configuration repeated for each sample: `(n_samples, 4, 3)` in A."""
  if n_samples < 1:
    raise ValueError(f"n_samples must be >= 1, got {n_samples}")
  dtype = jnp.result_type(float) if dtype is None else dtype
  return jnp.broadcast_to(jnp.asarray(FOUR_BODY_POSITIONS, dtype), (n_samples, 4, 3))


def min_pair_distance(positions: Array) -> Array:
  """Smallest interatomic distance per configuration: `(..., N, 3)` -> `(...)` A (the network's domain)."""
  n = positions.shape[-2]
  i, j = np.triu_indices(n, k=1)
  return jnp.min(jnp.linalg.norm(positions[..., j, :] - positions[..., i, :], axis=-1), axis=-1)


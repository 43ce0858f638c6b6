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
                       dtype=None, symmetrize: bool = False) -> ForceFn:
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
    symmetrize: average the network over the 24 relabellings of the atoms (`data.symmetrize_permutations`),
      as a model trained with `symmetrize=True` predicts.

  Returns:
    `force_fn(positions)`: `(..., 4, 3)` in A -> `(..., 4, 3)` in eV/A, pure (no value checks inside).
  """
  from unitary_enn.data import relative_vectors, symmetrize_permutations
  from unitary_enn.network import apply_uenn

  params = jax.tree.map(jnp.asarray, params)
  if dtype is None:
    dtype = jnp.finfo(params[0]["W"].dtype).dtype
  else:
    dtype = jnp.dtype(dtype)
    params = jax.tree.map(lambda p: p.astype(dtype), params)
  in_scale = jnp.asarray(_scale(scales, "inputs"), dtype)
  out_scale = jnp.asarray(_scale(scales, "targets"), dtype)

  def predict(p, x):
    return apply_uenn(p, x, activation=activation)

  if symmetrize:
    predict = symmetrize_permutations(predict, 4)

  def force_fn(positions: Array, **unused_kwargs) -> Array:
    x = relative_vectors(positions.astype(dtype)) / in_scale
    y = predict(params, x) * out_scale
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
                            dtype=dtype, symmetrize=bool(model.get("symmetrize", False)))


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



# --- Many atoms: FCC crystals, the argon cross, MD on neighbor lists (Sec. 4.5 end, Fig. 11-14; SPEC 10, 13) --
#
# Contract (metal units; positions `(N, 3)` A, momenta `(N, 3)` eV ps / A, boxes = cubic sides in A):
#
#   fcc_lattice(n_cells, lattice_constant) -> `(4 n^3, 3)`         sites of an FCC crystal in [0, n a)
#   cross_geometry(box, n_cells, bar_width_cells) -> (centre, width) / cross_mask(positions, centre, width)
#   cross_atom_count(n_cells, bar_width_cells) = 12 k^2 n - 8 k^3   argon_cross(n_cells, bar_width_cells, a)
#   lj_cut_force_fn / lj_cut_energy_fn / lj_cut_virial_fn(displacement_fn, r_cut=10)     lj/cut argon on a
#       jax-md neighbor list, `fn(positions, neighbor, **displacement_kwargs)` (potentials.lj_cut_neighbor_list)
#   many_body_force_fn(model, displacement_fn)                      the Sec. 4.5 descriptor network, same shape
#   thermalize_fcc(n_cells, temperature=60, time_ps=10, ...) -> Thermalized   NVT (Nose-Hoover) + Berendsen
#       barostat to zero pressure, then NVT at the found box; periodic, jitted chunks, resumable
#   run_nve_neighbor_list(force_fn_builder, positions, momenta, ...) -> NeighborListRun   free-space velocity
#       Verlet on a jax-md neighbor list in jitted chunks: overflow -> reallocate and redo the chunk; resumable
#   temperature_from_kinetic_energy, pressure, unwrap_to_sites   (trajectory files: io.write_extxyz)
#
# Neighbor lists follow DESIGN habit 3: allocated outside jit, updated inside jit, `did_buffer_overflow` (and,
# when the box changes, `cell_size_too_small`) checked after every chunk; a chunk whose list went bad is thrown
# away and run again from its starting state with a larger list, so no step ever uses an overflowed list.

ARGON_FCC_LATTICE_CONSTANT = 5.24411  # A (SPEC 10)
FCC_BASIS = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))  # in units of a
CROSS_TEMPERATURE = 60.0  # K (Sec. 4.5)
CROSS_BAR_WIDTH_CELLS = 7  # unit cells: 26,656 atoms from 50^3 cells (the paper reports 26,679)
PAPER_CROSS_CELLS = 50
PAPER_CROSS_ATOMS = 26_679
GPA_PER_EV_A3 = 160.21766208  # 1 eV / A^3 in GPa

NEIGHBOR_FORMATS = ("dense", "sparse", "ordered_sparse")


def _n_cells(n_cells) -> tuple[int, int, int]:
  cells = (n_cells,) * 3 if np.ndim(n_cells) == 0 else tuple(np.asarray(n_cells).tolist())
  if len(cells) != 3 or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1
                                for c in cells):
    raise ValueError(f"n_cells must be a positive integer or three of them, got {n_cells!r}")
  return tuple(int(c) for c in cells)


def _positive(name: str, value) -> float:
  if not (np.ndim(value) == 0 and np.isfinite(value) and value > 0):
    raise ValueError(f"{name} must be a positive, finite number, got {value!r}")
  return float(value)


def fcc_lattice(n_cells, lattice_constant: float = ARGON_FCC_LATTICE_CONSTANT) -> np.ndarray:
  """Sites of an FCC crystal of n_x x n_y x n_z cubic unit cells, 4 atoms per cell (Sec. 4.5, SPEC 10).

  Site (i, j, k, b) sits at ((i, j, k) + basis_b) a with the basis (0,0,0), (1/2,1/2,0), (1/2,0,1/2), (0,1/2,1/2);
  cells run in C order (i slowest), the basis fastest. Nearest neighbours are a / sqrt(2) apart (12 of them).

  Args:
    n_cells: an int (a cube) or three ints.
    lattice_constant: a in A (argon: 5.24411).

  Returns:
    `(4 n_x n_y n_z, 3)` float64 positions in A, inside [0, n a) per axis; the periodic box is n_cells * a.
  """
  cells = _n_cells(n_cells)
  a = _positive("lattice_constant", lattice_constant)
  grid = np.stack(np.meshgrid(*(np.arange(c) for c in cells), indexing="ij"), axis=-1).reshape(-1, 1, 3)
  return ((grid + np.asarray(FCC_BASIS)[None]).reshape(-1, 3) * a).astype(np.float64)


def _cross_args(n_cells, bar_width_cells) -> tuple[int, int]:
  n = _n_cells(n_cells)
  if len(set(n)) != 1:
    raise ValueError(f"the cross is cut from a cubic crystal: n_cells must be one integer, got {n_cells!r}")
  k = bar_width_cells
  if not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 1 <= k < n[0]):
    raise ValueError(f"bar_width_cells must be an integer number of unit cells in 1..n_cells - 1 = {n[0] - 1} (so "
                     f"that the bar faces fall midway between lattice planes, inside the crystal), got "
                     f"{bar_width_cells!r}")
  return n[0], int(k)


def cross_geometry(box: float, n_cells: int, bar_width_cells: int = CROSS_BAR_WIDTH_CELLS):
  """Centre and bar width of the 3-D cross cut from a cubic crystal of `n_cells`^3 cells in a box of side `box`.

  The three bars run along x, y, z through the centre and are `bar_width_cells` unit cells wide (a = box /
  n_cells). The centre is the box centre moved by a / 4 along each axis, midway between two atomic planes, so
  that every bar face lies a / 4 from the nearest plane: the cut is symmetric, and thermal displacements
  (~0.1 A at 60 K) cannot move atoms across it, so the count is exact (`cross_atom_count`).

  Returns:
    (centre `(3,)` in A, bar width in A).
  """
  n, k = _cross_args(n_cells, bar_width_cells)
  box = _positive("box", box)
  a = box / n
  return np.full(3, 0.5 * box + 0.25 * a), k * a


def cross_mask(positions, centre, bar_width: float) -> np.ndarray:
  """Atoms inside the union of three orthogonal square bars of side `bar_width` through `centre`.

  The bar along x holds |y - c_y| < w/2 and |z - c_z| < w/2 (any x); an atom is in the cross when at least two
  of its three coordinates are within w/2 of the centre.

  Args:
    positions: `(N, 3)` A.  centre: `(3,)` A.  bar_width: w in A.

  Returns:
    `(N,)` bool.
  """
  p = np.asarray(positions, np.float64)
  checks.check_shape("positions", p, (None, 3))
  checks.check_finite("positions", p)
  c = np.asarray(centre, np.float64)
  checks.check_shape("centre", c, (3,))
  w = _positive("bar_width", bar_width)
  return np.sum(np.abs(p - c) < 0.5 * w, axis=1) >= 2


def cross_atom_count(n_cells: int = PAPER_CROSS_CELLS, bar_width_cells: int = CROSS_BAR_WIDTH_CELLS) -> int:
  """Atoms in the cross of `cross_geometry`: 12 k^2 n - 8 k^3 for n^3 cells and bars k cells wide.

  Each bar holds (2k)^2 columns of the a/2 grid with n atoms each (4 k^2 n); the three bars share the central
  cube of (2k)^3 grid points, half of them FCC sites (4 k^3), counted three times: 3 * 4 k^2 n - 2 * 4 k^3.
  The paper's 50^3 crystal with k = 7 gives 26,656 (the paper reports 26,679 for its own cut).
  """
  n, k = _cross_args(n_cells, bar_width_cells)
  return 12 * k * k * n - 8 * k ** 3


def argon_cross(n_cells: int = PAPER_CROSS_CELLS, bar_width_cells: int = CROSS_BAR_WIDTH_CELLS,
                lattice_constant: float = ARGON_FCC_LATTICE_CONSTANT) -> np.ndarray:
  """The cross cut from a perfect FCC crystal: `(cross_atom_count(n_cells, bar_width_cells), 3)` float64, A."""
  positions = fcc_lattice(n_cells, lattice_constant)
  n, _ = _cross_args(n_cells, bar_width_cells)
  centre, width = cross_geometry(n * float(lattice_constant), n, bar_width_cells)
  return positions[cross_mask(positions, centre, width)]


def unwrap_to_sites(positions, sites, box: float) -> np.ndarray:
  """Each atom's periodic image nearest its lattice site: sites + minimum_image(positions - sites), `(N, 3)` A.

  A crystal thermalized in a periodic box has atoms of the faces wrapped to the opposite side; cutting a
  free-space piece needs them back beside their neighbours.
  """
  p, s = np.asarray(positions, np.float64), np.asarray(sites, np.float64)
  checks.check_shape("positions", p, (None, 3))
  checks.check_shape("sites", s, p.shape)
  box = _positive("box", box)
  d = p - s
  return s + d - box * np.round(d / box)


def temperature_from_kinetic_energy(kinetic_energy, n_atoms: int, dof: int | None = None):
  """T = 2 KE / (dof k_B) in K from kinetic energies in eV (any shape); dof defaults to 3N - 3 (`temperature`)."""
  dof = 3 * int(n_atoms) - 3 if dof is None else int(dof)
  return 2.0 * np.asarray(kinetic_energy, np.float64) / (dof * KB)


def pressure(kinetic_energy, virial, volume):
  """P = (2 KE + W) / (3 V) in eV / A^3 (virial theorem), W = sum over pairs of r_ij f(r_ij) (`lj_cut_virial_fn`).

  Multiply by `GPA_PER_EV_A3` for GPa. With lj/cut there is no tail correction (as in LAMMPS by default).
  """
  return (2.0 * kinetic_energy + virial) / (3.0 * volume)


# Pair terms on neighbor lists. `displacement_kwargs` (e.g. box=... for jax-md's fractional coordinates) are
# bound into the displacement function, so one definition serves free space, fixed and changing boxes.

def _lj_cut_fns(displacement_fn, r_cut: float, kwargs: dict):
  from unitary_enn.potentials import lj_cut_neighbor_list
  disp = functools.partial(displacement_fn, **kwargs) if kwargs else displacement_fn
  # The box argument only sizes the (unused) neighbor_fn that lj_cut_neighbor_list also builds.
  _, energy_fn, force_fn = lj_cut_neighbor_list(disp, 3.0 * r_cut, r_cut=r_cut)
  return disp, energy_fn, force_fn


def lj_cut_force_fn(displacement_fn, *, r_cut: float = 10.0):
  """lj/cut argon forces (LAMMPS `pair_style lj/cut r_cut`, no shift; `potentials.lj_cut_neighbor_list`).

  Returns:
    `force_fn(positions (N, 3), neighbor, **displacement_kwargs) -> (N, 3)` eV/A, any jax-md format.
  """
  def force_fn(positions, neighbor, **kwargs):
    return _lj_cut_fns(displacement_fn, r_cut, kwargs)[2](positions, neighbor)
  return force_fn


def lj_cut_energy_fn(displacement_fn, *, r_cut: float = 10.0):
  """lj/cut argon potential energy: `energy_fn(positions, neighbor, **displacement_kwargs) -> ()` eV."""
  def energy_fn(positions, neighbor, **kwargs):
    return _lj_cut_fns(displacement_fn, r_cut, kwargs)[1](positions, neighbor)
  return energy_fn


def lj_cut_virial_fn(displacement_fn, *, r_cut: float = 10.0):
  """Pair virial W = sum_{i<j} r_ij f(r_ij), f = -dU/dr of lj/cut (eV): `virial_fn(positions, neighbor, **kw)`.

  With the kinetic energy it gives the pressure (`pressure`); W = -3 V dU/dV for a homogeneous scaling.
  """
  from unitary_enn.descriptors import neighbor_pairs
  from unitary_enn.potentials import lj_pair_force_magnitude

  def virial_fn(positions, neighbor, **kwargs):
    disp = functools.partial(displacement_fn, **kwargs) if kwargs else displacement_fn
    _, _, dr, valid, once = neighbor_pairs(positions, neighbor, disp)
    r2 = jnp.sum(dr * dr, axis=-1)
    inside = valid & (r2 > 0) & (r2 < r_cut * r_cut)
    r = jnp.sqrt(jnp.where(inside, r2, 1.0))
    w = jnp.sum(jnp.where(inside, r * lj_pair_force_magnitude(r), 0.0))
    return w if once else 0.5 * w

  return virial_fn


def many_body_force_fn(model: dict | str, displacement_fn, *, block: int | None = None, descriptor_dtype=None):
  """The trained Sec. 4.5 force network (vector descriptors eq. 51 -> ENN -> force) on a jax-md neighbor list.

  The same function as `io.load_force_field` gives for a many_body workdir, written as a pure
  `force_fn(positions, neighbor)` so that MD can run it inside jitted chunks.

  Args:
    model: the model.pkl dict of `experiments.many_body` (kind "many_body") or its workdir.
    displacement_fn: jax-md displacement (`space.free()[0]` for the cross).
    block: rows per block of the descriptor sum (default automatic).
    descriptor_dtype: dtype of the descriptor sums (default: the network's; the positions' dtype reproduces
      the slower behaviour before this option, for benchmarks).

  Returns:
    `force_fn(positions (N, 3) A, neighbor, **unused) -> (N, 3)` eV/A in the positions' dtype. The neighbor
    list must have cutoff >= model["r_cut"].
  """
  from unitary_enn import io
  from unitary_enn.descriptors import vector_descriptors_neighbor_list
  from unitary_enn.network import apply_uenn

  if isinstance(model, str):
    model = io.load_model(model)
  if model.get("kind") != "many_body":
    raise ValueError(f"model is a {model.get('kind')!r} model; many_body_force_fn needs a many_body model "
                     "(python -m experiments.many_body)")
  params = jax.tree.map(jnp.asarray, model["params"])
  dtype = params[0]["W"].real.dtype
  in_scale = jnp.asarray(model["scales"]["inputs"], dtype)
  out_scale = jnp.asarray(model["scales"]["targets"], dtype)
  activation = model.get("activation", "softsign")
  r_cut = float(model["r_cut"])
  _, descriptor_fn = vector_descriptors_neighbor_list(
      displacement_fn, 3.0 * r_cut, r_s=np.asarray(model["r_s"]), eta=model["eta"], r_cut=r_cut,
      cutoff=model.get("cutoff", "cosine"), block=block)

  def force_fn(positions, neighbor, **unused_kwargs):
    # Displacements in the positions' precision; the Gaussian sums in the network's, which is all it reads.
    d = descriptor_fn(positions, neighbor, dtype=descriptor_dtype or dtype)
    y = apply_uenn(params, d.astype(dtype) / in_scale, activation=activation) * out_scale
    return y[..., 0].astype(positions.dtype)

  force_fn.r_cut = r_cut
  return force_fn


# --- The chunk driver shared by thermalization and NVE ------------------------------------------------------


def _neighbor_format(format):
  from jax_md import partition
  if not isinstance(format, str):
    return format
  table = {"dense": partition.Dense, "sparse": partition.Sparse, "ordered_sparse": partition.OrderedSparse}
  if format not in table:
    raise ValueError(f"format must be one of {NEIGHBOR_FORMATS} (or a jax-md format), got {format!r}")
  return table[format]


def _neighbor_error(neighbor) -> str | None:
  """Why a neighbor list cannot be trusted (overflow, cells too small for the box), or None."""
  if bool(neighbor.did_buffer_overflow):
    return "overflowed"
  if bool(neighbor.cell_size_too_small):
    return "has cells smaller than the cutoff (the box shrank)"
  return None


class _NeighborManager:
  """Allocates jax-md neighbor lists (outside jit) and grows their capacity after an overflow."""

  def __init__(self, make_neighbor_fn, capacity_multiplier: float, stats: dict, label: str, log):
    self.make = make_neighbor_fn
    self.multiplier = float(capacity_multiplier)
    self.stats, self.label, self.log = stats, label, log
    self.neighbor_fn = make_neighbor_fn(self.multiplier)

  def allocate(self, positions, max_attempts: int = 8, **kwargs):
    for _ in range(max_attempts):
      neighbor = self.neighbor_fn.allocate(positions, **kwargs)
      self.stats["allocations"] += 1
      if _neighbor_error(neighbor) is None:
        return neighbor
      self.grow()
    raise RuntimeError(f"{self.label}: could not allocate a neighbor list that holds all neighbours after "
                       f"{max_attempts} attempts (capacity multiplier {self.multiplier:.3g})")

  def grow(self):
    self.multiplier = max(self.multiplier * 1.25, 1.0)
    self.neighbor_fn = self.make(self.multiplier)


def _run_chunks(*, label, log, n_steps, chunk_steps, start, carry, neighbor, advance, reallocate, accept,
                positions_of, n_atoms, stats, max_reallocations):
  """Advance `carry` from step `start` to `n_steps` in compiled chunks (DESIGN habit 3).

  advance(carry, neighbor, n) -> (carry, neighbor, out), jitted with n static; compiled ahead of time per
  (n, neighbor-list shape), so compile time is kept out of the measured rate. After each chunk the neighbor
  list is checked; if it went bad the chunk is redone from its starting carry with `reallocate(carry)`.
  accept(step, carry, neighbor, out) records the chunk (and checkpoints) and returns extra progress text.
  """
  compiled = {}
  done = start
  while done < n_steps:
    n = min(chunk_steps, n_steps - done)
    for attempt in range(max_reallocations + 1):
      key = (n, jax.tree.structure((carry, neighbor)),
             tuple((np.shape(x), str(getattr(x, "dtype", ""))) for x in jax.tree.leaves((carry, neighbor))))
      if key not in compiled:
        t0 = time.time()
        compiled[key] = advance.lower(carry, neighbor, n).compile()
        stats["compile_s"] += time.time() - t0
      t0 = time.time()
      new_carry, new_neighbor, out = jax.block_until_ready(compiled[key](carry, neighbor))
      elapsed = time.time() - t0
      error = _neighbor_error(new_neighbor)
      if error is None:
        break
      stats["reallocations"] += 1
      stats["redone_steps"] += n
      if log is not None:
        log(f"{label}: the neighbor list {error} during steps {done}..{done + n}; reallocating (capacity "
            "multiplier x1.25) and redoing the chunk")
      neighbor = reallocate(carry)
    else:
      raise RuntimeError(f"{label}: the neighbor list still goes bad after {max_reallocations} reallocations "
                         f"in steps {done}..{done + n}; are atoms collapsing onto each other?")
    p = np.asarray(positions_of(new_carry))
    if not np.all(np.isfinite(p)):
      raise FloatingPointError(f"{label}: positions became non-finite during steps {done}..{done + n}; the force "
                               "field blew up (a smaller dt, or forces outside the model's training domain?)")
    carry, neighbor = new_carry, new_neighbor
    done += n
    stats["run_s"] += elapsed
    stats["steps_run"] += n
    extra = accept(done, carry, neighbor, out)
    if log is not None:
      rate = stats["steps_run"] / max(stats["run_s"], 1e-9)
      log(f"{label}: step {done:>7,d}/{n_steps:,}  {rate:7.1f} steps/s  {rate * n_atoms / 1e3:8.1f}k atom-steps/s"
          f"  ETA {(n_steps - done) / rate:7.1f} s{extra}")
  return carry, neighbor


def _new_stats() -> dict:
  return dict(allocations=0, reallocations=0, redone_steps=0, compile_s=0.0, run_s=0.0, steps_run=0)


def _load_checkpoint(path: str | None, signature: dict, label: str):
  import os

  from unitary_enn import io
  if not path or not os.path.exists(path):
    return None
  ckpt = io.load_pickle(path)
  if ckpt.get("signature") != signature:
    raise ValueError(f"{label}: checkpoint {path!r} belongs to a different run ({ckpt.get('signature')} vs "
                     f"{signature}); delete it or use another workdir")
  return ckpt


# --- Thermalization at zero pressure (periodic box) ---------------------------------------------------------


class Thermalized(NamedTuple):
  """A thermalized crystal: positions `(N, 3)` A unwrapped to their lattice sites (Cartesian, a continuous
  crystal whose surface atoms may stick out of [0, box) by their thermal displacement), momenta `(N, 3)`
  eV ps / A, the cubic box side (A), n_cells, and `series` recorded every `barostat_every` steps: "step",
  "temperature_K", "pressure_GPa", "box_A"; `stats` of the runs (rates, neighbor-list reallocations)."""
  positions: np.ndarray
  momenta: np.ndarray
  box: float
  n_cells: int
  series: dict
  stats: dict

  @property
  def lattice_constant(self) -> float:
    return self.box / self.n_cells


def thermalize_fcc(n_cells: int, *, temperature: float = CROSS_TEMPERATURE, time_ps: float = 10.0,
                   dt: float = FOUR_BODY_DT, lattice_constant: float = ARGON_FCC_LATTICE_CONSTANT,
                   r_cut: float = 10.0, pressure_gpa: float = 0.0, barostat_fraction: float = 0.5,
                   barostat_every: int = 50, barostat_tau: float = 0.5, compressibility: float = 0.5,
                   box_average_fraction: float = 0.25, thermostat_tau: float = 0.1, initial_temperature: float | None = None, seed: int = 0,
                   dtype=None, format: str = "ordered_sparse", capacity_multiplier: float = 1.25,
                   dr_threshold: float = 1.0, chunk_steps: int = 1000, checkpoint: str | None = None,
                   label: str = "thermalize", log: Callable[[str], None] | None = print,
                   max_reallocations: int = 8) -> Thermalized:
  """Thermalize a periodic FCC argon crystal (lj/cut) at `temperature` and zero pressure (Sec. 4.5, SPEC 10).

  Two phases, in jitted chunks of `chunk_steps` with progress lines:
    1. the first `barostat_fraction` of the time: Nose-Hoover NVT (jax-md `nvt_nose_hoover`, relaxation time
       `thermostat_tau`) with an isotropic Berendsen barostat: every `barostat_every` steps the pressure P
       (`pressure`, instantaneous virial) is measured and the box scaled by
       mu = [1 - compressibility * (barostat_every dt / barostat_tau) * (P_target - P)]^(1/3)
       (positions are fractional, so they scale with it; mu is clipped to 1 +- 1%);
    2. the box is fixed to its mean over the last `box_average_fraction` of phase 1 and the rest runs as plain
       Nose-Hoover NVT.
  Positions live in jax-md's fractional coordinates (`space.periodic_general`), so a changing box needs no
  recompilation; the neighbor list is rebuilt after each box change and checked after every chunk.

  Args:
    n_cells: crystal of n_cells^3 unit cells, 4 n_cells^3 atoms; the box must be >= 2 r_cut.
    temperature: K.  time_ps: total thermalization time (paper: 10 ps).  dt: ps.
    lattice_constant: the starting a in A (5.24411; the barostat then finds the 60 K one).
    r_cut: lj/cut truncation radius in A.  pressure_gpa: target pressure.
    barostat_fraction: share of the time with the barostat on (0 = NVT at the given lattice constant).
    barostat_every: steps between box updates.  barostat_tau: Berendsen time constant in ps.
    compressibility: the barostat's assumed isothermal compressibility in 1/GPa (argon near 60 K: ~0.3-0.5).
    box_average_fraction: the final part of the barostat phase over which the box is averaged.
    thermostat_tau: Nose-Hoover time constant in ps.
    initial_temperature: of the Maxwell-Boltzmann start on the perfect lattice; default 2 * temperature (half
      of the kinetic energy flows into the potential energy within a few hundred fs).
    seed: for the initial velocities.  dtype: float dtype (default: JAX's default float).
    format, capacity_multiplier, dr_threshold: of the jax-md neighbor list (dr_threshold = skin in A).
    chunk_steps: steps per compiled chunk (a multiple of barostat_every).
    checkpoint: a file to save the state to after every chunk; an existing one is resumed from.

  Returns:
    `Thermalized`.
  """
  from jax_md import partition, simulate, space

  n = _n_cells(n_cells)
  if len(set(n)) != 1:
    raise ValueError(f"n_cells must be one integer (a cubic crystal), got {n_cells!r}")
  n = n[0]
  temperature = _positive("temperature", temperature)
  dt = _positive("dt", dt)
  a0 = _positive("lattice_constant", lattice_constant)
  r_cut = _positive("r_cut", r_cut)
  box0 = n * a0
  if box0 < 2.0 * r_cut:
    raise ValueError(f"the box of n_cells={n} cells ({box0:.3f} A) is smaller than 2 * r_cut = {2 * r_cut} A: "
                     f"use n_cells >= {int(np.ceil(2 * r_cut / a0))}")
  for name, v in (("barostat_every", barostat_every), ("chunk_steps", chunk_steps)):
    if not (isinstance(v, (int, np.integer)) and v >= 1):
      raise ValueError(f"{name} must be a positive integer, got {v!r}")
  if chunk_steps % barostat_every:
    raise ValueError(f"chunk_steps ({chunk_steps}) must be a multiple of barostat_every ({barostat_every})")
  if not 0.0 <= barostat_fraction <= 1.0:
    raise ValueError(f"barostat_fraction must be in [0, 1], got {barostat_fraction}")
  if not 0.0 < box_average_fraction <= 1.0:
    raise ValueError(f"box_average_fraction must be in (0, 1], got {box_average_fraction}")
  for name, v in (("barostat_tau", barostat_tau), ("compressibility", compressibility),
                  ("thermostat_tau", thermostat_tau), ("time_ps", time_ps)):
    _positive(name, v)
  if not np.isfinite(pressure_gpa):
    raise ValueError(f"pressure_gpa must be finite, got {pressure_gpa}")
  n_steps = int(round(time_ps / dt / barostat_every)) * barostat_every
  if n_steps < barostat_every:
    raise ValueError(f"time_ps={time_ps} is shorter than barostat_every={barostat_every} steps of dt={dt} ps")
  barostat_steps = int(round(barostat_fraction * n_steps / barostat_every)) * barostat_every
  dtype = jnp.dtype(dtype or jnp.result_type(float))
  fmt = _neighbor_format(format)
  n_atoms = 4 * n ** 3
  mass = jnp.asarray(ARGON_MASS, dtype)
  kt = KB * temperature
  p_target = float(pressure_gpa) / GPA_PER_EV_A3
  kappa_dt = float(compressibility) * GPA_PER_EV_A3 * barostat_every * dt / float(barostat_tau)  # A^3/eV

  displacement_fn, shift_fn = space.periodic_general(box0, fractional_coordinates=True)
  force_fn = lj_cut_force_fn(displacement_fn, r_cut=r_cut)
  virial_fn = lj_cut_virial_fn(displacement_fn, r_cut=r_cut)
  init_fn, apply_fn = simulate.nvt_nose_hoover(force_fn, shift_fn, dt, kt, tau=thermostat_tau)
  stats = _new_stats()
  manager = _NeighborManager(
      lambda m: partition.neighbor_list(displacement_fn, box0, r_cut, dr_threshold=dr_threshold,
                                        capacity_multiplier=m, format=fmt, fractional_coordinates=True),
      capacity_multiplier, stats, label, log)

  signature = dict(kind="thermalize_fcc", n_cells=n, temperature=temperature, n_steps=n_steps, dt=dt,
                   barostat_steps=barostat_steps, lattice_constant=a0, seed=int(seed), dtype=str(dtype),
                   pressure_gpa=float(pressure_gpa), barostat=(int(barostat_every), float(barostat_tau),
                                                               float(compressibility), float(box_average_fraction)),
                   thermostat_tau=float(thermostat_tau), r_cut=r_cut)
  sites = jnp.asarray(fcc_lattice(n, 1.0 / n), dtype)  # fractional
  ckpt = _load_checkpoint(checkpoint, signature, label)
  if ckpt is None:
    box = jnp.asarray(box0, dtype)
    t0 = initial_temperature if initial_temperature is not None else 2.0 * temperature
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(seed), sites, mass, _positive("initial_temperature",
                                                                                          t0))
    neighbor = manager.allocate(sites, box=box)
    state = init_fn(jax.random.PRNGKey(seed), sites, mass=mass, momenta=momenta, neighbor=neighbor, box=box)
    start, series = 0, dict(step=[], temperature_K=[], pressure_GPa=[], box_A=[])
  else:
    box = jnp.asarray(ckpt["box"], dtype)
    positions = jnp.asarray(ckpt["positions"], dtype)
    neighbor = manager.allocate(positions, box=box)
    fresh = init_fn(jax.random.PRNGKey(seed), positions, mass=mass, momenta=jnp.asarray(ckpt["momenta"], dtype),
                    neighbor=neighbor, box=box)
    state = jax.tree.unflatten(jax.tree.structure(fresh), [jnp.asarray(x) for x in ckpt["state"]])
    start, series = int(ckpt["step"]), {k: list(v) for k, v in ckpt["series"].items()}
    stats.update(ckpt["stats"], allocations=stats["allocations"])
    if log is not None:
      log(f"{label}: resuming from {checkpoint} at step {start:,}")

  def block(carry, barostat):
    state, box, neighbor = carry

    def one(c, _):
      s, nb = c
      nb = nb.update(s.position, box=box)
      return (apply_fn(s, neighbor=nb, box=box), nb), None

    (state, neighbor), _ = jax.lax.scan(one, (state, neighbor), None, length=barostat_every)
    ke = kinetic_energy(state.momentum, mass)
    p = pressure(ke, virial_fn(state.position, neighbor, box=box), box ** 3)
    # The barostat flag is traced (one compilation serves both phases).
    mu = jnp.clip((1.0 - kappa_dt * (p_target - p)) ** (1.0 / 3.0), 0.99, 1.01)
    box = jnp.where(barostat, box * mu, box)
    # Scaling the box moves atoms without moving their fractional positions, which the list's skin test
    # does not see: mark the list stale so that the next update rebuilds it.
    neighbor = neighbor.set(reference_position=neighbor.reference_position + jnp.where(barostat, 0.25, 0.0))
    return (state, box, neighbor), (ke, p, box)

  def advance(carry, neighbor, n):
    state, box, barostat = carry
    (state, box, neighbor), (ke, p, boxes) = jax.lax.scan(
        lambda c, _: block(c, barostat), (state, box, neighbor), None, length=n // barostat_every)
    return (state, box, barostat), neighbor, (ke, p, boxes)

  advance = jax.jit(advance, static_argnums=2)

  def save(step, carry):
    if checkpoint:
      from unitary_enn import io
      state, box, on = carry
      io.save_pickle(checkpoint, dict(signature=signature, step=step, box=float(box), barostat_on=bool(on),
                                      positions=np.asarray(state.position), momenta=np.asarray(state.momentum),
                                      state=[np.asarray(x) for x in jax.tree.leaves(state)],
                                      series={k: np.asarray(v) for k, v in series.items()}, stats=dict(stats)))

  def accept(step, carry, neighbor, out):
    ke, p, boxes = (np.asarray(x, np.float64) for x in out)
    k = len(ke)
    series["step"].extend((step - k * barostat_every + barostat_every * np.arange(1, k + 1)).tolist())
    series["temperature_K"].extend(temperature_from_kinetic_energy(ke, n_atoms).tolist())
    series["pressure_GPa"].extend((p * GPA_PER_EV_A3).tolist())
    series["box_A"].extend(boxes.tolist())
    save(step, carry)
    return (f"  T {np.mean(series['temperature_K'][-k:]):6.2f} K  P {np.mean(p) * GPA_PER_EV_A3:+.4f} GPa  "
            f"a {boxes[-1] / n:.5f} A" + ("  (barostat)" if step <= barostat_steps else ""))

  def reallocate(carry):
    manager.grow()
    return manager.allocate(carry[0].position, box=carry[1])

  on = bool(ckpt["barostat_on"]) if ckpt is not None else barostat_steps > 0
  carry = (state, box, jnp.asarray(on))
  common = dict(label=label, log=log, chunk_steps=chunk_steps, accept=accept, reallocate=reallocate,
                positions_of=lambda c: c[0].position, n_atoms=n_atoms, stats=stats,
                max_reallocations=max_reallocations)
  if log is not None and start == 0:
    log(f"{label}: {n_atoms:,} atoms ({n}^3 FCC cells, a = {a0} A), {n_steps:,} steps of {dt * 1e3:g} fs at "
        f"{temperature:g} K: Berendsen barostat to {pressure_gpa:g} GPa for {barostat_steps:,} steps, then NVT")
  if start < barostat_steps:
    carry, neighbor = _run_chunks(n_steps=barostat_steps, start=start, carry=carry, neighbor=neighbor,
                                  advance=advance, **common)
    start = barostat_steps
  if bool(carry[2]):  # the barostat phase is over: fix the box
    # Fix the box at its mean over the end of the barostat phase (less noisy than the last value).
    first = barostat_steps * (1.0 - box_average_fraction)
    steps_arr, boxes = np.asarray(series["step"]), np.asarray(series["box_A"])
    late = boxes[(steps_arr > first) & (steps_arr <= barostat_steps)]
    late = late if len(late) else boxes[-1:]
    carry = (carry[0], jnp.asarray(np.mean(late), dtype), jnp.asarray(False))
    neighbor = manager.allocate(carry[0].position, box=carry[1])
    save(start, carry)
    if log is not None:
      log(f"{label}: box fixed at {float(carry[1]):.4f} A (a = {float(carry[1]) / n:.5f} A), the mean over "
          f"steps {int(first):,}..{barostat_steps:,}; NVT from here")
  if start < n_steps:
    carry, neighbor = _run_chunks(n_steps=n_steps, start=start, carry=carry, neighbor=neighbor,
                                  advance=advance, **common)
  state, box, _ = carry
  box = float(box)
  frac = np.asarray(state.position, np.float64)
  positions = unwrap_to_sites((frac % 1.0) * box, np.asarray(sites, np.float64) * box, box)
  stats["atom_steps_per_s"] = n_atoms * stats["steps_run"] / max(stats["run_s"], 1e-9)
  return Thermalized(positions, np.asarray(state.momentum, np.float64), box, n,
                     {k: np.asarray(v) for k, v in series.items()}, stats)


# --- Free-space NVE of a many-atom piece (the cross) on neighbor lists --------------------------------------


class NeighborListRun(NamedTuple):
  """A many-atom NVE run: `positions` `(frames, N, 3)` A every `record_every` steps (frame 0 = the start);
  `momenta` `(N, 3)` eV ps / A at the end; `kinetic_energy` `(n_steps + 1,)` eV at every step; `potential_energy`
  `(frames,)` eV at the frames (None without an energy function); `dt` ps; `stats`: rates and neighbor-list
  reallocations ("atom_steps_per_s" excludes compilation)."""
  positions: np.ndarray
  momenta: np.ndarray
  kinetic_energy: np.ndarray
  potential_energy: np.ndarray | None
  dt: float
  record_every: int
  stats: dict

  @property
  def steps(self) -> np.ndarray:
    """`(frames,)` step of each frame."""
    return np.arange(len(self.positions)) * self.record_every

  @property
  def temperature(self) -> np.ndarray:
    """`(n_steps + 1,)` kinetic temperature in K, dof = 3N - 3."""
    return temperature_from_kinetic_energy(self.kinetic_energy, self.positions.shape[1])


def run_nve_neighbor_list(force_fn_builder: Callable, positions, momenta, *, mass=ARGON_MASS,
                          dt: float = FOUR_BODY_DT, n_steps: int, r_cut: float = 10.0, record_every: int = 1,
                          chunk_steps: int = 1000, energy_fn_builder: Callable | None = None,
                          format: str = "dense", capacity_multiplier: float = 1.25, dr_threshold: float = 1.0,
                          cell_box: float | None = None, checkpoint: str | None = None, label: str = "md",
                          log: Callable[[str], None] | None = print, max_reallocations: int = 8) -> NeighborListRun:
  """Velocity Verlet (jax-md `simulate.nve`) of a free piece of matter, forces on a jax-md neighbor list.

  The steps run in compiled `lax.scan` chunks of `chunk_steps`; after each chunk the neighbor list is checked
  and, if it overflowed, reallocated with 1.25 x the capacity and the chunk redone from its starting state, so
  no recorded step used an overflowed list. Progress lines give the step, steps/s, atom-steps/s and ETA.
  Space is free (`space.free()`, no images). jax-md's cell list still needs a box: `cell_box` (default: the
  extent of the positions plus 2 (r_cut + dr_threshold)) only sets the number of cells; cell indices wrap, so
  atoms that leave it (evaporation) still find their neighbours, at worst with more candidates per cell.

  Args:
    force_fn_builder: `builder(displacement_fn) -> force_fn(positions, neighbor) -> (N, 3)` eV/A, e.g.
      `lj_cut_force_fn` (analytical) or `functools.partial(many_body_force_fn, model)` (the network).
    positions: `(N, 3)` A.  momenta: `(N, 3)` eV ps / A.  mass: scalar or `(N,)` eV ps^2 / A^2.
    dt: ps (jax-md rounds it to float32: 1 fs becomes 1.00000005 fs).
    n_steps: steps, a multiple of `record_every`.
    r_cut: cutoff of the neighbor list in A (>= the force field's).
    record_every: record positions (and the potential energy) every this many steps; kinetic energy is kept
      at every step. chunk_steps: a multiple of `record_every`.
    energy_fn_builder: like force_fn_builder, for a potential energy recorded with the frames (e.g.
      `lj_cut_energy_fn`), or None.
    format: "dense", "sparse" or "ordered_sparse" (the jax-md neighbor list format; the force function must
      support it: the lj/cut and descriptor functions support all three).
    capacity_multiplier, dr_threshold: of the neighbor list (dr_threshold = skin in A; 0 rebuilds every step).
    checkpoint: a file written after every chunk; an existing one for the same run is resumed from.
    label, log: progress line prefix and sink (None = silent).

  Returns:
    `NeighborListRun` of NumPy arrays in the positions' dtype.
  """
  from jax_md import partition, simulate, space

  positions, momenta = jnp.asarray(positions), jnp.asarray(momenta)
  checks.check_shape("positions", positions, (None, 3))
  if positions.shape[0] < 2:
    raise ValueError(f"positions holds {positions.shape[0]} atom(s); MD needs at least 2")
  _validate_md(positions, momenta, mass, dt, n_steps, record_every)
  if not (isinstance(chunk_steps, (int, np.integer)) and chunk_steps >= 1 and chunk_steps % record_every == 0):
    raise ValueError(f"chunk_steps ({chunk_steps}) must be a positive multiple of record_every ({record_every})")
  r_cut = _positive("r_cut", r_cut)
  if not (np.isfinite(dr_threshold) and dr_threshold >= 0):
    raise ValueError(f"dr_threshold must be >= 0 A, got {dr_threshold}")
  _positive("capacity_multiplier", capacity_multiplier)
  n_atoms = positions.shape[0]
  dtype = positions.dtype
  mass_arr = jnp.asarray(mass, dtype)
  fmt = _neighbor_format(format)
  if cell_box is None:
    p = np.asarray(positions, np.float64)
    cell_box = float(np.max(p.max(axis=0) - p.min(axis=0))) + 2.0 * (r_cut + dr_threshold)
  cell_box = _positive("cell_box", cell_box)

  displacement_fn, shift_fn = space.free()
  force_fn = force_fn_builder(displacement_fn)
  energy_fn = energy_fn_builder(displacement_fn) if energy_fn_builder is not None else None
  init_fn, step_fn = simulate.nve(force_fn, shift_fn, dt)
  stats = _new_stats()
  stats["cell_box_A"] = cell_box
  manager = _NeighborManager(
      lambda m: partition.neighbor_list(displacement_fn, cell_box, r_cut, dr_threshold=dr_threshold,
                                        capacity_multiplier=m, format=fmt),
      capacity_multiplier, stats, label, log)

  signature = dict(kind="nve_neighbor_list", label=label, n_atoms=n_atoms, n_steps=int(n_steps), dt=float(dt),
                   record_every=int(record_every), dtype=str(dtype),
                   start=float(np.asarray(positions, np.float64).sum()))
  ckpt = _load_checkpoint(checkpoint, signature, label)
  energy_jit = jax.jit(energy_fn) if energy_fn is not None else None
  if ckpt is None:
    start = 0
    neighbor = manager.allocate(positions)
    frames = [np.asarray(positions)]
    kes = [np.asarray(kinetic_energy(momenta, mass_arr))[None]]
    pes = [np.asarray(energy_jit(positions, neighbor))[None]] if energy_fn is not None else None
    state_p, state_m = positions, momenta
  else:
    start = int(ckpt["step"])
    frames, kes = list(ckpt["frames"]), list(ckpt["kinetic_energy"])
    pes = list(ckpt["potential_energy"]) if energy_fn is not None else None
    state_p, state_m = jnp.asarray(ckpt["position"], dtype), jnp.asarray(ckpt["momentum"], dtype)
    stats.update({k: v for k, v in ckpt["stats"].items() if k in ("run_s", "steps_run", "compile_s",
                                                                  "reallocations", "redone_steps")})
    neighbor = manager.allocate(state_p)
    if log is not None:
      log(f"{label}: resuming from {checkpoint} at step {start:,}")
  state = jax.jit(init_fn)(jax.random.PRNGKey(0), state_p, 0.0, mass_arr, state_m, neighbor=neighbor)

  def advance(state, neighbor, n):
    def one(c, _):
      s, nb = c
      nb = nb.update(s.position)
      s = step_fn(s, neighbor=nb)
      return (s, nb), kinetic_energy(s.momentum, mass_arr)

    def frame(c, _):
      (s, nb), ke = jax.lax.scan(one, c, None, length=record_every)
      pe = energy_fn(s.position, nb) if energy_fn is not None else jnp.zeros((), dtype)
      return (s, nb), (s.position, ke, pe)

    (state, neighbor), (pos, ke, pe) = jax.lax.scan(frame, (state, neighbor), None, length=n // record_every)
    return state, neighbor, (pos, ke.reshape(-1), pe)

  def accept(step, state, neighbor, out):
    pos, ke, pe = (np.asarray(x) for x in out)
    frames.extend(pos)
    kes.append(ke)
    extra = ""
    if pes is not None:
      pes.append(pe)
      e0 = float(kes[0][0] + pes[0][0])
      e = float(ke[-1] + pe[-1])
      extra = f"  E {e:.6f} eV  |E - E0| / |E0| {abs(e - e0) / abs(e0):.2e}"
    t = temperature_from_kinetic_energy(ke[-1], n_atoms)
    if checkpoint:
      from unitary_enn import io
      io.save_pickle(checkpoint, dict(signature=signature, step=step, position=np.asarray(state.position),
                                      momentum=np.asarray(state.momentum), frames=np.asarray(frames),
                                      kinetic_energy=kes, potential_energy=pes, stats=dict(stats)))
    return f"  T {t:6.2f} K{extra}"

  def reallocate(state):
    manager.grow()
    return manager.allocate(state.position)

  if log is not None and start == 0:
    log(f"{label}: {n_atoms:,} atoms, {int(n_steps):,} steps of {dt * 1e3:g} fs in free space, {dtype}, "
        f"neighbor list {format} (r_cut {r_cut:g} A + skin {dr_threshold:g} A), chunks of {chunk_steps}")
  state, neighbor = _run_chunks(label=label, log=log, n_steps=int(n_steps), chunk_steps=int(chunk_steps),
                                start=start, carry=state, neighbor=neighbor, advance=jax.jit(advance, static_argnums=2),
                                reallocate=reallocate, accept=accept, positions_of=lambda s: s.position,
                                n_atoms=n_atoms, stats=stats, max_reallocations=max_reallocations)
  stats["atom_steps_per_s"] = n_atoms * stats["steps_run"] / max(stats["run_s"], 1e-9)
  stats["capacity_multiplier_final"] = manager.multiplier
  return NeighborListRun(np.asarray(frames), np.asarray(state.momentum), np.concatenate(kes),
                         np.concatenate(pes) if pes is not None else None, float(dt), int(record_every), stats)

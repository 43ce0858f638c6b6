"""NVE molecular dynamics driven by any force field, through jax-md, end to end differentiable (Sec. 4.4, 4.5).

    nve_trajectory(force_fn, positions, momenta, ...) -> Trajectory   pure, jit- and grad-able (free space,
                                                                      samples vmapped)
    run_nve(force_fn, positions, momenta, ...) -> Trajectory          the same in jitted chunks with progress
    run_nve_neighbor_list(builder, positions, momenta, ...)           free-space velocity Verlet of a many-atom
        -> NeighborListRun                                            piece on a checked jax-md neighbor list,
                                                                      resumable
    run_chunks(advance, carry, ...)                                   the one chunk runner of the package:
                                                                      compiled chunks, neighbor-list check and
                                                                      redo, non-finite check, progress, records

The integrator is jax-md's velocity Verlet (`simulate.nve`, which accepts a force function). Metal units:
positions A, momenta eV ps / A, masses eV ps^2 / A^2, forces eV/A, energies eV, time ps.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import simulate, space

from unitary_enn import checks, files
from unitary_enn.constants import ARGON_MASS, FOUR_BODY_DT
from unitary_enn.neighbors import (NeighborManager, free_space, isolated_atoms, neighbor_error, neighbor_format,
                                   periodic_space)
from unitary_enn.potentials import lj_energy
from unitary_enn.quantity import kinetic_energy, temperature_from_kinetic_energy, total_energy

Array = jax.Array
ForceFn = Callable[[Array], Array]


# --- The chunk runner ----------------------------------------------------------------------------------------


def new_stats() -> dict:
  """Counters of a run: list (re)allocations, redone steps, compile and run seconds, steps run."""
  return dict(allocations=0, reallocations=0, redone_steps=0, compile_s=0.0, run_s=0.0, steps_run=0)


def run_chunks(advance, carry, *, n_steps: int, chunk_steps: int, start: int = 0, neighbor=None,
               reallocate: Callable | None = None, accept: Callable, positions_of: Callable, n_atoms: int,
               stats: dict, label: str, log: Callable[[str], None] | None = print, max_reallocations: int = 8):
  """Advance `carry` from step `start` to `n_steps` in compiled chunks of at most `chunk_steps` steps.

  Args:
    advance: `advance(carry, neighbor, n) -> (carry, neighbor, out)`, jitted with `n` static. It is compiled
      ahead of time per (n, shapes), so compile time stays out of the measured rate (`stats`).
    carry: the state at step `start`.
    neighbor: a jax-md neighbor list, or None for runs without one.
    reallocate: `reallocate(carry) -> neighbor`, a larger list for the chunk's starting state; after a chunk
      whose list went bad (`neighbors.neighbor_error`) the chunk is thrown away and redone with it.
    accept: `accept(step, carry, neighbor, out) -> str` records the chunk (and checkpoints); returns extra text
      for the progress line.
    positions_of: `positions_of(carry, out)` -> positions, with a leading frame axis when `out` holds frames;
      a non-finite value stops the run with a FloatingPointError naming the first bad step.
    n_atoms, stats, label, log: for the progress line (step, steps/s, atom-steps/s, ETA) and the counters.

  Returns:
    (carry, neighbor) at `n_steps`.
  """
  compiled = {}
  done = start
  while done < n_steps:
    n = min(chunk_steps, n_steps - done)
    for _ in range(max_reallocations + 1):
      key = (n, jax.tree.structure((carry, neighbor)),
             tuple((np.shape(x), str(getattr(x, "dtype", ""))) for x in jax.tree.leaves((carry, neighbor))))
      if key not in compiled:
        t0 = time.time()
        compiled[key] = advance.lower(carry, neighbor, n).compile()
        stats["compile_s"] += time.time() - t0
      t0 = time.time()
      new_carry, new_neighbor, out = jax.block_until_ready(compiled[key](carry, neighbor))
      elapsed = time.time() - t0
      error = neighbor_error(new_neighbor) if new_neighbor is not None else None
      if error is None:
        break
      stats["redone_steps"] += n
      if log is not None:
        log(f"{label}: the neighbor list {error} during steps {done}..{done + n}; reallocating (capacity "
            "multiplier x1.25) and redoing the chunk")
      neighbor = reallocate(carry)
    else:
      raise RuntimeError(f"{label}: the neighbor list still goes bad after {max_reallocations} reallocations "
                         f"in steps {done}..{done + n}; are atoms collapsing onto each other?")
    p = np.asarray(positions_of(new_carry, out))
    frames = p.reshape(len(p), -1) if p.ndim > 2 else p.reshape(1, -1)
    finite = np.all(np.isfinite(frames), axis=1)
    if not finite.all():
      first = done + (int(np.argmin(finite)) + 1) * n // len(frames)
      raise FloatingPointError(f"{label}: positions became non-finite by step {first} (chunk {done}..{done + n}); "
                               "the force field blew up (a smaller dt, or forces outside the model's training "
                               "domain?)")
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


def load_run_checkpoint(path: str | None, signature: dict, label: str, log=None) -> dict | None:
  """A run's checkpoint (`files.load_checkpoint`) if it exists and belongs to the run described by `signature`."""
  if not path:
    return None
  ckpt = files.load_checkpoint(path, log=log)
  if ckpt is None:
    return None
  if ckpt.get("signature") != files.to_json(signature):
    raise ValueError(f"{label}: checkpoint {path!r} belongs to a different run ({ckpt.get('signature')} vs "
                     f"{files.to_json(signature)}); delete it or use another workdir")
  return ckpt


# --- NVE of free clusters (Sec. 4.4) ----------------------------------------------------------------------


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


def _callable(name: str, fn) -> None:
  if not callable(fn):
    raise TypeError(f"{name} must be a function, got {type(fn).__name__}")


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
  if checks.is_concrete(mass) and not bool(np.all(np.isfinite(np.asarray(mass)))):
    raise ValueError(f"mass must be finite (eV ps^2 / A^2), got {mass}")
  checks.positive("dt", dt)
  checks.positive_int("n_steps", n_steps)
  checks.positive_int("record_every", record_every)
  if int(n_steps) % int(record_every):
    raise ValueError(f"n_steps ({n_steps}) must be a positive multiple of record_every ({record_every})")


def _nve_fns(force_fn: ForceFn, dt: float):
  """jax-md's velocity Verlet (`simulate.nve` with a force function) in free space, vmapped over samples."""
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
  _callable("force_fn", force_fn)
  positions, momenta = checks.as_array("positions", positions), checks.as_array("momenta", momenta)
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
  """`nve_trajectory` in jitted `lax.scan` chunks (`run_chunks`), with progress and a blow-up check per chunk.

  Each chunk of `chunk_steps` steps is one compiled call (compiled once for all full chunks). After each chunk
  the state is checked for NaN/Inf (raises FloatingPointError naming the step) and a progress line is logged:
  step, steps/s, ETA and, when `energy_fn` is given, the relative change of the total energy (eq. 48) at that
  step in the worst sample.

  Args:
    as in `nve_trajectory`; `chunk_steps` must be a multiple of `record_every`.
    label: name of the run in progress lines; log: where they go (None = silent).
    energy_fn: potential energy for the progress line (analytical LJ by default), or None.

  Returns:
    `Trajectory` of NumPy arrays `(n_steps / record_every + 1, [samples,] N, 3)`.
  """
  _callable("force_fn", force_fn)
  positions, momenta = checks.as_array("positions", positions), checks.as_array("momenta", momenta)
  _validate_md(positions, momenta, mass, dt, n_steps, record_every)
  checks.positive_int("chunk_steps", chunk_steps)
  if chunk_steps % record_every:
    raise ValueError(f"chunk_steps ({chunk_steps}) must be a positive multiple of record_every "
                     f"({record_every})")
  single = positions.ndim == 2
  if single:
    positions, momenta = positions[None], momenta[None]
  init, step = _nve_fns(force_fn, dt)
  state = jax.jit(init)(jax.random.PRNGKey(0), positions, 0.0, jnp.asarray(mass, positions.dtype), momenta)

  def advance(state, neighbor, n):
    state, frames = _scan(step, state, n // record_every, record_every)
    return state, neighbor, frames

  energy = jax.jit(lambda p, q: total_energy(p, q, mass, energy_fn)) if energy_fn is not None else None
  e0 = np.asarray(energy(positions, momenta)) if energy is not None else None
  frames_p, frames_m = [np.asarray(positions)[None]], [np.asarray(momenta)[None]]

  def accept(step_no, state, neighbor, out):
    pos, mom = np.asarray(out[0]), np.asarray(out[1])
    frames_p.append(pos)
    frames_m.append(mom)
    if e0 is None:
      return ""
    e = np.asarray(energy(pos[-1], mom[-1]))
    return f"  |E - E0| / |E0| now {np.max(np.abs(e - e0) / np.abs(e0)):.2e} (worst sample)"

  run_chunks(jax.jit(advance, static_argnums=2), state, n_steps=int(n_steps), chunk_steps=int(chunk_steps),
             accept=accept, positions_of=lambda s, out: out[0], n_atoms=int(np.prod(positions.shape[:-1])),
             stats=new_stats(), label=label, log=log)
  pos, mom = np.concatenate(frames_p), np.concatenate(frames_m)
  if single:
    pos, mom = pos[:, 0], mom[:, 0]
  return Trajectory(pos, mom, dt, int(record_every))


# --- Free-space NVE of a many-atom piece (the cross of Sec. 4.5) on neighbor lists --------------------------


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
                          log: Callable[[str], None] | None = print, max_reallocations: int = 8,
                          box: float | None = None) -> NeighborListRun:
  """Velocity Verlet (jax-md `simulate.nve`) of a free piece of matter (or a periodic cube, `box`), forces on a
  jax-md neighbor list.

  The steps run in compiled `lax.scan` chunks of `chunk_steps` (`run_chunks`); after each chunk the neighbor list
  is checked and, if it overflowed, reallocated with 1.25 x the capacity and the chunk redone from its starting
  state, so no recorded step used an overflowed list. Progress lines give the step, steps/s, atom-steps/s, ETA,
  the temperature, the energy change, and how many atoms have left the piece (no neighbour within the list's
  reach). Space is free (`space.free()`, no images); the cell list's box (`neighbors.free_space`, or `cell_box`)
  only sets the number of cells, and cell indices wrap, so atoms that leave it still find their neighbours.

  Args:
    force_fn_builder: `builder(displacement_fn) -> force_fn(positions, neighbor) -> (N, 3)` eV/A, e.g.
      `potentials.lj_cut_force_fn` (analytical) or `functools.partial(models.many_body_force_fn, model)`.
    positions: `(N, 3)` A.  momenta: `(N, 3)` eV ps / A.  mass: scalar or `(N,)` eV ps^2 / A^2.
    dt: ps (jax-md rounds it to float32: 1 fs becomes 1.00000005 fs).
    n_steps: steps, a multiple of `record_every`.
    r_cut: cutoff of the neighbor list in A (>= the force field's).
    record_every: record positions (and the potential energy) every this many steps; kinetic energy is kept
      at every step. chunk_steps: a multiple of `record_every`.
    energy_fn_builder: like force_fn_builder, for a potential energy recorded with the frames (e.g.
      `potentials.lj_cut_energy_fn`), or None.
    format: "dense", "sparse" or "ordered_sparse" (the jax-md neighbor list format).
    capacity_multiplier, dr_threshold: of the neighbor list (dr_threshold = skin in A; 0 rebuilds every step).
    checkpoint: a file written after every chunk; an existing one for the same run is resumed from.
    label, log: progress line prefix and sink (None = silent).
    box: None for free space, or the side in A of a cubic periodic box (`neighbors.periodic_space(box)`: positions
      inside [0, box], box >= 2 (r_cut + dr_threshold); recorded positions are wrapped into the box).

  Returns:
    `NeighborListRun` of NumPy arrays in the positions' dtype.
  """
  _callable("force_fn_builder", force_fn_builder)
  positions, momenta = checks.as_array("positions", positions), checks.as_array("momenta", momenta)
  checks.check_shape("positions", positions, (None, 3))
  if positions.shape[0] < 2:
    raise ValueError(f"positions holds {positions.shape[0]} atom(s); MD needs at least 2")
  _validate_md(positions, momenta, mass, dt, n_steps, record_every)
  checks.positive_int("chunk_steps", chunk_steps)
  if chunk_steps % record_every:
    raise ValueError(f"chunk_steps ({chunk_steps}) must be a positive multiple of record_every ({record_every})")
  r_cut = checks.positive("r_cut", r_cut)
  dr_threshold = checks.positive("dr_threshold", dr_threshold, allow_zero=True)
  n_atoms = positions.shape[0]
  dtype = positions.dtype
  mass_arr = jnp.asarray(mass, dtype)
  if box is not None:
    box = checks.check_box(box, r_cut + dr_threshold)
    checks.check_positions(positions, box, inside_box=True)
    if cell_box is not None:
      raise ValueError("cell_box is for free space; a periodic run's cell list covers the box")
    cell_box = box
  elif cell_box is None:
    _, cell_box = free_space(positions, r_cut + dr_threshold, room=1.0)
  cell_box = checks.positive("cell_box", cell_box)

  displacement_fn, shift_fn = periodic_space(box) if box is not None else space.free()
  force_fn = force_fn_builder(displacement_fn)
  energy_fn = energy_fn_builder(displacement_fn) if energy_fn_builder is not None else None
  init_fn, step_fn = simulate.nve(force_fn, shift_fn, dt)
  stats = new_stats()
  stats["cell_box_A"] = cell_box
  manager = NeighborManager(displacement_fn, cell_box, r_cut, format=neighbor_format(format),
                            dr_threshold=dr_threshold, capacity_multiplier=capacity_multiplier, stats=stats,
                            label=label)

  signature = dict(kind="nve_neighbor_list", label=label, n_atoms=n_atoms, n_steps=int(n_steps), dt=float(dt),
                   record_every=int(record_every), dtype=str(dtype), **({} if box is None else dict(box=box)),
                   start=float(np.asarray(positions, np.float64).sum()))
  ckpt = load_run_checkpoint(checkpoint, signature, label, log)
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
    frames, kes = list(ckpt["frames"]), [np.asarray(ckpt["kinetic_energy"])]
    pes = [np.asarray(ckpt["potential_energy"])] if energy_fn is not None else None
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

  isolated = [0]

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
    gone = isolated_atoms(neighbor, n_atoms)
    if gone != isolated[0]:
      extra += (f"  {gone} atom(s) have left the piece (no neighbour within {r_cut + dr_threshold:g} A)"
                if gone else "  no atom is isolated any more")
      isolated[0] = gone
    stats["isolated_atoms"] = gone
    t = temperature_from_kinetic_energy(ke[-1], n_atoms)
    if checkpoint:
      files.save_checkpoint(checkpoint, dict(
          signature=files.to_json(signature), step=step, position=np.asarray(state.position),
          momentum=np.asarray(state.momentum), frames=np.asarray(frames), kinetic_energy=np.concatenate(kes),
          potential_energy=np.concatenate(pes) if pes is not None else np.zeros(0),
          stats={k: v for k, v in stats.items() if np.ndim(v) == 0}))
    return f"  T {t:6.2f} K{extra}"

  def reallocate(state):
    return manager.reallocate(state.position)

  if log is not None and start == 0:
    log(f"{label}: {n_atoms:,} atoms, {int(n_steps):,} steps of {dt * 1e3:g} fs "
        f"{'in free space' if box is None else f'in a periodic box of side {box:g} A'}, {dtype}, "
        f"neighbor list {format} (r_cut {r_cut:g} A + skin {dr_threshold:g} A), chunks of {chunk_steps}")
  state, neighbor = run_chunks(jax.jit(advance, static_argnums=2), state, n_steps=int(n_steps),
                               chunk_steps=int(chunk_steps), start=start, neighbor=neighbor, reallocate=reallocate,
                               accept=accept, positions_of=lambda s, out: out[0], n_atoms=n_atoms, stats=stats,
                               label=label, log=log, max_reallocations=max_reallocations)
  stats["atom_steps_per_s"] = n_atoms * stats["steps_run"] / max(stats["run_s"], 1e-9)
  stats["capacity_multiplier_final"] = manager.multiplier
  return NeighborListRun(np.asarray(frames), np.asarray(state.momentum), np.concatenate(kes),
                         np.concatenate(pes) if pes is not None else None, float(dt), int(record_every), stats)

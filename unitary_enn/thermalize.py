"""Thermalization at a temperature and pressure: Nose-Hoover NVT with a Berendsen barostat (Sec. 4.5, end).

    nvt_berendsen(force_fn, virial_fn, shift_fn, dt, kT, ...) -> (init_fn, apply_fn)   jax-md style pair
    thermalize_fcc(n_cells, temperature=60, time_ps=10, ...) -> Thermalized            a periodic FCC argon
                                                                                       crystal at T and P

Positions live in jax-md's fractional coordinates (`space.periodic_general(..., fractional_coordinates=True)`), so
a changing box needs no recompilation. Metal units: A, eV, ps, K; pressure in eV / A^3 inside, GPa outside.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import simulate, space

from unitary_enn import checks, files
from unitary_enn.constants import (ARGON_FCC_LATTICE_CONSTANT, ARGON_MASS, CROSS_TEMPERATURE, FOUR_BODY_DT,
                                   GPA_PER_EV_A3, KB)
from unitary_enn.neighbors import NeighborManager, neighbor_format
from unitary_enn.potentials import lj_cut_force_fn, lj_cut_virial_fn
from unitary_enn.quantity import kinetic_energy, maxwell_boltzmann_momenta, pressure, temperature_from_kinetic_energy
from unitary_enn.simulate import load_run_checkpoint, new_stats, run_chunks
from unitary_enn.structures import cells_per_side, fcc_lattice, unwrap_to_sites

Array = jax.Array


class BarostatState(NamedTuple):
  """The state of `nvt_berendsen`: jax-md's Nose-Hoover state (fractional positions) and the cubic box side (A)."""
  nvt: Any
  box: Array


def nvt_berendsen(force_fn, virial_fn, shift_fn, dt: float, kT: float, *, mass=ARGON_MASS, pressure_target=0.0,
                  barostat_every: int = 50, barostat_tau: float = 0.5, compressibility: float = 0.5,
                  thermostat_tau: float = 0.1):
  """Nose-Hoover NVT (jax-md `nvt_nose_hoover`) with an isotropic Berendsen barostat, in jax-md's (init, apply) style.

  Every `barostat_every` steps the pressure P (instantaneous virial, `quantity.pressure`) is measured and the box
  scaled by mu = [1 - compressibility (barostat_every dt / barostat_tau) (P_target - P)]^(1/3), clipped to
  1 +- 1%. Positions are fractional, so they scale with the box. Berendsen relaxes the volume without the box
  oscillations of the Martyna-Tobias-Klein barostat and costs one virial every `barostat_every` steps.

  Args:
    force_fn, virial_fn: `fn(positions, neighbor, box=...)` (e.g. `potentials.lj_cut_force_fn` and
      `lj_cut_virial_fn` on a `periodic_general` displacement with fractional coordinates).
    shift_fn: that space's shift.  dt: ps.  kT: eV.  mass: eV ps^2 / A^2.
    pressure_target: eV / A^3.  barostat_tau: ps.  compressibility: 1/GPa (solid argon near 60 K: ~0.3-0.5).
    thermostat_tau: the Nose-Hoover time constant in ps.

  Returns:
    (init_fn, apply_fn): `init_fn(key, positions, box, momenta, neighbor) -> BarostatState`;
    `apply_fn(state, neighbor, barostat_on) -> (state, neighbor, (kinetic energy eV, pressure eV/A^3, box A))`
    advances `barostat_every` steps, updating the neighbor list inside, and rescales the box when `barostat_on`
    (a traced bool: one compilation serves both phases). The caller checks the list after each call or chunk.
  """
  init_nvt, apply_nvt = simulate.nvt_nose_hoover(force_fn, shift_fn, dt, kT, tau=thermostat_tau)
  kappa_dt = float(compressibility) * GPA_PER_EV_A3 * barostat_every * dt / float(barostat_tau)  # A^3 / eV

  def init_fn(key, positions, box, momenta, neighbor):
    return BarostatState(init_nvt(key, positions, mass=mass, momenta=momenta, neighbor=neighbor, box=box), box)

  def apply_fn(state, neighbor, barostat_on):
    nvt, box = state

    def one(c, _):
      s, nb = c
      nb = nb.update(s.position, box=box)
      return (apply_nvt(s, neighbor=nb, box=box), nb), None

    (nvt, neighbor), _ = jax.lax.scan(one, (nvt, neighbor), None, length=barostat_every)
    ke = kinetic_energy(nvt.momentum, mass)
    p = pressure(ke, virial_fn(nvt.position, neighbor, box=box), box ** 3)
    mu = jnp.clip((1.0 - kappa_dt * (pressure_target - p)) ** (1.0 / 3.0), 0.99, 1.01)
    box = jnp.where(barostat_on, box * mu, box)
    # Scaling the box moves atoms without moving their fractional positions, which the list's skin test
    # does not see: mark the list stale so that the next update rebuilds it.
    neighbor = neighbor.set(reference_position=neighbor.reference_position + jnp.where(barostat_on, 0.25, 0.0))
    return BarostatState(nvt, box), neighbor, (ke, p, box)

  return init_fn, apply_fn


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
                   box_average_fraction: float = 0.25, thermostat_tau: float = 0.1,
                   initial_temperature: float | None = None, seed: int = 0, dtype=None,
                   format: str = "ordered_sparse", capacity_multiplier: float = 1.25, dr_threshold: float = 1.0,
                   chunk_steps: int = 1000, checkpoint: str | None = None, label: str = "thermalize",
                   log: Callable[[str], None] | None = print, max_reallocations: int = 8) -> Thermalized:
  """Thermalize a periodic FCC argon crystal (lj/cut) at `temperature` and zero pressure (Sec. 4.5).

  Two phases, in jitted chunks of `chunk_steps` with progress lines (`simulate.run_chunks`):
    1. the first `barostat_fraction` of the time: `nvt_berendsen` with the barostat on;
    2. the box is fixed to its mean over the last `box_average_fraction` of phase 1 and the rest runs as plain
       Nose-Hoover NVT.
  The neighbor list is rebuilt after each box change and checked after every chunk.

  Args:
    n_cells: crystal of n_cells^3 unit cells, 4 n_cells^3 atoms; the box must be >= 2 r_cut.
    temperature: K.  time_ps: total thermalization time (paper: 10 ps).  dt: ps.
    lattice_constant: the starting a in A (5.24411; the barostat then finds the 60 K one).
    r_cut: lj/cut truncation radius in A.  pressure_gpa: target pressure.
    barostat_fraction: share of the time with the barostat on (0 = NVT at the given lattice constant).
    barostat_every, barostat_tau, compressibility, thermostat_tau: of `nvt_berendsen`.
    box_average_fraction: the final part of the barostat phase over which the box is averaged.
    initial_temperature: of the Maxwell-Boltzmann start on the perfect lattice; default 2 * temperature (half
      of the kinetic energy flows into the potential energy within a few hundred fs).
    seed: for the initial velocities.  dtype: float dtype (default: JAX's default float).
    format, capacity_multiplier, dr_threshold: of the jax-md neighbor list (dr_threshold = skin in A).
    chunk_steps: steps per compiled chunk (a multiple of barostat_every).
    checkpoint: a file to save the state to after every chunk; an existing one is resumed from.

  Returns:
    `Thermalized`.
  """
  n = cells_per_side(n_cells)
  if len(set(n)) != 1:
    raise ValueError(f"n_cells must be one integer (a cubic crystal), got {n_cells!r}")
  n = n[0]
  temperature = checks.positive("temperature", temperature)
  dt = checks.positive("dt", dt)
  a0 = checks.positive("lattice_constant", lattice_constant)
  r_cut = checks.positive("r_cut", r_cut)
  box0 = n * a0
  if box0 < 2.0 * r_cut:
    raise ValueError(f"the box of n_cells={n} cells ({box0:.3f} A) is smaller than 2 * r_cut = {2 * r_cut} A: "
                     f"use n_cells >= {int(np.ceil(2 * r_cut / a0))}")
  barostat_every = checks.positive_int("barostat_every", barostat_every)
  chunk_steps = checks.positive_int("chunk_steps", chunk_steps)
  if chunk_steps % barostat_every:
    raise ValueError(f"chunk_steps ({chunk_steps}) must be a multiple of barostat_every ({barostat_every})")
  if not 0.0 <= barostat_fraction <= 1.0:
    raise ValueError(f"barostat_fraction must be in [0, 1], got {barostat_fraction}")
  if not 0.0 < box_average_fraction <= 1.0:
    raise ValueError(f"box_average_fraction must be in (0, 1], got {box_average_fraction}")
  for name, v in (("barostat_tau", barostat_tau), ("compressibility", compressibility),
                  ("thermostat_tau", thermostat_tau), ("time_ps", time_ps)):
    checks.positive(name, v)
  if not np.isfinite(pressure_gpa):
    raise ValueError(f"pressure_gpa must be finite, got {pressure_gpa}")
  n_steps = int(round(time_ps / dt / barostat_every)) * barostat_every
  if n_steps < barostat_every:
    raise ValueError(f"time_ps={time_ps} is shorter than barostat_every={barostat_every} steps of dt={dt} ps")
  barostat_steps = int(round(barostat_fraction * n_steps / barostat_every)) * barostat_every
  dtype = jnp.dtype(dtype or jnp.result_type(float))
  n_atoms = 4 * n ** 3
  mass = jnp.asarray(ARGON_MASS, dtype)

  displacement_fn, shift_fn = space.periodic_general(box0, fractional_coordinates=True)
  init_fn, apply_fn = nvt_berendsen(
      lj_cut_force_fn(displacement_fn, r_cut=r_cut), lj_cut_virial_fn(displacement_fn, r_cut=r_cut), shift_fn, dt,
      KB * temperature, mass=mass, pressure_target=float(pressure_gpa) / GPA_PER_EV_A3, barostat_every=barostat_every,
      barostat_tau=barostat_tau, compressibility=compressibility, thermostat_tau=thermostat_tau)
  stats = new_stats()
  manager = NeighborManager(displacement_fn, box0, r_cut, format=neighbor_format(format), dr_threshold=dr_threshold,
                            capacity_multiplier=capacity_multiplier, stats=stats, label=label,
                            fractional_coordinates=True)

  signature = dict(kind="thermalize_fcc", n_cells=n, temperature=temperature, n_steps=n_steps, dt=dt,
                   barostat_steps=barostat_steps, lattice_constant=a0, seed=int(seed), dtype=str(dtype),
                   pressure_gpa=float(pressure_gpa), barostat=(int(barostat_every), float(barostat_tau),
                                                               float(compressibility), float(box_average_fraction)),
                   thermostat_tau=float(thermostat_tau), r_cut=r_cut)
  sites = jnp.asarray(fcc_lattice(n, 1.0 / n), dtype)  # fractional
  ckpt = load_run_checkpoint(checkpoint, signature, label, log)
  if ckpt is None:
    box = jnp.asarray(box0, dtype)
    t0 = initial_temperature if initial_temperature is not None else 2.0 * temperature
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(seed), sites, mass,
                                        checks.positive("initial_temperature", t0))
    neighbor = manager.allocate(sites, box=box)
    state = init_fn(jax.random.PRNGKey(seed), sites, box, momenta, neighbor)
    start, series = 0, dict(step=[], temperature_K=[], pressure_GPa=[], box_A=[])
  else:
    box = jnp.asarray(ckpt["box"], dtype)
    positions = jnp.asarray(ckpt["positions"], dtype)
    neighbor = manager.allocate(positions, box=box)
    fresh = init_fn(jax.random.PRNGKey(seed), positions, box, jnp.asarray(ckpt["momenta"], dtype), neighbor)
    state = jax.tree.unflatten(jax.tree.structure(fresh), [jnp.asarray(x) for x in ckpt["state"]])
    start, series = int(ckpt["step"]), {k: list(np.asarray(v)) for k, v in ckpt["series"].items()}
    stats.update({k: v for k, v in ckpt["stats"].items() if k != "allocations"})
    if log is not None:
      log(f"{label}: resuming from {checkpoint} at step {start:,}")

  def advance(carry, neighbor, n_chunk):
    state, barostat_on = carry

    def body(c, _):
      s, nb, out = apply_fn(*c, barostat_on)
      return (s, nb), out

    (state, neighbor), out = jax.lax.scan(body, (state, neighbor), None, length=n_chunk // barostat_every)
    return (state, barostat_on), neighbor, out

  advance = jax.jit(advance, static_argnums=2)

  def save(step, carry):
    if checkpoint:
      state, on = carry
      files.save_checkpoint(checkpoint, dict(
          signature=files.to_json(signature), step=step, box=float(state.box), barostat_on=bool(on),
          positions=np.asarray(state.nvt.position), momenta=np.asarray(state.nvt.momentum),
          state=[np.asarray(x) for x in jax.tree.leaves(state)],
          series={k: np.asarray(v, np.float64) for k, v in series.items()},
          stats={k: v for k, v in stats.items() if np.ndim(v) == 0}))

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
    return manager.reallocate(carry[0].nvt.position, box=carry[0].box)

  on = bool(ckpt["barostat_on"]) if ckpt is not None else barostat_steps > 0
  carry = (state, jnp.asarray(on))
  common = dict(label=label, log=log, chunk_steps=chunk_steps, accept=accept, reallocate=reallocate,
                positions_of=lambda c, out: c[0].nvt.position, n_atoms=n_atoms, stats=stats,
                max_reallocations=max_reallocations)
  if log is not None and start == 0:
    log(f"{label}: {n_atoms:,} atoms ({n}^3 FCC cells, a = {a0} A), {n_steps:,} steps of {dt * 1e3:g} fs at "
        f"{temperature:g} K: Berendsen barostat to {pressure_gpa:g} GPa for {barostat_steps:,} steps, then NVT")
  if start < barostat_steps:
    carry, neighbor = run_chunks(advance, carry, n_steps=barostat_steps, start=start, neighbor=neighbor, **common)
    start = barostat_steps
  if bool(carry[1]):  # the barostat phase is over: fix the box
    # Fix the box at its mean over the end of the barostat phase (less noisy than the last value).
    first = barostat_steps * (1.0 - box_average_fraction)
    steps_arr, boxes = np.asarray(series["step"]), np.asarray(series["box_A"])
    late = boxes[(steps_arr > first) & (steps_arr <= barostat_steps)]
    late = late if len(late) else boxes[-1:]
    state = carry[0]._replace(box=jnp.asarray(np.mean(late), dtype))
    carry = (state, jnp.asarray(False))
    neighbor = manager.allocate(state.nvt.position, box=state.box)
    save(start, carry)
    if log is not None:
      log(f"{label}: box fixed at {float(state.box):.4f} A (a = {float(state.box) / n:.5f} A), the mean over "
          f"steps {int(first):,}..{barostat_steps:,}; NVT from here")
  if start < n_steps:
    carry, neighbor = run_chunks(advance, carry, n_steps=n_steps, start=start, neighbor=neighbor, **common)
  state = carry[0]
  box = float(state.box)
  frac = np.asarray(state.nvt.position, np.float64)
  positions = unwrap_to_sites((frac % 1.0) * box, np.asarray(sites, np.float64) * box, box)
  stats["atom_steps_per_s"] = n_atoms * stats["steps_run"] / max(stats["run_s"], 1e-9)
  return Thermalized(positions, np.asarray(state.nvt.momentum, np.float64), box, n,
                     {k: np.asarray(v) for k, v in series.items()}, stats)

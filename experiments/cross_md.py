r"""MD of the argon cross with analytical and network forces (paper Sec. 4.5, end; Fig. 11-14).

  python -m experiments.cross_md --train_workdir=workdirs/many_body   # MD with a trained many_body model
  python -m experiments.cross_md                                      # no model given: trains the quick one
                                                                      # first in <workdir>/train
  python -m experiments.cross_md --config=experiments/configs/cross_md.py:paper --train_workdir=DIR
  python -m experiments.cross_md --config=experiments/configs/cross_md.py:tiny --workdir=/tmp/cross
  python -m experiments.cross_md --train_workdir=DIRECT --conservative_workdir=CONSERVATIVE

1. Thermalizes a periodic FCC argon crystal (lj/cut 10 A) at 60 K and zero pressure: Nose-Hoover NVT with a
   Berendsen barostat for the first half, then NVT at the box found (`unitary_enn.thermalize.thermalize_fcc`).
2. Fixes the box and cuts out the 3-D cross: three orthogonal bars through the centre, `bar_width_cells` wide
   (`unitary_enn.structures.cross_geometry`); removes its centre-of-mass momentum.
3. Runs free-space NVE (velocity Verlet, 1 fs) from that state with analytical lj/cut forces, with the trained
   descriptor network (direct forces, the paper), and, when asked for, with a conservative many-body model
   (F = -grad E of a sum of atomic energies on the same layers; --conservative_workdir, else
   `config.conservative_train_config` when not empty, trained first in <workdir>/train_conservative; the tiny
   config does, the quick and paper configs do not, since that training takes ~30x the direct model's time) (`unitary_enn.simulate.run_nve_neighbor_list`, jax-md
   neighbor lists checked for overflow after every chunk). The conservative run also reports the drift of its own
   total energy (KE + the model's energy, evaluated at the recorded frames).

Writes to --workdir: results.json; figures/position_rmsd.png (Fig. 12), figures/temperature.png (Fig. 14),
figures/cross.png (Fig. 13: rendered projections before and after, both runs), figures/thermalization.png;
trajectories/{analytical,network}.xyz (extended XYZ every `xyz_every` steps, for ASE and OVITO);
series.npz (temperature of both runs at every step, position RMSD and energies at the recorded frames).
Thermalization and both runs checkpoint every chunk under checkpoints/: run the same command again to resume a
killed run (a finished stage is read back in seconds).
"""

from __future__ import annotations

import functools
import hashlib
import os
import time

from experiments.common import (RESULTS, conservative_model, experiment_main, prepare_workdir, setup_dtype,
                                trained_model, train_workdir_flag, with_trained_model)

LABELS = {"analytical": "analytical lj/cut", "network": "ENN", "conservative": "ENN, conservative"}
COLORS = {"analytical lj/cut": "k", "ENN": "C0", "ENN, conservative": "C3"}


def _validate(config):
  from unitary_enn import kernels, neighbors, structures
  if config.dtype not in ("float32", "float64"):
    raise ValueError(f"config.dtype must be 'float32' or 'float64', got {config.dtype!r}")
  structures.cross_atom_count(config.n_cells, config.bar_width_cells)  # checks n_cells and bar_width_cells
  if config.n_cells * config.lattice_constant < 2 * config.r_cut:
    raise ValueError(f"config.n_cells={config.n_cells} gives a box of {config.n_cells * config.lattice_constant:.2f} "
                     f"A < 2 * r_cut = {2 * config.r_cut} A; the periodic thermalization needs a larger crystal")
  for key in ("n_steps", "chunk_steps", "record_every", "barostat_every"):
    if config[key] < 1:
      raise ValueError(f"config.{key} must be >= 1, got {config[key]}")
  if config.n_steps % config.record_every or config.chunk_steps % config.record_every:
    raise ValueError(f"config.n_steps ({config.n_steps}) and config.chunk_steps ({config.chunk_steps}) must be "
                     f"multiples of config.record_every ({config.record_every})")
  if config.xyz_every < 0 or (config.xyz_every and config.xyz_every % config.record_every):
    raise ValueError(f"config.xyz_every ({config.xyz_every}) must be 0 (no XYZ) or a multiple of "
                     f"config.record_every ({config.record_every})")
  for key in ("dt", "temperature", "thermalize_ps", "r_cut"):
    if not config[key] > 0:
      raise ValueError(f"config.{key} must be > 0, got {config[key]}")
  for key in ("format", "network_format", "thermalize_format"):
    if config[key] not in neighbors.NEIGHBOR_FORMATS:
      raise ValueError(f"config.{key} must be one of {neighbors.NEIGHBOR_FORMATS}, got {config[key]!r}")
  kernels.check_sum_kernel(config.sum_kernel)
  if config.sum_kernel == "pallas" and config.network_format != "dense":
    raise ValueError(f"config.sum_kernel='pallas' needs config.network_format='dense', got "
                     f"{config.network_format!r}")


def run(config, workdir: str, train_workdir: str | None = None, conservative_workdir: str | None = None) -> dict:
  """Thermalize, cut the cross, run NVE with analytical, network and conservative forces, write results and figures.

  Args:
    config: from `experiments/configs/cross_md.py`.
    workdir: where results.json, figures/, trajectories/ and checkpoints/ go (and the model, if trained here).
    train_workdir: a many_body workdir holding its model; overrides `config.train_workdir`. When both are
      empty the model is trained first in `<workdir>/train` with `config.train_config` (or reused from there).
    conservative_workdir: a many_body workdir holding a conservative model; overrides
      `config.conservative_workdir`; else trained in `<workdir>/train_conservative` with
      `config.conservative_train_config` (or reused from there).

  Returns:
    The results dict written to results.json.
  """
  _validate(config)
  t_start = time.time()
  prepare_workdir(workdir)
  tm = trained_model(config, workdir, train_workdir, trained_by="many_body", caller="cross_md",
                     minutes=10, forces="direct")
  model, train_workdir, train_results = tm["model"], tm["train_workdir"], tm["train_results"]
  trained_here, train_time = tm["trained_here"], tm["train_time_s"]
  # The conservative run is opt-in outside the tiny config: training its model takes ~30x the direct one's time.
  tc = conservative_model(config, workdir, conservative_workdir, trained_by="many_body", caller="cross_md",
                          minutes=60)
  with_conservative = tc is not None
  cmodel = tc["model"] if with_conservative else None

  dtype = setup_dtype(config)
  import jax.numpy as jnp
  import numpy as np

  from unitary_enn import constants, files, models, neighbors, plots, potentials, quantity, simulate, structures
  from unitary_enn.constants import ARGON_MASS
  from unitary_enn.thermalize import thermalize_fcc

  ckpt_dir = os.path.join(workdir, "checkpoints")
  os.makedirs(ckpt_dir, exist_ok=True)
  model_ids = {}
  for name, folder in (("network", train_workdir),) + ((("conservative", tc["train_workdir"]),) if tc else ()):
    with open(os.path.join(folder, models.MODEL_FILE), "rb") as f:
      model_ids[name] = hashlib.sha1(f.read()).hexdigest()[:12]  # a network run resumes only with the same model

  # --- 1. Thermalization at 60 K and zero pressure (periodic) ---
  n = int(config.n_cells)
  th = thermalize_fcc(
      n, temperature=config.temperature, time_ps=config.thermalize_ps, dt=config.dt,
      lattice_constant=config.lattice_constant, r_cut=config.r_cut, pressure_gpa=config.pressure_gpa,
      barostat_fraction=config.barostat_fraction, barostat_every=config.barostat_every,
      barostat_tau=config.barostat_tau, compressibility=config.compressibility,
      box_average_fraction=config.box_average_fraction,
      thermostat_tau=config.thermostat_tau, seed=config.seed, dtype=dtype, format=config.thermalize_format,
      capacity_multiplier=config.capacity_multiplier, dr_threshold=config.dr_threshold,
      chunk_steps=_multiple(config.chunk_steps, config.barostat_every),
      checkpoint=os.path.join(ckpt_dir, "thermalize.msgpack"))
  last = th.series["step"] > th.series["step"][-1] - 0.25 * th.series["step"][-1]  # the last quarter
  thermal = dict(n_atoms=len(th.positions), box_A=th.box, lattice_constant_A=th.lattice_constant,
                 temperature_K_last_quarter=float(np.mean(th.series["temperature_K"][last])),
                 pressure_GPa_last_quarter=float(np.mean(th.series["pressure_GPa"][last])),
                 pressure_GPa_std_last_quarter=float(np.std(th.series["pressure_GPa"][last])),
                 atom_steps_per_s=th.stats["atom_steps_per_s"], compile_s=th.stats["compile_s"],
                 run_s=th.stats["run_s"], neighbor_reallocations=th.stats["reallocations"])

  # --- 2. The cross ---
  centre, width = structures.cross_geometry(th.box, n, config.bar_width_cells)
  mask = structures.cross_mask(th.positions, centre, width)
  positions = jnp.asarray(th.positions[mask], dtype)
  momenta = th.momenta[mask]
  momenta = jnp.asarray(momenta - momenta.mean(axis=0), dtype)  # equal masses: zero net momentum
  n_atoms = int(mask.sum())
  expected = structures.cross_atom_count(n, config.bar_width_cells)
  print(f"cross_md: cut the cross ({config.bar_width_cells}-cell bars, {width:.3f} A wide) from the "
        f"{len(th.positions):,}-atom crystal: {n_atoms:,} atoms ({expected:,} sites; the paper's 50^3 crystal: "
        f"{structures.cross_atom_count():,}, the paper reports {constants.PAPER_CROSS_ATOMS:,}); "
        f"T = {float(quantity.temperature(momenta, ARGON_MASS)):.2f} K", flush=True)

  # Where the network stands on this very configuration: its forces against lj/cut, and the MD force function
  # (neighbor list, jitted) against the workdir's own force field (models.load_force_field).
  lj_builder = functools.partial(potentials.lj_cut_force_fn, r_cut=config.r_cut)
  net_builder = functools.partial(models.many_body_force_fn, model)
  f_lj = np.asarray(neighbors.neighbor_list_model(lj_builder, r_cut=config.r_cut, format="ordered_sparse")(positions))
  f_net = np.asarray(neighbors.neighbor_list_model(net_builder, r_cut=model.r_cut, format="ordered_sparse")(positions))
  f_io = np.asarray(models.load_force_field(train_workdir)(np.asarray(positions)))
  force_check = dict(
      network_force_rmse_eV_A=float(np.sqrt(np.mean((f_net - f_lj) ** 2))),
      lj_force_rms_eV_A=float(np.sqrt(np.mean(f_lj ** 2))),
      md_vs_load_force_field_max_abs_eV_A=float(np.max(np.abs(f_net - f_io))),
      network_net_force_eV_A=float(np.linalg.norm(f_net.sum(axis=0))))
  if cmodel is not None:
    cons_builder = functools.partial(models.many_body_force_fn, cmodel)
    f_cons = np.asarray(neighbors.neighbor_list_model(cons_builder, r_cut=cmodel.r_cut,
                                                      format="ordered_sparse")(positions))
    f_cons_io = np.asarray(models.load_force_field(tc["train_workdir"])(np.asarray(positions)))
    force_check.update(
        conservative_force_rmse_eV_A=float(np.sqrt(np.mean((f_cons - f_lj) ** 2))),
        conservative_md_vs_load_force_field_max_abs_eV_A=float(np.max(np.abs(f_cons - f_cons_io))),
        conservative_net_force_eV_A=float(np.linalg.norm(f_cons.sum(axis=0))))
  cons_text = (f", the conservative model's {force_check['conservative_force_rmse_eV_A']:.5f} eV/A"
               if cmodel is not None else "")
  print(f"cross_md: on the initial cross the network's force RMSE is {force_check['network_force_rmse_eV_A']:.5f} "
        f"eV/A{cons_text} (lj/cut force RMS {force_check['lj_force_rms_eV_A']:.4f} eV/A)", flush=True)

  # --- 3. NVE with analytical and network forces ---
  energy_builder = functools.partial(potentials.lj_cut_energy_fn, r_cut=config.r_cut)
  # The MD runs compute the descriptor sums as config.sum_kernel says (the force check above: the default, "auto").
  kernel = dict(sum_kernel=config.sum_kernel)
  setups = {"analytical": (lj_builder, config.r_cut, config.format),
            "network": (functools.partial(net_builder, **kernel), model.r_cut, config.network_format)}
  if cmodel is not None:
    setups["conservative"] = (functools.partial(cons_builder, **kernel), cmodel.r_cut, config.network_format)
  runs = {}
  for name, (builder, r_cut, fmt) in setups.items():
    runs[name] = simulate.run_nve_neighbor_list(
        builder, positions, momenta, mass=ARGON_MASS, dt=config.dt, n_steps=config.n_steps, r_cut=r_cut,
        record_every=config.record_every, chunk_steps=config.chunk_steps, energy_fn_builder=energy_builder,
        format=fmt, capacity_multiplier=config.capacity_multiplier, dr_threshold=config.dr_threshold,
        checkpoint=os.path.join(ckpt_dir, f"{name}_{model_ids[name]}.msgpack" if name in model_ids
                                else f"{name}.msgpack"),
        label=f"md[{name}]")

  # --- Observables ---
  ref, net, cons = runs["analytical"], runs["network"], runs.get("conservative")
  frame_steps = ref.steps
  rmsd = np.asarray(quantity.position_rmsd(ref.positions[:, None], net.positions[:, None]))
  temps = {k: r.temperature for k, r in runs.items()}
  steps = np.arange(config.n_steps + 1)
  energy = {k: r.kinetic_energy[::config.record_every] + r.potential_energy for k, r in runs.items()}
  per_run = {}
  for name, r in runs.items():
    e = energy[name]
    per_run[name] = dict(
        atom_steps_per_s=r.stats["atom_steps_per_s"], steps_per_s=r.stats["steps_run"] / max(r.stats["run_s"], 1e-9),
        compile_s=r.stats["compile_s"], run_s=r.stats["run_s"],
        neighbor_reallocations=r.stats["reallocations"], redone_steps=r.stats["redone_steps"],
        temperature_initial_K=float(temps[name][0]), temperature_final_K=float(temps[name][-1]),
        temperature_mean_K=float(np.mean(temps[name])),
        total_energy_initial_eV=float(e[0]), total_energy_final_eV=float(e[-1]),
        energy_drift_rel=float(abs(e[-1] - e[0]) / abs(e[0])),
        energy_max_deviation_rel=float(np.max(np.abs(e - e[0])) / abs(e[0])),
        extent_final_A=float(np.max(np.ptp(r.positions[-1], axis=0))))
  conservative_results, conservative_series = {}, {}
  if cons is not None:
    rmsd_cons = np.asarray(quantity.position_rmsd(ref.positions[:, None], cons.positions[:, None]))
    # The conservative model's own total energy at the frames: KE + E_model (what its NVE conserves).
    model_energy = models.load_energy_field(cmodel)
    own_energy = cons.kinetic_energy[::config.record_every] + np.asarray(
        [float(model_energy(np.asarray(p))) for p in cons.positions])
    per_run["conservative"].update(
        own_total_energy_initial_eV=float(own_energy[0]), own_total_energy_final_eV=float(own_energy[-1]),
        own_energy_drift_rel=float(abs(own_energy[-1] - own_energy[0]) / abs(own_energy[0])),
        own_energy_max_deviation_rel=float(np.max(np.abs(own_energy - own_energy[0])) / abs(own_energy[0])))
    conservative_results = dict(
        final_position_rmsd_A_conservative=float(rmsd_cons[-1]),
        mean_abs_temperature_difference_K_conservative=float(np.mean(np.abs(temps["conservative"]
                                                                            - temps["analytical"]))),
        energy_drift_rel_conservative=per_run["conservative"]["energy_drift_rel"],
        own_energy_drift_rel_conservative=per_run["conservative"]["own_energy_drift_rel"],
        atom_steps_per_s_conservative=per_run["conservative"]["atom_steps_per_s"],
        position_rmsd_A_conservative={str(int(s)): float(v) for s, v in zip(frame_steps, rmsd_cons)
                                      if s in _report_steps(config.n_steps)},
        conservative_workdir=os.path.abspath(tc["train_workdir"]),
        conservative_trained_here=tc["trained_here"],
        conservative_model_test_force_rmse=tc["train_results"].get("test_force_rmse"),
        conservative_model_sizes=list(cmodel.sizes),
        conservative_train_wall_time_s=tc["train_time_s"])
    conservative_series = dict(position_rmsd_conservative=rmsd_cons, conservative_own_total_energy=own_energy)
  results = dict(
      experiment="cross_md",
      n_atoms=n_atoms,
      final_position_rmsd_A=float(rmsd[-1]),
      mean_abs_temperature_difference_K=float(np.mean(np.abs(temps["network"] - temps["analytical"]))),
      energy_drift_rel_analytical=per_run["analytical"]["energy_drift_rel"],
      atom_steps_per_s_analytical=per_run["analytical"]["atom_steps_per_s"],
      atom_steps_per_s_network=per_run["network"]["atom_steps_per_s"],
      position_rmsd_A={str(int(s)): float(v) for s, v in zip(frame_steps, rmsd)
                       if s in _report_steps(config.n_steps)},
      energy_drift_rel_network=per_run["network"]["energy_drift_rel"],
      **conservative_results,
      runs=per_run,
      thermalization=thermal,
      network_on_initial_cross=force_check,
      cross=dict(n_cells=n, bar_width_cells=int(config.bar_width_cells), bar_width_A=float(width),
                 centre_A=[float(x) for x in centre], crystal_atoms=len(th.positions), sites_in_cross=expected,
                 paper_size_atoms=structures.cross_atom_count(), paper_reported_atoms=constants.PAPER_CROSS_ATOMS),
      definitions=dict(
          final_position_rmsd="eq. 49 with one sample: sqrt(mean over atoms of |r_analytical - r_network|^2) "
                              "at the last step, A",
          mean_abs_temperature_difference="mean over every step of |T_network - T_analytical|, T = 2 KE / "
                                          "((3N - 3) k_B), K",
          energy_drift_rel="|E(n_steps) - E(0)| / |E(0)|, E = KE + lj/cut potential energy (eq. 48; for the "
                           "network runs at their own positions)",
          own_energy_drift_rel="the same with E = KE + the conservative model's own energy (sum of atomic "
                               "energies), evaluated at the recorded frames",
          atom_steps_per_s="atoms x steps / seconds spent in the compiled MD chunks (compilation excluded), "
                           "measured in this run on this machine",
          thermalization="Nose-Hoover NVT + Berendsen barostat to 0 GPa, then NVT at the box averaged over the "
                         "end of the barostat phase; pressure from the virial, lj/cut without tail correction; "
                         "*_last_quarter = mean over the last quarter of the thermalization (NVT)"),
      paper=dict(n_cells=constants.PAPER_CROSS_CELLS, n_atoms=constants.PAPER_CROSS_ATOMS, thermalize_ps=10.0, n_steps=20_000,
                 note="the paper gives no numbers for this experiment, only that the temperatures agree well"),
      train_workdir=os.path.abspath(train_workdir),
      trained_here=trained_here,
      model_test_force_rmse=train_results.get("test_force_rmse"),
      model_sizes=list(model.sizes),
      n_steps=config.n_steps, dt_ps=config.dt, dtype=config.dtype,
      train_wall_time_s=train_time,
      wall_time_s=time.time() - t_start,
      config=config.to_dict(),
      versions=files.package_versions(),
  )

  # --- Files: series, trajectories, figures ---
  np.savez_compressed(os.path.join(workdir, "series.npz"), steps=steps, frame_steps=frame_steps,
                      position_rmsd=rmsd, **conservative_series,
                      **{f"{k}_temperature": v for k, v in temps.items()},
                      **{f"{k}_total_energy": v for k, v in energy.items()},
                      thermalization_step=th.series["step"],
                      **{f"thermalization_{k}": v for k, v in th.series.items() if k != "step"})
  if config.xyz_every:
    stride = config.xyz_every // config.record_every
    for name, r in runs.items():
      files.write_extxyz(os.path.join(workdir, "trajectories", f"{name}.xyz"), r.positions[::stride],
                      steps=frame_steps[::stride], dt=config.dt, cell=th.box)
  fig = os.path.join(workdir, "figures")
  rmsd_curves = {"ENN vs analytical": rmsd[1:]}
  if cons is not None:
    rmsd_curves["conservative ENN vs analytical"] = rmsd_cons[1:]
  plots.plot_vs_step(frame_steps[1:], rmsd_curves,
                     os.path.join(fig, "position_rmsd.png"), ylabel="position RMSD (A), eq. 49", logy=True,
                     title=f"Argon cross, {n_atoms:,} atoms: ENN vs analytical lj/cut (paper Fig. 12)")
  plots.plot_vs_step(steps, {LABELS[k]: v for k, v in temps.items()}, os.path.join(fig, "temperature.png"),
                     ylabel="temperature (K)", colors=COLORS, styles={"ENN": "--", "ENN, conservative": ":"},
                     title=f"Argon cross, {n_atoms:,} atoms: temperature from kinetic energy (paper Fig. 14)")
  snapshots = {"initial (every run)": ref.positions[0],
               f"analytical, step {config.n_steps:,}": ref.positions[-1],
               f"ENN, step {config.n_steps:,}": net.positions[-1]}
  if cons is not None:
    snapshots[f"conservative ENN, step {config.n_steps:,}"] = cons.positions[-1]
  plots.plot_atom_projections(
      snapshots,
      os.path.join(fig, "cross.png"), centre=centre, groups=_cross_groups(th.positions[mask], centre, width),
      group_names=("centre", "x bar", "y bar", "z bar"),
      title=f"Argon cross, {n_atoms:,} atoms, {config.n_steps * config.dt:g} ps of NVE (paper Fig. 13)")
  time_ps = th.series["step"] * config.dt
  barostat_end = config.barostat_fraction * config.thermalize_ps
  plots.plot_panels(
      time_ps, [("temperature (K)", {"T": th.series["temperature_K"]}),
                ("pressure (GPa)", {"P": th.series["pressure_GPa"]}),
                ("lattice constant (A)", {"a": th.series["box_A"] / n})],
      os.path.join(fig, "thermalization.png"), xlabel="time (ps)", hlines=(config.temperature, config.pressure_gpa,
                                                                         None),
      title=f"Thermalization of {len(th.positions):,} atoms (barostat until {barostat_end:g} ps, then NVT)")
  results["wall_time_s"] = time.time() - t_start
  files.write_json(os.path.join(workdir, RESULTS), results)
  _print_summary(results, workdir)
  return results


def _cross_groups(positions, centre, width):
  """0 for atoms of the central cube, 1, 2, 3 for the arms of the x, y, z bars: `(N,)` ints."""
  import numpy as np
  inside = np.abs(np.asarray(positions) - centre) < 0.5 * width
  return np.where(inside.all(axis=1), 0, 1 + np.argmin(inside, axis=1))


def _multiple(value: int, of: int) -> int:
  """The smallest multiple of `of` that is >= value."""
  return -(-int(value) // int(of)) * int(of)


def _report_steps(n_steps: int) -> set[int]:
  return {s for s in (100, 1_000, 5_000, 10_000, 20_000, n_steps) if s <= n_steps}


def _print_summary(r: dict, workdir: str) -> None:
  a, nn, c = r["runs"]["analytical"], r["runs"]["network"], r["runs"].get("conservative")
  if c is None:
    print(f"cross_md: {r['n_atoms']:,} atoms, {r['n_steps']:,} steps: final position RMSD "
          f"{r['final_position_rmsd_A']:.4g} A, mean |T - T_analytical| {r['mean_abs_temperature_difference_K']:.3g} K, "
          f"energy drift analytical {r['energy_drift_rel_analytical']:.2e}, ENN {nn['energy_drift_rel']:.2e}; "
          f"{a['atom_steps_per_s'] / 1e3:.1f}k atom-steps/s analytical, {nn['atom_steps_per_s'] / 1e3:.1f}k ENN "
          f"(no conservative run: --conservative_workdir adds one); total {r['wall_time_s']:.0f} s; results in "
          f"{os.path.join(workdir, 'results.json')}", flush=True)
    return
  print(f"cross_md: {r['n_atoms']:,} atoms, {r['n_steps']:,} steps: final position RMSD "
        f"{r['final_position_rmsd_A']:.4g} A (conservative {r['final_position_rmsd_A_conservative']:.4g} A), "
        f"mean |T - T_analytical| {r['mean_abs_temperature_difference_K']:.3g} K (conservative "
        f"{r['mean_abs_temperature_difference_K_conservative']:.3g} K), energy drift analytical "
        f"{r['energy_drift_rel_analytical']:.2e}, ENN {nn['energy_drift_rel']:.2e}, conservative "
        f"{c['energy_drift_rel']:.2e} (its own energy {c['own_energy_drift_rel']:.2e}); "
        f"{a['atom_steps_per_s'] / 1e3:.1f}k atom-steps/s analytical, {nn['atom_steps_per_s'] / 1e3:.1f}k ENN, "
        f"{c['atom_steps_per_s'] / 1e3:.1f}k conservative; total {r['wall_time_s']:.0f} s; results in "
        f"{os.path.join(workdir, 'results.json')}", flush=True)


main = with_trained_model(run, "many_body", conservative=True)


if __name__ == "__main__":
  experiment_main("cross_md", main, train_workdir_flag("many_body", conservative=True))

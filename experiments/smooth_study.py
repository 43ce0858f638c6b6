r"""Smooth unit vectors against eq. 9 at equal training budget (docs/decisions.md §14), with one command.

  python -m experiments.smooth_study --workdir=workdirs/smooth_study                      # eps 0, 0.1, 1; quick configs
  python -m experiments.smooth_study --config=experiments/configs/smooth_study.py:tiny --workdir=/tmp/smooth

For each eps of `config.eps_values` it runs, in `<workdir>/eps_<eps>/`, the same commands a user runs (each in its
own process, skipped when its results.json exists, resumed from its checkpoints when killed):

  four_body/      python -m experiments.four_body --config=experiments/configs/four_body.py:quick --config.eps=EPS
  four_body_md/   python -m experiments.four_body_md --config=...four_body_md.py:quick --train_workdir=.../four_body
  many_body/      python -m experiments.many_body --config=experiments/configs/many_body.py:quick --config.eps=EPS
  cross_md/       python -m experiments.cross_md --config=...cross_md.py:quick --train_workdir=.../many_body

(the thermalization and the analytical run of cross_md are the same for every eps: later runs start from the first
one's checkpoints), and then measures, per model:

  four atoms   force RMSE binned by |F| on the test split and on the frames of the analytical MD (near the LJ
               minimum); MD agreement horizon (first step where the 10-sample position RMSD exceeds
               `horizon_rmsd`), position RMSD at 1,500 and 4,000 steps, energy RMSD at 4,000 (eq. 49, 50);
  many atoms   forces on a perfect and on isotropically strained FCC crystals (0 by symmetry) with float32 and
               float64 positions and with float64 descriptor sums; the gain of the network at zero input (which
               turns descriptor rounding into force); the force on one atom displaced by delta against lj/cut;
               force RMSE binned by |F| on the test split and on frames of the cross at 60 K; the cross MD's
               position RMSD at 1,000 and 4,000 steps and mean |T_ENN - T_analytical|.

Writes <workdir>/smooth_study.json (everything) and <workdir>/table.md (the README table).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from experiments.common import RESULTS, experiment_main, prepare_workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "experiments", "configs")
RESULT_FILE = "smooth_study.json"


def model_specs(config) -> list[tuple[str, list[str], tuple[str, ...]]]:
  """(name, config overrides, stages) of every model of the study: one per eps of `eps_values` (both stages),
  then `extra_many_body` entries "NAME:KEY=VALUE,KEY=VALUE" (many-body stage only, overrides of the many_body
  config, e.g. "eps_1_lr1e-3:eps=1.0,learning_rate=1e-3"); `config.seed` goes to every training run."""
  seed = [f"--config.seed={int(config.seed)}"] if config.seed else []
  specs = [(f"eps_{float(eps):g}", [f"--config.eps={float(eps)!r}", *seed], tuple(config.stages))
           for eps in config.eps_values]
  for entry in config.extra_many_body:
    name, _, overrides = entry.partition(":")
    if not name or not overrides or "/" in name:
      raise ValueError(f"config.extra_many_body entry {entry!r}: expected NAME:KEY=VALUE[,KEY=VALUE...]")
    flags = seed + [f"--config.{kv.strip()}" for kv in overrides.split(",") if kv.strip()]
    if any("=" not in f for f in flags):
      raise ValueError(f"config.extra_many_body entry {entry!r}: every override needs KEY=VALUE")
    specs.append((name, flags, ("many_body",)))
  names = [n for n, _, _ in specs]
  if len(set(names)) != len(names):
    raise ValueError(f"the study's model names repeat: {names}")
  return specs


def _run_stage(module: str, args: list[str], workdir: str) -> None:
  """`python -m experiments.<module> ARGS --workdir=WORKDIR` in a fresh process, unless WORKDIR holds results.json.

  Output goes to `<workdir>.log`. A fresh process per stage keeps each run identical to the command a user
  types (the MD binaries switch on 64-bit JAX, which training must not inherit).
  """
  if os.path.exists(os.path.join(workdir, RESULTS)):
    print(f"smooth_study: {workdir} is done, reusing it", flush=True)
    return
  cmd = [sys.executable, "-m", f"experiments.{module}", *args, f"--workdir={workdir}"]
  print(f"smooth_study: {' '.join(cmd[1:])}  (log: {workdir}.log)", flush=True)
  t0 = time.time()
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  with open(workdir + ".log", "a") as log:
    rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
  if rc:
    raise RuntimeError(f"{' '.join(cmd)} failed with exit status {rc}; see {workdir}.log")
  print(f"smooth_study: done in {time.time() - t0:.0f} s", flush=True)


def _seed_cross_checkpoints(source: str, target: str) -> None:
  """Copy the thermalization and analytical-run checkpoints of one cross_md workdir to another (they do not
  depend on the model; each checkpoint carries the signature of its run, which the run checks)."""
  for name in ("thermalize.msgpack", "analytical.msgpack"):
    src, dst = os.path.join(source, "checkpoints", name), os.path.join(target, "checkpoints", name)
    if os.path.exists(src) and not os.path.exists(dst):
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      shutil.copyfile(src, dst)


def run_stages(config, workdir: str) -> None:
  """Train and run every model of the study (each stage skipped when done)."""
  first_cross = None
  for name, overrides, stages in model_specs(config):
    d = os.path.join(workdir, name)
    if "four_body" in stages:
      _run_stage("four_body", [f"--config={CONFIGS}/four_body.py:{config.four_body_config}", *overrides],
                 os.path.join(d, "four_body"))
      _run_stage("four_body_md", [f"--config={CONFIGS}/four_body_md.py:{config.four_body_md_config}",
                                  f"--train_workdir={os.path.join(d, 'four_body')}"], os.path.join(d, "four_body_md"))
    if "many_body" in stages:
      # The paper's network (no linear path beside it): the study compares its unit vectors, eq. 9 or smooth.
      _run_stage("many_body", [f"--config={CONFIGS}/many_body.py:{config.many_body_config}",
                               "--config.linear_path=False", "--config.compare_plain=False", *overrides],
                 os.path.join(d, "many_body"))
      cross = os.path.join(d, "cross_md")
      if first_cross:
        _seed_cross_checkpoints(first_cross, cross)
      _run_stage("cross_md", [f"--config={CONFIGS}/cross_md.py:{config.cross_md_config}",
                              f"--train_workdir={os.path.join(d, 'many_body')}"], cross)
      first_cross = first_cross or cross


# --- Measurements ------------------------------------------------------------------------------------------------


def binned_force_errors(reference, predicted, edges) -> list[dict]:
  """Force errors binned by the reference force magnitude on each atom.

  Args:
    reference, predicted: `(..., 3)` forces in eV/A (the last axis x, y, z; leading axes are atoms).
    edges: increasing bin edges in eV/A; bin k holds atoms with edges[k] <= |F_ref| < edges[k + 1].

  Returns:
    One dict per bin: lo, hi, n_atoms, force_rms (RMS of the reference components), rmse (RMS of the error
    components) and relative = rmse / force_rms; empty bins have n_atoms 0 and None for the rest.
  """
  import numpy as np
  ref = np.asarray(reference, np.float64).reshape(-1, 3)
  err = np.asarray(predicted, np.float64).reshape(-1, 3) - ref
  mag = np.linalg.norm(ref, axis=-1)
  out = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    sel = (mag >= lo) & (mag < hi)
    n = int(sel.sum())
    row = dict(lo=float(lo), hi=float(hi), n_atoms=n, force_rms=None, rmse=None, relative=None)
    if n:
      rms, rmse = float(np.sqrt(np.mean(ref[sel] ** 2))), float(np.sqrt(np.mean(err[sel] ** 2)))
      row.update(force_rms=rms, rmse=rmse, relative=rmse / rms if rms > 0 else None)
    out.append(row)
  return out


def agreement_horizon(steps, rmsd, threshold: float):
  """The first of `steps` at which `rmsd` exceeds `threshold` (A), or None when it never does."""
  import numpy as np
  above = np.flatnonzero(np.asarray(rmsd) > threshold)
  return int(np.asarray(steps)[above[0]]) if len(above) else None


def small_column_fractions(x, thresholds=(0.01, 0.1)) -> dict:
  """Fraction of the input columns (vectors) of standardized network inputs `(..., n, M)` whose norm is below each
  threshold: where eq. 9's unit vector x / |x| amplifies a near-zero vector to length 1."""
  import numpy as np
  norms = np.linalg.norm(np.asarray(x, np.float64), axis=-2)
  return {f"below_{t:g}": float(np.mean(norms < t)) for t in thresholds}


def four_body_measurements(config, d: str) -> dict:
  """The four-atom figures of one model (workdir `d` = eps_<eps>/)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from experiments.configs import four_body as four_body_configs
  from unitary_enn import data, files, models, potentials, quantity
  from experiments.common import cache_dir

  train = files.read_json(os.path.join(d, "four_body", RESULTS))
  md = files.read_json(os.path.join(d, "four_body_md", RESULTS))
  model = models.load_model(os.path.join(d, "four_body"))
  # The MD evaluates the network in float64 (four_body_md); so do these bins.
  net = jax.jit(models.model_force_fn(model, dtype=jnp.float64))
  fc = four_body_configs.get_config(config.four_body_config)
  test = data.four_body_dataset(fc.n_configs, seed=fc.data_seed, r_min=fc.r_min, position_std=fc.position_std,
                                cache_dir=cache_dir(fc))["test"]
  traj = np.load(os.path.join(d, "four_body_md", "trajectories.npz"))
  frames = traj["analytical_positions"].reshape(-1, 4, 3)

  def bins(positions):
    positions = jnp.asarray(positions, jnp.float64)
    ref = np.concatenate([np.asarray(potentials.lj_forces(positions[s:s + 4096])) for s in range(0, len(positions), 4096)])
    pred = np.concatenate([np.asarray(net(positions[s:s + 4096])) for s in range(0, len(positions), 4096)])
    return binned_force_errors(ref, pred, config.force_bins), float(np.sqrt(np.mean((pred - ref) ** 2)))

  test_bins, test_rmse = bins(test.positions)
  md_bins, md_rmse = bins(frames)
  inputs = {name: np.asarray(data.relative_vectors(jnp.asarray(p, jnp.float64))) / model.scales["inputs"]
            for name, p in (("test", test.positions), ("md_frames", frames))}
  rmsd = np.asarray(quantity.position_rmsd(jnp.asarray(traj["analytical_positions"]),
                                           jnp.asarray(traj["network_positions"])))
  return dict(
      eps=model.eps,
      test_force_rmse=train["test_force_rmse"],
      test_force_rmse_float64=test_rmse,
      md_frames_force_rmse=md_rmse,
      md_frames_force_rms=md["network_accuracy"]["md_frames"]["force_rms_eV_A"],
      binned_test=test_bins,
      binned_md_frames=md_bins,
      small_input_columns={name: small_column_fractions(x) for name, x in inputs.items()},
      horizon_step=agreement_horizon(traj["positions_steps"], rmsd, config.horizon_rmsd),
      horizon_resolution_steps=int(traj["positions_steps"][1] - traj["positions_steps"][0]),
      position_rmsd_A=md["runs"]["network"]["position_rmsd_A"],
      energy_rmsd_eV=md["runs"]["network"]["energy_rmsd_eV"],
      energy_drift_rel=md["runs"]["network"]["energy_drift_rel"],
      lambda_=md["runs"]["network"]["lambda"],
      train_wall_time_s=train["wall_time_s"],
  )


def zero_input_gain(model) -> float:
  """|g| of the network's linearization y = sum_a g_a x_a at x = 0 (standardized units in and out, times the
  target scale: eV/A per standardized descriptor unit), from forward-mode autodiff; NaN for eq. 9, whose output
  jumps at 0 (no derivative). By O(3) equivariance the linear map at 0 is I_3 (x) g for a channel vector g."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from unitary_enn.network import apply_uenn
  if not model.eps:
    return float("nan")
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), model.params)
  k = model.sizes[0]
  jac = jax.jacfwd(lambda x: apply_uenn(params, x, activation=model.activation, eps=model.eps))(jnp.zeros((1, 3, k)))
  g = np.asarray(jac)[0, 0, 0, 0, 0, :]  # d y_x / d x_{x, a}
  return float(np.linalg.norm(g) * model.scales["targets"][0])


def crystal_forces(model, config) -> dict:
  """Forces of a many-body model on perfect and strained FCC argon (zero by symmetry) and on one displaced atom.

  Three evaluations: float32 positions (jax's default without x64: float32 displacements and sums), float64
  positions (float64 displacements, float32 sums: what float64 MD does), and float64 descriptor sums.
  """
  import functools

  import jax.numpy as jnp
  import numpy as np

  from unitary_enn import descriptors, models, neighbors, potentials, structures
  from unitary_enn.constants import ARGON_FCC_LATTICE_CONSTANT

  n, a0 = int(config.crystal_cells), ARGON_FCC_LATTICE_CONSTANT
  paths = {
      "float32": (jnp.float32, None),
      "float64_positions": (jnp.float64, None),
      "float64_descriptors": (jnp.float64, jnp.float64),
  }
  evaluators = {name: neighbors.neighbor_list_model(
      functools.partial(models.many_body_force_fn, model, descriptor_dtype=ddt), r_cut=model.r_cut)
      for name, (_, ddt) in paths.items()}
  lj = neighbors.neighbor_list_model(functools.partial(potentials.lj_cut_force_fn, r_cut=model.r_cut),
                                     r_cut=model.r_cut)

  def forces(name, positions, box):
    return np.asarray(evaluators[name](jnp.asarray(positions, paths[name][0]), box), np.float64)

  out = {}
  for label, strain in [("perfect", 0.0)] + [(f"strain_{s:+g}", s) for s in config.crystal_strains]:
    a = a0 * (1 + strain)
    pos, box = structures.fcc_lattice(n, a), n * a
    row = {}
    for name in paths:
      f = forces(name, pos, box)
      row[f"{name}_max_abs_eV_A"] = float(np.max(np.abs(f)))
      row[f"{name}_rms_eV_A"] = float(np.sqrt(np.mean(f ** 2)))
    # The noise the network sees: the largest standardized descriptor column of the crystal.
    for name, dt in (("float32", jnp.float32), ("float64", jnp.float64)):
      d = np.asarray(descriptors.vector_descriptors(jnp.asarray(pos, dt), box, r_s=model.basis.r_s,
                                                    eta=model.basis.eta, r_cut=model.basis.r_cut), np.float64)
      row[f"{name}_descriptor_noise"] = float(np.max(np.linalg.norm(d / model.scales["inputs"], axis=-2)))
    row["lj_cut_max_abs_eV_A"] = float(np.max(np.abs(np.asarray(lj(jnp.asarray(pos, jnp.float64), box)))))
    out[label] = row
  pos0, box = structures.fcc_lattice(n, a0), n * a0
  direction = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
  displaced = []
  for delta in config.displacements:
    pos = pos0.copy()
    pos[0] = (pos[0] + delta * direction) % box
    f_lj = np.asarray(lj(jnp.asarray(pos, jnp.float64), box))[0]
    row = dict(delta_A=float(delta), lj_cut_force_eV_A=float(np.linalg.norm(f_lj)))
    for name in ("float32", "float64_descriptors"):
      f = forces(name, pos, box)[0]
      row[f"{name}_error_eV_A"] = float(np.linalg.norm(f - f_lj))
      row[f"{name}_along_lj"] = float(f @ f_lj / max(float(f_lj @ f_lj), 1e-300))  # 1 = right restoring force
    displaced.append(row)
  out["displaced_atom"] = displaced
  out["zero_input_gain_eV_A"] = zero_input_gain(model)
  return out


def many_body_measurements(config, d: str) -> dict:
  """The many-atom figures of one model (workdir `d` = eps_<eps>/)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import ase.io

  from experiments.configs import many_body as many_body_configs
  from experiments.common import cache_dir
  from experiments.many_body import bases_of
  from unitary_enn import data, descriptors, files, models, neighbors, potentials
  from unitary_enn.network import apply_uenn

  train = files.read_json(os.path.join(d, "many_body", RESULTS))
  cross = files.read_json(os.path.join(d, "cross_md", RESULTS))
  model = models.load_model(os.path.join(d, "many_body"))
  mc = many_body_configs.get_config(config.many_body_config)
  net_basis, bases = bases_of(mc)
  n_train, n_val, _ = mc.n_sets
  test = data.random_box_set(seed=mc.data_seed + n_train + n_val, sides=tuple(mc.box_sides), max_atoms=mc.max_atoms,
                             r_min=mc.r_min, max_trials=mc.max_trials, bases={net_basis: bases[net_basis]},
                             r_cut=mc.r_cut, cutoff=mc.cutoff, cache_dir=cache_dir(mc))
  params = jax.tree.map(jnp.asarray, model.params)
  predict = jax.jit(lambda x: apply_uenn(params, x, activation=model.activation, eps=model.eps))
  x = np.asarray(test.descriptors[net_basis], np.float32) / model.scales["inputs"].astype(np.float32)
  pred = np.concatenate([np.asarray(predict(jnp.asarray(x[s:s + 8192])))[..., 0] for s in range(0, len(x), 8192)])
  pred = pred * model.scales["targets"][0]

  # Frames of the cross at 60 K from the analytical run (extended XYZ written by cross_md).
  frames = ase.io.read(os.path.join(d, "cross_md", "trajectories", "analytical.xyz"), index=f":{config.cross_frames}")
  net_ff = models.load_force_field(model)
  lj = neighbors.neighbor_list_model(lambda disp: potentials.lj_cut_force_fn(disp, r_cut=model.r_cut),
                                     r_cut=model.r_cut)
  ref_c, pred_c, x_c = [], [], []
  for frame in frames:
    pos = jnp.asarray(frame.get_positions(), jnp.float64)
    ref_c.append(np.asarray(lj(pos)))
    pred_c.append(np.asarray(net_ff(pos)))
    x_c.append(np.asarray(descriptors.vector_descriptors(pos, None, r_s=model.basis.r_s, eta=model.basis.eta,
                                                         r_cut=model.basis.r_cut, cutoff=model.basis.cutoff)))
  ref_c, pred_c = np.concatenate(ref_c), np.concatenate(pred_c)
  runs = cross["runs"]
  return dict(
      eps=model.eps,
      test_force_rmse=train["test_force_rmse"],
      binned_test=binned_force_errors(test.forces, pred, config.force_bins),
      cross_frames_force_rmse=float(np.sqrt(np.mean((pred_c - ref_c) ** 2))),
      cross_frames_force_rms=float(np.sqrt(np.mean(ref_c ** 2))),
      binned_cross_frames=binned_force_errors(ref_c, pred_c, config.force_bins),
      small_input_columns=dict(test=small_column_fractions(x), cross_frames=small_column_fractions(
          np.concatenate(x_c) / model.scales["inputs"])),
      crystal=crystal_forces(model, config),
      cross_position_rmsd_A=cross["position_rmsd_A"],
      cross_mean_abs_dT_K=cross["mean_abs_temperature_difference_K"],
      cross_energy_drift_rel_network=runs["network"]["energy_drift_rel"],
      cross_energy_drift_rel_analytical=runs["analytical"]["energy_drift_rel"],
      cross_initial_force_rmse=cross["network_on_initial_cross"]["network_force_rmse_eV_A"],
      train_wall_time_s=train["wall_time_s"],
  )


def _g(v, fmt=".2e"):
  return "-" if v is None else format(v, fmt)


def table(results: dict) -> str:
  """The README table (markdown) of a study's results: one column per model, "-" where a model lacks a stage."""
  models = results["models"]
  keys = list(models)
  head = "| | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
  rows = []

  def row(label, fn):
    cells = []
    for k in keys:
      try:
        cells.append(fn(models[k]))
      except (KeyError, TypeError, IndexError):
        cells.append("-")
    rows.append(f"| {label} | " + " | ".join(cells) + " |")

  def input_and_binned_rows(get, first, system, frames, frames_key, binned_label):
    """The rows both systems have: small input columns (test / frames) and the force error by |F| bin."""
    row(f"{system}: input columns with \\|x\\| < 0.01 / < 0.1 (standardized), test / {frames}",
        lambda m: " / ".join(f"{get(m)['small_input_columns'][k]['below_0.01']:.3f}, "
                             f"{get(m)['small_input_columns'][k]['below_0.1']:.3f}" for k in ("test", frames_key)))
    binned = f"binned_{frames_key}"
    for i, b in enumerate(first[binned]):
      if b["n_atoms"]:
        row(f"{binned_label}, \\|F\\| in [{b['lo']:g}, {b['hi']:g}) eV/A: RMSE (relative)",
            lambda m, i=i: f"{_g(get(m)[binned][i]['rmse'])} ({_g(get(m)[binned][i]['relative'], '.2f')})")

  fb = lambda m: m["four_body"]
  mb = lambda m: m["many_body"]
  first_fb = next((m["four_body"] for m in models.values() if "four_body" in m), None)
  first_mb = next((m["many_body"] for m in models.values() if "many_body" in m), None)
  if first_fb:
    row("four atoms: test force RMSE (eV/A)", lambda m: _g(fb(m)["test_force_rmse"], ".5f"))
    input_and_binned_rows(fb, first_fb, "four atoms", "MD frames", "md_frames", "four atoms, MD frames")
    row("four atoms, MD frames: force RMSE / LJ force RMS (eV/A)",
        lambda m: f"{_g(fb(m)['md_frames_force_rmse'])} / {_g(fb(m)['md_frames_force_rms'])}")
    row("four-atom MD: agreement horizon (steps, RMSD > 0.1 A)", lambda m: str(fb(m)["horizon_step"]))
    pos_steps, e_steps = list(first_fb["position_rmsd_A"]), list(first_fb["energy_rmsd_eV"])
    row(f"four-atom MD: position RMSD at {' / '.join(pos_steps)} steps (A)",
        lambda m: " / ".join(_g(fb(m)["position_rmsd_A"][s]) for s in pos_steps))
    row(f"four-atom MD: energy RMSD at {' / '.join(e_steps)} steps (eV)",
        lambda m: " / ".join(_g(fb(m)["energy_rmsd_eV"][s]) for s in e_steps))
  if first_mb:
    row("many atoms: test force RMSE (eV/A)", lambda m: _g(mb(m)["test_force_rmse"], ".5f"))
    input_and_binned_rows(mb, first_mb, "many atoms", "cross frames", "cross_frames", "cross at 60 K")
    row("perfect FCC, max \\|F\\| (eV/A), float32", lambda m: _g(mb(m)["crystal"]["perfect"]["float32_max_abs_eV_A"]))
    row("perfect FCC, max \\|F\\| (eV/A), float64 positions",
        lambda m: _g(mb(m)["crystal"]["perfect"]["float64_positions_max_abs_eV_A"]))
    row("perfect FCC, max \\|F\\| (eV/A), float64 descriptor sums",
        lambda m: _g(mb(m)["crystal"]["perfect"]["float64_descriptors_max_abs_eV_A"]))
    for label in [k for k in first_mb["crystal"] if k.startswith("strain")]:
      row(f"FCC {label.replace('_', ' ')}, max \\|F\\| (eV/A), float32 / float64 descriptor sums",
          lambda m, label=label: f"{_g(mb(m)['crystal'][label]['float32_max_abs_eV_A'])} / "
                                 f"{_g(mb(m)['crystal'][label]['float64_descriptors_max_abs_eV_A'])}")
    for i, r in enumerate(first_mb["crystal"]["displaced_atom"]):
      row(f"one atom displaced {r['delta_A']:g} A: \\|F - F_lj\\| (eV/A), float32 (\\|F_lj\\| = {r['lj_cut_force_eV_A']:.1e})",
          lambda m, i=i: _g(mb(m)["crystal"]["displaced_atom"][i]["float32_error_eV_A"]))
    row("network gain at zero input (eV/A per standardized unit)",
        lambda m: _g(mb(m)["crystal"]["zero_input_gain_eV_A"], ".3g"))
    row("cross at 60 K, frames: force RMSE / lj/cut force RMS (eV/A)",
        lambda m: f"{_g(mb(m)['cross_frames_force_rmse'])} / {_g(mb(m)['cross_frames_force_rms'])}")
    steps = list(first_mb["cross_position_rmsd_A"])
    row(f"cross MD: position RMSD at {' / '.join(steps)} steps (A)",
        lambda m: " / ".join(_g(mb(m)["cross_position_rmsd_A"][s], ".3g") for s in steps))
    row("cross MD: mean \\|T_ENN - T_analytical\\| (K)", lambda m: _g(mb(m)["cross_mean_abs_dT_K"], ".3f"))
    row("cross MD: relative energy drift, ENN (analytical)",
        lambda m: f"{_g(mb(m)['cross_energy_drift_rel_network'])} ({_g(mb(m)['cross_energy_drift_rel_analytical'])})")
  return head + "\n".join(rows) + "\n"


def run(config, workdir: str) -> dict:
  """Run every stage, measure every model, write smooth_study.json and table.md; returns the results."""
  prepare_workdir(workdir)
  if not config.eps_values:
    raise ValueError("config.eps_values must list at least one eps")
  if any(e < 0 for e in config.eps_values):
    raise ValueError(f"config.eps_values must be >= 0, got {config.eps_values}")
  model_specs(config)  # checks extra_many_body
  unknown = set(config.stages) - {"four_body", "many_body"}
  if unknown:
    raise ValueError(f"config.stages has unknown stages {sorted(unknown)}; expected four_body, many_body")
  t0 = time.time()
  run_stages(config, workdir)

  import jax
  jax.config.update("jax_enable_x64", True)  # float64 evaluations below; the runs above had their own processes
  from unitary_enn import files

  models_out = {}
  for name, _, stages in model_specs(config):
    d = os.path.join(workdir, name)
    entry = {}
    if "four_body" in stages:
      entry["four_body"] = four_body_measurements(config, d)
    if "many_body" in stages:
      entry["many_body"] = many_body_measurements(config, d)
    models_out[name] = entry
    print(f"smooth_study: measured {name}", flush=True)
  results = dict(experiment="smooth_study", models=models_out, config=config.to_dict(),
                 definitions=dict(
                     binned="force RMSE per component over atoms whose reference |F| lies in [lo, hi) eV/A; "
                            "relative = RMSE / RMS of the reference components in the bin",
                     horizon_step="first saved step (every save_every steps) at which the 10-sample position "
                                  "RMSD (eq. 49) of the network run against the analytical run exceeds horizon_rmsd",
                     crystal="max |F| over the atoms of a periodic FCC crystal (n_cells^3, a = 5.24411 A "
                             "(1 + strain)); lj/cut gives 0 up to rounding",
                     zero_input_gain="|g| of the network's linear map at x = 0 times the target scale; the force "
                                     "on a perfect crystal is about gain x descriptor noise"),
                 wall_time_s=time.time() - t0, versions=files.package_versions())
  files.write_json(os.path.join(workdir, RESULT_FILE), results)
  md = table(results)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(md)
  print(md, flush=True)
  print(f"smooth_study: results in {os.path.join(workdir, RESULT_FILE)}, table in {os.path.join(workdir, 'table.md')}",
        flush=True)
  return results


if __name__ == "__main__":
  experiment_main("smooth_study", run)

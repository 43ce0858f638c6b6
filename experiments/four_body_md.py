r"""Four-atom molecular dynamics driven by the trained network (paper Sec. 4.4), with conservativeness diagnostics.

  python -m experiments.four_body_md --train_workdir=workdirs/four_body   # MD with a trained four_body model
  python -m experiments.four_body_md                                      # no model given: trains the quick
                                                                          # smooth one (four_body.py:smooth,
                                                                          # eps 0.1) first in <workdir>/train
  python -m experiments.four_body_md --config=experiments/configs/four_body_md.py:tiny --workdir=/tmp/md
  python -m experiments.four_body_md --train_workdir=DIRECT --conservative_workdir=CONSERVATIVE

Runs the 10 samples of Sec. 4.4 (same positions, Maxwell-Boltzmann velocities at 10 K, velocity Verlet, 1 fs,
10,000 steps, float64) four or five times: analytical LJ forces, the paper's network (direct forces), that network with
the net force (and the net torque) removed (docs/decisions.md §12), and, when asked for, a conservative model
(F = -grad E of an energy built from the same layers, docs/decisions.md §16; from --conservative_workdir, else
trained first in <workdir>/train_conservative with `config.conservative_train_config`; the quick default has
neither, since that training takes ~17 min). Reports the position RMSD (eq. 49) and
energy RMSD (eq. 50) against the analytical run, the agreement horizon (the first step at which the position
RMSD exceeds `config.horizon_threshold`, 0.1 A), the total-energy drift of every run (for the conservative model
also of its own energy, KE + E_model), the antisymmetric fraction lambda of the force Jacobian, the work around
small closed loops, and the gradient of a trajectory observable with respect to the network parameters through a
short MD run, for both networks (checked against a finite difference). results.json's `force_fields` holds the
five figures per force field (analytical, direct, conservative).

Writes to --workdir: results.json, figures/position_rmsd.png (Fig. 5), figures/x_atom1.png (Fig. 6),
figures/energy_rmsd.png (Fig. 7), figures/energy_sample1.png (Fig. 8), and trajectories.npz (for each run
NAME: NAME_positions `(frames, samples, 4, 3)` A every `save_every` steps, NAME_total_energy
`(steps + 1, samples)` eV). The MD takes seconds, so it is not
checkpointed; the training it may start resumes from its own checkpoint when the command is run again.
"""

from __future__ import annotations

import os
import time

from experiments.common import (RESULTS, conservative_model, experiment_main, prepare_workdir, setup_dtype,
                                trained_model, train_workdir_flag, with_trained_model)


# The run variants: name -> (label in figures, line style, color).
VARIANTS = {
    "analytical": ("analytical LJ", "-", "k"),
    "network": ("ENN", "-", "C0"),
    "network_net_force_removed": ("ENN, net force removed", "--", "C1"),
    "network_net_force_torque_removed": ("ENN, net force and torque removed", ":", "C2"),
    "conservative": ("ENN, conservative (F = -grad E)", "-", "C3"),
}

# The force fields compared in results.json's `force_fields`: name there -> run.
FORCE_FIELDS = {"analytical": "analytical", "direct": "network", "conservative": "conservative"}


def _validate(config):
  import numpy as np
  if config.dtype not in ("float32", "float64"):
    raise ValueError(f"config.dtype must be 'float32' or 'float64', got {config.dtype!r}")
  if config.n_samples < 1:
    raise ValueError(f"config.n_samples must be >= 1, got {config.n_samples}")
  if np.shape(config.initial_positions) != (4, 3):
    raise ValueError(f"config.initial_positions has shape {np.shape(config.initial_positions)}, "
                     "expected (4, 3) in A")
  if not (config.dt > 0 and config.temperature > 0):
    raise ValueError(f"config.dt and config.temperature must be > 0, got {config.dt} ps and "
                     f"{config.temperature} K")
  if config.n_steps < 1 or config.chunk_steps < 1:
    raise ValueError(f"config.n_steps and config.chunk_steps must be >= 1, got {config.n_steps} and "
                     f"{config.chunk_steps}")
  for key in ("position_rmsd_steps", "energy_rmsd_steps"):
    bad = [s for s in config[key] if not 0 <= s <= config.n_steps]
    if bad:
      raise ValueError(f"config.{key} has steps {bad} outside 0..n_steps={config.n_steps}")
  if config.save_every < 0:
    raise ValueError(f"config.save_every must be >= 0 (0 = no trajectories.npz), got {config.save_every}")
  if not 1 <= config.grad_steps <= config.n_steps:
    raise ValueError(f"config.grad_steps must be in 1..n_steps, got {config.grad_steps}")
  if not config.horizon_threshold > 0:
    raise ValueError(f"config.horizon_threshold must be > 0 A, got {config.horizon_threshold}")


def agreement_horizon(position_rmsd, threshold: float):
  """The first step at which the position RMSD exceeds `threshold` (A), or None when it never does."""
  import numpy as np
  above = np.flatnonzero(np.asarray(position_rmsd) > threshold)
  return int(above[0]) if len(above) else None


def run(config, workdir: str, train_workdir: str | None = None, conservative_workdir: str | None = None) -> dict:
  """Run the Sec. 4.4 MD with analytical and network forces, the diagnostics, and write results and figures.

  Args:
    config: from `experiments/configs/four_body_md.py`.
    workdir: where results.json and figures/ go (and the models, when they are trained here).
    train_workdir: a four_body workdir holding a direct model; overrides `config.train_workdir`. When both are
      empty, the model is trained first in `<workdir>/train` with `config.train_config` (or reused from there).
    conservative_workdir: a four_body workdir holding a conservative model; overrides
      `config.conservative_workdir`; else it is trained in `<workdir>/train_conservative` with
      `config.conservative_train_config` (or reused from there).

  Returns:
    The results dict written to results.json.
  """
  _validate(config)
  t_start = time.time()
  prepare_workdir(workdir)
  tm = trained_model(config, workdir, train_workdir, trained_by="four_body", caller="four_body_md",
                     minutes=5, forces="direct")
  model, train_workdir, train_results = tm["model"], tm["train_workdir"], tm["train_results"]
  trained_here, train_time = tm["trained_here"], tm["train_time_s"]
  # The conservative run is opt-in (--conservative_workdir, config.conservative_workdir, or a
  # config.conservative_train_config to train here): its training takes ~17 min, beyond the quick default's budget.
  tc = conservative_model(config, workdir, conservative_workdir, trained_by="four_body", caller="four_body_md",
                          minutes=30)
  with_conservative = tc is not None
  cmodel = tc["model"] if with_conservative else None

  dtype = setup_dtype(config)
  import jax
  import jax.numpy as jnp
  import numpy as np

  import unitary_enn as uenn
  from unitary_enn import diagnostics, files, models, plots, quantity, simulate, structures
  from unitary_enn.constants import ARGON_MASS
  from unitary_enn.potentials import lj_forces

  mass = ARGON_MASS

  net = models.model_force_fn(model, dtype=dtype)
  force_fns = {
      "analytical": lj_forces,
      "network": net,
      "network_net_force_removed": diagnostics.without_net_force(net),
      "network_net_force_torque_removed": diagnostics.without_net_force(net, torque=True),
  }
  if with_conservative:
    cons = force_fns["conservative"] = models.model_force_fn(cmodel, dtype=dtype)
    cons_energy = models.model_energy_fn(cmodel, dtype=dtype)

  # --- MD (Sec. 4.4) ---
  positions0 = jnp.broadcast_to(jnp.asarray(config.initial_positions, dtype), (config.n_samples, 4, 3))
  momenta0 = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(config.seed), positions0, mass, config.temperature)
  print(f"four_body_md: {config.n_samples} samples x {config.n_steps:,} steps of {config.dt * 1000:g} fs, "
        f"{config.temperature:g} K, {config.dtype}, model from {train_workdir}", flush=True)
  t0 = time.time()
  trajs = {}
  for name, fn in force_fns.items():
    trajs[name] = simulate.run_nve(fn, positions0, momenta0, mass=mass, dt=config.dt, n_steps=config.n_steps,
                             chunk_steps=config.chunk_steps, label=f"md[{name}]")
  md_time = time.time() - t0
  steps = trajs["analytical"].steps
  ref = trajs["analytical"]

  @jax.jit
  def series(pos, mom, ref_pos, ref_mom):
    """Per-step observables of one run, `(steps + 1, ...)`; compiled once for all runs."""
    e = quantity.total_energy(pos, mom, mass)
    ref_energy = quantity.total_energy(ref_pos, ref_mom, mass)
    return dict(energy=e, temperature=quantity.temperature(mom, mass), momentum=quantity.net_momentum(mom),
                angular_momentum=quantity.angular_momentum(pos, mom),
                min_distance=quantity.min_pair_distances(pos), position_rmsd=quantity.position_rmsd(ref_pos, pos),
                energy_rmsd=quantity.energy_rmsd(ref_energy, e))

  obs = {k: jax.tree.map(np.asarray, series(t.positions, t.momenta, ref.positions, ref.momenta))
         for k, t in trajs.items()}
  energy = {k: o["energy"] for k, o in obs.items()}
  # The conservative model's own total energy, KE + E_model (eq. 48 with its potential): what its NVE conserves.
  own_energy = None
  if with_conservative:
    own = jax.jit(lambda p, q: quantity.total_energy(p, q, mass, cons_energy))
    c_traj = trajs["conservative"]
    own_energy = np.concatenate([np.asarray(own(c_traj.positions[s:s + 1000], c_traj.momenta[s:s + 1000]))
                                 for s in range(0, len(c_traj.positions), 1000)])

  runs = {}
  for name, o in obs.items():
    e, p_net, l_tot = o["energy"], o["momentum"], o["angular_momentum"]
    r = dict(
        energy_drift_rel=float(np.mean(quantity.relative_energy_drift(e))),
        energy_max_deviation_rel=float(np.max(quantity.max_relative_energy_deviation(e))),
        energy_drift_abs_eV=float(np.mean(np.abs(e[-1] - e[0]))),
        initial_total_energy_eV=float(np.mean(e[0])),
        final_total_energy_eV=float(np.mean(e[-1])),
        temperature_mean_K=float(np.mean(o["temperature"])),
        net_momentum_change=float(np.max(np.linalg.norm(p_net - p_net[0], axis=-1))),
        angular_momentum_change=float(np.max(np.linalg.norm(l_tot - l_tot[0], axis=-1))),
        min_pair_distance_A=float(np.min(o["min_distance"])),
    )
    if name != "analytical":
      pr, er = o["position_rmsd"], o["energy_rmsd"]
      r["agreement_horizon_steps"] = agreement_horizon(pr, config.horizon_threshold)
      r["position_rmsd_A"] = {str(s): float(pr[s]) for s in config.position_rmsd_steps}
      r["position_rmsd_final_A"] = float(pr[-1])
      r["energy_rmsd_eV"] = {str(s): float(er[s]) for s in config.energy_rmsd_steps}
      r["energy_rmsd_final_eV"] = float(er[-1])
    if name == "conservative":
      r["own_energy_drift_rel"] = float(np.mean(quantity.relative_energy_drift(own_energy)))
      r["own_energy_drift_abs_eV"] = float(np.mean(np.abs(own_energy[-1] - own_energy[0])))
      r["own_energy_max_deviation_rel"] = float(np.max(quantity.max_relative_energy_deviation(own_energy)))
      r["own_initial_total_energy_eV"] = float(np.mean(own_energy[0]))
    runs[name] = r

  # --- Conservativeness (docs/decisions.md §12) ---
  t0 = time.time()
  test_positions = jnp.asarray(structures.generate_clusters(config.n_test_configs, seed=config.test_seed), dtype)
  stride = max(1, config.n_steps // 20)
  md_frames = jnp.asarray(ref.positions[stride::stride].reshape(-1, 4, 3), dtype)
  both = jnp.concatenate([test_positions, md_frames])
  untrained = models.four_body_force_fn(
      uenn.init_uenn(jax.random.PRNGKey(0), model.sizes, dtype=dtype), model.scales, model.activation, eps=model.eps)
  loop_key = jax.random.PRNGKey(config.seed + 1)
  loop_positions = test_positions[:config.n_loops]
  conservativeness = {}
  for name, fn in list(force_fns.items()) + [("untrained_network", untrained)]:
    # One call (one compilation) for both sets of configurations.
    lam_all = np.asarray(diagnostics.antisymmetric_fraction(fn, both))
    lam, lam_md = lam_all[:len(test_positions)], lam_all[len(test_positions):]
    work = np.abs(np.asarray(diagnostics.loop_work(fn, loop_positions, loop_key, radius=config.loop_radius,
                                          n_points=config.loop_points)))
    conservativeness[name] = dict(lambda_mean=float(lam.mean()), lambda_max=float(lam.max()),
                                  lambda_md_mean=float(lam_md.mean()),
                                  loop_work_abs_mean_eV=float(work.mean()),
                                  loop_work_abs_max_eV=float(work.max()))
    if name in runs:
      runs[name]["lambda"] = float(lam.mean())
  conservativeness_time = time.time() - t0
  # The network's accuracy where the MD goes: compact clusters near the LJ minimum, whose forces are far
  # smaller than the training set's (coordinates ~ N(0, 3 A)), so the same absolute error weighs more.
  accuracy, accuracy_conservative = {}, ({} if with_conservative else None)
  f_ref_all = np.asarray(jax.jit(lj_forces)(both))
  n_test = len(test_positions)
  for fn, acc in ((net, accuracy),) + (((cons, accuracy_conservative),) if with_conservative else ()):
    f_net_all = np.asarray(jax.jit(fn)(both))
    for name, sl in (("test_configurations", slice(0, n_test)), ("md_frames", slice(n_test, None))):
      pos, f_ref, f_net = both[sl], f_ref_all[sl], f_net_all[sl]
      acc[name] = dict(force_rmse_eV_A=float(np.sqrt(np.mean((f_net - f_ref) ** 2))),
                       force_rms_eV_A=float(np.sqrt(np.mean(f_ref ** 2))),
                       n_configurations=int(len(pos)))
  print(f"four_body_md: lambda = ||J - J^T|| / ||J|| over {config.n_test_configs} test configurations: "
        + ", ".join(f"{k} {v['lambda_mean']:.3g}" for k, v in conservativeness.items()), flush=True)
  for label, acc in (("direct", accuracy), ("conservative", accuracy_conservative)):
    if acc is None:
      continue
    print(f"four_body_md: {label} network force RMSE " + ", ".join(
        f"on {k.replace('_', ' ')} {v['force_rmse_eV_A']:.2e} eV/A (LJ force RMS there {v['force_rms_eV_A']:.2e})"
        for k, v in acc.items()), flush=True)

  # --- Gradient through MD w.r.t. the network parameters ---
  grads = {}
  for label, m in (("direct", model), ("conservative", cmodel)):
    if m is None:
      continue
    grad = grads[label] = gradient_through_md(m, positions0, momenta0, ref.positions[config.grad_steps], config,
                                              dtype)
    print(f"four_body_md: {label}: d(position MSD at step {config.grad_steps})/d(params): |grad| "
          f"{grad['grad_norm']:.3e}, finite difference on {grad['fd_parameter']}: {grad['finite_difference']:.6e} "
          f"vs autodiff {grad['autodiff']:.6e} (relative error {grad['fd_rel_error']:.1e}), {grad['time_s']:.1f} s",
          flush=True)
  grad = grads["direct"]

  # --- Figures ---
  fig = os.path.join(workdir, "figures")
  labels = {k: v[0] for k, v in VARIANTS.items()}
  styles = {v[0]: v[1] for v in VARIANTS.values()}
  colors = {v[0]: v[2] for v in VARIANTS.values()}
  marks = tuple(config.position_rmsd_steps)
  nets = [k for k in trajs if k != "analytical"]
  plots.plot_vs_step(steps, {labels[k]: obs[k]["position_rmsd"] for k in nets},
                     os.path.join(fig, "position_rmsd.png"), ylabel="position RMSD (A), eq. 49", logy=True,
                     marks=marks, styles=styles, colors=colors,
                     title=f"Position RMSD over {config.n_samples} samples x 4 atoms (paper Fig. 5)")
  plots.plot_vs_step(steps, {labels[k]: trajs[k].positions[:, 0, 0, 0] for k in trajs},
                     os.path.join(fig, "x_atom1.png"), ylabel="x of atom 1 (A)", marks=marks, styles=styles,
                     colors=colors,
                     title="x of atom 1 in sample 1 (paper Fig. 6)")
  plots.plot_vs_step(steps, {labels[k]: obs[k]["energy_rmsd"] for k in nets},
                     os.path.join(fig, "energy_rmsd.png"), ylabel="total-energy RMSD (eV), eq. 50", logy=True,
                     marks=tuple(config.energy_rmsd_steps), styles=styles, colors=colors,
                     title="Total-energy RMSD vs the analytical run (paper Fig. 7)")
  plots.plot_vs_step(steps, {labels[k]: energy[k][:, 0] for k in trajs},
                     os.path.join(fig, "energy_sample1.png"), ylabel="total energy (eV), eq. 48", marks=marks,
                     styles=styles, colors=colors, title="Total energy of sample 1 (paper Fig. 8)")

  # --- Trajectories (positions every save_every steps, total energies every step) ---
  if config.save_every:
    np.savez_compressed(
        os.path.join(workdir, "trajectories.npz"), steps=steps, positions_steps=steps[::config.save_every],
        **{f"{k}_positions": t.positions[::config.save_every] for k, t in trajs.items()},
        **{f"{k}_total_energy": energy[k] for k in trajs},
        **({} if own_energy is None else dict(conservative_own_total_energy=own_energy)))

  # --- Results ---
  net_runs = ("network", "network_net_force_removed")
  headline = {}
  for name, suffix in zip(net_runs, ("", "_net_force_removed")):
    for s, v in runs[name]["position_rmsd_A"].items():
      headline[f"position_rmsd_{s}_A{suffix}"] = v
    for s, v in runs[name]["energy_rmsd_eV"].items():
      headline[f"energy_rmsd_{s}_eV{suffix}"] = v
    headline[f"energy_drift_rel_network{suffix}"] = runs[name]["energy_drift_rel"]
    headline[f"lambda_network{suffix}"] = runs[name]["lambda"]
  headline["energy_drift_rel_analytical"] = runs["analytical"]["energy_drift_rel"]
  if with_conservative:
    c = runs["conservative"]
    for s, v in c["position_rmsd_A"].items():
      headline[f"position_rmsd_{s}_A_conservative"] = v
    for s, v in c["energy_rmsd_eV"].items():
      headline[f"energy_rmsd_{s}_eV_conservative"] = v
    headline["energy_drift_rel_conservative"] = c["own_energy_drift_rel"]
    headline["lambda_conservative"] = c["lambda"]
  force_fields = {}
  for label, name in FORCE_FIELDS.items():
    if name not in runs:
      continue
    r = runs[name]
    ff = dict(agreement_horizon_steps=r.get("agreement_horizon_steps"))
    for s in config.position_rmsd_steps:
      ff[f"position_rmsd_{s}_A"] = r["position_rmsd_A"][str(s)] if "position_rmsd_A" in r else 0.0
    for s in config.energy_rmsd_steps:
      ff[f"energy_rmsd_{s}_eV"] = r["energy_rmsd_eV"][str(s)] if "energy_rmsd_eV" in r else 0.0
    ff["energy_drift_rel"] = r.get("own_energy_drift_rel", r["energy_drift_rel"])
    ff["lambda"] = r["lambda"]
    force_fields[label] = ff
  force_fields["analytical"]["agreement_horizon_steps"] = None  # the reference itself
  results = dict(
      experiment="four_body_md",
      **headline,
      force_fields=force_fields,
      runs=runs,
      conservativeness=conservativeness,
      network_accuracy=accuracy,
      conservative_accuracy=accuracy_conservative,
      gradient_through_md=grad,
      gradient_through_md_conservative=grads.get("conservative"),
      definitions=dict(
          position_rmsd="eq. 49: sqrt(mean over samples and atoms of |r_analytical - r_network|^2), A",
          energy_rmsd="eq. 50: sqrt(mean over samples of (E_analytical - E_network)^2), E from eq. 48 with the "
                      "analytical LJ potential at each run's own positions, eV",
          energy_drift_rel="mean over samples of |E(n_steps) - E(0)| / |E(0)|, E = KE + LJ at the run's positions "
                           "(own_energy_drift_rel: E = KE + the conservative model's energy); force_fields: the "
                           "drift of each force field's own energy (LJ for analytical; the direct model has none, "
                           "so LJ at its positions)",
          agreement_horizon="first step at which the position RMSD (eq. 49) exceeds horizon_threshold_A; null "
                            "if it never does within n_steps",
          force_fields="per force field: agreement horizon, position RMSD at position_rmsd_steps, energy RMSD at "
                       "energy_rmsd_steps, relative drift of its own total energy over n_steps, lambda",
          energy_max_deviation_rel="max over samples and steps of |E(t) - E(0)| / |E(0)|",
          lambda_="mean over test configurations of ||J - J^T||_F / ||J||_F, J = dF/dr (12 x 12); 0 for -grad U",
          loop_work="|closed-loop integral of F . dr| around circles of loop_radius A in random planes of R^12",
          md_frames="positions of the analytical run every n_steps / 20 steps, all samples (lambda_md_mean, "
                    "network_accuracy); test_configurations: fresh Sec. 4.1 clusters drawn with test_seed",
          net_momentum_change="max over samples and steps of |P(t) - P(0)|, eV ps/A",
          angular_momentum_change="max over samples and steps of |L(t) - L(0)| about the origin, eV ps",
      ),
      paper=dict(good_until_step=1500, acceptable_until_step=4000, energy_rmsd_at_4000_eV_below=4e-4),
      horizon_threshold_A=config.horizon_threshold,
      train_workdir=os.path.abspath(train_workdir),
      trained_here=trained_here,
      model_test_force_rmse=train_results.get("test_force_rmse"),
      model_sizes=list(model.sizes),
      **({} if tc is None else dict(
          conservative_workdir=os.path.abspath(tc["train_workdir"]),
          conservative_trained_here=tc["trained_here"],
          conservative_model_test_force_rmse=tc["train_results"].get("test_force_rmse"),
          conservative_model_test_energy_rmse_eV=tc["train_results"].get("test_energy_rmse_eV"),
          conservative_model_sizes=list(cmodel.sizes),
          conservative_model_head_hidden=list(cmodel.head_hidden),
          conservative_train_wall_time_s=tc["train_time_s"])),
      n_samples=config.n_samples, n_steps=config.n_steps, dt_ps=config.dt, temperature_K=config.temperature,
      initial_temperature_K=float(np.mean(quantity.temperature(momenta0, mass))),
      train_wall_time_s=train_time,
      md_wall_time_s=md_time,
      conservativeness_wall_time_s=conservativeness_time,
      wall_time_s=time.time() - t_start,
      config=config.to_dict(),
      versions=files.package_versions(),
  )
  files.write_json(os.path.join(workdir, RESULTS), results)
  _print_summary(results, config, workdir)
  return results


def gradient_through_md(model, positions0, momenta0, target_positions, config, dtype) -> dict:
  """d/d(params) of the mean squared deviation of the network run from the analytical run after
  `config.grad_steps` steps (eq. 49 squared, A^2), by reverse mode through jax-md's velocity Verlet.

  Checked against a central finite difference on the parameter with the largest gradient in the last layer.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  from unitary_enn import models, simulate

  params = jax.tree.map(lambda p: jnp.asarray(p, dtype), model.params)
  scales, activation = model.scales, model.activation
  target = jnp.asarray(target_positions, dtype)

  def observable(p):
    traj = simulate.nve_trajectory(models.four_body_force_fn(p, scales, activation, eps=model.eps), positions0, momenta0,
                             dt=config.dt, n_steps=config.grad_steps, record_every=config.grad_steps)
    return jnp.mean(jnp.sum((traj.positions[-1] - target) ** 2, axis=-1))

  t0 = time.time()
  value_and_grad = jax.jit(jax.value_and_grad(observable))
  value, grads = jax.block_until_ready(value_and_grad(params))
  t_grad = time.time() - t0
  # The last equivariant layer's W: params[-1] (direct), params["uenn"][-1] (conservative).
  prefix = ("uenn",) if model.conservative else ()
  layer = len(model.params["uenn"] if model.conservative else params) - 1

  def last(tree):
    for k in prefix:
      tree = tree[k]
    return tree[layer]

  g_last = np.asarray(last(grads)["W"])
  idx = np.unravel_index(int(np.argmax(np.abs(g_last))), g_last.shape)
  h = float(config.fd_step)
  f = lambda p: value_and_grad(p)[0]  # reuses the compiled function (same shapes)

  def shifted(d):
    p = jax.tree.map(lambda a: a, params)
    layer_params = dict(last(p))
    layer_params["W"] = layer_params["W"].at[idx].add(d)
    if prefix:
      p = dict(p, uenn=[*p["uenn"][:layer], layer_params])
    else:
      p = [*p[:layer], layer_params]
    return p

  fd = (float(f(shifted(h))) - float(f(shifted(-h)))) / (2 * h)
  ad = float(g_last[idx])
  leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
  return dict(
      observable=f"mean over samples and atoms of |r_network - r_analytical|^2 at step {config.grad_steps}, A^2",
      steps=config.grad_steps,
      value_A2=float(value),
      grad_norm=float(np.sqrt(sum(np.sum(g * g) for g in leaves))),
      grad_finite=bool(all(np.all(np.isfinite(g)) for g in leaves)),
      fd_parameter=f"params{''.join(f'[{k!r}]' for k in prefix)}[{layer}]['W'][{idx[0]}, {idx[1]}]",
      autodiff=ad,
      finite_difference=fd,
      fd_step=h,
      fd_rel_error=abs(fd - ad) / max(abs(ad), 1e-300),
      time_s=t_grad,
  )


def _print_summary(results, config, workdir):
  runs = results["runs"]
  lines = [f"four_body_md: results in {os.path.join(workdir, 'results.json')} "
           f"(MD {results['md_wall_time_s']:.1f} s, total {results['wall_time_s']:.0f} s)"]
  pos_head = "pos RMSD (A) at " + "/".join(map(str, config.position_rmsd_steps))
  lines.append(f"  {'run':36s} {'horizon':8s} {pos_head:28s} "
               f"{'E RMSD (eV) at ' + '/'.join(map(str, config.energy_rmsd_steps)):22s} "
               f"{'E drift (rel)':14s} {'lambda':8s}")
  for name, r in runs.items():
    pos = "/".join(f"{v:.2e}" for v in r.get("position_rmsd_A", {}).values()) or "-"
    en = "/".join(f"{v:.2e}" for v in r.get("energy_rmsd_eV", {}).values()) or "-"
    horizon = r.get("agreement_horizon_steps")
    horizon = "-" if name == "analytical" else (f">{config.n_steps}" if horizon is None else str(horizon))
    drift = r.get("own_energy_drift_rel", r["energy_drift_rel"])
    lines.append(f"  {name:36s} {horizon:8s} {pos:28s} {en:22s} {drift:<14.2e} {r['lambda']:.3g}")
  lines.append("  (E drift: of each run's own total energy: KE + LJ, or KE + the model's energy for the conservative "
               f"run; horizon: first step with position RMSD > {config.horizon_threshold} A)")
  print("\n".join(lines), flush=True)


main = with_trained_model(run, "four_body", conservative=True)


if __name__ == "__main__":
  experiment_main("four_body_md", main, train_workdir_flag("four_body", conservative=True))

"""Configs of the four-atom molecular dynamics experiment (paper Sec. 4.4).

  python -m experiments.four_body_md --train_workdir=workdirs/four_body        MD with an existing model
  python -m experiments.four_body_md                                           trains first (four_body.py:smooth)
  python -m experiments.four_body_md --config=experiments/configs/four_body_md.py:tiny    seconds, for tests
  python -m experiments.four_body_md --config=experiments/configs/four_body_md.py:paper   paper-trained model
"""

import ml_collections

from unitary_enn.constants import FOUR_BODY_DT, FOUR_BODY_POSITIONS, FOUR_BODY_TEMPERATURE


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # The trained model: a four_body workdir; "" = train one first in <workdir>/train with `train_config`
  # (a variant of experiments/configs/four_body.py). The --train_workdir flag overrides this key.
  c.train_workdir = ""
  # "smooth" = the quick set-up with smooth unit vectors (eps 0.1; docs/decisions.md §14, README "Smooth unit
  # vectors"), a departure from eq. 9 that the MD benefits from; --config.train_config=quick trains eq. 9, and the
  # paper variant trains the paper's model.
  c.train_config = "smooth"
  # The conservative model (F = -grad E), a fifth run: a four_body workdir trained with forces = "conservative"
  # (--conservative_workdir overrides this key), or, when empty, one trained first in <workdir>/train_conservative
  # with `conservative_train_config`. Both empty (the quick default) = no conservative run: its training takes
  # ~17 min on 2 cores; `--config.conservative_train_config=conservative` runs it (README "Direct or conservative
  # forces?").
  c.conservative_workdir = ""
  c.conservative_train_config = ""
  # MD (Sec. 4.4, docs/decisions.md §8): 10 samples from the same positions, Maxwell-Boltzmann velocities at 10 K with the
  # centre-of-mass momentum removed, velocity Verlet, 1 fs, 10,000 steps, in float64.
  c.dtype = "float64"
  c.n_samples = 10
  c.initial_positions = FOUR_BODY_POSITIONS  # A
  c.temperature = FOUR_BODY_TEMPERATURE  # K
  c.dt = FOUR_BODY_DT  # ps
  c.n_steps = 10_000
  c.chunk_steps = 1_000  # steps per jitted lax.scan call (one progress line each)
  c.seed = 0  # velocities
  c.save_every = 10  # trajectories.npz keeps positions every this many steps (energies every step); 0 = none
  # Reported steps (results.json): the paper's "good to ~1,500, acceptable to ~4,000" and Fig. 7 at 4,000.
  c.position_rmsd_steps = (1_500, 4_000)
  c.energy_rmsd_steps = (4_000,)
  # The agreement horizon: the first step at which the position RMSD exceeds this (A).
  c.horizon_threshold = 0.1
  # Conservativeness (docs/decisions.md §12): lambda on fresh Sec. 4.1 clusters (test-like: a seed the training never saw)
  # and on MD frames; work around `n_loops` circles of `loop_radius` A with `loop_points` points each.
  c.n_test_configs = 256
  c.test_seed = 12_345
  c.n_loops = 64
  c.loop_radius = 0.05
  c.loop_points = 64
  # Gradient of a trajectory observable w.r.t. the network parameters through `grad_steps` MD steps, checked
  # against a central finite difference (step `fd_step`) on one parameter.
  c.grad_steps = 100
  c.fd_step = 1e-5

  if arg in (None, "", "quick"):
    pass
  elif arg == "paper":
    c.train_config = "paper"
    c.conservative_train_config = "conservative_paper"
  elif arg == "tiny":
    c.train_config = "tiny"
    c.conservative_train_config = "conservative_tiny"
    c.n_samples = 3
    c.n_steps = 400
    c.chunk_steps = 200
    c.position_rmsd_steps = (100, 400)
    c.energy_rmsd_steps = (400,)
    c.n_test_configs = 8
    c.n_loops = 4
    c.loop_points = 16
    c.grad_steps = 20
  else:
    raise ValueError(f"unknown config {arg!r}; expected one of quick, paper, tiny")
  c.lock()
  return c

"""Config of the smooth-unit-vector study (docs/decisions.md §14): eq. 9 against e = x / sqrt(|x|^2 + eps^2).

  python -m experiments.smooth_study --workdir=workdirs/smooth_study                       quick, eps 0 / 0.1 / 1
                                                                              (~20 min per eps on 2 CPU cores)
  python -m experiments.smooth_study --config=experiments/configs/smooth_study.py:tiny     a minute, for a smoke run
  python -m experiments.smooth_study --config.eps_values="(0.0,0.01,0.1,1.0)"              other values of eps
  python -m experiments.smooth_study --config.seed=1 --config.stages="('four_body',)"      another training seed
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # The values of eps compared at equal training budget; 0.0 (eq. 9, the paper) is the reference, listed first.
  # 0.1 is the four-atom MD's default and 1.0 the cross MD's (README "Smooth unit vectors").
  c.eps_values = (0.0, 0.1, 1.0)
  # Variants of the experiment configs that train and run each model (only `eps` differs between the models).
  c.four_body_config = "quick"
  c.four_body_md_config = "quick"
  c.many_body_config = "quick"
  c.cross_md_config = "quick"
  c.stages = ("four_body", "many_body")
  # Seed of the training runs (network initialization and mini-batch order; the data stay the same): repeat the
  # study with another seed to see how much of a difference between models is training noise.
  c.seed = 0
  # More many-body models, "NAME:KEY=VALUE,KEY=VALUE" (overrides of experiments/configs/many_body.py), trained and
  # measured like the others in <workdir>/NAME (many-body stage only).
  c.extra_many_body = ()  # "four_body" = training + four_body_md, "many_body" = training + cross_md
  # Force bins (eV/A, by |F| of the reference force on an atom): RMSE per component in each bin.
  c.force_bins = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 1e9)
  # MD agreement horizon: the first step at which the position RMSD against the analytical run exceeds this (A).
  c.horizon_rmsd = 0.1
  # Crystals for the many-body model: FCC argon, n_cells^3 cells in a periodic box n_cells * a, perfect and
  # isotropically strained (a * (1 + s)): forces are zero by symmetry; then one atom displaced by each delta (A)
  # along (1, 2, 3) / sqrt(14), where the network's restoring force is compared with lj/cut's.
  c.crystal_cells = 5
  c.crystal_strains = (-0.01, 0.01)
  c.displacements = (1e-4, 1e-3, 1e-2, 1e-1)
  # Frames of the cross MD (every xyz_every steps of the analytical run) on which forces are binned.
  c.cross_frames = 5

  if arg in (None, "", "quick"):
    pass
  elif arg == "tiny":
    c.four_body_config = "tiny"
    c.four_body_md_config = "tiny"
    c.many_body_config = "tiny"
    c.cross_md_config = "tiny"
    c.crystal_cells = 4
    c.cross_frames = 2
  else:
    raise ValueError(f"unknown config {arg!r}; expected one of quick, tiny")
  c.lock()
  return c

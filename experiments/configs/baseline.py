"""Configs of the non-equivariant baseline (paper Sec. 4.3) and the symmetry studies past it.

  python -m experiments.baseline                                              quick default
  python -m experiments.baseline --config=experiments/configs/baseline.py:paper   the paper's 100,000 FIRE steps
  python -m experiments.baseline --config=experiments/configs/baseline.py:tiny    seconds, for tests
"""

import ml_collections

from experiments.configs import four_body


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  base = four_body.get_config("tiny" if arg == "tiny" else None)
  c = ml_collections.ConfigDict()
  # The same data and split as the equivariant network (experiments/configs/four_body.py).
  for key in ("n_configs", "position_std", "r_min", "data_seed", "cache_dir", "dtype", "seed", "activation"):
    c[key] = base[key]
  c.enn_sizes = base.sizes
  c.mlp_a_sizes = (18, 50, 90, 100, 80, 50, 12)  # 27,382 parameters
  c.mlp_b_sizes = (18, 75, 120, 150, 110, 70, 12)  # 53,927 parameters
  c.models = ("enn", "mlp_a", "mlp_b")

  # (i) FIRE as in the paper: full batch, dt_max halved for (A) and divided by 3 for (B).
  c.fire = four_body.fire_defaults()
  c.fire_dt_max_factor = ml_collections.ConfigDict(dict(enn=1.0, mlp_a=0.5, mlp_b=1 / 3))
  # Quick: full batch over the first 1,000 training configurations, so that 3,000 steps fit in minutes
  # (one full-batch step over all 60,000 takes seconds on a laptop CPU); `paper` uses all of them.
  c.fire_steps = 3_000
  c.fire_eval_every = 100
  c.fire_train_subset = 1_000  # full batch over the first K training configurations (0 = all)

  # (ii) The equivariant quick config's Adam schedule, for every model.
  c.adam_steps = base.steps
  c.adam_eval_every = base.eval_every
  c.learning_rate = base.learning_rate
  c.warmup_steps = base.warmup_steps
  c.end_lr_factor = base.end_lr_factor
  c.batch_size = base.batch_size

  # Data efficiency: test RMSE vs training-set size at one Adam budget for every size.
  c.curve_sizes = (300, 1_000, 3_000, 10_000, 60_000)
  c.curve_models = ("enn", "mlp_b")
  c.curve_steps = 5_000
  c.curve_eval_every = 500

  c.rotation_seed = 123

  if arg in (None, "", "quick"):
    pass
  elif arg == "paper":
    c.fire_steps = 100_000
    c.fire_eval_every = 1_000
    c.fire_train_subset = 0
    c.curve_steps = base.steps
    c.curve_eval_every = base.eval_every
  elif arg == "tiny":
    c.enn_sizes = (6, 8, 4)
    c.mlp_a_sizes = (18, 10, 12)
    c.mlp_b_sizes = (18, 16, 12)
    c.fire_steps = 20
    c.fire_eval_every = 10
    c.fire_train_subset = 0
    c.adam_steps = 40
    c.adam_eval_every = 20
    c.curve_sizes = (30, 100, 300)
    c.curve_steps = 20
    c.curve_eval_every = 10
  else:
    raise ValueError(f"unknown config {arg!r}; expected one of quick, paper, tiny")
  c.lock()
  return c

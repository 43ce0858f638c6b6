"""Configs of the four-atom force experiment (paper Sec. 4.1-4.2).

  python -m experiments.four_body                                          quick default (minutes on a CPU)
  python -m experiments.four_body --config=experiments/configs/four_body.py:paper    the paper's set-up
  python -m experiments.four_body --config=experiments/configs/four_body.py:accurate the paper's accuracy (~1 h)
  python -m experiments.four_body --config=experiments/configs/four_body.py:tiny     seconds, for tests
  python -m experiments.four_body --config=experiments/configs/four_body.py:smooth   quick, smooth unit vectors
                                                                      (eps 0.1; four_body_md trains this one)
  python -m experiments.four_body --config=experiments/configs/four_body.py:conservative           F = -grad E
  python -m experiments.four_body --config=experiments/configs/four_body.py:conservative_accurate  ... accurate
  python -m experiments.four_body --config=experiments/configs/four_body.py:conservative_tiny      ... for tests
"""

import ml_collections


def fire_defaults() -> ml_collections.ConfigDict:
  """The paper's FIRE parameters (Appendix)."""
  return ml_collections.ConfigDict(dict(
      dt=0.001, dt_max=0.01, mass=0.1, n_min=5, f_inc=1.1, f_dec=0.5, alpha_start=0.1, f_alpha=0.99,
      variant="paper"))


def training_defaults(c: ml_collections.ConfigDict, *, learning_rate: float, warmup_steps: int, steps: int,
                      checkpoint_every: int, batch_size: int = 256, eval_every: int = 1_000) -> None:
  """The training entries (`training.train`) every force experiment shares: mini-batch Adam with warm-up and cosine
  decay (`optimizer = "fire"` switches to the paper's full-batch FIRE, `c.fire`), evaluation and checkpoint
  cadence, no early stop, the non-finite limit and the devices of data-parallel training."""
  c.optimizer = "adam"
  c.learning_rate = learning_rate
  c.warmup_steps = warmup_steps
  c.end_lr_factor = 0.01
  c.batch_size = batch_size
  c.steps = steps
  c.eval_every = eval_every
  c.checkpoint_every = checkpoint_every
  c.patience = 0
  # Steps with a non-finite loss or gradient (each skipped) after which training stops with an error.
  c.max_nonfinite_steps = 10
  # Devices the training is split over (data-parallel, `training.training_mesh`): 0 = every device jax sees.
  c.devices = 0
  c.fire = fire_defaults()


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Data (Sec. 4.1): 4 atoms, coordinates ~ N(0, 3 A), no pair closer than 2.8 A, split 60/20/20.
  c.n_configs = 100_000
  c.position_std = 3.0
  c.r_min = 2.8
  c.data_seed = 0
  c.cache_dir = ""  # "" = $UENN_CACHE_DIR or ~/.cache/unitary_enn
  # Network (Sec. 4.2): 6 -> 50 -> 90 -> 100 -> 80 -> 50 -> 4 vectors, 52,000 real parameters.
  c.sizes = (6, 50, 90, 100, 80, 50, 4)
  c.activation = "softsign"
  # Forces: "direct" (the paper: the output vectors are the forces) or "conservative" (the UENN's output vectors
  # -> Gram invariants -> a scalar head with hidden widths `head_hidden` -> the energy; F = -grad E).
  c.forces = "direct"
  c.head_hidden = (32,)
  # Conservative only: weight of the squared standardized energy error beside the force error (0 = force matching).
  c.energy_weight = 0.0
  # Smooth unit vectors x / sqrt(|x|^2 + eps^2) in every layer (docs/decisions.md §14); 0 = the paper's eq. 9.
  c.eps = 0.0
  # Precision of the network's products: "highest" (full float32 on every backend), "tf32" (GPU), "bf16", "default".
  c.precision = "highest"
  c.dtype = "float32"
  c.seed = 0
  # Optimizer: the quick default is mini-batch Adam with warm-up and cosine decay; `paper` is full-batch FIRE.
  training_defaults(c, learning_rate=3e-3, warmup_steps=200, steps=40_000, checkpoint_every=5_000)
  # Relabel the atoms of each mini-batch sample at random (24 relabellings of the same configuration).
  c.augment_permutations = False
  # Predict with the average over the 24 relabellings (data.symmetrize_permutations): validation, test and
  # the saved model (MD included) use it; training does not.
  c.symmetrize = False

  variant = arg or "quick"
  if variant.startswith("conservative"):
    # The same layers, ending in 16 vectors whose 136 Gram invariants feed a 64-wide head (53,200 + 8,833
    # parameters); the same data, batch and number of steps as the direct variant of the same name. Two changes
    # (docs/decisions.md §16): smooth unit vectors, eps = 0.1 (with eq. 9's x / |x| the forces -grad E hold 1/|x|
    # terms of every hidden vector and training stalls), and a peak learning rate of 1e-3 (3e-3 diverged).
    c.forces = "conservative"
    c.sizes = (6, 50, 90, 100, 80, 50, 16)
    c.head_hidden = (64,)
    c.eps = 0.1
    c.learning_rate = 1e-3
    arg = variant[len("conservative"):].lstrip("_") or "quick"
  if arg in (None, "", "quick"):
    pass
  elif arg == "paper":
    c.optimizer = "fire"
    c.steps = 10_000_000
    c.eval_every = 1_000
    c.checkpoint_every = 10_000
  elif arg == "accurate":
    # Reaches the paper's 0.00118 eV/A on the paper's data (benchmarks/RESULTS.md, time to accuracy): the
    # quick set-up, ten times longer, on mini-batches relabelled at random (no overfitting), predicting with
    # the average over the 24 relabellings.
    c.augment_permutations = True
    c.symmetrize = True
    c.steps = 400_000
    c.end_lr_factor = 0.001
    c.eval_every = 10_000
    c.checkpoint_every = 10_000
  elif arg == "smooth":
    # The quick set-up with smooth unit vectors, eps = 0.1 standardized units (docs/decisions.md §14): at the same
    # budget its force error near the LJ minimum, where the MD runs, is half eq. 9's (README, smooth unit vectors).
    c.eps = 0.1
  elif arg == "tiny":
    c.n_configs = 500
    c.sizes = (6, 8, 4)
    c.head_hidden = (8,)
    c.steps = 60
    c.eval_every = 20
    c.checkpoint_every = 20
    c.batch_size = 32
  else:
    raise ValueError(f"unknown config {variant!r}; expected one of quick, paper, accurate, smooth, tiny, "
                     "conservative, conservative_accurate, conservative_tiny")
  c.lock()
  return c

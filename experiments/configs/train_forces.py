"""Config of experiments/train_forces.py: a force model from any data file ASE reads.

Variants: "quick" (the default: minutes on 2 CPU cores for a few hundred 100-atom configurations), "tiny" (seconds,
for tests). Basis entries set to 0 are derived from the data (`experiments.train_forces.derive_basis`).
"""

from __future__ import annotations

import ml_collections

from experiments.configs.four_body import training_defaults

VARIANTS = ("quick", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Frames of --data split into train / validation / test (shuffled with data_seed); a fraction is ignored (and the
  # rest renormalized) when --validation_data or --test_data gives that set.
  c.split = (0.8, 0.1, 0.1)
  c.data_seed = 0
  # The model: "direct" (forces predicted directly, Sec. 4.5). "conservative" (forces = -grad of a predicted
  # energy) is for when unitary_enn has the conservative model.
  c.forces = "direct"
  # Descriptor basis (eq. 51-52); 0 = derived from the data: r_cut = 2.4 x the median nearest-neighbour distance
  # (at most half the smallest periodic box), r_s from 0.8 x the smallest pair distance to r_cut in n_descriptors
  # Gaussians, eta = 1 / spacing^2.
  c.r_cut = 0.0
  c.r_s_start = 0.0
  c.n_descriptors = 22
  c.eta = 0.0
  c.cutoff = "cosine"  # or "polynomial" (C2)
  # Network: the linear path F = D c + ENN(D) (experiments/many_body.py), hidden vector widths, activation.
  c.linear_path = True
  c.hidden = (64, 32, 8)
  c.activation = "softsign"
  c.eps = 0.0
  c.precision = "highest"
  c.dtype = "float32"
  c.seed = 0
  # Training (unitary_enn/training.py): mini-batch Adam on atoms, or "fire" (full batch).
  training_defaults(c, learning_rate=2e-3, warmup_steps=200, steps=10_000, checkpoint_every=2_000)
  if arg == "tiny":
    c.hidden = (8,)
    c.n_descriptors = 12
    c.steps = 40
    c.eval_every = 20
    c.checkpoint_every = 20
    c.warmup_steps = 5
    c.batch_size = 64
  elif arg not in (None, "", "quick"):
    raise ValueError(f"unknown config {arg!r}; expected one of {', '.join(VARIANTS)}")
  c.lock()
  return c

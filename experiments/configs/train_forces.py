"""Config of experiments/train_forces.py: a force model from any data file ASE reads.

Variants: "quick" (the default: minutes on 2 CPU cores for a few hundred 100-atom configurations), "tiny" (seconds,
for tests), "conservative" (forces = -grad of a predicted energy: a model that conserves energy in MD and gives
ASE an energy; one species) and "conservative_tiny". Basis entries set to 0 are derived from the data
(`experiments.train_forces.derive_basis`).
"""

from __future__ import annotations

import ml_collections

from experiments.configs.four_body import training_defaults

VARIANTS = ("quick", "tiny", "conservative", "conservative_tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Frames of --data split into train / validation / test (shuffled with data_seed); a fraction is ignored (and the
  # rest renormalized) when --validation_data or --test_data gives that set.
  c.split = (0.8, 0.1, 0.1)
  c.data_seed = 0
  # The model: "direct" (forces predicted directly, Sec. 4.5) or "conservative" (an atomic energy from the same
  # layers, E = sum over atoms, F = -grad E: the many-body model of experiments/many_body.py:conservative, trained
  # on whole frames; one species; no linear path). Conservative only: the UENN ends in `energy_vectors` vectors ->
  # Gram invariants -> a scalar head of hidden widths `head_hidden`; `scalar_features` feeds the scalar descriptors
  # (eq. 34) as a feature row; `energy_weight` weighs the squared standardized energy error per atom beside the
  # forces (frames with energies only). Conservative training steps take `batch_size` whole frames.
  c.forces = "direct"
  c.energy_vectors = 16
  c.head_hidden = (32,)
  c.scalar_features = True
  c.energy_weight = 0.0
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
  variant = arg or "quick"
  if variant.startswith("conservative"):
    c.forces = "conservative"
    c.linear_path = False
    c.eps = 0.1  # smooth unit vectors, as the conservative models of four_body and many_body (docs/decisions.md §16)
    # On the EMT copper example (README, "Train on your own data"): 10,000 steps, about 6 minutes on 2 CPU cores;
    # energy_weight 1 gave 6.7 meV/atom and 0.060 eV/A where 0.1 gave 62 meV/atom and 0.064 eV/A (3,000 steps).
    c.batch_size = 4  # frames per step
    c.steps = 10_000
    c.eval_every = 200
    c.checkpoint_every = 2_000
    c.warmup_steps = 100
    c.learning_rate = 1e-3
    c.energy_weight = 1.0
    # The C2 polynomial cutoff, smoother at r_c than eq. 52's cosine (C1) and as accurate. After the first 100 fs
    # of NVE both hold energy as EMT does; the 50x difference first measured was the start from a perfect lattice
    # (README, "A conservative model").
    c.cutoff = "polynomial"
  if variant.endswith("tiny"):
    c.hidden = (8,)
    c.n_descriptors = 12
    c.steps = 40
    c.eval_every = 20
    c.checkpoint_every = 20
    c.warmup_steps = 5
    c.batch_size = 64 if c.forces == "direct" else 2
    c.energy_vectors = 4
    c.head_hidden = (8,)
  if variant not in VARIANTS:
    raise ValueError(f"unknown config {arg!r}; expected one of {', '.join(VARIANTS)}")
  c.lock()
  return c

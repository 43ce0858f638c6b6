"""Configs of the complex U(n) experiment: Loewdin orthonormalization and mean-field dynamics, n = 2, 4, 8.

  python -m experiments.unitary                                        quick default (minutes on 2 CPU cores)
  python -m experiments.unitary --config=experiments/configs/unitary.py:paper   more data, wider, longer (hours)
  python -m experiments.unitary --config=experiments/configs/unitary.py:tiny    seconds, for tests
"""

import ml_collections

from experiments.configs.four_body import fire_defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.tasks = ("loewdin", "dynamics")
  c.ns = (2, 4, 8)
  # Data: M vectors X = D Z in C^n, Z standard complex Gaussian, D = diag of coordinate standard deviations
  # falling geometrically by `anisotropy` (a fixed frame, so that a Haar-rotated test set is out of distribution
  # for a model that is not equivariant); each vector then normalized to 1, as orbitals are.
  c.loewdin_vectors = 3  # M, clamped to n (at most n vectors in C^n are linearly independent)
  c.max_condition = 10.0  # Loewdin inputs with cond(X) above this are redrawn
  c.dynamics_orbitals = 3  # M
  c.anisotropy = 3.0
  c.normalize = True
  # Mean-field Hamiltonian H = g P + g2 P^2, P = sum_m psi_m psi_m^H; one step of length dt (units of 1/g).
  c.g = 1.0
  c.g2 = 0.5
  c.dt = 0.01
  c.num_train = 20_000
  c.num_validation = 2_000
  c.num_test = 2_000
  c.data_seed = 0
  c.rotation_seed = 1  # one Haar-random U(n) per test sample
  # Models: the UENN (complex weights, softsign with residue a = 0.1 on hidden layers) against a real MLP on the
  # stacked real and imaginary parts, of the same depth and the width that matches the parameter count.
  c.uenn_hidden = (32, 32)
  c.activation = "softsign"
  c.residual = True  # predict f(X) - X (scaled) and add X back
  # Dynamics also with the unitary Cayley step: the network outputs generator vectors Phi and the step is
  # (I - G/2)^(-1) (I + G/2) Psi, G = Phi Psi^H - Psi Phi^H (quantum.cayley_step), norm-preserving by construction.
  c.cayley_models = ("uenn_cayley", "mlp_cayley")  # () for none
  c.dtype = "float32"  # networks in complex64 (UENN) / float32 (MLP); data and references in float64
  c.seed = 0
  c.optimizer = "adam"  # or "fire" (full batch, the paper's FIRE); both conjugate complex gradients
  c.learning_rate = 1e-2
  c.warmup_steps = 100
  c.end_lr_factor = 0.01
  c.batch_size = 128
  c.steps = 4_000
  c.eval_every = 1_000
  c.checkpoint_every = 4_000
  c.patience = 0
  c.fire = fire_defaults()
  # Learning curve: test error vs training-set size at n = curve_n, same optimizer budget; num_train is the
  # last point (the main run).
  c.curve_n = 4
  c.curve_sizes = (100, 1_000, 5_000)
  # Rollout of the learned dynamics step from test states, against the exact propagation.
  c.rollout_steps = 100
  c.rollout_samples = 256

  if arg in (None, "", "quick"):
    pass
  elif arg == "paper":
    c.num_train = 100_000
    c.num_validation = 10_000
    c.num_test = 10_000
    c.uenn_hidden = (64, 64, 64)
    c.steps = 200_000
    c.eval_every = 10_000
    c.checkpoint_every = 10_000
    c.curve_sizes = (1_000, 4_000, 16_000, 50_000)
    c.rollout_samples = 1_000
  elif arg == "tiny":
    c.ns = (3,)
    c.num_train = 300
    c.num_validation = 100
    c.num_test = 100
    c.uenn_hidden = (8,)
    c.steps = 60
    c.eval_every = 20
    c.checkpoint_every = 20
    c.batch_size = 32
    c.curve_n = 3
    c.curve_sizes = ()  # the curve is the main run alone: each sub-run costs seconds of compilation
    c.rollout_steps = 10
    c.rollout_samples = 16
  else:
    raise ValueError(f"unknown config {arg!r}; expected one of quick, paper, tiny")
  c.lock()
  return c

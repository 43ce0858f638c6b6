"""Why the conservative copper model's energy is not EMT's near the perfect lattice: data, not network.

  python docs/results/train_forces_conservative_cu/near_lattice.py /tmp/cu_cons_model /tmp/cu.xyz > near_lattice.log

1. The training data's coverage: per atom of every frame of the data file, the largest norm of its standardized
   vector descriptor channels, |D^a| / s_D (at the perfect lattice every channel is ~1e-15).
2. The network near D = 0, layer by layer: the vector descriptors of a rattled lattice (N(0, 0.05 A)) scaled by
   lambda, the scalar feature row of the lattice kept; the median column norm of each layer's vector rows over
   lambda (the gain from the input), and the mean atomic energy (standardized).
"""

import sys

import ase.io
import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

from unitary_enn import descriptors, energy, layers, models  # noqa: E402

model = models.load_model(sys.argv[1])
b = model.basis
kw = dict(r_s=b.r_s, eta=b.eta, r_cut=b.r_cut, cutoff=b.cutoff)
s_d = np.asarray(model.scales["inputs"])

# 1. Coverage.
largest = []
for atoms in ase.io.read(sys.argv[2], ":"):
  box = float(atoms.cell.lengths()[0]) if atoms.pbc.all() else None
  pos = np.mod(atoms.positions, box) if box else atoms.positions
  d = np.asarray(descriptors.vector_descriptors(pos, box, **kw)) / s_d
  largest.append(np.linalg.norm(d, axis=1).max(axis=1))
largest = np.concatenate(largest)
q = np.quantile(largest, [0.0, 0.001, 0.01, 0.5])
print(f"{sys.argv[2]}: {largest.size:,} atoms; per atom the largest |D^a| / s_D: smallest {q[0]:.3g}, 0.1% {q[1]:.3g}, "
      f"1% {q[2]:.3g}, median {q[3]:.3g}; below 0.1: {np.mean(largest < 0.1):.1e} of the atoms, below 0.3: "
      f"{np.mean(largest < 0.3):.1e}")

# 2. The network near D = 0.
params = jax.tree.map(lambda x: np.asarray(x, np.float64), model.params)
lattice = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
rattled = lattice.positions + np.random.default_rng(1).normal(0.0, 0.05, lattice.positions.shape)
d = np.asarray(descriptors.vector_descriptors(np.mod(rattled, 10.8), 10.8, **kw)) / s_d
s = np.asarray(descriptors.scalar_descriptors(lattice.positions, 10.8, **kw)) / np.asarray(model.scales["feature_inputs"])
act = layers.get_activation(model.activation)
print(f"eps {model.eps}, rms of b per layer " + " ".join(f"{float(np.sqrt(np.mean(l['b'] ** 2))):.3f}"
                                                     for l in params["uenn"]))
for lam in (1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 1.0):
  x0 = jnp.concatenate([lam * d, s[:, None, :]], axis=1)
  x, gains = x0, []
  for i, layer in enumerate(params["uenn"]):
    x = layers.equivariant_dense(layer, x, 1, eps=model.eps)
    x = act(x) if i < len(params["uenn"]) - 1 else x
    gains.append(float(np.median(np.linalg.norm(np.asarray(x)[:, :3], axis=1))) / lam)
  e = energy.apply_energy_network(params, x0, n_features=1, activation=model.activation, eps=model.eps)
  print(f"lambda {lam:.0e}: gain per layer " + " ".join(f"{g:.3g}" for g in gains)
        + f"; mean atomic energy (standardized) {float(jnp.mean(e)):+.7f}")

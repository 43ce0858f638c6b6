"""Where README's NVE "drift" of the conservative copper model comes from: the first femtoseconds after a start
from the perfect lattice, where every vector descriptor is zero.

  python docs/results/train_forces_conservative_cu/start_transient.py /tmp/cu_cons_model > start_transient.log

1. The vector descriptors |D| / s_D (standardized, as the network sees them) at the start, after 2 fs and after
   100 fs of the NVE run of README's table, beside the smooth unit vectors' eps (the model's eps, §14).
2. The total energy's change over the first 2 fs with dt = 2, 1, 0.5, 0.25 fs, EMT against the model in float64
   (float64: none of it is rounding).
3. README's NVE (108 atoms, 600 K start, 4 ps, float32 model) with the total energy read every step: its change
   over the first 100 fs, then from 0.1 to 4 ps (end - start, std, max - min), at dt 2 and 1 fs; the same from a
   rattled lattice (every position moved by N(0, 0.05 A) per coordinate before the velocities are drawn).
"""

import dataclasses
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from unitary_enn import descriptors, models  # noqa: E402
from unitary_enn.calculator import UENNCalculator  # noqa: E402

model = models.load_model(sys.argv[1])
model64 = dataclasses.replace(model, dtype="float64",
                              params=jax.tree.map(lambda x: np.asarray(x, np.float64), model.params))
BOX = 10.8


def start(rattle=0.0):
  atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
  if rattle:
    atoms.positions += np.random.default_rng(1).normal(0.0, rattle, atoms.positions.shape)
  MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(0))
  return atoms


def standardized_norms(positions):
  b = model.basis
  d = descriptors.vector_descriptors(np.mod(positions, BOX), BOX, r_s=b.r_s, eta=b.eta, r_cut=b.r_cut,
                                     cutoff=b.cutoff)
  return np.linalg.norm(np.asarray(d) / np.asarray(model.scales["inputs"]), axis=1)  # (N, K)


# 1. The descriptors along the first 100 fs (dt 1 fs, float32 model).
atoms = start()
atoms.calc = UENNCalculator(model)
dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
for t in (0, 2, 100):
  dyn.run(t - dyn.nsteps)
  q = np.quantile(standardized_norms(atoms.positions), [0.5, 0.9])
  print(f"t = {t:3d} fs: |D| / s_D median {q[0]:.3g}, 90th percentile {q[1]:.3g} (eps = {model.eps:g})")

# 2. The first 2 fs.
for name, calc in (("EMT", EMT()), ("model, float64", UENNCalculator(model64))):
  out = []
  for dt in (2.0, 1.0, 0.5, 0.25):
    atoms = start()
    atoms.calc = calc
    e0 = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=dt * units.fs).run(int(round(2 / dt)))
    out.append(f"dt {dt:g}: {(atoms.get_total_energy() - e0) / len(atoms) * 1e3:+.2e}")
  print(f"{name}: E_tot(2 fs) - E_tot(0), meV/atom: " + ", ".join(out), flush=True)

# 3. README's NVE, every step.
for rattle in (0.0, 0.05):
  for name, calc in (("EMT", EMT()), ("model", UENNCalculator(model))):
    for dt in (2.0, 1.0):
      t0 = time.time()
      atoms = start(rattle)
      atoms.calc = calc
      e = []
      dyn = VelocityVerlet(atoms, timestep=dt * units.fs)
      dyn.attach(lambda: e.append(atoms.get_total_energy() / len(atoms)), interval=1)
      dyn.run(int(4000 / dt))  # the observer runs before the first step too: e[0] is the start
      e = np.asarray(e) * 1e3  # meV/atom
      k = int(100 / dt)
      rest = e[k:]
      print(f"{'rattled' if rattle else 'perfect'} start, {name}, dt {dt:g} fs: 4 ps end - start {e[-1] - e[0]:+.3f}; "
            f"first 100 fs {e[k] - e[0]:+.3f}; 0.1 - 4 ps: end - start {rest[-1] - rest[0]:+.4f}, std {np.std(rest):.4f}, "
            f"max - min {np.ptp(rest):.4f} meV/atom ({time.time() - t0:.0f} s)", flush=True)

"""Checks behind README's "A conservative model" figures (train_forces :conservative on the EMT copper example).

  python docs/results/train_forces_conservative_cu/checks.py /tmp/cu_cons_model > checks.log          # the config's
  python docs/results/train_forces_conservative_cu/checks.py /tmp/cu_cons_cosine > checks_cosine.log   # cosine cutoff

results.json / results_cosine.json: the two trainings' results.json; nve.log: the NVE script of README's first
table (the total energy every 20 fs, its endpoints read as a drift; README now reads it every step with
start_transient.py, whose logs and the other scripts' are beside this one).

1. The model in float64 (its float32 weights, widened): -dE/dR along a path, F against the energy's differences
   by the trapezoid rule, and the largest force derivative met (steep spots).
2. The same NVE as README's table in float64: whether the model's drift is rounding.
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from unitary_enn import models  # noqa: E402
from unitary_enn.calculator import UENNCalculator  # noqa: E402

model = models.load_model(sys.argv[1])
model = dataclasses.replace(model, dtype="float64",
                            params=jax.tree.map(lambda x: np.asarray(x, np.float64), model.params))
energy_field, force_field = models.load_energy_field(model), models.load_force_field(model)

# 1. A random direction from a thermally displaced 108-atom box: atom 0 moved 0 .. 1 A in 2,000 steps.
atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
rng = np.random.default_rng(1)
p0, box = atoms.positions + rng.normal(0, 0.1, atoms.positions.shape), 10.8
d = rng.normal(size=3)
d /= np.linalg.norm(d)
xs = np.linspace(0.0, 1.0, 2001)
h = xs[1] - xs[0]
e, f = [], []
for x in xs:
  p = p0.copy()
  p[0] += x * d
  p = np.mod(p, box)
  e.append(float(energy_field(p, box)))
  f.append(float(np.asarray(force_field(p, box))[0] @ d))
e, f = np.asarray(e), np.asarray(f)
resid = np.abs(np.diff(e) + 0.5 * (f[1:] + f[:-1]) * h)  # dE = -F dx, trapezoid rule
slope = np.abs(np.diff(f)) / h
for upto in (0.3, 1.0):
  sel = xs[1:] <= upto
  print(f"path 0 .. {upto} A in {h:.0e} A steps: |dE + F dx| max {resid[sel].max():.2e} eV, median "
        f"{np.median(resid[sel]):.2e} eV; |dF/dx| max {slope[sel].max():,.0f} eV/A^2 (at {xs[1:][sel][np.argmax(slope[sel])]:.3f} A), "
        f"median {np.median(slope[sel]):.1f}; |F| max {np.abs(f[:len(sel) + 1][np.r_[True, sel]]).max():.1f} eV/A")

# 2. README's NVE in float64.
calc = UENNCalculator(model)
for dt in (2.0, 1.0):
  atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
  MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(0))
  atoms.calc = calc
  en = []
  dyn = VelocityVerlet(atoms, timestep=dt * units.fs)
  dyn.attach(lambda: en.append(atoms.get_total_energy() / len(atoms)), interval=int(20 / dt))
  dyn.run(int(4000 / dt))
  print(f"float64 NVE, dt {dt:g} fs: T {atoms.get_temperature():.0f} K at 4 ps; total energy drift "
        f"{(en[-1] - en[0]) * 1e3:+.3f} meV/atom, std {np.std(en) * 1e3:.3f} meV/atom")

"""Each model's (and EMT's) energy along the first 2 fs of free flight from README's perfect-lattice start (float64).

  python docs/results/train_forces_conservative_cu/free_flight.py /tmp/cu_cons_model /tmp/cu_cons_cosine EMT \
      > free_flight.log

Positions R(s) = R_0 + s v_0 (2 fs), s in [0, 1] in 4,000 steps, v_0 the run's Maxwell-Boltzmann velocities at
600 K. Prints E(s) - E(0) and the force along the path at a few s, the work of the forces by the trapezoid rule
against E (whether the forces are the energy's gradient there) and d2E/ds2 (where the energy is stiff).
"""

import dataclasses
import sys

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution  # noqa: E402

from unitary_enn import models  # noqa: E402


def fields(name):
  """Energy and force functions of positions (A) in the periodic box: the model in float64, or EMT."""
  if name == "EMT":
    from ase.calculators.emt import EMT

    def get(p, box, what):
      a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
      a.positions = p
      a.calc = EMT()
      return a.get_potential_energy() if what == "energy" else a.get_forces()
    return (lambda p, box: get(p, box, "energy")), (lambda p, box: get(p, box, "forces"))
  model = models.load_model(name)
  model = dataclasses.replace(model, dtype="float64",
                              params=jax.tree.map(lambda x: np.asarray(x, np.float64), model.params))
  return models.load_energy_field(model), models.load_force_field(model)


box = 10.8
atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(0))
step = atoms.get_velocities() * 2 * units.fs  # A over the 2 fs
p0 = atoms.positions.copy()
s = np.linspace(0.0, 1.0, 4001)
h = s[1] - s[0]
for name in sys.argv[1:]:
  energy_field, force_field = fields(name)
  e = np.array([float(energy_field(np.mod(p0 + x * step, box), box)) for x in s])
  f = np.array([float(np.sum(np.asarray(force_field(np.mod(p0 + x * step, box), box)) * step)) for x in s])
  work = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * h)])
  print(f"{name}: 2 fs of free flight, largest displacement {np.linalg.norm(step, axis=1).max():.4f} A: E(1) - E(0) "
        f"{e[-1] - e[0]:+.4e} eV; max over s of |E(s) - E(0) + W(s)| {np.max(np.abs(e - e[0] + work)):.1e} eV")
  d2 = np.diff(e, 2) / h ** 2
  print(f"  d2E/ds2 (eV): largest {np.abs(d2).max():.3g} at s = {s[1 + np.argmax(np.abs(d2))]:.5f}; median "
        f"{np.median(np.abs(d2)):.3g}; smallest {d2.min():.3g}")
  for x in (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0):
    i = int(round(x / h))
    print(f"  s = {s[i]:.3f}: E - E0 {e[i] - e[0]:+.3e} eV, (E - E0) / s^2 {(e[i] - e[0]) / s[i] ** 2:.3g} eV, "
          f"F . dR/ds {f[i]:+.3e} eV", flush=True)

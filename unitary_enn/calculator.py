"""A trained model as an ASE calculator: ASE's MD (`ase.md`), optimizers (`ase.optimize`) and tools use it directly.

    from unitary_enn.calculator import UENNCalculator
    atoms.calc = UENNCalculator("workdirs/train_forces")       # a workdir, a model.npz file or a `models.Model`
    forces = atoms.get_forces()                                  # (N, 3) eV/A

Properties: "forces" for every model. The models of this package predict forces directly (Sec. 4.5), so they have
no energy; ASE then raises `PropertyNotImplementedError` for "energy", which is what ASE's velocity Verlet and
Langevin never ask for. ASE's optimizers (FIRE, BFGS, ...) move on forces alone but call
`get_potential_energy()` once per step for their log line: pass `energy_placeholder=float("nan")` to let them run;
the logged energy is then NaN, visibly not a number (FIRE's optional `downhill_check` does use energies and must
stay off). A conservative model (`Model.forces == "conservative"`, energy from
`models.load_energy_field`) also gives "energy" (eV) and its forces are -dE/dr.

Cells: free clusters (`pbc` all False; the cell is ignored) and cubic periodic cells (`pbc` all True, cell
`a * identity`, a >= 2 r_cut) -- the descriptors of this package take one periodic side. Anything else (a
triclinic or orthorhombic cell, mixed pbc) is a ValueError naming the cell. The chemical symbols must be species
of the model (`Model.species`, recorded by `experiments.train_forces`); a model file that names no species (the
paper's argon models, and one-species models of `experiments.many_body`) knows one unnamed species, so the atoms
must all be of one element. No stress: the descriptors take a cube, so a model cannot be strained along one axis.

Compilation: the force function is compiled once per (atom count, box side, dtype) and kept while those stay
the same; `calc.traces` counts how often it was traced (a neighbor list that outgrows its capacity is reallocated
and traced once more).

Units: positions A, forces eV/A, energy eV (ASE's units).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from unitary_enn import models, neighbors

def model_symbols(model: models.Model) -> tuple[str, ...] | None:
  """The chemical symbols a model knows, in its species order; None when its file names no species (one
  species: argon for the paper's models)."""
  return tuple(model.species) if model.species else None


def cubic_box(atoms) -> float | None:
  """The periodic cube side in A of `atoms`, or None for a free cluster; ValueError for any other cell."""
  pbc = np.asarray(atoms.get_pbc(), bool)
  if not pbc.any():
    return None
  cell = np.asarray(atoms.get_cell().array, np.float64)
  side = float(cell[0, 0])
  if not pbc.all() or side <= 0 or not np.allclose(cell, side * np.eye(3), rtol=0, atol=1e-9 * max(side, 1.0)):
    raise ValueError(
        f"UENNCalculator takes a free cluster (pbc all False) or a cubic periodic cell (pbc all True, cell "
        f"a * identity); got pbc {pbc.tolist()} and cell {np.round(cell, 6).tolist()}. The descriptors of "
        "unitary_enn take one periodic side (docs/decisions.md §9)")
  return side


class UENNCalculator(Calculator):
  """An `ase.calculators.calculator.Calculator` around a trained unitary_enn force model.

  Args:
    model: a `models.Model`, a model file, or the workdir of a training run (`model.npz`).
    energy_placeholder: the value reported as "energy" by a direct-force model, or None (the default) to raise
      `PropertyNotImplementedError` when an energy is asked for. `float("nan")` lets ASE's optimizers run
      (they log an energy every step but FIRE, without `downhill_check`, and BFGS move on forces only).
    **kwargs: passed to `Calculator` (e.g. `label`).

  Attributes:
    model: the `models.Model`.
    traces: how often the force (or energy) function has been traced and compiled.
  """

  implemented_properties = ["forces"]
  default_parameters: dict = {}

  def __init__(self, model, *, energy_placeholder: float | None = None, **kwargs):
    super().__init__(**kwargs)
    self.model = models.load_model(model)
    self.symbols = model_symbols(self.model)
    self.traces = 0
    self.energy_placeholder = energy_placeholder
    self.conservative = self.model.conservative
    # Per instance: a conservative model (or a placeholder energy) adds "energy".
    self.implemented_properties = ["forces"] + (
        ["energy", "free_energy"] if self.conservative or energy_placeholder is not None else [])
    self._energy = None
    if self.conservative:
      self._energy = models.load_energy_field(self.model)
      self._forces = models.load_force_field(self.model)
    elif self.model.kind == "four_body":
      self._forces = models.load_force_field(self.model)
    else:
      self._forces = self._counted_force_field()

  def _counted_force_field(self):
    """`models.load_force_field`'s many-body path, with a trace counter inside the compiled function."""
    model = self.model

    def build(displacement_fn):
      fn = models.many_body_force_fn(model, displacement_fn)

      def counted(positions, neighbor, **kwargs):
        self.traces += 1  # Python runs this only while jax traces the function
        return fn(positions, neighbor, **kwargs)
      return counted

    checked = neighbors.neighbor_list_model(build, r_cut=model.r_cut)

    def forces(positions, box=None, species=None):
      idx = models.species_indices(model, species, len(positions)) if species is not None else None
      if idx is None:
        return checked(positions, box)
      import jax.numpy as jnp
      return checked(positions, box, species=jnp.asarray(idx))
    return forces

  def check_species(self, atoms) -> np.ndarray:
    """`(N,)` chemical symbols of `atoms`, checked against the model's; ValueError naming unknown ones."""
    symbols = np.asarray(atoms.get_chemical_symbols())
    if self.symbols is None:
      if len(set(symbols.tolist())) > 1:
        raise ValueError(f"this model names no species: it knows one (argon for the paper's models), but the "
                         f"atoms hold {sorted(set(symbols.tolist()))}")
      return symbols
    unknown = sorted(set(symbols.tolist()) - set(self.symbols))
    if unknown:
      raise ValueError(f"the atoms hold {unknown}, which this model does not know; it was trained on "
                       f"{list(self.symbols)}")
    if self.model.kind == "four_body" and len(symbols) != self.model.n_atoms:
      raise ValueError(f"this four_body model takes {self.model.n_atoms} atoms, got {len(symbols)}")
    return symbols

  def get_property(self, name, atoms=None, allow_calculation=True):
    if name in ("energy", "free_energy") and name not in self.implemented_properties:
      raise PropertyNotImplementedError(
          "this unitary_enn model predicts forces directly and has no energy; ASE's MD (VelocityVerlet, Langevin) "
          "needs forces only. For ASE optimizers (FIRE, BFGS), which log an energy every step, use "
          "UENNCalculator(model, energy_placeholder=float('nan')), or train a conservative model")
    return super().get_property(name, atoms, allow_calculation)

  def calculate(self, atoms=None, properties=("forces",), system_changes=all_changes):
    super().calculate(atoms, properties, system_changes)
    atoms = self.atoms
    box = cubic_box(atoms)
    symbols = self.check_species(atoms)
    positions = np.asarray(atoms.get_positions(), np.float64)
    if box is not None:
      positions = np.mod(positions, box)
    species = None if self.symbols is None or len(self.symbols) == 1 else symbols
    if self.model.kind == "four_body":
      if box is not None:
        raise ValueError("the four-atom model is a free cluster: use pbc=False")
      forces = self._forces(positions)
    else:
      forces = self._forces(positions, box, species)
    self.results["forces"] = np.asarray(forces, np.float64)
    if self._energy is not None:
      self.results["energy"] = float(self._energy(positions, box, **({} if species is None else dict(
          species=species))))
    elif self.energy_placeholder is not None:
      self.results["energy"] = float(self.energy_placeholder)
    if "energy" in self.results:
      self.results["free_energy"] = self.results["energy"]

"""unitary_enn: unitary-equivariant feedforward neural networks (Ma & Chan, Neural Networks 2023) in JAX.

    import unitary_enn as uenn
    params = uenn.init_uenn(key, (6, 50, 90, 100, 80, 50, 4))        # the layer y = xW + eb, stacked
    y = uenn.apply_uenn(params, x)                                    # (..., n, 6) -> (..., n, 4)
    forces = uenn.load_force_field("workdirs/four_body")              # a trained model as a force field

The core names (layers, networks, FIRE, equivariance tests) load at once; everything that needs jax-md (neighbor
lists, descriptors, potentials, models, MD) loads on first use, so `import unitary_enn` stays light. Submodules:
constants, checks, layers, network, fire, neighbors, structures, potentials, descriptors, quantity, diagnostics,
data, energy, models, training, simulate, thermalize, files, plots, testing, quantum (the complex U(n) tasks), calculator
(the ASE calculator; needs ase), lammps (the model in LAMMPS through fix external), kernels (the descriptor sums in
one Pallas GPU kernel).
"""

from __future__ import annotations

import importlib

from unitary_enn.fire import ScaleByFireState, conjugate_complex_grads, fire, scale_by_fire
from unitary_enn.layers import (ACTIVATIONS, augmented_unit_vectors, equivariant_dense, get_activation, glorot_uniform,
                                identity, init_dense, safe_norm, smooth_unit_vectors, softsign, unit_vectors,
                                vector_leaky_relu)
from unitary_enn.network import (UENN, EquivariantDense, apply_invariant_head, apply_mlp, apply_uenn, count_params,
                                 init_invariant_head, init_mlp, init_uenn, invariant_features, num_invariants,
                                 vector_norms)
from unitary_enn.testing import assert_equivariant, assert_invariant, random_unitary

__version__ = "0.2.0"

_SUBMODULES = ("calculator", "checks", "constants", "data", "descriptors", "diagnostics", "energy", "files", "fire",
               "kernels", "lammps", "layers", "md", "models", "neighbors", "network", "parallel", "plots", "potentials",
               "quantity", "quantum", "simulate", "structures", "testing", "thermalize", "training")

# Names that load their module (and jax-md) on first use.
_LAZY = {
    "lj_energy": "potentials", "lj_forces": "potentials", "atm_energy": "potentials", "atm_forces": "potentials",
    "lj_atm_energy": "potentials", "lj_atm_forces": "potentials",
    "vector_descriptors": "descriptors", "scalar_descriptors": "descriptors", "descriptor_model": "descriptors",
    "load_force_field": "models", "load_energy_field": "models", "load_model": "models", "Model": "models",
    "nve_trajectory": "simulate", "run_nve": "simulate",
}

__all__ = sorted(["ACTIVATIONS", "augmented_unit_vectors", "glorot_uniform", "num_invariants", "EquivariantDense", "ScaleByFireState", "UENN", "apply_invariant_head", "apply_mlp",
                  "apply_uenn", "assert_equivariant", "assert_invariant", "conjugate_complex_grads", "count_params",
                  "equivariant_dense", "fire", "get_activation", "identity", "init_dense", "init_invariant_head",
                  "init_mlp", "init_uenn", "invariant_features", "random_unitary", "safe_norm", "scale_by_fire",
                  "smooth_unit_vectors", "softsign", "unit_vectors", "vector_leaky_relu", "vector_norms", *_LAZY])


def __getattr__(name: str):
  if name in _SUBMODULES:
    return importlib.import_module(f"unitary_enn.{name}")
  if name in _LAZY:
    return getattr(importlib.import_module(f"unitary_enn.{_LAZY[name]}"), name)
  raise AttributeError(f"module 'unitary_enn' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_SUBMODULES) | set(_LAZY))

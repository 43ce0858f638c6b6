"""Deprecated: `unitary_enn.md` was split into modules with one concept each; this shim lasts one release.

    models        four_body_force_fn, model_force_fn, many_body_force_fn, load_force_field
    quantity      energies, temperature, pressure, RMSDs, momenta, maxwell_boltzmann_momenta
    diagnostics   remove_net_force, remove_net_torque, without_net_force, force_jacobian, antisymmetric_fraction,
                  loop_work
    simulate      nve_trajectory, run_nve, run_nve_neighbor_list, Trajectory, NeighborListRun
    thermalize    thermalize_fcc, Thermalized
    structures    fcc_lattice, cross_geometry, cross_mask, cross_atom_count, argon_cross, unwrap_to_sites
    potentials    lj_cut_force_fn, lj_cut_energy_fn, lj_cut_virial_fn
    neighbors     NEIGHBOR_FORMATS, neighbor_format
    constants     the protocol constants
"""

import warnings

warnings.warn("unitary_enn.md is deprecated and will be removed in the next release: import from "
              "unitary_enn.models, quantity, diagnostics, simulate, thermalize, structures, potentials and constants "
              "(see the module map in README.md)", DeprecationWarning, stacklevel=2)

from unitary_enn.constants import (ARGON_FCC_LATTICE_CONSTANT, CROSS_BAR_WIDTH_CELLS, CROSS_TEMPERATURE,  # noqa: E402,F401
                                   FCC_BASIS, FOUR_BODY_DT, FOUR_BODY_POSITIONS, FOUR_BODY_TEMPERATURE,
                                   GPA_PER_EV_A3, PAPER_CROSS_ATOMS, PAPER_CROSS_CELLS)
from unitary_enn.diagnostics import (antisymmetric_fraction, force_jacobian, loop_work, random_planes,  # noqa: E402,F401
                                     remove_net_force, remove_net_torque, without_net_force)
from unitary_enn.models import four_body_force_fn, many_body_force_fn, model_force_fn  # noqa: E402,F401
from unitary_enn.neighbors import NEIGHBOR_FORMATS  # noqa: E402,F401
from unitary_enn.potentials import lj_cut_energy_fn, lj_cut_force_fn, lj_cut_virial_fn  # noqa: E402,F401
from unitary_enn.quantity import (angular_momentum, energy_rmsd, kinetic_energy,  # noqa: E402,F401
                                  max_relative_energy_deviation, maxwell_boltzmann_momenta, net_momentum,
                                  position_rmsd, pressure, relative_energy_drift, temperature,
                                  temperature_from_kinetic_energy, total_energy)
from unitary_enn.quantity import min_pair_distances as min_pair_distance  # noqa: E402,F401
from unitary_enn.simulate import NeighborListRun, Trajectory, nve_trajectory, run_nve, run_nve_neighbor_list  # noqa: E402,F401
from unitary_enn.structures import (argon_cross, cross_atom_count, cross_geometry, cross_mask,  # noqa: E402,F401
                                    fcc_lattice, four_body_initial_positions, unwrap_to_sites)
from unitary_enn.thermalize import Thermalized, thermalize_fcc  # noqa: E402,F401

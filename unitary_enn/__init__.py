"""unitary_enn: unitary-equivariant feedforward neural networks (Ma & Chan, Neural Networks 2023) in JAX."""

from unitary_enn.layers import (ACTIVATIONS, augmented_unit_vectors, equivariant_dense, get_activation,
                                glorot_uniform, identity, init_dense, safe_norm, softsign, unit_vectors,
                                vector_leaky_relu)
from unitary_enn.network import (UENN, EquivariantDense, apply_invariant_head, apply_mlp, apply_uenn,
                                 count_params, init_invariant_head, init_mlp, init_uenn, invariant_features,
                                 num_invariants, scalar_softsign, vector_norms)
from unitary_enn.fire import ScaleByFireState, conjugate_complex_grads, fire, scale_by_fire
from unitary_enn.potentials import (AMU, ARGON_EPSILON, ARGON_MASS, ARGON_SIGMA, KB, lj_energy, lj_forces,
                                    lj_forces_reference, lj_pair_energy)
from unitary_enn.io import load_force_field
from unitary_enn.testing import assert_equivariant, assert_invariant, random_unitary

__version__ = "0.1.0"

# Molecular dynamics driven by a trained force model (Sec. 4.4) and conservativeness diagnostics (SPEC 12).
from unitary_enn import md
from unitary_enn.md import (Trajectory, antisymmetric_fraction, force_jacobian, four_body_force_fn, loop_work,
                            maxwell_boltzmann_momenta, model_force_fn, nve_trajectory, remove_net_force,
                            remove_net_torque, run_nve, without_net_force)

# Many-atom descriptors (Sec. 3.5, 4.5), the vector GNN layer (eq. 32) and periodic lj/cut argon on jax-md.
from unitary_enn import descriptors
from unitary_enn.descriptors import (apply_linear_force_map, apply_vector_gnn, cosine_cutoff, descriptor_model,
                                     edge_features, fit_linear_force_map, identity_vector_gnn, init_vector_gnn,
                                     neighbor_list_model, paper_r_s, polynomial_cutoff, radial_grid,
                                     scalar_descriptors, scalar_descriptors_neighbor_list, vector_descriptors,
                                     vector_descriptors_neighbor_list, vector_gnn)
from unitary_enn.potentials import lj_cut_neighbor_list, lj_cut_pair_energy

# The argon cross of Sec. 4.5 (Fig. 11-14): FCC lattices, the cross cut, zero-pressure thermalization and
# free-space NVE on checked jax-md neighbor lists, with analytical lj/cut or network forces; extended XYZ files.
from unitary_enn.md import (ARGON_FCC_LATTICE_CONSTANT, NeighborListRun, Thermalized, argon_cross, cross_atom_count,
                            cross_geometry, cross_mask, fcc_lattice, lj_cut_energy_fn, lj_cut_force_fn,
                            lj_cut_virial_fn, many_body_force_fn, run_nve_neighbor_list, thermalize_fcc)
from unitary_enn.io import write_extxyz

"""Units, argon constants and the paper's protocol numbers: one place for every constant of the experiments.

Metal units throughout the package (paper Sec. 4.1, as LAMMPS `units metal`): length in A, energy in eV, time in
ps, mass in eV ps^2 / A^2, momentum in eV ps / A, force in eV/A, temperature in K. Configs import their
defaults from here, so a protocol number is written once.
"""

# Units.
AMU = 1.0364269e-4  # 1 u in eV ps^2 / A^2
KB = 8.617333262e-5  # Boltzmann constant, eV / K
GPA_PER_EV_A3 = 160.21766208  # 1 eV / A^3 in GPa
HARTREE = 27.211386245988  # eV (CODATA 2018)
BOHR = 0.529177210903  # A (CODATA 2018)

# Argon Lennard-Jones (Rahman 1964; paper eq. 39-41).
ARGON_EPSILON = 120.0 * KB  # eV (eps / k_B = 120 K): 0.0103408 eV
ARGON_SIGMA = 3.4  # A
ARGON_MASS = 39.948 * AMU  # eV ps^2 / A^2

# Argon's Axilrod-Teller-Muto (triple-dipole) coefficient nu = C9 (not in the paper; the many-body target of
# `potentials.atm_energy`). Primary source: C9 = 518.3 E_h a0^9 from the dipole oscillator strength distribution of
# Kumar & Meath, Mol. Phys. 54, 823 (1985), i.e. 45.89 eV A^9. LAMMPS's `pair_style atm` documentation uses
# 0.072 eps sigma^9 in LJ units for argon-like atoms (its examples/atm), 45.21 eV A^9 with the eps, sigma above.
ARGON_ATM_C9_AU = 518.3  # E_h a0^9
ARGON_ATM_NU = ARGON_ATM_C9_AU * HARTREE * BOHR ** 9  # eV A^9: 45.89
ARGON_ATM_NU_LAMMPS_EXAMPLE = 0.072 * ARGON_EPSILON * ARGON_SIGMA ** 9  # eV A^9: 45.21

# Four atoms (Sec. 4.1-4.4): the data set and the MD start.
FOUR_BODY_POSITION_STD = 3.0  # A, coordinates ~ Normal(0, 3 A)
FOUR_BODY_R_MIN = 2.8  # A, no pair closer
FOUR_BODY_POSITIONS = ((3.0, 0.0, 0.1), (-3.0, -0.1, 0.0), (0.1, 2.5, 0.0), (0.0, -2.5, -0.1))  # A (Sec. 4.4)
FOUR_BODY_TEMPERATURE = 10.0  # K
FOUR_BODY_DT = 0.001  # ps
FOUR_BODY_PAPER_TEST_RMSE = 0.00118  # eV/A (Sec. 4.2)

# Many atoms (Sec. 4.5): descriptors, random periodic boxes, the lj/cut target.
PAPER_ETA = 100.0  # A^-2, eta = 0.1^-2
PAPER_R_CUT = 10.0  # A, descriptor cutoff and lj/cut truncation radius
PAPER_R_S_START = 2.8  # A, r_s = 2.8 + 0.1 a, a = 0..72
PAPER_R_S_STEP = 0.1  # A
PAPER_N_DESCRIPTORS = 73
PAPER_BOX_SIDES = tuple(45.0 + 5.0 * k for k in range(10))  # A: 45, 50, ..., 90
MANY_BODY_PAPER_TEST_RMSE = 0.00588  # eV/A (Sec. 4.5)
# The LJ+ATM target (`pair_style hybrid/overlay lj/cut 10.0 atm ATM_CUTOFF ATM_CUTOFF_TRIPLE`): a triple counts when
# each of its three distances is <= ATM_CUTOFF and their product is <= ATM_CUTOFF_TRIPLE^3 (A).
ATM_CUTOFF = 7.5
ATM_CUTOFF_TRIPLE = 6.5

# FCC metals from ASE's effective-medium theory (`ase.calculators.emt.EMT`; a many-body target, not in the paper).
# EMT's own equilibrium lattice constants (minimum of E(a) per atom on a 0.005 A grid, ASE 3.29), in A.
EMT_LATTICE_CONSTANTS = {"Cu": 3.59, "Au": 4.055, "Ni": 3.485}
# Thermal displacement: standard deviation of each Cartesian component at 300 K of independent (Einstein-model)
# displacements, u = sqrt(k_B T / Phi) with Phi = 8.09 eV/A^2 the on-site force constant of EMT copper (one atom of
# a 256-atom box moved by 0.005 A, ASE 3.29). With it the force variance k_B T Phi and the potential energy
# 3/2 k_B T per atom are those of harmonic MD; the Debye-Waller amplitude (~0.083 A) would double the forces, since
# real phonons move neighbours together. Scaled as sqrt(T / 300 K).
THERMAL_DISPLACEMENT_300K = 0.0565  # A

# The argon cross (Sec. 4.5, end; Fig. 11-14).
ARGON_FCC_LATTICE_CONSTANT = 5.24411  # A
FCC_BASIS = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))  # in units of a
CROSS_TEMPERATURE = 60.0  # K
CROSS_BAR_WIDTH_CELLS = 7  # unit cells: 26,656 atoms from 50^3 cells (the paper reports 26,679)
PAPER_CROSS_CELLS = 50
PAPER_CROSS_ATOMS = 26_679

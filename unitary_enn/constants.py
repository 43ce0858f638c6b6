"""Units, argon constants and the paper's protocol numbers: one place for every constant of the experiments.

Metal units throughout the package (paper Sec. 4.1, as LAMMPS `units metal`): length in A, energy in eV, time in
ps, mass in eV ps^2 / A^2, momentum in eV ps / A, force in eV/A, temperature in K. Configs import their
defaults from here, so a protocol number is written once.
"""

# Units.
AMU = 1.0364269e-4  # 1 u in eV ps^2 / A^2
KB = 8.617333262e-5  # Boltzmann constant, eV / K
GPA_PER_EV_A3 = 160.21766208  # 1 eV / A^3 in GPa

# Argon Lennard-Jones (Rahman 1964; paper eq. 39-41).
ARGON_EPSILON = 120.0 * KB  # eV (eps / k_B = 120 K): 0.0103408 eV
ARGON_SIGMA = 3.4  # A
ARGON_MASS = 39.948 * AMU  # eV ps^2 / A^2

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

# The argon cross (Sec. 4.5, end; Fig. 11-14).
ARGON_FCC_LATTICE_CONSTANT = 5.24411  # A
FCC_BASIS = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))  # in units of a
CROSS_TEMPERATURE = 60.0  # K
CROSS_BAR_WIDTH_CELLS = 7  # unit cells: 26,656 atoms from 50^3 cells (the paper reports 26,679)
PAPER_CROSS_CELLS = 50
PAPER_CROSS_ATOMS = 26_679

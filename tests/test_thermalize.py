"""The zero-pressure thermalization (Sec. 4.5): the barostat pushes the box the right way, and a small crystal
reaches 60 K and about zero pressure."""

import numpy as np

from unitary_enn import thermalize
from unitary_enn.constants import ARGON_FCC_LATTICE_CONSTANT


def test_the_barostat_shrinks_a_stretched_crystal():
  a0 = 5.60
  th = thermalize.thermalize_fcc(5, temperature=60.0, time_ps=0.2, lattice_constant=a0, barostat_fraction=1.0,
                                 barostat_every=20, barostat_tau=0.1, chunk_steps=100, log=None)
  p = th.series["pressure_GPa"]
  assert p[0] < 0 and th.box < 5 * a0  # stretched: negative pressure, and the box shrinks
  assert abs(np.mean(p[-3:])) < abs(p[0])  # towards zero pressure


def test_a_compressed_crystal_expands_to_60_k_and_zero_pressure():
  """From the paper's 5.24411 A (below argon's 60 K lattice constant, so the pressure starts positive)."""
  th = thermalize.thermalize_fcc(5, temperature=60.0, time_ps=2.0, barostat_every=20, barostat_tau=0.1,
                                 chunk_steps=500, log=None)
  assert th.series["pressure_GPa"][0] > 0 and th.box > 5 * ARGON_FCC_LATTICE_CONSTANT  # the barostat expanded it
  late = th.series["step"] > 0.5 * th.series["step"][-1]  # the NVT half at the fixed box
  t = th.series["temperature_K"][late]
  p = th.series["pressure_GPa"][late]
  assert abs(np.mean(t) - 60.0) < 6.0, np.mean(t)  # 500 atoms: T fluctuates by ~60 K * sqrt(2 / 1500) ~ 2 K
  assert abs(np.mean(p)) < 0.03, np.mean(p)  # GPa; argon's bulk modulus near 60 K is ~2-3 GPa
  # Thermal expansion: argon at 60 K sits above the lattice constant the paper starts from.
  assert th.lattice_constant > ARGON_FCC_LATTICE_CONSTANT
  assert th.positions.shape == (500, 3) and np.all(np.isfinite(th.positions))


def test_a_list_allocated_for_an_array_box_keeps_hashable_metadata():
  # The barostat hands the neighbor manager its current box as an array; jax-md derives the cell size from it
  # and stores it as static pytree metadata, which jit compares between calls: it must be a plain number.
  import jax
  import jax.numpy as jnp
  from jax_md import space

  from unitary_enn import neighbors, structures
  displacement_fn, _ = space.periodic_general(26.0, fractional_coordinates=True)
  manager = neighbors.NeighborManager(displacement_fn, 26.0, 10.0, fractional_coordinates=True)
  sites = jnp.asarray(structures.fcc_lattice(5, 1.0 / 5))
  neighbor = manager.allocate(sites, box=jnp.asarray(26.0))
  assert isinstance(neighbor.cell_size, float)
  hash(jax.tree_util.tree_structure(neighbor))

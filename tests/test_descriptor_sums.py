"""The banded descriptor sum (the ~9 Gaussians nearest to each pair) against the full-basis sum, and the
device-aware block size of the sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import partition, space

from unitary_enn import data, descriptors

R_CUT = 10.0
PAPER = dict(r_s=descriptors.paper_r_s(), eta=100.0)  # Sec. 4.5: 73 centres 0.1 A apart, eta = 100 A^-2
SIDE = 21.0  # A, > 2 r_cut
TOL = {jnp.float32: 1e-6, jnp.float64: 1e-12}  # max |banded - full| / max |full|


def _system(n=80, seed=0):
  """Random periodic positions (A) with minimum distance 2.8 A, and two species."""
  pos = data.random_box(SIDE, max_atoms=n, r_min=2.8, seed=seed)
  species = np.random.default_rng(seed).integers(0, 2, len(pos))
  return pos, species


def _sums(pos, species, dtype, fmt, vector, band, r_s=PAPER["r_s"], eta=PAPER["eta"], block=None):
  """`_neighbor_list_sums` on a jax-md neighbor list in a periodic box, inside jit as MD calls it."""
  displacement_fn, _ = space.periodic(SIDE)
  neighbor_fn = partition.neighbor_list(displacement_fn, SIDE, R_CUT, format=fmt)
  pos = jnp.asarray(pos, dtype)
  nbrs = neighbor_fn.allocate(pos)
  v = jnp.ones((len(pos), 1), dtype) if species is None else jax.nn.one_hot(species, 2, dtype=dtype)
  r_s, eta = np.asarray(r_s, dtype), np.asarray(eta, dtype)

  @jax.jit
  def f(p, nbrs, v):
    return descriptors._neighbor_list_sums(p, nbrs, v, r_s, eta, displacement_fn=displacement_fn, r_cut=R_CUT,
                                           cutoff=descriptors.cosine_cutoff, vector=vector, block=block, band=band)
  return f, pos, nbrs, v


def _max_rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_band_width_is_the_narrowest_exact_band():
  # float32: exp(-eta (kb/2 * 0.1)^2) must be below 2^-24; 8 centres leave exp(-16) = 1.1e-7, 9 exp(-20.25).
  assert descriptors._band_width(np.float32(PAPER["r_s"]), PAPER["eta"], jnp.float32) == 9
  assert descriptors._band_width(PAPER["r_s"], PAPER["eta"], jnp.float64) == 13  # exp(-42.25) < 2^-53
  assert descriptors._band_width(PAPER["r_s"], np.full(73, 100.0), jnp.float32) == 9
  # Wide Gaussians reach too many centres; the full sum is used.
  assert descriptors._band_width(descriptors.radial_grid(1.0, 40, 0.25), 1.0, jnp.float32) is None
  # Not a uniform grid, or one eta per centre that differ: no band.
  irregular = PAPER["r_s"] + 0.02 * np.sin(np.arange(73))
  assert descriptors._band_width(irregular, 100.0, jnp.float32) is None
  assert descriptors._band_width(PAPER["r_s"], np.linspace(90.0, 110.0, 73), jnp.float32) is None
  # Traced centres cannot be checked: the full sum.
  assert jax.jit(lambda r: descriptors._band_width(r, 100.0, jnp.float32) is None)(PAPER["r_s"])


def test_every_centre_left_out_of_the_band_is_below_rounding():
  """For distances across the whole range (and beyond its ends) the band [c, c + 9) holds every centre whose
  Gaussian is above 2^-24, checked against the full basis in float64."""
  r_s = np.float32(PAPER["r_s"])
  r = jnp.linspace(0.5, 11.0, 20001, dtype=jnp.float32)
  c = np.asarray(descriptors._band_start(r, r_s, 9))
  assert c.min() == 0 and c.max() == 73 - 9
  full = np.exp(-100.0 * (np.float64(r)[:, None] - np.float64(r_s)) ** 2)
  outside = np.ones_like(full, bool)
  for t in range(9):
    outside[np.arange(len(r)), c + t] = False
  assert full[outside].max() < 2.0 ** -24
  _, g = descriptors._banded_gaussians(r, r_s, np.float32(100.0), 9)
  np.testing.assert_array_equal(g, np.asarray(descriptors.gaussian_basis(r, r_s, np.float32(100.0)))[
      np.arange(len(r))[:, None], c[:, None] + np.arange(9)])  # bit for bit the full basis' values


@pytest.mark.parametrize("fmt,vector,species", [
    (partition.Dense, True, True), (partition.Dense, False, False), (partition.Sparse, True, False),
    (partition.OrderedSparse, True, True), (partition.OrderedSparse, False, True)],
    ids=["Dense-vector-species", "Dense-scalar", "Sparse-vector", "OrderedSparse-vector-species",
         "OrderedSparse-scalar-species"])
def test_banded_sum_equals_the_full_sum_in_float32(fmt, vector, species):
  pos, sp = _system(seed=1)
  full, p, nbrs, v = _sums(pos, sp if species else None, jnp.float32, fmt, vector, band=0)
  banded, *_ = _sums(pos, sp if species else None, jnp.float32, fmt, vector, band=None)
  want, got = full(p, nbrs, v), banded(p, nbrs, v)
  assert got.shape == want.shape == ((len(pos), 3, 73 * (1 + species)) if vector else (len(pos), 73 * (1 + species)))
  assert float(jnp.max(jnp.abs(want))) > 0.5
  assert _max_rel(got, want) < TOL[jnp.float32]


@pytest.mark.parametrize("fmt,vector", [(partition.Dense, True), (partition.OrderedSparse, False)],
                         ids=["Dense-vector", "OrderedSparse-scalar"])
def test_banded_sum_equals_the_full_sum_in_float64(fmt, vector):
  pos, sp = _system(seed=2)
  full, p, nbrs, v = _sums(pos, sp, jnp.float64, fmt, vector, band=0)
  banded, *_ = _sums(pos, sp, jnp.float64, fmt, vector, band=None)
  assert _max_rel(banded(p, nbrs, v), full(p, nbrs, v)) < TOL[jnp.float64]


def test_dense_all_pairs_sum_is_banded_too():
  pos, sp = _system(60, seed=3)
  v = jax.nn.one_hot(sp, 2, dtype=jnp.float32)
  p = jnp.asarray(pos, jnp.float32)
  r_s, eta = np.float32(PAPER["r_s"]), np.float32(PAPER["eta"])
  kw = dict(box=SIDE, r_cut=R_CUT, cutoff=descriptors.cosine_cutoff, vector=True, block=16)
  want = descriptors._dense_sums(p, v, r_s, eta, band=0, **kw)
  got = descriptors._dense_sums(p, v, r_s, eta, **kw)
  assert _max_rel(got, want) < TOL[jnp.float32]
  # The public function (automatic band) gives the same. (With another block size XLA may round r_ij^2
  # differently, by an ulp, which eta = 100 A^-2 turns into ~4e-6 of a Gaussian: band or not.)
  public = descriptors.vector_descriptors(p, SIDE, r_cut=R_CUT, species=sp, n_species=2, block=16, **PAPER)
  assert _max_rel(public, want) < TOL[jnp.float32]


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-10), (jnp.float32, 1e-5)])
def test_gradients_through_the_banded_sum_equal_the_full_ones(dtype, tol):
  """d/d positions of a fixed linear function of the descriptors (what a conservative force differentiates)."""
  pos, sp = _system(40, seed=4)
  weights = jax.random.normal(jax.random.PRNGKey(0), (len(pos), 3, 146), dtype)
  grads = []
  for band in (0, None):
    f, p, nbrs, v = _sums(pos, sp, dtype, partition.Dense, True, band=band)
    grads.append(jax.grad(lambda q: jnp.sum(weights * f(q, nbrs, v)))(p))
  assert np.all(np.isfinite(np.asarray(grads[1])))
  assert float(jnp.max(jnp.abs(grads[0]))) > 1.0
  assert _max_rel(grads[1], grads[0]) < tol


def test_a_band_that_would_drop_gaussians_above_rounding_is_rejected():
  pos, _ = _system(40, seed=5)
  narrow, p, nbrs, v = _sums(pos, None, jnp.float32, partition.Dense, True, band=6)
  with pytest.raises(ValueError, match="band=6 would drop Gaussians"):
    narrow(p, nbrs, v)
  with pytest.raises(ValueError, match="band must be"):
    descriptors._band_option(-3, np.float32(PAPER["r_s"]), 100.0, jnp.float32)
  # A wider band than needed is allowed and gives the same sums.
  assert descriptors._band_option(12, np.float32(PAPER["r_s"]), 100.0, jnp.float32) == 12
  wide, p, nbrs, v = _sums(pos, None, jnp.float32, partition.Dense, True, band=12)
  full, *_ = _sums(pos, None, jnp.float32, partition.Dense, True, band=0)
  assert _max_rel(wide(p, nbrs, v), full(p, nbrs, v)) < TOL[jnp.float32]


def test_irregular_or_wide_bases_fall_back_to_the_full_sum():
  pos, _ = _system(40, seed=6)
  for r_s, eta in ((PAPER["r_s"] + 0.02 * np.sin(np.arange(73)), 100.0), (descriptors.radial_grid(1.0, 40, 0.25), 1.0)):
    auto, p, nbrs, v = _sums(pos, None, jnp.float32, partition.Dense, True, band=None, r_s=r_s, eta=eta)
    full, *_ = _sums(pos, None, jnp.float32, partition.Dense, True, band=0, r_s=r_s, eta=eta)
    np.testing.assert_array_equal(auto(p, nbrs, v), full(p, nbrs, v))
    with pytest.raises(ValueError, match="needs the full sum"):
      descriptors._band_option(20, np.float32(r_s), eta, jnp.float32)


def test_the_public_neighbor_list_functions_take_the_band_inside_jit():
  """The centres reach the sum as concrete values inside jit, so MD (which calls descriptor_fn in a jitted
  step) gets the banded sum: its trace holds the scatter-add of the band, the full sum's does not."""
  displacement_fn, _ = space.periodic(SIDE)
  pos = jnp.asarray(_system(40, seed=7)[0], jnp.float32)
  primitives = []
  for eta in (100.0, 0.5):  # eta = 0.5 A^-2 reaches all centres: the full sum
    neighbor_fn, descriptor_fn = descriptors.vector_descriptors_neighbor_list(displacement_fn, SIDE, r_cut=R_CUT,
                                                                              r_s=PAPER["r_s"], eta=eta)
    jaxpr = jax.make_jaxpr(descriptor_fn)(pos, neighbor_fn.allocate(pos))
    primitives.append(str(jaxpr))
  assert "scatter-add" in primitives[0] and "scatter-add" not in primitives[1]


def test_block_size_does_not_change_the_sums():
  pos, sp = _system(50, seed=8)
  a, p, nbrs, v = _sums(pos, sp, jnp.float64, partition.Dense, True, band=None, block=7)
  b, *_ = _sums(pos, sp, jnp.float64, partition.Dense, True, band=None)
  assert _max_rel(a(p, nbrs, v), b(p, nbrs, v)) < 1e-14


def test_block_budget_follows_the_device():
  cpu = descriptors.CPU_BLOCK_BUDGET
  assert descriptors._block_budget("cpu", {"bytes_limit": 10**12, "bytes_in_use": 0}) == cpu
  # 80 GB limit, 16 GB in use: 1/16 of the 64 GB free is 4 GB = 10^9 float32 numbers -> 2^29 (rounded down).
  stats = {"bytes_limit": 80 * 10**9, "bytes_in_use": 16 * 10**9}
  assert descriptors._block_budget("gpu", stats) == 2**29
  assert descriptors._block_budget("gpu", stats, itemsize=8) == 2**28
  # A little more or less free memory gives the same power of two: no recompilation for small changes.
  assert descriptors._block_budget("gpu", {"bytes_limit": 80 * 10**9, "bytes_in_use": 15 * 10**9}) == 2**29
  assert descriptors._block_budget("tpu", {"bytes_limit": 10**13, "bytes_in_use": 0}) == descriptors.MAX_BLOCK_BUDGET
  assert descriptors._block_budget("gpu", {"bytes_limit": 10**6, "bytes_in_use": 10**6}) == cpu  # full: floor
  assert descriptors._block_budget("gpu", None) == descriptors.ACCELERATOR_BLOCK_BUDGET
  assert descriptors._block_budget("gpu", {}) == descriptors.ACCELERATOR_BLOCK_BUDGET
  # Rows per block from the budget; the default device here is the CPU.
  assert descriptors._block_size(10_000, 1000, budget=2**20) == 1048
  assert descriptors._block_size(10, 1000, budget=2**20) == 10
  assert descriptors._block_size(10**6, 1000) == cpu // 1000

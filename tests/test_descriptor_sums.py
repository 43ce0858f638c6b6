"""The banded descriptor sum (only the Gaussians of each pair that do not underflow) against the full-basis
sum, channel by channel, and the device-aware block size of the sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import partition, space

from unitary_enn import data, descriptors

R_CUT = 10.0
PAPER = dict(r_s=descriptors.paper_r_s(), eta=100.0)  # Sec. 4.5: 73 centres 0.1 A apart, eta = 100 A^-2
NARROW = dict(r_s=descriptors.paper_r_s(), eta=400.0)  # narrow enough for a float64 band (28 of 73)
BAND = {jnp.float32: 21, jnp.float64: 28}  # the exact bands (`_band_width`) of PAPER and NARROW
SIDE = 21.0  # A, > 2 r_cut
TOL = {jnp.float32: 1e-6, jnp.float64: 1e-12}  # max |banded - full| / max |full|


def _system(n=60, seed=0):
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


def _max_rel_per_channel(a, b, vector, floor=1e-300):
  """max over atoms and channels of |a - b| / |b| (vector norms over the 3 axis for vector descriptors)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if vector:
    return float(np.max(np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), floor)))
  return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


def test_band_width_keeps_every_gaussian_that_does_not_underflow():
  # float32: exp(-eta (kb/2 * 0.1)^2) must underflow below 1.4e-45 (the smallest subnormal), 1.02 A away.
  assert descriptors._band_width(np.float32(PAPER["r_s"]), PAPER["eta"], jnp.float32) == 21
  assert descriptors._band_width(PAPER["r_s"], np.full(73, 100.0), jnp.float32) == 21
  # float64 reaches 2.73 A, 55 centres: more than half of the paper's 73, so no band; eta = 400 A^-2 has one.
  assert descriptors._band_width(PAPER["r_s"], PAPER["eta"], jnp.float64) is None
  assert descriptors._band_width(NARROW["r_s"], NARROW["eta"], jnp.float64) == 28
  # Automatic use needs a band of at most a quarter of the centres (below that the scatter does not pay).
  assert descriptors._auto_band(np.float32(PAPER["r_s"]), PAPER["eta"], jnp.float32) is None
  assert descriptors._auto_band(np.float32(descriptors.radial_grid(0.5, 200, 0.1)), 100.0, jnp.float32) == 21
  # Wide Gaussians reach too many centres; the full sum is used.
  assert descriptors._band_width(descriptors.radial_grid(1.0, 40, 0.25), 1.0, jnp.float32) is None
  # Not a uniform grid, or one eta per centre that differ: no band.
  irregular = PAPER["r_s"] + 0.02 * np.sin(np.arange(73))
  assert descriptors._band_width(irregular, 100.0, jnp.float32) is None
  assert descriptors._band_width(PAPER["r_s"], np.linspace(90.0, 110.0, 73), jnp.float32) is None
  # Traced centres cannot be checked: the full sum.
  assert jax.jit(lambda r: descriptors._band_width(r, 100.0, jnp.float32) is None)(PAPER["r_s"])


def test_every_centre_left_out_of_the_band_underflows():
  """For distances across the whole range (and beyond its ends) the band [c, c + 21) holds every centre whose
  float32 Gaussian is not zero, checked against the full basis; the band's values are the full basis' bit
  for bit."""
  r_s = np.float32(PAPER["r_s"])
  eta = np.float32(100.0)
  r = jnp.linspace(0.5, 11.0, 20001, dtype=jnp.float32)
  c = np.asarray(descriptors._band_start(r, r_s, 21))
  assert c.min() == 0 and c.max() == 73 - 21
  full = np.asarray(descriptors.gaussian_basis(r, r_s, eta))
  outside = np.ones_like(full, bool)
  for t in range(21):
    outside[np.arange(len(r)), c + t] = False
  assert np.all(full[outside] == 0.0) and np.all(np.exp(-100.0 * (np.float64(r)[:, None] - r_s) ** 2)[outside]
                                                  < np.finfo(np.float32).smallest_subnormal)
  _, g = descriptors._banded_gaussians(r, r_s, eta, 21)
  np.testing.assert_array_equal(g, full[np.arange(len(r))[:, None], c[:, None] + np.arange(21)])


def test_a_channel_made_of_gaussian_tails_keeps_its_direction():
  """Two atoms 3.6 A apart: the 2.8 A channel holds only the tail exp(-100 * 0.8^2) = 1.6e-28 of the pair.
  The network reads its direction (e = x / |x|, eq. 9), so the banded sum must keep it, as it does; a band
  of the 9 centres above 2^-24 would zero it (which `_band_option` refuses)."""
  pos = np.array([[5.0, 5.0, 5.0], [5.0 + 3.6 * 0.6, 5.0 + 3.6 * 0.8, 5.0]])
  r_s, eta = np.float32(PAPER["r_s"]), np.float32(PAPER["eta"])
  full = descriptors._dense_sums(jnp.asarray(pos, jnp.float32), jnp.ones((2, 1), jnp.float32), r_s, eta, box=SIDE,
                                 r_cut=R_CUT, cutoff=descriptors.cosine_cutoff, vector=True, block=2, band=0)
  banded = descriptors._dense_sums(jnp.asarray(pos, jnp.float32), jnp.ones((2, 1), jnp.float32), r_s, eta,
                                   box=SIDE, r_cut=R_CUT, cutoff=descriptors.cosine_cutoff, vector=True, block=2,
                                   band=21)
  tail = np.asarray(full, np.float64)[0, :, 0]
  assert 1e-29 < np.linalg.norm(tail) < 1e-27
  np.testing.assert_allclose(tail / np.linalg.norm(tail), [0.6, 0.8, 0.0], atol=1e-6)
  assert _max_rel_per_channel(banded, full, True, floor=1e-30) < 1e-5
  with pytest.raises(ValueError, match="band=9 would drop Gaussians that do not underflow"):
    descriptors._band_option(9, r_s, 100.0, jnp.float32)


@pytest.mark.parametrize("fmt,vector,species", [
    (partition.Dense, True, True), (partition.Sparse, False, False), (partition.OrderedSparse, True, True)],
    ids=["Dense-vector-species", "Sparse-scalar", "OrderedSparse-vector-species"])
def test_banded_sum_equals_the_full_sum_in_float32(fmt, vector, species):
  pos, sp = _system(seed=1)
  full, p, nbrs, v = _sums(pos, sp if species else None, jnp.float32, fmt, vector, band=0)
  banded, *_ = _sums(pos, sp if species else None, jnp.float32, fmt, vector, band=BAND[jnp.float32])
  want, got = full(p, nbrs, v), banded(p, nbrs, v)
  assert got.shape == want.shape == ((len(pos), 3, 73 * (1 + species)) if vector else (len(pos), 73 * (1 + species)))
  assert float(jnp.max(jnp.abs(want))) > 0.5
  assert _max_rel(got, want) < TOL[jnp.float32]
  # Channel by channel too, down to 1e-30 (nearer to float32 underflow, 1e-38, a product flushes to zero or
  # not depending on the order of the multiplications).
  assert _max_rel_per_channel(got, want, vector, floor=1e-30) < 1e-5


@pytest.mark.parametrize("fmt,vector", [(partition.OrderedSparse, False)], ids=["OrderedSparse-scalar"])
def test_banded_sum_equals_the_full_sum_in_float64(fmt, vector):  # Dense float64: the gradient test
  pos, sp = _system(seed=2)
  full, p, nbrs, v = _sums(pos, sp, jnp.float64, fmt, vector, band=0, **NARROW)
  banded, *_ = _sums(pos, sp, jnp.float64, fmt, vector, band=BAND[jnp.float64], **NARROW)
  want, got = full(p, nbrs, v), banded(p, nbrs, v)
  assert _max_rel(got, want) < TOL[jnp.float64]
  assert _max_rel_per_channel(got, want, vector, floor=1e-290) < 1e-10


def test_dense_all_pairs_sum_can_be_banded_too():
  pos, sp = _system(60, seed=3)
  v = jax.nn.one_hot(sp, 2, dtype=jnp.float32)
  p = jnp.asarray(pos, jnp.float32)
  r_s, eta = np.float32(PAPER["r_s"]), np.float32(PAPER["eta"])
  kw = dict(box=SIDE, r_cut=R_CUT, cutoff=descriptors.cosine_cutoff, vector=True, block=16)
  want = descriptors._dense_sums(p, v, r_s, eta, band=0, **kw)
  got = descriptors._dense_sums(p, v, r_s, eta, band=BAND[jnp.float32], **kw)
  assert _max_rel(got, want) < TOL[jnp.float32]
  assert _max_rel_per_channel(got, want, True, floor=1e-30) < 1e-5
  # The public function (automatic: the full sum for this basis) gives the same. (With another block size XLA
  # may round r_ij^2 differently, by an ulp, which eta = 100 A^-2 turns into ~4e-6 of a Gaussian.)
  public = descriptors.vector_descriptors(p, SIDE, r_cut=R_CUT, species=sp, n_species=2, block=16, **PAPER)
  assert _max_rel(public, want) < TOL[jnp.float32]


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-10), (jnp.float32, 1e-5)])
def test_gradients_through_the_banded_sum_equal_the_full_ones(dtype, tol):
  """d/d positions of a fixed linear function of the descriptors (what a conservative force differentiates)."""
  pos, sp = _system(40, seed=4)
  basis = NARROW if dtype == jnp.float64 else PAPER
  weights = jax.random.normal(jax.random.PRNGKey(0), (len(pos), 3, 2 * len(basis["r_s"])), dtype)
  grads = []
  for band in (0, BAND[dtype]):
    f, p, nbrs, v = _sums(pos, sp, dtype, partition.Dense, True, band=band, **basis)
    grads.append(jax.grad(lambda q: jnp.sum(weights * f(q, nbrs, v)))(p))
  assert np.all(np.isfinite(np.asarray(grads[1])))
  assert float(jnp.max(jnp.abs(grads[0]))) > 1.0
  assert _max_rel(grads[1], grads[0]) < tol


def test_a_band_that_would_drop_gaussians_is_rejected_and_a_wider_one_allowed():
  pos, _ = _system(40, seed=5)
  narrow, p, nbrs, v = _sums(pos, None, jnp.float32, partition.Dense, True, band=20)
  with pytest.raises(ValueError, match="band=20 would drop Gaussians"):
    narrow(p, nbrs, v)
  with pytest.raises(ValueError, match="band must be"):
    descriptors._band_option(-3, np.float32(PAPER["r_s"]), 100.0, jnp.float32)
  assert descriptors._band_option(0, np.float32(PAPER["r_s"]), 100.0, jnp.float32) is None
  assert descriptors._band_option(80, np.float32(PAPER["r_s"]), 100.0, jnp.float32) is None  # >= K: full
  assert descriptors._band_option(24, np.float32(PAPER["r_s"]), 100.0, jnp.float32) == 24
  wide, *_ = _sums(pos, None, jnp.float32, partition.Dense, True, band=24)
  full, *_ = _sums(pos, None, jnp.float32, partition.Dense, True, band=0)
  assert _max_rel(wide(p, nbrs, v), full(p, nbrs, v)) < TOL[jnp.float32]


def test_irregular_or_wide_bases_fall_back_to_the_full_sum():
  pos, _ = _system(40, seed=6)
  irregular = PAPER["r_s"] + 0.02 * np.sin(np.arange(73))
  auto, p, nbrs, v = _sums(pos, None, jnp.float32, partition.Dense, True, band=None, r_s=irregular)
  full, *_ = _sums(pos, None, jnp.float32, partition.Dense, True, band=0, r_s=irregular)
  np.testing.assert_array_equal(auto(p, nbrs, v), full(p, nbrs, v))
  for r_s, eta in ((irregular, 100.0), (descriptors.radial_grid(1.0, 40, 0.25), 1.0)):
    assert descriptors._band_option(None, np.float32(r_s), eta, jnp.float32) is None
    with pytest.raises(ValueError, match="needs the full sum"):
      descriptors._band_option(20, np.float32(r_s), eta, jnp.float32)


def test_the_public_neighbor_list_functions_choose_the_band_inside_jit():
  """The centres reach the sum as concrete values inside jit, so MD (which calls descriptor_fn in a jitted
  step) can get the banded sum where it pays: 21 of 200 centres, yes (its trace holds the band's
  scatter-add); 21 of the paper's 73, no."""
  displacement_fn, _ = space.periodic(SIDE)
  pos = jnp.asarray(_system(40, seed=7)[0], jnp.float32)
  primitives = []
  for r_s in (descriptors.radial_grid(0.5, 200, 0.05), PAPER["r_s"]):
    neighbor_fn, descriptor_fn = descriptors.vector_descriptors_neighbor_list(displacement_fn, SIDE, r_cut=R_CUT,
                                                                              r_s=r_s, eta=100.0)
    jaxpr = jax.make_jaxpr(descriptor_fn)(pos, neighbor_fn.allocate(pos))
    primitives.append(str(jaxpr))
  assert "scatter-add" in primitives[0] and "scatter-add" not in primitives[1]


def test_block_size_does_not_change_the_sums():
  pos, sp = _system(50, seed=8)
  a, p, nbrs, v = _sums(pos, sp, jnp.float64, partition.Dense, True, band=28, block=7, **NARROW)
  b, *_ = _sums(pos, sp, jnp.float64, partition.Dense, True, band=28, **NARROW)
  assert _max_rel(a(p, nbrs, v), b(p, nbrs, v)) < TOL[jnp.float64]  # blocks may round r_ij^2 differently


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
  # Rows per block from the budget.
  # At most budget // cost rows (1048 here), spread evenly: 10 blocks of 1000, not 9 of 1048 and one of 568.
  assert descriptors._block_size(10_000, 1000, budget=2**20) == 1000
  assert descriptors._block_size(10, 1000, budget=2**20) == 10
  for n in (10**6, 4_000, 4_001, 108_000):
    block = descriptors._block_size(n, 1000, budget=cpu)
    n_blocks = -(-n // block)
    assert block <= cpu // 1000 and n_blocks == -(-n // min(n, cpu // 1000))  # fewest blocks within the budget
    assert n_blocks * block - n < n_blocks  # padding: less than one row per block
    # Without a budget, the default device's (the CPU's here, free memory on a GPU).
    assert descriptors._block_size(n, 1000) == descriptors._block_size(n, 1000, budget=descriptors._device_budget())


def test_narrow_sum_skips_only_empty_columns_of_a_dense_list():
  """A Dense list with spare capacity leaves its last columns empty (N); the sum then runs over the first
  `_narrow_width` columns only, and falls back to all of them when a row holds a neighbour there: both equal the
  all-pairs sum (eq. 51) to rounding, whichever columns of the rows the neighbours sit in."""
  pos, species = _system(n=70, seed=3)
  displacement_fn, _ = space.periodic(SIDE)
  pos = jnp.asarray(pos, jnp.float64)
  nbrs = partition.neighbor_list(displacement_fn, SIDE, R_CUT, format=partition.Dense,
                                 capacity_multiplier=1.5).allocate(pos)
  n, m = nbrs.idx.shape
  narrow = descriptors._narrow_width(m)
  idx = np.asarray(nbrs.idx)
  assert narrow is not None and np.all(idx[:, narrow:] == n)  # the narrow path is taken for this list
  want = descriptors.vector_descriptors(pos, SIDE, r_cut=R_CUT, **PAPER)
  sums = jax.jit(lambda p, i: descriptors._neighbor_list_sums(
      p, nbrs.set(idx=i), jnp.ones((n, 1), jnp.float64), PAPER["r_s"], np.float64(PAPER["eta"]),
      displacement_fn=displacement_fn, r_cut=R_CUT, cutoff=descriptors.cosine_cutoff, vector=True, block=None))
  assert _max_rel(sums(pos, jnp.asarray(idx)).reshape(want.shape), want) < 1e-12
  # The same neighbours in reversed columns: the tail now holds them, and the full sum runs.
  flipped = idx[:, ::-1].copy()
  assert np.any(flipped[:, narrow:] < n)
  assert _max_rel(sums(pos, jnp.asarray(flipped)).reshape(want.shape), want) < 1e-12
  assert descriptors._narrow_width(40) is None and descriptors._narrow_width(187) == 152


@pytest.mark.parametrize("x_axis", [1, 3])
@pytest.mark.parametrize("per_channel_eta", [False, True])
def test_written_out_gradient_of_the_gaussian_sums_is_autodiffs(x_axis, per_channel_eta):
  """`_gaussian_sums` (the full-basis sum of a block of pairs) has its gradient written out, contracting over the
  centres: it equals autodiff of the plain contraction for every input (distances, weights, node features,
  centres, widths; the last two computed only when asked for), inside jit too, and central differences."""
  from jax.test_util import check_grads
  rng = np.random.default_rng(7)
  b, m, s, k = 3, 5, 2, 7
  r = jnp.asarray(rng.uniform(2.5, 4.0, (b, m)))
  w = jnp.asarray(rng.normal(size=(x_axis, b, m)))
  v = jnp.asarray(rng.normal(size=(b, m, s)))
  r_s = jnp.asarray(np.linspace(2.5, 4.0, k))
  eta = jnp.asarray(rng.uniform(2.0, 4.0, k) if per_channel_eta else 3.0)
  prec = jax.lax.Precision.HIGHEST
  written = lambda *a: descriptors._gaussian_sums(*a, prec)
  plain = lambda r, w, v, r_s, eta: jnp.einsum("xbms,bmk->bxsk", w[..., None] * v,
                                               descriptors.gaussian_basis(r, r_s, eta), precision=prec)
  args = (r, w, v, r_s, eta)
  np.testing.assert_allclose(written(*args), plain(*args), rtol=1e-13)
  c = jnp.asarray(rng.normal(size=(b, x_axis, s, k)))
  want = jax.grad(lambda *a: jnp.sum(plain(*a) * c), argnums=range(5))(*args)
  for argnums in (range(5), range(3)):  # with and without the basis
    got = jax.jit(jax.grad(lambda *a: jnp.sum(written(*a) * c), argnums=tuple(argnums)))(*args)
    for name, g1, g2 in zip(("r", "w", "v", "r_s", "eta"), got, want):
      assert g1.shape == g2.shape, name
      assert float(jnp.max(jnp.abs(g2))) > 1e-3, name
      np.testing.assert_allclose(g1, g2, rtol=1e-11, atol=1e-12, err_msg=name)
  check_grads(written, args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("vector", [True, False])
def test_gradient_of_the_sums_on_a_neighbor_list_matches_central_differences(vector):
  """d/d positions of a fixed linear function of the descriptor sums, two species, float64: the written-out
  gradient of the Gaussian sums, through the cutoff, the unit vectors and the list, against central differences."""
  pos, sp = _system(40, seed=5)
  f, p, nbrs, v = _sums(pos, sp, jnp.float64, partition.Dense, vector, band=0, **NARROW)
  weights = jax.random.normal(jax.random.PRNGKey(1), f(p, nbrs, v).shape, jnp.float64)
  loss = jax.jit(lambda q: jnp.sum(weights * f(q, nbrs, v)))
  grad = np.asarray(jax.grad(loss)(p))
  assert np.max(np.abs(grad)) > 1.0
  h = 1e-6
  for a, x in ((0, 0), (13, 1), (39, 2)):
    d = jnp.zeros_like(p).at[a, x].set(h)
    fd = (float(loss(p + d)) - float(loss(p - d))) / (2 * h)
    assert grad[a, x] == pytest.approx(fd, rel=1e-6, abs=1e-6 * np.max(np.abs(grad))), (a, x)


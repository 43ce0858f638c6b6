"""Descriptors (eq. 33-35, 51, 52), the vector GNN layer (eq. 32), periodic lj/cut on jax-md, random boxes."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import partition, space

import unitary_enn as uenn
from unitary_enn import descriptors, potentials, structures

R_CUT = 10.0
BASIS = dict(r_s=descriptors.radial_grid(1.0, 40, 0.25), eta=4.0, r_cut=R_CUT)  # covers 1..10.75 A
FORMATS = [partition.Dense, partition.Sparse, partition.OrderedSparse]


def _box_atoms(n=50, side=21.0, seed=0, r_min=2.8):
  return structures.random_box(side, max_atoms=n, r_min=r_min, seed=seed), side


def _brute_force_eq51(pos, box, r_s, eta, r_cut):
  """eq. 51 (and eq. 34) by loops over atoms and the 27 periodic images (no minimum-image code)."""
  pos = np.asarray(pos, np.float64)
  out = np.zeros((len(pos), 3, len(r_s)))
  scalar = np.zeros((len(pos), len(r_s)))
  images = [np.array(s) * box for s in itertools.product((-1, 0, 1), repeat=3)]
  for i in range(len(pos)):
    for j in range(len(pos)):
      for shift in images:
        d = pos[j] + shift - pos[i]
        r = np.sqrt(d @ d)
        if 0 < r < r_cut:
          g = np.exp(-eta * (r - r_s) ** 2) * 0.5 * (np.cos(np.pi * r / r_cut) + 1.0)
          out[i] += np.outer(d / r, g)
          scalar[i] += g
  return out, scalar


def test_cutoffs_values_and_smoothness():
  r = jnp.array([0.0, 5.0, 10.0, 12.0])
  np.testing.assert_allclose(descriptors.cosine_cutoff(r, 10.0), [1.0, 0.5, 0.0, 0.0], atol=1e-15)
  np.testing.assert_allclose(descriptors.polynomial_cutoff(r, 10.0), [1.0, 0.5, 0.0, 0.0], atol=1e-15)
  for name, smooth_second in (("cosine", False), ("polynomial", True)):
    f = lambda x, f=descriptors.get_cutoff(name): f(x, 10.0)
    d1, d2 = jax.grad(f), jax.grad(jax.grad(f))
    below = jnp.float64(10.0 - 1e-7)
    assert abs(float(d1(below))) < 1e-6  # both are C1 at r_c
    # The cosine cutoff's second derivative jumps by pi^2 / (2 r_c^2) at r_c; the polynomial one is C2.
    expected = 0.0 if smooth_second else np.pi ** 2 / (2 * 10.0 ** 2)
    assert abs(float(d2(below)) - expected) < 1e-5
    assert float(d2(jnp.float64(10.0 + 1e-7))) == 0.0
  with pytest.raises(ValueError, match="unknown cutoff"):
    descriptors.get_cutoff("tanh")


def test_paper_basis_and_edge_features():
  r_s = descriptors.paper_r_s()
  assert len(r_s) == 73 and r_s[0] == 2.8 and abs(r_s[-1] - 10.0) < 1e-12
  e = descriptors.edge_features(jnp.array([2.8, 10.0]), r_s=r_s, eta=100.0, r_cut=10.0)
  assert e.shape == (2, 73)
  assert float(e[0, 0]) == pytest.approx(0.5 * (np.cos(np.pi * 0.28) + 1.0))  # eq. 33 at r = r_s
  assert np.all(np.asarray(e[1]) == 0.0)  # zero at r_c


def test_descriptors_equal_brute_force_numpy_on_a_periodic_system():
  pos, side = _box_atoms(40, 21.0, seed=1)
  kw = dict(r_s=np.array([2.9, 3.7, 5.0, 7.5, 9.6]), eta=3.0, r_cut=R_CUT)
  vector, scalar = _brute_force_eq51(pos, side, kw["r_s"], kw["eta"], R_CUT)
  assert np.abs(vector).max() > 0.1
  np.testing.assert_allclose(uenn.vector_descriptors(jnp.asarray(pos, jnp.float64), side, **kw), vector,
                             atol=1e-12)
  np.testing.assert_allclose(uenn.scalar_descriptors(jnp.asarray(pos, jnp.float64), side, **kw), scalar,
                             atol=1e-12)


@pytest.mark.parametrize("box", [None, 21.0])
def test_vector_descriptors_are_o3_equivariant_and_invariant(box):
  pos, side = _box_atoms(30, 21.0, seed=2)
  pos = jnp.asarray(pos, jnp.float64)
  f = lambda p: uenn.vector_descriptors(p, box, **BASIS)
  d = f(pos)
  assert d.shape == (30, 3, 40) and float(jnp.max(jnp.abs(d))) > 0.1
  if box is None:  # rotations and reflections (O(3)) act on free clusters
    uenn.assert_equivariant(f, pos, key=jax.random.PRNGKey(0), in_axis=-1, out_axis=-2, num_trials=3,
                            reflection=True)
  else:  # in a box the cubic symmetries map the box onto itself: a 90 degree rotation and a reflection
    for m in (np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), np.diag([-1.0, 1.0, 1.0])):
      rotated = (pos @ m.T) % side
      np.testing.assert_allclose(f(rotated), jnp.einsum("xy,nyk->nxk", m, d), atol=1e-12)
  shift = jnp.array([3.3, -1.7, 8.9])
  moved = pos + shift if box is None else (pos + shift) % side
  np.testing.assert_allclose(f(moved), d, atol=1e-12)  # translation invariance
  perm = np.random.default_rng(0).permutation(30)
  np.testing.assert_allclose(f(pos[perm]), d[perm], atol=1e-12)  # permutation invariance


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_neighbor_list_versions_equal_dense(fmt):
  pos, side = _box_atoms(60, 31.0, seed=3)  # > 3 r_c: jax-md uses its cell list
  pos = jnp.asarray(pos, jnp.float64)
  species = jnp.asarray(np.random.default_rng(1).integers(0, 2, len(pos)))
  displacement_fn, _ = space.periodic(side)
  for kind, dense_fn in (("vector", uenn.vector_descriptors), ("scalar", uenn.scalar_descriptors)):
    builder = (descriptors.vector_descriptors_neighbor_list if kind == "vector"
               else descriptors.scalar_descriptors_neighbor_list)
    neighbor_fn, descriptor_fn = builder(displacement_fn, side, format=fmt, species=species, n_species=2,
                                         cutoff="polynomial", **BASIS)
    nbrs = neighbor_fn.allocate(pos)
    assert not nbrs.did_buffer_overflow
    got = jax.jit(descriptor_fn)(pos, nbrs)
    want = dense_fn(pos, side, species=species, n_species=2, cutoff="polynomial", **BASIS)
    np.testing.assert_allclose(got, want, atol=1e-12)
  # Free space through the checked driver (which needs a cell-list box of its own).
  free = pos * 0.9 - 5.0
  model = uenn.descriptor_model(format=fmt, **BASIS)
  np.testing.assert_allclose(model(free), uenn.vector_descriptors(free, **BASIS), atol=1e-12)


def test_species_blocks_sum_to_the_single_species_descriptors():
  pos, side = _box_atoms(40, 21.0, seed=4)
  pos = jnp.asarray(pos, jnp.float64)
  species = np.random.default_rng(2).integers(0, 3, len(pos))
  d1 = uenn.vector_descriptors(pos, side, **BASIS)
  d3 = uenn.vector_descriptors(pos, side, species=species, n_species=3, **BASIS)
  assert d3.shape == (40, 3, 120)
  np.testing.assert_allclose(d3.reshape(40, 3, 3, 40).sum(axis=2), d1, atol=1e-12)
  # Block d only sees neighbours of species d (eq. 30): removing all species-2 atoms leaves blocks 0, 1.
  keep = species != 2
  sub = uenn.vector_descriptors(pos[keep], side, species=species[keep], n_species=3, **BASIS)
  np.testing.assert_allclose(sub[:, :, :80], d3[keep][:, :, :80], atol=1e-12)
  assert float(jnp.max(jnp.abs(sub[:, :, 80:]))) == 0.0


def test_pairs_across_the_periodic_boundary_are_counted():
  side = 25.0
  pos = jnp.array([[0.4, 12.0, 12.0], [24.1, 12.0, 12.0]], jnp.float64)  # 1.3 A apart through the x face
  g = descriptors.edge_features(jnp.float64(1.3), **BASIS)
  want = jnp.stack([-jnp.outer(jnp.array([1.0, 0, 0]), g)[None], jnp.outer(jnp.array([1.0, 0, 0]), g)[None]])
  want = want.reshape(2, 3, -1)
  np.testing.assert_allclose(uenn.vector_descriptors(pos, side, **BASIS), want, atol=1e-12)
  for fmt in FORMATS:
    np.testing.assert_allclose(uenn.descriptor_model(format=fmt, **BASIS)(pos, side), want, atol=1e-12)
  # In free space the two atoms are 23.7 A apart: no neighbours at all.
  assert float(jnp.max(jnp.abs(uenn.vector_descriptors(pos, None, **BASIS)))) == 0.0


def test_gnn_layer_reduces_to_eq51_and_is_equivariant():
  pos, side = _box_atoms(30, 21.0, seed=5)
  pos = jnp.asarray(pos, jnp.float64)
  eq51 = uenn.vector_descriptors(pos, side, **BASIS)
  ident = descriptors.identity_vector_gnn(40, dtype=jnp.float64)
  np.testing.assert_array_equal(descriptors.vector_gnn(ident, pos, side, **BASIS), eq51)  # exactly
  # A learnable layer with two species and a vector activation: O(3)-equivariant, and its gradient flows.
  params = descriptors.init_vector_gnn(jax.random.PRNGKey(0), 40, 7, n_species=2, dtype=jnp.float64)
  species = np.arange(30) % 2
  f = lambda p: descriptors.vector_gnn(params, p, None, species=species, activation="softsign", **BASIS)
  assert f(pos).shape == (30, 3, 7)
  uenn.assert_equivariant(f, pos, key=jax.random.PRNGKey(1), in_axis=-1, out_axis=-2, reflection=True)
  loss = lambda w: jnp.sum(descriptors.vector_gnn({"w": w}, pos, side, species=species, **BASIS) ** 2)
  assert bool(jnp.all(jnp.isfinite(jax.grad(loss)(params["w"]))))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_periodic_lj_cut_forces_are_minus_grad_energy(fmt):
  pos, side = _box_atoms(50, 21.0, seed=6)
  pos = jnp.asarray(pos, jnp.float64)
  displacement_fn, _ = space.periodic(side)
  neighbor_fn, energy_fn, force_fn = potentials.lj_cut_neighbor_list(displacement_fn, side, r_cut=R_CUT, format=fmt)
  energy_fn, force_fn = jax.jit(energy_fn), jax.jit(force_fn)
  nbrs = neighbor_fn.allocate(pos)
  forces = force_fn(pos, nbrs)
  np.testing.assert_allclose(forces, -jax.grad(energy_fn)(pos, nbrs), atol=1e-12)
  # Against the dense minimum-image lj/cut, and against central finite differences of the energy.
  np.testing.assert_allclose(forces, uenn.lj_forces(pos, side, R_CUT), atol=1e-12)
  np.testing.assert_allclose(energy_fn(pos, nbrs), uenn.lj_energy(pos, side, R_CUT), rtol=1e-12)
  h = 1e-5
  for i, k in ((0, 0), (7, 2)):
    e = jnp.zeros_like(pos).at[i, k].set(h)
    fd = -(energy_fn(pos + e, nbrs) - energy_fn(pos - e, nbrs)) / (2 * h)
    assert float(fd) == pytest.approx(float(forces[i, k]), abs=1e-7)


def test_lj_cut_is_truncated_without_shift():
  side = 25.0
  displacement_fn, _ = space.periodic(side)
  neighbor_fn, energy_fn, _ = potentials.lj_cut_neighbor_list(displacement_fn, side, r_cut=R_CUT)
  for r, expected in ((9.99, float(potentials.lj_pair_energy(9.99 ** 2))), (10.01, 0.0)):
    pos = jnp.array([[5.0, 5.0, 5.0], [5.0 + r, 5.0, 5.0]], jnp.float64)
    assert float(energy_fn(pos, neighbor_fn.allocate(pos))) == pytest.approx(expected, rel=1e-12, abs=0)


def test_generated_boxes_respect_the_minimum_image_distance():
  for side, n in ((20.0, 400), (45.0, 600)):  # the first is packed until insertions fail
    pos = structures.random_box(side, max_atoms=n, r_min=2.8, max_trials=50, seed=7)
    assert 0 < len(pos) <= n and np.all((pos >= 0) & (pos < side))
    d = pos[None] - pos[:, None]
    d -= side * np.round(d / side)
    r = np.sqrt((d ** 2).sum(-1)) + np.diag(np.full(len(pos), np.inf))
    assert r.min() >= 2.8
    assert structures.min_pair_distance(pos, side) == pytest.approx(r.min())
  assert len(structures.random_box(20.0, max_atoms=400, seed=7)) < 400  # dense boxes end with fewer atoms
  np.testing.assert_array_equal(structures.random_box(45.0, max_atoms=50, seed=3),
                                structures.random_box(45.0, max_atoms=50, seed=3))


def test_periodic_space_gives_the_minimum_image_of_jax_md_and_keeps_its_shift_and_perturbation():
  """`neighbors.periodic_space` (rounding) against jax-md's `space.periodic` (mod) and a float64 minimum image:
  the same displacements, to float32 rounding of the box for wrapped pairs and exactly the difference otherwise."""
  from unitary_enn import neighbors
  side = 21.7
  rng = np.random.default_rng(4)
  ra, rb = (rng.uniform(0, side, size=(2000, 3)) for _ in range(2))
  ours, shift = neighbors.periodic_space(side)
  theirs, their_shift = space.periodic(side)
  want = ra - rb - side * np.round((ra - rb) / side)  # float64 minimum image
  for dtype, tol in ((np.float32, 4 * np.finfo(np.float32).eps * side), (np.float64, 1e-12)):
    a, b = jnp.asarray(ra, dtype), jnp.asarray(rb, dtype)
    got = np.asarray(jax.vmap(ours)(a, b))
    assert got.dtype == dtype and np.max(np.abs(got - want)) < tol
    np.testing.assert_allclose(got, np.asarray(jax.vmap(theirs)(a, b)), rtol=0, atol=tol)
    near = np.all(np.abs(ra - rb) < side / 2, axis=1)  # no image needed: exactly the float difference
    np.testing.assert_array_equal(got[near], np.asarray(a - b)[near])
  np.testing.assert_array_equal(np.asarray(shift(jnp.asarray(ra), jnp.asarray(rb - ra))),
                                np.asarray(their_shift(jnp.asarray(ra), jnp.asarray(rb - ra))))
  strain = jnp.asarray(np.eye(3) + 0.01 * rng.normal(size=(3, 3)))
  np.testing.assert_allclose(np.asarray(ours(jnp.asarray(ra[0]), jnp.asarray(rb[0]), perturbation=strain)),
                             np.asarray(theirs(jnp.asarray(ra[0]), jnp.asarray(rb[0]), perturbation=strain)),
                             rtol=1e-12, atol=1e-12)
  with pytest.raises(ValueError, match="box"):
    neighbors.periodic_space(-1.0)


def test_linear_reference_recovers_a_linear_map():
  pos, side = _box_atoms(40, 21.0, seed=8)
  d = np.asarray(uenn.vector_descriptors(jnp.asarray(pos, jnp.float64), side, **BASIS))
  coef = np.random.default_rng(0).normal(size=40)
  forces = descriptors.apply_linear_force_map(coef, d)
  assert forces.shape == (40, 3)
  np.testing.assert_allclose(descriptors.apply_linear_force_map(descriptors.fit_linear_force_map(d, forces), d), forces,
                             atol=1e-8)


def test_bad_input_gets_a_clear_error():
  pos, side = _box_atoms(20, 21.0, seed=9)
  pos = jnp.asarray(pos, jnp.float64)
  model = uenn.descriptor_model(**BASIS)
  with pytest.raises(ValueError, match="smaller than 2 \\* r_cut"):
    uenn.vector_descriptors(pos, 15.0, **BASIS)
  with pytest.raises(ValueError, match="smaller than 2 \\* r_cut"):
    model(pos, 19.0)
  bad = pos.at[3, 1].set(jnp.nan)
  with pytest.raises(ValueError, match="positions contains 1 non-finite"):
    uenn.vector_descriptors(bad, side, **BASIS)
  with pytest.raises(ValueError, match="positions contains 1 non-finite"):
    model(bad, side)
  with pytest.raises(ValueError, match="outside the periodic box"):
    model(pos.at[2, 0].set(-0.5), side)
  with pytest.raises(ValueError, match="positions has shape"):
    model(pos[:, :2], side)
  with pytest.raises(ValueError, match="eta"):
    uenn.vector_descriptors(pos, side, r_s=[3.0], eta=-1.0, r_cut=R_CUT)


def test_neighbor_buffer_overflow_is_reallocated_never_silent():
  # A dilute box first: the list is sized for few neighbours; then the same atoms squeezed into a corner.
  side = 40.0
  rng = np.random.default_rng(10)
  dilute = jnp.asarray(rng.uniform(0, side, (40, 3)), jnp.float64)
  dense = jnp.asarray(1.0 + rng.uniform(0, 8.0, (40, 3)), jnp.float64)
  want_dilute = uenn.vector_descriptors(dilute, side, **BASIS)
  want_dense = uenn.vector_descriptors(dense, side, **BASIS)
  for fmt in FORMATS:
    model = uenn.descriptor_model(format=fmt, **BASIS)
    np.testing.assert_allclose(model(dilute, side), want_dilute, atol=1e-12)
    np.testing.assert_allclose(model(dense, side), want_dense, atol=1e-12)
    assert model.stats["reallocations"] >= 1, fmt
  # jax-md itself only flags it: a list updated without reallocation reports the overflow.
  displacement_fn, _ = space.periodic(side)
  neighbor_fn, _ = descriptors.vector_descriptors_neighbor_list(displacement_fn, side, **BASIS)
  nbrs = neighbor_fn.allocate(dilute)
  assert bool(neighbor_fn.update(dense, nbrs).did_buffer_overflow)


@pytest.mark.parametrize("fmt", [partition.Dense, partition.OrderedSparse])
def test_descriptor_sums_in_a_lower_dtype_keep_float64_displacements(fmt):
  """dtype=float32 on float64 positions: float32 sums equal the float64 ones to float32 rounding, also for
  coordinates far from the origin where float32 positions alone would lose the displacement's digits."""
  pos, side = _box_atoms(60, 31.0, seed=5)
  displacement_fn, _ = space.free()
  far = jnp.asarray(pos, jnp.float64) + 1.0e5  # float32 spacing at 1e5 A is 0.008 A
  neighbor_fn, descriptor_fn = descriptors.vector_descriptors_neighbor_list(displacement_fn, 3 * side, format=fmt,
                                                                     **BASIS)
  want = descriptor_fn(far - 1.0e5, neighbor_fn.allocate(far - 1.0e5))
  nbrs = neighbor_fn.allocate(far)
  got = jax.jit(lambda p, n: descriptor_fn(p, n, dtype=jnp.float32))(far, nbrs)
  assert got.dtype == jnp.float32 and want.dtype == jnp.float64
  np.testing.assert_allclose(got, want, atol=2e-5 * float(jnp.max(jnp.abs(want))))
  # Casting the positions first is what the option avoids: that error is orders of magnitude larger.
  naive = descriptor_fn(far.astype(jnp.float32), nbrs)
  assert float(jnp.max(jnp.abs(naive - want))) > 100 * float(jnp.max(jnp.abs(got - want)))

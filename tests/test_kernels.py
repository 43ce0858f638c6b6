"""The fused descriptor-sum kernel (`unitary_enn.kernels`, Pallas): interpreted on the CPU, it must give XLA's sums
to rounding (alone, on neighbor lists, through the network and through the gradient), and it must lower to Triton
for an NVIDIA GPU, which is where it is compiled."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import partition

from benchmarks import md_throughput
from unitary_enn import data, descriptors, kernels, models, neighbors

R_CUT = 10.0
SIDE = 21.0  # A, > 2 r_cut
R_S = descriptors.paper_r_s()


def _reference(r, wv, r_s, eta):
  """sum_m wv[c, b, m] exp(-eta (r[b, m] - r_s[k])^2) in float64 NumPy: `(b, C, K)`."""
  r, wv, r_s, eta = (np.asarray(a, np.float64) for a in (r, wv, r_s, eta))
  g = np.exp(-eta * (r[..., None] - r_s) ** 2)
  return np.einsum("cbm,bmk->bck", wv, g)


def _max_rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_centre_pieces_are_powers_of_two_covering_the_basis():
  assert kernels.centre_pieces(73) == (64, 16)
  assert kernels.centre_pieces(100) == (64, 32, 16)
  assert kernels.centre_pieces(5) == (16,)
  assert kernels.centre_pieces(128) == (128,)
  for k in range(1, 300):
    pieces = kernels.centre_pieces(k)
    assert sum(pieces) >= k and sum(pieces) - k < kernels.MIN_PIECE
    assert all(p >= kernels.MIN_PIECE and p & (p - 1) == 0 for p in pieces)


def _inputs(dtype, shape, b, m, k, per_centre_eta):
  """Distances `(b, m)` in 2-11 A, normal numbers of `shape`, K centres 0.1 A apart from 2.8 A, eta in A^-2."""
  rng = np.random.default_rng(b + m + k + len(shape))
  r = rng.uniform(2.0, 11.0, (b, m)).astype(dtype)
  x = rng.normal(size=shape).astype(dtype)
  r_s = (2.8 + 0.1 * np.arange(k)).astype(dtype)
  eta = rng.uniform(50.0, 150.0, k).astype(dtype) if per_centre_eta else np.asarray(100.0, dtype)
  return r, x, r_s, eta


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("b,m,c,k,per_centre_eta", [(50, 37, 3, 73, False), (7, 5, 2, 5, False),
                                                    (33, 20, 1, 100, True), (64, 1, 6, 16, False)])
def test_kernel_equals_an_independent_float64_formula(dtype, tol, b, m, c, k, per_centre_eta):
  """Rows that do not fill a program, centres that do not fill a piece, per-centre widths, one neighbour."""
  r, wv, r_s, eta = _inputs(dtype, (c, b, m), b, m, k, per_centre_eta)
  out = kernels.gaussian_sums(jnp.asarray(r), jnp.asarray(wv), jnp.asarray(r_s), jnp.asarray(eta))
  assert out.shape == (b, c, k) and out.dtype == dtype
  assert _max_rel(out, _reference(r, wv, r_s, eta)) < tol


@pytest.mark.parametrize("columns", [2, 3])
def test_several_columns_an_iteration_give_the_same_sums(monkeypatch, columns):
  """`kernels.COLUMNS` (a tuning knob): 37 columns in iterations of 2 or 3 (the last one padded) give the sums of
  one column an iteration, whose additions they make in the same order, and the float64 formula's."""
  r, wv, r_s, eta = _inputs(np.float32, (3, 50, 37), 50, 37, 73, False)
  args = [jnp.asarray(a) for a in (r, wv, r_s, eta)]
  want = kernels.gaussian_sums(*args)
  monkeypatch.setattr(kernels, "COLUMNS", columns)
  got = kernels.gaussian_sums(*args)
  assert _max_rel(got, want) < 1e-6 and _max_rel(got, _reference(r, wv, r_s, eta)) < 1e-6
  if jax.default_backend() == "cpu":  # the interpreter runs the additions as written
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  monkeypatch.setattr(kernels, "COLUMNS", 0)
  with pytest.raises(ValueError, match="COLUMNS"):
    kernels.gaussian_sums(*args)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("b,m,c,k,per_centre_eta", [(50, 37, 3, 73, False), (33, 20, 2, 100, True)])
def test_gradient_kernel_equals_an_independent_float64_formula(dtype, tol, b, m, c, k, per_centre_eta):
  """a = sum_k ct g and h = sum_k ct eta_k (r_s - r) g, the two contractions of the sums' gradient."""
  r, ct, r_s, eta = _inputs(dtype, (b, c, k), b, m, k, per_centre_eta)
  a, h = kernels.gaussian_sums_vjp(jnp.asarray(r), jnp.asarray(ct), jnp.asarray(r_s), jnp.asarray(eta))
  r64, ct64, rs64, eta64 = (np.asarray(x, np.float64) for x in (r, ct, r_s, eta))
  d = rs64 - r64[..., None]
  g = np.exp(-eta64 * d * d)
  assert a.shape == h.shape == (c, b, m) and a.dtype == h.dtype == dtype
  assert _max_rel(a, np.einsum("bck,bmk->cbm", ct64, g)) < tol
  assert _max_rel(h, np.einsum("bck,bmk->cbm", ct64, eta64 * d * g)) < tol


@pytest.mark.parametrize("per_centre_eta", [False, True])
def test_gradients_through_the_fused_sums_equal_xlas(per_centre_eta):
  """`descriptors._gaussian_sums` with the kernels against XLA's form: the gradients with respect to the
  distances, the weights, the node features and the basis (centres and widths), float64."""
  jax.config.update("jax_enable_x64", True)
  rng = np.random.default_rng(4)
  b, m, s = 9, 13, 2
  r = jnp.asarray(rng.uniform(2.5, 10.5, (b, m)))
  w = jnp.asarray(rng.normal(size=(3, b, m)))
  v = jnp.asarray(rng.uniform(size=(b, m, s)))
  r_s = jnp.asarray(R_S)
  eta = jnp.asarray(rng.uniform(80.0, 120.0, len(R_S)) if per_centre_eta else 100.0)
  weights = jnp.asarray(rng.normal(size=(b, 3, s, len(R_S))))

  def loss(kernel):
    return lambda *a: jnp.sum(descriptors._gaussian_sums(*a, jax.lax.Precision.HIGHEST, kernel) * weights)
  want = jax.grad(loss("xla"), argnums=(0, 1, 2, 3, 4))(r, w, v, r_s, eta)
  got = jax.grad(loss("pallas"), argnums=(0, 1, 2, 3, 4))(r, w, v, r_s, eta)
  for name, x, y in zip(("r", "w", "v", "r_s", "eta"), got, want):
    assert float(jnp.max(jnp.abs(y))) > 0, name
    assert _max_rel(x, y) < 1e-12, name


def test_kernel_rejects_what_it_cannot_run():
  x = jnp.ones((4, 3))
  with pytest.raises(ValueError, match="power of two"):
    kernels.gaussian_sums(x, x[None], jnp.ones(5), jnp.asarray(1.0), rows=24)
  with pytest.raises(ValueError, match="sum_kernel='xla'"):
    kernels._interpret("tpu")
  assert kernels._interpret("cpu") and not kernels._interpret("gpu")
  with pytest.raises(ValueError, match="sum_kernel must be one of"):
    kernels.check_sum_kernel("triton")


def _system(n=60, seed=0):
  pos = data.random_box(SIDE, max_atoms=n, r_min=2.8, seed=seed)
  return pos, np.random.default_rng(seed).integers(0, 2, len(pos))


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-12)])
@pytest.mark.parametrize("vector,species", [(True, False), (False, False), (True, True)],
                         ids=["vector", "scalar", "vector-2species"])
def test_fused_sums_on_a_neighbor_list_equal_xlas(dtype, tol, vector, species):
  """Random periodic systems on a Dense list, inside jit as MD calls them, in blocks (7 rows) and whole."""
  pos, sp = _system()
  disp, _ = neighbors.periodic_space(SIDE)
  make = (descriptors.vector_descriptors_neighbor_list if vector else descriptors.scalar_descriptors_neighbor_list)
  kw = dict(r_s=R_S, eta=100.0, r_cut=R_CUT, n_species=2 if species else None)
  neighbor_fn, plain = make(disp, SIDE, sum_kernel="xla", **kw)
  pos = jnp.asarray(pos, dtype)
  nbrs = neighbor_fn.allocate(pos)
  sk = dict(species=jnp.asarray(sp)) if species else {}
  want = jax.jit(lambda p, nb: plain(p, nb, **sk))(pos, nbrs)
  assert float(jnp.max(jnp.abs(want))) > 0.1
  for block in (None, 7):
    _, fused = make(disp, SIDE, sum_kernel="pallas", block=block, **kw)
    got = jax.jit(lambda p, nb: fused(p, nb, **sk))(pos, nbrs)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert _max_rel(got, want) < tol, block


def test_auto_takes_the_kernel_on_an_nvidia_gpu_only_where_it_was_measured(monkeypatch):
  """"auto" (the default): the fused kernel on an NVIDIA GPU with a Dense list, one device and the full basis;
  XLA's form on the CPU, with Sparse lists, over a mesh and with an asked-for band. Explicit names pass through."""
  monkeypatch.delenv("UENN_SUM_KERNEL", raising=False)
  if jax.default_backend() == "cpu":
    assert not kernels._default_device_is_cuda() and kernels.resolve_sum_kernel("auto") == "xla"
  for cuda, want in ((True, "pallas"), (False, "xla")):
    monkeypatch.setattr(kernels, "_default_device_is_cuda", lambda c=cuda: c)
    assert kernels.resolve_sum_kernel("auto") == want
    assert kernels.resolve_sum_kernel("auto", band=0) == want  # 0: the full basis
    for kw in (dict(sparse=True), dict(mesh=True), dict(band=21)):
      assert kernels.resolve_sum_kernel("auto", **kw) == "xla", kw
    for name in ("xla", "pallas"):
      assert kernels.resolve_sum_kernel(name, sparse=True, mesh=True) == name
  with pytest.raises(ValueError, match="sum_kernel must be one of"):
    kernels.resolve_sum_kernel("triton")
  # UENN_SUM_KERNEL sets what "auto" means (an escape hatch where Triton fails); explicit names still win
  for cuda in (True, False):
    monkeypatch.setattr(kernels, "_default_device_is_cuda", lambda c=cuda: c)
    monkeypatch.setenv("UENN_SUM_KERNEL", "xla")
    assert kernels.resolve_sum_kernel("auto") == "xla" and kernels.resolve_sum_kernel("pallas") == "pallas"
    monkeypatch.setenv("UENN_SUM_KERNEL", "Pallas ")
    assert kernels.resolve_sum_kernel("auto") == "pallas" and kernels.resolve_sum_kernel("xla") == "xla"
    assert kernels.resolve_sum_kernel("auto", sparse=True) == "xla"
  monkeypatch.setenv("UENN_SUM_KERNEL", "triton")
  with pytest.raises(ValueError, match="UENN_SUM_KERNEL"):
    kernels.resolve_sum_kernel("auto")


@pytest.mark.parametrize("fmt", [partition.Dense, partition.Sparse], ids=["dense", "sparse"])
def test_default_forces_trace_the_kernel_where_auto_chooses_it(monkeypatch, fmt):
  """The library's default force function (direct and conservative) holds the fused kernel, forward and for the
  gradient, when jax's default device is an NVIDIA GPU (mocked here) and the list is Dense, and only then."""
  monkeypatch.delenv("UENN_SUM_KERNEL", raising=False)
  pos, _ = _system(40)
  pos = jnp.asarray(pos, jnp.float32)
  disp, _ = neighbors.periodic_space(SIDE)
  nbrs = partition.neighbor_list(disp, SIDE, R_CUT, format=fmt).allocate(pos)
  for cuda in (True, False):
    monkeypatch.setattr(kernels, "_default_device_is_cuda", lambda c=cuda: c)
    for model in (md_throughput.random_model("float32"), md_throughput.random_conservative_model("float32")):
      jaxpr = str(jax.make_jaxpr(models.many_body_force_fn(model, disp))(pos, nbrs))
      names = ("uenn_gaussian_sums_vjp",) if model.conservative else ()
      want = cuda and fmt is partition.Dense
      assert ("uenn_gaussian_sums" in jaxpr) == want, (cuda, model.forces)
      for name in names:
        assert (name in jaxpr) == want, (cuda, name)


def test_fused_sums_are_rejected_on_sparse_lists():
  disp, _ = neighbors.periodic_space(SIDE)
  with pytest.raises(ValueError, match="Dense neighbor list"):
    descriptors.vector_descriptors_neighbor_list(disp, SIDE, r_s=R_S, eta=100.0, r_cut=R_CUT,
                                                 format=partition.Sparse, sum_kernel="pallas")
  with pytest.raises(ValueError, match="sum_kernel must be one of"):
    descriptors.descriptor_model(r_s=R_S, eta=100.0, r_cut=R_CUT, sum_kernel="cuda")


def test_fused_sums_are_refused_over_a_device_mesh():
  from unitary_enn import parallel
  disp, _ = neighbors.periodic_space(SIDE)
  for model in (md_throughput.random_model("float32"), md_throughput.random_conservative_model("float32")):
    with pytest.raises(ValueError, match="device mesh"):
      models.many_body_force_fn(model, disp, mesh=parallel.device_mesh(), sum_kernel="pallas")
  with pytest.raises(ValueError, match="sum_kernel must be one of"):
    models.many_body_force_fn(md_throughput.random_model("float32"), disp, sum_kernel="fused")


def test_network_forces_and_conservative_forces_through_the_fused_sums_equal_xlas():
  """The Sec. 4.5 direct network (random weights) and a conservative one, whose force is -grad E through the
  kernel's forward and XLA's written-out gradient: the same forces to rounding, in float64 MD."""
  jax.config.update("jax_enable_x64", True)
  pos, box = md_throughput.fcc_state(4, "float64", 60.0)  # 256 atoms in a 21 A box
  pos = jnp.asarray(pos)
  disp, _ = neighbors.periodic_space(box)
  nbrs = partition.neighbor_list(disp, box, R_CUT).allocate(pos)
  for model, tol in ((md_throughput.random_model("float64"), 1e-12),
                     (md_throughput.random_conservative_model("float64"), 1e-10)):
    want = np.asarray(jax.jit(models.many_body_force_fn(model, disp, sum_kernel="xla"))(pos, nbrs))
    got = np.asarray(jax.jit(models.many_body_force_fn(model, disp, sum_kernel="pallas"))(pos, nbrs))
    assert np.max(np.abs(want)) > 1e-6
    assert _max_rel(got, want) < tol, model.forces


@pytest.mark.parametrize("columns,materialize", [(1, False), (4, False), (1, True)])
def test_fused_sums_lower_to_triton_for_an_nvidia_gpu(monkeypatch, columns, materialize):
  """What Triton refuses (array sizes that are not powers of two, unsupported operations) is refused when the kernel
  is lowered, which needs no GPU: the descriptor sums and their gradient lowered for CUDA hold the Triton kernels
  (also with 4 neighbour columns an iteration, `kernels.COLUMNS`, and with the pair terms materialized first,
  `kernels.MATERIALIZE`)."""
  monkeypatch.setattr(kernels, "COLUMNS", columns)
  monkeypatch.setattr(kernels, "MATERIALIZE", materialize)
  pos, _ = _system(40)
  disp, _ = neighbors.periodic_space(SIDE)
  neighbor_fn, fused = descriptors.vector_descriptors_neighbor_list(disp, SIDE, r_s=R_S, eta=100.0, r_cut=R_CUT,
                                                                    sum_kernel="pallas")
  pos = jnp.asarray(pos, jnp.float32)
  idx = neighbor_fn.allocate(pos).idx
  rows = jnp.arange(len(pos))
  # The sums and their gradient (a conservative model's force), one kernel each.
  f = jax.jit(lambda p, i: (fused(p, i, rows=rows), jax.grad(lambda q: jnp.sum(fused(q, i, rows=rows) ** 2))(p)))
  target = "__gpu$xla.gpu.triton"
  try:
    exported = jax.export.export(f, platforms=["cuda"],
                                 disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(target)])(pos, idx)
  except RuntimeError as e:  # jax >= 0.11 asks for a concrete or abstract GPU to pick Triton's target
    if "No supported GPU devices" in str(e):
      pytest.skip(f"this jax lowers Pallas for a GPU only with one present: {e}")
    raise
  text = exported.mlir_module()
  assert text.count(target) >= 2 and "uenn_gaussian_sums_vjp" in text
  assert exported.out_avals[0].shape == (len(pos), 3, len(R_S)) and exported.out_avals[1].shape == pos.shape


def test_md_with_the_fused_sums_follows_xlas_trajectory():
  """NVE on a free 32-atom cluster with the network's forces (float64, jitted chunks on a checked Dense list): the
  fused kernel's trajectory is XLA's to rounding."""
  jax.config.update("jax_enable_x64", True)
  from unitary_enn import quantity, simulate, structures
  from unitary_enn.constants import ARGON_MASS
  model = md_throughput.random_model("float64", seed=2)
  positions = jnp.asarray(structures.fcc_lattice(2), jnp.float64)
  momenta = quantity.maxwell_boltzmann_momenta(jax.random.PRNGKey(2), positions, ARGON_MASS, 40.0)
  kw = dict(n_steps=40, r_cut=model.r_cut, record_every=10, chunk_steps=20, log=None, dt=0.001)
  runs = [simulate.run_nve_neighbor_list(lambda d, k=k: models.many_body_force_fn(model, d, sum_kernel=k),
                                         positions, momenta, **kw) for k in ("xla", "pallas")]
  moved = float(np.abs(runs[0].positions[-1] - runs[0].positions[0]).max())
  assert moved > 1e-3
  assert float(np.abs(runs[1].positions - runs[0].positions).max()) < 1e-9 * max(moved, 1.0)


def test_materialized_pair_terms_give_the_same_sums_forces_and_triton_kernels(monkeypatch):
  """`kernels.MATERIALIZE` (the pair terms behind an optimization barrier before the kernels' transposes) changes
  where XLA computes them, not what: the same sums and conservative forces as without it, and the traced sums and
  gradient still hold the two kernels (the GPU lowering test runs with it on too)."""
  jax.config.update("jax_enable_x64", True)
  pos, _ = _system(40)
  disp, _ = neighbors.periodic_space(SIDE)
  nbrs = partition.neighbor_list(disp, SIDE, R_CUT).allocate(pos)
  model = md_throughput.random_conservative_model("float64", seed=3)
  force = jax.jit(models.many_body_force_fn(model, disp, sum_kernel="pallas"))
  want = np.asarray(force(pos, nbrs))
  monkeypatch.setattr(kernels, "MATERIALIZE", True)
  fresh = models.many_body_force_fn(model, disp, sum_kernel="pallas")
  got = np.asarray(jax.jit(fresh)(pos, nbrs))
  assert np.max(np.abs(want)) > 1e-6 and _max_rel(got, want) < 1e-12
  jaxpr = str(jax.make_jaxpr(fresh)(pos, nbrs))
  assert "optimization_barrier" in jaxpr and jaxpr.count("uenn_gaussian_sums") >= 2

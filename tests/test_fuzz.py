"""Property-based fuzzing of the public functions (hypothesis, fixed seed, few examples).

Inputs of random shapes and dtypes (real, complex, integer, boolean), at huge and tiny scales, with zeros, NaN and
Inf. Each call either raises ValueError / TypeError with a message, or returns finite results, equivariant (or
invariant) where the function is; never NaN from finite input, never an error from inside a dependency.
"""

import os
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unitary_enn as uenn
from unitary_enn import descriptors, models, quantity

FUZZ = settings(max_examples=10, derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))

DTYPES = ("float32", "float64", "complex64", "complex128", "int32", "bool")
SCALES = (0.0, 1e-30, 1e-8, 1.0, 1e8, 1e30)


def mostly(good, bad):
  """Values from `good` about 5 times in 6, else from `bad`."""
  return st.one_of(*[st.sampled_from(good)] * 5, st.sampled_from(bad))


@st.composite
def cases(draw, good: dict, bad: dict):
  """Arguments drawn from `good`, except (about half the time) one argument drawn from `bad`.

  Returns (the name of the bad argument or None, the arguments).
  """
  broken = draw(st.sampled_from([None] * len(bad) + sorted(bad)))
  return broken, {k: draw(bad[k] if k == broken else good[k]) for k in good}


@st.composite
def arrays(draw, shape, dtypes=DTYPES, specials=(None,) * 8 + ("nan", "inf"), scales=SCALES):
  """An array of `shape` (a tuple or a strategy of them): Gaussian entries times a scale (drawn from `scales`), in a
  drawn dtype, maybe with one NaN or Inf."""
  if isinstance(shape, st.SearchStrategy):
    shape = draw(shape)
  dtype = np.dtype(draw(st.sampled_from(dtypes)))
  scale = draw(st.sampled_from(scales))
  special = draw(st.sampled_from(specials)) if dtype.kind in "fc" else None
  rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
  x = rng.normal(size=shape) + (1j * rng.normal(size=shape) if dtype.kind == "c" else 0)
  x = x * scale
  if dtype.kind in "iub":
    x = np.round(np.real(x) * (1 if scale <= 1 else 0) + rng.integers(-3, 4, size=shape))
  if special and x.size:
    x.flat[rng.integers(x.size)] = np.nan if special == "nan" else np.inf
  return x.astype(dtype)


def positions(good_shapes, bad_shapes, good_scales=(3.0, 1e3, 1e8, 1e30)):
  """(good, bad) strategies of positions: good ones are real, finite, from A to 1e30 A apart; bad ones have a wrong
  shape, a complex or boolean dtype, a NaN or Inf, or atoms (nearly) on top of each other."""
  shapes = st.sampled_from(good_shapes)
  good = arrays(shapes, ("float32", "float64", "int32"), (None,), good_scales)
  bad = st.one_of(arrays(st.sampled_from(bad_shapes), ("float32", "float64")),
                  arrays(shapes, ("complex64", "complex128", "bool")),
                  arrays(shapes, ("float32", "float64"), ("nan", "inf")),
                  arrays(shapes, ("float32", "float64"), (None,), (0.0, 1e-30, 1e-8, 1.0)))
  return good, bad


ACCEPTED: dict[str, int] = {}  # test name -> examples that got past validation (see the last test)


def accepted(name: str) -> None:
  ACCEPTED[name] = ACCEPTED.get(name, 0) + 1


PACKAGE = os.path.dirname(os.path.abspath(uenn.__file__))


def attempt(fn, *args, **kwargs):
  """fn's result, or None when it raised ValueError / TypeError with a message from a validator of the package
  (anything else, or the same errors raised inside a dependency, propagates)."""
  try:
    return fn(*args, **kwargs)
  except (ValueError, TypeError) as e:
    assert str(e).strip(), f"{type(e).__name__} without a message"
    origin = traceback.extract_tb(e.__traceback__)[-1].filename
    assert os.path.abspath(origin).startswith(PACKAGE + os.sep), f"{type(e).__name__} from {origin}: {e}"
    return None


def finite_input(x) -> bool:
  x = np.asarray(x)
  return x.dtype != np.bool_ and bool(np.all(np.isfinite(x)))


def assert_finite(y, what):
  for leaf in jax.tree.leaves(y):
    assert np.all(np.isfinite(np.asarray(leaf))), f"{what}: non-finite output from finite input"


def close(a, b, dtype, scale):
  """|a - b| within the precision of `dtype` relative to `scale`."""
  tol = 1e-3 if jnp.finfo(jnp.result_type(dtype, jnp.float32)).bits == 32 else 1e-8
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0)) <= tol * (scale + 1e-30)


ROT = np.asarray(uenn.random_unitary(jax.random.PRNGKey(7), 3, jnp.float64))


# --- layers and network --------------------------------------------------------------------------------------------


SIZE = mostly(range(1, 5), [0, -1, 2.5, "3", True, None])


@FUZZ
@given(sizes=st.one_of(*[st.lists(st.integers(1, 4), min_size=2, max_size=3)] * 3, st.lists(SIZE, max_size=3)),
       param_dtype=mostly(DTYPES[:4], ("int32", "bool")),
       n=st.integers(1, 3), batch=st.sampled_from([(), (2,)]), data=st.data())
def test_network_either_refuses_or_is_finite_and_equivariant(sizes, param_dtype, n, batch, data):
  params = attempt(uenn.init_uenn, jax.random.PRNGKey(0), sizes, dtype=param_dtype)
  good_sizes = len(sizes) >= 2 and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)
  if params is None:
    assert not good_sizes or np.dtype(param_dtype).kind not in "fc"
    return
  assert good_sizes and [p["W"].shape for p in params] == list(zip(sizes[:-1], sizes[1:]))
  x = data.draw(arrays(batch + (n, sizes[0]), specials=(None,) * 4 + ("nan", "inf")))
  y = attempt(uenn.apply_uenn, params, x)
  if y is None:
    assert not finite_input(x)
    return
  assert finite_input(x) and y.shape == batch + (n, sizes[-1])
  assert_finite(y, "apply_uenn")
  accepted("network")
  group = "unitary" if np.iscomplexobj(x) else "orthogonal"
  x_f = jnp.asarray(x, jnp.result_type(x.dtype, jnp.float32))
  u = uenn.random_unitary(jax.random.PRNGKey(1), n, jnp.complex128 if group == "unitary" else jnp.float64)
  lhs = uenn.apply_uenn(params, jnp.einsum("ij,...jm->...im", u.astype(x_f.dtype), x_f))
  rhs = jnp.einsum("ij,...jm->...im", u, y)
  assert close(lhs, rhs, jnp.result_type(x_f.dtype, params[0]["W"].dtype), float(np.max(np.abs(np.asarray(y)),
                                                                                          initial=0.0)))


@FUZZ
@given(x=arrays((2, 3, 2)), a=st.sampled_from([0.1, -1.0, 0.0, float("nan"), 1e30]),
       c=st.sampled_from([1.0, 0.0, -1.0, float("inf")]), k=st.sampled_from([0.01, 0.0, 1.0, -0.5]))
def test_vector_activations_and_norms(x, a, c, k):
  for fn in (uenn.safe_norm, uenn.unit_vectors, lambda v: uenn.softsign(v, a), lambda v: uenn.vector_leaky_relu(v, c, k)):
    y = attempt(fn, x)
    if y is not None and finite_input(x) and np.isfinite(a) and abs(a) < 1e10:
      assert_finite(y, "activation")
  e = attempt(uenn.unit_vectors, x)
  if e is not None and finite_input(x):
    accepted("activations")
    norms = np.linalg.norm(np.asarray(e), axis=-2)
    assert np.all((np.abs(norms - 1) < 1e-3) | (norms == 0))


# --- FIRE ----------------------------------------------------------------------------------------------------------


GOOD_FIRE = dict(f_dec=(0.5, 0.9), f_inc=(1.1, 1.0), alpha_start=(0.1, 0.0), f_alpha=(0.99, 1.0), n_min=(5, 0),
                 variant=("paper", "fire2"))
BAD_FIRE = dict(f_dec=(0.0, 1.0, 2.0, float("nan")), f_inc=(0.9, float("inf"), -1.0), alpha_start=(-1.0, 1.5),
                f_alpha=(0.0, 1.01, float("nan")), n_min=(-3, 2.5, True), variant=("euler", None))


@st.composite
def fire_arguments(draw):
  """FIRE's arguments, all good or (about one time in two) one of them bad."""
  broken = draw(st.sampled_from([None] * 6 + sorted(BAD_FIRE)))
  return broken, {k: draw(st.sampled_from(BAD_FIRE[k] if k == broken else GOOD_FIRE[k])) for k in GOOD_FIRE}


@FUZZ
@given(arguments=fire_arguments(), nan_at=st.integers(0, 12))
def test_fire_either_refuses_its_hyperparameters_or_stays_finite(arguments, nan_at):
  broken, kw = arguments
  opt = attempt(uenn.fire, **kw)
  assert (opt is None) == (broken is not None), (broken, kw)
  if opt is None:
    return
  accepted("fire")
  x = jnp.asarray([1.0, -2.0, 0.5])
  state = opt.init(x)
  update = jax.jit(opt.update)
  for step in range(12):
    g = jnp.asarray([1.0, 30.0, 300.0]) * x
    if step == nan_at:
      g = g.at[1].set(jnp.nan)
    u, state = update(g, state, x)
    x = optax.apply_updates(x, u)
    assert_finite((x, state), "fire")
  assert int(state[1].nonfinite) == (1 if nan_at < 12 else 0)


# --- physics: descriptors, LJ, the four-atom force field, quantities ---------------------------------------------


BOX = (st.sampled_from([None, 25.0]), st.sampled_from([5.0, float("inf"), -3.0]))
CUT = (st.just(10.0), st.sampled_from([-1.0, 0.0, float("nan")]))


@FUZZ
@given(case=cases(dict(positions=positions([(4, 3), (1, 3)], [(4, 2), (3,)])[0], box=BOX[0], r_cut=CUT[0],
                       kind=st.sampled_from(["vector", "scalar"])),
                  dict(positions=positions([(4, 3), (1, 3)], [(4, 2), (3,)])[1], box=BOX[1], r_cut=CUT[1])))
def test_descriptors_either_refuse_or_are_finite_and_equivariant(case):
  _, kw = case
  pos, box, kind = kw.pop("positions"), kw.pop("box"), kw.pop("kind")
  fn = descriptors.vector_descriptors if kind == "vector" else descriptors.scalar_descriptors
  kw.update(r_s=[3.0, 5.0], eta=1.0)
  d = attempt(fn, pos, box, **kw)
  if d is None:
    return
  assert finite_input(pos) and np.isrealobj(pos) and pos.shape[1] == 3
  assert_finite(d, kind)
  accepted("descriptors")
  if box is None:
    p = np.asarray(pos, np.float64 if pos.dtype != np.float32 else np.float32)
    rotated = fn(p @ ROT.T.astype(p.dtype), None, **kw)
    want = np.einsum("ij,njk->nik", ROT, np.asarray(d)) if kind == "vector" else np.asarray(d)
    assert close(rotated, want, p.dtype, float(np.max(np.abs(np.asarray(d)), initial=0.0)) + 1.0)


@settings(FUZZ, max_examples=8)
@given(case=cases(dict(positions=positions([(3, 3), (2, 4, 3)], [(3, 2)])[0], box=BOX[0], r_cut=CUT[0],
                       truncate=st.booleans()),
                  dict(positions=positions([(3, 3), (2, 4, 3)], [(3, 2)])[1], box=BOX[1], r_cut=CUT[1])))
def test_lj_either_refuses_or_is_finite_and_invariant(case):
  _, kw = case
  pos, box, r_cut = kw["positions"], kw["box"], kw["r_cut"]
  r_cut = r_cut if kw["truncate"] or box is not None else None
  e = attempt(uenn.lj_energy, pos, box, r_cut)
  f = attempt(uenn.lj_forces, pos, box, r_cut)
  assert (e is None) == (f is None)
  if e is None:
    return
  assert finite_input(pos) and np.isrealobj(pos)
  assert_finite((e, f), "lj")
  accepted("lj")
  assert f.shape == pos.shape
  if box is None:
    p = np.asarray(pos, np.float64).astype(e.dtype)
    e_rot = uenn.lj_energy(p @ ROT.T.astype(e.dtype), None, r_cut)
    assert close(e_rot, e, e.dtype, float(np.max(np.abs(np.asarray(e)))) + 1e-6)


PARAMS = {d: uenn.init_uenn(jax.random.PRNGKey(3), (6, 5, 4), dtype=jnp.dtype(d)) for d in ("float32", "float64")}
FORCES = {d: uenn.load_force_field(models.Model(kind="four_body", params=p, sizes=(6, 5, 4), dtype=d,
                                                scales={"inputs": [4.0] * 6, "targets": [0.1] * 4}))
          for d, p in PARAMS.items()}


FOUR = positions([(4, 3), (2, 4, 3)], [(5, 3)])


@FUZZ
@given(case=cases(dict(positions=FOUR[0], model_dtype=st.sampled_from(sorted(FORCES))), dict(positions=FOUR[1])))
def test_four_atom_force_field_either_refuses_or_is_finite_and_equivariant(case):
  _, kw = case
  positions, model_dtype = kw["positions"], kw["model_dtype"]
  f = attempt(FORCES[model_dtype], positions)
  if f is None:
    return
  assert finite_input(positions) and np.isrealobj(positions) and positions.shape[-2:] == (4, 3)
  assert_finite(f, "four-atom forces")
  accepted("four_body")
  rotated = FORCES[model_dtype](np.asarray(positions, np.float64) @ ROT.T)
  assert close(rotated, np.asarray(f) @ ROT.T, model_dtype, float(np.max(np.abs(np.asarray(f)))))


MOMENTA = positions([(3, 3), (2, 3, 3)], [(3,)], (1e-3, 1.0, 1e3))  # eV ps / A; p^2 / m overflows float32 at ~1e18


@settings(FUZZ, max_examples=8)
@given(case=cases(dict(momenta=MOMENTA[0], mass=st.sampled_from([0.004, [1.0, 2.0, 3.0]]), temperature=st.just(60.0)),
                  dict(momenta=MOMENTA[1], mass=st.sampled_from([0.0, -1.0, float("nan"), float("inf"), [1.0, 2.0]]),
                       temperature=st.sampled_from([0.0, -5.0, float("nan")]))))
def test_quantities_either_refuse_or_are_finite(case):
  _, kw = case
  momenta, mass, temperature = kw["momenta"], kw["mass"], kw["temperature"]
  for fn in (quantity.kinetic_energy, quantity.temperature):
    y = attempt(fn, momenta, mass)
    if y is not None and finite_input(momenta):
      assert_finite(y, fn.__name__)
  p = attempt(quantity.maxwell_boltzmann_momenta, jax.random.PRNGKey(0), momenta, mass, temperature)
  if p is not None:
    accepted("quantity")
    assert_finite(p, "maxwell_boltzmann_momenta")
    np.testing.assert_allclose(np.asarray(quantity.temperature(p, mass)), temperature, rtol=1e-3)


def test_every_fuzz_test_above_reached_past_validation():
  """A fuzz test whose inputs were all refused would test nothing: each one that ran had accepted examples."""
  ran = {k: v for k, v in ACCEPTED.items()}
  print(ran)
  assert all(v >= 2 for v in ran.values()), ran

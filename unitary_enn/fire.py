"""FIRE (Bitzek et al. 2006) as an optax GradientTransformation, in the paper's adaptation (Appendix).

    opt = uenn.fire()                      # the paper's numbers and its forward-Euler order
    opt = uenn.fire(variant="fire2")       # semi-implicit Euler with step-back (Guenole et al. 2020)
    state = opt.init(params)
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)

The parameter pytree is treated as one flat vector: power P = F . v and the norms |v|, |F| are global over all
leaves. Complex leaves count as pairs of reals: P = Re(sum conj(F) v), |v|^2 = sum |v|^2.

Non-finite gradients: a step whose gradient holds NaN or Inf moves nothing (zero update), is treated as uphill
(velocity reset, dt shrunk by f_dec, alpha reset) and is counted in `ScaleByFireState.nonfinite`; a non-finite
power F . v (an overflow) is uphill too. One bad gradient therefore never turns the velocity or the parameters
into NaN, and the caller (e.g. `training.train`) decides from the count when to give up.

Complex gradients (docs/decisions.md §4): for a real loss of complex parameters `jax.grad` returns the *conjugate* of the
steepest-ascent direction. `fire()` (and the optimizers that `training.make_optimizer` builds) conjugate it
first with `conjugate_complex_grads()`, so they all take `jax.grad`'s output as it is. `scale_by_fire` on its
own expects the true (steepest-ascent) gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from unitary_enn import checks

Array = jax.Array

VARIANTS = ("paper", "fire2")


class ScaleByFireState(NamedTuple):
  """State of FIRE: the velocity (a pytree like the parameters), time step, mixing factor and the count N."""
  velocity: optax.Updates
  dt: Array  # shape=(), real dtype of the parameters
  alpha: Array  # shape=()
  count: Array  # shape=(), int32: steps since the last uphill reset
  nonfinite: Array  # shape=(), int32: skipped steps (no update): gradient, velocity or step held NaN or Inf


def _real_dtype(tree) -> jnp.dtype:
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.dtype(jnp.float32)
  return jnp.finfo(jnp.result_type(*leaves)).dtype


def _vdot(a, b) -> Array:
  """Re(sum conj(a) b) over all leaves."""
  return sum(jnp.sum(jnp.real(jnp.conj(x) * y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _all_finite(tree) -> Array:
  """True when every entry of every leaf is finite (a scalar bool; True for an empty tree)."""
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def _mix(v, f, alpha):
  """v <- (1 - alpha) v + alpha |v| F / |F| with global norms; F = 0 leaves v scaled by (1 - alpha)."""
  vnorm = jnp.sqrt(_vdot(v, v))
  fnorm = jnp.sqrt(_vdot(f, f))
  scale = jnp.where(fnorm > 0, alpha * vnorm / jnp.where(fnorm > 0, fnorm, 1.0), 0.0)
  return jax.tree.map(lambda vi, fi: ((1 - alpha) * vi + scale * fi).astype(vi.dtype), v, f)


def conjugate_complex_grads() -> optax.GradientTransformation:
  """Conjugate complex gradient leaves (real leaves pass through), turning `jax.grad` output into the
  steepest-ascent direction for complex parameters (docs/decisions.md §4). Put it first in an optax chain."""

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def scale_by_fire(dt: float = 0.001,
                  dt_max: float = 0.01,
                  mass: float = 0.1,
                  n_min: int = 5,
                  f_inc: float = 1.1,
                  f_dec: float = 0.5,
                  alpha_start: float = 0.1,
                  f_alpha: float = 0.99,
                  variant: str = "paper") -> optax.GradientTransformation:
  """FIRE's update rule; it receives the (steepest-ascent) gradient g, uses F = -g, returns the step dx.

  variant="paper", the Appendix order (forward Euler; both updates use values at time t):
    x <- x + v dt ; v <- v + F/m dt ; P = F.v ; N <- N+1 ; v <- (1-a) v + a |v| F/|F| ;
    if P > 0 and N > N_min: dt <- min(dt f_inc, dt_max), a <- a f_alpha ;
    if P <= 0: dt <- dt f_dec, v <- 0, a <- a_start, N <- 0.
  variant="fire2", FIRE 2.0 (Guenole et al. 2020) without its dt_min and initial delay:
    P = F.v ; if P > 0: N <- N+1, and if N > N_min grow dt and shrink a as above ;
    if P <= 0 (and v != 0): N <- 0, dt <- dt f_dec, a <- a_start, x <- x - dt v / 2, v <- 0 ;
    then v <- v + F/m dt ; v <- (1-a) v + a |v| F/|F| ; x <- x + v dt  (semi-implicit Euler).
  The first fire2 step (v = 0, so P = 0) is not counted as uphill, which would otherwise halve dt at once.
  Both variants: a NaN or Inf power is uphill; a gradient holding NaN or Inf (or a velocity or step that
  overflows) gives a zero update, is uphill (without the fire2 step back) and adds one to `nonfinite`.

  Args:
    dt, dt_max, mass, n_min, f_inc, f_dec, alpha_start, f_alpha: the paper's values by default (Appendix);
      validated by `check_hyperparameters` (0 < dt <= dt_max, 0 < f_dec < 1 <= f_inc, ...).
    variant: "paper" or "fire2".
  """
  dt, dt_max, mass, n_min, f_inc, f_dec, alpha_start, f_alpha = check_hyperparameters(
      dt, dt_max, mass, n_min, f_inc, f_dec, alpha_start, f_alpha, variant)

  def init_fn(params):
    real = _real_dtype(params)
    return ScaleByFireState(
        velocity=jax.tree.map(jnp.zeros_like, params),
        dt=jnp.asarray(dt, real),
        alpha=jnp.asarray(alpha_start, real),
        count=jnp.zeros([], jnp.int32),
        nonfinite=jnp.zeros([], jnp.int32))

  def update_fn(grads, state, params=None):
    del params
    finite = _all_finite(grads)
    # A non-finite gradient is replaced by F = 0 so that no NaN enters the arithmetic; the step is then
    # forced uphill below and its update zeroed.
    f = jax.tree.map(lambda g: jnp.where(finite, -g, jnp.zeros_like(g)), grads)
    v, step, alpha, count, nonfinite = state
    real = step.dtype

    def adapt(uphill, count):
      grow = ~uphill & (count > n_min)
      new_step = jnp.where(grow, jnp.minimum(step * f_inc, dt_max),
                           jnp.where(uphill, step * f_dec, step)).astype(real)
      new_alpha = jnp.where(grow, alpha * f_alpha, jnp.where(uphill, alpha_start, alpha)).astype(real)
      return new_step, new_alpha

    if variant == "paper":
      updates = jax.tree.map(lambda vi: vi * step, v)
      v = jax.tree.map(lambda vi, fi: (vi + fi / mass * step).astype(vi.dtype), v, f)
      power = _vdot(f, v)
      count = count + 1
      v = _mix(v, f, alpha)
      # NaN compares False: `~(power > 0)` makes a NaN power uphill, as it must be.
      uphill = ~(power > 0) | ~jnp.isfinite(power) | ~jnp.isfinite(_vdot(v, v)) | ~finite
      new_step, new_alpha = adapt(uphill, count)
      v = jax.tree.map(lambda vi: jnp.where(uphill, jnp.zeros_like(vi), vi), v)
      count = jnp.where(uphill, 0, count)
    else:
      power = _vdot(f, v)
      v2 = _vdot(v, v)
      moving = ~(v2 == 0)  # a NaN |v|^2 counts as moving
      uphill = ((~(power > 0) | ~jnp.isfinite(power)) & moving) | ~finite
      count = jnp.where(uphill, 0, count + 1)
      new_step, new_alpha = adapt(uphill, count)
      # The step back x <- x - dt v / 2 needs a finite v, and a non-finite gradient moves nothing.
      go_back = uphill & finite & jnp.isfinite(v2)
      back = jax.tree.map(lambda vi: jnp.where(go_back, -0.5 * new_step * vi, jnp.zeros_like(vi)), v)
      v = jax.tree.map(lambda vi: jnp.where(uphill, jnp.zeros_like(vi), vi), v)
      v = jax.tree.map(lambda vi, fi: (vi + fi / mass * new_step).astype(vi.dtype), v, f)
      v = _mix(v, f, new_alpha)
      updates = jax.tree.map(lambda b, vi: (b + new_step * vi).astype(vi.dtype), back, v)
    # No update for a non-finite gradient; and a finite gradient can still overflow the velocity or the step
    # (F / m, norms): such a step is skipped too.
    bad = ~finite | ~_all_finite(v) | ~_all_finite(updates)
    updates = jax.tree.map(lambda u: jnp.where(bad, jnp.zeros_like(u), u), updates)
    v = jax.tree.map(lambda vi: jnp.where(bad, jnp.zeros_like(vi), vi), v)
    new_step = jnp.where(bad, step * f_dec, new_step).astype(real)
    new_alpha = jnp.where(bad, alpha_start, new_alpha).astype(real)
    count = jnp.where(bad, 0, count)
    nonfinite = nonfinite + jnp.where(bad, 1, 0)
    return updates, ScaleByFireState(v, new_step, new_alpha, count.astype(jnp.int32), nonfinite.astype(jnp.int32))

  return optax.GradientTransformation(init_fn, update_fn)


def check_hyperparameters(dt=0.001, dt_max=0.01, mass=0.1, n_min=5, f_inc=1.1, f_dec=0.5, alpha_start=0.1,
                          f_alpha=0.99, variant="paper") -> tuple:
  """Validate FIRE's arguments (ValueError naming the one at fault); returns them as floats (n_min an int).

  0 < dt <= dt_max, mass > 0, n_min >= 0 an integer, f_inc >= 1, 0 < f_dec < 1, 0 <= alpha_start <= 1,
  0 < f_alpha <= 1, all finite; variant one of `VARIANTS`.
  """
  if not isinstance(variant, str) or variant not in VARIANTS:
    raise ValueError(f"unknown FIRE variant {variant!r}; expected one of {VARIANTS}")
  dt, dt_max, mass = (checks.positive(f"FIRE {k}", v) for k, v in (("dt", dt), ("dt_max", dt_max), ("mass", mass)))
  if dt > dt_max:
    raise ValueError(f"FIRE dt must be <= dt_max, got dt={dt} > dt_max={dt_max}")
  n_min = checks.positive_int("FIRE n_min", n_min, allow_zero=True)
  f_inc, f_dec, f_alpha = (checks.positive(f"FIRE {k}", v) for k, v in (("f_inc", f_inc), ("f_dec", f_dec),
                                                                        ("f_alpha", f_alpha)))
  alpha_start = checks.positive("FIRE alpha_start", alpha_start, allow_zero=True)
  for name, value, ok, want in (("f_inc", f_inc, f_inc >= 1, ">= 1 (dt grows downhill)"),
                                ("f_dec", f_dec, f_dec < 1, "< 1 (dt shrinks uphill)"),
                                ("alpha_start", alpha_start, alpha_start <= 1, "in [0, 1]"),
                                ("f_alpha", f_alpha, f_alpha <= 1, "in (0, 1]")):
    if not ok:
      raise ValueError(f"FIRE {name} must be {want}, got {value}")
  return dt, dt_max, mass, n_min, f_inc, f_dec, alpha_start, f_alpha


def fire(dt: float = 0.001,
         dt_max: float = 0.01,
         mass: float = 0.1,
         n_min: int = 5,
         f_inc: float = 1.1,
         f_dec: float = 0.5,
         alpha_start: float = 0.1,
         f_alpha: float = 0.99,
         variant: str = "paper",
         conjugate_complex: bool = True) -> optax.GradientTransformation:
  """FIRE with the paper's defaults, taking `jax.grad`'s output directly (complex leaves conjugated).

  See `scale_by_fire` for the update rule and the arguments. FIRE is meant for full-batch gradients: its
  uphill test compares successive forces, which mini-batch noise breaks.
  """
  if not isinstance(conjugate_complex, (bool, np.bool_)):
    raise TypeError(f"conjugate_complex must be a bool, got {conjugate_complex!r}")
  core = scale_by_fire(dt, dt_max, mass, n_min, f_inc, f_dec, alpha_start, f_alpha, variant)
  return optax.chain(conjugate_complex_grads(), core) if conjugate_complex else core

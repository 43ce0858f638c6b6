"""FIRE (Bitzek et al. 2006) as an optax GradientTransformation, in the paper's adaptation (Appendix).

    opt = uenn.fire()                      # the paper's numbers and its forward-Euler order
    opt = uenn.fire(variant="fire2")       # semi-implicit Euler with step-back (Guenole et al. 2020)
    state = opt.init(params)
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)

The parameter pytree is treated as one flat vector: power P = F . v and the norms |v|, |F| are global over all
leaves. Complex leaves count as pairs of reals: P = Re(sum conj(F) v), |v|^2 = sum |v|^2.

Complex gradients (docs/decisions.md §4): for a real loss of complex parameters `jax.grad` returns the *conjugate* of the
steepest-ascent direction. `fire()` (and the optimizers that `training.make_optimizer` builds) conjugate it
first with `conjugate_complex_grads()`, so they all take `jax.grad`'s output as it is. `scale_by_fire` on its
own expects the true (steepest-ascent) gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

VARIANTS = ("paper", "fire2")


class ScaleByFireState(NamedTuple):
  """State of FIRE: the velocity (a pytree like the parameters), time step, mixing factor and the count N."""
  velocity: optax.Updates
  dt: Array  # shape=(), real dtype of the parameters
  alpha: Array  # shape=()
  count: Array  # shape=(), int32: steps since the last uphill reset


def _real_dtype(tree) -> jnp.dtype:
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.dtype(jnp.float32)
  return jnp.finfo(jnp.result_type(*leaves)).dtype


def _vdot(a, b) -> Array:
  """Re(sum conj(a) b) over all leaves."""
  return sum(jnp.sum(jnp.real(jnp.conj(x) * y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


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

  Args:
    dt, dt_max, mass, n_min, f_inc, f_dec, alpha_start, f_alpha: the paper's values by default (Appendix).
    variant: "paper" or "fire2".
  """
  if variant not in VARIANTS:
    raise ValueError(f"unknown FIRE variant {variant!r}; expected one of {VARIANTS}")
  for name, val in dict(dt=dt, dt_max=dt_max, mass=mass).items():
    if not val > 0:
      raise ValueError(f"FIRE {name} must be > 0, got {val}")

  def init_fn(params):
    real = _real_dtype(params)
    return ScaleByFireState(
        velocity=jax.tree.map(jnp.zeros_like, params),
        dt=jnp.asarray(dt, real),
        alpha=jnp.asarray(alpha_start, real),
        count=jnp.zeros([], jnp.int32))

  def update_fn(grads, state, params=None):
    del params
    f = jax.tree.map(jnp.negative, grads)
    v, step, alpha, count = state
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
      uphill = power <= 0
      new_step, new_alpha = adapt(uphill, count)
      v = jax.tree.map(lambda vi: jnp.where(uphill, jnp.zeros_like(vi), vi), v)
      count = jnp.where(uphill, 0, count)
    else:
      power = _vdot(f, v)
      moving = _vdot(v, v) > 0
      uphill = (power <= 0) & moving
      count = jnp.where(uphill, 0, count + 1)
      new_step, new_alpha = adapt(uphill, count)
      back = jax.tree.map(lambda vi: jnp.where(uphill, -0.5 * new_step * vi, jnp.zeros_like(vi)), v)
      v = jax.tree.map(lambda vi: jnp.where(uphill, jnp.zeros_like(vi), vi), v)
      v = jax.tree.map(lambda vi, fi: (vi + fi / mass * new_step).astype(vi.dtype), v, f)
      v = _mix(v, f, new_alpha)
      updates = jax.tree.map(lambda b, vi: (b + new_step * vi).astype(vi.dtype), back, v)
    return updates, ScaleByFireState(v, new_step, new_alpha, count.astype(jnp.int32))

  return optax.GradientTransformation(init_fn, update_fn)


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
  core = scale_by_fire(dt, dt_max, mass, n_min, f_inc, f_dec, alpha_start, f_alpha, variant)
  return optax.chain(conjugate_complex_grads(), core) if conjugate_complex else core

"""Past one device, with jax.sharding: a device mesh, data-parallel batches, and atoms partitioned by rows.

    device_mesh(devices=None, axis="data") -> Mesh        a 1-D mesh over the local (or given) devices
    shard_batch(x, mesh) / replicate(x, mesh)             place arrays: split along axis 0, or a copy on each device
    shard_rows(fn, mesh)(positions, idx) -> (N, ...)      each device computes `fn` for its rows of a Dense
                                                          neighbor list, with all positions (12 bytes an atom)
                                                          replicated; the rows' outputs are gathered

Row sharding is how the descriptor-network force field scales over devices (`models.many_body_force_fn(...,
mesh=mesh)`): the force on atom i needs the positions of its neighbours only, so a device holding rows
i0..i1 of the neighbor list computes their descriptors and network outputs alone; per step the devices exchange
only the gathered forces (12 bytes an atom) and receive the positions. Gradients through `shard_rows` with
respect to the replicated positions are summed over devices by jax, so an energy summed over rows gives exact
forces too. Everything is exact: results equal the single-device ones to rounding (tests/test_parallel.py).

Several hosts: start each process with `jax.distributed.initialize()` (coordinator address, process count and id
from the environment or arguments), then `device_mesh(jax.devices())` spans every host's devices; see README.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

Array = jax.Array


def device_mesh(devices=None, axis: str = "data") -> Mesh:
  """A 1-D mesh named `axis` over `devices` (default: all devices jax sees, every host's in a multi-host run)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("device_mesh needs at least one device")
  return Mesh(np.array(devices), (axis,))


def _axis(mesh: Mesh) -> str:
  if len(mesh.axis_names) != 1:
    raise ValueError(f"expected a 1-D mesh, got axes {mesh.axis_names}")
  return mesh.axis_names[0]


def shard_batch(x, mesh: Mesh):
  """`x` (a pytree of arrays) split along axis 0 over the mesh; axis 0 must be a multiple of the device count."""
  axis = _axis(mesh)
  d = mesh.devices.size

  def put(a):
    a = jnp.asarray(a)
    if a.shape[0] % d:
      raise ValueError(f"an array of {a.shape[0]} samples cannot be split evenly over {d} devices")
    return jax.device_put(a, NamedSharding(mesh, P(axis)))
  return jax.tree.map(put, x)


def replicate(x, mesh: Mesh):
  """`x` (a pytree of arrays) with a full copy on every device of the mesh."""
  return jax.tree.map(lambda a: jax.device_put(jnp.asarray(a), NamedSharding(mesh, P())), x)


def batch_constraint(x, mesh: Mesh | None):
  """Inside jit: ask for `x` split along axis 0 over the mesh (a no-op without a mesh or with one device)."""
  if mesh is None or mesh.devices.size == 1:
    return x
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(_axis(mesh))))


def shard_rows(fn: Callable, mesh: Mesh) -> Callable:
  """Partition a per-row computation on a Dense neighbor list over the devices of `mesh`.

  Args:
    fn: `fn(positions (N, 3), idx (R, M), rows (R,)) -> (R, ...)`: the outputs of the centres `rows` (global atom
      indices, N for padding rows), whose neighbours are the rows `idx` of the list (entries N are padding).
    mesh: a 1-D device mesh.

  Returns:
    `g(positions (N, 3), idx (N, M)) -> (N, ...)`, jit-able: the list's rows are padded to a multiple of the device
    count and split over the devices; positions are replicated; each device runs `fn` on its rows; the outputs
    are gathered and replicated on every device.
  """
  axis = _axis(mesh)
  d = mesh.devices.size

  def g(positions, idx):
    n = positions.shape[0]
    pad = (-idx.shape[0]) % d
    idx_p = jnp.pad(idx, ((0, pad), (0, 0)), constant_values=n)
    rows = jnp.pad(jnp.arange(idx.shape[0]), (0, pad), constant_values=n)
    local = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(axis, None), P(axis)), out_specs=P(axis))
    # Gathered onto every device (an all-gather of the rows' outputs), so that what follows (the integrator's
    # update of the replicated positions) sees one replicated array whatever the caller does with it.
    return jax.lax.with_sharding_constraint(local(positions, idx_p, rows)[:idx.shape[0]], NamedSharding(mesh, P()))

  return g

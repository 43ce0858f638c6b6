"""Run by tests/test_parallel.py in a fresh process with 4 forced host devices; prints one JSON line of results.

Each check computes the same thing on one device and sharded over the 4, and reports the largest difference.
"""

import json
import os
import sys

assert "--xla_force_host_platform_device_count=4" in os.environ.get("XLA_FLAGS", ""), "run via test_parallel.py"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from jax_md import partition, space  # noqa: E402

from unitary_enn import descriptors, energy, models, network, parallel, simulate, structures, training  # noqa: E402
from unitary_enn.constants import ARGON_MASS  # noqa: E402
from unitary_enn.quantity import maxwell_boltzmann_momenta  # noqa: E402


def many_body_model(dtype="float64"):
  k = 12
  r_s = descriptors.radial_grid(3.0, k, 0.5)
  params = network.init_uenn(jax.random.PRNGKey(0), (k, 8, 1), dtype=jnp.dtype(dtype))
  return models.Model(kind="many_body", params=jax.tree.map(np.asarray, params), sizes=(k, 8, 1),
                      scales={"inputs": np.full(k, 0.5), "targets": np.asarray([0.02])},
                      basis=models.Basis(r_s, 2.0, 6.0), dtype=dtype)


def sharded_forces(model, mesh):
  side = 4 * 5.26
  positions = jnp.asarray(structures.fcc_lattice(4) * 1.0, jnp.float64)  # 256 atoms
  positions = positions + 0.05 * jax.random.normal(jax.random.PRNGKey(1), positions.shape)
  # A few thousand atoms: 2 x 2 x 2 copies of the small box.
  shifts = jnp.asarray(np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3), jnp.float64)
  big = (positions[None] + side * shifts[:, None]).reshape(-1, 3) % (2 * side)
  box = 2 * side
  displacement_fn, _ = space.periodic(box)
  neighbor_fn = partition.neighbor_list(displacement_fn, box, model.r_cut, format=partition.Dense)
  nbrs = neighbor_fn.allocate(big)
  f1 = jax.jit(models.many_body_force_fn(model, displacement_fn))(big, nbrs)
  fn = models.many_body_force_fn(model, displacement_fn, mesh=mesh)
  f4 = jax.jit(fn)(big, nbrs)
  return dict(n_atoms=int(big.shape[0]), max_force=float(jnp.abs(f1).max()), force_diff=float(jnp.abs(f1 - f4).max()),
              force_devices=len(f4.sharding.device_set))


def sharded_species(mesh):
  # Two species (atom i's channels in its own species' block) and a linear path beside the network.
  k, s = 6, 2
  r_s = descriptors.radial_grid(3.0, k, 0.5)
  c = s * s * k
  params = network.init_uenn(jax.random.PRNGKey(8), (c, 8, 1), dtype=jnp.float64)
  model = models.Model(kind="many_body", params=jax.tree.map(np.asarray, params), sizes=(c, 8, 1),
                       scales={"inputs": np.full(c, 0.5), "targets": np.asarray([0.02])},
                       basis=models.Basis(r_s, 2.0, 6.0), dtype="float64", species=("Cu", "Au"),
                       linear=np.asarray(jax.random.normal(jax.random.PRNGKey(9), (c,)) * 1e-3))
  box = 3 * 5.26
  positions = jnp.asarray(structures.fcc_lattice(3) * 1.0, jnp.float64)
  positions = (positions + 0.05 * jax.random.normal(jax.random.PRNGKey(10), positions.shape)) % box
  species = jax.random.randint(jax.random.PRNGKey(11), (positions.shape[0],), 0, 2)
  displacement_fn, _ = space.periodic(box)
  nbrs = partition.neighbor_list(displacement_fn, box, 6.0, format=partition.Dense).allocate(positions)
  f1 = jax.jit(models.many_body_force_fn(model, displacement_fn))(positions, nbrs, species=species)
  f4 = jax.jit(models.many_body_force_fn(model, displacement_fn, mesh=mesh))(positions, nbrs, species=species)
  return dict(species_force_diff=float(jnp.abs(f1 - f4).max()), species_max_force=float(jnp.abs(f1).max()))


def sharded_conservative(mesh):
  # F = -grad E with E a sum of atomic energies (scalar descriptors as a feature row): each device computes its
  # rows' atomic energies; the gradient with respect to the replicated positions sums every device's share.
  k = 8
  r_s = descriptors.radial_grid(3.0, k, 0.4)
  params = energy.init_energy_network(jax.random.PRNGKey(12), (k, 6, 5), (8,), n_features=1, dtype=jnp.float64)
  model = models.Model(kind="many_body", params=params, sizes=(k, 6, 5), dtype="float64", eps=0.1,
                       scales={"inputs": np.linspace(0.5, 1.5, k), "targets": [0.05], "energy": 0.05,
                               "energy_offset": -0.02, "feature_inputs": np.linspace(2.0, 1.0, k)},
                       basis=models.Basis(r_s, 2.0, 6.0), forces="conservative", head_hidden=(8,),
                       scalar_features=True)
  box = 3 * 5.26
  positions = jnp.asarray(structures.fcc_lattice(3), jnp.float64)
  positions = (positions + 0.05 * jax.random.normal(jax.random.PRNGKey(13), positions.shape)) % box
  displacement_fn, _ = space.periodic(box)
  nbrs = partition.neighbor_list(displacement_fn, box, 6.0, format=partition.Dense).allocate(positions)
  e1 = jax.jit(models.many_body_energy_fn(model, displacement_fn))(positions, nbrs)
  e4 = jax.jit(models.many_body_energy_fn(model, displacement_fn, mesh=mesh))(positions, nbrs)
  f1 = jax.jit(models.many_body_force_fn(model, displacement_fn))(positions, nbrs)
  f4 = jax.jit(models.many_body_force_fn(model, displacement_fn, mesh=mesh))(positions, nbrs)
  return dict(conservative_energy_diff=float(abs(e1 - e4)), conservative_force_diff=float(jnp.abs(f1 - f4).max()),
              conservative_max_force=float(jnp.abs(f1).max()))


def sharded_md(model, mesh):
  positions = jnp.asarray(structures.fcc_lattice(3), jnp.float64)  # 108 atoms, free cluster
  momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(2), positions, ARGON_MASS, 40.0)
  kw = dict(n_steps=100, r_cut=model.r_cut, record_every=10, chunk_steps=50, log=None, dt=0.002)
  one = simulate.run_nve_neighbor_list(lambda d: models.many_body_force_fn(model, d), positions, momenta, **kw)
  four = simulate.run_nve_neighbor_list(lambda d: models.many_body_force_fn(model, d, mesh=mesh), positions,
                                        momenta, **kw)
  return dict(md_position_diff=float(np.abs(one.positions - four.positions).max()),
              md_displacement=float(np.abs(one.positions[-1] - one.positions[0]).max()))


def sharded_training(mesh):
  key = jax.random.PRNGKey(3)
  x = jax.random.normal(key, (64, 3, 6))
  y = jax.random.normal(jax.random.PRNGKey(4), (64, 3, 4))
  params = network.init_uenn(jax.random.PRNGKey(5), (6, 16, 4))

  def loss_fn(p, xb, yb):
    return jnp.mean((network.apply_uenn(p, xb) - yb) ** 2)

  out = {}
  for name, opt in (("adam", dict(optimizer="adam", learning_rate=1e-3, batch_size=16)),
                    ("fire", dict(optimizer="fire", fire=dict(dt=0.01, dt_max=0.1), microbatch=16))):
    results = []
    for devices in (1, 4):
      config = ml_collections.ConfigDict(dict(steps=20, eval_every=10, seed=0, devices=devices, **opt))
      lines = []
      r = training.train(loss_fn, params, (x[:48], y[:48]), (x[48:], y[48:]), config, log=lines.append)
      if devices == 4:
        out[f"train_{name}_log"] = lines[0]
      results.append(r)
    diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(results[0].params),
                                                           jax.tree.leaves(results[1].params)))
    moved = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(results[0].params),
                                                            jax.tree.leaves(params)))
    out[f"train_{name}_param_diff"] = diff
    out[f"train_{name}_param_change"] = moved
  return out


def replica_forces(mesh):
  model = models.Model(kind="four_body", params=jax.tree.map(np.asarray, network.init_uenn(
      jax.random.PRNGKey(6), (6, 8, 4), dtype=jnp.float64)), sizes=(6, 8, 4),
      scales={"inputs": np.full(6, 4.0), "targets": np.full(4, 0.01)}, n_atoms=4, dtype="float64")
  positions = structures.four_body_initial_positions(8, dtype=jnp.float64)
  positions = positions + 0.1 * jax.random.normal(jax.random.PRNGKey(7), positions.shape)
  fn = jax.jit(models.model_force_fn(model))
  f1 = fn(positions)
  f4 = fn(parallel.shard_batch(positions, mesh))
  return dict(replica_diff=float(jnp.abs(f1 - f4).max()), replica_devices=len(f4.sharding.device_set))


def main():
  mesh = parallel.device_mesh()
  out = dict(devices=len(jax.devices()))
  model = many_body_model()
  which = sys.argv[1:] or ["forces", "species", "conservative", "md", "training", "replicas"]
  if "forces" in which:
    out.update(sharded_forces(model, mesh))
  if "species" in which:
    out.update(sharded_species(mesh))
  if "conservative" in which:
    out.update(sharded_conservative(mesh))
  if "md" in which:
    out.update(sharded_md(model, mesh))
  if "training" in which:
    out.update(sharded_training(mesh))
  if "replicas" in which:
    out.update(replica_forces(mesh))
  print(json.dumps(out))


if __name__ == "__main__":
  main()

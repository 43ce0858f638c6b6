"""GPU vs CPU, stage by stage, for the legacy many_body model in free space (tests/test_models.py failed on the GPU
with 6 of 25 atoms' forces wrong): the neighbor list, the descriptors, the forces."""
import os, shutil, tempfile, traceback
import numpy as np
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
import unitary_enn as uenn
from unitary_enn import models, neighbors, descriptors

cpu, acc = jax.devices("cpu")[0], jax.devices()[0]
w = tempfile.mkdtemp()
shutil.copytree("tests/data/legacy_many_body", w + "/m")
models.main(["convert", w + "/m"])
model = models.load_model(w + "/m")
ref = np.load("tests/data/legacy_reference_forces.npz")
pos = ref["many_body_free_positions"]
res = {}
for name, dev in (("cpu", cpu), ("acc", acc)):
  with jax.default_device(dev):
    out = {}
    p = jnp.asarray(pos)
    disp, cb = neighbors.free_space(p, model.r_cut)
    man = neighbors.NeighborManager(disp, cb, model.r_cut, format=neighbors.neighbor_format("dense"))
    nbr = man.allocate(p)
    out["nbr"] = np.asarray(nbr.idx)
    out["nbr_upd"] = np.asarray(jax.jit(lambda q, n: n.update(q))(p, nbr).idx)
    b = model.basis
    _, dfn = descriptors.vector_descriptors_neighbor_list(disp, cb, r_s=b.r_s, eta=b.eta, r_cut=b.r_cut,
                                                          cutoff=b.cutoff)
    out["desc"] = np.asarray(jax.jit(dfn)(jnp.asarray(p, jnp.float32), nbr))
    ff = models.many_body_force_fn(model, disp)
    out["f_own"] = np.asarray(jax.jit(ff)(p, nbr))
    out["f_api"] = np.asarray(uenn.load_force_field(w + "/m")(pos))
    res[name] = out
    print(name, dev, "api err vs ref", np.abs(out["f_api"] - ref["many_body_free_forces"]).max(),
          "own err", np.abs(out["f_own"] - ref["many_body_free_forces"]).max(), flush=True)
n = len(pos)
for key in ("nbr", "nbr_upd"):
  a, c = res["cpu"][key], res["acc"][key]
  diff = [i for i in range(n) if sorted(a[i][a[i] < n]) != sorted(c[i][c[i] < n])]
  print(key, "shapes", a.shape, c.shape, "rows whose neighbour sets differ:", diff)
  for i in diff[:4]:
    print("  row", i, "cpu", sorted(a[i][a[i] < n]), "acc", sorted(c[i][c[i] < n]))
d = np.abs(res["cpu"]["desc"] - res["acc"]["desc"]).reshape(n, -1).max(1)
print("descriptor max |cpu - acc| per atom > 1e-5:", np.where(d > 1e-5)[0], "max", d.max())
f = np.abs(res["cpu"]["f_own"] - res["acc"]["f_own"]).max(1)
print("force max |cpu - acc| per atom > 1e-5:", np.where(f > 1e-5)[0])
# the accelerator's force function on the CPU's neighbour list and vice versa
with jax.default_device(acc):
  disp, cb = neighbors.free_space(pos, model.r_cut)
  ff = jax.jit(models.many_body_force_fn(model, disp))
  from jax_md import partition
  p = jnp.asarray(pos)
  man = neighbors.NeighborManager(disp, cb, model.r_cut, format=neighbors.neighbor_format("dense"))
  nbr = man.allocate(p)
  nbr_cpu_idx = nbr.set(idx=jnp.asarray(res["cpu"]["nbr"])) if res["cpu"]["nbr"].shape == nbr.idx.shape else None
  if nbr_cpu_idx is not None:
    fc = np.asarray(ff(p, nbr_cpu_idx))
    print("acc forces on the cpu list: err vs ref", np.abs(fc - ref["many_body_free_forces"]).max())
  for blk in (None, 7, 25):
    f2 = np.asarray(jax.jit(models.many_body_force_fn(model, disp, block=blk))(p, nbr))
    print("acc block", blk, "err vs ref", np.abs(f2 - ref["many_body_free_forces"]).max())
  for mode in ("einsum", "reduce"):
    descriptors.PAIR_CONTRACTION = mode
    f3 = np.asarray(jax.jit(models.many_body_force_fn(model, disp))(p, nbr))
    print("acc contraction", mode, "err vs ref", np.abs(f3 - ref["many_body_free_forces"]).max())
  descriptors.PAIR_CONTRACTION = "auto"

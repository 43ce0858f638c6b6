"""Conservative models: an invariant energy on the equivariant layers, and forces F = -grad E (docs/decisions.md §16).

The paper's networks predict forces directly (Sec. 4.2, 4.5); such forces are not the gradient of any energy
(docs/decisions.md §12). The models here are built from the same layers and give F = -dE/dR by `jax.grad`:

    init_energy_network(key, sizes, head_hidden) -> {"uenn": [...], "head": [...]}
    apply_energy_network(params, x) -> E          x `(..., n, sizes[0])` -> the UENN (eq. 6) -> M output vectors
                                                  -> their Gram matrix (Sec. 3.6, `network.invariant_features`)
                                                  -> a scalar MLP -> one number per leading index, `(...)`
    pair_incidence(n_atoms) -> `(P, N)`           how the eq. 42 pair vectors depend on the positions
    four_body_energy(params, x) / four_body_forces(params, x)
                                                  a four-atom cluster: the energy of its 6 relative vectors and
                                                  the forces -dE/dR, both in standardized units, optionally
                                                  averaged over the 24 relabellings of the atoms
    vector_descriptors_of_pairs(...)              eq. 51 from positions on a fixed list of pairs (training)
    pack_boxes(...) / unpack_boxes(...)           periodic boxes with their pair lists as one float array per box,
                                                  the sample layout `training.train` takes
    box_descriptors(...)                          the descriptors of a packed box (eq. 51, optionally eq. 34 as a row)
    box_energy(...) / box_forces(...)             E = sum of atomic energies of a packed box, F = -dE/dR

Units and scales. A four-atom model sees x = r_ij / s_in (s_in in A) and gives a dimensionless E_std; its energy is
E = s_E E_std + N e_0 with s_E = s_in s_F (eV; s_F = the force scale, eV/A) and e_0 an offset per atom (eV).
With s_E = s_in s_F the standardized forces are simply F / s_F = -dE_std/dx mapped to the atoms, so force matching
in standardized units is the loss of eq. 44 on -grad E. The same holds for the many-atom model with descriptors
(dimensionless) instead of relative vectors: e_i = s_E e_std(D_i / s_D) + e_0.

Many atoms. The atomic energy of a pair potential is a scalar sum over neighbours, which the vector descriptors
(eq. 51) cannot give: in a symmetric environment they vanish whatever the distances (a perfect crystal at any
lattice constant). So the many-atom energy network may take the scalar descriptors (eq. 34) as an invariant feature
row of every descriptor vector (Sec. 3.3): inputs `(N, 3 + 1, K)`.

Symmetry. The Gram matrix x^T x of the output vectors is O(3)-invariant, so E is rotation, reflection and
translation invariant (it sees relative vectors or descriptors only) and F = -grad E is equivariant; the force
Jacobian J = -Hessian(E) is symmetric, so lambda = ||J - J^T|| / ||J|| = 0 and the work around any closed loop is
0, to rounding. Averaging E over the relabellings makes E permutation invariant and F permutation equivariant.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from unitary_enn import checks
from unitary_enn.data import BoxSet, pair_indices, permutation_matrices, relative_vectors
from unitary_enn.descriptors import get_cutoff, gaussian_basis
from unitary_enn.network import apply_invariant_head, apply_uenn, init_invariant_head, init_uenn

Array = jax.Array

FORCE_KINDS = ("direct", "conservative")


# --- The energy network ------------------------------------------------------------------------------------------


def init_energy_network(key: Array, sizes: Sequence[int], head_hidden: Sequence[int] = (32,), *,
                        n_features: int = 0, dtype=jnp.float32) -> dict:
  """Parameters of an energy network: the UENN with vector widths `sizes` and an invariant head (Sec. 3.6).

  Args:
    key: PRNG key.
    sizes: vector widths of the UENN, input first; its last width M is the number of output vectors whose
      M (M + 1) / 2 Gram invariants feed the head.
    head_hidden: widths of the head's hidden layers (scalar softsign with residue); the head ends in 1 output.
    n_features: invariant feature rows carried by every vector (Sec. 3.3); the head also sees the output's.
    dtype: a real float dtype (the energy must be real).

  Returns:
    {"uenn": the `init_uenn` list, "head": the `init_invariant_head` list}.
  """
  sizes = checks.sizes("sizes", sizes)
  head_hidden = tuple(checks.positive_int("head_hidden", h) for h in head_hidden)
  if jnp.issubdtype(jnp.dtype(dtype), jnp.complexfloating):
    raise TypeError(f"an energy network is real (O(n)); got dtype {jnp.dtype(dtype)}")
  k_uenn, k_head = jax.random.split(key)
  return {"uenn": init_uenn(k_uenn, sizes, dtype=dtype),
          "head": init_invariant_head(k_head, sizes[-1], head_hidden, 1, n_features=n_features, dtype=dtype)}


def is_energy_params(params) -> bool:
  """True for the parameters of an energy network ({"uenn", "head"}), False for a plain UENN list."""
  return isinstance(params, dict) and set(params) == {"uenn", "head"}


def apply_energy_network(params: dict, x: Array, *, n_features: int = 0, activation="softsign", eps: float = 0.0,
                         precision=None) -> Array:
  """E = MLP(Gram(UENN(x))): `(..., n + n_features, sizes[0])` -> `(...)`, invariant under O(n) acting on x.

  Args:
    params: from `init_energy_network` (with the same n_features).
    x: `(..., n + n_features, sizes[0])` vectors in the layer layout (standardized), with `n_features` trailing
      invariant rows (Sec. 3.3); the head sees the Gram matrix of the output vectors and the output's feature rows.
    activation, eps, precision: of the UENN, as in `network.apply_uenn`.
  """
  if not is_energy_params(params):
    raise TypeError("params must be the {'uenn': ..., 'head': ...} dict of init_energy_network")
  y = apply_uenn(params["uenn"], x, activation=activation, eps=eps, precision=precision, n_features=n_features)
  return apply_invariant_head(params["head"], y, n_features=n_features, precision=precision)[..., 0]


# --- Four atoms: an energy of the eq. 42 relative vectors ----------------------------------------------------------


def pair_incidence(n_atoms: int) -> np.ndarray:
  """D `(P, N)` with r_c = sum_a D[c, a] R_a for the pair vectors of eq. 42 (r_ij = R_j - R_i): +1 at j, -1 at i.

  Hence dE/dR = (dE/dr) D in the layer layout, and F = -(dE/dr) D.
  """
  i, j = pair_indices(n_atoms)
  d = np.zeros((len(i), n_atoms))
  d[np.arange(len(i)), j] = 1.0
  d[np.arange(len(i)), i] = -1.0
  return d


def four_body_energy(params: dict, x: Array, *, activation="softsign", eps: float = 0.0, precision=None,
                     symmetrize: bool = False, n_atoms: int = 4) -> Array:
  """The energy of clusters from their standardized relative vectors x = r_ij / s_in: `(..., 3, P)` -> `(...)`.

  With `symmetrize`, the mean of the network over the n_atoms! relabellings of the atoms (`data.permutation_matrices`):
  E(x) = (1/n!) sum_k E_net(x p_in[k]), exactly invariant under relabelling.
  """
  def energy(v):
    return apply_energy_network(params, v, activation=activation, eps=eps, precision=precision)

  if not symmetrize:
    return energy(x)
  p_in, _ = permutation_matrices(n_atoms)
  xs = jnp.einsum("...xp,kpq->k...xq", x, jnp.asarray(p_in, x.dtype), precision=jax.lax.Precision.HIGHEST)
  return jnp.mean(energy(xs), axis=0)


def four_body_forces(params: dict, x: Array, *, activation="softsign", eps: float = 0.0, precision=None,
                     symmetrize: bool = False, n_atoms: int = 4) -> Array:
  """Standardized forces F / s_F = -dE_std/dR of `four_body_energy`: x `(..., 3, P)` -> `(..., 3, N)`.

  The gradient is taken with respect to the pair vectors and mapped to the atoms by `pair_incidence`, which is
  exactly -grad_R of E(R) = E_std(relative_vectors(R) / s_in) in units of s_F = s_E / s_in. Every leading index
  is an independent configuration.
  """
  def total(v):
    return jnp.sum(four_body_energy(params, v, activation=activation, eps=eps, precision=precision,
                                    symmetrize=symmetrize, n_atoms=n_atoms))

  g = jax.grad(total)(x)
  d = jnp.asarray(pair_incidence(n_atoms), g.dtype)
  return -jnp.einsum("...xp,pa->...xa", g, d, precision=jax.lax.Precision.HIGHEST)


def four_body_energy_of_positions(params: dict, in_scale, energy_scale, energy_offset: float = 0.0, *,
                                  activation="softsign", eps: float = 0.0, precision=None, symmetrize: bool = False):
  """`energy_fn(positions)`: `(..., N, 3)` A -> `(...)` eV, E = s_E E_std(relative_vectors / s_in) + N e_0.

  Args:
    params: from `init_energy_network` (NumPy or JAX arrays, or tracers).
    in_scale: s_in, A (one scalar for all pairs).
    energy_scale: s_E, eV.  energy_offset: e_0, eV per atom.
  """
  in_scale = jnp.asarray(in_scale)
  energy_scale = jnp.asarray(energy_scale)

  def energy_fn(positions: Array, **unused_kwargs) -> Array:
    n_atoms = positions.shape[-2]
    x = relative_vectors(positions) / in_scale.astype(positions.dtype)
    e = four_body_energy(params, x, activation=activation, eps=eps, precision=precision, symmetrize=symmetrize,
                         n_atoms=n_atoms)
    return energy_scale.astype(e.dtype) * e + n_atoms * jnp.asarray(energy_offset, e.dtype)

  return energy_fn


# --- Many atoms: descriptors on a fixed pair list, packed periodic boxes ------------------------------------------


def vector_descriptors_of_pairs(positions: Array, pairs: Array, side, *, r_s, eta, r_cut: float,
                                cutoff="cosine", dtype=None, scalar_row: bool = False) -> Array:
  """Vector descriptors (eq. 51) of every atom from positions on a fixed list of ordered pairs, periodic.

  D_i = sum over listed pairs (i, j) of (r_ij / r_ij) exp(-eta (r_ij - r_s)^2) f_c(r_ij), r_ij = r_j - r_i by
  minimum image in a cubic box of side `side`. The same sum as `descriptors.vector_descriptors` when the list holds
  every pair closer than r_cut in both orders; written for training, where the pairs of a fixed configuration are
  known and the sums must be differentiated with respect to the positions.

  Args:
    positions: `(N, 3)` A.
    pairs: `(P, 2)` integer (i, j); rows with i >= N or j >= N are padding.
    side: the box side in A (a scalar, may be traced); pairs farther than r_cut contribute 0.
    r_s, eta, r_cut, cutoff: the basis.
    dtype: of the sums (default: the positions').
    scalar_row: append the scalar descriptors (eq. 34, the same sums without the unit vector) as a fourth row,
      an invariant feature row of Sec. 3.3.

  Returns:
    `(N, 3, K)`, or `(N, 4, K)` with `scalar_row`.
  """
  n = positions.shape[0]
  dtype = positions.dtype if dtype is None else jnp.dtype(dtype)
  i, j = pairs[:, 0], pairs[:, 1]
  valid = (i < n) & (j < n) & (i != j)
  ic, jc = jnp.minimum(i, n - 1), jnp.minimum(j, n - 1)
  dr = positions[jc] - positions[ic]
  dr = (dr - side * jnp.round(dr / side)).astype(dtype)
  r2 = jnp.sum(dr * dr, axis=-1)
  valid = valid & (r2 > 0) & (r2 < r_cut * r_cut)
  r = jnp.sqrt(jnp.where(valid, r2, 1.0))
  g = gaussian_basis(r, jnp.asarray(r_s, dtype), jnp.asarray(eta, dtype)) * get_cutoff(cutoff)(r, r_cut)[:, None]
  g = jnp.where(valid[:, None], g, 0.0)
  r_hat = jnp.where(valid[:, None], dr / r[:, None], 0.0)
  rows = [r_hat, jnp.ones_like(r_hat[:, :1])] if scalar_row else [r_hat]
  terms = jnp.concatenate(rows, axis=1)[:, :, None] * g[:, None, :]  # (P, 3 [+ 1], K)
  return jnp.zeros((n + 1,) + terms.shape[1:], dtype).at[jnp.where(valid, i, n)].add(terms)[:n]


@dataclasses.dataclass(frozen=True)
class BoxLayout:
  """Where the parts of a packed box lie in its row of floats (`pack_boxes`).

  A row holds: the atom count, the side (A), positions `(n_atoms, 3)` A, then pairs `(n_pairs, 2)` as floats
  (exact integers below 2^24). Targets rows hold forces `(n_atoms, 3)` (standardized) and the box energy.
  Padding atoms sit at the origin and take part in no pair; padding pairs are (n_atoms, n_atoms).
  """
  n_atoms: int
  n_pairs: int

  @property
  def input_size(self) -> int:
    return 2 + 3 * self.n_atoms + 2 * self.n_pairs

  @property
  def target_size(self) -> int:
    return 3 * self.n_atoms + 1

  @staticmethod
  def fitting(boxes: BoxSet, pairs: Sequence[np.ndarray]) -> "BoxLayout":
    """The smallest layout that holds every box of `boxes` (pairs: per box, `(P_b, 2)`)."""
    return BoxLayout(int(max(boxes.counts)), int(max(len(q) for q in pairs)))

  def union(self, other: "BoxLayout") -> "BoxLayout":
    return BoxLayout(max(self.n_atoms, other.n_atoms), max(self.n_pairs, other.n_pairs))


def box_pairs(positions, side: float, r_cut: float, *, block: int = 512) -> np.ndarray:
  """Every ordered pair (i, j), i != j, closer than r_cut by minimum image in a cubic box: `(P, 2)` int32.

  All pairs are visited in NumPy (float64), `block` rows at a time: seconds for the 4,000-atom boxes of Sec. 4.5, and
  no compilation per box side.
  """
  positions = np.asarray(positions, np.float64)
  checks.positive("side", side)
  n = len(positions)
  out = []
  for s in range(0, n, block):
    dr = positions[None, :, :] - positions[s:s + block, None, :]
    dr -= side * np.round(dr / side)
    i, j = np.nonzero(np.sum(dr * dr, axis=-1) < r_cut * r_cut)
    i = i + s
    keep = i != j
    out.append(np.stack([i[keep], j[keep]], axis=1))
  return np.concatenate(out).astype(np.int32) if out else np.zeros((0, 2), np.int32)


def pack_boxes(boxes: BoxSet, pairs: Sequence[np.ndarray], layout: BoxLayout, *, force_scale=1.0, energies=None,
               energy_scale=1.0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
  """Periodic boxes as rows of floats: inputs `(B, layout.input_size)`, targets `(B, layout.target_size)`.

  Positions are stored in A; forces divided by `force_scale` (eV/A) and energies (eV per box, optional: 0 when
  None) by `energy_scale` (eV). Every box is padded to `layout` (`BoxLayout.fitting`).

  Args:
    boxes: the boxes, with their forces.
    pairs: per box, its `(P_b, 2)` ordered pairs (`box_pairs`).
    layout: the common layout (at least the largest atom and pair counts).
  """
  need = BoxLayout.fitting(boxes, pairs)
  if need.n_atoms > layout.n_atoms or need.n_pairs > layout.n_pairs:
    raise ValueError(f"the boxes need {need} but the layout given holds {layout}")
  if layout.n_atoms >= 1 << 24:
    raise ValueError(f"{layout} is too large to store atom indices as float32")
  offsets = boxes.offsets
  inputs = np.zeros((len(boxes.box_sides), layout.input_size), np.float64)
  targets = np.zeros((len(boxes.box_sides), layout.target_size), np.float64)
  for b, ((side, pos), q) in enumerate(zip(boxes.boxes(), pairs)):
    n, p = len(pos), len(q)
    pad = np.full((layout.n_pairs, 2), layout.n_atoms, np.float64)
    pad[:p] = q
    inputs[b, 0], inputs[b, 1] = n, side
    inputs[b, 2:2 + 3 * n] = np.asarray(pos).reshape(-1)
    inputs[b, 2 + 3 * layout.n_atoms:] = pad.reshape(-1)
    targets[b, :3 * n] = (boxes.forces[offsets[b]:offsets[b + 1]] / force_scale).reshape(-1)
    targets[b, -1] = 0.0 if energies is None else energies[b] / energy_scale
  return inputs.astype(dtype), targets.astype(dtype)


def unpack_boxes(inputs: Array, layout: BoxLayout):
  """One packed row -> (n_atoms, side, positions `(layout.n_atoms, 3)`, pairs `(layout.n_pairs, 2)` int32,
  atom mask `(layout.n_atoms,)`)."""
  n = inputs[0]
  side = inputs[1]
  positions = inputs[2:2 + 3 * layout.n_atoms].reshape(layout.n_atoms, 3)
  pairs = inputs[2 + 3 * layout.n_atoms:].reshape(layout.n_pairs, 2).astype(jnp.int32)
  mask = jnp.arange(layout.n_atoms) < n
  return n, side, positions, pairs, mask


def box_descriptors(inputs: Array, layout: BoxLayout, *, r_s, eta, r_cut: float, cutoff="cosine",
                    scalar_row: bool = False, positions: Array | None = None) -> Array:
  """The descriptors of every atom of one packed box, `(layout.n_atoms, 3 [+ 1], K)` (`vector_descriptors_of_pairs`);
  rows of padding atoms are 0. `positions` replaces the packed positions."""
  _, side, packed_positions, pairs, _ = unpack_boxes(inputs, layout)
  positions = packed_positions if positions is None else positions
  return vector_descriptors_of_pairs(positions, pairs, side, r_s=r_s, eta=eta, r_cut=r_cut, cutoff=cutoff,
                                     dtype=inputs.dtype, scalar_row=scalar_row)


def box_energy(params: dict, inputs: Array, layout: BoxLayout, *, r_s, eta, r_cut: float, cutoff="cosine",
               descriptor_scale=1.0, scalar_scale=None, activation="softsign", eps: float = 0.0, precision=None,
               positions: Array | None = None) -> Array:
  """Standardized energy of one packed box: sum over its atoms of e_std(D_i / s_D) (padding atoms excluded).

  With `scalar_scale` (`(K,)`), the scalar descriptors divided by it ride along as a feature row (Sec. 3.3).
  `positions` replaces the packed positions (to differentiate with respect to them).
  """
  mask = unpack_boxes(inputs, layout)[-1]
  features = scalar_scale is not None
  d = box_descriptors(inputs, layout, r_s=r_s, eta=eta, r_cut=r_cut, cutoff=cutoff, scalar_row=features,
                      positions=positions)
  scale = jnp.asarray(descriptor_scale, d.dtype)
  if features:
    scale = jnp.stack([jnp.broadcast_to(scale, d.shape[-1:])] * 3 + [jnp.asarray(scalar_scale, d.dtype)])
  e = apply_energy_network(params, d / scale, n_features=int(features), activation=activation, eps=eps,
                           precision=precision)
  return jnp.sum(jnp.where(mask, e, 0.0))


def box_forces(params: dict, inputs: Array, layout: BoxLayout, **kwargs) -> tuple[Array, Array]:
  """(standardized energy, standardized forces `(layout.n_atoms, 3)` = -dE/dR) of one packed box.

  In units of s_E (energy) and s_F = s_E / 1 A (forces: positions are packed in A); zero on padding atoms.
  """
  _, _, positions, _, mask = unpack_boxes(inputs, layout)
  e, g = jax.value_and_grad(lambda p: box_energy(params, inputs, layout, positions=p, **kwargs))(positions)
  return e, jnp.where(mask[:, None], -g, 0.0)


def box_loss(predict_kwargs: dict, layout: BoxLayout, energy_weight: float = 0.0) -> Callable:
  """`loss(params, inputs (B, L), targets (B, T))` for `training.train`: force matching on packed boxes (eq. 44 on
  -grad E), plus `energy_weight` times the squared error of the energy per atom (standardized).

  The force term is the mean over real atoms and components of the whole batch. Boxes are evaluated one after the
  other (`lax.map`), so memory holds one box's pair terms whatever the batch.
  """
  def one(params, xy):
    x, y = xy
    e, f = box_forces(params, x, layout, **predict_kwargs)
    n = x[0]
    f_ref = y[:3 * layout.n_atoms].reshape(layout.n_atoms, 3)
    return jnp.sum((f - f_ref) ** 2), 3 * n, ((e - y[-1]) / n) ** 2

  def loss(params, inputs, targets):
    sq, count, e2 = jax.lax.map(lambda xy: one(params, xy), (inputs, targets))
    out = jnp.sum(sq) / jnp.sum(count)
    if energy_weight:
      out = out + energy_weight * jnp.mean(e2)
    return out

  return loss

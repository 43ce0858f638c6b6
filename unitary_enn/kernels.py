"""The descriptor sums' Gaussians and their contraction over neighbours in one GPU kernel (Pallas, Triton).

    out[b, c, k] = sum_m wv[c, b, m] exp(-eta_k (r[b, m] - r_s[k])^2)

is the sum of eq. 34 / 35 over the neighbours m of a block of atoms b (`descriptors._gaussian_sums`: c runs over
the 3 components of the unit vector times the S node features, wv = f_c (r_ij / r_ij) v_j). XLA computes it as
the Gaussians `(b, m, K)`, written to memory, then a batched product; on a GPU that array is the largest of the
force evaluation (1M atoms x 191 list columns x 73 centres = 56 GB in float32). The kernel here keeps each
Gaussian in registers: a program takes `ROWS` atoms and walks their neighbour columns, adding each neighbour's
`K` Gaussians times its weights into `(C, K, ROWS)` accumulators, so memory holds only the pair terms and the
sums.

It runs where Pallas lowers to Triton (NVIDIA and AMD GPUs) and, interpreted, on the CPU, where it is slow and
only there to test it. `descriptors` selects it with `sum_kernel="pallas"` (Dense neighbor lists); the default
stays XLA's product until a GPU run shows the kernel pays (`benchmarks.descriptor_sum --sum_kernels=xla,pallas`,
`benchmarks.md_throughput --drivers=network,network_pallas`). It computes in the dtype's own arithmetic, which is
full float32 for float32, whatever `precision` asks of XLA's products.

Triton needs every array in a kernel to have a power-of-two size. The atoms are padded to a multiple of `ROWS`;
the centres are split into power-of-two pieces of at least `MIN_PIECE` (73 centres: 64 + 16, 7 padded), each with
its own accumulators; the neighbour columns are walked one at a time, so their number is free.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array

ROWS = 32  # atoms per program: `(ROWS,)` rows of coalesced loads, `(K, ROWS)` accumulators per channel
NUM_WARPS = 4
MIN_PIECE = 16  # smallest piece of the centres (Triton's minimum useful tile)
SUM_KERNELS = ("xla", "pallas")


def check_sum_kernel(sum_kernel: str) -> str:
  """`sum_kernel` itself when it is one of `SUM_KERNELS`, else a ValueError naming them."""
  if sum_kernel not in SUM_KERNELS:
    raise ValueError(f"sum_kernel must be one of {SUM_KERNELS}, got {sum_kernel!r}")
  return sum_kernel


def centre_pieces(k: int, min_piece: int = MIN_PIECE) -> tuple[int, ...]:
  """Power-of-two pieces, each at least `min_piece`, whose sum is k rounded up to a multiple of `min_piece`.

  73 -> (64, 16); 100 -> (64, 32, 16); 5 -> (16,).
  """
  total = -(-int(k) // min_piece) * min_piece
  pieces = []
  while total:
    p = 1 << (total.bit_length() - 1)
    pieces.append(p)
    total -= p
  return tuple(pieces)


def _interpret(backend: str | None = None) -> bool:
  """Interpret the kernel (CPU) or compile it with Triton (GPU); anything else cannot run it."""
  backend = backend or jax.default_backend()
  if backend in ("gpu", "cuda", "rocm"):
    return False
  if backend == "cpu":
    return True
  raise ValueError(f"sum_kernel='pallas' runs on GPUs (Triton) and, interpreted for tests, on the CPU; the default "
                   f"backend is {backend!r}: use sum_kernel='xla'")


def gaussian_sums(r: Array, wv: Array, r_s: Array, eta: Array, *, rows: int | None = None,
                  interpret: bool | None = None) -> Array:
  """sum_m wv[c, b, m] exp(-eta (r[b, m] - r_s[k])^2) -> `(b, C, K)`, in one kernel.

  Args:
    r: `(b, m)` distances in A (any finite value where wv is 0: padding and invalid pairs).
    wv: `(C, b, m)` the pairs' weights per channel.
    r_s: `(K,)` centres in A.
    eta: scalar or `(K,)` widths in A^-2.
    rows: atoms per program (a power of two; default `ROWS`).
    interpret: run the kernel in the Pallas interpreter (True) or compile it with Triton (False); default: the
      interpreter where the computation is lowered for the CPU, Triton where it is lowered for a GPU.

  Returns:
    `(b, C, K)` in the dtype of r. Forward only: `descriptors._gaussian_sums` gives it its gradient.
  """
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu

  rows = int(rows or ROWS)
  if rows < 1 or rows & (rows - 1):
    raise ValueError(f"rows must be a power of two, got {rows}")
  dtype = r.dtype
  b, m = r.shape
  c = wv.shape[0]
  k = r_s.shape[0]
  if m == 0 or b == 0:
    return jnp.zeros((b, c, k), dtype)
  pieces = centre_pieces(k)
  kp = sum(pieces)
  # Padded centres repeat the last one; their sums are cut off below.
  r_s = jnp.pad(jnp.asarray(r_s, dtype), (0, kp - k), mode="edge")
  eta = jnp.pad(jnp.broadcast_to(jnp.asarray(eta, dtype), (k,)), (0, kp - k), mode="edge")
  bp = -(-b // rows) * rows
  # Neighbour columns first, so that a program's loads of one column are `rows` consecutive numbers.
  r_t = jnp.pad(r.T, ((0, 0), (0, bp - b)), constant_values=1)
  wv_t = jnp.pad(jnp.swapaxes(wv, 1, 2), ((0, 0), (0, 0), (0, bp - b)))
  offsets = [sum(pieces[:i]) for i in range(len(pieces))]

  def kernel(r_ref, wv_ref, rs_ref, eta_ref, o_ref):
    centres = [(rs_ref[pl.ds(o, p)][:, None], eta_ref[pl.ds(o, p)][:, None]) for o, p in zip(offsets, pieces)]

    def body(j, acc):
      rj = r_ref[pl.ds(j, 1), :]  # (1, rows): neighbour column j of the program's atoms
      w = [wv_ref[x, pl.ds(j, 1), :] for x in range(c)]
      out = []
      for q, (rs, et) in enumerate(centres):
        d = rj - rs  # (piece, rows)
        g = jnp.exp(-et * d * d)
        out.extend(acc[q * c + x] + w[x] * g for x in range(c))
      return tuple(out)

    init = tuple(jnp.zeros((p, rows), dtype) for p in pieces for _ in range(c))
    acc = jax.lax.fori_loop(0, m, body, init)
    for q, (o, p) in enumerate(zip(offsets, pieces)):
      for x in range(c):
        o_ref[x, pl.ds(o, p), :] = acc[q * c + x]

  def call(interpret, *args):
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((c, kp, bp), dtype),
        grid=(bp // rows,),
        in_specs=[pl.BlockSpec((m, rows), lambda i: (0, i)),
                  pl.BlockSpec((c, m, rows), lambda i: (0, 0, i)),
                  pl.BlockSpec((kp,), lambda i: (0,)),
                  pl.BlockSpec((kp,), lambda i: (0,))],
        out_specs=pl.BlockSpec((c, kp, rows), lambda i: (0, 0, i)),
        interpret=interpret,
        compiler_params=plgpu.CompilerParams(num_warps=NUM_WARPS, num_stages=1),
        name="uenn_gaussian_sums",
    )(*args)

  args = (r_t, wv_t, r_s, eta)
  if interpret is None:
    # Chosen where the computation is lowered (a jit on the CPU of a GPU machine interprets), not by the default
    # backend: Triton on GPUs, the interpreter on the CPU.
    _interpret()  # a clear error on backends that can run neither
    out = jax.lax.platform_dependent(*args, cpu=functools.partial(call, True), default=functools.partial(call, False))
  else:
    out = call(bool(interpret), *args)
  return jnp.transpose(out[:, :k, :b], (2, 0, 1))

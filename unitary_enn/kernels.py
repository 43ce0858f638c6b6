"""The descriptor sums' Gaussians and their contraction over neighbours in one GPU kernel (Pallas, Triton).

    out[b, c, k] = sum_m wv[c, b, m] exp(-eta_k (r[b, m] - r_s[k])^2)

is the sum of eq. 34 / 35 over the neighbours m of a block of atoms b (`descriptors._gaussian_sums`: c runs over
the 3 components of the unit vector times the S node features, wv = f_c (r_ij / r_ij) v_j). XLA computes it as
the Gaussians `(b, m, K)`, written to memory, then a batched product; on a GPU that array is the largest of the
force evaluation (1M atoms x 191 list columns x 73 centres = 56 GB in float32). The kernel here keeps each
Gaussian in registers: a program takes `ROWS` atoms and walks their neighbour columns, adding each neighbour's
`K` Gaussians times its weights into `(C, K, ROWS)` accumulators, so memory holds only the pair terms and the
sums. The kernels read the pair terms neighbour columns first (`(m, b)`: a program's loads of one column are
`ROWS` consecutive numbers); an atoms-first form that read XLA's own `(b, m)` layout, so that XLA no longer
computed the pair terms transposed, took the glue around the kernel from 19 to 4 ms a step at 1M atoms on the
H200 but the kernel itself from 9.0 to 39.9 ms (strided loads): network MD 80.7 against 66.6 ms a step in one
run, so it was not kept (benchmarks/RESULTS.md, "Leases 5-7"). `gaussian_sums_vjp` does the same for the two
contractions over the centres of the sums' gradient (a conservative model's force).

It runs where Pallas lowers to Triton (NVIDIA and AMD GPUs) and, interpreted, on the CPU, where it is 2-3x slower
than XLA's form and only there to test it. `descriptors` selects it with `sum_kernel="pallas"` (Dense neighbor
lists), and by default (`sum_kernel="auto"`, `resolve_sum_kernel`) on an NVIDIA GPU, where it was measured to pay
(`benchmarks.descriptor_sum --pallas_rows=16,32,64`, `benchmarks.md_throughput --drivers=network_xla,network_pallas`).
It computes in the dtype's own arithmetic, which is full float32 for float32, whatever `precision` asks of XLA's
products.

Triton needs every array in a kernel to have a power-of-two size. The atoms are padded to a multiple of `ROWS`;
the centres are split into power-of-two pieces of at least `MIN_PIECE` (73 centres: 64 + 16, 7 padded), each with
its own accumulators; the neighbour columns are walked `COLUMNS` at a time (one by default; the last iteration
padded with columns that add nothing), so their number is free.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

Array = jax.Array

ROWS = 32  # atoms per program: `(ROWS,)` rows of coalesced loads, `(K, ROWS)` accumulators per channel
NUM_WARPS = None  # warps per program; None: max(4, ROWS // 16), about 60-120 accumulator registers per thread
NUM_STAGES = 1  # Triton's software pipelining of the loop over neighbour columns (1: none)
COLUMNS = 1  # neighbour columns per iteration of `gaussian_sums`' loop (more work in flight per iteration)
MIN_PIECE = 16  # smallest piece of the centres (Triton's minimum useful tile)
# Pair terms written atoms-first, as XLA computes them, before the kernels' transposes (an optimization barrier
# that keeps XLA from moving the transposes up into the pair terms, which it then computes reading the neighbour
# list across its rows: 19.5 ms of a 63 ms step on the H200). Off until a GPU measures it
# (`benchmarks.md_throughput --drivers=network,network_materialized`).
MATERIALIZE = False
SUM_KERNELS = ("auto", "xla", "pallas")


def check_sum_kernel(sum_kernel: str) -> str:
  """`sum_kernel` itself when it is one of `SUM_KERNELS`, else a ValueError naming them."""
  if sum_kernel not in SUM_KERNELS:
    raise ValueError(f"sum_kernel must be one of {SUM_KERNELS}, got {sum_kernel!r}")
  return sum_kernel


def _default_device_is_cuda() -> bool:
  """Whether jax's default device is an NVIDIA GPU (where the kernel was measured; not ROCm, not a TPU); a
  `jax.default_device` setting counts, so that work a user puts on the CPU of a GPU machine stays XLA's."""
  device = jax.config.jax_default_device or jax.devices()[0]
  if isinstance(device, str):
    device = jax.devices(device)[0]
  return device.platform == "gpu" and "cuda" in str(getattr(device.client, "platform_version", "")).lower()


ENV_SUM_KERNEL = "UENN_SUM_KERNEL"  # what "auto" means in this process: "xla" or "pallas" (unset: chosen below)


def resolve_sum_kernel(sum_kernel: str, *, sparse: bool = False, mesh: bool = False, band=None) -> str:
  """The form of the descriptor sums that runs: "xla" or "pallas".

  "auto" (the library's default) is "pallas" where it was measured to pay, on an NVIDIA GPU as jax's default
  device, with a Dense neighbor list, one device and the full basis (band None or 0: on the H200 the banded sum
  was 1.5x slower than the full one); else "xla". On the H200, 1M atoms of argon: the sums 1.38x faster, network
  MD 1.20x, conservative MD 1.30x (benchmarks/RESULTS.md, "GPU: one H200"). On the CPU it is always "xla": the
  kernel runs there only interpreted, for the tests. The environment variable UENN_SUM_KERNEL=xla (or pallas)
  sets what "auto" means for every caller that takes the default (`models.load_force_field`, the ASE calculator,
  the experiments), e.g. where Triton cannot compile the kernel for a GPU; "pallas" still needs a Dense list and
  one device. An explicit "xla" or "pallas" is returned as given (the callers refuse "pallas" with a Sparse list
  or a mesh).
  """
  if check_sum_kernel(sum_kernel) != "auto":
    return sum_kernel
  forced = os.environ.get(ENV_SUM_KERNEL, "").strip().lower() or "auto"
  if forced not in SUM_KERNELS:
    raise ValueError(f"{ENV_SUM_KERNEL} must be one of {SUM_KERNELS} (or unset), got {forced!r}")
  fits = not (sparse or mesh or band)  # where the kernel can run
  if forced == "auto":
    return "pallas" if fits and _default_device_is_cuda() else "xla"
  return forced if fits else "xla"


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


def _layout(r: Array, r_s: Array, eta: Array, rows: int | None):
  """What both kernels share: rows per program, the centre pieces and their offsets, the padded atom count, and
  r `(m, bp)` (neighbour columns first, so that a program's loads of one column are `rows` consecutive numbers;
  padded atoms at r = 1), r_s and eta `(kp,)` (padded centres repeat the last one and are cut off after)."""
  rows = int(rows or ROWS)
  if rows < 1 or rows & (rows - 1):
    raise ValueError(f"rows must be a power of two, got {rows}")
  dtype = r.dtype
  b, k = r.shape[0], r_s.shape[0]
  pieces = centre_pieces(k)
  kp = sum(pieces)
  offsets = [sum(pieces[:i]) for i in range(len(pieces))]
  bp = -(-b // rows) * rows
  r_t = jnp.pad(r.T, ((0, 0), (0, bp - b)), constant_values=1)
  r_s = jnp.pad(jnp.asarray(r_s, dtype), (0, kp - k), mode="edge")
  eta = jnp.pad(jnp.broadcast_to(jnp.asarray(eta, dtype), (k,)), (0, kp - k), mode="edge")
  return rows, list(zip(offsets, pieces)), kp, bp, r_t, r_s, eta


def _launch(kernel, args, in_blocks, out_shapes, out_blocks, *, rows, bp, interpret, name):
  """pallas_call over `bp // rows` programs; every block is the whole array but for its last axis, `rows` of the
  program's atoms (a 1-D block: the whole array). interpret None: chosen where the computation is lowered."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu

  def spec(shape):
    if len(shape) == 1:
      return pl.BlockSpec(shape, lambda i: (0,))
    return pl.BlockSpec(tuple(shape[:-1]) + (rows,), lambda i, n=len(shape): (0,) * (n - 1) + (i,))

  def call(interpret, *args):
    return pl.pallas_call(
        kernel, out_shape=[jax.ShapeDtypeStruct(s, args[0].dtype) for s in out_shapes], grid=(bp // rows,),
        in_specs=[spec(s) for s in in_blocks], out_specs=[spec(s) for s in out_blocks], interpret=interpret,
        compiler_params=plgpu.CompilerParams(num_warps=NUM_WARPS or max(4, rows // 16),
                                             num_stages=NUM_STAGES),
        name=name)(*args)

  if interpret is not None:
    return call(bool(interpret), *args)
  # Chosen where the computation is lowered (a jit on the CPU of a GPU machine interprets), not by the default
  # backend: Triton on GPUs, the interpreter on the CPU.
  _interpret()  # a clear error on backends that can run neither
  return jax.lax.platform_dependent(*args, cpu=functools.partial(call, True), default=functools.partial(call, False))


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
    `(b, C, K)` in the dtype of r. Its gradient: `gaussian_sums_vjp` (`descriptors._gaussian_sums`).
  """
  from jax.experimental import pallas as pl
  dtype = r.dtype
  (b, m), c, k = r.shape, wv.shape[0], r_s.shape[0]
  cols = int(COLUMNS)
  if cols < 1:
    raise ValueError(f"COLUMNS must be a positive number of neighbour columns, got {COLUMNS}")
  mp = -(-m // cols) * cols  # columns padded to whole iterations: r = 1, weight 0, so they add nothing
  if MATERIALIZE:
    r, wv = jax.lax.optimization_barrier((r, wv))
  r = jnp.pad(r, ((0, 0), (0, mp - m)), constant_values=1)
  rows, pieces, kp, bp, r_t, r_s, eta = _layout(r, r_s, eta, rows)
  if m == 0 or b == 0:
    return jnp.zeros((b, c, k), dtype)
  wv_t = jnp.pad(jnp.swapaxes(wv, 1, 2), ((0, 0), (0, mp - m), (0, bp - b)))

  def kernel(r_ref, wv_ref, rs_ref, eta_ref, o_ref):
    centres = [(rs_ref[pl.ds(o, p)][:, None], eta_ref[pl.ds(o, p)][:, None]) for o, p in pieces]

    def body(i, acc):
      out = list(acc)
      for t in range(cols):  # the same order of additions as one column an iteration
        j = i * cols + t
        rj = r_ref[pl.ds(j, 1), :]  # (1, rows): neighbour column j of the program's atoms
        w = [wv_ref[x, pl.ds(j, 1), :] for x in range(c)]
        for q, (rs, et) in enumerate(centres):
          d = rj - rs  # (piece, rows)
          g = jnp.exp(-et * d * d)
          for x in range(c):
            out[q * c + x] = out[q * c + x] + w[x] * g
      return tuple(out)

    init = tuple(jnp.zeros((p, rows), dtype) for _, p in pieces for _ in range(c))
    acc = jax.lax.fori_loop(0, mp // cols, body, init)
    for q, (o, p) in enumerate(pieces):
      for x in range(c):
        o_ref[x, pl.ds(o, p), :] = acc[q * c + x]

  (out,) = _launch(kernel, (r_t, wv_t, r_s, eta), [r_t.shape, wv_t.shape, (kp,), (kp,)], [(c, kp, bp)],
                   [(c, kp, bp)], rows=rows, bp=bp, interpret=interpret, name="uenn_gaussian_sums")
  return jnp.transpose(out[:, :k, :b], (2, 0, 1))


def gaussian_sums_vjp(r: Array, ct: Array, r_s: Array, eta: Array, *, rows: int | None = None,
                      interpret: bool | None = None) -> tuple[Array, Array]:
  """The two contractions over the centres of the sums' gradient, in one kernel: with g = exp(-eta (r - r_s)^2),

      a[c, b, m] = sum_k ct[b, c, k] g[b, m, k]                          (dL/dwv)
      h[c, b, m] = sum_k ct[b, c, k] eta_k (r_s[k] - r[b, m]) g[b, m, k]  (dL/dr = 2 sum_c wv h)

  Args:
    r: `(b, m)` distances in A; ct: `(b, C, K)` the cotangent of `gaussian_sums`'s output; r_s, eta, rows,
      interpret: as in `gaussian_sums`.

  Returns:
    a, h: `(C, b, m)` each, in the dtype of r.
  """
  from jax.experimental import pallas as pl
  dtype = r.dtype
  (b, m), c, k = r.shape, ct.shape[1], r_s.shape[0]
  if MATERIALIZE:
    r = jax.lax.optimization_barrier(r)
  rows, pieces, kp, bp, r_t, r_s, eta = _layout(r, r_s, eta, rows)
  if m == 0 or b == 0:
    return jnp.zeros((c, b, m), dtype), jnp.zeros((c, b, m), dtype)
  # (C, kp, bp); the padded centres' cotangent is 0, so they add nothing
  ct_t = jnp.pad(jnp.transpose(ct.astype(dtype), (1, 2, 0)), ((0, 0), (0, kp - k), (0, bp - b)))

  def kernel(r_ref, ct_ref, rs_ref, eta_ref, a_ref, h_ref):
    centres = [(rs_ref[pl.ds(o, p)][:, None], eta_ref[pl.ds(o, p)][:, None],
                [ct_ref[x, pl.ds(o, p), :] for x in range(c)]) for o, p in pieces]

    def body(j, carry):
      rj = r_ref[pl.ds(j, 1), :]  # (1, rows)
      a = [jnp.zeros((1, rows), dtype) for _ in range(c)]
      h = [jnp.zeros((1, rows), dtype) for _ in range(c)]
      for rs, et, cts in centres:
        d = rs - rj  # (piece, rows)
        g = jnp.exp(-et * d * d)
        gd = et * d * g
        for x in range(c):
          a[x] = a[x] + jnp.sum(cts[x] * g, axis=0, keepdims=True)
          h[x] = h[x] + jnp.sum(cts[x] * gd, axis=0, keepdims=True)
      for x in range(c):
        a_ref[x, pl.ds(j, 1), :] = a[x]
        h_ref[x, pl.ds(j, 1), :] = h[x]
      return carry

    jax.lax.fori_loop(0, m, body, 0)

  a, h = _launch(kernel, (r_t, ct_t, r_s, eta), [r_t.shape, ct_t.shape, (kp,), (kp,)], [(c, m, bp)] * 2,
                 [(c, m, bp)] * 2, rows=rows, bp=bp, interpret=interpret, name="uenn_gaussian_sums_vjp")
  return jnp.swapaxes(a[:, :, :b], 1, 2), jnp.swapaxes(h[:, :, :b], 1, 2)

"""File formats, and nothing else: JSON, JSON lines, npz, checkpoints, extended XYZ; one atomic write.

Nothing here reads a pickle: arrays go to npz (read with `allow_pickle=False`) or flax msgpack, metadata to JSON.
Every write goes through `atomic_write` (a temporary file in the same folder, flushed and fsynced, then
`os.replace`), so a kill or a power loss mid-write leaves the previous file intact. Every error about a file
names the file.

    atomic_write(path, write)            write(f) fills a temporary binary file, then it replaces `path`
    write_json / read_json               results.json and model metadata (NumPy numbers become plain numbers)
    append_jsonl / read_jsonl            metrics.jsonl: one fsynced line per record; a torn last line is dropped
    save_npz / load_npz                  arrays only, never pickled objects
    save_checkpoint / load_checkpoint    a pytree of arrays as flax msgpack; the previous checkpoint is kept
                                         beside it and read when the latest cannot be
    write_extxyz / read_extxyz           trajectories and configurations for ASE and OVITO, with chemical symbols
"""

from __future__ import annotations

import io as _stdio
import json
import os
import warnings
import zipfile
from typing import Any, Callable

import numpy as np

from unitary_enn import checks


class FileFormatError(ValueError):
  """A file exists but cannot be read as what it should be (truncated, corrupted, or of another version)."""


def atomic_write(path: str, write: Callable[[Any], None], *, binary: bool = True) -> None:
  """Create or replace `path` atomically: `write(f)` fills a temporary file that then replaces `path`.

  The temporary file lives in the same folder (so the rename is atomic), is flushed and fsynced before the
  rename, and is removed if `write` raises.
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp.{os.getpid()}")
  try:
    with open(tmp, "wb" if binary else "w") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def check_writable(folder: str) -> None:
  """Raise PermissionError naming `folder` unless files can be created in it (it is made if missing)."""
  folder = os.path.abspath(os.fspath(folder))
  try:
    os.makedirs(folder, exist_ok=True)
    probe = os.path.join(folder, f".write_test.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise PermissionError(f"cannot write to the folder {folder!r} ({e.strerror or e}); choose another "
                          "--workdir") from None


def _json_default(o):
  if isinstance(o, np.ndarray) or hasattr(o, "__array__"):
    return np.asarray(o).tolist()
  if isinstance(o, np.generic):
    return o.item()
  raise TypeError(f"not JSON serializable: {type(o)}")


def to_json(obj: Any, indent: int | None = 2) -> str:
  """JSON text of `obj`; NumPy and JAX arrays and scalars become plain lists and numbers."""
  return json.dumps(obj, indent=indent, default=_json_default)


def write_json(path: str, obj: Any) -> None:
  """Write `obj` as JSON, atomically."""
  text = to_json(obj) + "\n"
  atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: str) -> Any:
  """Read a JSON file; a file that is not valid JSON gives a FileFormatError naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise FileFormatError(f"{path!r} is not valid JSON ({e}); the file is damaged: delete it or restore it") from None


def append_jsonl(path: str, record: dict) -> None:
  """Append one JSON line and fsync it, so that a record once logged survives a power loss."""
  line = json.dumps(record, default=_json_default) + "\n"
  with open(path, "a") as f:
    f.write(line)
    f.flush()
    os.fsync(f.fileno())


def read_jsonl(path: str, *, warn: Callable[[str], None] | None = None) -> list[dict]:
  """Records of a JSON-lines file ([] if it does not exist).

  A last line that does not parse (a write cut short by a kill or a full disk) is dropped with a warning; a bad
  line anywhere else means the file is damaged and gives a FileFormatError naming the file and the line.
  """
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().split("\n")
  records = []
  body = [(k, line) for k, line in enumerate(lines, 1) if line.strip()]
  for n, (k, line) in enumerate(body):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if n == len(body) - 1:
        msg = f"{path}: dropped a torn last line (line {k}: {line[:60]!r}), written by an interrupted run"
        (warn or (lambda m: warnings.warn(m, RuntimeWarning, stacklevel=3)))(msg)
        break
      raise FileFormatError(f"{path!r} line {k} is not valid JSON: {line[:80]!r}; the file is damaged") from None
  return records


def write_jsonl(path: str, records: list[dict]) -> None:
  """Replace a JSON-lines file by `records`, atomically."""
  text = "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
  atomic_write(path, lambda f: f.write(text.encode()))


def save_npz(path: str, **arrays) -> None:
  """Arrays (NumPy, JAX, or anything `np.asarray` takes without objects) to an npz file, atomically."""
  out = {}
  for name, a in arrays.items():
    a = np.asarray(a)
    if a.dtype == object:
      raise TypeError(f"save_npz: {name!r} is an object array; only numeric and string arrays are stored")
    out[name] = a
  def write(f):
    np.savez(f, **out)
  atomic_write(path, write)


def load_npz(path: str) -> dict[str, np.ndarray]:
  """All arrays of an npz file, read without unpickling; a damaged file gives a FileFormatError naming it."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"no such file: {path!r}")
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
    raise FileFormatError(f"{path!r} is not a readable npz file ({type(e).__name__}: {e}); it is truncated or "
                          "corrupted: delete it (a cache file is rebuilt on the next run)") from None


# --- Checkpoints: pytrees of arrays as flax msgpack, two generations kept ----------------------------------


def previous_path(path: str) -> str:
  """Where the checkpoint before `path` is kept."""
  root, ext = os.path.splitext(path)
  return f"{root}.previous{ext}"


def save_checkpoint(path: str, tree: Any) -> None:
  """Save a pytree (nested dicts and lists of arrays and numbers) as flax msgpack, atomically.

  The checkpoint it replaces is kept as `previous_path(path)`, so a file damaged after it was written (a bad
  disk, a copy cut short) still leaves the one before. Use `flax.serialization.to_state_dict` first for trees
  holding NamedTuples or dataclasses (optimizer states).
  """
  from flax import serialization
  data = serialization.msgpack_serialize(_to_numpy(tree))
  if os.path.exists(path):
    os.replace(path, previous_path(path))
  atomic_write(path, lambda f: f.write(data))


def load_checkpoint(path: str, *, log: Callable[[str], None] | None = None) -> Any | None:
  """The pytree saved by `save_checkpoint` at `path`, or None when neither it nor its previous exists.

  When the latest file cannot be read, the previous one is read instead (with a line to `log`); when neither
  can, a FileFormatError names both files and says to delete them.
  """
  from flax import serialization
  tried = []
  for p in (path, previous_path(path)):
    if not os.path.exists(p):
      continue
    try:
      with open(p, "rb") as f:
        tree = serialization.msgpack_restore(f.read())
      if not isinstance(tree, dict):
        raise ValueError("not a checkpoint dictionary")
      if tried and log is not None:
        log(f"the checkpoint {tried[0][0]!r} could not be read ({tried[0][1]}); resuming from the previous one, {p!r}")
      return tree
    except Exception as e:  # msgpack raises several unrelated types on damaged input
      tried.append((p, f"{type(e).__name__}: {e}"))
  if not tried:
    return None
  detail = "; ".join(f"{p!r}: {why}" for p, why in tried)
  raise FileFormatError(f"cannot read the checkpoint ({detail}); delete {' and '.join(repr(p) for p, _ in tried)} "
                        "to start this run afresh")


def _to_numpy(tree):
  """Dicts stay dicts, tuples and lists become lists, arrays NumPy arrays: what msgpack stores."""
  if isinstance(tree, dict):
    return {str(k): _to_numpy(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    if hasattr(tree, "_fields"):
      raise TypeError("save_checkpoint: convert NamedTuples with flax.serialization.to_state_dict first")
    return [_to_numpy(v) for v in tree]
  if hasattr(tree, "__array__") and not isinstance(tree, (str, bytes)):
    return np.asarray(tree)
  return tree


def package_versions() -> dict[str, str]:
  """Versions of the packages a result depends on, for results.json and model files."""
  import importlib.metadata as md
  import platform
  out = {"python": platform.python_version()}
  for name in ("unitary_enn", "jax", "jaxlib", "jax-md", "flax", "optax", "numpy", "ml-collections"):
    try:
      out[name] = md.version(name)
    except md.PackageNotFoundError:
      out[name] = "not installed"
  return out


# --- Extended XYZ ------------------------------------------------------------------------------------------


def write_extxyz(path: str, frames, *, steps=None, dt: float | None = None, symbol: str | list = "Ar",
                 cell: float | None = None, append: bool = False, precision: int = 8, pbc: bool = False) -> None:
  """Write frames as extended XYZ (ASE `ase.io.read(path, ":")`, OVITO), one frame after another.

  Each frame: the atom count, a comment line `Lattice="..." Properties=species:S:1:pos:R:3 step=K Time=T
  pbc="F F F"` and one line per atom `Ar x y z` (A). Free space: pbc is false; `cell` (a cubic side in A, for
  viewers) is written as the Lattice when given. A periodic cubic box: `cell` = its side and pbc=True.

  Args:
    path: file to write (atomically, unless `append`).  frames: `(F, N, 3)` or `(N, 3)` positions in A.
    steps: `(F,)` MD step of each frame (default 0, 1, ...).  dt: ps per step, for Time = step * dt (ps).
    symbol: chemical symbol of every atom, or one per atom (several species).  cell: optional cubic side in A.
    append: add to an existing file.  precision: decimals of the coordinates.
    pbc: periodic in all three directions (needs `cell`).
  """
  f = np.asarray(frames, np.float64)
  if f.ndim == 2:
    f = f[None]
  checks.check_shape("frames", f, (None, None, 3))
  checks.check_finite("frames", f)
  steps = np.arange(len(f)) if steps is None else np.asarray(steps)
  if steps.shape != (len(f),):
    raise ValueError(f"steps has shape {steps.shape}, expected ({len(f)},)")
  symbols = [symbol] * f.shape[1] if isinstance(symbol, str) else [str(s) for s in symbol]
  if len(symbols) != f.shape[1]:
    raise ValueError(f"symbol lists {len(symbols)} atoms, the frames hold {f.shape[1]}")
  if not all(s and s.isalpha() for s in symbols):
    raise ValueError("symbol must hold chemical symbols (letters only, no spaces)")
  if pbc and cell is None:
    raise ValueError("pbc=True needs the periodic box side `cell`")
  lattice = f'Lattice="{cell:.10g} 0 0 0 {cell:.10g} 0 0 0 {cell:.10g}" ' if cell is not None else ""
  pbc_txt = "T T T" if pbc else "F F F"
  buf = _stdio.StringIO()
  for frame, step in zip(f, steps):
    time_txt = f" Time={float(step) * dt:.6f}" if dt is not None else ""
    buf.write(f"{len(frame)}\n{lattice}Properties=species:S:1:pos:R:3 step={int(step)}{time_txt} "
              f'pbc="{pbc_txt}"\n')
    for s, (x, y, z) in zip(symbols, frame):
      buf.write(f"{s} {x:.{precision}f} {y:.{precision}f} {z:.{precision}f}\n")
  text = buf.getvalue()
  if append:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as fh:
      fh.write(text)
  else:
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _extxyz_comment(line: str) -> dict[str, str]:
  """key=value pairs of an extended XYZ comment line; values may be "quoted" (with spaces inside)."""
  out, i, n = {}, 0, len(line)
  while i < n:
    while i < n and line[i].isspace():
      i += 1
    j = i
    while j < n and line[j] not in "= \t":
      j += 1
    key = line[i:j]
    if not key:
      break
    if j < n and line[j] == "=":
      j += 1
      if j < n and line[j] in "\"'":
        q = line[j]
        k = line.index(q, j + 1) if q in line[j + 1:] else n
        out[key] = line[j + 1:k]
        i = k + 1
      else:
        k = j
        while k < n and not line[k].isspace():
          k += 1
        out[key] = line[j:k]
        i = k
    else:
      out[key] = "T"
      i = j
  return out


def read_extxyz(path: str) -> list[dict]:
  """Read an extended XYZ file (this package's `write_extxyz`, ASE's `ase.io.write(..., format="extxyz")`).

  Every per-atom column of `Properties` is read (S: strings, R: floats, I: integers, L: booleans); `species` and
  `pos` must be there.

  Returns:
    One dict per frame: symbols (list of N chemical symbols), positions `(N, 3)` float64 A, cell `(3, 3)` A or
    None, pbc `(3,)` bool, properties (name -> array of the other per-atom columns, e.g. "forces" `(N, 3)`), info
    (the other comment-line values as strings).
  Raises:
    files.FileFormatError: naming the file and line when the text is not extended XYZ.
  """
  with open(path) as fh:
    lines = fh.read().splitlines()
  frames, i = [], 0
  kinds = {"S": str, "R": float, "I": int, "L": lambda v: v in ("T", "True", "true", "1")}
  while i < len(lines):
    if not lines[i].strip():
      i += 1
      continue
    try:
      n = int(lines[i].strip())
    except ValueError:
      raise FileFormatError(f"{path!r} line {i + 1}: expected an atom count, got {lines[i]!r}") from None
    if i + 2 + n > len(lines):
      raise FileFormatError(f"{path!r} line {i + 1}: a frame of {n} atoms is cut short")
    comment = _extxyz_comment(lines[i + 1])
    spec = comment.pop("Properties", "species:S:1:pos:R:3").split(":")
    if len(spec) % 3:
      raise FileFormatError(f"{path!r} line {i + 2}: bad Properties {':'.join(spec)!r}")
    columns = [(spec[k], spec[k + 1], int(spec[k + 2])) for k in range(0, len(spec), 3)]
    if {"species", "pos"} - {c[0] for c in columns}:
      raise FileFormatError(f"{path!r} line {i + 2}: Properties must include species and pos")
    rows = [lines[i + 2 + a].split() for a in range(n)]
    width = sum(c[2] for c in columns)
    if any(len(r) != width for r in rows):
      raise FileFormatError(f"{path!r}: frame at line {i + 1} has rows of the wrong width (expected {width})")
    props, col = {}, 0
    for name, kind, count in columns:
      if kind not in kinds:
        raise FileFormatError(f"{path!r} line {i + 2}: unknown column type {kind!r} of {name!r}")
      values = [[kinds[kind](r[col + c]) for c in range(count)] for r in rows]
      arr = np.asarray(values, dtype=object if kind == "S" else None)
      props[name] = arr[:, 0] if count == 1 else arr
      col += count
    cell = None
    if "Lattice" in comment:
      cell = np.asarray([float(v) for v in comment.pop("Lattice").split()], np.float64).reshape(3, 3)
    pbc_txt = comment.pop("pbc", "F F F").split()
    frames.append(dict(symbols=[str(s) for s in props.pop("species")],
                       positions=np.asarray(props.pop("pos"), np.float64), cell=cell,
                       pbc=np.asarray([v in ("T", "True", "true", "1") for v in pbc_txt]),
                       properties=props, info=comment))
    i += 2 + n
  return frames

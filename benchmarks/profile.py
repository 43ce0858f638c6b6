"""Where a compiled function's time goes, op by op, from jax's profiler: what a GPU lease brings back small.

    from benchmarks import profile
    rows = profile.profile_ops(lambda: f(x).block_until_ready(), compiled_text=f.lower(x).compile().as_text())

`jax.profiler.trace(..., create_perfetto_trace=True)` writes a Chrome-trace JSON beside its protobuf; it holds
one event per XLA op run: per kernel on a GPU's device timeline (where the profiler can read the GPU's activity),
per thunk on the CPU's threads. The ops' self times (an op's time less that of the ops inside it, such as the
body of a while loop on the CPU) are summed by op, and each op is named by the jax operation it came from
(`op_name` and source line in the compiled HLO's metadata), so that a few lines say where the time goes without
the trace itself (hundreds of MB at 1M atoms) leaving the machine. `benchmarks.md_throughput --profile` prints
them for one chunk of MD steps of each driver.

On a GPU, XLA runs most of a step's kernels inside command buffers (CUDA graphs), which the trace shows as one
event each with only part of their time (lease 5 on the H200: 12 of a 67 ms step); run the profiled process with
`XLA_FLAGS=--xla_gpu_enable_command_buffer=` (empty: none) to see each kernel.

"device" in the result means the times are the GPU's own kernel times; "host" on a GPU means the profiler saw
no device timeline (no CUPTI), and the host's op events then time launches, not kernels.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile
from typing import Callable

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?metadata=\{([^}]*)\}")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def op_names(compiled_text: str) -> dict:
  """hlo op name -> its metadata (`op_name`, `source_file`, `source_line`), from compiled HLO text
  (`jax.jit(f).lower(...).compile().as_text()`)."""
  names = {}
  for line in compiled_text.splitlines():
    m = _INSTRUCTION.match(line)
    if m:
      names[m.group(1)] = {k: v.strip('"') for k, v in _FIELD.findall(m.group(2))}
  return names


def _events(trace_dir: str) -> list:
  paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
  if not paths:
    raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}: the profiler wrote no trace")
  with gzip.open(max(paths, key=os.path.getmtime)) as f:
    data = json.load(f)
  return data["traceEvents"] if isinstance(data, dict) else data


def op_self_times(events: list) -> tuple[dict, str]:
  """(op -> total self time in seconds, where) over the XLA op events of a Chrome trace.

  Where the trace has device processes (a GPU's timeline), their events count, by their `hlo_op` argument or
  else their name ("device"), each its whole duration: kernels do not nest, and where they overlap (a kernel
  launched before the previous one ends, XLA's programmatic dependent launch on Hopper) subtracting them would
  take one kernel's time from the other (lease 6 on the H200). Else the host's events with an `hlo_op` argument
  ("host"), whose self time is an op's duration less that of the events nested in it on the same thread (a
  while loop's body)."""
  processes = {e["pid"]: e.get("args", {}).get("name", "") for e in events
               if e.get("ph") == "M" and e.get("name") == "process_name"}
  device = {pid for pid, name in processes.items() if "/device:" in name}
  ops = [e for e in events if e.get("ph") == "X" and e["pid"] in device]  # kernels, by their op where named
  where = "device"
  if not ops:
    ops = [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]
    where = "host"
  totals = collections.defaultdict(float)
  if where == "device":
    for e in ops:
      totals[e.get("args", {}).get("hlo_op", e["name"])] += float(e.get("dur", 0.0)) * 1e-6
    return dict(totals), where
  by_thread = collections.defaultdict(list)
  for e in ops:
    by_thread[(e["pid"], e.get("tid"))].append(e)
  for thread in by_thread.values():
    thread.sort(key=lambda e: (float(e["ts"]), -float(e.get("dur", 0.0))))
    stack = []  # [end, op, self time in us] of the enclosing ops
    for e in thread:
      start, dur = float(e["ts"]), float(e.get("dur", 0.0))
      while stack and stack[-1][0] <= start:
        _, op, self_us = stack.pop()
        totals[op] += self_us * 1e-6
      if stack:
        stack[-1][2] -= dur
      stack.append([start + dur, e.get("args", {}).get("hlo_op", e["name"]), dur])
    for _, op, self_us in stack:
      totals[op] += self_us * 1e-6
  return dict(totals), where


def profile_ops(run: Callable[[], object], *, compiled_text: str = "", per: int = 1, top: int = 15,
                trace_dir: str | None = None) -> dict:
  """Run `run()` once under jax's profiler; its ops' self times divided by `per` (e.g. the steps of a chunk).

  Returns:
    dict(where="device" | "host", total_s: all ops' self time per `per`, ops: the `top` ops by time, each
    dict(op, seconds, share, op_name, source)).
  """
  import jax
  with tempfile.TemporaryDirectory() as tmp:
    directory = trace_dir or tmp
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      run()
    totals, where = op_self_times(_events(directory))
  names = op_names(compiled_text) if compiled_text else {}
  total = sum(totals.values())
  rows = []
  for op, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
    meta = names.get(op, {})
    source = f"{os.path.basename(meta['source_file'])}:{meta.get('source_line', '?')}" if "source_file" in meta else ""
    rows.append(dict(op=op, seconds=seconds / per, share=seconds / total if total else 0.0,
                     op_name=meta.get("op_name", ""), source=source))
  return dict(where=where, total_s=total / per, ops=rows)


def format_ops(profile: dict, indent: str = "  ") -> str:
  """The rows of `profile_ops` as lines: ms, share, op, jax op name and source line."""
  lines = [f"{indent}{profile['where']} ops: {profile['total_s'] * 1e3:.3f} ms in all"]
  if any(r["op"].startswith("command_buffer") for r in profile["ops"]):
    lines.append(f"{indent}(command buffers hide their kernels and part of their time: rerun with "
                 "XLA_FLAGS=--xla_gpu_enable_command_buffer=)")
  for r in profile["ops"]:
    lines.append(f"{indent}{r['seconds'] * 1e3:9.3f} ms {r['share']:6.1%}  {r['op'][:40]:40s} "
                 f"{r['op_name'][-90:]} {r['source']}")
  return "\n".join(lines)

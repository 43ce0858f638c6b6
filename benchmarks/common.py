"""What every benchmark shares: the machine description, repeated timing and the JSON record.

Every benchmark is one command that writes one JSON file (default `benchmarks/results/NAME.json`) holding the
machine, the package versions, the command line and the figures. Timings are medians of repeated runs after a
warm-up (compilation excluded); ratios are taken within one run, because these machines are shared and noisy.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from typing import Callable

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict:
  """CPU model and count, memory, JAX backend and devices, load average at the start."""
  import jax
  info = dict(platform=platform.platform(), python=platform.python_version(), cpu_count=os.cpu_count(),
              jax_backend=jax.default_backend(), devices=[d.device_kind for d in jax.devices()])
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    info["cpu"] = names[0] if names else platform.processor()
  except OSError:
    info["cpu"] = platform.processor()
  try:
    with open("/proc/meminfo") as f:
      info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
  except (OSError, ValueError, IndexError):
    pass
  if hasattr(os, "getloadavg"):
    info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
  if hasattr(os, "sched_getaffinity"):
    info["cpus_usable"] = len(os.sched_getaffinity(0))
  return info


def time_fn(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.2) -> dict:
  """Median seconds per call of `fn` (which must block until its result is ready), after one warm-up call.

  Each repeat loops the call until `min_time` seconds have passed; the median over repeats and the spread
  (min, max) are returned.
  """
  fn()  # compile and warm up
  times = []
  for _ in range(repeats):
    n, t0 = 0, time.perf_counter()
    while True:
      fn()
      n += 1
      dt = time.perf_counter() - t0
      if dt >= min_time:
        break
    times.append(dt / n)
  return dict(median_s=statistics.median(times), min_s=min(times), max_s=max(times), repeats=repeats)


def kernel_knobs(stack, **knobs) -> None:
  """Enter patches of `unitary_enn.kernels`' module constants (`ROWS`, `NUM_STAGES`, `NUM_WARPS`, `COLUMNS`,
  `MATERIALIZE`) and `unitary_enn.layers`' forms (`UNROLL_NORMS`, `ONE_PRODUCT`) on a `contextlib.ExitStack`; a
  None or 0 leaves the constant as it is. The code reads them where it is traced, so a function traced inside the
  stack runs under them."""
  from unittest import mock

  from unitary_enn import kernels, layers
  for name, value in knobs.items():
    if value:
      module = layers if hasattr(layers, name) else kernels
      stack.enter_context(mock.patch.object(module, name, value))


def write_result(name: str, record: dict, out: str | None = None) -> str:
  """Write `record` with the machine, versions and command line to `out` (default results/NAME.json)."""
  from unitary_enn import files
  path = out or os.path.join(RESULTS_DIR, f"{name}.json")
  full = dict(benchmark=name, command=" ".join(["python -m benchmarks." + name] + sys.argv[1:]),
              date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), machine=machine(), versions=files.package_versions())
  full.update(record)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  files.write_json(path, full)
  print(f"{name}: wrote {path}", flush=True)
  return path


def fit_exponent(sizes, times) -> float:
  """Least-squares slope of log(time) against log(size): cost ~ size^exponent."""
  import numpy as np
  if len(sizes) < 2:
    raise ValueError("need at least two sizes to fit a scaling exponent")
  return float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float)), 1)[0])

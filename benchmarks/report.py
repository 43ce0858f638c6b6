r"""Print the Markdown tables of benchmarks/RESULTS.md from the JSON files in benchmarks/results/.

  python -m benchmarks.report                      # all files in benchmarks/results/
  python -m benchmarks.report path/to/one.json     # some files
  python -m benchmarks.report path/to/ab_dir/      # the before/after table of benchmarks/ab_md_throughput.sh

Each table row names the command that wrote it, so every figure in RESULTS.md can be traced and re-measured.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys

from benchmarks.common import RESULTS_DIR


def _machine(d: dict) -> str:
  m = d["machine"]
  return f"{m.get('cpu', '?')}, {m.get('cpus_usable', m.get('cpu_count'))} core(s) used, {m['jax_backend']}"


def md_table(d: dict) -> str:
  lines = [f"`{d['command']}` ({d['date']}; {_machine(d)}; MD {d['dtype']}, network {d['network_dtype']}, "
           f"descriptor sums in the {d['descriptor_dtype']} dtype, {d['format']} neighbor list, "
           f"skin {d['dr_threshold']} A, capacity x{d['capacity_multiplier']})", "",
           "| atoms | lj/cut ms/step | lj/cut atom-steps/s | network ms/step | network atom-steps/s | network / lj/cut "
           "| pairs listed per atom | network GFLOP/s | roofline fraction |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in d["sizes"]:
    lj, net = r.get("lj_cut"), r.get("network")
    row = [f"{r['n_atoms']:,}"]
    row += [f"{lj['s_per_step'] * 1e3:.1f}", f"{lj['atom_steps_per_s']:,.0f}"] if lj else ["-", "-"]
    if net:
      row += [f"{net['s_per_step'] * 1e3:.1f}", f"{net['atom_steps_per_s']:,.0f}",
              f"{r['network_cost_over_lj_cut']:.2f}" if lj else "-", f"{net['listed_pairs_per_atom']:.0f}",
              f"{net['achieved_flops_per_s'] / 1e9:.1f}", f"{net['roofline_fraction']:.3f}"]
    else:
      row += ["-"] * 6
    lines.append("| " + " | ".join(row) + " |")
  if "scaling_exponent" in d:
    lines += ["", "Fitted exponent of time per step vs atoms: " +
              ", ".join(f"{k} {v:.3f}" for k, v in d["scaling_exponent"].items()) +
              f". Dense matmul in the same run: {d['matmul']['flops_per_s'] / 1e9:.1f} GFLOP/s."]
  return "\n".join(lines)


def training_table(d: dict) -> str:
  lines = [f"`{d['command']}` ({d['date']}; {_machine(d)})", "",
           "| network | dtype | batch | ms/step | samples (atoms) per s |", "|---|---|---|---|---|"]
  for r in d["results"]:
    batch = f"{r['batch']:,}"
    if r.get("full_batch"):
      batch += " full-batch FIRE, " + ("one call" if not r.get("microbatch") else f"chunks of {r['microbatch']}")
    lines.append(f"| {r['network']} | {r['dtype']} | {batch} | {r['s_per_step'] * 1e3:.2f} | "
                 f"{r['samples_per_s']:,.0f} |")
  return "\n".join(lines)


def tta_table(d: dict) -> str:
  lines = [f"`{d['command']}` ({d['date']}; {_machine(d)})", "",
           "| threshold (eV/A) | steps | wall s | test RMSE there |", "|---|---|---|---|"]
  for thr, hit in d["test"].items():
    lines.append(f"| {thr} | {hit['steps']:,} | {hit['wall_s']:.0f} | {hit['force_rmse']:.5f} |" if hit else
                 f"| {thr} | not reached | | |")
  f = d["final"]
  lines += ["", f"Final: step {f['steps']:,}, {f['wall_s']:.0f} s, test RMSE {f['test_force_rmse']:.5f} eV/A "
            f"(validation {f['validation_force_rmse']:.5f}); optimizer {d['optimizer']}, "
            f"{d['samples_per_step']:,} samples per step."]
  return "\n".join(lines)


def ab_table(directory: str, reference: str | None = None) -> str:
  """Network MD atom-steps/s per side and round from `ab_md_throughput.sh`'s `<label>_r<round>.json` files, the
  median over rounds, and each side's ratio of medians to `reference` (default: the side that ran first, which
  is the first commit given to the script)."""
  runs: dict[str, dict[int, dict[int, float]]] = {}  # label -> atoms -> round -> atom-steps/s
  first: dict[str, str] = {}  # label -> date of its earliest run
  for path in sorted(glob.glob(os.path.join(directory, "*_r*.json"))):
    label, _, rnd = os.path.basename(path)[:-len(".json")].rpartition("_r")
    with open(path) as f:
      d = json.load(f)
    first[label] = min(first.get(label, d["date"]), d["date"])
    for r in d["sizes"]:
      runs.setdefault(label, {}).setdefault(r["n_atoms"], {})[int(rnd)] = r["network"]["atom_steps_per_s"]
  if not runs:
    raise FileNotFoundError(f"no <label>_r<round>.json files in {directory}")
  labels = sorted(runs, key=lambda k: first[k])
  reference = reference or labels[0]
  median = {k: {n: statistics.median(v.values()) for n, v in runs[k].items()} for k in labels}
  lines = ["| atoms | " + " | ".join(f"{k}: rounds | {k}: median" for k in labels) + " | " +
           " | ".join(f"{k} / {reference}" for k in labels if k != reference) + " |",
           "|---|" + "---|---|" * len(labels) + "---|" * (len(labels) - 1)]
  for n in sorted(runs[reference]):
    row = [f"{n:,}"]
    for k in labels:
      row += [" / ".join(f"{runs[k][n][r]:,.0f}" for r in sorted(runs[k][n])), f"{median[k][n]:,.0f}"]
    row += [f"{median[k][n] / median[reference][n]:.2f}" for k in labels if k != reference]
    lines.append("| " + " | ".join(row) + " |")
  return "\n".join(lines)


def main(paths: list[str]) -> None:
  paths = paths or sorted(glob.glob(os.path.join(RESULTS_DIR, "*.json")))
  for path in paths:
    if os.path.isdir(path):
      print(f"### {path} (network atom-steps/s)\n\n{ab_table(path)}\n")
      continue
    with open(path) as f:
      d = json.load(f)
    table = {"md_throughput": md_table, "training_throughput": training_table,
             "time_to_accuracy": tta_table}[d["benchmark"]](d)
    print(f"### {os.path.basename(path)}\n\n{table}\n")


if __name__ == "__main__":
  main(sys.argv[1:])

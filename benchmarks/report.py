r"""Print the Markdown tables of benchmarks/RESULTS.md from the JSON files in benchmarks/results/.

  python -m benchmarks.report                      # all files in benchmarks/results/
  python -m benchmarks.report path/to/one.json     # some files

Each table row names the command that wrote it, so every figure in RESULTS.md can be traced and re-measured.
"""

from __future__ import annotations

import glob
import json
import os
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


def main(paths: list[str]) -> None:
  paths = paths or sorted(glob.glob(os.path.join(RESULTS_DIR, "*.json")))
  for path in paths:
    with open(path) as f:
      d = json.load(f)
    table = {"md_throughput": md_table, "training_throughput": training_table,
             "time_to_accuracy": tta_table}[d["benchmark"]](d)
    print(f"### {os.path.basename(path)}\n\n{table}\n")


if __name__ == "__main__":
  main(sys.argv[1:])

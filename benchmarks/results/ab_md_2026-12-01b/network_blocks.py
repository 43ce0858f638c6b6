"""Network MD at network blocks of 2^17..2^21 numbers (`network.NETWORK_CPU_BUDGET` is 2^20), alternating in one
process, two rounds (log: network_blocks.log):

  PYTHONPATH=. python benchmarks/results/ab_md_2026-12-01b/network_blocks.py 10,20
"""
import functools
import sys

from absl import flags

from benchmarks import md_throughput as mt
from unitary_enn import models, neighbors

mt.define_flags()
flags.FLAGS(["x"])
model = mt.random_model("float32")
fmt = neighbors.neighbor_format("dense")
for cells in [int(c) for c in sys.argv[1].split(",")]:
  pos, box = mt.fcc_state(cells, "float32", 300.0)
  for rnd in range(2):
    for budget in (17, 18, 19, 20, 21):
      nb = 2 ** budget // 600
      b = functools.partial(models.many_body_force_fn, model, network_block=nb)
      r = mt.time_md(b, pos, box, steps=5, repeats=3, fmt=fmt, dr_threshold=1.0, capacity_multiplier=1.25,
                     temperature=300.0, profile_top=0)
      print(f"{len(pos):,} atoms round {rnd}: budget 2^{budget} ({nb} atoms/block): {r['s_per_step'] * 1e3:.1f} "
            f"ms/step, {len(pos) / r['s_per_step']:,.0f} atom-steps/s", flush=True)

"""Time the widget's longest sweep: neurons on the demo model with the widget's demo prompts.

Also times one unpatched forward pass over 768 rows (24 x the 32 pairs, all 15 positions), to
show how loaded the machine is: the sweep's unpatched floor is 32 such passes.
Run: python benchmarks/bench_demo_neurons.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import patchwidget as pw
from patchwidget.demo import demo_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    exp = pw.Experiment(pw.demo_model(), **demo_prompts("flip_s2"))
    rows = exp._clean_ids.repeat(24, 1)

    def forward() -> float:
        with torch.no_grad():
            start = time.perf_counter()
            exp._hf(rows, use_cache=False)
            return time.perf_counter() - start

    def sweep() -> float:
        start = time.perf_counter()
        exp.sweep("neuron", progress=False)
        return time.perf_counter() - start

    first = sweep()  # includes capturing sources and timing the cost model
    sweeps, forwards = [], []
    for _ in range(args.repeats):
        forwards.append(forward())
        sweeps.append(sweep())
    ratio = statistics.median(sweeps) / statistics.median(forwards)
    print(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "first_sweep_s": round(first, 2),
                "sweep_s": [round(t, 2) for t in sweeps],
                "median_sweep_s": round(statistics.median(sweeps), 2),
                "forward_768_rows_s": [round(t, 3) for t in forwards],
                "sweep_per_forward": round(ratio, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

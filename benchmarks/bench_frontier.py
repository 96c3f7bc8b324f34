"""The frontier's cost: one configuration x one attack x every input defense family on MNIST LeNet.

    python benchmarks/bench_frontier.py [--out frontier-bench] [--trials 4] [--steps 600]

Runs ``secsplit frontier`` on the embedded MNIST sample (5,000 images), LeNet cut after relu1, vanilla,
3 epochs, batch 64, seed 0, against white-box inversion, over the families noise, nopeek, mid and
attacker-aware, and prints the wall time, the process's CPU time, the load average, the trainings and
the points per family. The issue's budget: <= 20 minutes on 2 CPU cores.

Attack settings for frontier points: 600 Adam steps from one start on 16 targets (``steps=600,
restarts=1,max_targets=16``) instead of the attack's defaults (3,000 steps x 3 restarts x 32 targets,
~15x the work). On the undefended model it reaches the published strength (relu1 SSIM 0.993 after
200 steps and 1.000 after 600, seed 0); the ``--steps`` option and the attack's own tuning
(``tune = true``) are there for a final, stronger check of the point a frontier picks.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from secsplit.description import RunDescription  # noqa: F401  (imported early: the timing excludes imports)
from secsplit.evaluation.frontier import build_frontier_config, run_frontier


def config(trials: int, steps: int, seeds: list[int]) -> dict:
    return {"data": "mnist", "model": "lenet", "cuts": ["relu1"], "epochs": 3, "batch_size": 64,
            "attacks": [f"whitebox-inversion:steps={steps},restarts=1,max_targets=16"],
            "frontier": {"budget": 0.01, "trials": trials, "seeds": seeds,
                         "families": ["noise", "nopeek", "mid", "attacker-aware"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="frontier-bench")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    start, cpu = time.perf_counter(), time.process_time()
    summary = run_frontier(build_frontier_config(config(args.trials, args.steps, args.seeds), origin="bench-frontier"),
                           args.out, quiet=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    with open(os.path.join(args.out, "frontier.md")) as handle:
        print(handle.read())
    print(json.dumps({"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "trainings": summary["trainings"],
                      "reused": summary["reused"], "points_per_family": summary["points_per_family"],
                      "load_average_before": load_before, "load_average_after": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()

"""secsplit's torch distance correlation vs ``dcor.distance_correlation``: same value, time ratio.

Biased (V-statistic) dCor of n=512 samples of 784-d inputs and 400-d activations, the size NoPeek
and the audit compute per batch. Both run on the same float64 data, alternating call by call in a
seeded random order so machine noise hits both alike; the ratio of median times is reported.
One torch thread by default, as in bench_split_overhead.py: on a shared machine more threads can
make torch slower, not faster (every parallel op waits for a descheduled worker). Run:
``python benchmarks/bench_dcor.py [--n 512] [--repeats 15] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import dcor
import numpy as np
import torch

from secsplit.stats import distance_correlation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.random((args.n, 784))
    z = np.tanh(x @ rng.normal(size=(784, 400)) / 28) + 0.5 * rng.normal(size=(args.n, 400))
    xt, zt = torch.from_numpy(x), torch.from_numpy(z)

    candidates = {
        "torch": lambda: distance_correlation(xt, zt).item(),
        "dcor": lambda: float(dcor.distance_correlation(x, z)),
    }
    values = {name: fn() for name, fn in candidates.items()}  # warm-up (and dcor's compilation)
    times = {name: [] for name in candidates}
    coin = random.Random(0)
    for _ in range(args.repeats):
        order = list(candidates)
        coin.shuffle(order)
        for name in order:
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)

    median_ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "n": args.n, "dims": [784, 400], "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "dcor_value": values["dcor"], "torch_value": values["torch"],
        "abs_difference": abs(values["dcor"] - values["torch"]),
        "median_ms": {k: round(v, 2) for k, v in median_ms.items()},
        "speedup_torch_over_dcor": round(median_ms["dcor"] / median_ms["torch"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()

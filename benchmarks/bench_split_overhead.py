"""Split step time / monolithic step time for the same model and batch, measured side by side.

Both loops train LeNet on MNIST-shaped batches of 64 with Adam; they alternate in rounds so machine
noise hits both alike, and the ratio of medians is reported. Run: ``make bench`` or
``python benchmarks/bench_split_overhead.py [--rounds N] [--steps N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    xs = torch.rand(args.steps, args.batch_size, 1, 28, 28)
    ys = torch.randint(0, 10, (args.steps, args.batch_size))
    spec = OptimizerSpec("adam", lr=1e-3)

    mono = create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=0)
    mono_opt = spec.build(mono.parameters())

    def monolithic_round() -> float:
        start = time.perf_counter()
        for x, y in zip(xs, ys):
            mono_opt.zero_grad(set_to_none=True)
            F.cross_entropy(mono(x), y).backward()
            mono_opt.step()
        return time.perf_counter() - start

    results = {}
    for topology, cuts in [("vanilla", ["pool1"]), ("ushape", ["pool1", "relu4"])]:
        topo = build_topology(topology, copy.deepcopy(mono), cuts=cuts, optimizer=spec)

        def split_round() -> float:
            start = time.perf_counter()
            for step, (x, y) in enumerate(zip(xs, ys)):
                topo.train_step(x, y, step=step)
            return time.perf_counter() - start

        monolithic_round(), split_round()  # warm-up
        mono_times, split_times = [], []
        for _ in range(args.rounds):
            mono_times.append(monolithic_round())
            split_times.append(split_round())
        m, s = statistics.median(mono_times), statistics.median(split_times)
        results[topology] = {
            "monolithic_ms_per_step": 1e3 * m / args.steps,
            "split_ms_per_step": 1e3 * s / args.steps,
            "ratio": s / m,
        }
    print(json.dumps({"batch_size": args.batch_size, "threads": args.threads, "torch": torch.__version__, **results}, indent=2))


if __name__ == "__main__":
    main()

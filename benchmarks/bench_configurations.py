"""Every registered split-learning configuration on the same data: accuracy, client cost, wall time.

Digits (1,797 8x8 images), the mlp model, Adam lr 1e-3, batch 32, seed 0, one torch thread; each
topology with its default cuts and options (many clients: 10; vertical: 2 views; multi-task:
class + parity). Client FLOPs and bytes are those of all data-owning clients together (training
phase); wall time is the Trainer's, evaluation included.

Run: ``python benchmarks/bench_configurations.py [--epochs N] [--clients K]``.
"""

from __future__ import annotations

import argparse

import torch

from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import TOPOLOGIES, build_topology
from secsplit.training import Trainer


def options(name: str, clients: int) -> dict:
    if name.startswith("vertical"):
        return {"model_name": "mlp"}
    if name.startswith(("relay", "splitfed")):
        return {"clients": clients}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("digits", seed=0)
    print(f"digits, mlp, {args.epochs} epochs, batch 32, Adam lr 1e-3, seed 0\n")
    print("| topology | test accuracy | client train GFLOPs | client MB sent / received | all parties MB | wall s |")
    print("|---|---|---|---|---|---|")
    for name in TOPOLOGIES.names():
        model = create_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, seed=0)
        topology = build_topology(name, model, optimizer=OptimizerSpec("adam", lr=1e-3), **options(name, args.clients))
        report = Trainer(topology, epochs=args.epochs, batch_size=32, seed=0, progress=False).fit(data)
        s = report.summary
        extra = "".join(f", {k[len('test_task_'):-len('_accuracy')]} {v:.3f}" for k, v in report.history[-1].items()
                        if k.startswith("test_task_") and k.endswith("_accuracy") and not k.startswith("test_task_class"))
        print(f"| {name} | {s['test_accuracy']:.3f}{extra} | {s['client_train_flops'] / 1e9:.3f} | "
              f"{s['client_bytes_sent'] / 1e6:.2f} / {s['client_bytes_received'] / 1e6:.2f} | "
              f"{s['traffic']['total_bytes'] / 1e6:.2f} | {s['wall_time_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""Direct label scoring (``direct-label``) on digits and MNIST with LeNet, by seat and cut.

Configurations (Adam lr 1e-3, batch 64, ``--epochs`` epochs, seeds ``--seeds``):

- vanilla, labels at the server (``label_source="label_owner"``), client seat, cut relu4: the
  server's segment is the linear classifier alone (the attack's exact regime);
- vanilla, client seat, default cut pool1: a deep server segment (conv2 ... fc3);
- U-shape (default cuts pool1, relu4), server seat: the client's tail is the classifier.

Printed per configuration: label accuracy on the first and the last epoch's training samples
(known samples, 5 per class, excluded), the majority-class chance level and the share of the
gradients' energy in the (k-1)-dimensional subspace, as mean +- sd over seeds.
Run: ``python benchmarks/bench_direct_label.py [--seeds 0 1 2] [--epochs 5]``.
"""

from __future__ import annotations

import numpy as np
from attack_bench import arguments, fmt, header, over_seeds, parse, row
from secsplit.attacks import create_attack

from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer

CONFIGS = (("vanilla", ["relu4"], "client"), ("vanilla", None, "client"), ("ushape", None, "server"))


def run(dataset_name: str, topology_name: str, cuts, attacker: str, seed: int, epochs: int) -> dict:
    data = load_dataset(dataset_name, seed=seed)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)
    extra = {"label_source": "label_owner"} if topology_name == "vanilla" else {}
    topology = build_topology(topology_name, model, cuts=cuts, optimizer=OptimizerSpec("adam", lr=1e-3), **extra)
    attack = create_attack("direct-label", seed=seed, attacker=attacker)
    attack.check_applicable(topology, data)
    report = Trainer(topology, epochs=epochs, batch_size=64, seed=seed, callbacks=[attack]).fit(data)
    first, last = attack.per_epoch[0], attack.per_epoch[-1]
    return {"first": first["accuracy"], "last": last["accuracy"], "chance": last["chance_accuracy"],
            "explained": last.get("explained_variance", 1.0), "cuts": ",".join(topology.cuts),
            "test_accuracy": report.history[-1]["test_accuracy"]}


def main() -> None:
    parser = arguments(__doc__, epochs=5)
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist"])
    args = parse(parser)
    header("data set", "topology (cuts), seat", "label acc. epoch 1", "label acc. last epoch", "chance", "energy in subspace",
           "model test acc.")
    for dataset_name in args.datasets:
        for topology_name, cuts, attacker in CONFIGS:
            col = over_seeds(run, args.seeds, dataset_name, topology_name, cuts, attacker, epochs=args.epochs)
            row(dataset_name, f"{topology_name} ({col['cuts'][0]}), {attacker}", fmt(col["first"]), fmt(col["last"]),
                f"{np.mean(col['chance']):.3f}", fmt(col["explained"]), fmt(col["test_accuracy"]))


if __name__ == "__main__":
    main()

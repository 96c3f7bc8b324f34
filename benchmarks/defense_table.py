"""Each defense at two strengths on MNIST: test accuracy, dCor(X, Z) of what leaves the client, epsilon.

Trains UnSplit's LeNet (vanilla split, or U-shape for the ``ushape`` entry) for a few epochs per row
and measures the distance correlation between 512 held-out images and their released cut-layer
outputs (after the defense's transformation, i.e. what the server actually receives) with both
estimators. Prints a Markdown table. Run: ``python benchmarks/defense_table.py [--epochs 5]``.
"""

from __future__ import annotations

import argparse

import torch

from secsplit.data import load_dataset
from secsplit.defenses import DEFENSES, defense_from_spec
from secsplit.models import create_model
from secsplit.stats import distance_correlation
from secsplit.topologies import build_topology
from secsplit.training import Trainer

ROWS = [
    "none",
    # clip near the released activations' median norm after training (pool2: L1 ~400, L2 ~32)
    "noise:mech=laplace,clip=400,scale=1", "noise:mech=laplace,clip=400,scale=4",
    "noise:mech=gaussian,clip=32,scale=0.5", "noise:mech=gaussian,clip=32,scale=2",
    "nopeek:alpha=0.1", "nopeek:alpha=0.5", "nopeek:alpha=1", "nopeek:alpha=3",
    "dpsgd:noise_multiplier=0.5", "dpsgd:noise_multiplier=1.5",
    "gradient-noise:scale=0.5", "gradient-noise:scale=2",
    "gradient-sparsification:keep=0.5", "gradient-sparsification:keep=0.1",
    "max-norm", "label-dp:epsilon=4", "label-dp:epsilon=1",
    "hijack-detection", "ushape",
]


def released(topology, x: torch.Tensor) -> torch.Tensor:
    """What the server receives for inputs x: the client segment's output after the defenses."""
    seen = []
    remove = topology.channel.add_tap("server", lambda m: seen.append(m.tensor) if m.kind == "activation" and m.src == topology.data_owner else None)
    topology.predict(x)
    remove()
    return seen[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cut", default="pool2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=None, help="comma-separated defense names to run (default: all rows)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", seed=0)
    x_probe = data.x_test[:512]
    print(f"MNIST, LeNet, cut after {args.cut}, {args.epochs} epochs, batch 64, Adam 1e-3, seed 0; dCor on 512 test images\n")
    print("| defense | test accuracy | dCor (biased) | dCor^2 (bias-corrected) | epsilon |")
    print("|---|---|---|---|---|")
    wanted = set(args.only.split(",")) if args.only else None
    for spec in ROWS:
        name = spec.split(":")[0]
        if wanted and name not in wanted:
            continue
        if name != "none" and name not in DEFENSES:
            print(f"| `{spec}` | (not registered) | | | |")
            continue
        defense = [] if name == "none" else [defense_from_spec(spec)]
        topology_name = "ushape" if name == "ushape" else "vanilla"
        model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=0)
        cuts = [args.cut, "relu4"] if topology_name == "ushape" else [args.cut]
        topology = build_topology(topology_name, model, cuts=cuts)
        report = Trainer(topology, epochs=args.epochs, batch_size=64, seed=0, callbacks=defense).fit(data)
        with torch.no_grad():
            z = released(topology, x_probe)
        biased = float(distance_correlation(x_probe, z))
        unbiased = float(distance_correlation(x_probe, z, estimator="unbiased"))
        eps = defense[0].epsilon() if defense else None
        eps_text = ""
        if eps and "per_label" in eps:
            eps_text = f"{eps['per_label']:.3g}/label use, {eps['composed']:.3g} over {eps['uses']} epochs (label DP)"
        elif eps and "composed" in eps:
            eps_text = f"{eps['per_release']:.3g}/release, {eps['composed']:.3g} over {eps['releases']} epochs"
        elif eps and "prv" in eps:
            eps_text = f"{eps['prv']:.3g} (PRV), {eps['rdp']:.3g} (RDP), delta {eps['delta']:.0e}"
        elif eps:
            eps_text = ", ".join(f"{k}={v:.3g}" for k, v in eps.items() if isinstance(v, float))
        accuracy = report.summary["test_accuracy"]
        accuracy_text = "stopped" if accuracy is None else f"{accuracy:.3f}"
        print(f"| `{spec}` | {accuracy_text} | {biased:.3f} | {unbiased:.3f} | {eps_text} |", flush=True)


if __name__ == "__main__":
    main()

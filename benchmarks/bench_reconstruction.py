"""SSIM of each reconstruction attack by cut depth (MNIST, UnSplit's LeNet, vanilla split).

For each cut the model is trained for ``--epochs`` epochs, then every attack reconstructs the same
16 held-out test images from the activations the server receives for them. Prints a Markdown table
of SSIM (and PSNR), with the mean-image baseline an attacker gets from nothing.
Run: ``python benchmarks/bench_reconstruction.py [--cuts relu1,pool1,relu2,pool2,relu3]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from secsplit.attacks import create_attack
from secsplit.data import load_dataset
from secsplit.evaluation.metrics import psnr, ssim
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer

ATTACKS = ["whitebox-inversion", "inverse-network", "unsplit"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cuts", default="relu1,pool1,relu2,pool2,relu3")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated attack names")
    args = parser.parse_args()
    names = args.attacks.split(",")
    torch.set_num_threads(1)
    data = load_dataset("mnist", seed=0)
    targets = data.x_test[-args.targets:]
    baseline = ssim(data.x_train.mean(0, keepdim=True).expand_as(targets), targets, data_range=1.0)
    print(f"MNIST LeNet, vanilla, {args.epochs} epochs, {args.targets} held-out images; mean-image baseline SSIM {baseline:.3f}\n")
    print("| cut | test accuracy | " + " | ".join(f"{a} SSIM / PSNR" for a in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for cut in args.cuts.split(","):
        model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=0)
        topology = build_topology("vanilla", model, cuts=[cut])
        attacks = [create_attack(name, targets=targets) for name in names]
        for attack in attacks:
            attack.check_applicable(topology, data)
        report = Trainer(topology, epochs=args.epochs, callbacks=attacks).fit(data)
        cells = []
        for attack in attacks:
            start = time.perf_counter()
            result = attack.result()
            cells.append(f"{ssim(result.reconstructions, targets, data_range=1.0):.3f} / "
                         f"{psnr(result.reconstructions, targets, data_range=1.0):.1f} ({time.perf_counter() - start:.0f} s)")
        print(f"| {cut} | {report.summary['test_accuracy']:.3f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

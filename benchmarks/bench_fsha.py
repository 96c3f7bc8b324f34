"""Feature-space hijacking (FSHA) on MNIST: reconstruction quality as the hijack goes on.

An active server (``fsha``) hijacks UnSplit's LeNet client segment (vanilla split, default cut
relu1) from the first step and reconstructs 16 held-out test images from the activations the client
releases for them in split inference. Every ``--every`` epochs the targets are attacked again
(the client runs inference on them), giving a curve of MSE / PSNR / SSIM in [0, 1] against hijacked
steps, next to the mean-image baseline an attacker gets from nothing. Training stops after
``--epochs`` epochs or ``--max-minutes`` minutes, whichever comes first (then one last point).
Run: ``python benchmarks/bench_fsha.py [--epochs 30] [--max-minutes 10]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from secsplit.attacks import create_attack
from secsplit.callbacks import Callback
from secsplit.data import load_dataset
from secsplit.errors import TrainingStopped
from secsplit.evaluation.metrics import mse, psnr, ssim
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def scores(attack) -> dict:
    attack._observed_targets = None  # have the client run inference on the targets again, with its current weights
    result = attack.result()
    rec, orig = result.reconstructions, result.originals
    return {"mse": mse(rec, orig), "psnr": psnr(rec, orig, data_range=1.0), "ssim": ssim(rec, orig, data_range=1.0)}


class Curve(Callback):
    """Attack the targets every few epochs; stop training when the time budget is spent."""

    def __init__(self, attack, every: int, max_seconds: float) -> None:
        self.attack, self.every, self.max_seconds = attack, every, max_seconds
        self.start = time.perf_counter()
        self.points: list[dict] = []

    def on_step_end(self, *, step, loss):
        if time.perf_counter() - self.start > self.max_seconds:
            raise TrainingStopped(f"time budget of {self.max_seconds:.0f} s spent")

    def on_epoch_end(self, *, epoch, metrics):
        if epoch % self.every == 0:
            self.record(epoch, metrics.get("test_accuracy"))

    def record(self, epoch, accuracy) -> None:
        point = {"epoch": epoch, "steps": len(self.attack.history), "seconds": time.perf_counter() - self.start,
                 "accuracy": accuracy, **scores(self.attack)}
        self.points.append(point)
        print(f"| {point['steps']} | {epoch} | {point['ssim']:.3f} | {point['mse']:.4f} | {point['psnr']:.1f} | "
              f"{accuracy if accuracy is None else round(accuracy, 3)} | {point['seconds']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cut", default="relu1")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--every", type=int, default=5, help="attack the targets every N epochs")
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--width", type=int, default=16, help="channels of the attacker's pilot, decoder and critic")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="another fsha parameter (e.g. gp_weight=500), repeatable")
    args = parser.parse_args()
    extra = {}
    for item in args.param:
        key, _, value = item.partition("=")
        extra[key] = float(value) if "." in value or "e" in value else int(value)
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", seed=0)
    targets = data.x_test[-args.targets:]
    mean = data.x_train.mean(0, keepdim=True).expand_as(targets)
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=0)
    topology = build_topology("vanilla", model, cuts=[args.cut])
    attack = create_attack("fsha", targets=targets, pilot_width=args.width, decoder_width=args.width,
                           discriminator_width=args.width, **extra)
    attack.check_applicable(topology, data)
    print(f"MNIST LeNet, vanilla, cut {args.cut}, fsha (aux {len(attack.auxiliary)} training images, width {args.width}), "
          f"{args.targets} held-out images; mean-image baseline SSIM {ssim(mean, targets, data_range=1.0):.3f}, "
          f"MSE {mse(mean, targets):.4f}, PSNR {psnr(mean, targets, data_range=1.0):.1f}\n")
    print("| hijacked steps | epoch | SSIM | MSE [0,1] | PSNR | test accuracy | seconds |")
    print("|---|---|---|---|---|---|---|")
    curve = Curve(attack, args.every, 60 * args.max_minutes)
    report = Trainer(topology, epochs=args.epochs, batch_size=64, callbacks=[attack, curve]).fit(data)
    last = curve.points[-1]["steps"] if curve.points else -1
    if last != len(attack.history):
        curve.record(len(report.history) or 0, report.summary["test_accuracy"])
    if report.summary["stopped"]:
        print(f"\nstopped: {report.summary['stopped']}")


if __name__ == "__main__":
    main()

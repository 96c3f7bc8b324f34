"""SDAR (Zhu et al., NDSS'25) against UnSplit's LeNet: reconstruction beside the inverse network, and
label inference in U-shape.

- MNIST, vanilla, cuts pool2 and relu3 (``--epochs`` epochs, Adam 1e-3, batch 64): SDAR watches
  training from the server's seat (labeled auxiliary data: the last 1,000 training images); after
  training the client runs split inference on 32 held-out test images, which SDAR and the inverse
  network (query access to the trained client segment, same 1,000 auxiliary images) reconstruct
  from the same released activations. Printed: SSIM and MSE in [0, 1] of both, and of the mean
  training image (a data-free control).
- digits, U-shape (default cuts pool1, relu4), ``--ushape-epochs`` epochs (default 25): SDAR's label inference on 128 held-out
  test images (argmax of its simulated tail over the server's own segment), beside the majority
  class, and its reconstruction SSIM.

Mean +- sd over ``--seeds``. Run: ``python benchmarks/bench_sdar.py [--seeds 0 1 2] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from secsplit.attacks import create_attack
from secsplit.evaluation.metrics import mse, ssim

from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def fmt(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def ushape_labels(seed: int, epochs: int) -> dict:
    data = load_dataset("digits", seed=seed)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=seed)
    topology = build_topology("ushape", model, optimizer=OptimizerSpec("adam", lr=1e-3))
    targets = data.x_test[-128:]
    attack = create_attack("sdar", targets=targets, seed=seed, max_targets=128)
    attack.check_applicable(topology, data)
    report = Trainer(topology, epochs=epochs, batch_size=64, seed=seed, callbacks=[attack]).fit(data)
    scores = attack.result().scores()
    truth = data.y_test[-128:]
    return {"label_accuracy": scores["label_accuracy"], "ssim": scores["ssim"],
            "chance": float(torch.bincount(truth).max() / len(truth)),
            "test_accuracy": report.history[-1]["test_accuracy"]}


def vanilla_reconstruction(cut: str, seed: int, epochs: int) -> dict:
    data = load_dataset("mnist", seed=seed)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=seed)
    topology = build_topology("vanilla", model, cuts=[cut], optimizer=OptimizerSpec("adam", lr=1e-3))
    targets = data.x_test[-32:]
    sdar = create_attack("sdar", targets=targets, seed=seed)
    sdar.check_applicable(topology, data)
    start = time.perf_counter()
    report = Trainer(topology, epochs=epochs, batch_size=64, seed=seed, callbacks=[sdar]).fit(data)
    inverse = create_attack("inverse-network", targets=targets, seed=seed)
    inverse.check_applicable(topology, data)
    inverse.attach(topology)
    rec_s, rec_i = sdar.result().reconstructions, inverse.result().reconstructions
    mean = data.x_train.mean(0, keepdim=True).expand_as(targets)
    return {"sdar_ssim": ssim(rec_s, targets, data_range=1.0), "sdar_mse": mse(rec_s, targets),
            "inv_ssim": ssim(rec_i, targets, data_range=1.0), "inv_mse": mse(rec_i, targets),
            "mean_ssim": ssim(mean, targets, data_range=1.0), "mean_mse": mse(mean, targets),
            "test_accuracy": report.history[-1]["test_accuracy"], "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cuts", nargs="+", default=["pool2", "relu3"])
    parser.add_argument("--ushape-epochs", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [ushape_labels(seed, args.ushape_epochs) for seed in args.seeds]
    col = {k: [r[k] for r in rows] for k in rows[0]}
    print("| digits U-shape (pool1, relu4) | SDAR label acc. | chance | model test acc. | SDAR SSIM |\n|---|---|---|---|---|")
    print(f"| server seat | {fmt(col['label_accuracy'])} | {np.mean(col['chance']):.3f} | {fmt(col['test_accuracy'])} | "
          f"{fmt(col['ssim'])} |", flush=True)
    print("\n| MNIST vanilla cut | SDAR SSIM | inverse-network SSIM | mean image SSIM | SDAR MSE | inverse-network MSE | "
          "mean image MSE | model test acc. | s/run |\n|---|---|---|---|---|---|---|---|---|")
    for cut in args.cuts:
        rows = [vanilla_reconstruction(cut, seed, args.epochs) for seed in args.seeds]
        col = {k: [r[k] for r in rows] for k in rows[0]}
        print(f"| {cut} | {fmt(col['sdar_ssim'])} | {fmt(col['inv_ssim'])} | {fmt(col['mean_ssim'])} | {fmt(col['sdar_mse'])} | "
              f"{fmt(col['inv_mse'])} | {fmt(col['mean_mse'])} | {fmt(col['test_accuracy'])} | {np.mean(col['seconds']):.0f} |", flush=True)
        print("per seed SDAR/INV SSIM:", [(round(r["sdar_ssim"], 3), round(r["inv_ssim"], 3)) for r in rows], flush=True)


if __name__ == "__main__":
    main()

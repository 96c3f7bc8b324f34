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

import time

import numpy as np
import torch
from attack_bench import arguments, fmt, header, over_seeds, parse, per_seed, row
from secsplit.attacks import create_attack
from secsplit.evaluation.metrics import mse, ssim

from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer


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


def vanilla_reconstruction(cut: str, seed: int, epochs: int, inverse_aux: int, inverse_epochs: int) -> dict:
    data = load_dataset("mnist", seed=seed)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=seed)
    topology = build_topology("vanilla", model, cuts=[cut], optimizer=OptimizerSpec("adam", lr=1e-3))
    targets = data.x_test[-32:]
    sdar = create_attack("sdar", targets=targets, seed=seed)
    sdar.check_applicable(topology, data)
    start = time.perf_counter()
    report = Trainer(topology, epochs=epochs, batch_size=64, seed=seed, callbacks=[sdar]).fit(data)
    # the same auxiliary images as SDAR's (the last ``inverse_aux`` training images), at a stated budget
    inverse = create_attack("inverse-network", targets=targets, seed=seed, aux_size=inverse_aux, epochs=inverse_epochs)
    inverse.check_applicable(topology, data)
    inverse.attach(topology)
    rec_s, rec_i = sdar.result().reconstructions, inverse.result().reconstructions
    mean = data.x_train.mean(0, keepdim=True).expand_as(targets)
    return {"sdar_ssim": ssim(rec_s, targets, data_range=1.0), "sdar_mse": mse(rec_s, targets),
            "inv_ssim": ssim(rec_i, targets, data_range=1.0), "inv_mse": mse(rec_i, targets),
            "mean_ssim": ssim(mean, targets, data_range=1.0), "mean_mse": mse(mean, targets),
            "test_accuracy": report.history[-1]["test_accuracy"], "seconds": time.perf_counter() - start}


def main() -> None:
    parser = arguments(__doc__, epochs=3)
    parser.add_argument("--cuts", nargs="*", default=["pool2", "relu3"], help="none: only the U-shape rows")
    parser.add_argument("--ushape-epochs", type=int, default=25, help="0 skips the U-shape rows")
    parser.add_argument("--inverse-aux", type=int, default=1000, help="auxiliary images of the inverse network (SDAR's: 1000)")
    parser.add_argument("--inverse-epochs", type=int, default=10, help="passes of the inverse network over them")
    args = parse(parser)
    if args.ushape_epochs:
        col = over_seeds(ushape_labels, args.seeds, epochs=args.ushape_epochs)
        header("digits U-shape (pool1, relu4)", "SDAR label acc.", "chance", "model test acc.", "SDAR SSIM")
        row("server seat", fmt(col["label_accuracy"]), f"{np.mean(col['chance']):.3f}", fmt(col["test_accuracy"]), fmt(col["ssim"]))
        print()
    if args.cuts:
        header("MNIST vanilla cut", "SDAR SSIM", f"inverse-network SSIM ({args.inverse_aux} aux x {args.inverse_epochs} ep.)",
               "mean image SSIM", "SDAR MSE", "inverse-network MSE", "mean image MSE", "model test acc.", "s/run")
    for cut in args.cuts:
        col = over_seeds(vanilla_reconstruction, args.seeds, cut, epochs=args.epochs, inverse_aux=args.inverse_aux,
                         inverse_epochs=args.inverse_epochs)
        row(cut, *(fmt(col[k]) for k in ("sdar_ssim", "inv_ssim", "mean_ssim", "sdar_mse", "inv_mse", "mean_mse", "test_accuracy")),
            f"{np.mean(col['seconds']):.0f}")
        print("per seed SDAR/INV SSIM:", per_seed(col, "sdar_ssim", "inv_ssim"), flush=True)


if __name__ == "__main__":
    main()

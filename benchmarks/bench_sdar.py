"""SDAR (Zhu et al., NDSS'25) against UnSplit's LeNet: reconstruction beside the inverse network, and
label inference in U-shape.

- MNIST, vanilla, cuts pool2 and relu3 (``--epochs`` epochs, Adam 1e-3, batch 64): SDAR watches
  training from the server's seat (labeled auxiliary data: the last 1,000 training images); after
  training the client runs split inference on 32 held-out test images, which SDAR and the inverse
  network (query access to the trained client segment, same 1,000 auxiliary images) reconstruct
  from the same released activations. Printed: SSIM and MSE in [0, 1] of both, and of the mean
  training image (a data-free control); then how far SDAR's simulator is from the client (read with
  the client's weights, for measuring only): linear CKA, MMD^2 and relative error on the same test
  images, and the SDAR decoder's SSIM on the simulator's own features of the targets.
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
from secsplit.attacks.reconstruction_fora import mmd2
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


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two feature sets of the same images: 1 = the same up to a rotation
    and a scale, 0 = unrelated."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(0), b - b.mean(0)
    return float((b.T @ a).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))


def feature_gap(sdar, topology, images: torch.Tensor, targets: torch.Tensor) -> dict:
    """How far the simulator is from the client, measured with the client's weights (the benchmark may read
    them; the attack never does): on the same images, linear CKA, the MMD^2 of the two feature sets and the
    simulator's error relative to the client features' spread; then the SDAR decoder's SSIM on the
    simulator's own features of the targets (what it would reach were the simulator the client)."""
    with torch.no_grad():
        client = topology.segments[0].eval()
        real = client(images).flatten(1)
        client.train()
        sim = sdar.simulate(images).flatten(1)
        labels = sdar.guess_labels(topology.segments[0](targets))
        rec_own = sdar.decoder.eval()(sdar.simulate(targets), labels)
    spread = (real - real.mean(0)).pow(2).sum(1).mean()
    return {"cka": linear_cka(sim, real), "mmd2": float(mmd2(sim[:500], real[:500])),
            "rel_error": float((sim - real).pow(2).sum(1).mean() / spread),
            "ssim_own": ssim(rec_own.clamp(0, 1), targets, data_range=1.0)}


def vanilla_reconstruction(cut: str, seed: int, epochs: int, inverse_aux: int, inverse_epochs: int,
                           sdar_params: dict, inverse_shift: int = 0) -> dict:
    data = load_dataset("mnist", seed=seed)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=seed)
    topology = build_topology("vanilla", model, cuts=[cut], optimizer=OptimizerSpec("adam", lr=1e-3))
    targets = data.x_test[-32:]
    sdar = create_attack("sdar", targets=targets, seed=seed, **sdar_params)
    sdar.check_applicable(topology, data)
    start = time.perf_counter()
    report = Trainer(topology, epochs=epochs, batch_size=64, seed=seed, callbacks=[sdar]).fit(data)
    rec_s = sdar.result().reconstructions
    sdar_seconds = time.perf_counter() - start
    # the same auxiliary images as SDAR's (the last ``inverse_aux`` training images), at a stated budget
    rec_i = torch.full_like(targets, float("nan"))
    if inverse_epochs:
        inverse = create_attack("inverse-network", targets=targets, seed=seed, aux_size=inverse_aux, epochs=inverse_epochs,
                                shift=inverse_shift)
        inverse.check_applicable(topology, data)
        inverse.attach(topology)
        rec_i = inverse.result().reconstructions
    mean = data.x_train.mean(0, keepdim=True).expand_as(targets)
    gap = feature_gap(sdar, topology, data.x_test[:-32], targets)
    return {"sdar_ssim": ssim(rec_s, targets, data_range=1.0), "sdar_mse": mse(rec_s, targets),
            "inv_ssim": ssim(rec_i, targets, data_range=1.0), "inv_mse": mse(rec_i, targets),
            "mean_ssim": ssim(mean, targets, data_range=1.0), "mean_mse": mse(mean, targets),
            "test_accuracy": report.history[-1]["test_accuracy"], "seconds": sdar_seconds, **gap}


def main() -> None:
    parser = arguments(__doc__, epochs=3)
    parser.add_argument("--cuts", nargs="*", default=["pool2", "relu3"], help="none: only the U-shape rows")
    parser.add_argument("--ushape-epochs", type=int, default=25, help="0 skips the U-shape rows")
    parser.add_argument("--inverse-aux", type=int, default=1000, help="auxiliary images of the inverse network (SDAR's: 1000)")
    parser.add_argument("--inverse-epochs", type=int, default=10, help="passes of the inverse network over them (0: no inverse network)")
    parser.add_argument("--inverse-shift", type=int, default=0, help="the inverse network's shifted queries (pixels; 0: none)")
    parser.add_argument("--sdar", nargs="*", default=[], metavar="KEY=VALUE",
                        help="SDAR parameters other than its defaults (numbers, true/false), e.g. steps_per_batch=1")
    args = parse(parser)
    if args.ushape_epochs:
        col = over_seeds(ushape_labels, args.seeds, epochs=args.ushape_epochs)
        header("digits U-shape (pool1, relu4)", "SDAR label acc.", "chance", "model test acc.", "SDAR SSIM")
        row("server seat", fmt(col["label_accuracy"]), f"{np.mean(col['chance']):.3f}", fmt(col["test_accuracy"]), fmt(col["ssim"]))
        print("per seed SDAR label acc. / model test acc.:", per_seed(col, "label_accuracy", "test_accuracy"), flush=True)
        print()
    if args.cuts:
        header("MNIST vanilla cut", "SDAR SSIM", f"inverse-network SSIM ({args.inverse_aux} aux x {args.inverse_epochs} ep.)",
               "mean image SSIM", "SDAR MSE", "inverse-network MSE", "mean image MSE", "model test acc.", "SDAR s/run")
    sdar_params = {key: value == "true" if value in ("true", "false") else float(value) if "." in value or "e" in value
                   else int(value) for key, value in (item.split("=", 1) for item in args.sdar)}
    for cut in args.cuts:
        col = over_seeds(vanilla_reconstruction, args.seeds, cut, epochs=args.epochs, inverse_aux=args.inverse_aux,
                         inverse_epochs=args.inverse_epochs, sdar_params=sdar_params, inverse_shift=args.inverse_shift)
        row(cut, *(fmt(col[k]) for k in ("sdar_ssim", "inv_ssim", "mean_ssim", "sdar_mse", "inv_mse", "mean_mse", "test_accuracy")),
            f"{np.mean(col['seconds']):.0f}")
        print("per seed SDAR/INV SSIM:", per_seed(col, "sdar_ssim", "inv_ssim"), flush=True)
        print(f"feature gap at {cut} (simulator vs client, the other 968 test images): CKA {fmt(col['cka'])}, "
              f"MMD^2 {fmt(col['mmd2'])}, relative error {fmt(col['rel_error'])}; "
              f"SDAR decoder on the simulator's own features of the targets: SSIM {fmt(col['ssim_own'])}", flush=True)


if __name__ == "__main__":
    main()

"""FORA (Xu et al., CVPR'24) against UnSplit's LeNet on MNIST, beside UnSplit itself.

Vanilla split at ``--cuts`` (default relu2 and pool2), ``--epochs`` epochs (Adam 1e-3, batch 64).
FORA watches training from the server's seat (unlabeled auxiliary data: the last 1,000 training
images; the client's architecture, not its weights); after training the client runs split inference
on 32 held-out test images and FORA and UnSplit (architecture only, default settings) reconstruct
them from the same released activations. Printed: SSIM and MSE in [0, 1] of both and of the mean
training image, mean +- sd over ``--seeds``.
Run: ``python benchmarks/bench_fora.py [--seeds 0 1 2] [--epochs 3]``.
"""

from __future__ import annotations

from attack_bench import arguments, fmt, header, over_seeds, parse, per_seed, row
from secsplit.attacks import create_attack
from secsplit.evaluation.metrics import mse, ssim

from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def run(cut: str, seed: int, epochs: int) -> dict:
    data = load_dataset("mnist", seed=seed)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=seed)
    topology = build_topology("vanilla", model, cuts=[cut], optimizer=OptimizerSpec("adam", lr=1e-3))
    targets = data.x_test[-32:]
    fora = create_attack("fora", targets=targets, seed=seed)
    fora.check_applicable(topology, data)
    report = Trainer(topology, epochs=epochs, batch_size=64, seed=seed, callbacks=[fora]).fit(data)
    unsplit = create_attack("unsplit", targets=targets, seed=seed)
    unsplit.check_applicable(topology, data)
    unsplit.attach(topology)
    rec_f, rec_u = fora.result().reconstructions, unsplit.result().reconstructions
    mean = data.x_train.mean(0, keepdim=True).expand_as(targets)
    return {"fora_ssim": ssim(rec_f, targets, data_range=1.0), "fora_mse": mse(rec_f, targets),
            "unsplit_ssim": ssim(rec_u, targets, data_range=1.0), "unsplit_mse": mse(rec_u, targets),
            "mean_ssim": ssim(mean, targets, data_range=1.0), "mean_mse": mse(mean, targets),
            "test_accuracy": report.history[-1]["test_accuracy"]}


def main() -> None:
    parser = arguments(__doc__, epochs=3)
    parser.add_argument("--cuts", nargs="+", default=["relu2", "pool2"])
    args = parse(parser)
    header("MNIST vanilla cut", "FORA SSIM", "UnSplit SSIM", "mean image SSIM", "FORA MSE", "UnSplit MSE", "mean image MSE",
           "model test acc.")
    for cut in args.cuts:
        col = over_seeds(run, args.seeds, cut, epochs=args.epochs)
        row(cut, *(fmt(col[k]) for k in ("fora_ssim", "unsplit_ssim", "mean_ssim", "fora_mse", "unsplit_mse", "mean_mse",
                                          "test_accuracy")))
        print("per seed FORA/UnSplit SSIM:", per_seed(col, "fora_ssim", "unsplit_ssim"), flush=True)


if __name__ == "__main__":
    main()

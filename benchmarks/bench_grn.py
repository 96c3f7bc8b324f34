"""GRN feature inference (Luo et al., ICDE'21) against the passive clients of vertical split learning.

Settings (``vertical``, merge concat, MLP bottoms cut at relu1, labels at the server, Adam 1e-3,
batch 32, 10 epochs; contiguous column groups, one client each):

- breast-cancer (30 standardized columns, 2 classes), k = 2 and 4 clients;
- digits as a table (``--digits``): scikit-learn's 8x8 digits written to a CSV of 64 pixel columns and
  loaded through the user-file path, k = 2 (client0 the top half of each image, client1 the bottom
  half), 10 classes: the predictions are 10 class probabilities, closer to the paper's multi-class
  data sets (Drive diagnosis, 11 classes; News popularity, 5);
- a user CSV (``--csv PATH [--label COLUMN]``), k = 2.

The active party (the server with client0's columns and the trained model's weights) regresses the
passive clients' columns of the test samples from either the model's predictions (GRN's setting) or
the passive clients' released activations. Printed: MSE in standardized units beside the
mean-feature baseline, mean per-column R^2 (0 = the baseline), the share of columns beating the
baseline, and GRN's own metric: MSE per feature on [0, 1]-scaled features beside the mean baseline
and a uniform random guess on that scale; mean ± sd over ``--seeds``.
Run: ``python benchmarks/bench_grn.py [--seeds 0 1 2] [--digits] [--csv PATH --label y]``.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from attack_bench import arguments, fmt, header, over_seeds, parse, row
from secsplit.attacks import create_attack

from secsplit.data import load_data
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer

COLUMNS = ("feature_mse", "mean_baseline_mse", "r2", "features_beating_mean", "mse_per_feature_01", "mean_baseline_mse_01",
           "random_guess_mse_01", "test_accuracy")


def run(source: str, k: int, observe: str, seed: int, **options) -> dict:
    data = load_data(source, seed=seed, **options)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)
    topology = build_topology("vertical", model, model_name="mlp", k=k, label_source="label_owner", seed=seed,
                              optimizer=OptimizerSpec("adam", lr=1e-3))
    attack = create_attack("grn", observe=observe, seed=seed)
    attack.check_applicable(topology, data)
    report = Trainer(topology, epochs=10, batch_size=32, seed=seed, callbacks=[attack]).fit(data)
    info = attack.result().info
    return {**{key: info[key] for key in COLUMNS[:-1]}, "test_accuracy": report.history[-1]["test_accuracy"]}


def digits_csv(folder: Path) -> Path:
    """scikit-learn's bundled digits as a CSV: 64 pixel columns p0..p63 (0..16) and a label column."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    path = folder / "digits.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"p{i}" for i in range(64)] + ["label"])
        for pixels, label in zip(bunch.data.astype(int), bunch.target):
            writer.writerow([*pixels, label])
    return path


def table(source: str, label: str, ks, seeds, **options) -> None:
    for k in ks:
        for observe in ("predictions", "representation"):
            col = over_seeds(run, seeds, source, k, observe, **options)
            row(label, k, observe, *(fmt(col[key]) for key in COLUMNS))


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--digits", action="store_true", help="also the 10-class digits table (via a CSV)")
    parser.add_argument("--csv", help="also a user CSV (k = 2)")
    parser.add_argument("--label", default=None, help="the user CSV's label column (default: label, target, y or class)")
    parser.add_argument("--only-extra", action="store_true", help="skip the breast-cancer rows")
    args = parse(parser)
    header("data", "k", "observes", "GRN MSE", "mean-baseline MSE", "R^2 (mean over passive columns)", "columns beating the mean",
           "GRN MSE/feature in [0,1]", "mean baseline in [0,1]", "random guess in [0,1]", "model test acc.")
    if not args.only_extra:
        table("breast-cancer", "breast-cancer", (2, 4), args.seeds)
    if args.digits:
        with tempfile.TemporaryDirectory() as folder:
            table(str(digits_csv(Path(folder))), "digits table (CSV, 10 classes)", (2,), args.seeds)
    if args.csv:
        table(args.csv, Path(args.csv).name, (2,), args.seeds, **({"label": args.label} if args.label else {}))


if __name__ == "__main__":
    main()

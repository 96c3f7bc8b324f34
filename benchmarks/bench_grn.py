"""GRN feature inference (Luo et al., ICDE'21) against the passive clients of vertical split learning.

breast-cancer (30 standardized columns) split into k = 2 or 4 contiguous column groups, one client
each (``vertical``, merge concat, MLP bottoms cut at relu1, labels at the server), trained 10 epochs
(Adam 1e-3, batch 32). The active party (the server with client0's columns and the trained model's
weights) regresses the passive clients' columns of the 114 test samples from either the model's
predictions (GRN's setting) or the passive clients' released activations. Printed: MSE in
standardized units beside the mean-feature baseline, mean per-column R^2 (0 = the baseline) and the
share of columns beating the baseline, mean +- sd over ``--seeds``.
Run: ``python benchmarks/bench_grn.py [--seeds 0 1 2]``.
"""

from __future__ import annotations

from attack_bench import arguments, fmt, header, over_seeds, parse, row
from secsplit.attacks import create_attack

from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def run(k: int, observe: str, seed: int) -> dict:
    data = load_dataset("breast-cancer", seed=seed)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=2, seed=seed)
    topology = build_topology("vertical", model, model_name="mlp", k=k, label_source="label_owner", seed=seed,
                              optimizer=OptimizerSpec("adam", lr=1e-3))
    attack = create_attack("grn", observe=observe, seed=seed)
    attack.check_applicable(topology, data)
    report = Trainer(topology, epochs=10, batch_size=32, seed=seed, callbacks=[attack]).fit(data)
    info = attack.result().info
    return {**{key: info[key] for key in ("feature_mse", "mean_baseline_mse", "r2", "features_beating_mean")},
            "test_accuracy": report.history[-1]["test_accuracy"]}


def main() -> None:
    args = parse(arguments(__doc__))
    header("k", "observes", "GRN MSE", "mean-baseline MSE", "R^2 (mean over passive columns)", "columns beating the mean",
           "model test acc.")
    for k in (2, 4):
        for observe in ("predictions", "representation"):
            col = over_seeds(run, args.seeds, k, observe)
            row(k, observe, *(fmt(col[key]) for key in ("feature_mse", "mean_baseline_mse", "r2", "features_beating_mean",
                                                         "test_accuracy")))


if __name__ == "__main__":
    main()

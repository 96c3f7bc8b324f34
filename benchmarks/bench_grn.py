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

import argparse

import numpy as np
import torch
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


def fmt(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| k | observes | GRN MSE | mean-baseline MSE | R^2 (mean over passive columns) | columns beating the mean | model test acc. |")
    print("|---|---|---|---|---|---|---|")
    for k in (2, 4):
        for observe in ("predictions", "representation"):
            rows = [run(k, observe, seed) for seed in args.seeds]
            col = {key: [r[key] for r in rows] for key in rows[0]}
            print(f"| {k} | {observe} | {fmt(col['feature_mse'])} | {fmt(col['mean_baseline_mse'])} | {fmt(col['r2'])} | "
                  f"{fmt(col['features_beating_mean'])} | {fmt(col['test_accuracy'])} |", flush=True)


if __name__ == "__main__":
    main()

"""SplitOut beside hijack detection: detection step under FSHA and false alarms under honest training.

    python benchmarks/bench_splitout.py [--seeds 6] [--epochs 2] [--out splitout.json]
    python benchmarks/bench_splitout.py --detectors splitout:sim_epochs=40 --datasets digits synthetic-image

For each data set (digits, mnist, a synthetic image set) and seed, four runs of LeNet cut at its
default cut (vanilla, labels at the client): {splitout, hijack-detection} x {honest server, FSHA}.
Reports, per detector and data set, the true-positive rate (FSHA runs stopped), the detection step
(mean +- sd), and the false-positive rate (honest runs stopped) with the step of each false alarm.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from secsplit.description import RunDescription
from secsplit.evaluation.audit_config import RunSpec
from secsplit.evaluation.runner import execute_run

DATASETS = {
    "digits": {"source": "digits"},
    "mnist": {"source": "mnist"},
    "synthetic-image": {"source": "synthetic", "kind": "image", "image_shape": [1, 16, 16], "num_classes": 4,
                        "n_samples": 1024},
}
DETECTORS = ("splitout", "hijack-detection")


def one(data: dict, detector: str, attack: str, seed: int, epochs: int) -> dict:
    description = RunDescription.from_dict({"data": data, "model": "lenet", "epochs": epochs, "batch_size": 32,
                                            "seed": seed, "defenses": [detector], "attacks": [attack]})
    row = execute_run(RunSpec(description))[0]
    report = (row.get("defense_report") or [{}])[0]
    return {"status": row["status"], "error": row.get("error"), "detected": report.get("detected"),
            "step": report.get("detected_at_step"), "armed_at": report.get("armed_at_step")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--detectors", nargs="*", default=list(DETECTORS),
                        help="defense specs to compare, e.g. splitout:sim_epochs=40 (default: splitout hijack-detection)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = []
    for name in args.datasets:
        for detector in args.detectors:
            for attack in ("none", "fsha"):
                for seed in range(args.seeds):
                    r = one(DATASETS[name], detector, attack, seed, args.epochs)
                    results.append({"dataset": name, "detector": detector, "attack": attack, "seed": seed, **r})
                    print(json.dumps(results[-1]), flush=True)
    print("\n| data set | detector | TPR (FSHA stopped) | detection step | FPR (honest stopped) | false-alarm steps |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        for detector in args.detectors:
            attacked = [r for r in results if r["dataset"] == name and r["detector"] == detector and r["attack"] == "fsha"]
            honest = [r for r in results if r["dataset"] == name and r["detector"] == detector and r["attack"] == "none"]
            steps = [r["step"] for r in attacked if r["detected"]]
            tpr = sum(bool(r["detected"]) for r in attacked) / len(attacked)
            fpr = sum(bool(r["detected"]) for r in honest) / len(honest)
            sd = statistics.stdev(steps) if len(steps) > 1 else 0.0
            step = f"{statistics.fmean(steps):.1f} +- {sd:.1f}" if steps else "-"
            alarms = [r["step"] for r in honest if r["detected"]]
            print(f"| {name} | {detector} | {tpr:.2f} ({len(attacked)} seeds) | {step} | {fpr:.2f} | {alarms or '-'} |")
    print(f"\n{time.perf_counter() - start:.0f} s, {args.epochs} epochs, batch 32")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

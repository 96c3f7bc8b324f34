"""Every leakage number beside its chance level, and as a normalized leak (0 = chance, 1 = full).

A raw score says little on its own: SSIM 0.2 can be what a blind guess gets, a leak AUC of 0.6 can
be chance on a small imbalanced set, and test accuracy 0.9 is chance when 90% of the labels are
one class. The chance levels here are what an attacker (or a model) that learned nothing reaches:

- utility: the majority class's share of the test labels (always guessing it);
- ``leak_auc``: the row's own ``chance_auc`` (random scores on the same labels);
- ``label_accuracy``: the row's ``chance_accuracy`` when the attack reports one, else the majority
  class's share of the training labels;
- ``ssim``/``psnr``/``mse``: the mean training image offered as every reconstruction of the attacked
  targets (the last test images, as the audit picks them);
- ``dcor_unbiased``: 0 (the bias-corrected dCor^2 of independent data); the biased ``dcor`` has no
  fixed chance level (it grows as n shrinks), so it is shown raw unless a row carries ``dcor_chance``.

Data-dependent levels are computed once per data source from the run description each row stores.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache

from secsplit.evaluation.metrics import normalized_leak

#: a row's headline leakage metric: the first it has, in this order (the dCor probe when no attack ran)
PRIMARY = ("ssim", "leak_auc", "label_accuracy", "dcor_unbiased")
#: how tables and findings name each metric
METRIC_NAMES = {"ssim": "SSIM", "psnr": "PSNR dB", "mse": "MSE", "leak_auc": "leak AUC", "label_accuracy": "label accuracy",
                "dcor_unbiased": "dCor\u00b2", "dcor": "dCor"}
#: the targets a reconstruction is scored on when its row does not say (the attacks' default max_targets)
DEFAULT_TARGETS = 32


@dataclass(frozen=True)
class Leak:
    """One leakage metric of one row: value, chance level and the attacker's perfect score."""

    metric: str
    value: float
    chance: float | None
    full: float | None

    @property
    def normalized(self) -> float | None:
        if self.chance is None or self.full is None:
            return None
        return normalized_leak(self.value, chance=self.chance, full=self.full)


@dataclass(frozen=True)
class DataFacts:
    """Chance levels that depend only on the data (see the module docstring), and its sample shape."""

    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    utility: float | None = None
    label_accuracy: float | None = None
    test_size: int | None = None


def data_facts(row: dict) -> DataFacts:
    """The chance levels and shape of the data a row trained on (empty when its data cannot be loaded here)."""
    dataset = _row_dataset(row)
    if dataset is None:
        return DataFacts()
    majority = lambda labels: float(labels.bincount().max()) / len(labels)  # noqa: E731
    return DataFacts(tuple(dataset.input_shape), dataset.num_classes, majority(dataset.y_test), majority(dataset.y_train),
                     len(dataset.y_test))


def reconstruction_chance(row: dict) -> dict[str, float]:
    """SSIM/PSNR/MSE of the mean training image offered as the reconstruction of each attacked target
    (the last ``num_targets`` test images, as the audit attacks them); empty for non-image data."""
    targets = (row.get("leakage") or {}).get("num_targets")
    n = int(targets) if isinstance(targets, (int, float)) and targets > 0 else DEFAULT_TARGETS
    key = _data_key(row)
    return _image_chance(*key, n) if key else {}


def _data_key(row: dict) -> tuple[str, int] | None:
    run = row.get("run") if isinstance(row.get("run"), dict) else {}
    data = run.get("data") or row.get("training", {}).get("dataset")
    return (json.dumps(data, sort_keys=True, default=str), run.get("seed", 0)) if data else None


def _row_dataset(row: dict):
    key = _data_key(row)
    return _dataset(*key) if key else None


@lru_cache(maxsize=8)
def _dataset(data_json: str, seed: int):
    from secsplit.description import RunDescription
    from secsplit.errors import SecsplitError
    from secsplit.evaluation.build import load_run_data

    try:
        return load_run_data(RunDescription.from_dict({"data": json.loads(data_json), "seed": seed}))
    except (SecsplitError, OSError):
        return None  # e.g. a report regenerated where the audit's own data file is absent


@lru_cache(maxsize=32)
def _image_chance(data_json: str, seed: int, n: int) -> dict[str, float]:
    from secsplit import metrics

    dataset = _dataset(data_json, seed)
    if dataset is None or dataset.kind != "image":
        return {}
    targets = dataset.x_test[-n:].float()
    guess = dataset.x_train.float().mean(0, keepdim=True).expand_as(targets)
    return {"ssim": metrics.ssim(guess, targets, data_range=1.0), "psnr": metrics.psnr(guess, targets, data_range=1.0),
            "mse": metrics.mse(guess, targets)}


def row_leaks(row: dict, facts: DataFacts | None = None) -> dict[str, Leak]:
    """metric -> Leak for every leakage number the row has (attack scores and the dCor probe)."""
    facts = facts or data_facts(row)
    scores = row.get("leakage") or {}
    image = reconstruction_chance(row) if "ssim" in scores or "mse" in scores else {}
    levels = {"ssim": (image.get("ssim"), 1.0), "psnr": (image.get("psnr"), None), "mse": (image.get("mse"), 0.0),
              "leak_auc": (scores.get("chance_auc"), 1.0),
              "label_accuracy": (scores.get("chance_accuracy", facts.label_accuracy), 1.0)}
    leaks = {}
    for metric, (level, full) in levels.items():
        value = scores.get(metric)
        if _number(value):
            leaks[metric] = Leak(metric, float(value), level, full)
    if _number(row.get("dcor_unbiased")):
        leaks["dcor_unbiased"] = Leak("dcor_unbiased", float(row["dcor_unbiased"]), 0.0, 1.0)
    if _number(row.get("dcor")):
        leaks["dcor"] = Leak("dcor", float(row["dcor"]), row.get("dcor_chance"), 1.0)
    return leaks


def primary_leak(leaks: dict[str, Leak]) -> Leak | None:
    """The row's headline metric: the attack's own when it has one, else the dCor probe."""
    return next((leaks[m] for m in PRIMARY if m in leaks), None)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

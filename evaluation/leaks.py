"""Chance levels and normalized leakage: the one place the report and the frontier take them from.

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

Two normalizations, named for what 1 means:

- :func:`leak_vs_full`: 0 = chance, 1 = the attacker's perfect score (SSIM 1, AUC 1, MSE 0), clipped
  to [0, 1]. The report's "leak 0-1": comparable across attacks and configurations.
- :func:`leak_vs_undefended`: 0 = chance, 1 = the same configuration undefended, not clipped (a
  defense can leak more than none, and a fooled attack can read below chance). The frontier's: how
  much of the undefended leak a defense leaves.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache


#: a row's headline leakage metric: the first it has, in this order (the dCor probe when no attack ran)
PRIMARY = ("ssim", "leak_auc", "label_accuracy", "dcor_unbiased")
#: how tables and findings name each metric
METRIC_NAMES = {"ssim": "SSIM", "psnr": "PSNR dB", "mse": "MSE", "leak_auc": "leak AUC", "label_accuracy": "label accuracy",
                "dcor_unbiased": "dCor\u00b2", "dcor": "dCor"}
#: the attacker's perfect score per metric (None: unbounded, as PSNR)
FULL_LEAK = {"ssim": 1.0, "psnr": None, "mse": 0.0, "leak_auc": 1.0, "label_accuracy": 1.0, "dcor_unbiased": 1.0,
             "dcor": 1.0}
#: the targets a reconstruction is scored on when its row does not say (the attacks' default max_targets)
DEFAULT_TARGETS = 32


def leak_vs_full(value: float, *, chance: float, full: float = 1.0) -> float:
    """Where ``value`` lies between chance (0) and the attacker's perfect score ``full`` (1), clipped to
    [0, 1]: a score below chance is no leak, not a negative one. ``full`` may lie below chance (MSE)."""
    if full == chance:
        return 0.0
    return min(1.0, max(0.0, (value - chance) / (full - chance)))


def leak_vs_undefended(value: float, *, chance: float, undefended: float, full: float = 1.0) -> float | None:
    """Where ``value`` lies between chance (0) and the undefended run's leak (1), unclipped; None when
    the undefended run leaks no more than chance (nothing to stop, no scale). ``full`` gives the
    direction of a leak (MSE: 0, below chance)."""
    span = undefended - chance
    if span * (1.0 if full >= chance else -1.0) <= 1e-9:
        return None
    return (value - chance) / span


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
        return leak_vs_full(self.value, chance=self.chance, full=self.full)


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
    chances = {"ssim": image.get("ssim"), "psnr": image.get("psnr"), "mse": image.get("mse"),
               "leak_auc": scores.get("chance_auc"), "label_accuracy": scores.get("chance_accuracy", facts.label_accuracy)}
    levels = {metric: (level, FULL_LEAK[metric]) for metric, level in chances.items()}
    leaks = {}
    for metric, (level, full) in levels.items():
        value = scores.get(metric)
        if _number(value):
            leaks[metric] = Leak(metric, float(value), level, full)
    if _number(row.get("dcor_unbiased")):
        leaks["dcor_unbiased"] = Leak("dcor_unbiased", float(row["dcor_unbiased"]), 0.0, FULL_LEAK["dcor_unbiased"])
    if _number(row.get("dcor")):
        leaks["dcor"] = Leak("dcor", float(row["dcor"]), row.get("dcor_chance"), FULL_LEAK["dcor"])
    return leaks


def chance_level(row: dict, metric: str) -> float | None:
    """The chance level of ``metric`` for this row (see the module docstring); None when unknown."""
    leak = row_leaks(row).get(metric)
    return None if leak is None else leak.chance


def primary_leak(leaks: dict[str, Leak]) -> Leak | None:
    """The row's headline metric: the attack's own when it has one, else the dCor probe."""
    return next((leaks[m] for m in PRIMARY if m in leaks), None)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

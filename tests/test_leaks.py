"""Chance levels and the two normalized leakages, shared by the report and the frontier."""

import numpy as np
import pytest

from report_rows import row
from secsplit.evaluation import frontier, leaks
from secsplit.evaluation.leaks import FULL_LEAK, chance_level, leak_vs_full, leak_vs_undefended


def test_leak_vs_full_runs_from_chance_to_a_perfect_score_clipped():
    assert leak_vs_full(0.775, chance=0.55) == pytest.approx(0.5)  # (0.775 - 0.55) / (1 - 0.55)
    assert leak_vs_full(0.40, chance=0.55) == 0.0                  # below chance is no leak
    assert leak_vs_full(1.2, chance=0.55) == 1.0
    assert leak_vs_full(0.035, chance=0.07, full=FULL_LEAK["mse"]) == pytest.approx(0.5)  # MSE: lower leaks more


def test_leak_vs_undefended_runs_from_chance_to_the_undefended_run_unclipped():
    assert leak_vs_undefended(0.7, chance=0.5, undefended=0.9) == pytest.approx(0.5)
    assert leak_vs_undefended(0.3, chance=0.5, undefended=0.9) == pytest.approx(-0.5)  # a fooled attack
    assert leak_vs_undefended(1.0, chance=0.5, undefended=0.9) == pytest.approx(1.25)  # leaks more than none
    assert leak_vs_undefended(0.6, chance=0.5, undefended=0.5) is None                 # nothing to stop
    assert leak_vs_undefended(0.6, chance=0.5, undefended=0.45) is None
    assert leak_vs_undefended(0.04, chance=0.07, undefended=0.01, full=0.0) == pytest.approx(0.5)


def test_the_frontier_and_the_report_normalize_one_row_with_the_same_chance():
    undefended = row(leakage={"leak_auc": 0.68, "chance_auc": 0.52})
    defended = row(defense="marvell", leakage={"leak_auc": 0.60, "chance_auc": 0.52})
    assert chance_level(defended, "leak_auc") == 0.52
    assert frontier.attack_chance([undefended], "norm-attack", "leak_auc") == 0.52
    assert frontier.normalized(0.60, 0.52, 0.68) == pytest.approx(0.5)           # (0.60 - 0.52) / (0.68 - 0.52)
    assert leaks.row_leaks(defended)["leak_auc"].normalized == pytest.approx(1 / 6)  # (0.60 - 0.52) / (1 - 0.52)


def test_label_accuracy_chance_is_the_attacks_own_else_the_majority_training_class():
    from secsplit.evaluation.build import load_run_data
    from secsplit.description import RunDescription

    own = row(attack="gradient-clustering", leakage={"label_accuracy": 0.9, "chance_accuracy": 0.3})
    assert chance_level(own, "label_accuracy") == 0.3
    bare = row(attack="gradient-clustering", leakage={"label_accuracy": 0.9})
    labels = load_run_data(RunDescription.from_dict({"data": "breast-cancer-imbalanced"})).y_train.numpy()
    assert chance_level(bare, "label_accuracy") == pytest.approx(np.bincount(labels).max() / len(labels))


def test_image_chance_is_the_mean_training_image_against_each_seeds_own_targets():
    from secsplit.data import load_data

    rows = [row("whitebox-inversion", dataset="digits", seed=s, leakage={"ssim": 0.9, "mse": 0.01, "num_targets": 8})
            for s in (0, 1)]
    by_seed = []
    for seed in (0, 1):  # by hand: MSE of the mean training image against the last 8 test images
        data = load_data("digits", seed=seed)
        mean = data.x_train.numpy().mean(0)
        by_seed.append(float(((data.x_test.numpy()[-8:] - mean) ** 2).mean()))
    assert by_seed[0] != pytest.approx(by_seed[1])  # the seeds attack different targets
    assert [chance_level(r, "mse") for r in rows] == pytest.approx(by_seed, rel=1e-5)
    assert frontier.attack_chance(rows, "whitebox-inversion", "mse") == pytest.approx(sum(by_seed) / 2, rel=1e-5)

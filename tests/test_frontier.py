"""The frontier: config checks, normalization, the bisection on a monotone knob, and a resumable CLI run."""

import json
import math

import pytest

from secsplit.errors import ConfigError
from secsplit.evaluation.cli import main
from secsplit.evaluation.frontier import FAMILIES, build_frontier_config, normalized, search_family

BASE = {"data": "breast-cancer-imbalanced", "model": "mlp", "epochs": 2, "batch_size": 32,
        "topology": {"name": "vanilla", "label_source": "label_owner"}, "attacks": ["norm-attack"]}


def test_config_defaults_to_the_families_for_the_attacks_target():
    config = build_frontier_config(dict(BASE))
    assert set(config.families) == {n for n, f in FAMILIES.items() if f.target == "labels"}
    assert config.budget == 0.01


@pytest.mark.parametrize("change,match", [
    ({"defenses": ["nopeek"]}, "searches the defenses itself"),
    ({"frontier": {"families": ["bogus"]}}, "unknown frontier family"),
    ({"frontier": {"budget": 2}}, "budget"),
    ({"frontier": {"colour": 1}}, "unknown key"),
    ({"attacks": []}, "at least one attack"),
])
def test_bad_frontier_files_are_one_line_errors(change, match):
    with pytest.raises(ConfigError, match=match):
        build_frontier_config({**BASE, **change})


def test_normalized_is_zero_at_chance_and_one_undefended():
    assert normalized(0.5, 0.5, 0.9) == 0
    assert normalized(0.9, 0.5, 0.9) == 1
    assert normalized(0.7, 0.7, 0.7) is None


class FakeRunner:
    """Utility and leakage fall with log(strength): utility loss = 0.02 * (log10 v + 2), leakage = 1 - that * 10."""

    def __init__(self):
        self.tried = []

    def point(self, spec):
        value = float(spec.split("=")[1])
        self.tried.append(value)
        loss = 0.02 * (math.log10(value) + 2)
        return {"defense": spec, "utility": 0.9 - loss, "utility_sd": 0.0, "rows": [],
                "leakage": {"a": {"metric": "ssim", "mean": 1 - 10 * loss, "sd": 0.0}}}


def test_bisection_finds_the_strongest_setting_within_budget():
    runner = FakeRunner()
    family = FAMILIES["nopeek"]  # 0.01 .. 10, stronger upwards
    points = search_family(runner, family, lambda v: f"nopeek:alpha={v}", baseline_utility=0.9, budget=0.03, trials=8)
    feasible = [p for p in points if p["feasible"]]
    best = max(p["value"] for p in feasible)
    assert runner.tried[0] == 10  # the strongest first
    assert 10 ** -0.5 * 0.9 < best <= 10 ** -0.5 * 1.0001  # loss(v) = 0.03 at v = 10^-0.5
    assert all(p["utility_loss"] <= 0.03 + 1e-12 for p in feasible)


def test_strongest_setting_feasible_ends_the_search():
    runner = FakeRunner()
    points = search_family(runner, FAMILIES["nopeek"], lambda v: f"nopeek:alpha={v}", baseline_utility=0.9,
                           budget=0.5, trials=5)
    assert len(points) == 1 and points[0]["feasible"]


def test_cli_writes_the_table_and_resumes(tmp_path, capsys):
    config = tmp_path / "f.toml"
    config.write_text('data = "breast-cancer-imbalanced"\nmodel = "mlp"\nepochs = 2\nbatch_size = 32\n'
                      'topology = { name = "vanilla", label_source = "label_owner" }\nattacks = ["norm-attack"]\n'
                      '[frontier]\nbudget = 0.05\ntrials = 1\nfamilies = ["gradient-noise"]\n')
    out = tmp_path / "out"
    assert main(["frontier", "--config", str(config), "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["trainings"] >= 2 and first["reused"] == 0
    (row,) = first["rows"]
    assert row["defense"] == "gradient-noise" and row["chance"] is not None
    assert {"frontier.md", "frontier.csv", "frontier.json", "runs.jsonl", "pareto-norm-attack.png"} <= {p.name for p in out.iterdir()}
    assert main(["frontier", "--config", str(config), "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["trainings"] == 0 and again["rows"][0]["leakage"] == row["leakage"]

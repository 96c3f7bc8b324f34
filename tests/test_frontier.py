"""The frontier: config checks, normalization, the bisection on a monotone knob, and a resumable CLI run."""

import json
import math

import pytest

from secsplit.errors import ConfigError
from secsplit.evaluation.cli import main
from secsplit.evaluation.frontier import FAMILIES, bisection, build_frontier_config, normalized

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


def search_family(runner, family, spec_for, *, baseline_utility, budget, trials):
    """The bisection driven point by point by ``runner.point`` (the frontier's own driver is search_in_pool)."""
    steps = bisection(family, budget=budget, trials=trials, baseline_utility=lambda: baseline_utility)
    value = next(steps)
    while True:
        try:
            value = steps.send(runner.point(spec_for(value)))
        except StopIteration as stop:
            return stop.value


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


def test_a_point_watched_by_several_attacks_has_one_utility_per_seed():
    from secsplit.evaluation.frontier import summarize_point

    rows = [{"seed": s, "attack": a, "utility": 0.9 + s / 100, "leakage": {"leak_auc": 0.6 + s / 10}}
            for s in (0, 1) for a in ("norm-attack", "cosine-attack")]
    point = summarize_point("x", rows)
    assert point["utility"] == pytest.approx(0.905)
    assert point["leakage"]["norm-attack"]["mean"] == pytest.approx(0.65)


def test_a_family_without_a_knob_is_one_point():
    runner = FakeRunner()
    points = search_family(runner, FAMILIES["max-norm"], lambda v: "max-norm:x=1", baseline_utility=0.9,
                           budget=0.0, trials=5)
    assert len(points) == 1 and len(runner.tried) == 1


def test_marvell_is_a_default_family_only_for_binary_labels():
    binary = build_frontier_config(dict(BASE))
    assert "marvell" in binary.families and "max-norm" in binary.families
    digits = build_frontier_config({**BASE, "data": "digits", "attacks": ["gradient-clustering"]})
    assert "marvell" not in digits.families and "cae" in digits.families


class SeedRunner:
    """Per-seed utilities: the setting 'bad' costs 0.5 points on seed 0 and 3 points on the other seeds."""

    seeds = (0, 1, 2)

    def point(self, spec):
        loss = {None: [0, 0, 0], "bad": [0.005, 0.03, 0.03]}[spec]
        utilities = [0.9 - x for x in loss]
        return {"defense": spec or "none", "utility": sum(utilities) / 3, "utility_sd": 0.0, "rows": [],
                "leakage": {"a": {"metric": "ssim", "mean": 0.9 if spec is None else 0.4, "sd": 0.01}}}


def test_confirm_seeds_rejudge_the_budget_on_more_seeds():
    from secsplit.evaluation.frontier import confirm_rows

    config = build_frontier_config({**BASE, "frontier": {"seeds": [0], "confirm_seeds": [0, 1, 2]}})
    assert config.confirm_seeds == (1, 2)  # the search seeds are not repeated
    row = {"attack": "a", "setting": "bad", "within_budget": True, "chance": 0.3, "leakage": 0.35}
    confirm_rows(config, [row], SeedRunner())
    assert row["seeds"] == [0, 1, 2] and row["confirmed"]
    assert row["utility_loss"] == pytest.approx(0.065 / 3)
    assert not row["within_budget"] and not row["reaches_chance"]
    assert row["normalized_leakage"] == pytest.approx((0.4 - 0.3) / (0.9 - 0.3))


@pytest.mark.parametrize("confirm,match", [
    (["norm-attack", "cosine-attack"], "one attack per attack"),
    (["cosine-attack"], "not the same attack"),
])
def test_confirm_attacks_must_pair_with_the_attacks(confirm, match):
    with pytest.raises(ConfigError, match=match):
        build_frontier_config({**BASE, "frontier": {"confirm_attacks": confirm}})


class StrongerAttackRunner:
    """The confirm attack ('a:full') finds more leakage than the search attack ('a') on the defended point."""

    seeds = (0,)
    base = None

    def point(self, spec):
        full = 0.95 if spec is None else 0.8
        rows = [{"seed": 0, "attack": "a:full", "utility": 0.9, "leakage": {"leak_auc": full, "chance_auc": 0.52}}]
        return {"defense": spec or "none", "utility": 0.9 if spec is None else 0.895, "utility_sd": 0.0, "rows": rows,
                "leakage": {"a:full": {"metric": "leak_auc", "mean": full, "sd": 0.0}}}


def test_confirm_attacks_judge_the_best_point_with_the_stronger_attack():
    from secsplit.evaluation.frontier import confirm_rows

    config = build_frontier_config(dict(BASE))
    row = {"attack": "a", "setting": "x", "within_budget": True, "chance": 0.5, "leakage": 0.53}
    confirm_rows(config, [row], StrongerAttackRunner(), {"a": "a:full"})
    assert row["confirm_attack"] == "a:full" and row["search_leakage"] == 0.53
    assert row["leakage"] == 0.8 and row["chance"] == 0.52 and not row["reaches_chance"]
    assert row["within_budget"]


def test_two_workers_find_the_same_frontier_as_one(tmp_path):
    from secsplit.evaluation.frontier import run_frontier

    raw = {**BASE, "epochs": 1, "frontier": {"budget": 0.05, "trials": 1, "seeds": [0], "confirm_seeds": [1],
                                             "families": ["gradient-noise"]}}
    serial = run_frontier(build_frontier_config(raw), tmp_path / "one", quiet=True)
    raw["frontier"]["workers"] = 2
    pooled = run_frontier(build_frontier_config(raw), tmp_path / "two", quiet=True)
    keys = ("defense", "setting", "utility_loss", "leakage", "within_budget", "seeds")
    assert [[r[k] for k in keys] for r in pooled["rows"]] == [[r[k] for k in keys] for r in serial["rows"]]
    assert pooled["trainings"] == serial["trainings"] and pooled["workers"] == 2
    assert pooled["points_per_family"] == serial["points_per_family"]
    again = run_frontier(build_frontier_config(raw), tmp_path / "two", quiet=True)  # resumes from runs.jsonl
    assert again["trainings"] == 0 and again["reused"] > 0


def test_workers_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="workers"):
        build_frontier_config({**BASE, "frontier": {"workers": 0}})


def test_a_stalled_attack_is_left_out_of_the_leakage_not_read_as_protection():
    from secsplit.evaluation.frontier import summarize_point

    rows = [{"seed": s, "attack": "w", "utility": 0.9, "status": "ok", "leakage": {"ssim": 0.9 + s / 100}} for s in (0, 1)]
    rows.append({"seed": 2, "attack": "w", "utility": 0.9, "status": "attack_stalled", "leakage": {"ssim": 0.004}})
    point = summarize_point("x", rows)
    assert point["leakage"]["w"]["mean"] == pytest.approx(0.905)
    assert point["stalled"] == {"w": 1} and point["utility"] == pytest.approx(0.9)

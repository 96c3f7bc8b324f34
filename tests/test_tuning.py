"""Tuned attacks: the search picks settings on held-back validation data and reports the winner."""

from __future__ import annotations

import pytest

from secsplit.attacks import ATTACKS
from secsplit.description import RunDescription
from secsplit.evaluation.audit_config import RunSpec
from secsplit.evaluation.build import build_run
from secsplit.evaluation.runner import execute_run
from secsplit.evaluation.tuning import grid_points, objective_of, spec_with, tune_attack

WhiteboxInversion = ATTACKS.lookup("whitebox-inversion")


def test_grid_points_and_spec_rewriting():
    assert grid_points({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert grid_points({"lr": (1e-3, 1e-1, "log")}) is None
    assert spec_with("whitebox-inversion:steps=5", lr=0.1) == "whitebox-inversion:steps=5,lr=0.1"
    assert objective_of({"ssim": 0.5, "mse": 0.1}) == ("ssim", 0.5)
    assert objective_of({"mse": 0.1}) == ("mse", -0.1)


@pytest.fixture
def crippled_whitebox(monkeypatch):
    """White-box inversion whose declared settings barely move (2 steps); the space offers real budgets."""
    monkeypatch.setattr(WhiteboxInversion, "search_space", {"steps": [2, 300]})
    return "whitebox-inversion:max_targets=4,lr=0.05"


def test_tuning_finds_the_stronger_setting_without_reading_the_targets(crippled_whitebox, monkeypatch):
    d = RunDescription.from_dict({"data": "mnist", "model": "lenet", "cuts": ["relu1"], "epochs": 0,
                                  "attacks": [crippled_whitebox + ",steps=2"]})
    # the declared steps=2 is fixed in the spec, so it is not searched: nothing to tune
    run = build_run(d, all_seats=False)
    (spec, seat), attack = next(iter(run.attacks.items()))
    outcome = tune_attack(spec, seat_params={}, topology=run.topology, dataset=run.dataset, seed=0)
    assert outcome.skipped == "the attack declares no search space"
    # without the fixed steps, the search tries the declared default and both grid points on validation images
    seen = []
    original = WhiteboxInversion.result

    def spy(self):
        seen.append(self.targets)
        return original(self)

    monkeypatch.setattr(WhiteboxInversion, "result", spy)
    outcome = tune_attack(crippled_whitebox, seat_params={}, topology=run.topology, dataset=run.dataset, seed=0)
    assert outcome.sampler == "grid" and len(outcome.trials) == 3 and outcome.objective == "ssim"
    assert outcome.best_params == {"steps": 300}
    validation = run.dataset.x_train[:16]
    assert all(t.equal(validation) for t in seen)  # every trial attacked validation images only
    assert not any(t.shape == run.dataset.x_test.shape or t.equal(run.dataset.x_test[-4:]) for t in seen)


def test_a_tuned_audit_row_reports_the_winner_and_beats_the_declared_setting(monkeypatch):
    monkeypatch.setattr(WhiteboxInversion, "search_space", {"steps": [2, 300]})

    def row(tune: bool):
        d = RunDescription.from_dict({"data": "mnist", "model": "lenet", "cuts": ["relu1"], "epochs": 0,
                                      "attacks": ["whitebox-inversion:max_targets=4,lr=0.05"], "tune": tune,
                                      "probe_samples": 8})
        return execute_run(RunSpec(d))

    monkeypatch.setattr(WhiteboxInversion, "__init__", _with_default_steps(WhiteboxInversion.__init__, 2))
    (plain,) = row(False)
    (tuned,) = row(True)
    assert plain["status"] == tuned["status"] == "ok" and plain["seat"] == tuned["seat"] == "server"
    assert tuned["tuning"]["best_params"] == {"steps": 300} and tuned["tuning"]["trials"] == 3
    assert tuned["leakage"]["ssim"] > plain["leakage"]["ssim"] + 0.1
    assert tuned["leakage_declared"]["ssim"] == pytest.approx(plain["leakage"]["ssim"])
    assert tuned["config_hash"] != plain["config_hash"]


def _with_default_steps(init, steps):
    def patched(self, *args, **kwargs):
        kwargs.setdefault("steps", steps)
        init(self, *args, **kwargs)
    return patched


def test_a_tuned_audit_runs_every_setting_of_a_watching_label_attack_as_its_own_row():
    """Label attacks watch training, so trials cannot rerun them; in a tuned audit each setting of the
    norm attack's space watches the same training and is reported, none picked by reading the truth."""
    def rows(tune: bool):
        d = RunDescription.from_dict({"data": "breast-cancer-imbalanced", "epochs": 3, "batch_size": 32,
                                      "topology": {"name": "vanilla", "label_source": "label_owner"},
                                      "attacks": ["norm"], "tune": tune, "probe_samples": 32})
        return execute_run(RunSpec(d))

    plain = rows(False)
    tuned = rows(True)
    assert [r["attack"] for r in plain] == ["norm"]
    assert [r["attack"] for r in tuned] == ["norm", "norm:score=spectral"]
    assert all(r["status"] == "ok" for r in tuned) and tuned[1]["tuning"] == {"variant_of": "norm"}
    assert len({r["config_hash"] for r in tuned}) == 2 and tuned[0]["attack_key"] == tuned[1]["attack_key"]
    # the same training watched by both: same utility; the label-free spectral score is the stronger
    assert tuned[0]["utility"] == tuned[1]["utility"] == plain[0]["utility"]
    assert tuned[1]["leakage"]["leak_auc"] >= 0.95


@pytest.mark.parametrize("name", ATTACKS.names())
def test_an_attack_that_names_a_seat_option_accepts_it(name):
    """Tuning trials and every-seat audits seat an attack through its ``seat_option``; an attack whose
    seat is fixed declares None (model completion once named one it did not accept: a tuned audit failed)."""
    option = ATTACKS.lookup(name).seat_option
    assert option is None or option in ATTACKS.parameters(name)

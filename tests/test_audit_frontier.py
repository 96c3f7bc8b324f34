"""`frontier = {...}` in an audit file: the frontier search runs after the grid, reuses its rows, and feeds
the report (tables, Pareto plot, findings)."""

import json

import pytest

from secsplit.errors import ConfigError
from secsplit.evaluation.audit_config import build_audit_config
from secsplit.evaluation.cli import main

EXPERIMENT = {"data": "breast-cancer-imbalanced", "model": "mlp", "epochs": 2, "batch_size": 32,
              "topology": {"name": "vanilla", "label_source": "label_owner"}, "attacks": ["norm-attack"]}


def test_each_configuration_of_an_experiment_gets_a_frontier_searched_on_its_first_seed():
    raw = {"audit": {"seeds": [0, 1], "frontier": {"budget": 0.05, "trials": 1, "families": ["gradient-noise"]}},
           "experiment": [{**EXPERIMENT, "cuts": [["relu1"], ["relu2"]], "defenses": ["none", "max-norm"]},
                          {**EXPERIMENT, "frontier": False}]}
    config = build_audit_config(raw)
    assert len(config.frontiers) == 2  # two cuts; the second experiment opted out
    first = config.frontiers[0]
    assert first.seeds == (0,) and first.confirm_seeds == (1,) and first.budget == 0.05
    assert first.base.defenses == () and first.families == ("gradient-noise",)
    assert len({f.name for f in config.frontiers}) == 2 and "relu1" in first.name


def test_an_experiment_overrides_the_audit_frontier_settings():
    raw = {"audit": {"frontier": {"budget": 0.05, "trials": 1}},
           "experiment": [{**EXPERIMENT, "frontier": {"budget": 0.02, "families": ["max-norm"]}}]}
    (frontier,) = build_audit_config(raw).frontiers
    assert frontier.budget == 0.02 and frontier.trials == 1 and frontier.families == ("max-norm",)


@pytest.mark.parametrize("frontier,match", [({"colour": 1}, "unknown key"), ({"families": ["bogus"]}, "unknown frontier family"),
                                            (3, "frontier must be a table")])
def test_bad_frontier_settings_in_an_audit_fail_before_training(frontier, match):
    with pytest.raises(ConfigError, match=match):
        build_audit_config({"experiment": [{**EXPERIMENT, "frontier": frontier}]})


def test_the_audit_runs_the_frontier_reuses_its_undefended_run_and_reports_it(tmp_path, capsys):
    config = tmp_path / "audit.toml"
    config.write_text('[audit]\nname = "af"\nseeds = [0]\nfrontier = { budget = 0.05, trials = 1, families = ["max-norm"] }\n'
                      '[[experiment]]\ndata = "breast-cancer-imbalanced"\nmodel = "mlp"\nepochs = 2\nbatch_size = 32\n'
                      'topology = { name = "vanilla", label_source = "label_owner" }\ndefenses = ["none"]\n'
                      'attacks = ["norm-attack"]\n')
    out = tmp_path / "out"
    main(["audit", "--config", str(config), "--out", str(out), "--quiet", "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    (folder,) = (out / "frontier").iterdir()
    summary = json.loads((folder / "frontier.json").read_text())
    assert summary["reused"] == 1 and summary["trainings"] == 1  # the audit's undefended run stood in for its own
    assert [r["defense"] for r in summary["rows"]] == ["max-norm"] and summary["rows"][0]["chance"] is not None
    assert (folder / "pareto-norm-attack.png").is_file()
    # the audit's only defense is the frontier's: without the search the findings would have none
    assert findings[0]["best_defense"]["defense"] == "max-norm"
    assert "found by the frontier search" in findings[0]["sentences"][1]
    assert "Frontier af-e1" in (out / "results.md").read_text()
    assert "Defense frontier: norm-attack" in (out / "report.html").read_text()

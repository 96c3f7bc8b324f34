"""A run file audited as it is: `secsplit audit --config run.toml` on the file `train`, `launch` or `serve` take.

What must hold: the run is audited as written, its [parties] set aside (every party simulated here,
said on stderr); with no attacks named, every registered attack watches it, each active attack in a
run of its own and only where it applies; attacks are tuned unless the file says not; a defended run
is also audited undefended; an audit file's `attacks = "all"` expands the same way; `train`,
`attack` and `frontier` take a deployment file too.
"""

from __future__ import annotations

import json

import pytest

from secsplit.attacks import ATTACKS
from secsplit.evaluation.audit_config import build_audit_config
from secsplit.evaluation.build import create_attack_from_spec
from secsplit.evaluation.cli import main
from secsplit.evaluation.results import load_rows

PARTIES = '[parties]\nclient = "10.0.0.1:50051"\nserver = "10.0.0.2:50051"\n'


def _by_behaviour() -> tuple[set[str], set[str]]:
    passive, active = set(), set()
    for name in ATTACKS.names():
        behaviour = create_attack_from_spec(name).threat_model.behaviour
        (active if behaviour == "active" else passive).add(name)
    return passive, active


def _print_config(path, capsys) -> dict:
    assert main(["audit", "--print-config", str(path)]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_a_deployment_run_file_is_audited_with_every_attack_tuned_and_undefended_beside_it(tmp_path, capsys):
    path = tmp_path / "deployed.toml"
    path.write_text('data = "digits"\nmodel = "mlp"\nepochs = 3\ndefenses = ["nopeek:alpha=0.5"]\n' + PARTIES)
    grid, err = _print_config(path, capsys)
    assert "[parties] set aside" in err
    passive, active = _by_behaviour()
    assert active  # fsha: a hijacking server
    runs = grid["runs"]
    assert grid["name"] == "deployed"
    assert [r["defenses"] for r in runs] == [["nopeek:alpha=0.5"]] * (1 + len(active)) + [[]] * (1 + len(active))
    for block in (runs[: 1 + len(active)], runs[1 + len(active):]):
        assert set(block[0]["attacks"]) == passive  # the passive attacks watch one run together
        assert [set(r["attacks"]) for r in block[1:]] == [{name} for name in sorted(active)]
    assert all(r["tune"] is True and r["epochs"] == 3 and r["model"]["name"] == "mlp" for r in runs)


def test_named_attacks_and_tune_false_are_kept_and_no_epochs_means_convergence(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('data = "digits"\nattacks = ["norm-attack"]\ntune = false\n')
    grid, err = _print_config(path, capsys)
    assert err == ""
    (run,) = grid["runs"]
    assert run["attacks"] == ["norm-attack"] and "tune" not in run and run["defenses"] == []
    assert run["epochs"] == 40 and run["early_stopping"]["patience"] == 5


def test_an_active_attack_gets_no_run_where_it_does_not_apply():
    config = build_audit_config({"data": "breast-cancer", "epochs": 1}, origin="tabular.toml")
    (run,) = config.runs  # fsha reconstructs images: no run of its own on a table
    passive, _ = _by_behaviour()
    assert set(run.description.attacks) == passive


def test_all_in_an_audit_file_expands_per_grid_point_and_keeps_named_attacks():
    config = build_audit_config({"audit": {"epochs": 1}, "experiment": [
        {"data": "digits", "defenses": ["none", "max-norm"], "attacks": ["all", "norm-attack:attacker=server"]}]})
    passive, active = _by_behaviour()
    assert len(config.runs) == 2 * (1 + len(active))
    main_runs = [r.description for r in config.runs if len(r.description.attacks) > 1]
    assert len(main_runs) == 2
    for description in main_runs:
        assert description.attacks[0] == "norm-attack:attacker=server"
        assert set(description.attacks[1:]) == passive - {"norm-attack"}  # not twice


def test_a_key_of_neither_kind_is_one_line_naming_both(tmp_path, capsys):
    path = tmp_path / "typo.toml"
    path.write_text('[audits]\nname = "x"\n')
    assert main(["audit", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key(s) audits" in err and "[[experiment]]" in err and "[parties]" in err
    assert len(err.splitlines()) == 1


def test_train_and_attack_take_a_deployment_file(tmp_path, capsys):
    path = tmp_path / "deployed.toml"
    path.write_text('data = "digits"\nepochs = 1\n' + PARTIES)
    assert main(["train", "--config", str(path), "--print-config"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["data"]["source"] == "digits" and "[parties] set aside" in captured.err
    assert main(["attack", "norm", "--config", str(path), "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["attacks"] == ["norm-attack"]


def test_all_is_refused_outside_an_audit(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('data = "breast-cancer"\nepochs = 1\nattacks = ["all"]\n')
    assert main(["train", "--config", str(path)]) == 2
    assert "is for audits" in capsys.readouterr().err


def test_a_deployment_file_audited_end_to_end(tmp_path, capsys):
    path = tmp_path / "hospital.toml"
    path.write_text('data = "breast-cancer-imbalanced"\nmodel = "mlp"\nepochs = 2\nbatch_size = 32\n'
                    'defenses = ["max-norm"]\nattacks = ["norm-attack", "cosine-attack"]\ntune = false\n'
                    '[topology]\nname = "vanilla"\nlabel_source = "label_owner"\n' + PARTIES)
    out = tmp_path / "out"
    assert main(["audit", "--config", str(path), "--out", str(out), "--quiet"]) == 0
    rows = load_rows(out / "results.jsonl")
    own = [r for r in rows if r["run"]["defenses"] in ([], ["max-norm"])]  # the run, and the run undefended
    assert {(tuple(r["run"]["defenses"]), r["attack"]) for r in own} == {
        (d, a) for d in (("max-norm",), ()) for a in ("norm-attack", "cosine-attack")}
    assert all(r["status"] == "ok" and r["seat"] == "client" for r in rows)
    assert (out / "report.html").exists()
    assert "parties" not in json.loads((out / "audit-config.json").read_text())  # no addresses in the outputs
    # then each label-defense family is searched against the worst label attack, seated at the client
    searched = json.loads((out / "frontier" / "hospital-defenses" / "frontier.json").read_text())
    worst = max((r for r in rows if not r["run"]["defenses"]), key=lambda r: r["leakage"]["leak_auc"])
    assert {row["attack"] for row in searched["rows"]} == {f"{worst['attack']}:attacker=client"}
    families = {row["defense"] for row in searched["rows"]}
    assert {"max-norm", "gradient-noise", "label-dp"} <= families and "nopeek" not in families
    # each family's best setting is audited with every attack that leaked, and judged by all of them
    confirmed = searched["confirmed_in_audit"]
    assert confirmed == sorted({r["setting"] for r in searched["rows"] if r["within_budget"]})
    for setting in confirmed:
        assert {r["attack"] for r in rows if r["run"]["defenses"] == [setting]} == {"norm-attack", "cosine-attack"}
    findings = (out / "results.md").read_text().split("## Results")[0]
    assert "found by the frontier search" not in findings
    assert "which takes the worst leak over every attack and seat" in findings or "No defense tried" in findings


def test_an_active_attacks_run_never_stands_for_the_honest_run_in_the_model_cache():
    """FSHA's hijacking server trains the client toward its own decoder: its weights are not the honest
    run's, so its training key (the model cache's and the frontier's reuse key) differs."""
    config = build_audit_config({"data": "digits", "epochs": 1, "frontier": False}, origin="run.toml")
    honest, hijacked = config.runs
    assert hijacked.description.attacks == ("fsha",)
    assert honest.training_key() != hijacked.training_key()
    assert honest.training_key() == build_audit_config(
        {"data": "digits", "epochs": 1, "attacks": ["norm-attack"], "frontier": False}).runs[0].training_key()


def test_the_defense_search_takes_each_seats_worst_attack_at_its_tuned_settings():
    from secsplit.description import RunDescription
    from secsplit.evaluation.verdict import MIN_LEAK, worst_attacks

    undefended = RunDescription.from_dict({"data": "breast-cancer", "attacks": ["norm-attack", "cosine-attack"]})
    other = RunDescription.from_dict({"data": "breast-cancer", "defenses": ["max-norm"], "attacks": ["norm-attack"]})

    def row(attack, seat, auc, *, description=undefended, status="ok", tuning=None):
        return {"run_key": description.key(), "run": description.to_dict(), "status": status, "attack": attack,
                "seat": seat, "leakage": {"leak_auc": auc, "chance_auc": 0.5}, "tuning": tuning}

    rows = [row("norm-attack", "client", 0.90, tuning={"best_params": {"score": "spectral"}}),
            row("cosine-attack", "client", 0.80),
            row("norm-attack", "server", 0.5 + 0.5 * MIN_LEAK / 2),  # under MIN_LEAK of the way to 1: no search
            row("cosine-attack", "client", 1.0, status="failed"),
            row("cosine-attack", "client", 1.0, description=other)]
    worst = worst_attacks(rows, undefended)
    assert list(worst) == [("labels", "client")]
    chosen = worst[("labels", "client")]
    assert chosen.spec == "norm-attack:score=spectral,attacker=client" and chosen.leak == pytest.approx(0.8)


def test_rows_name_the_labels_the_protocol_sends():
    from secsplit.description import RunDescription
    from secsplit.evaluation.audit_config import RunSpec
    from secsplit.evaluation.runner import execute_run

    def labels_sent(**topology):
        description = RunDescription.from_dict({"data": "breast-cancer", "epochs": 1, "topology": topology})
        (row,) = execute_run(RunSpec(description))
        return row["labels_sent"]

    assert labels_sent(name="vanilla") == ["client -> server"]  # label_source = "data_owner": sent each batch
    assert labels_sent(name="vanilla", label_source="label_owner") == []
    assert labels_sent(name="ushape") == []

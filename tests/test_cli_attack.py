"""`secsplit attack`: one configuration, one attack; threat model and metrics under the audit's names,
a clear reason and exit code 3 when the attack does not apply, one-line errors for bad names."""

import json

import pytest

from secsplit.evaluation.cli import COMMANDS, main
from secsplit.evaluation.commands.attack import NOT_APPLICABLE_EXIT


def _json(capsys, argv):
    code = main(["attack", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_attack_is_a_subcommand():
    assert "attack" in COMMANDS


def test_reconstruction_attack_json_has_threat_model_metrics_and_saves_the_grid(capsys, tmp_path):
    code, row = _json(capsys, ["whitebox-inversion", "--dataset", "digits", "--model", "lenet", "--cut", "relu1",
                               "--epochs", "1", "--param", "steps=50", "--images", str(tmp_path)])
    assert code == 0 and row["status"] == "ok"
    assert row["attack"] == "whitebox-inversion:steps=50"
    assert row["threat_model"].startswith("honest-but-curious server after the inputs")
    assert row["training"]["dataset"] == "digits" and row["training"]["model"] == "lenet" and row["cuts"] == ["relu1"]
    metrics = row["leakage"]
    assert {"mse", "psnr", "ssim"} <= set(metrics) and -1 <= metrics["ssim"] <= 1 and metrics["mse"] >= 0
    assert metrics["steps"] == 50  # the attack's own parameters come back with its metrics
    assert 0 <= row["utility"] <= 1 and 0 <= row["dcor"] <= 1
    grid = tmp_path / row["grid"].rsplit("/", 1)[-1]
    assert grid.exists() and grid.stat().st_size > 0


def test_label_attack_human_output(capsys):
    code = main(["attack", "norm-attack", "--dataset", "breast-cancer", "--label-source", "label_owner", "--epochs", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "threat model honest-but-curious client after the labels" in out
    assert "leak_auc" in out and "chance_auc" in out and "utility" in out


def test_label_attack_json_metric_names_match_the_audit(capsys):
    code, row = _json(capsys, ["norm-attack", "--dataset", "breast-cancer", "--label-source", "label_owner"])
    assert code == 0 and 0.5 <= row["leakage"]["leak_auc"] <= 1 and "chance_auc" in row["leakage"]


def test_fsha_runs_from_the_cli(capsys):
    code, row = _json(capsys, ["fsha", "--dataset", "digits", "--model", "lenet", "--cut", "relu1", "--epochs", "1"])
    assert code == 0 and row["status"] == "ok" and row["threat_model"].startswith("active server")
    assert row["leakage"]["hijacked_steps"] == 23 and "ssim" in row["leakage"]


def test_hijack_detection_stops_fsha_from_the_cli(capsys):
    code, row = _json(capsys, ["fsha", "--dataset", "digits", "--model", "lenet", "--cut", "relu1", "--epochs", "1",
                               "--defense", "hijack-detection"])
    assert code == 0 and "hijack-detection" in row["stopped"]
    assert row["defense_report"][0]["detected"] is True
    # the client refused inference on the targets: nothing known to score against, the fallback is reported
    assert "ssim" not in row["leakage"] and "hijack-detection" in row["leakage"]["client_stopped"]


def test_a_failed_run_prints_the_error_and_exits_1(capsys, monkeypatch):
    from secsplit.training import Trainer

    def broken_fit(self, dataset):
        raise RuntimeError("the client's disk is full")

    monkeypatch.setattr(Trainer, "fit", broken_fit)
    code = main(["attack", "unsplit", "--dataset", "digits", "--model", "lenet", "--epochs", "1"])
    assert code == 1 and "failed: RuntimeError: the client's disk is full" in capsys.readouterr().err


def test_not_applicable_prints_the_reason_and_exits_3(capsys):
    code = main(["attack", "norm-attack", "--dataset", "digits", "--topology", "ushape"])
    captured = capsys.readouterr()
    assert code == NOT_APPLICABLE_EXIT == 3
    assert "not applicable: labels never leave the attacker's reach" in captured.err
    assert "threat model honest-but-curious client after the labels" in captured.out
    code, row = _json(capsys, ["whitebox-inversion", "--dataset", "breast-cancer"])
    assert code == 3 and row["status"] == "not_applicable" and "tabular" in row["reason"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["nope", "--dataset", "digits"], "unknown attack 'nope'; valid names:"),
        (["norm-attack", "--param", "foo=1", "--dataset", "digits"], "bad parameters for attack 'norm-attack': foo"),
        (["norm-attack:seed=1", "--param", "seed=2"], "attack parameter 'seed' given twice"),
        (["norm-attack", "--dataset", "imagenet"], "unknown data set 'imagenet'"),
        (["norm-attack", "--dataset", "digits", "--defense", "bogus"], "unknown defense 'bogus'"),
    ],
)
def test_bad_names_give_one_line_error_and_exit_2(capsys, argv, message):
    assert main(["attack", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_attack_moved_to_the_server_seat_reports_that_threat_model(capsys):
    code, row = _json(capsys, ["gradient-clustering:attacker=server", "--dataset", "digits", "--topology", "ushape",
                               "--epochs", "1"])
    assert code == 0 and row["threat_model"].startswith("honest-but-curious server after the labels")
    assert row["leakage"]["label_accuracy"] > 0.9  # U-shape's tail gradient gives the labels away

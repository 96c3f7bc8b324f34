"""End-to-end CLI: train prints results, list shows components, bad input is one line + exit 2."""

import json
import subprocess
import sys

import pytest

from secsplit.evaluation.cli import main


def test_train_json_summary(capsys):
    code = main(["train", "--dataset", "digits", "--topology", "ushape", "--epochs", "2", "--json", "--device", "cpu"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["topology"] == "ushape" and summary["model"] == "mlp"
    assert 0.5 < summary["test_accuracy"] <= 1.0
    assert summary["client_bytes_sent"] > 0 and summary["client_bytes_received"] > 0
    assert len(summary["history"]) == 2
    assert summary["flops"]["train"]["client"] > 0 and summary["flops"]["train"]["server"] > 0


def test_train_human_summary(capsys):
    assert main(["train", "--dataset", "breast-cancer", "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "client -> others" in out and "wall time" in out


def test_list_shows_every_kind_of_component(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["mnist", "digits", "breast-cancer", "lenet", "mlp", "resnet", "vgg", "vanilla", "ushape", "pool1",
                 "norm-attack", "whitebox-inversion", "honest-but-curious server after the inputs", "nopeek"]:
        assert name in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--dataset", "imagenet"], "unknown data set 'imagenet'"),
        (["train", "--dataset", "digits", "--model", "gpt"], "unknown model 'gpt'"),
        (["train", "--dataset", "digits", "--topology", "ring"], "unknown topology 'ring'"),
        (["train", "--dataset", "digits", "--cut", "nowhere"], "nowhere"),
        (["train", "--dataset", "digits", "--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (["train", "--epochs", "0"], "expected a positive integer"),
        (["train", "--lr", "-1"], "expected a positive number"),
        (["train", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_input_gives_one_line_error_and_exit_2(argv, message):
    run = subprocess.run([sys.executable, "-m", "secsplit.evaluation", *argv], capture_output=True, text=True)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_version_and_exit_codes_in_help():
    run = subprocess.run([sys.executable, "-m", "secsplit.evaluation", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "secsplit 0.1.0"
    help_text = subprocess.run([sys.executable, "-m", "secsplit.evaluation", "--help"], capture_output=True, text=True).stdout
    for line in ("0  ok", "1  failure", "2  bad input", "3  not applicable"):
        assert line in help_text


@pytest.mark.parametrize("command", ["audit", "train", "report"])
def test_an_unknown_flag_is_the_subcommands_error(command):
    argv = [command, "--bogus"] + (["results.jsonl"] if command == "report" else [])
    run = subprocess.run([sys.executable, "-m", "secsplit.evaluation", *argv], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.startswith(f"secsplit {command}: error: unrecognized arguments: --bogus")
    assert len(run.stderr.strip().splitlines()) == 1


def test_building_the_parser_imports_no_heavy_library():
    code = ("import sys; from secsplit.evaluation.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib', 'scipy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_attack_takes_the_short_names_python_takes():
    from secsplit.attacks import get
    from secsplit.evaluation.commands.attack import attack_spec

    assert get("norm").name == "norm-attack"
    assert attack_spec("norm", []) == "norm-attack" and attack_spec("cosine:seed=1", []) == "cosine-attack:seed=1"


def test_train_reports_the_leakage_probe_and_epsilon(capsys):
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--defense", "noise:mech=gaussian,clip=5,scale=1",
            "--device", "cpu"]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    probe = summary["leakage_probe"]
    assert probe["n"] == 256 and 0 < probe["dcor"] <= 1 and -1 <= probe["dcor_unbiased"] < probe["dcor"]
    assert summary["epsilon"]["composed"] > 0 and summary["epsilon"] == summary["defenses"][0]["epsilon"]
    assert main([*argv, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "leakage probe      dCor" in out and "between 256 test inputs" in out and "epsilon" in out


def test_audit_json_prints_only_the_summary_and_tables_only_when_asked(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text('[audit]\nname = "tiny"\nepochs = 1\nprobe_samples = 64\n\n[[experiment]]\n'
                      'dataset = "breast-cancer-imbalanced"\nmodel = "mlp"\nlabel_source = "label_owner"\n'
                      'batch_size = 32\ndefenses = ["none", "max-norm"]\nattacks = ["norm-attack"]\n')
    audit = [sys.executable, "-m", "secsplit.evaluation", "audit", "--config", str(config), "--out", str(tmp_path / "out")]
    run = subprocess.run([*audit, "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(run.stdout)  # the whole of stdout is one JSON object
    assert summary["new_rows"] == 2 and summary["rows_by_status"] == {"ok": 2}
    phases = summary["worker_seconds"]  # two fresh trainings; the phases lie within the runs' time
    assert 0 < phases["training"] <= phases["total"] and phases["tuning"] == 0
    assert phases["training"] + phases["attacks"] <= phases["total"] + 0.1
    assert summary["paths"]["html"].endswith("report.html") and summary["paths"]["results"].endswith("results.jsonl")
    (finding,) = summary["findings"]
    assert finding["worst_leak"]["attack"] == "norm-attack" and finding["worst_leak"]["seat"] == "client"
    quiet = subprocess.run([*audit, "--quiet"], capture_output=True, text=True, check=True).stdout
    assert "| defense |" not in quiet and "report:" in quiet and "worst:" in quiet
    assert "time:    0 s of worker time" in quiet  # every run was done: nothing trained or attacked again
    tables = subprocess.run([*audit, "--quiet", "--print-tables"], capture_output=True, text=True, check=True).stdout
    assert "### norm-attack from the client seat" in tables

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

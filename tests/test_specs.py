"""Component specs (name:key=value,...) and the CLI's --defense."""

import json

import pytest

from secsplit.defenses import ActivationNoise, NoPeek, defense_from_spec
from secsplit.errors import ConfigError, UnknownNameError
from secsplit.evaluation.cli import main
from secsplit.specs import parse_spec


def test_parse_spec_types_values():
    assert parse_spec("noise:mechanism=laplace,scale=0.5,clip=1,at_eval=false") == (
        "noise", {"mechanism": "laplace", "scale": 0.5, "clip": 1, "at_eval": False})
    assert parse_spec("ushape") == ("ushape", {})
    assert parse_spec("dpsgd: noise-multiplier = 1.1 ") == ("dpsgd", {"noise_multiplier": 1.1})


@pytest.mark.parametrize("spec,message", [("", "empty component spec"), ("noise:scale", "expected key=value"),
                                          ("noise:scale=1,scale=2", "given twice")])
def test_bad_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


def test_defense_from_spec_with_alias_and_errors():
    noise = defense_from_spec("noise:mech=gaussian,scale=2,clip=1")
    assert isinstance(noise, ActivationNoise) and noise.mechanism == "gaussian" and noise.scale == 2
    assert isinstance(defense_from_spec("nopeek:alpha=0.5"), NoPeek)
    with pytest.raises(ConfigError, match="bad parameters for defense 'nopeek'.*valid parameters: alpha, max_grad_norm"):
        defense_from_spec("nopeek:beta=1")
    with pytest.raises(UnknownNameError, match="unknown defense 'magic'"):
        defense_from_spec("magic:x=1")


def test_train_with_defenses_reports_them(capsys):
    argv = ["train", "--dataset", "digits", "--epochs", "2", "--json", "--defense", "nopeek:alpha=0.5",
            "--defense", "noise:mech=laplace,scale=0.5,clip=1"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    names = [d["defense"] for d in summary["defenses"]]
    assert names == ["nopeek", "noise"]
    eps = summary["defenses"][1]["epsilon"]
    assert eps["per_release"] == pytest.approx(4.0) and eps["releases"] == 2 and eps["composed"] == pytest.approx(8.0)


def test_train_with_a_bad_defense_is_one_line_exit_2(capsys):
    assert main(["train", "--dataset", "digits", "--defense", "noise:mech=laplace"]) == 2
    err = capsys.readouterr().err
    assert "exactly one of scale= or epsilon=" in err and len(err.strip().splitlines()) == 1

"""docs/own-data.md, end to end: a user's CSV -> train -> vertical split by column names -> audit report.

The commands are the guide's own (run through the installed ``secsplit`` entry point where the guide
shows a shell command), on a CSV this test writes: not a built-in data set.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from secsplit.evaluation.cli import main

FEATURES = ["age", "bmi", "glucose", "insulin", "pressure", "skin"]


def _secsplit(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("secsplit", path=str(Path(sys.executable).parent)) or "secsplit"
    return subprocess.run([exe, *argv], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def patients(tmp_path) -> Path:
    """patients.csv: an id, six numeric features, a categorical column, a text outcome that depends on them."""
    rng = np.random.default_rng(0)
    n = 240
    x = rng.normal(size=(n, len(FEATURES)))
    sex = rng.choice(["F", "M"], size=n)
    risk = x[:, 0] + 0.8 * x[:, 2] - 0.6 * x[:, 4] + 0.5 * (sex == "M")
    outcome = np.where(risk > 0, "sick", "healthy")
    path = tmp_path / "patients.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["patient_id", *FEATURES, "sex", "outcome"])
        for i in range(n):
            writer.writerow([5000 + i, *[f"{v:.5f}" for v in x[i]], sex[i], outcome[i]])
    return path


def test_the_guide_trains_a_csv_then_a_vertical_split_then_audits_it(patients):
    folder = patients.parent
    # 1. train on the file
    run = _secsplit("train", "--data", "patients.csv", "--label", "outcome", "--id-column", "patient_id",
                    "--data-option", "categorical=onehot", "--epochs", "20", "--batch-size", "32", "--json", cwd=folder)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["dataset"] == "patients" and summary["test_accuracy"] >= 0.8
    assert summary["run"]["data"] == {"source": "patients.csv", "label": "outcome", "id": "patient_id",
                                      "categorical": "onehot"}
    # 2. a vertical split by column names, from a run file
    (folder / "vertical.toml").write_text(
        'epochs = 20\nbatch_size = 32\n\n[data]\nsource = "patients.csv"\nlabel = "outcome"\nid = "patient_id"\n'
        'categorical = "onehot"\n\n[topology]\nname = "vertical"\n'
        'views = [["age", "bmi", "glucose", "sex"], ["insulin", "pressure", "skin"]]\n')
    run = _secsplit("train", "--config", "vertical.toml", "--json", cwd=folder)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["topology"] == "vertical" and summary["test_accuracy"] >= 0.75
    # client0 holds age, bmi, glucose and both one-hot sex columns: 5 inputs into the MLP's first layer
    assert summary["parties"]["client0"]["parameters"] == 5 * 64 + 64
    assert summary["parties"]["client1"]["parameters"] == 3 * 64 + 64
    # 3. audit the file: every row stores its full run description
    (folder / "audit.toml").write_text(
        '[audit]\nname = "patients"\nseeds = [0, 1]\nepochs = 5\nbatch_size = 32\n\n[[experiment]]\n'
        'data = { source = "patients.csv", label = "outcome", id = "patient_id", categorical = "onehot" }\n'
        'topology = { name = "vanilla", label_source = "label_owner" }\n'
        'defenses = ["none", "max-norm"]\nattacks = ["norm-attack"]\n')
    run = _secsplit("audit", "--config", "audit.toml", "--out", "results", "--quiet", cwd=folder)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (folder / "results" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert {r["run"]["seed"] for r in rows} == {0, 1} and all(r["run"]["data"]["source"] == "patients.csv" for r in rows)
    assert all(0.5 <= r["leakage"]["leak_auc"] <= 1 for r in rows)
    assert (folder / "results" / "report.html").stat().st_size > 1000
    assert "patients.csv" in (folder / "results" / "results.md").read_text()


def test_print_config_shows_the_description_and_the_grid(patients, capsys):
    folder = patients.parent
    assert main(["train", "--data", str(patients), "--label", "outcome", "--topology", "splitfed", "--option",
                 "clients=4", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["topology"] == {"name": "splitfed", "clients": 4} and printed["data"]["label"] == "outcome"
    (folder / "grid.toml").write_text(
        f'[audit]\nseeds = [0, 1, 2]\n[[experiment]]\ndata = {{ source = "{patients.as_posix()}", label = "outcome", '
        'categorical = "onehot" }\ntopology = { name = "splitfed", clients = [10, 100] }\n')
    assert main(["audit", "--print-config", str(folder / "grid.toml")]) == 0
    grid = json.loads(capsys.readouterr().out)["runs"]
    assert sorted((r["seed"], r["topology"]["clients"]) for r in grid) == [(s, c) for s in (0, 1, 2) for c in (10, 100)]
    assert not (folder / "audit-results").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("argv, message", [
    (["--defense", "nopeek:alpha=abc"], "nopeek: alpha must be a number, got 'abc'"),
    (["--topology", "vertical", "--option", "k=abc"], "vertical: k must be an integer or none, got 'abc'"),
    (["--label", "outcom"], "unknown label column 'outcom'; columns: patient_id, age"),
    (["--data-option", "colour=red"], "colour"),
])
def test_bad_flags_on_a_user_file_are_one_line_exit_2_and_write_nothing(patients, argv, message):
    folder = patients.parent
    base = ["train", "--data", "patients.csv", "--label", "outcome", "--data-option", "categorical=onehot",
            "--save", "model-out"]
    if "--label" in argv:
        base = base[:3] + base[5:]
    run = _secsplit(*base, *argv, cwd=folder)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (folder / "model-out").exists()


def test_a_csv_with_bad_cells_names_each_by_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\n,3,1\n4,x,0\nnan,5,1\n6,7,0\n")
    run = _secsplit("train", "--data", str(path), "--label", "y", cwd=tmp_path)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    for fragment in ("line 3, column 'a': ''", "line 4, column 'b': 'x'", "line 5, column 'a': 'nan'"):
        assert fragment in run.stderr


def test_an_audit_of_a_bad_file_stops_before_training_and_writes_nothing(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,y\n1,2,0\n,3,1\n4,5,0\n6,7,1\n")
    (tmp_path / "audit.toml").write_text('[[experiment]]\ndata = { source = "bad.csv", label = "y" }\n')
    run = _secsplit("audit", "--config", "audit.toml", "--out", "out", cwd=tmp_path)
    assert run.returncode == 2 and "line 3, column 'a'" in run.stderr and "audit.toml" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()

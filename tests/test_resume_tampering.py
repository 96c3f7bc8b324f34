"""Resuming from tampered or mismatched training state: one line naming the file and the field.

A run is checkpointed once; each case copies its state, edits one thing (or resumes with other
settings) and resumes. Nothing may end in a traceback or silently train on with settings the
state does not match: a changed --lr, optimizer, data or an added defense is refused (the run's
settings are recorded beside its checkpoints, run.json), as is another model's party state.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from secsplit.evaluation.cli import main

RUN = ["train", "--dataset", "digits", "--epochs", "1", "--quiet", "--checkpoint-every", "10"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ck") / "ck"
    assert main([*RUN, "--checkpoint-dir", str(directory)]) == 0
    return directory


def _edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _last_party_state(directory, party="client"):
    return sorted(directory.glob(f"{party}-step*.json"))[-1]


def _unrecorded(directory) -> None:
    (directory / "run.json").unlink()


CASES = {
    "step is text": (lambda d: _edit(d / "trainer-state.json", lambda s: s.update(global_step="x")), [],
                     r"trainer-state\.json: field global_step is invalid"),
    "step overflows": (lambda d: _edit(d / "trainer-state.json", lambda s: s.update(global_step=2**80)), [],
                       r"trainer-state\.json: field global_step is invalid"),
    "rng is garbage": (lambda d: _edit(d / "trainer-state.json", lambda s: s.update(rng="garbage")), [],
                       r"trainer-state\.json: field rng is invalid"),
    "rng wrong length": (lambda d: _edit(d / "trainer-state.json", lambda s: s.update(rng=[1, 2, 3])), [],
                         r"trainer-state\.json: field rng is not a random generator state"),
    "history edited": (lambda d: _edit(d / "trainer-state.json", lambda s: s.update(history="[1,")), [],
                       r"trainer-state\.json: field history is invalid"),
    "field removed": (lambda d: _edit(d / "trainer-state.json", lambda s: s.pop("sums")), [],
                      r"trainer-state\.json: field sums is missing"),
    "optimizer changed": (None, ["--optimizer", "sgd"], r"run\.json: field optimizer is .*adam.*sgd"),
    "lr changed": (None, ["--lr", "0.1"], r"run\.json: field optimizer is .*0\.001.*0\.1.* refused, not ignored"),
    "defense added": (None, ["--defense", "noise:scale=0.5"], r"run\.json: field defenses is \[\], this run has"),
    "data changed": (None, ["--dataset", "breast-cancer"], r"run\.json: field data is"),
    "run record edited": (lambda d: (d / "run.json").write_text("{not json"), [], r"run\.json is unreadable"),
    # states saved without a run record: the parties' own states are checked against this run
    "optimizer changed, no record": (_unrecorded, ["--optimizer", "sgd"],
                                     r"client-step\d+\.json: field optimizer\.param_groups\[0\] holds another kind"),
    "lr changed, no record": (_unrecorded, ["--lr", "0.1"],
                              r"client-step\d+\.json: field optimizer\.param_groups\[0\]\.lr is 0\.001, this run "
                              r"has 0\.1: .*a changed --lr is refused"),
    "party json edited": (lambda d: _edit(_last_party_state(d), lambda s: s["optimizer"]["param_groups"][0]
                                          .update(lr=5.0)), [], r"field optimizer\.param_groups\[0\]\.lr is 5\.0"),
    "another model, no record": (_unrecorded, ["--topology", "ushape"],
                                 r"client-step\d+\.safetensors: field segments\.\S+ holds .* the state of another "
                                 r"model or split"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampered_or_mismatched_state_is_one_line_naming_the_file_and_field(saved, tmp_path, capsys, case):
    edit, extra, expected = CASES[case]
    directory = tmp_path / "ck"
    shutil.copytree(saved, directory)
    if edit is not None:
        edit(directory)
    capsys.readouterr()
    code = main([*RUN[:3], "--epochs", "2", "--quiet", "--checkpoint-every", "10", "--checkpoint-dir", str(directory),
                 "--resume", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(directory) in err
    assert re.search(expected, err), err


def test_an_untouched_state_still_resumes(saved, tmp_path, capsys):
    directory = tmp_path / "ck"
    shutil.copytree(saved, directory)
    assert main([*RUN[:3], "--epochs", "2", "--quiet", "--checkpoint-every", "10", "--checkpoint-dir", str(directory),
                 "--resume"]) == 0

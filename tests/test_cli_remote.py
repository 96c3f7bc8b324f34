"""The CLI across processes: served inference in its own process, and the commands' refusals.

Served inference (`serve --role inference` in its own process, `predict --connect` here) answers
like local inference; `train --resume` continues a run in process. Training across processes runs
every party as `secsplit serve --role PARTY --config run.toml` (tests/test_transport_parties.py);
the retired client/server commands and resuming across processes are refused with one line
saying what to run instead.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys

import pytest

from secsplit.evaluation.cli import main


def _json_run(capsys, argv) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json", "--quiet"] if argv[0] == "train" else [*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@contextlib.contextmanager
def _serve(*argv, wait_s: float = 120.0):
    """Start `secsplit serve ... --listen 127.0.0.1:0` and yield (process, port)."""
    process = subprocess.Popen([sys.executable, "-m", "secsplit.evaluation", "serve", "--listen", "127.0.0.1:0", *argv],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # "listening on HOST:PORT as NAME (role)", or EOF if it failed
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not match:
            process.kill()
            pytest.fail(f"serve did not start: {line!r} {process.stderr.read()}")
        yield process, int(match.group(1))
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
        process.stdout.close()
        process.stderr.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    assert main(["certs", "init", "--out", str(directory), "--party", "server", "--party", "client"]) == 0
    return directory


def test_served_inference_answers_like_local_inference(pki, capsys, tmp_path):
    model = tmp_path / "model"
    _json_run(capsys, ["train", "--dataset", "digits", "--topology", "vanilla", "--epochs", "2", "--save", str(model)])
    local = _json_run(capsys, ["predict", "--checkpoint", str(model)])
    with _serve("--role", "inference", "--certs", str(pki), "--checkpoint", str(model)) as (_, port):
        served = _json_run(capsys, ["predict", "--checkpoint", str(model), "--connect", f"127.0.0.1:{port}",
                                    "--certs", str(pki)])
    assert served["accuracy"] == local["accuracy"] and served["correct"] == local["correct"]
    assert served["client_bytes_sent"] == local["client_bytes_sent"]
    assert served["transport"]["messages_sent"] >= 2  # hello + activations (+ bye)


def test_train_resume_continues_a_checkpointed_run(capsys, tmp_path):
    common = ["train", "--dataset", "digits", "--checkpoint-every", "10", "--checkpoint-dir", str(tmp_path / "ck")]
    first = _json_run(capsys, [*common, "--epochs", "1"])
    resumed = _json_run(capsys, [*common, "--epochs", "2", "--resume"])
    straight = _json_run(capsys, ["train", "--dataset", "digits", "--epochs", "2"])
    assert [r["test_accuracy"] for r in resumed["history"]] == [r["test_accuracy"] for r in straight["history"]]
    assert resumed["history"][0]["test_accuracy"] == first["history"][0]["test_accuracy"]


def test_resume_without_saved_state_is_a_clear_error(capsys, tmp_path):
    assert main(["train", "--dataset", "digits", "--resume", "--checkpoint-dir", str(tmp_path / "none")]) != 0
    assert "no saved training state" in capsys.readouterr().err


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("secsplit")
    return err


def test_the_retired_client_server_commands_say_what_to_run_instead(capsys, tmp_path):
    err = _one_line_error(capsys, ["train", "--dataset", "digits", "--connect", "127.0.0.1:50051", "--insecure"])
    assert "train --connect is retired" in err and "serve --role client --config run.toml" in err
    err = _one_line_error(capsys, ["serve", "--role", "server", "--insecure"])
    assert "needs --config RUN.toml with a [parties] table" in err
    plain = tmp_path / "run.toml"
    plain.write_text('data = "digits"\n')
    err = _one_line_error(capsys, ["serve", "--role", "server", "--config", str(plain), "--insecure"])
    assert "[parties] table" in err


def test_resuming_a_party_without_its_checkpoint_dir_is_refused_not_ignored(capsys, tmp_path):
    run = tmp_path / "run.toml"
    run.write_text('data = "digits"\n[parties]\nclient = "127.0.0.1:1"\nserver = "127.0.0.1:2"\n')
    err = _one_line_error(capsys, ["serve", "--role", "client", "--config", str(run), "--insecure", "--resume"])
    assert "--resume needs --checkpoint-dir DIR" in err
    err = _one_line_error(capsys, ["launch", str(run), "--resume"])
    assert "--resume needs --checkpoint-dir DIR" in err

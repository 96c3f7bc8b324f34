"""The CLI across processes: `secsplit serve` in its own process, the client here, over loopback.

Training across two processes reproduces the in-process run (same seed: same accuracy, same
bytes); served inference answers like local inference; a client that goes silent makes a
`serve --once` exit with an error instead of hanging; `train --resume` continues a run.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time

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


@pytest.mark.parametrize("topology", ["vanilla", "ushape"])
def test_two_processes_train_mnist_like_one(pki, capsys, topology):
    common = ["train", "--dataset", "mnist", "--model", "mlp", "--topology", topology, "--epochs", "1", "--batch-size", "128"]
    alone = _json_run(capsys, common)
    with _serve("--role", "server", "--certs", str(pki), "--once", "--model", "mlp", "--topology", topology) as (server, port):
        apart = _json_run(capsys, [*common, "--connect", f"127.0.0.1:{port}", "--certs", str(pki)])
        assert server.wait(30) == 0  # --once: the server exits cleanly after the session's bye
    assert apart["test_accuracy"] == alone["test_accuracy"] > 0.5
    assert apart["client_bytes_sent"] == alone["client_bytes_sent"]
    assert apart["client_bytes_received"] == alone["client_bytes_received"]
    assert apart["transport"]["framing_sent"] > 0
    assert apart["parties"]["server"]["remote"] == f"127.0.0.1:{port}"


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


def test_serve_once_exits_with_an_error_when_the_client_goes_silent():
    from secsplit.channel.grpc_link import Link
    from secsplit.data import load_dataset
    from secsplit.remote import RemoteChainTopology, SessionSpec

    dataset = load_dataset("digits")
    spec = SessionSpec(model="mlp", input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    spec.build().train_step(dataset.x_train[:8], dataset.y_train[:8], step=0)  # first autograd call, before the clock
    # 3 s, not 1: the gap between the hello and the first step (first autograd call, a loaded CI machine) must
    # not count as the client going silent
    with _serve("--role", "server", "--insecure", "--once", "--idle-timeout", "3") as (server, port):
        remote = RemoteChainTopology(spec, Link(f"127.0.0.1:{port}", party="client", insecure=True))
        remote.train_step(dataset.x_train[:8], dataset.y_train[:8], step=0)
        start = time.monotonic()
        code = server.wait(30)  # the "killed" client sends nothing more
        assert code == 1 and time.monotonic() - start < 10
        assert "client went silent" in server.stderr.read()


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


def test_three_processes_train_vertical_like_one(capsys, tmp_path):
    """`serve --topology vertical` plus two `train --connect --name clientI` processes, mutual TLS."""
    pki = tmp_path / "pki"
    assert main(["certs", "init", "--out", str(pki), "--party", "server", "--party", "client0", "--party", "client1"]) == 0
    common = ["train", "--dataset", "breast-cancer", "--topology", "vertical", "--epochs", "2", "--batch-size", "32",
              "--option", "k=2"]
    alone = _json_run(capsys, common)
    with _serve("--role", "server", "--topology", "vertical", "--certs", str(pki), "--once") as (server, port):
        clients = [subprocess.Popen([sys.executable, "-m", "secsplit.evaluation", *common, "--json", "--quiet",
                                     "--connect", f"127.0.0.1:{port}", "--certs", str(pki), "--name", name],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for name in ("client0", "client1")]
        outputs = [c.communicate(timeout=300) for c in clients]
        assert [c.returncode for c in clients] == [0, 0], [err for _, err in outputs]
        assert server.wait(30) == 0
    apart = [json.loads(out) for out, _ in outputs]
    assert apart[0]["test_accuracy"] == alone["test_accuracy"] > 0.85
    assert apart[1]["test_accuracy"] is None
    for key in ("client_bytes_sent", "client_bytes_received"):  # in process: both clients together
        assert apart[0][key] + apart[1][key] == alone[key] > 0

"""Every party in its own process (real processes on loopback, mutual TLS) reproduces the in-process run.

`secsplit launch run.toml` starts one `secsplit serve --role PARTY` process per party of the run
file's [parties] table. Each builds the same topology and runs only its own party's part of each
step through a NetworkChannel. Compared with the in-process run of the same file and seed: every
party's final weights (SHA-256 of its state), the test accuracy, and every party's payload bytes
sent and received are identical; the envelopes' framing is reported apart.
"""

from __future__ import annotations

import json

import pytest

from secsplit.evaluation.build import build_run
from secsplit.evaluation.cli import main
from secsplit.evaluation.commands.launch import launch, read_party_file
from secsplit.evaluation.party import weights_digest

CHAINS = {
    "vanilla": ["client", "server"],
    "ushape": ["client", "server"],
    "multihop": ["client", "hop1", "server"],
    "multihop-ushape": ["client", "hop1", "server"],
}


def write_run(path, topology: str, parties, *, extra: str = "", seed: int = 3, epochs: int = 1) -> str:
    table = "\n".join(f'{p} = "127.0.0.1:{i + 1}"' for i, p in enumerate(parties))
    path.write_text(f'data = "digits"\ntopology = "{topology}"\nepochs = {epochs}\nbatch_size = 64\nseed = {seed}\n'
                    f"{extra}\n[parties]\n{table}\n")
    return str(path)


def in_process(run_file) -> dict:
    description, parties = read_party_file(run_file)
    built = build_run(description, attach_attacks=False)
    report = built.fit()
    topology, traffic = built.topology, built.topology.channel.traffic
    return {"accuracy": report.summary["test_accuracy"],
            "parties": {p: {"sent": traffic.sent(p), "received": traffic.received(p),
                            "weights": weights_digest(topology.parties[p]) if p in topology.parties else None}
                        for p in parties}}


def assert_same_run(run_file, tmp_path) -> dict:
    alone = in_process(run_file)
    apart = launch(run_file, timeout_s=60, workdir=tmp_path / "launch")
    assert set(apart) == set(alone["parties"])
    for party, expected in alone["parties"].items():
        summary = apart[party]
        assert summary["bytes_sent"] == expected["sent"], party
        assert summary["bytes_received"] == expected["received"], party
        if expected["weights"] is not None:
            assert summary["weights_sha256"] == expected["weights"], party
        assert summary["transport"]["payload_sent"] == expected["sent"]  # payload on the wire = accounted bytes
        if expected["sent"]:
            assert summary["transport"]["framing_sent"] > 0  # envelopes reported apart
    known = [s["test_accuracy"] for s in apart.values() if s["test_accuracy"] is not None]
    assert known and all(a == alone["accuracy"] for a in known)
    return apart


@pytest.mark.parametrize("topology", list(CHAINS))
def test_chain_across_processes_reproduces_the_in_process_run(tmp_path, topology):
    run_file = write_run(tmp_path / "run.toml", topology, CHAINS[topology])
    apart = assert_same_run(run_file, tmp_path)
    if topology.startswith("multihop"):
        assert apart["hop1"]["test_accuracy"] is None  # a hop never learns the outcome


#: the other registered topologies: parties and options (small K, few batches per round, to stay fast)
OTHERS = {
    "vertical": (["client0", "client1", "server"], ""),
    "vertical-ushape": (["client0", "client1", "server"], ""),
    "multitask": (["client", "server"], ""),
    "multitask-ushape": (["client", "server"], ""),
    "multitask-local": (["client0", "client1", "server"], ""),
    "relay": (["client0", "client1", "server"], "[topology_options]\nclients = 2\n"),
    "relay-ushape": (["client0", "client1", "server"], '[topology_options]\nclients = 2\nweights_via = "server"\n'),
    "splitfed": (["client0", "client1", "server", "fed-server"],
                 "[topology_options]\nclients = 2\nlocal_batches = 3\n"),
    "splitfed-ushape": (["client0", "client1", "server"],
                        '[topology_options]\nclients = 2\nlocal_batches = 3\naggregator = "server"\n'),
}


@pytest.mark.parametrize("topology", list(OTHERS))
def test_every_topology_across_processes_reproduces_the_in_process_run(tmp_path, topology):
    parties, extra = OTHERS[topology]
    assert_same_run(write_run(tmp_path / "run.toml", topology, parties, extra=extra), tmp_path)


def test_every_registered_topology_is_tried_across_processes():
    from secsplit.topologies import TOPOLOGIES

    assert set(TOPOLOGIES.names()) == set(CHAINS) | set(OTHERS)


def test_launch_prints_each_party_summary(tmp_path, capsys):
    run_file = write_run(tmp_path / "run.toml", "vanilla", ["client", "server"])
    assert main(["launch", run_file, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["parties"]) == {"client", "server"}
    assert out["parties"]["client"]["test_accuracy"] > 0.2
    assert out["parties"]["server"]["test_accuracy"] is None  # the server is not told the test labels


def test_parties_table_must_name_every_party(tmp_path, capsys):
    run_file = write_run(tmp_path / "run.toml", "multihop", ["client", "server"])
    assert main(["launch", run_file]) == 2
    err = capsys.readouterr().err.strip()
    assert "must name exactly the parties of multihop" in err and "missing hop1" in err
    assert len(err.splitlines()) == 1


def test_a_run_file_without_parties_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('data = "digits"\n')
    assert main(["launch", str(path)]) == 2
    assert "no [parties] table" in capsys.readouterr().err


def _connected(dst_port: int) -> bool:
    """Whether a TCP connection to port ``dst_port`` is established on this machine (Linux)."""
    from pathlib import Path

    for table in ("/proc/net/tcp", "/proc/net/tcp6"):  # gRPC may use IPv4-mapped IPv6 sockets
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == dst_port:
                return True
    return False


@pytest.mark.skipif(not __import__("pathlib").Path("/proc/net/tcp").exists(), reason="connections read from /proc")
def test_a_killed_party_process_fails_the_others_within_the_timeout(tmp_path):
    """kill -9 of the server mid-run (no goodbye): the client process exits with a one-line error
    naming the server within --timeout (plus process teardown), instead of hanging."""
    import signal
    import subprocess
    import sys
    import time

    from secsplit.evaluation.commands.launch import free_port

    parties = {"client": f"127.0.0.1:{free_port()}", "server": f"127.0.0.1:{free_port()}"}
    table = "\n".join(f'{p} = "{a}"' for p, a in parties.items())
    run = tmp_path / "run.toml"
    run.write_text(f'data = "digits"\nepochs = 200\nbatch_size = 8\n[parties]\n{table}\n')  # far longer than the test
    timeout = 3.0
    processes = {p: subprocess.Popen([sys.executable, "-m", "secsplit.evaluation", "serve", "--role", p, "--config",
                                      str(run), "--insecure", "--timeout", f"{timeout:g}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for p in parties}
    try:
        deadline = time.monotonic() + 120
        ports = {p: int(a.rsplit(":", 1)[1]) for p, a in parties.items()}
        # both hellos went through: a connection into each party's port (the test's probes close at once)
        while not (_connected(ports["client"]) and _connected(ports["server"])):
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes.values())
            time.sleep(0.2)
        time.sleep(1.0)  # training under way
        assert processes["client"].poll() is None
        processes["server"].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = processes["client"].communicate(timeout=60)
        elapsed = time.monotonic() - killed
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.communicate()
    assert processes["client"].returncode != 0
    lines = [line for line in err.strip().splitlines() if line.startswith("secsplit serve: error:")]
    assert len(lines) == 1 and "server" in lines[0] and ("gone or stuck" in lines[0] or "cannot reach" in lines[0]), err
    assert "Traceback" not in err
    assert elapsed < timeout + 1.0 + 3.0, elapsed  # detection within the timeout + 1 s; the rest is teardown

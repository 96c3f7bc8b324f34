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
from secsplit.evaluation.commands.launch import launch, read_party_file, weights_digest

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

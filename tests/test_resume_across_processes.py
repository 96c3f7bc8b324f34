"""Resume across processes: each party checkpoints its own state; a crashed party restarted with --resume
rejoins, the others go back to the last checkpoint every party holds, and the run ends as the
uninterrupted run would (same weights, same accuracy).

The reference is the in-process run of the same run file (which the transport tests show equal to
the run across processes); the crash is a real SIGKILL of a real party process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from secsplit.errors import ConfigError
from secsplit.evaluation.build import build_run
from secsplit.evaluation.commands.launch import free_port, read_party_file
from secsplit.evaluation.party import agree_on_step, run_party, weights_digest
from secsplit.training import checkpointed_steps


def write_run(path: Path, *, epochs: int = 2, batch_size: int = 16, extra: str = "",
              topology: str = "vanilla") -> tuple[str, dict]:
    names = ["client", "hop1", "server"] if topology == "multihop" else ["client", "server"]
    parties = {p: f"127.0.0.1:{free_port()}" for p in names}
    table = "\n".join(f'{p} = "{a}"' for p, a in parties.items())
    path.write_text(f'data = "digits"\ntopology = "{topology}"\nepochs = {epochs}\nbatch_size = {batch_size}\n'
                    f"seed = 5\n{extra}\n[parties]\n{table}\n")
    return str(path), parties


def uninterrupted(run_file) -> dict:
    description, parties = read_party_file(run_file)
    built = build_run(description, attach_attacks=False)
    report = built.fit()
    epsilon = built.defenses[0].epsilon() if built.defenses else None
    return {"accuracy": report.summary["test_accuracy"], "epsilon": epsilon,
            "weights": {p: weights_digest(built.topology.parties[p]) for p in parties}}


def serve(run_file, role: str, directory: Path, *, resume: bool = False, every: int = 10) -> subprocess.Popen:
    argv = [sys.executable, "-m", "secsplit.evaluation", "serve", "--role", role, "--config", run_file, "--insecure",
            "--json", "--timeout", "60", "--checkpoint-dir", str(directory / role), "--checkpoint-every", str(every)]
    # one intra-op thread, as the tests' own reference run (conftest): the same float reductions
    return subprocess.Popen(argv + (["--resume"] if resume else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def summary_of(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("topology, victim, extra", [
    ("vanilla", "client", ""),
    # the middle of three processes: both others go back to the checkpoint (one told by the other's goodbye)
    pytest.param("multihop", "hop1", "", marks=pytest.mark.slow),
    # DP-SGD's noise stream and accounting are in the client's checkpoint: no noise replayed, no step forgotten
    ("vanilla", "client", 'defenses = ["dpsgd:noise_multiplier=1.0,max_grad_norm=1.0"]'),
])
def test_a_killed_party_restarted_with_resume_rejoins_and_the_run_ends_as_if_uninterrupted(tmp_path, topology, victim,
                                                                                         extra):
    run_file, parties = write_run(tmp_path / "run.toml", topology=topology, extra=extra)
    expected = uninterrupted(run_file)
    processes = {p: serve(run_file, p, tmp_path) for p in parties}
    restarted = None
    try:
        deadline = time.monotonic() + 120
        saved = tmp_path / victim
        while not any(s >= 30 for s in (checkpointed_steps(saved) if saved.exists() else [])):
            # a few checkpoints in, still mid-run (the run has 180 steps)
            assert time.monotonic() < deadline and processes[victim].poll() is None, "it never checkpointed"
            time.sleep(0.05)
        processes[victim].kill()
        processes[victim].communicate()
        killed_at = max(checkpointed_steps(saved))
        assert killed_at < 180, "the run ended before the crash"
        assert all(p.poll() is None for name, p in processes.items() if name != victim)  # they wait for it
        restarted = serve(run_file, victim, tmp_path, resume=True)
        summaries = {p: summary_of(restarted if p == victim else processes[p]) for p in parties}
    finally:
        for process in [*processes.values(), restarted]:
            if process is not None and process.poll() is None:
                process.kill()
    for party, summary in summaries.items():
        assert summary["weights_sha256"] == expected["weights"][party], party
        assert summary["resumed_from_step"] is not None and 30 <= summary["resumed_from_step"] <= killed_at
        # the others went back to the checkpoint without being restarted
        assert summary["rejoined"] == (0 if party == victim else 1), party
    assert summaries["client"]["test_accuracy"] == expected["accuracy"]
    assert [row["epoch"] for row in summaries["client"]["history"]] == [1, 2]
    if expected["epsilon"] is not None:  # every step counted (the PRV accountant's FFT differs in the last digits)
        epsilon = summaries["client"]["epsilon"]
        assert {k: epsilon[k] for k in ("steps", "sample_rate", "noise_multiplier", "delta")} == \
            {k: expected["epsilon"][k] for k in ("steps", "sample_rate", "noise_multiplier", "delta")}
        assert epsilon["prv"] == pytest.approx(expected["epsilon"]["prv"], rel=1e-9)
        assert epsilon["rdp"] == pytest.approx(expected["epsilon"]["rdp"], rel=1e-9)


# -- agreeing on the step --------------------------------------------------------------------------
def test_the_parties_resume_from_the_latest_step_they_all_hold():
    assert agree_on_step("client", {"resume": False, "steps": []}, {"server": {"resume": False, "steps": [5]}}) is None
    assert agree_on_step("client", {"resume": True, "steps": [40, 50]}, {"server": {"resume": True, "steps": [50, 60]},
                                                                          "hop1": {"resume": True, "steps": [40, 50]}}) == 50
    with pytest.raises(ConfigError, match=r"no checkpoint of the same step \(client: 10, 20; server: 30, 40\)"):
        agree_on_step("client", {"resume": True, "steps": [10, 20]}, {"server": {"resume": True, "steps": [30, 40]}})
    with pytest.raises(ConfigError, match="client resumes from checkpoints but server starts afresh: restart every "
                                          "party with --resume"):
        agree_on_step("client", {"resume": True, "steps": [10]}, {"server": {"resume": False, "steps": []}})


def _parties(run_file, options: dict[str, dict]) -> dict:
    """Run every party of ``run_file`` in a thread (each with its own options); party -> summary or error."""
    description, parties = read_party_file(run_file)
    outcome = {}

    def party(role):
        try:
            outcome[role] = run_party(description, parties, role, insecure=True, timeout_s=30.0, **options[role])
        except BaseException as error:  # compared by the test
            outcome[role] = error

    threads = [threading.Thread(target=party, args=(role,)) for role in parties]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcome


def test_every_party_resuming_together_continues_from_the_common_checkpoint(tmp_path):
    run_file, _ = write_run(tmp_path / "run.toml", epochs=1, batch_size=64)
    first = _parties(run_file, {p: {"checkpoint_dir": tmp_path / p, "checkpoint_every": 5} for p in ("client", "server")})
    assert all(isinstance(s, dict) for s in first.values()), first
    assert checkpointed_steps(tmp_path / "client") == checkpointed_steps(tmp_path / "server") == [20, 23]
    for path in (tmp_path / "server").glob("*-step000000023*"):  # the server crashed before saving step 23
        path.unlink()
    again = _parties(run_file, {p: {"checkpoint_dir": tmp_path / p, "checkpoint_every": 5, "resume": True}
                                for p in ("client", "server")})
    expected = uninterrupted(run_file)
    for role, summary in again.items():
        assert isinstance(summary, dict), summary
        assert summary["resumed_from_step"] == 20
        assert summary["weights_sha256"] == expected["weights"][role] == first[role]["weights_sha256"]


def test_tampered_or_changed_state_on_resume_is_one_line_naming_the_file_and_field(tmp_path):
    run_file, _ = write_run(tmp_path / "run.toml", epochs=1, batch_size=128)
    options = {p: {"checkpoint_dir": tmp_path / p, "checkpoint_every": 5} for p in ("client", "server")}
    assert all(isinstance(s, dict) for s in _parties(run_file, options).values())
    resume = {p: {**o, "resume": True} for p, o in options.items()}
    for path in tmp_path.glob("*/*-step000000012*"):  # the run's last steps are still to train
        path.unlink()
    last = max(checkpointed_steps(tmp_path / "client"))
    assert last == 10
    state = tmp_path / "client" / f"trainer-step{last:09d}.json"
    saved = state.read_text()
    edited = json.loads(saved)
    edited["sums"] = "lots"
    state.write_text(json.dumps(edited))
    outcome = _parties(run_file, resume)
    error = outcome["client"]
    assert isinstance(error, ConfigError) and f"{state}: field sums is invalid" in str(error)
    assert "client failed" in str(outcome["server"]) and "field sums is invalid" in str(outcome["server"])
    state.write_text(saved)
    # the party state of another model (written as this party's, checksum and all)
    from secsplit.models import create_model
    from secsplit.party_state import save_party_state
    from secsplit.topologies import build_topology

    other = build_topology("vanilla", create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(16,)))
    save_party_state(tmp_path / "client", f"client-step{last:09d}", other.parties["client"], info={"step": last})
    error = _parties(run_file, resume)["client"]
    assert "client-step" in str(error) and "field segments." in str(error) and "another model" in str(error)
    assert "\n" not in str(error)
    # a changed learning rate on resume: refused, naming the run record and the field
    changed, _ = write_run(tmp_path / "run.toml", epochs=1, batch_size=128, extra="lr = 0.5")
    error = _parties(changed, resume)["server"]
    assert isinstance(error, ConfigError) and "run.json: field optimizer" in str(error) and "\n" not in str(error)


# -- what each party holds, DP-SGD and attacks across processes -------------------------------------
def _built(tmp_path, topology: str, parties: list[str], built: list[str], extra: str = ""):
    from secsplit.evaluation.party import build_party

    table = "\n".join(f'{p} = "127.0.0.1:{free_port()}"' for p in parties)
    path = tmp_path / f"{topology}.toml"
    path.write_text(f'data = "digits"\ntopology = "{topology}"\nseed = 1\n{extra}\n[parties]\n{table}\n')
    description, addresses = read_party_file(path)
    built = {p: build_party(description, addresses, p, insecure=True) for p in built}
    for run in built.values():
        run.topology.channel.listener.stop(grace=0)
    return built, build_run(description, attach_attacks=False).dataset


def test_each_party_process_holds_only_its_own_features_samples_and_labels(tmp_path):
    import torch

    built, full = _built(tmp_path, "vertical", ["client0", "client1", "server"], ["client0", "client1"])
    views = built["client0"].topology.views
    for k, client in enumerate(("client0", "client1")):
        x = built[client].dataset.x_train
        own = views[k](x)  # the client's view (its pixel box of the digits)
        assert torch.equal(own, views[k](full.x_train)) and x.abs().sum() == own.abs().sum() > 0, client
    assert torch.equal(built["client0"].dataset.y_train, full.y_train)  # client0 supplies the labels
    assert not built["client1"].dataset.y_train.any()

    built, full = _built(tmp_path, "splitfed", ["client0", "client1", "server", "fed-server"], ["client0", "client1"],
                         "[topology_options]\nclients = 2\n")
    order, bounds = built["client0"].topology.shards(len(full.y_train))
    for k, client in enumerate(("client0", "client1")):
        x, rows = built[client].dataset.x_train, order[bounds[k]:bounds[k + 1]]
        others = torch.ones(len(x), dtype=torch.bool)
        others[rows] = False
        assert torch.equal(x[rows], full.x_train[rows]) and not x[others].any(), client
    assert not built["client1"].dataset.x_test.any()  # the test set is the data owner's (client0)


def test_dpsgd_trains_across_processes_and_each_party_reports_epsilon(tmp_path):
    from secsplit.evaluation.commands.launch import launch

    run_file, _ = write_run(tmp_path / "run.toml", epochs=1, batch_size=64,
                            extra='defenses = ["dpsgd:noise_multiplier=1.0,max_grad_norm=1.0"]')
    description, _ = read_party_file(run_file)
    alone = build_run(description, attach_attacks=False)
    alone.fit()
    expected = alone.defenses[0].epsilon()
    apart = launch(run_file, timeout_s=60, workdir=tmp_path / "launch")
    assert apart["client"]["weights_sha256"] == weights_digest(alone.topology.parties["client"])  # the client applied it
    assert apart["server"]["weights_sha256"] == weights_digest(alone.topology.parties["server"])
    for summary in apart.values():
        assert summary["epsilon"]["prv"] == pytest.approx(expected["prv"]) and summary["epsilon"]["steps"] > 0


def test_attacks_in_a_run_across_processes_are_refused_saying_why(tmp_path):
    run_file, _ = write_run(tmp_path / "run.toml", extra='attacks = ["norm"]\nlabel_source = "label_owner"')
    description, parties = read_party_file(run_file)
    with pytest.raises(ConfigError, match="norm: .*scored against ground truth"):
        run_party(description, parties, "client", insecure=True)


# -- a restarted party's hello mid-run --------------------------------------------------------------
def _hello_mid_run(tmp_path, monkeypatch, *, resume: bool, server_options: dict):
    """Run client and server in threads; once the server trains, a new client incarnation says hello."""
    from secsplit.channel.codec import WireMessage
    from secsplit.channel.grpc_link import Link
    from secsplit.channel.network import NetworkChannel
    from secsplit.evaluation.party import run_digest

    run_file, parties = write_run(tmp_path / "run.toml")
    description, _ = read_party_file(run_file)
    training = threading.Event()
    original = NetworkChannel.open

    def open_and_tell(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.party == "server":
            training.set()

    monkeypatch.setattr(NetworkChannel, "open", open_and_tell)
    outcome = {}

    def party(role, options):
        try:
            outcome[role] = run_party(description, parties, role, insecure=True, timeout_s=30.0, **options)
        except BaseException as error:  # compared by the test
            outcome[role] = error

    threads = [threading.Thread(target=party, args=("client", {})),
               threading.Thread(target=party, args=("server", server_options))]
    for thread in threads:
        thread.start()
    assert training.wait(60)
    link = Link(parties["server"], party="client", peer="server", insecure=True, timeout_s=10)
    try:
        link.exchange(WireMessage(run_id=run_digest(description, parties), step=0, kind="control", src="client",
                                  dst="server", tag="hello", meta={"incarnation": "restarted", "resume": resume,
                                                                   "steps": [10]}))
        refusal = None
    except Exception as error:  # the refusal the restarted party would print
        refusal = error
    finally:
        link.close()
    for thread in threads:
        thread.join(120)
    return run_file, refusal, outcome


def test_a_party_restarted_mid_run_without_resume_is_refused_and_the_run_goes_on(tmp_path, monkeypatch):
    run_file, refusal, outcome = _hello_mid_run(tmp_path, monkeypatch, resume=False, server_options={})
    assert "server is mid-run with client's previous process: restart client with --resume" in str(refusal)
    expected = uninterrupted(run_file)
    assert outcome["server"]["weights_sha256"] == expected["weights"]["server"]  # undisturbed
    assert outcome["client"]["test_accuracy"] == expected["accuracy"]


def test_a_resuming_party_is_refused_by_a_peer_without_checkpoints_which_stops_saying_why(tmp_path, monkeypatch):
    _, refusal, outcome = _hello_mid_run(tmp_path, monkeypatch, resume=True, server_options={})
    assert "server keeps no checkpoints (--checkpoint-dir)" in str(refusal)
    assert isinstance(outcome["server"], ConfigError)
    assert "client restarted to resume from its checkpoints, but server keeps none" in str(outcome["server"])

"""Vertical split training across connections: two clients, one feature view each, one server.

Each client runs its own Trainer (as it would in its own process) against a served
VerticalServer; the result must equal in-process vertical training with the same seed: client0's
accuracy, every client's weights, and the bytes each client sent and received.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch

from secsplit.channel.grpc_link import Link, Listener, PeerRefused
from secsplit.data import load_dataset
from secsplit.errors import ChannelError
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.remote import SessionSpec
from secsplit.remote.vertical import RemoteVerticalClient, VerticalServer, sample_digest
from secsplit.topologies import build_topology
from secsplit.training import Trainer

CLIENTS = ["client0", "client1"]


@pytest.fixture(scope="module")
def data():
    return load_dataset("breast-cancer", seed=0)


def _spec(data, **options) -> SessionSpec:
    return SessionSpec(model="mlp", input_shape=data.input_shape, num_classes=data.num_classes, topology="vertical",
                       seed=0, optimizer=OptimizerSpec("adam", lr=1e-3).to_dict(), topology_options=options)


@contextlib.contextmanager
def _serving(server):
    listener = Listener(server.handle, listen="127.0.0.1:0", insecure=True, allowed_peers=CLIENTS, max_workers=8).start()
    try:
        yield listener
    finally:
        listener.stop(grace=0)


def _client(listener, spec, party, samples, timeout_s=20.0) -> RemoteVerticalClient:
    link = Link(f"127.0.0.1:{listener.port}", party=party, insecure=True, timeout_s=timeout_s, connect_timeout_s=5.0)
    return RemoteVerticalClient(spec, link, party=party, samples=samples)


def _each_in_a_thread(topologies: dict, fit) -> None:
    """``fit(party, topology)`` for every client at once, each in its own thread as in its own process; then close."""
    errors = []

    def run(party):
        try:
            fit(party, topologies[party])
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            topologies[party].close()

    threads = [threading.Thread(target=run, args=(p,)) for p in topologies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors


def _train_apart(data, spec, epochs=2):
    """Both clients train concurrently, each with its own Trainer, as two processes would."""
    server = VerticalServer(wait_s=10.0)
    results = {}
    with _serving(server) as listener:
        clients = {p: _client(listener, spec, p, sample_digest(data.ids_train)) for p in CLIENTS}

        def fit(party, topology):
            results[party] = Trainer(topology, batch_size=32, epochs=epochs, seed=0, progress=False).fit(data)

        _each_in_a_thread(clients, fit)
    return clients, results, server


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_two_remote_vertical_clients_reproduce_in_process_training(data, merge):
    spec = _spec(data, k=2, merge=merge)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, seed=0)
    alone = build_topology("vertical", model, model_name="mlp", seed=0, k=2, merge=merge,
                           optimizer=OptimizerSpec("adam", lr=1e-3))
    reference = Trainer(alone, batch_size=32, epochs=2, seed=0, progress=False).fit(data)

    clients, results, server = _train_apart(data, spec)
    assert results["client0"].summary["test_accuracy"] == reference.summary["test_accuracy"] > 0.85
    assert results["client1"].summary["test_accuracy"] is None  # client1 never learns the predictions
    assert results["client1"].history[-1]["train_loss"] is None
    for party in CLIENTS:
        for a, b in zip(alone.parties[party].segments.parameters(), clients[party].parties[party].segments.parameters(),
                        strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        traffic = alone.channel.traffic
        assert results[party].summary["client_bytes_sent"] == traffic.total(src=party, phase="train") > 0
        assert results[party].summary["client_bytes_received"] == traffic.total(dst=party, phase="train") > 0
    assert server.finished.is_set() and not server.session_open


def test_misaligned_samples_and_strangers_are_refused(data):
    spec = _spec(data, k=2)
    with _serving(VerticalServer(wait_s=2.0)) as listener:
        _client(listener, spec, "client0", sample_digest(data.ids_train))
        shuffled = data.ids_train[torch.randperm(len(data.ids_train), generator=torch.Generator().manual_seed(0))]
        with pytest.raises(PeerRefused, match="not aligned"):
            _client(listener, spec, "client1", sample_digest(shuffled))
        with pytest.raises(PeerRefused, match="different"):
            _client(listener, _spec(data, k=2, merge="mean"), "client1", sample_digest(data.ids_train))


def test_a_missing_client_is_a_clear_refusal_not_a_hang(data):
    spec = _spec(data, k=2)
    with _serving(VerticalServer(wait_s=1.0)) as listener:
        client0 = _client(listener, spec, "client0", sample_digest(data.ids_train))
        _client(listener, spec, "client1", sample_digest(data.ids_train))  # joins, then never sends
        with pytest.raises(ChannelError, match="waited 1 s for every client's activation"):
            client0.train_step(data.x_train[:8], data.y_train[:8], step=0)


def test_vertical_spec_checks_its_options(data):
    from secsplit.errors import ConfigError

    with pytest.raises(ConfigError, match="k in 2..16"):
        _spec(data, k=1)
    with pytest.raises(ConfigError, match="no option"):
        SessionSpec(model="mlp", input_shape=(30,), num_classes=2, topology="vanilla", topology_options={"k": 2})
    with pytest.raises(ConfigError, match="not a client"):
        RemoteVerticalClient(_spec(data, k=2), link=None, party="client7", samples="0" * 64)


class _Crash(Exception):
    pass


def test_a_crashed_vertical_run_resumes_to_the_uninterrupted_result(data, tmp_path):
    from secsplit.callbacks import Callback
    from secsplit.training import Checkpointing, read_trainer_state

    class CrashAt(Callback):
        def on_step_end(self, *, step, loss):
            if step == 20:  # mid-epoch 2 (15 steps per epoch)
                raise _Crash(f"killed after step {step}")

    spec = _spec(data, k=2)

    def run(root, *, crash=False, resume=False):
        server = VerticalServer(wait_s=10.0, checkpoint_dir=root / "server")
        reports, weights = {}, {}
        with _serving(server) as listener:
            topologies = {}
            for party in CLIENTS:
                run_id, start = None, 0
                if resume:
                    state = read_trainer_state(root / party)
                    run_id, start = state["topology"], state["global_step"]
                link = Link(f"127.0.0.1:{listener.port}", party=party, insecure=True, timeout_s=20.0)
                topologies[party] = RemoteVerticalClient(spec, link, party=party, samples=sample_digest(data.ids_train),
                                                         run_id=run_id, resume_step=start)

            def fit(party, topology):
                try:
                    reports[party] = Trainer(topology, batch_size=32, epochs=3, seed=0, progress=False,
                                             checkpointing=Checkpointing(str(root / party), every=4, resume=resume),
                                             callbacks=[CrashAt()] if crash else []).fit(data)
                    weights[party] = [p.detach().clone() for p in topology.parties[party].segments.parameters()]
                except _Crash:
                    pass

            _each_in_a_thread(topologies, fit)
        return reports, weights

    whole, whole_weights = run(tmp_path / "whole")
    crashed, _ = run(tmp_path / "crashed", crash=True)
    assert not crashed  # both clients died at step 20
    assert read_trainer_state(tmp_path / "crashed" / "client0")["global_step"] == 20
    resumed, resumed_weights = run(tmp_path / "crashed", resume=True)
    assert resumed["client0"].summary["test_accuracy"] == whole["client0"].summary["test_accuracy"]
    for party in CLIENTS:
        for a, b in zip(whole_weights[party], resumed_weights[party], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

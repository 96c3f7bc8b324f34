"""A peer holding a valid certificate cannot crash, stall or bloat another party: clean refusals only.

Every request a party's listener receives goes through :meth:`Listener._serve` (the gRPC method),
and every training message it pulls from a peer through :meth:`NetworkChannel._accept`; here both
are called directly (the listener with a stand-in for gRPC's context), so thousands of hostile
messages run in seconds. What must hold: each one is answered or refused (INVALID_ARGUMENT or
PERMISSION_DENIED with a reason, or a ChannelError on the pulling side), never an INTERNAL error or
a logged traceback; overflowing shapes, seeds and names are refused by name; a message out of order
is refused at once; a
client cannot evict another client's inference session; a party that fails after the first message
says goodbye, so the others stop at once with the real cause.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

import grpc
import pytest
import torch

from secsplit.channel.codec import MAX_NAME_CHARS, CodecError, WireMessage, _envelope_class, decode, encode
from secsplit.channel.network import NetworkChannel
from secsplit.errors import ChannelError, ConfigError, SecsplitError
from secsplit.evaluation.cli import main
from secsplit.evaluation.commands.launch import free_port, read_party_file
from secsplit.evaluation.party import run_party

CLEAN = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}


class _Aborted(Exception):
    pass


class _Context:
    """What a Listener uses of gRPC's servicer context (an unauthenticated, plaintext caller)."""

    def __init__(self) -> None:
        self.code = self.details = None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def abort(self, code, details):
        self.code, self.details = code, details
        raise _Aborted(details)


#: how the pulling side reports a refusal (it raises; nothing goes back to the sender)
REFUSED = "refused"


def _serve(listener, data: bytes) -> tuple[object, str]:
    """(status, reason) of one exchanged request: ("ok", "") when answered."""
    context = _Context()
    try:
        listener._serve(data, context)
    except _Aborted:
        return context.code, context.details
    return "ok", ""


def _pulled(channel: NetworkChannel, data: bytes) -> tuple[object, str]:
    """(outcome, reason) of one envelope the party pulled from the client: ("ok", "") when accepted."""
    try:
        channel._accept(data, "client")
    except ChannelError as error:
        return REFUSED, str(error)
    return "ok", ""


@pytest.fixture
def party():
    """The server party of a two-party run (its peer never starts: only its listener is exercised)."""
    addresses = {"client": f"127.0.0.1:{free_port()}", "server": f"127.0.0.1:{free_port()}"}
    channel = NetworkChannel(party="server", addresses=addresses, run_id="run-r", insecure=True, timeout_s=0.05)
    yield channel
    channel.listener.stop(grace=0)


def _wire(kind="activation", tensor=None, **fields) -> bytes:
    base = dict(run_id="run-r", step=0, kind=kind, src="client", dst="server", phase="train", tensor=tensor)
    base.update(fields)
    return encode(WireMessage(**base))


# -- overflow ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [[0, 2**62, 2**62], [2**62, 2**62, 0], [0, 2**63 - 1], [2**31, 2**31, 0, 4]])
def test_overflowing_shapes_are_refused_by_name(party, shape):
    envelope = _envelope_class()(run_id="run-r", kind="activation", src="client", dst="server", phase="train",
                                 dtype="float32", shape=shape, data=b"")
    with pytest.raises(CodecError, match="larger than the message size limit"):
        decode(envelope.SerializeToString())
    code, reason = _serve(party.listener, envelope.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "larger than the message size limit" in reason


def test_names_and_run_ids_of_any_length_are_refused_or_bounded(party):
    for field in ("run_id", "src", "dst", "tag"):
        data = _wire(**{field: "x" * 1_000_000})
        code, reason = _serve(party.listener, data)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f"{field} of 1000000 characters exceeds" in reason
    code, reason = _serve(party.listener, _wire(run_id="y" * MAX_NAME_CHARS, tensor=torch.ones(2)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "run files differ" in reason and len(reason) < 400


def test_a_message_out_of_order_is_refused_at_once(party):
    start = time.monotonic()
    outcome, reason = _pulled(party, _wire(tensor=torch.ones(2), seq=2**62))
    assert outcome == REFUSED and "out of order: expected message 0" in reason
    assert time.monotonic() - start < 0.5 and party._next_in["client"] == 0


def test_a_training_message_sent_as_a_request_is_refused(party):
    """Training messages travel only on the receiver's pull; a request carrying one is refused unread."""
    code, reason = _serve(party.listener, _wire(tensor=torch.ones(2)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "by its pull of client's messages" in reason


def test_seeds_that_overflow_are_refused_by_name(tmp_path, capsys):
    run = tmp_path / "run.toml"
    for seed in (2**80, -1, 2**32):
        run.write_text(f'data = "digits"\nseed = {seed}\n[parties]\nclient = "127.0.0.1:1"\nserver = "127.0.0.1:2"\n')
        with pytest.raises(ConfigError, match=r"seed must be an integer in 0\.\.4294967295"):
            read_party_file(run)
    assert main(["serve", "--role", "client", "--config", str(run), "--insecure"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed must be an integer" in err


# -- inference sessions ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from secsplit.checkpoint import save_split_model
    from secsplit.models import create_model
    from secsplit.remote import InferenceServer
    from secsplit.topologies import build_topology

    topology = build_topology("vanilla", create_model("mlp", input_shape=(64,), num_classes=10, seed=0))
    directory = save_split_model(topology, tmp_path_factory.mktemp("m") / "m", model_name="mlp", input_shape=(64,),
                                 num_classes=10, model_seed=0)
    return InferenceServer(directory, max_sessions=8)


def _hello(served, run_id: str, peer: str) -> WireMessage:
    return WireMessage(run_id=run_id, step=0, kind="control", src=peer, dst="server", tag="hello",
                       meta={"spec": served.spec.to_dict(), "protocol": 1})


def test_a_client_filling_the_session_table_cannot_evict_another_clients_session(served):
    served.handle(_hello(served, "run-alice", "alice"), "alice")
    for i in range(2000):
        served.handle(_hello(served, f"run-mallory-{i}", "mallory"), "mallory")
    assert sum(len(s) for s in served.sessions.values()) <= 2 * served.max_sessions
    x = torch.zeros(2, *served.input_shape)
    reply = served.handle(WireMessage(run_id="run-alice", step=0, kind="activation", src="alice", dst="server",
                                      phase="eval", tensor=x), "alice")
    assert reply.kind == "logits"
    with pytest.raises(ChannelError, match="unknown run"):  # nor use another client's session
        served.handle(WireMessage(run_id="run-alice", step=0, kind="activation", src="mallory", dst="server",
                                  phase="eval", tensor=x), "mallory")


# -- a failure after the first message --------------------------------------------------------------
def test_a_party_failing_mid_run_says_goodbye_and_the_others_stop_at_once_with_its_reason(tmp_path, monkeypatch):
    run = tmp_path / "run.toml"
    run.write_text('data = "digits"\nepochs = 1\nbatch_size = 64\n'
                   f'[parties]\nclient = "127.0.0.1:{free_port()}"\nserver = "127.0.0.1:{free_port()}"\n')
    description, parties = read_party_file(run)
    deliver = NetworkChannel._deliver

    def failing(self, src, dst, kind, tensor, *, step, tag=""):
        if self.party == "server" and step == 2:
            raise OSError("No space left on device: /var/server-state")
        return deliver(self, src, dst, kind, tensor, step=step, tag=tag)

    monkeypatch.setattr(NetworkChannel, "_deliver", failing)
    errors: dict[str, BaseException] = {}
    done: dict[str, float] = {}

    def party(role):
        try:
            run_party(description, parties, role, insecure=True, timeout_s=60.0)
        except BaseException as error:  # compared below
            errors[role] = error
        done[role] = time.monotonic()

    threads = [threading.Thread(target=party, args=(role,)) for role in parties]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert isinstance(errors.get("server"), OSError)
    assert "server failed before sending" in str(errors.get("client")) and "No space left on device" in str(errors["client"])
    assert abs(done["client"] - done["server"]) < 5.0  # at once, not after the 60 s timeout


# -- fuzzing ----------------------------------------------------------------------------------------
def _seeds(seq: int = 0) -> dict[str, bytes]:
    return {
        "activation": _wire(tensor=torch.randn(4, 3), seq=seq),
        "gradient": _wire("gradient", tensor=torch.randn(4, 3), step=3, seq=seq),
        "labels": _wire("labels", tensor=torch.arange(4), seq=seq),
        "hello": _wire("control", tag="hello", meta={"protocol": 1, "spec": {"model": "mlp"}}),
        "bye": _wire("control", tag="bye", meta={"error": "it failed"}),
    }


def _mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.random()
        if action < 0.5 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif action < 0.75:
            data = data[: rng.randrange(len(data) + 1)]
        else:
            position = rng.randrange(len(data) + 1)
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def fuzz(listener, n_per_kind: int, *, seed: int = 0, channel: NetworkChannel | None = None,
         pulled: bool = False) -> dict[str, dict]:
    """Feed ``n_per_kind`` mutated messages of every kind to ``listener``; count outcomes per kind.

    With ``channel`` (the listener's party), each mutation starts from the message the party
    expects next, so intact parts are accepted and the mutations reach past the codec. With
    ``pulled`` each goes to the party as a message pulled from the client (how parties receive
    training messages) instead of as a request to its listener.
    """
    rng = random.Random(seed)
    outcomes: dict[str, dict] = {kind: {} for kind in _seeds()}
    for _ in range(n_per_kind):
        for kind, valid in _seeds(channel._next_in["client"] if channel else 0).items():
            data = _mutate(rng, valid)
            code, _ = _pulled(channel, data) if pulled else _serve(listener, data)
            outcomes[kind][code] = outcomes[kind].get(code, 0) + 1
    return outcomes


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def _check(outcomes, caplog) -> None:
    for kind, counts in outcomes.items():
        assert set(counts) <= CLEAN | {"ok", REFUSED}, (kind, counts)
        assert sum(v for k, v in counts.items() if k in CLEAN | {REFUSED}) > 0, kind  # the mutations do get refused
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_fuzz_mutated_messages_of_every_kind_are_clean_refusals(party, served, caplog):
    from secsplit.channel.grpc_link import Listener

    caplog.set_level(logging.WARNING)
    _check(fuzz(party.listener, 1000, channel=party), caplog)
    _check(fuzz(party.listener, 500, seed=3, channel=party, pulled=True), caplog)
    inference = Listener(served.handle, listen="127.0.0.1:0", insecure=True)
    _check(fuzz(inference, 1000, seed=1), caplog)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="RSS read from /proc")
def test_fuzz_10000_mutated_messages_per_kind_with_bounded_memory(party, caplog):
    caplog.set_level(logging.ERROR)
    fuzz(party.listener, 200, channel=party)  # warm up allocator and caches
    fuzz(party.listener, 200, channel=party, pulled=True)
    before = _rss_mb()
    outcomes = fuzz(party.listener, 10_000, seed=2, channel=party)
    streamed = fuzz(party.listener, 10_000, seed=4, channel=party, pulled=True)
    growth = _rss_mb() - before
    _check(outcomes, caplog)
    _check(streamed, caplog)
    assert growth < 20, f"RSS grew {growth:.1f} MB over {2 * 5 * 10_000} mutated messages (exchanged and pulled)"


def test_a_hostile_hello_to_the_inference_server_allocates_nothing(served):
    """A LeNet-sized hello with a huge input shape is refused before any model is built: < 0.1 s, < 50 MB."""
    spec = {**served.spec.to_dict(), "input_shape": [1, 2048, 2048]}
    hello = WireMessage(run_id="run-h", step=0, kind="control", src="mallory", dst="server", tag="hello",
                        meta={"spec": spec, "protocol": 1})
    before, start = _rss_mb(), time.perf_counter()
    with pytest.raises(SecsplitError, match="input_shape"):  # compared with the checkpoint's, nothing built
        served.handle(hello, "mallory")
    assert time.perf_counter() - start < 0.1 and _rss_mb() - before < 50
    spec = {**served.spec.to_dict(), "input_shape": [2**62, 2**62], "seed": 2**80}
    with pytest.raises(ConfigError, match="input_shape"):
        served.handle(WireMessage(run_id="run-h", step=0, kind="control", src="mallory", dst="server", tag="hello",
                                  meta={"spec": spec, "protocol": 1}), "mallory")
    assert "mallory" not in served.sessions or "run-h" not in served.sessions["mallory"]

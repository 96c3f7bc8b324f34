"""Messages between parties over a real gRPC connection on loopback, with mutual TLS.

Two :class:`NetworkChannel` objects, each hosting one party (the same channel every topology trains
through across processes; tests/test_transport_parties.py runs whole topologies in real processes).
What must hold: tensors cross bit-exact and are counted as in process; every identity problem
(wrong CA, expired certificate, wrong party name, impersonated server, plaintext against TLS) is
refused; a message of another run, out of step or over the size limit is refused with a reason; a
dead, stuck or failing peer fails the other side within its timeout (at once when it says why);
served inference answers like local split inference.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import threading
import time

import pytest
import torch

from secsplit.channel.certs import CertificateError, PartyCredentials, init_pki, issue, load_credentials
from secsplit.channel.codec import WireMessage, encode
from secsplit.channel.grpc_link import Link, Listener, PeerBusy, PeerRefused
from secsplit.channel.network import NetworkChannel, PeerGone
from secsplit.data import load_dataset
from secsplit.errors import ChannelError, ConfigError
from secsplit.evaluation.commands.launch import free_port
from secsplit.optim import OptimizerSpec
from secsplit.remote import SessionSpec
from secsplit.training import Trainer

TLS_REFUSED = "TLS handshake|refused our certificate"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """One CA with server, client and mallory certificates, and a second, unrelated CA."""
    root = tmp_path_factory.mktemp("pki")
    init_pki(root / "ours", ["server", "client", "mallory"])
    init_pki(root / "other", ["server", "client"])
    return root


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _addresses(*parties) -> dict[str, str]:
    return {p: f"127.0.0.1:{free_port()}" for p in parties}


def _channel(party, addresses, *, tls=None, run_id="run-test", **options) -> NetworkChannel:
    options.setdefault("timeout_s", 10.0)
    options.setdefault("connect_timeout_s", 3.0)
    tls = tls if tls is not None else {"insecure": True}
    return NetworkChannel(party=party, addresses=addresses, run_id=run_id, **tls, **options)


@contextlib.contextmanager
def _pair(client_tls=None, server_tls=None, **options):
    """A client and a server channel on loopback; both stop listening at the end."""
    addresses = _addresses("client", "server")
    own = {party: options.pop(party, {}) for party in ("client", "server")}
    server = _channel("server", addresses, tls=server_tls, **own["server"], **options)
    client = None
    try:
        client = _channel("client", addresses, tls=client_tls, **own["client"], **options)
        yield client, server
    finally:
        for channel in (client, server):
            if channel is not None:
                for link in channel._links.values():
                    link.close()
                channel.listener.stop(grace=0)


def _both(*calls):
    """Run each call in its own thread (one per party); return their results, raising the first error."""
    results, errors = [None] * len(calls), [None] * len(calls)

    def run(i):
        try:
            results[i] = calls[i]()
        except BaseException as error:  # surfaced below
            errors[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for error in errors:
        if error is not None:
            raise error
    return results


# -- delivery -----------------------------------------------------------------------------------
def test_tensors_cross_bit_exact_over_mtls_and_are_counted_as_in_process(pki):
    tensors = [torch.randn(8, 16), torch.arange(8), torch.randn(3, 2, 2).double()]
    with _pair({"certs": pki / "ours"}, {"certs": pki / "ours"}) as (client, server):
        _both(client.open, server.open)

        def send():
            for step, t in enumerate(tensors):
                assert client.send("client", "server", "activation", t, step=step) is None
            client.flush()

        def receive():
            return [server.send("client", "server", "activation", None, step=step) for step in range(len(tensors))]

        _, received = _both(send, receive)
        for a, b in zip(tensors, received, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
        payload = sum(t.numel() * t.element_size() for t in tensors)
        assert client.traffic.sent("client") == server.traffic.received("server") == payload
        transport = client.transport()
        assert transport["payload_sent"] == payload and 0 < transport["framing_sent"] < payload


# -- identities ---------------------------------------------------------------------------------
def test_a_peer_certificate_from_another_ca_is_refused(pki):
    with _pair({"certs": pki / "other"}, {"certs": pki / "ours"}) as (client, _):
        with pytest.raises(ChannelError, match=TLS_REFUSED):
            client.open()


def test_expired_certificate_is_refused_when_loaded_and_by_the_peer(pki, tmp_path):
    expired = tmp_path / "expired"
    expired.mkdir()
    for name in ("ca.pem", "ca.key"):
        shutil.copy(pki / "ours" / name, expired / name)
    issue(expired, "client", not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10), days=1)
    with pytest.raises(CertificateError, match="expired"):
        load_credentials(expired, "client")
    # bypass the local check: the peer must refuse it too
    credentials = PartyCredentials("client", (expired / "client.key").read_bytes(), (expired / "client.pem").read_bytes(),
                                   (expired / "ca.pem").read_bytes())
    with _pair({"certs": credentials}, {"certs": pki / "ours"}) as (client, _):
        with pytest.raises(ChannelError, match=TLS_REFUSED):
            client.open()


def test_a_certificate_naming_another_party_is_refused_and_logged(pki):
    with _pair({"certs": pki / "ours"}, {"certs": pki / "ours"}) as (_, server):
        link = Link(server.addresses["server"], party="mallory", peer="server", certs=pki / "ours", timeout_s=5)
        hello = WireMessage(run_id="run-test", step=0, kind="control", src="mallory", dst="server", tag="hello")
        with pytest.raises(PeerRefused, match="mallory"):
            link.exchange(hello)
        link.close()
        assert any("mallory" in reason for reason in server.listener.refusals)


def test_a_stolen_client_certificate_cannot_impersonate_the_server(pki):
    addresses = _addresses("client", "server")
    impostor = Listener(lambda m, p: m, listen=addresses["server"], party="client", allowed_peers=["client"],
                        certs=pki / "ours").start()
    client = _channel("client", addresses, tls={"certs": pki / "ours"})
    try:
        with pytest.raises(ChannelError, match="TLS handshake"):
            client.open()
    finally:
        client.listener.stop(grace=0)
        impostor.stop(grace=0)


def test_plaintext_and_tls_do_not_talk(pki):
    with _pair({"insecure": True}, {"certs": pki / "ours"}, connect_timeout_s=1.0) as (client, _):
        with pytest.raises(ChannelError):
            client.open()
    with _pair({"certs": pki / "ours"}, {"insecure": True}, connect_timeout_s=1.0) as (client, _):
        with pytest.raises(ChannelError):
            client.open()


def test_tls_needs_certificates_or_an_explicit_insecure_flag():
    with pytest.raises(ConfigError, match="--insecure"):
        Link("127.0.0.1:1", party="client")
    with pytest.raises(ConfigError, match="--insecure"):
        NetworkChannel(party="client", addresses=_addresses("client", "server"), run_id="r")


# -- refusals -----------------------------------------------------------------------------------
def test_a_party_of_another_run_file_is_refused_before_anything_trains():
    addresses = _addresses("client", "server")
    server = _channel("server", addresses, run_id="run-a")
    client = _channel("client", addresses, run_id="run-b")
    try:
        with pytest.raises(PeerRefused, match="run files differ"):
            client.open()
    finally:
        client.listener.stop(grace=0)
        server.listener.stop(grace=0)


def test_a_message_out_of_step_is_refused_with_what_was_expected():
    with _pair() as (client, server):
        _both(client.open, server.open)
        client.send("client", "server", "activation", torch.ones(2, 3), step=4)
        with pytest.raises(ChannelError, match=r"client is out of step: expected its activation of step 0 .*got "
                                               r"activation of step 4"):
            server.send("client", "server", "activation", None, step=0)


def test_oversize_messages_are_refused_on_both_sides():
    big = torch.zeros(64, 64)  # 16 KiB of payload
    with _pair(server={"max_message_bytes": 4096}, client={"max_message_bytes": 1 << 20}) as (client, server):
        _both(client.open, server.open)
        client.send("client", "server", "activation", big, step=0)
        with pytest.raises(ChannelError, match="exceeds"):  # the receiver's codec refuses it
            server.send("client", "server", "activation", None, step=0)
    with _pair(server={"max_message_bytes": 4096}, client={"max_message_bytes": 8 << 20}) as (client, server):
        _both(client.open, server.open)
        client.send("client", "server", "activation", torch.zeros(1 << 20), step=0)  # 4 MiB
        with pytest.raises(ChannelError, match="exceeds"):  # cut off by gRPC before it is buffered
            server.send("client", "server", "activation", None, step=0)
    with _pair(client={"max_message_bytes": 1024}) as (client, server):
        _both(client.open, server.open)
        with pytest.raises(ChannelError, match="exceeds"):
            client.send("client", "server", "activation", big, step=0)
            client.flush()


# -- faults -------------------------------------------------------------------------------------
def test_a_killed_peer_fails_the_other_side_within_its_timeout():
    with _pair(timeout_s=2.0) as (client, server):
        _both(client.open, server.open)
        server.listener.stop(grace=0)  # killed: no goodbye, nothing listens any more
        start = time.monotonic()
        with pytest.raises(ChannelError, match="server has not taken the messages .* gone or stuck"):
            client.send("client", "server", "activation", torch.ones(2, 2), step=0)
            client.flush()
        assert time.monotonic() - start < 2.0 + 1.0
        start = time.monotonic()
        with pytest.raises(ChannelError, match=r"no gradient of step 0 from server within 2 s"):
            client.send("server", "client", "gradient", None, step=0)
        assert time.monotonic() - start < 2.0 + 1.0


def test_a_hung_peer_is_detected_within_the_timeout_plus_one_second():
    """Alive and connected, but it never sends (or never answers): the waiting side fails at --timeout."""
    with _pair(timeout_s=1.5) as (client, server):
        _both(client.open, server.open)
        start = time.monotonic()
        with pytest.raises(ChannelError, match="within 1.5 s: server is gone or stuck"):
            client.send("server", "client", "gradient", None, step=0)
        assert 1.5 <= time.monotonic() - start < 1.5 + 1.0
        start = time.monotonic()  # and a peer that never takes what it was sent
        with pytest.raises(ChannelError, match="server has not taken the messages client sent it within 1.5 s"):
            client.send("client", "server", "activation", torch.ones(2, 2), step=0)
            client.flush()
        assert time.monotonic() - start < 1.5 + 1.0


def test_a_failing_peer_says_why_and_the_other_stops_at_once():
    with _pair(timeout_s=30.0) as (client, server):
        _both(client.open, server.open)
        server.close(error="ValueError: the server's disk is full")
        start = time.monotonic()
        with pytest.raises(PeerGone, match="server failed before sending the gradient of step 0: ValueError: the "
                                           "server's disk is full"):
            client.send("server", "client", "gradient", None, step=0)
        assert time.monotonic() - start < 1.0  # not the 30 s timeout


def test_a_stuck_listener_fails_the_caller_at_the_deadline():
    release = threading.Event()

    def stuck(message, peer):
        release.wait(10)
        raise ChannelError("too late")

    listener = Listener(stuck, listen="127.0.0.1:0", insecure=True).start()
    try:
        link = Link(f"127.0.0.1:{listener.port}", party="client", insecure=True, timeout_s=1.0, connect_timeout_s=1.0)
        start = time.monotonic()
        with pytest.raises(ChannelError, match="no reply .* within 1 s"):
            link.exchange(WireMessage(run_id="r", step=0, kind="control", src="client", dst="server", tag="hello"))
        assert time.monotonic() - start < 3.0
        release.set()
    finally:
        listener.stop(grace=0)


# -- served inference ---------------------------------------------------------------------------
def _spec(digits, topology="vanilla") -> SessionSpec:
    return SessionSpec(model="mlp", input_shape=digits.input_shape, num_classes=digits.num_classes, topology=topology,
                       seed=0, optimizer=OptimizerSpec("adam", lr=1e-3).to_dict())


def test_inference_server_answers_concurrent_clients_like_local_split_inference(pki, digits, tmp_path):
    from secsplit.checkpoint import load_split_model, save_split_model
    from secsplit.remote import InferenceClient, InferenceServer

    for topology_name in ("vanilla", "ushape"):
        topology = _spec(digits, topology_name).build()
        Trainer(topology, batch_size=64, epochs=1, seed=0, progress=False).fit(digits)
        directory = save_split_model(topology, tmp_path / topology_name, model_name="mlp", input_shape=digits.input_shape,
                                     num_classes=digits.num_classes, dataset_name="digits", model_seed=0)
        topology.eval()
        with torch.no_grad():
            expected = topology.predict(digits.x_test)
        serving = InferenceServer(directory)
        listener = Listener(serving.handle, listen="127.0.0.1:0", certs=pki / "ours", max_workers=4).start()
        try:
            answers, errors = {}, []

            def client(i):
                try:
                    link = Link(f"127.0.0.1:{listener.port}", party="client", certs=pki / "ours", timeout_s=10)
                    remote = InferenceClient(load_split_model(directory, parties="client"), link)
                    rows = slice(i * 40, (i + 1) * 40)
                    answers[i] = (rows, remote.predict(digits.x_test[rows]))
                    remote.close()
                except Exception as error:  # surfaced below
                    errors.append(error)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        finally:
            listener.stop(grace=0)
        assert not errors, errors
        assert len(answers) == 8 and serving.requests == 8
        for rows, logits in answers.values():
            torch.testing.assert_close(logits, expected[rows], rtol=1e-5, atol=1e-6)


def test_an_inference_client_cannot_train_against_an_inference_server(digits, tmp_path):
    from secsplit.checkpoint import load_split_model, save_split_model
    from secsplit.remote import InferenceClient, InferenceServer

    directory = save_split_model(_spec(digits).build(), tmp_path / "m", model_name="mlp", input_shape=digits.input_shape,
                                 num_classes=digits.num_classes, dataset_name="digits", model_seed=0)
    listener = Listener(InferenceServer(directory).handle, listen="127.0.0.1:0", insecure=True).start()
    try:
        remote = InferenceClient(load_split_model(directory, parties="client"),
                                 Link(f"127.0.0.1:{listener.port}", party="client", insecure=True, timeout_s=10))
        with pytest.raises(ConfigError, match="only answers predictions"):
            remote.train_step(digits.x_train[:4], digits.y_train[:4], step=0)
        remote.close()
    finally:
        listener.stop(grace=0)


def test_requests_beyond_workers_and_queue_are_refused_not_queued_forever():
    release, entered = threading.Event(), threading.Event()

    def slow(message, peer):
        entered.set()
        release.wait(10)
        return WireMessage(run_id=message.run_id, step=message.step, kind="control", src="server", dst=message.src)

    hello = WireMessage(run_id="r", step=0, kind="control", src="client", dst="server", tag="hello")
    listener = Listener(slow, listen="127.0.0.1:0", insecure=True, max_workers=1, max_queue=0).start()

    def link():
        return Link(f"127.0.0.1:{listener.port}", party="client", insecure=True, timeout_s=10, connect_timeout_s=5)

    try:
        first = threading.Thread(target=lambda: link().exchange(hello))
        first.start()
        assert entered.wait(10)
        with pytest.raises(PeerBusy, match="at capacity"):
            link().exchange(hello)
        release.set()
        first.join(10)
    finally:
        listener.stop(grace=0)


def test_inference_clients_retry_a_server_at_capacity_with_backoff(digits, tmp_path):
    """One worker, no queue, 16 concurrent clients: refusals for capacity are retried, so every request completes."""
    from secsplit.checkpoint import load_split_model, save_split_model
    from secsplit.remote import InferenceClient, InferenceServer

    directory = save_split_model(_spec(digits).build(), tmp_path / "m", model_name="mlp", input_shape=digits.input_shape,
                                 num_classes=digits.num_classes, dataset_name="digits", model_seed=0)
    serving = InferenceServer(directory)
    listener = Listener(serving.handle, listen="127.0.0.1:0", insecure=True, max_workers=1, max_queue=0).start()
    errors, done = [], []
    try:
        def client():
            try:
                remote = InferenceClient(load_split_model(directory, parties="client"),
                                         Link(f"127.0.0.1:{listener.port}", party="client", insecure=True, timeout_s=30))
                for _ in range(5):
                    remote.predict(digits.x_test[:32])
                remote.close()
                done.append(1)
            except Exception as error:  # surfaced below
                errors.append(error)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        listener.stop(grace=0)
    assert not errors, errors[:3]
    assert len(done) == 16 and serving.requests == 16 * 5


def test_pulls_are_bounded_per_peer_and_only_training_listeners_accept_them():
    """A peer may hold at most 2 pulls open (each holds a listener thread); an inference server takes none."""
    from secsplit.channel.codec import decode
    from secsplit.channel.grpc_link import MAX_STREAMS_PER_PEER, Outbox

    outboxes = []

    def source(request, peer):
        outboxes.append(Outbox(window=8, max_bytes=1 << 20))
        return outboxes[-1]

    listener = Listener(lambda message, peer: message, listen="127.0.0.1:0", insecure=True, source=source).start()
    plain = Listener(lambda message, peer: message, listen="127.0.0.1:0", insecure=True).start()
    request = WireMessage(run_id="r", step=0, kind="control", src="client", dst="server", tag="pull")
    try:
        with Link(f"127.0.0.1:{listener.port}", party="client", insecure=True, timeout_s=5) as link:
            link.exchange(WireMessage(run_id="r", step=0, kind="control", src="client", dst="server", tag="hello"))
            held = []
            for n in range(1, MAX_STREAMS_PER_PEER + 1):  # one at a time, so outboxes[i] is held[i]'s
                held.append(link.pull(request))
                deadline = time.monotonic() + 5
                while len(outboxes) < n and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(outboxes) == n  # the pull is open at the listener
            third = link.pull(request)
            guard = threading.Timer(5, third.cancel)  # a read has no deadline of its own (the channel's watcher gives it one)
            guard.start()
            with pytest.raises(PeerRefused, match="open pulls"):
                third.read()
            guard.cancel()
            sent = [torch.ones(2) * i for i in range(3)]
            for i, tensor in enumerate(sent):
                outboxes[0].put(encode(WireMessage(run_id="r", step=i, kind="activation", src="server", dst="client",
                                                   tensor=tensor)), timeout_s=1, peer="client")
            outboxes[0].close()
            guard = threading.Timer(10, held[0].cancel)  # a lost message fails the test instead of hanging it
            guard.start()
            received = [decode(held[0].read()).tensor for _ in sent]
            assert all(torch.equal(a, b) for a, b in zip(sent, received, strict=True))
            # read in this thread: no gRPC thread relays each message (gRPC ignores a misspelt option silently)
            assert type(held[0]._call).__name__ == "_SingleThreadedRendezvous"
            assert not [t.name for t in threading.enumerate() if "channel_spin" in t.name]
            assert held[0].read() is None and "ended its stream" in held[0].ended  # in order, then the end
            guard.cancel()
            assert outboxes[0].drain(1.0)
            outboxes[1].close()
        with Link(f"127.0.0.1:{plain.port}", party="client", insecure=True, timeout_s=5) as link:
            inbound = link.pull(request)
            assert inbound.read() is None and "UNIMPLEMENTED" in inbound.ended
    finally:
        listener.stop(grace=0)
        plain.stop(grace=0)


def test_a_sender_far_ahead_of_its_receiver_waits_then_fails():
    from secsplit.channel.grpc_link import Outbox

    outbox = Outbox(window=2, max_bytes=1 << 20)
    outbox.put(b"a", timeout_s=0.1, peer="server")
    outbox.put(b"b", timeout_s=0.1, peer="server")
    start = time.monotonic()
    with pytest.raises(ChannelError, match="server has not taken the last 2 messages .* within 0.3 s"):
        outbox.put(b"c", timeout_s=0.3, peer="server")
    assert 0.3 <= time.monotonic() - start < 1.0
    big = Outbox(window=8, max_bytes=10)
    big.put(b"x" * 20, timeout_s=0.1, peer="server")  # one message larger than the budget still goes out alone
    with pytest.raises(ChannelError, match="20 bytes"):
        big.put(b"y", timeout_s=0.1, peer="server")


def test_an_inference_client_whose_session_was_forgotten_opens_it_again(digits, tmp_path):
    """One session per certificate name: a second client's hello forgets the first's, which says hello again."""
    from secsplit.checkpoint import load_split_model, save_split_model
    from secsplit.remote import InferenceClient, InferenceServer

    directory = save_split_model(_spec(digits).build(), tmp_path / "m", model_name="mlp", input_shape=digits.input_shape,
                                 num_classes=digits.num_classes, dataset_name="digits", model_seed=0)
    serving = InferenceServer(directory, max_sessions=1)
    listener = Listener(serving.handle, listen="127.0.0.1:0", insecure=True).start()
    try:
        first, second = (InferenceClient(load_split_model(directory, parties="client"),
                                         Link(f"127.0.0.1:{listener.port}", party="client", insecure=True, timeout_s=10))
                         for _ in range(2))
        assert list(serving.sessions["client"]) == [second.run_id]  # the first session was forgotten
        expected = load_split_model(directory).predict(digits.x_test[:8])
        assert torch.allclose(first.predict(digits.x_test[:8]), expected, atol=1e-6)
        assert list(serving.sessions["client"]) == [first.run_id]
        assert torch.allclose(second.predict(digits.x_test[:8]), expected, atol=1e-6)
        assert serving.requests == 2
    finally:
        listener.stop(grace=0)


def test_a_pull_request_gets_the_same_checks_as_an_exchanged_message():
    """Garbage, a forged sender or an oversize pull request is refused with the reason; the source never sees them."""
    import grpc

    from secsplit.channel.codec import encode

    asked = []
    listener = Listener(lambda message, peer: message, listen="127.0.0.1:0", insecure=True,
                        source=lambda request, peer: asked.append(request), max_message_bytes=4096).start()
    good = WireMessage(run_id="r", step=0, kind="control", src="client", dst="server", tag="pull")
    bad = [b"\xff\x00garbage", encode(WireMessage(**{**good.__dict__, "src": "mallory"})),
           encode(WireMessage(**{**good.__dict__, "kind": "activation", "tensor": torch.zeros(64, 64)}), max_bytes=1 << 20)]
    try:
        with Link(f"127.0.0.1:{listener.port}", party="client", insecure=True, timeout_s=5) as link:
            for data in bad:
                with pytest.raises(grpc.RpcError) as refused:
                    next(link._pull_call(data, timeout=5))
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert not asked
        assert len(listener.refusals) == len(bad)
        assert any("malformed" in r for r in listener.refusals) and any("mallory" in r for r in listener.refusals)
        assert any("exceeds" in r for r in listener.refusals)
    finally:
        listener.stop(grace=0)


def test_a_sender_finishing_stops_at_once_when_its_receiver_failed():
    """A peer that said goodbye will not pull what it was sent: the sender's finish fails with its reason, not at the timeout."""
    with _pair(timeout_s=30.0) as (client, server):
        _both(client.open, server.open)
        client.send("client", "server", "activation", torch.ones(2, 2), step=0)
        server.close(error="ValueError: the server's disk is full")
        start = time.monotonic()
        with pytest.raises(PeerGone, match="server failed: ValueError: the server's disk is full"):
            client.flush()
        assert time.monotonic() - start < 2.0  # not the 30 s timeout


def test_a_message_that_arrived_before_its_senders_goodbye_is_still_read():
    """A peer finishing cleanly flushes (its messages are written) and then says goodbye; the receiver
    may hear the goodbye before its training thread reads the last message. That message is read; only
    a message that never comes fails, once the finished peer's stream has ended."""
    with _pair(timeout_s=30.0) as (client, server):
        _both(client.open, server.open)
        client.send("client", "server", "activation", torch.ones(2), step=0)
        assert torch.equal(server.send("client", "server", "activation", None, step=0), torch.ones(2))
        client.send("client", "server", "activation", torch.full((2,), 2.0), step=1)
        client.close()  # flushed: written to the server's pull, then goodbye
        assert server._gone.get("client") == ""  # the goodbye was heard before the read below
        start = time.monotonic()
        assert torch.equal(server.send("client", "server", "activation", None, step=1), torch.full((2,), 2.0))
        with pytest.raises(PeerGone, match="client finished before sending the activation of step 2"):
            server.send("client", "server", "activation", None, step=2)
        assert time.monotonic() - start < 5.0  # not the 30 s timeout

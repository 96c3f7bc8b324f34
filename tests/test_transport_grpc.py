"""Split training and inference across a real gRPC connection on loopback, with mutual TLS.

What must hold: a remote run reproduces the in-process run exactly (weights, accuracy, bytes);
every identity problem (wrong CA, expired certificate, wrong party name, impersonated server,
plaintext against TLS) is refused; every protocol problem (wrong step, unknown run, shape, dtype,
label range, size) is refused with a reason and leaves the session usable; a dead or stuck peer
fails within the timeout; a crashed run resumes to the uninterrupted result.
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
from secsplit.channel.codec import WireMessage
from secsplit.channel.grpc_link import Link, Listener, PeerRefused
from secsplit.data import load_dataset
from secsplit.callbacks import Callback
from secsplit.errors import ChannelError, ConfigError
from secsplit.optim import OptimizerSpec
from secsplit.remote import RemoteChainTopology, SessionSpec
from secsplit.remote.server import TrainingServer
from secsplit.training import Checkpointing, Trainer


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


def _spec(digits, topology="vanilla") -> SessionSpec:
    return SessionSpec(model="mlp", input_shape=digits.input_shape, num_classes=digits.num_classes, topology=topology,
                       seed=0, optimizer=OptimizerSpec("adam", lr=1e-3).to_dict())


@contextlib.contextmanager
def _serving(handler, **options):
    listener = Listener(handler, listen="127.0.0.1:0", **options).start()
    try:
        yield listener
    finally:
        listener.stop(grace=0)


def _link(listener, **options) -> Link:
    options.setdefault("party", "client")
    options.setdefault("timeout_s", 10.0)
    options.setdefault("connect_timeout_s", 5.0)
    return Link(f"127.0.0.1:{listener.port}", **options)


def _client_weights(topology) -> list[torch.Tensor]:
    return [p.detach().clone() for p in topology.parties["client"].segments.parameters()]


# -- exactness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("topology_name", ["vanilla", "ushape"])
def test_remote_training_over_mtls_reproduces_in_process(pki, digits, topology_name):
    spec = _spec(digits, topology_name)
    local = spec.build()
    local_report = Trainer(local, batch_size=64, epochs=1, seed=0, progress=False).fit(digits)

    server = TrainingServer()
    with _serving(server.handle, certs=pki / "ours") as listener:
        link = _link(listener, certs=pki / "ours")
        remote = RemoteChainTopology(spec, link)
        remote_report = Trainer(remote, batch_size=64, epochs=1, seed=0, progress=False).fit(digits)
        server_weights = [p.detach().clone() for p in server.party.segments.parameters()]
        remote.close()
        link.close()

    assert remote_report.summary["test_accuracy"] == pytest.approx(local_report.summary["test_accuracy"], abs=1e-9)
    for a, b in zip(_client_weights(local), _client_weights(remote), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the server's half trained to the same weights as the in-process server party
    for a, b in zip(local.parties["server"].segments.parameters(), server_weights, strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=0, atol=0)
    for key in ("client_bytes_sent", "client_bytes_received"):
        assert remote_report.summary[key] == local_report.summary[key] > 0
    transport = remote_report.summary["transport"]
    assert transport["payload_sent"] >= remote_report.summary["client_bytes_sent"]
    assert 0 < transport["framing_sent"] < 0.1 * transport["wire_sent"]  # framing is reported apart, and small


# -- identities ---------------------------------------------------------------------------------
def _open(link, digits):
    """A hello: the first message that needs an authenticated connection."""
    return RemoteChainTopology(_spec(digits), link)


def test_client_certificate_from_another_ca_is_refused(pki, digits):
    with _serving(TrainingServer().handle, certs=pki / "ours") as listener:
        with pytest.raises(ChannelError, match="TLS handshake|refused our certificate"):
            _open(_link(listener, certs=pki / "other"), digits)


def test_expired_certificate_is_refused_when_loaded_and_by_the_peer(pki, digits, tmp_path):
    expired = tmp_path / "expired"
    expired.mkdir()
    for name in ("ca.pem", "ca.key"):
        shutil.copy(pki / "ours" / name, expired / name)
    issue(expired, "client", not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10), days=1)
    with pytest.raises(CertificateError, match="expired"):
        load_credentials(expired, "client")
    # bypass the local check: the server must refuse it too
    credentials = PartyCredentials("client", (expired / "client.key").read_bytes(), (expired / "client.pem").read_bytes(),
                                   (expired / "ca.pem").read_bytes())
    with _serving(TrainingServer().handle, certs=pki / "ours") as listener:
        with pytest.raises(ChannelError, match="TLS handshake|refused our certificate"):
            _open(_link(listener, certs=credentials), digits)


def test_wrong_party_name_is_refused_and_logged(pki, digits):
    server = TrainingServer()
    with _serving(server.handle, certs=pki / "ours", allowed_peers=["client"]) as listener:
        with pytest.raises(PeerRefused, match="mallory"):
            _open(_link(listener, party="mallory", certs=pki / "ours"), digits)
        assert any("mallory" in reason for reason in listener.refusals)
    assert not server.session_open


def test_client_refuses_a_server_that_is_not_named_server(pki, digits):
    """A stolen client certificate cannot impersonate the server."""
    with _serving(TrainingServer().handle, party="client", certs=pki / "ours") as listener:
        with pytest.raises(ChannelError, match="TLS handshake|refused our certificate"):
            _open(_link(listener, certs=pki / "ours"), digits)


def test_plaintext_and_tls_do_not_talk(pki, digits):
    with _serving(TrainingServer().handle, certs=pki / "ours") as listener:
        with pytest.raises(ChannelError):
            _open(_link(listener, insecure=True, connect_timeout_s=1.0), digits)
    with _serving(TrainingServer().handle, insecure=True) as listener:
        with pytest.raises(ChannelError):
            _open(_link(listener, certs=pki / "ours", connect_timeout_s=1.0), digits)


def test_tls_needs_certificates_or_an_explicit_insecure_flag():
    with pytest.raises(ConfigError, match="--insecure"):
        Link("127.0.0.1:1", party="client")


# -- protocol refusals --------------------------------------------------------------------------
def _message(remote, kind, tensor, step, phase="train", **fields):
    return WireMessage(run_id=fields.pop("run_id", remote.run_id), step=step, kind=kind, src="client", dst="server",
                       phase=phase, tensor=tensor, **fields)


def test_bad_messages_are_refused_with_a_reason_and_the_session_goes_on(digits):
    server = TrainingServer(wait_s=0.3)
    with _serving(server.handle, insecure=True) as listener:
        link = _link(listener, insecure=True)
        remote = RemoteChainTopology(_spec(digits), link)
        x, y = digits.x_train[:8], digits.y_train[:8]
        z = remote.head(x).detach()
        refusals = {
            "before its activation": _message(remote, "labels", y, step=0),  # waits wait_s for it first
            "out of order": _message(remote, "activation", z, step=3),
            "unknown run": _message(remote, "activation", z, step=0, run_id="run-somebody-else"),
            "shape": _message(remote, "activation", z[:, :5], step=0),
            "dtype": _message(remote, "activation", z.double(), step=0),
            "its activation was refused": _message(remote, "labels", y, step=0),
        }
        for reason, message in refusals.items():
            with pytest.raises(PeerRefused, match=reason):
                link.exchange(message)
        link.exchange(_message(remote, "activation", z, step=0))
        with pytest.raises(PeerRefused, match="labels must lie in"):
            link.exchange(_message(remote, "labels", torch.full((8,), 99), step=0))
        with pytest.raises(PeerRefused, match="labels"):
            link.exchange(_message(remote, "labels", y[:3], step=0))
        # after all that, the step still completes and training goes on
        reply = link.exchange(_message(remote, "labels", y, step=0))
        assert reply.kind == "gradient" and tuple(reply.tensor.shape) == tuple(z.shape)
        assert server.next_step == 1 and len(listener.refusals) == 8
        with pytest.raises(PeerRefused, match="busy"):
            RemoteChainTopology(_spec(digits), _link(listener, insecure=True))
        remote.close()


def test_oversize_messages_are_refused_on_both_sides(digits):
    server = TrainingServer()
    with _serving(server.handle, insecure=True, max_message_bytes=4096) as listener:
        big = torch.zeros(64, 64)  # 16 KiB of payload
        link = _link(listener, insecure=True, max_message_bytes=1 << 20)
        remote = RemoteChainTopology(_spec(digits), link)
        with pytest.raises(PeerRefused, match="exceeds|too large|limit"):
            link.exchange(_message(remote, "activation", big, step=0))
        small_link = _link(listener, insecure=True, max_message_bytes=1024)
        with pytest.raises(ChannelError, match="exceeds|too large|limit"):
            small_link.exchange(_message(remote, "activation", big, step=0))


def test_server_spec_pins_are_enforced(digits):
    with _serving(TrainingServer(pinned={"model": "lenet"}).handle, insecure=True) as listener:
        with pytest.raises(PeerRefused, match="model='mlp'.*model='lenet'"):
            RemoteChainTopology(_spec(digits), _link(listener, insecure=True))


# -- faults -------------------------------------------------------------------------------------
def test_a_killed_server_fails_the_client_within_its_timeout(digits):
    server = TrainingServer()
    listener = Listener(server.handle, listen="127.0.0.1:0", insecure=True).start()
    link = _link(listener, insecure=True, timeout_s=2.0)
    remote = RemoteChainTopology(_spec(digits), link)
    remote.train_step(digits.x_train[:16], digits.y_train[:16], step=0)
    listener.stop(grace=0)
    start = time.monotonic()
    with pytest.raises(ChannelError, match="cannot reach|no reply"):
        remote.train_step(digits.x_train[16:32], digits.y_train[16:32], step=1)
    assert time.monotonic() - start < 5.0


def test_a_stuck_server_fails_the_client_at_the_deadline(digits):
    release = threading.Event()

    def stuck(message, peer):
        release.wait(10)
        raise ChannelError("too late")

    with _serving(stuck, insecure=True) as listener:
        link = _link(listener, insecure=True, timeout_s=1.0, connect_timeout_s=1.0)
        start = time.monotonic()
        with pytest.raises(ChannelError, match="no reply .* within 1 s"):
            link.exchange(WireMessage(run_id="r", step=0, kind="control", src="client", dst="server", tag="hello"))
        assert time.monotonic() - start < 3.0
        release.set()


class _Crash(Exception):
    pass


class _CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, *, step, loss):
        if step == self.step:
            raise _Crash(f"killed after step {step}")


def test_a_crashed_remote_run_resumes_to_the_uninterrupted_result(digits, tmp_path):
    spec = _spec(digits, "ushape")

    def run(server_dir, client_dir, *, crash_at=None, resume=False):
        server = TrainingServer(checkpoint_dir=server_dir)
        with _serving(server.handle, insecure=True) as listener:
            state = Checkpointing(str(client_dir), every=5, resume=resume)
            run_id, start = None, 0
            if resume:
                from secsplit.training import read_trainer_state

                saved = read_trainer_state(client_dir)
                run_id, start = saved["topology"], saved["global_step"]
            remote = RemoteChainTopology(spec, _link(listener, insecure=True), run_id=run_id, resume_step=start)
            callbacks = [] if crash_at is None else [_CrashAt(crash_at)]
            trainer = Trainer(remote, batch_size=64, epochs=2, seed=0, progress=False, checkpointing=state,
                              callbacks=callbacks)
            try:
                report = trainer.fit(digits)
            finally:
                remote.close()
        return report, _client_weights(remote)

    whole, whole_weights = run(tmp_path / "s0", tmp_path / "c0")
    with pytest.raises(_Crash):
        run(tmp_path / "s1", tmp_path / "c1", crash_at=27)  # mid-epoch 2 (23 steps per epoch)
    resumed, resumed_weights = run(tmp_path / "s1", tmp_path / "c1", resume=True)
    assert resumed.summary["test_accuracy"] == whole.summary["test_accuracy"]
    assert [r["test_accuracy"] for r in resumed.history] == [r["test_accuracy"] for r in whole.history]
    for a, b in zip(whole_weights, resumed_weights, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- served inference ---------------------------------------------------------------------------
def test_inference_server_answers_concurrent_clients_like_local_split_inference(pki, digits, tmp_path):
    from secsplit.checkpoint import load_split_model, save_split_model
    from secsplit.remote.serving import InferenceServer, spec_from_manifest

    for topology_name in ("vanilla", "ushape"):
        topology = _spec(digits, topology_name).build()
        Trainer(topology, batch_size=64, epochs=1, seed=0, progress=False).fit(digits)
        directory = save_split_model(topology, tmp_path / topology_name, model_name="mlp", input_shape=digits.input_shape,
                                     num_classes=digits.num_classes, dataset_name="digits", model_seed=0)
        topology.eval()
        with torch.no_grad():
            expected = topology.predict(digits.x_test)
        serving = InferenceServer(directory)
        with _serving(serving.handle, certs=pki / "ours", max_workers=4) as listener:
            answers, errors = {}, []

            def client(i):
                try:
                    local = load_split_model(directory, parties="client")
                    spec = spec_from_manifest(local.checkpoint.manifest)
                    remote = RemoteChainTopology(spec, _link(listener, certs=pki / "ours"), local=local)
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
        assert not errors, errors
        assert len(answers) == 8 and serving.requests == 8
        for rows, logits in answers.values():
            torch.testing.assert_close(logits, expected[rows], rtol=1e-5, atol=1e-6)


def test_requests_beyond_workers_and_queue_are_refused_not_queued_forever():
    release, entered = threading.Event(), threading.Event()

    def slow(message, peer):
        entered.set()
        release.wait(10)
        return WireMessage(run_id=message.run_id, step=message.step, kind="control", src="server", dst=message.src)

    hello = WireMessage(run_id="r", step=0, kind="control", src="client", dst="server", tag="hello")
    with _serving(slow, insecure=True, max_workers=1, max_queue=0) as listener:
        first = threading.Thread(target=lambda: _link(listener, insecure=True).exchange(hello))
        first.start()
        assert entered.wait(10)
        with pytest.raises(PeerRefused, match="RESOURCE_EXHAUSTED|Concurrent RPC limit|refused"):
            _link(listener, insecure=True).exchange(hello)
        release.set()
        first.join(10)


def test_labels_overtaking_their_activation_wait_for_it_and_a_refused_activation_fails_them_at_once(digits):
    server = TrainingServer(wait_s=5.0)
    with _serving(server.handle, insecure=True, max_workers=4) as listener:
        link = _link(listener, insecure=True)
        remote = RemoteChainTopology(_spec(digits), link)
        x, y = digits.x_train[:8], digits.y_train[:8]
        z = remote.head(x).detach()
        replies = {}
        labels_first = threading.Thread(target=lambda: replies.setdefault("labels", link.exchange(
            _message(remote, "labels", y, step=0))))
        labels_first.start()
        time.sleep(0.3)  # the labels now wait at the server
        link.exchange(_message(remote, "activation", z, step=0))
        labels_first.join(5)
        assert replies["labels"].kind == "gradient" and server.next_step == 1
        # step 1: a refused activation fails the waiting labels at once, not after wait_s
        errors = []
        waiting = threading.Thread(target=lambda: errors.append(_refusal(link, _message(remote, "labels", y, step=1))))
        start = time.monotonic()
        waiting.start()
        time.sleep(0.3)
        with pytest.raises(PeerRefused, match="shape"):
            link.exchange(_message(remote, "activation", z[:, :3], step=1))
        waiting.join(5)
        assert "its activation was refused" in errors[0] and time.monotonic() - start < 3.0


def _refusal(link, message) -> str:
    try:
        link.exchange(message)
    except PeerRefused as error:
        return str(error)
    return "accepted"

"""gRPC with mutual TLS between two parties: codec envelopes, one at a time or streamed.

``/secsplit.Split/Exchange`` takes an encoded envelope and returns one (control messages,
inference). ``/secsplit.Split/Stream`` (only on listeners that enable it: the parties of a
training run) carries one sender's envelopes in order over one long-lived call and answers once,
when the sender ends it; a refusal ends the stream with the reason. Streaming costs about half the
CPU of a call per message (no per-message call set-up, no acknowledgement) and fewer thread
hand-offs. Bytes go in and out of gRPC untouched (no gRPC-side serializers), so the only parser
that ever sees a peer's bytes is :func:`secsplit.channel.codec.decode`, with its size and shape checks.

Security: mutual TLS unless ``insecure=True``. The server demands a client certificate signed by
its CA and then checks the certificate's common name against the parties it expects; the client
dials an address but verifies that the server's certificate is issued to the expected party name
(``grpc.ssl_target_name_override``), so a stolen client certificate cannot impersonate the server.
Refusals are logged on the side that refuses and raised as :class:`ChannelError` on the caller.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass

import grpc

from secsplit.channel.certs import PartyCredentials, load_credentials
from secsplit.channel.codec import DEFAULT_MAX_MESSAGE_BYTES, CodecError, WireMessage, decode, encode
from secsplit.errors import ChannelError, ConfigError, SecsplitError

log = logging.getLogger("secsplit.transport")

METHOD = "/secsplit.Split/Exchange"
STREAM_METHOD = "/secsplit.Split/Stream"
#: streams one peer may hold open at once at a listener (its process, and a restarted one while the
#: old stream is being torn down); more would let one peer tie up the listener's threads
MAX_STREAMS_PER_PEER = 2
#: gRPC's own limit sits this far above the codec's, so slightly oversize messages reach the codec
#: and get its precise, logged refusal; grossly oversize ones are cut off by gRPC before buffering.
_GRPC_SLACK = 1 << 20


class PeerRefused(ChannelError):
    """The other party refused our message (bad step, shape, run, identity); carries its reason."""


class PeerBusy(PeerRefused):
    """The other party is at capacity (all its workers busy, its queue full): the same request may succeed later."""


@dataclass
class LinkStats:
    """Messages and bytes one side sent and received: tensor payload and the whole encoded envelope."""

    messages_sent: int = 0
    messages_received: int = 0
    payload_sent: int = 0
    payload_received: int = 0
    wire_sent: int = 0
    wire_received: int = 0

    def record(self, *, sent: WireMessage, sent_wire: int, received: WireMessage, received_wire: int) -> None:
        self.record_sent(sent, sent_wire)
        self.messages_received += 1
        self.payload_received += received.payload_bytes
        self.wire_received += received_wire

    def record_sent(self, sent: WireMessage, sent_wire: int) -> None:
        self.messages_sent += 1
        self.payload_sent += sent.payload_bytes
        self.wire_sent += sent_wire

    def as_dict(self) -> dict:
        return {**self.__dict__, "framing_sent": self.wire_sent - self.payload_sent,
                "framing_received": self.wire_received - self.payload_received}


def _options(max_message_bytes: int) -> list[tuple[str, int | str]]:
    limit = max_message_bytes + _GRPC_SLACK
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def _credentials(certs, party: str) -> PartyCredentials:
    if isinstance(certs, PartyCredentials):
        return certs
    if certs is None:
        raise ConfigError("mutual TLS needs a certificate directory (--certs DIR, made by `secsplit certs init`); "
                          "plaintext only with --insecure, for local tests")
    return load_credentials(certs, party)


def _check_address(address: str) -> None:
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"address {address!r} must be HOST:PORT with a port in 1..65535")


class Link:
    """The calling side of a connection: sends one envelope, waits for the reply (with a deadline).

    Args:
        address: "host:port" of the serving party.
        party: our party name (our certificate's name).
        peer: the party name the server's certificate must carry.
        certs: certificate directory, or :class:`PartyCredentials`; ignored when ``insecure``.
        insecure: plaintext, for local tests only.
        timeout_s: deadline of every exchange; a dead peer fails within it instead of hanging.
        connect_timeout_s: how long the first exchange retries while the server is not up yet.
    """

    def __init__(self, address: str, *, party: str, peer: str = "server", certs=None, insecure: bool = False,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, timeout_s: float = 60.0,
                 connect_timeout_s: float = 30.0) -> None:
        _check_address(address)
        self.address, self.party, self.peer = address, party, peer
        self.max_message_bytes = max_message_bytes
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.stats = LinkStats()
        self.insecure = insecure
        options = _options(max_message_bytes)
        if insecure:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            cred = _credentials(certs, party)
            tls = grpc.ssl_channel_credentials(root_certificates=cred.ca, private_key=cred.key,
                                               certificate_chain=cred.certificate)
            self._channel = grpc.secure_channel(address, tls, options=[*options, ("grpc.ssl_target_name_override", peer)])
        self._call = self._channel.unary_unary(METHOD)
        self._stream_call = self._channel.stream_unary(STREAM_METHOD)
        self._connected = False
        # the open stream: its queue, its call, and an event set once the call has ended
        self._stream: tuple[queue.SimpleQueue, grpc.Future, threading.Event] | None = None

    def exchange(self, message: WireMessage, *, quiet: bool = False) -> WireMessage:
        """Send ``message``; return the peer's reply, or raise :class:`ChannelError` saying why not.

        ``quiet``: a failure is only raised, not logged (a goodbye to a peer that may have finished).
        """
        data = encode(message, max_bytes=self.max_message_bytes)
        deadline = time.monotonic() + (self.timeout_s if self._connected else self.connect_timeout_s)
        while True:
            try:
                reply_bytes = self._call(data, timeout=max(0.1, min(self.timeout_s, deadline - time.monotonic())))
                break
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.UNAVAILABLE and not self._connected and time.monotonic() < deadline \
                        and "connection refused" in (error.details() or "").lower():
                    time.sleep(0.2)  # the server may still be starting
                    continue
                raise self._explain(error, _what(message, self), quiet=quiet) from None
        self._connected = True
        return self._finish(message, data, reply_bytes)

    def _finish(self, message: WireMessage, data: bytes, reply_bytes: bytes) -> WireMessage:
        try:
            reply = decode(reply_bytes, max_bytes=self.max_message_bytes)
        except CodecError as error:
            log.warning("refused reply from %s: %s", self.peer, error)
            raise ChannelError(f"reply from {self.peer} at {self.address} rejected: {error}") from None
        if reply.error:
            raise PeerRefused(f"{self.peer} refused {message.kind} message of step {message.step}: {reply.error}")
        self.stats.record(sent=message, sent_wire=len(data), received=reply, received_wire=len(reply_bytes))
        return reply

    # -- streaming ---------------------------------------------------------------------------------
    def send(self, message: WireMessage) -> None:
        """Stream ``message`` to the peer without waiting for it to arrive (in order, on one long-lived call).

        A refusal or a lost connection surfaces at a later :meth:`raise_if_failed` (each send calls
        it) or at :meth:`finish`. Before the first exchange the message is exchanged instead, so
        connecting (waiting for a starting peer) is settled first.
        """
        if not self._connected:
            self.exchange(message)
            return
        self.raise_if_failed()
        data = encode(message, max_bytes=self.max_message_bytes)
        if self._stream is None:
            pending: queue.SimpleQueue = queue.SimpleQueue()

            def requests():
                while (item := pending.get()) is not None:
                    yield item

            call, ended = self._stream_call.future(requests()), threading.Event()
            # a flag, not call.done(): done() takes the lock gRPC's writer holds while it writes a message
            call.add_done_callback(lambda _call: ended.set())
            self._stream = (pending, call, ended)
        self._stream[0].put(data)
        self.stats.record_sent(message, len(data))

    def raise_if_failed(self) -> None:
        """Raise why the open stream ended early (the peer refused a message, or is gone); else nothing."""
        if self._stream is not None and self._stream[2].is_set():
            self.finish()

    def finish(self) -> None:
        """End the open stream and wait (up to the timeout) until the peer has taken every message; raise any failure."""
        if self._stream is None:
            return
        (pending, call, _), self._stream = self._stream, None
        pending.put(None)
        what = f"the messages streamed to {self.peer} at {self.address}"
        try:
            reply_bytes = call.result(timeout=self.timeout_s)
        except grpc.FutureTimeoutError:
            call.cancel()
            raise ChannelError(f"no reply to {what} within {self.timeout_s:g} s: the peer is gone or stuck") from None
        except grpc.FutureCancelledError:
            raise ChannelError(f"{what} were cancelled: the link was closed") from None
        except grpc.RpcError as error:
            raise self._explain(error, what) from None
        try:
            reply = decode(reply_bytes, max_bytes=self.max_message_bytes)
        except CodecError as error:
            raise ChannelError(f"reply from {self.peer} at {self.address} rejected: {error}") from None
        if reply.error:
            raise PeerRefused(f"{self.peer} refused {what}: {reply.error}")

    def _explain(self, error: grpc.RpcError, what: str, *, quiet: bool = False) -> ChannelError:
        code, details = error.code(), error.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ChannelError(f"no reply to {what} within {self.timeout_s:g} s: the peer is gone or stuck")
        if code == grpc.StatusCode.UNAVAILABLE:
            lowered = details.lower()
            if any(k in lowered for k in ("handshake", "ssl", "verification", "certificate")):
                hint = "TLS handshake failed (wrong CA, expired or wrong-name certificate, or plaintext against TLS)"
            elif "socket closed" in lowered and not self.insecure and not self._connected:
                hint = ("the server closed the connection during the TLS handshake: it refused our certificate "
                        "(another CA, expired) or it speaks plaintext")
            else:
                hint = "is it running, and do both sides agree on TLS (--insecure on both or neither)?"
            if not quiet:
                log.warning("cannot deliver %s: %s", what, details)
            return ChannelError(f"cannot reach {self.peer} at {self.address}: {hint} [{details}]")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "concurrent rpc limit" in details.lower():
            return PeerBusy(f"{self.peer} is at capacity and refused {what}: {details}")
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED):
            return PeerRefused(f"{self.peer} refused {what}: {details}")
        return ChannelError(f"{what} failed: {code.name}: {details}")

    def close(self) -> None:
        if self._stream is not None:
            self._stream[0].put(None)  # ends the request generator's thread
            self._stream = None
        self._channel.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _what(message: WireMessage, link: Link) -> str:
    return f"{message.kind} message (step {message.step}) to {link.peer} at {link.address}"


Handler = Callable[[WireMessage, str], WireMessage]


class Listener:
    """The serving side: a gRPC server that authenticates peers and hands decoded envelopes to ``handler``.

    ``handler(message, peer_name)`` returns the reply; raising :class:`SecsplitError` turns into a
    refusal the caller sees (and this side logs). Concurrency: ``max_workers`` threads serve
    requests, at most ``max_queue`` more wait; beyond that gRPC answers RESOURCE_EXHAUSTED. An open
    stream holds one thread; each peer may hold at most :data:`MAX_STREAMS_PER_PEER` at once.

    Args:
        listen: "host:port" (port 0 picks a free port; see :attr:`port`).
        party: our party name; ``allowed_peers``: the client names we accept (certificate CN).
        streams: also accept ``/secsplit.Split/Stream`` (training parties; not an inference server,
            whose clients only need one request at a time).
    """

    def __init__(self, handler: Handler, *, listen: str, party: str = "server", allowed_peers: Iterable[str] = ("client",),
                 certs=None, insecure: bool = False, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_workers: int = 4, max_queue: int = 64, streams: bool = False) -> None:
        self.handler, self.party = handler, party
        self.allowed_peers = tuple(allowed_peers)
        self.insecure = insecure
        self.max_message_bytes = max_message_bytes
        self.last_message_at = time.monotonic()
        self.refusals: list[str] = []
        self._lock = threading.Lock()
        self._streaming: dict[str, int] = {}  # peer -> streams it holds open
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=_options(max_message_bytes),
                                   maximum_concurrent_rpcs=max_workers + max_queue)
        methods = {"Exchange": grpc.unary_unary_rpc_method_handler(self._serve)}
        self._streams = streams
        if streams:
            methods["Stream"] = grpc.stream_unary_rpc_method_handler(self._serve_stream)
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("secsplit.Split", methods)])
        try:
            if insecure:
                self.port = self._server.add_insecure_port(listen)
            else:
                cred = _credentials(certs, party)
                tls = grpc.ssl_server_credentials([(cred.key, cred.certificate)], root_certificates=cred.ca,
                                                  require_client_auth=True)
                self.port = self._server.add_secure_port(listen, tls)
        except RuntimeError as error:
            raise ChannelError(f"cannot listen on {listen}: {error}") from None
        if not self.port:
            raise ChannelError(f"cannot listen on {listen} (address in use or invalid)")

    def start(self) -> Listener:
        self._server.start()
        if self._streams:
            # a peer's open stream holds one of the server's threads, which the interpreter joins at
            # exit: stop serving first, so a process that never closed its channel still exits
            server = weakref.ref(self._server)
            threading._register_atexit(lambda: server() is not None and server().stop(0))
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()

    def _peer_name(self, context) -> str | None:
        if self.insecure:  # nobody is authenticated: the message's own src is checked against the allowed names
            return None
        auth = context.auth_context()
        names = [n.decode("utf-8", "replace") for n in auth.get("x509_common_name", [])]
        if len(names) != 1 or names[0] not in self.allowed_peers:
            self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"certificate names {names or 'nobody'}, expected one of {list(self.allowed_peers)}")
        return names[0]

    def _refuse(self, context, code, reason: str):
        self.refusals.append(reason)
        log.warning("refused request from %s: %s", context.peer(), reason)
        context.abort(code, reason)

    def _serve(self, request: bytes, context) -> bytes:
        self.last_message_at = time.monotonic()
        reply = self._serve_one(request, context, self._peer_name(context))
        try:
            data = encode(reply, max_bytes=self.max_message_bytes)
        except SecsplitError as error:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        self.last_message_at = time.monotonic()
        return data

    def _serve_stream(self, requests, context) -> bytes:
        """One sender's messages in order; each is checked and handled as an exchanged one (its reply dropped)."""
        self.last_message_at = time.monotonic()
        peer = self._peer_name(context)
        key = peer or context.peer()  # plaintext: nobody is authenticated, count per connection
        with self._lock:
            held = self._streaming.get(key, 0)
            if held < MAX_STREAMS_PER_PEER:
                self._streaming[key] = held + 1
        if held >= MAX_STREAMS_PER_PEER:
            self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"{key} already holds {held} open streams (at most {MAX_STREAMS_PER_PEER})")
        count = 0
        try:
            for request in requests:
                self.last_message_at = time.monotonic()
                self._serve_one(request, context, peer)
                count += 1
        finally:
            with self._lock:
                self._streaming[key] -= 1
                if not self._streaming[key]:
                    del self._streaming[key]
        self.last_message_at = time.monotonic()
        return encode(WireMessage(run_id="", step=count, kind="control", src=self.party, dst=peer or "", tag="ack"))

    def _serve_one(self, request: bytes, context, peer: str | None) -> WireMessage:
        """Decode, authenticate and handle one request: the handler's reply, or the call aborted with the refusal."""
        try:
            message = decode(request, max_bytes=self.max_message_bytes)
            if peer is None and message.src not in self.allowed_peers:
                raise ChannelError(f"message from unknown party {message.src!r}; expected one of {list(self.allowed_peers)}")
            peer = peer or message.src
            if message.src != peer:
                raise ChannelError(f"message claims to come from {message.src!r} but the peer is {peer!r}")
            return self.handler(message, peer)
        except SecsplitError as error:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception as error:  # a bug must not kill the server thread silently
            log.exception("internal error while serving %s", peer)
            self._refuse(context, grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}")

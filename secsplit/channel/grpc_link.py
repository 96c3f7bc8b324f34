"""gRPC with mutual TLS between two parties: codec envelopes, one at a time or pulled in order.

``/secsplit.Split/Exchange`` takes an encoded envelope and returns one (control messages,
inference). ``/secsplit.Split/Pull`` (only on listeners given an outbox source: the parties of a
training run) is how a party receives a peer's training messages: the receiver opens one long-lived
unary-stream call to the sender's listener and reads it in its own thread (gRPC's
``SingleThreadedUnaryStream``), and the sender's listener writes what the sender put in its
:class:`Outbox` for that receiver, in order. A message so passes two gRPC threads, both on the sender
(the listener's writer and its completion poll), instead of four with a pushed stream (request
iterator, channel spin, server poll, worker): each hand-off costs a GIL acquisition on a busy host. The
receiving side checks every pulled envelope itself (through the codec), so refusals of training
messages happen there. Bytes go in and out of gRPC untouched (no gRPC-side serializers), so the
only parser that ever sees a peer's bytes is :func:`secsplit.channel.codec.decode`, with its size
and shape checks.

Security: mutual TLS unless ``insecure=True``. The server demands a client certificate signed by
its CA and then checks the certificate's common name against the parties it expects; the client
dials an address but verifies that the server's certificate is issued to the expected party name
(``grpc.ssl_target_name_override``), so a stolen client certificate cannot impersonate the server.
Refusals are logged on the side that refuses and raised as :class:`ChannelError` on the caller.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass

import grpc
import grpc.experimental

from secsplit.channel.certs import PartyCredentials, load_credentials
from secsplit.channel.codec import DEFAULT_MAX_MESSAGE_BYTES, CodecError, WireMessage, decode, encode
from secsplit.errors import ChannelError, ConfigError, SecsplitError

log = logging.getLogger("secsplit.transport")

METHOD = "/secsplit.Split/Exchange"
PULL_METHOD = "/secsplit.Split/Pull"
#: pulls one peer may hold open at once at a listener (its process, and a restarted one while the
#: old pull is being torn down); more would let one peer tie up the listener's threads
MAX_STREAMS_PER_PEER = 2
#: a pull is read by the thread that calls next() on it, not by a gRPC thread that hands each message over
#: (the key is gRPC's own constant: a misspelt option is silently ignored by gRPC)
_SINGLE_THREADED_PULL = (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)
#: how often a listener's writer thread waiting for the next message checks that its pull is still wanted
_PULL_POLL_S = 0.5
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


class Outbox:
    """Encoded envelopes one party sends one peer, in order, until that peer pulls them.

    The sending party puts; the listener's writer thread of the peer's pull takes and writes. At
    most ``window`` messages or ``max_bytes`` wait (a sender further ahead of its receiver waits,
    then fails). One pull owns the outbox at a time: a new pull from the peer (its process
    reconnecting) takes over, and the old one stops.
    """

    def __init__(self, *, window: int, max_bytes: int) -> None:
        self.window, self.max_bytes = window, max_bytes
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._waiting_bytes = 0
        self._put = self._written = 0
        self._owner: object | None = None
        self.closed = False

    def put(self, data: bytes, *, timeout_s: float, peer: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue and (len(self._queue) >= self.window or self._waiting_bytes + len(data) > self.max_bytes):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelError(f"{peer} has not taken the last {len(self._queue)} messages "
                                       f"({self._waiting_bytes} bytes) within {timeout_s:g} s: it is gone or stuck")
                self._cond.wait(min(left, _PULL_POLL_S))
            self._queue.append(data)
            self._waiting_bytes += len(data)
            self._put += 1
            self._cond.notify_all()

    def claim(self) -> object:
        """A new owner (a pull); the previous one, if any, stops at its next take."""
        with self._cond:
            self._owner = object()
            self._cond.notify_all()
            return self._owner

    def take(self, owner: object, timeout_s: float) -> bytes | None:
        """The next envelope for ``owner``; None when there is none within ``timeout_s``; EOFError when
        the outbox closed and is empty, or another pull owns it now."""
        with self._cond:
            deadline = time.monotonic() + timeout_s
            while not self._queue or self._owner is not owner:
                if self._owner is not owner or (self.closed and not self._queue):
                    raise EOFError
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            data = self._queue.popleft()
            self._waiting_bytes -= len(data)
            self._cond.notify_all()
            return data

    def wrote(self) -> None:
        """gRPC has written the envelope last taken."""
        with self._cond:
            self._written += 1
            self._cond.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Wait until every envelope put was written; False if some were not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._written < self._put:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, _PULL_POLL_S))
            return True

    def close(self) -> None:
        """No more messages: the pull ends once it has written what is left."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


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
            self._channel = grpc.insecure_channel(address, options=[*options, _SINGLE_THREADED_PULL])
        else:
            cred = _credentials(certs, party)
            tls = grpc.ssl_channel_credentials(root_certificates=cred.ca, private_key=cred.key,
                                               certificate_chain=cred.certificate)
            self._channel = grpc.secure_channel(address, tls, options=[*options, _SINGLE_THREADED_PULL,
                                                                       ("grpc.ssl_target_name_override", peer)])
        self._call = self._channel.unary_unary(METHOD)
        self._pull_call = self._channel.unary_stream(PULL_METHOD)
        self._connected = False

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

    # -- pulling ---------------------------------------------------------------------------------------
    def pull(self, request: WireMessage) -> Inbound:
        """Open a pull of the messages the peer sends us, read in the calling thread (see :class:`Inbound`)."""
        data = encode(request, max_bytes=self.max_message_bytes)
        return Inbound(self._pull_call(data), self)

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
        self._channel.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _what(message: WireMessage, link: Link) -> str:
    return f"{message.kind} message (step {message.step}) to {link.peer} at {link.address}"


class Inbound:
    """One pull: the raw envelopes a peer sends us, in order, read in the caller's own thread.

    :meth:`read` blocks until the next envelope arrives; another thread may :meth:`cancel` it (a
    deadline passed, the run stops). The bytes are the caller's to decode (with the codec).
    """

    def __init__(self, call, link: Link) -> None:
        self._call, self._link = call, link
        self.ended: str | None = None  # why the pull ended, once it has

    def read(self) -> bytes | None:
        """The next envelope; None once the pull has ended (see :attr:`ended`). A refusal of the pull
        itself (our certificate, run or a limit) raises :class:`PeerRefused`."""
        if self.ended is not None:
            return None
        try:
            return next(self._call)
        except StopIteration:
            self.ended = f"{self._link.peer} ended its stream"
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (error.details() or "").lower():
                self.ended = "refused"
                raise ChannelError(f"a message from {self._link.peer} exceeds the message size limit of "
                                   f"{self._link.max_message_bytes} bytes: {error.details()}") from None
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED):
                self.ended = "refused"
                raise self._link._explain(error, "our pull of its messages") from None
            self.ended = f"{code.name}: {error.details()}"
        return None

    def cancel(self) -> None:
        self._call.cancel()


Handler = Callable[[WireMessage, str], WireMessage]
#: what a training listener pulls from: the outbox for (the pull request, the authenticated peer)
Source = Callable[[WireMessage, str], Outbox]


class Listener:
    """The serving side: a gRPC server that authenticates peers and hands decoded envelopes to ``handler``.

    ``handler(message, peer_name)`` returns the reply; raising :class:`SecsplitError` turns into a
    refusal the caller sees (and this side logs). Concurrency: ``max_workers`` threads serve
    requests, at most ``max_queue`` more wait; beyond that gRPC answers RESOURCE_EXHAUSTED. An open
    pull holds one thread; each peer may hold at most :data:`MAX_STREAMS_PER_PEER` at once.

    Args:
        listen: "host:port" (port 0 picks a free port; see :attr:`port`).
        party: our party name; ``allowed_peers``: the client names we accept (certificate CN).
        source: serve ``/secsplit.Split/Pull`` from the outboxes it returns (training parties; not an
            inference server, whose clients only need one request at a time). It gets the decoded,
            authenticated pull request and may refuse it by raising :class:`SecsplitError`.
    """

    def __init__(self, handler: Handler, *, listen: str, party: str = "server", allowed_peers: Iterable[str] = ("client",),
                 certs=None, insecure: bool = False, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_workers: int = 4, max_queue: int = 64, source: Source | None = None) -> None:
        self.handler, self.party = handler, party
        self.allowed_peers = tuple(allowed_peers)
        self.insecure = insecure
        self.max_message_bytes = max_message_bytes
        self.last_message_at = time.monotonic()
        self.refusals: list[str] = []
        self._lock = threading.Lock()
        self._pulling: dict[str, int] = {}  # peer -> pulls it holds open
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=_options(max_message_bytes),
                                   maximum_concurrent_rpcs=max_workers + max_queue)
        methods = {"Exchange": grpc.unary_unary_rpc_method_handler(self._serve)}
        self.source = source
        if source is not None:
            methods["Pull"] = grpc.unary_stream_rpc_method_handler(self._serve_pull)
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
        if self.source is not None:
            # a peer's open pull holds one of the server's threads, which the interpreter joins at
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

    def _serve_pull(self, request: bytes, context):
        """Write the peer's outbox to it in order, each envelope as the sender encoded it, until the
        sender closes the outbox, the peer goes away, or a newer pull of the same peer takes over."""
        self.last_message_at = time.monotonic()
        peer = self._peer_name(context)
        key = peer or context.peer()  # plaintext: nobody is authenticated, count per connection
        with self._lock:
            held = self._pulling.get(key, 0)
            if held < MAX_STREAMS_PER_PEER:
                self._pulling[key] = held + 1
        if held >= MAX_STREAMS_PER_PEER:
            self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"{key} already holds {held} open pulls (at most {MAX_STREAMS_PER_PEER})")
        try:
            outbox = self._serve_one(request, context, peer, handler=self.source)
            owner = outbox.claim()
            while context.is_active():
                try:
                    data = outbox.take(owner, _PULL_POLL_S)
                except EOFError:
                    return
                if data is not None:
                    yield data
                    outbox.wrote()  # gRPC asks for the next envelope once it has written this one
                    self.last_message_at = time.monotonic()
        finally:
            with self._lock:
                self._pulling[key] -= 1
                if not self._pulling[key]:
                    del self._pulling[key]

    def _serve_one(self, request: bytes, context, peer: str | None, handler=None):
        """Decode, authenticate and handle one request: the handler's reply, or the call aborted with the refusal."""
        try:
            message = decode(request, max_bytes=self.max_message_bytes)
            if peer is None and message.src not in self.allowed_peers:
                raise ChannelError(f"message from unknown party {message.src!r}; expected one of {list(self.allowed_peers)}")
            peer = peer or message.src
            if message.src != peer:
                raise ChannelError(f"message claims to come from {message.src!r} but the peer is {peer!r}")
            return (handler or self.handler)(message, peer)
        except SecsplitError as error:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception as error:  # a bug must not kill the server thread silently
            log.exception("internal error while serving %s", peer)
            self._refuse(context, grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}")

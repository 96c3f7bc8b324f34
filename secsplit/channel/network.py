"""The channel across processes: the same :class:`~secsplit.channel.Channel`, delivering over gRPC with mutual TLS.

Every party runs in its own process with the same topology code (built from the same run file and
seed). The step is written once for all parties; a :class:`NetworkChannel` *hosts* one party, so
each process runs only its own party's statements (``channel.hosts(party)``) and every message a
hosted party sends or receives crosses the network:

- sending (``src`` hosted): the tensor is encoded with the codec (:mod:`secsplit.channel.codec`,
  never pickled) and put in ``dst``'s :class:`~secsplit.channel.grpc_link.Outbox` without waiting,
  so the sender goes on at once; sends to one receiver carry consecutive sequence numbers.
- receiving (``dst`` hosted): the receiving party's own thread reads the sender's messages from
  one long-lived pull of that outbox (:meth:`~secsplit.channel.grpc_link.Link.pull`), decodes each
  with the codec, and returns it after checking that it is the message the protocol expects there
  (run, sender, sequence, kind, step, tag, phase): both sides run the same program, so anything
  else is a peer out of step, refused with a one-line error. The party that refuses fails, and
  its goodbye carries the reason to the others. Reading in the party's thread spares each message
  two gRPC thread hand-offs (see :mod:`secsplit.channel.grpc_link`).

Byte accounting and taps are the in-process channel's: each process counts the messages its party
sends and receives, payload only, so per party they equal the in-process run's; the envelopes'
framing is counted apart (:meth:`NetworkChannel.transport`).

Limits: one message at most ``max_message_bytes``; a sender may run at most :data:`WINDOW`
messages or ``max_buffered_bytes`` ahead of what its receiver pulled (further messages wait, then
fail); a receiver holds at most one message of each sender beyond gRPC's flow-control window; a
message waited for more than ``timeout_s`` is an error naming the party, kind and step (a watcher
thread interrupts the read); a peer that fails says goodbye with its reason, so the others stop at
once instead of timing out.

Restarts (resume across processes): every hello carries the party's *incarnation* (a random id per
channel) and the checkpoints it can resume from (:attr:`NetworkChannel.checkpoints`). A hello from
a peer with a new incarnation after training started means that peer restarted: with ``--resume``
the run goes back to the parties' last common checkpoint (this channel answers "stopping" and
raises :class:`PeerRestarted` at its next message, the party rebuilds and says hello again);
without it the hello is refused, so a mistaken restart cannot disturb the run. Messages a peer's
old incarnation sent are dropped when its new incarnation says hello (its old pull is abandoned).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import defaultdict

import torch

from secsplit.channel.codec import DEFAULT_MAX_MESSAGE_BYTES, WireMessage, decode, encode
from secsplit.channel.grpc_link import Inbound, Link, LinkStats, Listener, Outbox
from secsplit.channel.inprocess import Channel
from secsplit.errors import ChannelError, ConfigError

log = logging.getLogger("secsplit.network")

#: how many messages a sender may be ahead of what its receiver pulled
WINDOW = 256
#: bytes a sender keeps waiting for one receiver to pull before further messages wait (backpressure)
DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024
MAX_REASON_CHARS = 500
#: how often the watcher checks whether a read must be interrupted (timeout, a peer failed or restarted)
WATCH_INTERVAL_S = 0.5


class PeerGone(ChannelError):
    """A peer said goodbye (finished or failed) while this party still expected a message from it."""


class PeerRestarted(ChannelError):
    """A peer restarted mid-run to resume from its checkpoints: the run goes back to a common checkpoint."""


#: the most checkpointed steps a hello may announce
MAX_ANNOUNCED_STEPS = 64


def hello_info(meta: dict) -> dict:
    """The incarnation and checkpoints a peer's hello (or hello reply) announces, checked; ChannelError if malformed."""
    incarnation, resume, steps = meta.get("incarnation", ""), meta.get("resume", False), meta.get("steps", [])
    if not isinstance(incarnation, str) or len(incarnation) > 64:
        raise ChannelError("hello field incarnation must be a string of at most 64 characters")
    if not isinstance(resume, bool):
        raise ChannelError("hello field resume must be true or false")
    if not isinstance(steps, list) or len(steps) > MAX_ANNOUNCED_STEPS or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**62 for s in steps):
        raise ChannelError(f"hello field steps must be at most {MAX_ANNOUNCED_STEPS} step numbers")
    return {"incarnation": incarnation, "resume": resume, "steps": sorted(set(steps))}


class NetworkChannel(Channel):
    """A channel hosting ``party`` in this process; the other parties are reached at ``addresses``.

    Args:
        party: the party this process runs (its certificate's name).
        addresses: every party of the run -> "host:port" its process listens on.
        run_id: identifies the run (a digest of the shared run file): messages of another run are refused.
        certs: certificate directory (``secsplit certs init``); ignored when ``insecure``.
        insecure: plaintext without authentication, for local tests only.
        listen: where this party listens (default: its own entry in ``addresses``).
        timeout_s: how long a message may be waited for (and a send to be acknowledged).
        connect_timeout_s: how long the hello retries while a peer's process is not up yet.
        max_message_bytes: the largest message sent or accepted.
        checkpoints: what this party's hellos announce (see :attr:`checkpoints`); default: it starts afresh.
    """

    def __init__(self, *, party: str, addresses: dict[str, str], run_id: str, certs=None, insecure: bool = False,
                 listen: str | None = None, timeout_s: float = 60.0, connect_timeout_s: float = 60.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES, checkpoints: dict | None = None) -> None:
        super().__init__()
        if party not in addresses:
            raise ConfigError(f"party {party!r} has no address; the run's parties are {sorted(addresses)}")
        self.party, self.addresses, self.run_id = party, dict(addresses), run_id
        self.peers = [p for p in addresses if p != party]
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.max_message_bytes, self.max_buffered_bytes = max_message_bytes, max_buffered_bytes
        self._tls = {"certs": certs, "insecure": insecure}
        self._links: dict[str, Link] = {}
        self._next_out: dict[str, int] = defaultdict(int)
        self._cond = threading.Condition()
        self._outboxes: dict[str, Outbox] = {}  # receiver -> what this party sent it, until it pulls
        self._inbounds: dict[str, Inbound] = {}  # sender -> this party's pull of its messages
        self._next_in: dict[str, int] = defaultdict(int)
        self._reading: tuple[str, float, Inbound] | None = None  # the read in progress: sender, deadline, pull
        self._watcher: threading.Thread | None = None
        self._closed = False
        self._gone: dict[str, str] = {}  # peer -> why it left ("" for a clean finish)
        self._greeted: set[str] = set()  # peers that said hello to this party (so they were up)
        self.incarnation = secrets.token_hex(8)
        #: what this party's hellos announce: whether it resumes, the steps it holds checkpoints of, and
        #: whether it can go back to one when a peer restarts (it keeps checkpoints)
        self.checkpoints: dict = checkpoints or {"resume": False, "steps": [], "rejoins": False}
        self.peer_checkpoints: dict[str, dict] = {}  # peer -> hello_info of its current incarnation
        self.training = False  # set once open() has heard every peer
        self.restarted: str | None = None  # why the run must go back to a common checkpoint
        self.received = LinkStats()  # what this party pulled in (messages, payload, envelopes)
        self.listener = Listener(self._handle, listen=listen or addresses[party], party=party,
                                 allowed_peers=self.peers, max_message_bytes=max_message_bytes,
                                 max_workers=4 + 2 * len(self.peers), max_queue=64, source=self._source,
                                 **self._tls)
        self.listener.start()

    # -- who runs where -------------------------------------------------------------------------
    def hosts(self, party: str) -> bool:
        return party == self.party

    def _link(self, peer: str) -> Link:
        link = self._links.get(peer)
        if link is None:
            if peer not in self.addresses:
                raise ChannelError(f"no address for party {peer!r}; the run's parties are {sorted(self.addresses)}")
            link = self._links[peer] = Link(self.addresses[peer], party=self.party, peer=peer,
                                            timeout_s=self.timeout_s, connect_timeout_s=self.connect_timeout_s,
                                            max_message_bytes=self.max_message_bytes, **self._tls)
        return link

    # -- start and end ----------------------------------------------------------------------------
    def open(self, peers=None, **meta) -> None:
        """Say hello to every peer (default: all): waits until each is up and runs the same run.

        A peer whose run file differs refuses (and so does this side, seeing theirs): nothing is
        built or trained from a peer's hello; it is only compared. A peer that answers "stopping"
        (it was mid-run and goes back to a checkpoint) is greeted again until its new incarnation
        answers, within ``connect_timeout_s``.
        """
        for peer in self.peers if peers is None else peers:
            deadline = time.monotonic() + self.connect_timeout_s
            while True:
                link = self._link(peer)
                with self._cond:
                    if peer in self._greeted:  # it is up (it said hello to us): no waiting for it to start
                        link._connected = True
                try:
                    reply = link.exchange(WireMessage(run_id=self.run_id, step=0, kind="control", src=self.party,
                                                      dst=peer, tag="hello", meta={**meta, **self._announce()}))
                except ChannelError:
                    with self._cond:
                        reason = self._gone.get(peer)
                    if reason is not None:  # it left while we greeted it: why, not the connection it closed
                        raise PeerGone(f"{peer} failed: {reason}" if reason else f"{peer} finished before this "
                                       f"party's hello (do both run the same run file?)") from None
                    raise
                if reply.meta.get("state") != "stopping":
                    self._met(peer, hello_info(reply.meta))
                    break
                if time.monotonic() > deadline:
                    raise ChannelError(f"{peer} did not come back from its restart within {self.connect_timeout_s:g} s")
                self._links.pop(peer).close()  # its next incarnation listens anew: connect as to a starting peer
                with self._cond:
                    self._greeted.discard(peer)
                time.sleep(0.2)
        self.training = True

    def _announce(self) -> dict:
        return {"incarnation": self.incarnation, "resume": bool(self.checkpoints.get("resume")),
                "steps": [int(s) for s in self.checkpoints.get("steps", [])][-MAX_ANNOUNCED_STEPS:]}

    def _met(self, peer: str, info: dict) -> None:
        """Record ``peer``'s incarnation; a new one drops what its previous incarnation had sent."""
        with self._cond:
            known = self.peer_checkpoints.get(peer)
            stale = None
            if known is None or known["incarnation"] != info["incarnation"]:
                stale = self._inbounds.pop(peer, None)
                self._next_in[peer] = 0
            self.peer_checkpoints[peer] = info
        if stale is not None:
            stale.cancel()

    def close(self, error: str | None = None, *, rejoin: bool = False) -> None:
        """Wait until every peer pulled what it was sent, say goodbye (with ``error`` when failing), stop listening.

        ``rejoin``: this party goes back to a common checkpoint (a peer restarted); its goodbye tells
        the others to do the same rather than fail.
        """
        try:
            if error is None and not rejoin:
                self.flush()
        finally:
            with self._cond:
                self._closed = True
                outboxes = list(self._outboxes.values())
                self._cond.notify_all()
            for outbox in outboxes:  # each peer's pull ends once it has what is left
                outbox.close()
            for peer in self.peers:
                meta = {"rejoin": True} if rejoin else {"error": error[:MAX_REASON_CHARS]} if error else {}
                try:
                    link = self._link(peer)
                    if link._connected:  # a peer never reached needs no goodbye
                        link.timeout_s = min(link.timeout_s, 5.0)
                        link.exchange(WireMessage(run_id=self.run_id, step=0, kind="control", src=self.party,
                                                  dst=peer, tag="bye", meta=meta), quiet=True)
                except ChannelError:
                    pass  # a peer that already finished has stopped listening
            for link in self._links.values():
                link.close()
            self.listener.stop(grace=0.5)

    def flush(self) -> None:
        """Wait until every peer has pulled every message sent to it so far; raise the first failure."""
        with self._cond:
            outboxes = dict(self._outboxes)
        deadline = time.monotonic() + self.timeout_s
        for peer, outbox in outboxes.items():
            while not outbox.drain(max(0.0, min(WATCH_INTERVAL_S, deadline - time.monotonic()))):
                self._raise_if_gone(peer)  # a peer that left will not pull: no waiting for the deadline
                if time.monotonic() >= deadline:
                    raise ChannelError(f"{peer} has not taken the messages {self.party} sent it within "
                                       f"{self.timeout_s:g} s: it is gone or stuck (--timeout S waits longer)")

    def _raise_if_gone(self, peer: str) -> None:
        """A peer that said goodbye fails this party: with the peer's reason, or as a peer out of step
        (it finished while this party still had messages for it)."""
        with self._cond:
            reason = self._gone.get(peer)
        if reason is not None:
            raise PeerGone(f"{peer} failed: {reason}" if reason else
                           f"{peer} finished before taking every message {self.party} sent it "
                           f"(do both run the same run file?)")

    def _outbox(self, peer: str) -> Outbox:
        with self._cond:
            outbox = self._outboxes.get(peer)
            if outbox is None:
                outbox = self._outboxes[peer] = Outbox(window=WINDOW, max_bytes=self.max_buffered_bytes)
            return outbox

    # -- delivery ---------------------------------------------------------------------------------
    def _deliver(self, src, dst, kind, tensor, *, step, tag=""):
        if self.hosts(src) and self.hosts(dst):
            return tensor.detach()
        if self.hosts(src):
            tensor = tensor.detach()
            seq = self._next_out[dst]
            message = WireMessage(run_id=self.run_id, step=step, kind=kind, src=src, dst=dst, phase=self.phase,
                                  tag=tag, tensor=tensor, seq=seq)
            data = encode(message, max_bytes=self.max_message_bytes)
            self._outbox(dst).put(data, timeout_s=self.timeout_s, peer=dst)
            self._next_out[dst] = seq + 1
            self._link(dst).stats.record_sent(message, len(data))
            return tensor
        return self._receive(src, kind, step=step, tag=tag)

    def _receive(self, src: str, kind: str, *, step: int, tag: str) -> torch.Tensor:
        """The next message ``src`` sent this party, read from its pull in this thread, checked against
        what the protocol expects here."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            self._check_waiting(src, kind, step, deadline)
            inbound = self._inbound(src)
            if inbound.ended is not None:  # its stream broke or ended: only its goodbye or the deadline is left
                self._check_waiting(src, kind, step, deadline, drained=True)
                with self._cond:
                    self._cond.wait(max(0.0, min(deadline - time.monotonic(), WATCH_INTERVAL_S)))
                continue
            with self._cond:  # the watcher looks every WATCH_INTERVAL_S: no wake-up per message
                self._reading = (src, deadline, inbound)
            try:
                data = inbound.read()
            finally:
                with self._cond:
                    self._reading = None
            if data is not None:
                break
        message = self._accept(data, src)
        expected = (kind, step, tag, self.phase)
        got = (message.kind, message.step, message.tag, message.phase)
        if got != expected:
            raise ChannelError(f"{src} is out of step: expected its {kind} of step {step} ({self.phase}"
                               f"{', ' + tag if tag else ''}), got {message.kind} of step {message.step} "
                               f"({message.phase}{', ' + message.tag if message.tag else ''})")
        return message.tensor

    def _check_waiting(self, src: str, kind: str, step: int, deadline: float, *, drained: bool = False) -> None:
        """Raise why waiting for ``src``'s next message is pointless: the run goes back to a checkpoint,
        ``src`` failed, ``src`` finished and its stream has ended (``drained``), or the deadline passed.

        A peer finishing cleanly flushes before its goodbye, so its last messages may still be on the
        way when the goodbye is heard: they are read until its stream ends.
        """
        with self._cond:
            if self.restarted:
                raise PeerRestarted(self.restarted)
            reason = self._gone.get(src)
            if reason or (reason is not None and drained):
                raise PeerGone(f"{src} {'failed' if reason else 'finished'} before sending the {kind} of step {step}"
                               + (f": {reason}" if reason else " (do both run the same run file?)"))
        if time.monotonic() >= deadline:
            raise ChannelError(f"no {kind} of step {step} from {src} within {self.timeout_s:g} s: {src} is gone or "
                               f"stuck (--timeout S waits longer)")

    def _inbound(self, src: str) -> Inbound:
        """This party's pull of ``src``'s messages, opened at the first read (and the watcher with it)."""
        inbound = self._inbounds.get(src)
        if inbound is None:
            request = WireMessage(run_id=self.run_id, step=0, kind="control", src=self.party, dst=src, tag="pull")
            inbound = self._link(src).pull(request)
            with self._cond:
                self._inbounds[src] = inbound
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name=f"secsplit-watch-{self.party}",
                                                     daemon=True)
                    self._watcher.start()
        return inbound

    def _watch(self) -> None:
        """Interrupt the read in progress once it cannot succeed: its deadline passed, its sender failed,
        or the run goes back to a checkpoint (the reading thread then raises why)."""
        while True:
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(WATCH_INTERVAL_S)
                reading = self._reading
                if reading is None:
                    continue
                src, deadline, inbound = reading
                if not (self.restarted or self._gone.get(src) or time.monotonic() >= deadline):
                    continue
            inbound.cancel()

    def _accept(self, data: bytes, src: str) -> WireMessage:
        """Decode and check one envelope pulled from ``src`` (the peer its listener's certificate names)."""
        try:
            message = decode(data, max_bytes=self.max_message_bytes)
            self._check_addressed(message)  # run and addressee, as for a control message
            if message.src != src:
                raise ChannelError(f"message from {message.src[:80]!r} on {src}'s stream to {self.party}")
            if message.kind == "control" or message.tensor is None:
                raise ChannelError(f"{message.kind} message carries no tensor")
            expected = self._next_in[src]
            if message.seq != expected:
                raise ChannelError(f"message {message.seq} from {src} out of order: expected message {expected}")
        except ChannelError as error:
            log.warning("refused message from %s: %s", src, error)
            raise
        self._next_in[src] = expected + 1
        self.received.messages_received += 1
        self.received.payload_received += message.payload_bytes
        self.received.wire_received += len(data)
        return message

    # -- the listener's side ------------------------------------------------------------------------
    def _handle(self, message: WireMessage, peer: str) -> WireMessage:
        """Answer one control message (hello, bye) from ``peer`` (authenticated by its certificate)."""
        self._check_addressed(message)
        if message.kind != "control":
            raise ChannelError(f"{message.kind} messages reach {self.party} by its pull of {peer}'s messages, "
                               f"not as a request")
        return self._control(message, peer)

    def _source(self, request: WireMessage, peer: str) -> Outbox:
        """The outbox ``peer`` pulls (its pull request checked like any message)."""
        self._check_addressed(request)
        if request.kind != "control" or request.tag != "pull":
            raise ChannelError(f"a pull request is a control message tagged pull, got {request.kind} {request.tag[:40]!r}")
        return self._outbox(peer)

    def _check_addressed(self, message: WireMessage) -> None:
        if message.run_id != self.run_id:
            raise ChannelError(f"message of run {message.run_id[:80]!r}, but {self.party} runs {self.run_id!r}: "
                               f"the parties' run files differ")
        if message.dst != self.party:
            raise ChannelError(f"message for {message.dst[:80]!r} reached {self.party}")

    def _control(self, message: WireMessage, peer: str) -> WireMessage:
        reply = WireMessage(run_id=self.run_id, step=0, kind="control", src=self.party, dst=peer, tag=message.tag)
        if message.tag == "hello":
            info = hello_info(message.meta)
            with self._cond:
                known = self.peer_checkpoints.get(peer)
                if self.training and known is not None and known["incarnation"] != info["incarnation"]:
                    return self._restart(peer, info, reply)
                self._gone.pop(peer, None)
                self._greeted.add(peer)
            self._met(peer, info)
            reply.meta = self._announce()
            return reply
        if message.tag == "bye":
            reason = message.meta.get("error", "")
            if message.meta.get("rejoin") is True:  # it goes back to a common checkpoint: so does this party
                with self._cond:
                    if self.training and not self.restarted:
                        self.restarted = f"{peer} goes back to the parties' last common checkpoint"
                        self._cond.notify_all()
                return reply
            with self._cond:
                self._gone[peer] = str(reason)[:MAX_REASON_CHARS] if reason else ""
                self._cond.notify_all()
            self._up(peer)
            if reason:
                log.warning("%s failed: %s", peer, reason)
            return reply
        raise ChannelError(f"unknown control message {message.tag[:40]!r}; valid: hello, bye")

    def _up(self, peer: str) -> None:
        """``peer`` said goodbye: a hello to it still retrying a refused connection stops retrying, so
        this party fails at once with the peer's reason instead of waiting for it to come up."""
        link = self._links.get(peer)
        if link is not None:
            link._connected = True

    def _restart(self, peer: str, info: dict, reply: WireMessage) -> WireMessage:
        """``peer`` said hello as a new process mid-run (called holding the lock)."""
        if not info["resume"]:
            raise ChannelError(f"{self.party} is mid-run with {peer}'s previous process: restart {peer} with --resume "
                               f"to rejoin from the parties' last common checkpoint, or restart every party without "
                               f"--resume to start over")
        if not self.checkpoints.get("rejoins"):
            self.restarted = (f"{peer} restarted to resume from its checkpoints, but {self.party} keeps none "
                              f"(--checkpoint-dir): restart every party without --resume to start over")
            self._cond.notify_all()
            raise ChannelError(f"{self.party} keeps no checkpoints (--checkpoint-dir) and cannot go back to one: "
                               f"restart every party without --resume to start over")
        if not self.restarted:
            self.restarted = f"{peer} restarted and resumes from its checkpoints"
        self._cond.notify_all()
        reply.meta = {"state": "stopping"}
        return reply

    # -- reporting ----------------------------------------------------------------------------------
    def transport(self) -> dict:
        """Envelope bytes on top of the payload this party sent and received (framing), per run."""
        sent = LinkStats()
        for link in self._links.values():
            for key in ("messages_sent", "payload_sent", "wire_sent"):
                setattr(sent, key, getattr(sent, key) + getattr(link.stats, key))
        return {"messages_sent": sent.messages_sent, "payload_sent": sent.payload_sent, "wire_sent": sent.wire_sent,
                "framing_sent": sent.wire_sent - sent.payload_sent,
                "messages_received": self.received.messages_received,
                "payload_received": self.received.payload_received,
                "peers": {p: link.address for p, link in self._links.items()}}

"""The default channel: parties live in one process; every tensor still crosses through here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from secsplit.channel.accounting import TrafficCounter
from secsplit.channel.message import KINDS, Message
from secsplit.errors import ChannelError

Tap = Callable[[Message], None]
#: Tap on every message, whoever sends or receives it: an outside eavesdropper on the wire.
EAVESDROPPER = "*"


class Channel:
    """Carries tensors between parties, counts them, and lets taps observe them.

    Sending detaches the tensor from the sender's autograd graph: the receiver gets a fresh leaf,
    exactly as if it had crossed a network, and gradients must be sent back explicitly. Payload
    memory is shared (no copy) in process; parties must not modify received tensors in place.

    A tap registered for a party sees exactly what that party sees on the wire: every message it
    sends or receives. A tap registered for :data:`EAVESDROPPER` sees every message.

    Attributes:
        phase: stamped on every message sent ("train" by default; "eval" during split inference,
            "setup" for sample alignment). Change it with :meth:`phase_scope`, which restores it.
    """

    def __init__(self) -> None:
        self.traffic = TrafficCounter()
        self.phase = "train"
        self._taps: dict[str, list[Tap]] = {}

    @contextmanager
    def phase_scope(self, phase: str) -> Iterator[Channel]:
        """Messages sent inside the ``with`` block carry ``phase``; the previous phase comes back on exit.

        ``with channel.phase_scope("eval"): ...`` restores the phase the channel had before, also
        when the block raises, so an interrupted inference never leaves later training traffic
        counted as evaluation. Scopes nest.
        """
        previous, self.phase = self.phase, phase
        try:
            yield self
        finally:
            self.phase = previous

    def add_tap(self, party: str, tap: Tap) -> Callable[[], None]:
        """Observe ``party``'s messages; returns a function that removes the tap."""
        self._taps.setdefault(party, []).append(tap)
        return lambda: self._taps[party].remove(tap)

    def hosts(self, party: str) -> bool:
        """Whether ``party``'s code runs in this process. In process every party does; a network
        channel (:class:`secsplit.channel.network.NetworkChannel`) hosts only its own party (or parties).

        A topology's step is written once, for every party, in protocol order; each statement that
        is one party's work is guarded by ``hosts(party)``, so the same step trains in one process
        or across many, with messages the only thing that crosses between parties.
        """
        return True

    def send(self, src: str, dst: str, kind: str, tensor: torch.Tensor | None, *, step: int,
             tag: str = "") -> torch.Tensor | None:
        """Deliver ``tensor`` from ``src`` to ``dst`` and return it as the receiver holds it.

        Across processes both sides call this with the same arguments: the sender's process passes
        the tensor (and gets None back unless it also hosts ``dst``); the receiver's process may
        pass None and gets the tensor as it arrived. A process hosting neither gets None.
        """
        if kind not in KINDS:
            raise ChannelError(f"unknown message kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        here, there = self.hosts(src), self.hosts(dst)
        if not (here or there):
            return None
        if here and not isinstance(tensor, torch.Tensor):
            raise ChannelError(f"{kind} message from {src} to {dst} must carry a tensor, got {type(tensor).__name__}")
        message = Message(src, dst, kind, step, self.phase, self._deliver(src, dst, kind, tensor, step=step, tag=tag), tag)
        self.traffic.record(message)
        for party in (src, dst, EAVESDROPPER):
            for tap in self._taps.get(party, ()):
                tap(message)
        return message.tensor if there else None

    def _deliver(self, src: str, dst: str, kind: str, tensor: torch.Tensor | None, *, step: int,
                 tag: str = "") -> torch.Tensor:
        """How a tensor reaches the receiver: here, detached from the sender's graph. A network channel
        transmits it when it hosts ``src`` and waits for it when it hosts ``dst``; either way the
        result is the tensor as it travelled."""
        return tensor.detach()

"""Counts messages and bytes per party, per direction and per kind."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from secsplit.channel.message import Message


@dataclass
class TrafficCounter:
    """Tallies every message a channel carries.

    Keys are ``(src, dst, kind, phase)``, so totals per direction, per party, per kind and per phase
    are all sums over one table.
    """

    bytes: Counter = field(default_factory=Counter)
    messages: Counter = field(default_factory=Counter)

    def record(self, message: Message) -> None:
        key = (message.src, message.dst, message.kind, message.phase)
        self.bytes[key] += message.nbytes
        self.messages[key] += 1

    def reset(self) -> None:
        self.bytes.clear()
        self.messages.clear()

    def total(self, *, src=None, dst=None, kind=None, phase=None, what: str = "bytes") -> int:
        """Sum of bytes (or messages, ``what="messages"``) over the keys matching every given filter.

        A filter is one name or a set of names (e.g. every client at once: one pass over the table,
        where a sum of per-client totals would grow as K^2 with hundreds of clients).
        """
        table = self.bytes if what == "bytes" else self.messages
        return sum(
            value
            for (s, d, k, p), value in table.items()
            if _matches(s, src) and _matches(d, dst) and _matches(k, kind) and _matches(p, phase)
        )

    def sent(self, party: str, **filters) -> int:
        return self.total(src=party, **filters)

    def received(self, party: str, **filters) -> int:
        return self.total(dst=party, **filters)

    def parties(self) -> list[str]:
        return sorted({s for s, *_ in self.bytes} | {d for _, d, *_ in self.bytes})

    def summary(self) -> dict:
        """JSON-ready totals: per party sent/received bytes and messages, per direction and kind."""
        # one pass over the table: with hundreds of clients a scan per party grows as K^2
        per_party: dict[str, dict[str, int]] = {}
        for table, what in ((self.bytes, "bytes"), (self.messages, "messages")):
            for (s, d, _, _), value in table.items():
                for party, direction in ((s, "sent"), (d, "received")):
                    row = per_party.setdefault(party, {"bytes_sent": 0, "bytes_received": 0, "messages_sent": 0,
                                                       "messages_received": 0})
                    row[f"{what}_{direction}"] += value
        per_party = dict(sorted(per_party.items()))
        per_direction: dict[str, dict[str, int]] = {}
        for (s, d, k, p), value in sorted(self.bytes.items()):
            per_direction.setdefault(f"{s}->{d}", {}).setdefault(f"{p}/{k}", 0)
            per_direction[f"{s}->{d}"][f"{p}/{k}"] += value
        return {"per_party": per_party, "per_direction": per_direction, "total_bytes": self.total()}


def _matches(value: str, wanted) -> bool:
    """A ``total`` filter: None matches all, a string itself, a set or other collection its members."""
    if wanted is None:
        return True
    return value == wanted if isinstance(wanted, str) else value in wanted

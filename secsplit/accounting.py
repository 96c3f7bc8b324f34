"""Per-party compute accounting: FLOPs measured with torch's flop counter.

Counting every step under ``FlopCounterMode`` costs ~6x the step time, so the meter measures the
first step of each (phase, batch size) and reuses that count for later steps of the same shape.
That is exact for networks without data-dependent control flow (every model in secsplit's zoo):
their FLOPs depend on the batch shape only. The counter counts matrix products and convolutions
(forward and backward), the usual FLOP convention; element-wise ops are not counted.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

from torch.utils.flop_counter import FlopCounterMode


class FlopMeter:
    """Accumulates FLOPs per party and phase; a topology wraps each party's work in :meth:`party`."""

    def __init__(self) -> None:
        self.totals: dict[str, Counter] = {"train": Counter(), "eval": Counter()}
        self._cache: dict[tuple[str, int], Counter] = {}
        self._measuring: Counter | None = None

    @contextmanager
    def step(self, phase: str, batch_size: int):
        """One training step or inference batch; measured only if its shape is new."""
        key = (phase, batch_size)
        cached = self._cache.get(key)
        if cached is None:
            self._measuring = Counter()
        try:
            yield
        except BaseException:
            self._measuring = None  # a failed step is neither cached nor counted
            raise
        if cached is None:
            cached = self._cache[key] = self._measuring
            self._measuring = None
        self.totals.setdefault(phase, Counter()).update(cached)

    @contextmanager
    def party(self, name: str):
        """Attribute the FLOPs run inside this block to party ``name`` (free when not measuring)."""
        if self._measuring is None:
            yield
            return
        with FlopCounterMode(display=False) as mode:
            yield
        self._measuring[name] += mode.get_total_flops()

    def reset(self) -> None:
        for counter in self.totals.values():
            counter.clear()

    def summary(self) -> dict:
        """FLOPs per phase and party, JSON-ready."""
        return {phase: dict(counter) for phase, counter in self.totals.items()}

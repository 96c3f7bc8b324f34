"""Seeded construction that stays reproducible when several threads build models at once.

Module initializers draw from torch's one global RNG. ``seeded(seed)`` forks it, seeds it, and holds
a process-wide lock meanwhile, so a server building a session's model in a request thread while
another thread builds its own gets the same weights as a lone build.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global RNG seeded by ``seed`` and restored afterwards, one thread at a time."""
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield

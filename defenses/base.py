"""Defense base class and registry: a defense is a Callback with a threat model and a price."""

from __future__ import annotations

from typing import ClassVar

from secsplit.callbacks import Callback
from secsplit.registry import Registry

DEFENSES: Registry = Registry("defense")


class Defense(Callback):
    """A named, parameterized protection that plugs into any topology through the Trainer's callbacks.

    Subclasses state what they protect against in ``addresses`` and ``threat_model``, and report
    their parameters (and, for DP mechanisms, their epsilon) in :meth:`report`.
    """

    name: ClassVar[str] = "defense"
    #: which attacks this defense is meant to blunt
    addresses: ClassVar[str] = ""
    #: whom it protects from, and under which assumptions
    threat_model: ClassVar[str] = ""

    def params(self) -> dict:
        """The defense's parameters, JSON-ready (used in reports and cache keys)."""
        return {}

    def epsilon(self) -> dict | None:
        """The DP guarantee so far, or None when the defense is not a DP mechanism."""
        return None

    def report(self) -> dict:
        return {"defense": self.name, "params": self.params(), "epsilon": self.epsilon()}


def create_defense(name: str, /, **kwargs) -> Defense:
    """Build the defense registered as ``name`` (``create_defense("noise", mechanism="laplace", scale=0.5)``)."""
    return DEFENSES.create(name, **kwargs)


def list_defenses() -> list[tuple[str, str]]:
    return [(n, (DEFENSES.lookup(n).__doc__ or "").strip().splitlines()[0]) for n in DEFENSES.names()]

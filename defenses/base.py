"""Defense base class and registry: a defense is a Callback with a threat model and a price."""

from __future__ import annotations

from typing import ClassVar

from secsplit.callbacks import Callback
from secsplit.registry import Registry
from secsplit.specs import parse_spec

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
    #: short parameter names accepted in specs, e.g. {"mech": "mechanism"}
    aliases: ClassVar[dict[str, str]] = {}
    #: the topology this defense stands for (the ``ushape`` label defense), or None: any topology
    topology: ClassVar[str | None] = None

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


def defense_from_spec(spec: str, *, seed: int | None = None) -> Defense:
    """Build a defense from ``name:key=value,...`` (``nopeek:alpha=0.5``, ``noise:mech=laplace,scale=0.5``).

    ``seed``: the run's seed, for a defense that takes one and whose spec does not set it.
    """
    name, params = parse_spec(spec)
    aliases = getattr(DEFENSES.lookup(name), "aliases", {})
    params = {aliases.get(k, k): v for k, v in params.items()}
    if seed is not None and "seed" in DEFENSES.parameters(name):
        params.setdefault("seed", seed)
    return create_defense(name, **params)


def list_defenses() -> list[tuple[str, str, list[str]]]:
    """(name, one-line description, parameter names) of every registered defense."""
    return [(n, (DEFENSES.lookup(n).__doc__ or "").strip().splitlines()[0], DEFENSES.parameters(n)) for n in DEFENSES.names()]

"""Attack base class, threat models and registry.

An attack is a Callback that watches the channel from exactly one party's seat (through a tap
registered in ``on_setup``), may act (active attacks change what that party sends), and after
training produces its *guesses*: reconstructed inputs or inferred labels, with the ground truth
beside them. Scoring the guesses (SSIM, AUC, ...) is the evaluation layer's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from secsplit.callbacks import Callback
from secsplit.errors import ConfigError
from secsplit.registry import Registry

ATTACKS: Registry = Registry("attack")

ATTACKERS = ("server", "client", "eavesdropper")
BEHAVIOURS = ("honest-but-curious", "active")
#: what an attacker may be granted, each named in a threat model's ``knows``
KNOWLEDGE = (
    "client-architecture",   # the layers of the client segment, not their weights
    "client-weights",        # white-box access to the client segment
    "query-access",          # can run the client segment on inputs of its choice
    "auxiliary-data",        # unlabeled samples from the same distribution
    "few-labels",            # a handful of labeled training samples
)


@dataclass(frozen=True)
class ThreatModel:
    """Who attacks, how, knowing what, and what it is after.

    Attributes:
        attacker: "server", "client" or "eavesdropper" (sees every message on the wire).
        behaviour: "honest-but-curious" (follows the protocol) or "active" (deviates from it).
        knows: entries of :data:`KNOWLEDGE` the attacker is granted.
        target: "inputs" (reconstruction) or "labels" (label inference).
    """

    attacker: str
    behaviour: str
    knows: tuple[str, ...]
    target: str

    def __post_init__(self) -> None:
        for label, value, valid in (("attacker", self.attacker, ATTACKERS), ("behaviour", self.behaviour, BEHAVIOURS),
                                    ("target", self.target, ("inputs", "labels"))):
            if value not in valid:
                raise ConfigError(f"unknown threat-model {label} {value!r}; valid: {', '.join(valid)}")
        unknown = set(self.knows) - set(KNOWLEDGE)
        if unknown:
            raise ConfigError(f"unknown attacker knowledge {sorted(unknown)}; valid: {', '.join(KNOWLEDGE)}")

    def describe(self) -> str:
        knows = ", ".join(self.knows) or "nothing beyond what it observes"
        return f"{self.behaviour} {self.attacker} after the {self.target}; knows: {knows}"


@dataclass
class AttackResult:
    """An attack's guesses next to the truth, plus anything it wants to report.

    Reconstruction attacks fill ``reconstructions`` and ``originals`` (same shape, data range
    [0, 1]); label attacks fill ``label_scores`` (a score per sample, higher = more likely
    positive, or class logits) and ``true_labels``, optionally per epoch in ``per_epoch``.
    """

    attack: str
    threat_model: str
    reconstructions: torch.Tensor | None = None
    originals: torch.Tensor | None = None
    label_scores: torch.Tensor | None = None
    true_labels: torch.Tensor | None = None
    per_epoch: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class NotApplicable(Exception):
    """Raised by :meth:`Attack.check_applicable` with the reason an attack makes no sense here."""


class Attack(Callback):
    """Base class: declare ``name`` and ``threat_model``; implement ``check_applicable`` and ``result``."""

    name: ClassVar[str] = "attack"
    threat_model: ClassVar[ThreatModel]
    #: whether the attack must watch training traffic; False lets audits reuse a cached trained model
    observes_training: ClassVar[bool] = True

    def check_applicable(self, topology, dataset) -> None:
        """Raise :class:`NotApplicable` with a reason when the configuration makes the attack moot."""

    def result(self) -> AttackResult:
        """The attack's guesses after training (and any attack-time optimization)."""
        raise NotImplementedError

    def params(self) -> dict:
        return {}


def create_attack(name: str, /, **kwargs) -> Attack:
    return ATTACKS.create(name, **kwargs)


def list_attacks() -> list[tuple[str, str]]:
    return [(n, ATTACKS.lookup(n).threat_model.describe()) for n in ATTACKS.names()]

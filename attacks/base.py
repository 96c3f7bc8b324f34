"""Attack base class, threat models and registry.

An attack is a Callback that watches the channel from exactly one party's seat (through a tap
registered in ``on_setup``), may act (active attacks change what that party sends), and after
training produces its *guesses*: reconstructed inputs or inferred labels, with the ground truth
beside them. Scoring the guesses (SSIM, AUC, ...) is the evaluation layer's job.
"""

from __future__ import annotations

import re
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


def in_batches(fn, x: torch.Tensor, size: int = 256) -> torch.Tensor:
    """``fn`` applied to ``x`` in chunks of ``size`` rows, concatenated: an attacker's network over a whole
    auxiliary or test set without holding every intermediate activation at once."""
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


def is_intermediate_party(name: str) -> bool:
    """A party between the data owner and the server in a chain (``hop1``, ``hop2``, ...)."""
    return isinstance(name, str) and re.fullmatch(r"hop[1-9][0-9]*", name) is not None


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
        if not (self.attacker in ATTACKERS or is_intermediate_party(self.attacker)):
            raise ConfigError(f"unknown threat-model attacker {self.attacker!r}; valid: {', '.join(ATTACKERS)} "
                              f"or an intermediate party (hop1, hop2, ...)")
        for label, value, valid in (("behaviour", self.behaviour, BEHAVIOURS), ("target", self.target, ("inputs", "labels"))):
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

    def scores(self) -> dict:
        """Named leakage metrics of the guesses against the truth: mse/psnr/ssim for reconstructions,
        leak_auc with its chance level (binary) or label_accuracy (multi-class) for labels, plus the
        attack's own scalar info (e.g. known labels used)."""
        from secsplit import metrics

        scores: dict = {}
        if self.reconstructions is not None and self.originals is not None:
            rec, orig = self.reconstructions.detach().float().clamp(0, 1), self.originals.detach().float()
            scores.update(mse=metrics.mse(rec, orig), psnr=metrics.psnr(rec, orig, data_range=1.0),
                          ssim=metrics.ssim(rec, orig, data_range=1.0))
        if self.label_scores is not None and self.true_labels is not None:
            s, y = self.label_scores.detach(), self.true_labels.detach()
            if s.dim() == 1:
                scores["leak_auc"] = metrics.leak_auc_symmetric(s, y)
                scores["chance_auc"] = metrics.chance_auc(y, batch_size=None)
            else:
                scores["label_accuracy"] = metrics.accuracy(s.argmax(1), y)
        if self.per_epoch:
            scores["per_epoch"] = self.per_epoch
        scores.update({k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool)) and k not in scores})
        return scores


class NotApplicable(Exception):
    """Raised by :meth:`Attack.check_applicable` with the reason an attack makes no sense here."""


class Attack(Callback):
    """Base class: declare ``name`` and ``threat_model``; implement ``check_applicable`` and ``result``."""

    name: ClassVar[str] = "attack"
    threat_model: ClassVar[ThreatModel]
    #: whether the attack must watch training traffic; False lets audits reuse a cached trained model
    observes_training: ClassVar[bool] = True
    #: the keyword that seats the attack at another party (``attacker="hop1"``), or None when it is fixed
    seat_option: ClassVar[str | None] = None
    #: a small search space over the attack's own hyperparameters, for tuned (worst-case) audits:
    #: ``{param: [choice, ...]}`` for a grid, or ``{param: (low, high, "log" | "linear" | "int")}``
    search_space: ClassVar[dict] = {}
    #: the most tuning trials one audit row may spend on this attack (its cost budget)
    tuning_trials: ClassVar[int] = 8

    @property
    def seat(self) -> str:
        """The party whose view the attack takes."""
        return self.threat_model.attacker

    def candidate_seats(self, topology) -> tuple[str, ...]:
        """Every party of ``topology`` this attack could sit at; a worst-case audit tries each.

        The default is the attack's own seat; attacks that can move (``seat_option``) list the parties
        that receive what they read, as the topology declares (:meth:`Topology.receivers`).
        """
        return (self.seat,)

    def check_applicable(self, topology, dataset) -> None:
        """Raise :class:`NotApplicable` with a reason when the configuration makes the attack moot."""

    def result(self) -> AttackResult:
        """The attack's guesses after training (and any attack-time optimization)."""
        raise NotImplementedError

    def params(self) -> dict:
        return {}

    def run(self, topology, dataset, *, epochs: int = 1, batch_size: int = 64, seed: int = 0, callbacks=(),
            **trainer_options) -> AttackResult:
        """Train ``topology`` on ``dataset`` with this attack observing what its party sees, then attack.

        The one-call API: ``get("norm").run(build_topology("vanilla", model), data, epochs=3).scores()``.
        ``callbacks`` (e.g. defenses) run before the attack, so it sees what they let through.
        Raises :class:`NotApplicable` (before any training) where the threat model makes no sense.
        """
        from secsplit.training import Trainer

        self.check_applicable(topology, dataset)
        trainer_options.setdefault("progress", False)
        Trainer(topology, epochs=epochs, batch_size=batch_size, seed=seed, callbacks=[*callbacks, self],
                **trainer_options).fit(dataset)
        return self.result()


def create_attack(name: str, /, **kwargs) -> Attack:
    return ATTACKS.create(name, **kwargs)


def canonical_name(name: str) -> str:
    """The registered name for a short one ("norm" -> "norm-attack"); any other name is returned as is."""
    if name not in ATTACKS and f"{name}-attack" in ATTACKS:
        return f"{name}-attack"
    return name


def get(name: str, /, **kwargs) -> Attack:
    """``create_attack`` that also takes the short names ("norm" for "norm-attack", "cosine", "fsha")."""
    return ATTACKS.create(canonical_name(name), **kwargs)


def list_attacks() -> list[tuple[str, str]]:
    return [(n, ATTACKS.lookup(n).threat_model.describe()) for n in ATTACKS.names()]

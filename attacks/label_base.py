"""What every label-inference attack shares: observing the gradients one party receives, lining them
up with the training batches for scoring, the attacker's granted known labels, and AUC helpers.

Threat model. The attacker is a non-label party (the client in vanilla split learning with the
labels held by the server, ``label_source="label_owner"``: the two-party setting of Li et al.,
ICLR'22). It registers a channel tap for *its own party only* in ``on_setup`` and keeps the
gradients it receives during training (kind "gradient", phase "train", ``dst`` = itself): exactly
what it sees on the wire. It never reads another party's tensors.

Ground truth. The attack is given the data set (``dataset=`` or, as the evaluation runner does,
through :meth:`LabelAttack.check_applicable`). Its labels are used for two things only:

- **scoring**: at the end of each epoch the attack rebuilds that epoch's index batches with the
  Trainer's deterministic :meth:`~secsplit.training.Trainer.batches` (the i-th gradient received in
  an epoch belongs to the i-th non-empty batch) and looks up the true labels of each batch to
  score its guesses (AUC, accuracy). The guesses are computed before and without them.
- **granted knowledge**: attacks whose threat model ``knows`` "few-labels" receive a handful of
  labels, chosen by a seeded draw (:meth:`LabelAttack.known_label_ids` or, for the cosine attack,
  one positive per batch). Only those labels enter the guesses.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from secsplit.attacks.base import Attack, AttackResult, NotApplicable, is_intermediate_party
from secsplit.errors import ConfigError

NOT_A_CHAIN = "needs a chain topology (vanilla, U-shape, multi-hop): the attacker's seat is defined by the chain's owners"


def auc_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC (Mann-Whitney, ties = 1/2) of ``scores`` (R, n) against boolean ``positive`` (R, n).

    Rows holding one class give NaN.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positive = np.atleast_2d(np.asarray(positive, dtype=bool))
    from scipy.stats import rankdata  # scipy imported where used: it is slow to import
    ranks = rankdata(scores, axis=1)
    n_pos = positive.sum(1)
    n_neg = positive.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (ranks * positive).sum(1) - n_pos * (n_pos + 1) / 2
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def batch_chance_auc(label_batches: list[np.ndarray], *, rounds: int = 100, seed: int = 0) -> float:
    """Mean symmetric AUC, max(AUC, 1 - AUC), that *random* scores reach on these label batches.

    The baseline for per-batch symmetric AUC: over small batches it sits well above 0.5 (about 0.6
    at batch 32, balanced), so an attack's per-batch AUC means something only above it. Batches
    holding one class are skipped, as the attacks skip them. Seeded.
    """
    rng = np.random.default_rng(seed)
    values = []
    for labels in label_batches:
        positive = np.asarray(labels).astype(bool)
        if positive.all() or not positive.any():
            continue
        auc = auc_rows(rng.random((rounds, len(positive))), np.broadcast_to(positive, (rounds, len(positive))))
        values.append(np.maximum(auc, 1 - auc).mean())
    return float(np.mean(values)) if values else float("nan")


def check_gradient_seat(topology, attacker: str) -> None:
    """Raise NotApplicable unless ``attacker`` is a non-label party that receives training gradients
    and does not already hold (or send) the labels.

    What it reads is declared by the topology: the chain's ``owners`` (one gradient per step for the
    whole batch), ``label_owner``/``data_owner``/``label_source``, and ``receivers("gradient")``.
    """
    owners = topology.owners
    if owners is None:
        raise NotApplicable(NOT_A_CHAIN)
    if attacker not in owners:
        raise NotApplicable(f"the attacker {attacker!r} is no party of this topology (parties: {', '.join(dict.fromkeys(owners))})")
    if topology.label_owner == attacker:
        where = "the client holds them in U-shape" if attacker == "client" else f"{attacker} computes the loss"
        raise NotApplicable(f"labels never leave the attacker's reach: {where}, so the label owner is the attacker")
    if topology.label_source == "data_owner" and topology.data_owner == attacker:
        raise NotApplicable(f"the {attacker} itself sends each batch's labels to the {topology.label_owner} "
                            f"(label_source='data_owner'): nothing to infer; build the topology with "
                            f"label_source='label_owner' for the two-party setting where the labels stay with the label owner")
    if attacker not in topology.receivers("gradient"):
        raise NotApplicable(f"the {attacker} owns no segment before a cut, so it receives no gradient to attack")


class LabelAttack(Attack):
    """Base of label-inference attacks by one non-label party (see the module docstring).

    Subclasses set ``threat_model`` (its ``attacker`` is the party whose tap is used) and implement
    :meth:`score_epoch`; binary attacks get AUC rows, multi-class ones set ``binary = False`` and
    build their own rows.

    Args:
        dataset: the training data set; its labels are used only for scoring and the attacker's
            granted labels (may instead come through :meth:`check_applicable`).
        seed: seeds the attack's own randomness (known-label draws, clustering, chance AUC).
    """

    binary: bool = True

    #: parties this attack may sit at; gradient attacks also work from the server's seat in U-shape
    seats: tuple[str, ...] = ("client",)

    seat_option = "attacker"

    def can_sit(self, party: str) -> bool:
        """Whether this attack works from ``party``: its declared seats, and intermediate parties (hop1, ...)
        for attacks that also work from the server's seat (they read the same kind of returned gradient)."""
        return party in self.seats or ("server" in self.seats and is_intermediate_party(party))

    def candidate_seats(self, topology) -> tuple[str, ...]:
        found = tuple(p for p in topology.receivers("gradient") if self.can_sit(p))
        return found or (self.seat,)

    def __init__(self, *, dataset=None, seed: int = 0, attacker: str | None = None) -> None:
        if attacker is not None and attacker != self.threat_model.attacker:
            if not self.can_sit(attacker):
                raise ConfigError(f"{self.name} can attack from {', '.join(self.seats)}, not {attacker!r}")
            # an instance-level threat model: the same attack from another party's seat
            self.threat_model = dataclasses.replace(self.threat_model, attacker=attacker)
        self.dataset = dataset
        self.seed = int(seed)
        self.trainer = None
        self.gradients: list[torch.Tensor] = []  # this epoch's received gradients, in arrival order
        self.per_epoch: list[dict] = []
        self.last_scores: torch.Tensor | None = None
        self.last_labels: torch.Tensor | None = None
        self.observed_messages = 0

    @property
    def party(self) -> str:
        return self.threat_model.attacker

    def params(self) -> dict:
        return {"seed": self.seed, "attacker": self.party}

    # -- applicability -----------------------------------------------------------------------------
    def check_applicable(self, topology, dataset) -> None:
        self.dataset = dataset
        check_gradient_seat(topology, self.party)
        if self.binary and dataset.num_classes != 2:
            raise NotApplicable(f"{self.name} scores a binary label (leak AUC); {dataset.name} has {dataset.num_classes} "
                                f"classes: use gradient-clustering for multi-class labels")

    # -- observation -------------------------------------------------------------------------------
    def on_setup(self, trainer) -> None:
        if self.dataset is None:
            raise ConfigError(f"{self.name} needs the data set for scoring: pass dataset= or call check_applicable(topology, dataset) first")
        self.check_applicable(trainer.topology, self.dataset)
        self.trainer = trainer
        trainer.channel.add_tap(self.party, self._observe)

    def _observe(self, message) -> None:
        if message.kind == "gradient" and message.phase == "train" and message.dst == self.party:
            self.observed_messages += 1
            self.gradients.append(message.tensor.detach().to("cpu", copy=True).flatten(1))

    def on_fit_start(self, *, num_samples, epochs, batch_size) -> None:
        if num_samples != len(self.dataset.x_train):
            raise ConfigError(f"{self.name} was given a data set of {len(self.dataset.x_train)} training samples "
                              f"but the Trainer fits {num_samples}")

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """The index batches of ``epoch``, one per gradient received (ground truth: scoring only)."""
        batches = [b.cpu() for b in self.trainer.batches(len(self.dataset.x_train), epoch) if len(b)]
        if len(batches) != len(self.gradients):
            raise ConfigError(f"{self.name}: received {len(self.gradients)} gradient messages in epoch {epoch} "
                              f"but the epoch has {len(batches)} batches; is the attacker receiving more than one "
                              f"gradient per step?")
        return batches

    def on_epoch_end(self, *, epoch, metrics) -> None:
        batches = self.epoch_batches(epoch)
        gradients, self.gradients = self.gradients, []
        row = self.score_epoch(epoch, gradients, batches)
        row.setdefault("epoch", epoch)
        for key in ("train_accuracy", "test_accuracy"):
            if key in metrics:
                row[key] = metrics[key]
        self.per_epoch.append(row)

    def score_epoch(self, epoch: int, gradients: list[torch.Tensor], batches: list[torch.Tensor]) -> dict:
        """Guess this epoch's labels from ``gradients``, score them; return the epoch's row."""
        raise NotImplementedError

    # -- granted knowledge -------------------------------------------------------------------------
    def known_label_ids(self, per_class: int) -> dict[int, int]:
        """A seeded draw of ``per_class`` training samples per class whose labels the attacker is
        granted ("few-labels"): {training index: label}."""
        rng = np.random.default_rng(self.seed + 7919)
        y = self.dataset.y_train.cpu().numpy()
        known: dict[int, int] = {}
        for c in range(self.dataset.num_classes):
            members = np.flatnonzero(y == c)
            for i in rng.choice(members, size=min(per_class, len(members)), replace=False):
                known[int(i)] = c
        return known

    # -- binary scoring ----------------------------------------------------------------------------
    def binary_row(self, epoch: int, batch_scores: list[np.ndarray], batch_labels: list[np.ndarray]) -> dict:
        """Per-batch and pooled leak AUC of one epoch; NaN scores (unscored samples) are left out.

        ``auc``: mean over batches holding both classes of max(AUC, 1 - AUC) (Li et al. report
        per-batch leak AUC; the attacker may flip its score's sign); ``raw_auc``: the same without
        flipping; ``pooled_auc``/``pooled_raw_auc``: one AUC over every scored sample of the epoch;
        ``chance_auc``: what random scores reach per batch on the same label batches.
        """
        per_batch, kept_labels, pooled_s, pooled_y = [], [], [], []
        for s, y in zip(batch_scores, batch_labels):
            keep = ~np.isnan(s)
            s, y = s[keep], y[keep]
            pooled_s.append(s)
            pooled_y.append(y)
            if len(y) and 0 < y.sum() < len(y):
                per_batch.append(auc_rows(s[None], y[None].astype(bool))[0])
                kept_labels.append(y)
        scores, labels = np.concatenate(pooled_s), np.concatenate(pooled_y)
        self.last_scores = torch.as_tensor(scores, dtype=torch.float32)
        self.last_labels = torch.as_tensor(labels, dtype=torch.int64)
        per_batch = np.asarray(per_batch)
        pooled = float(auc_rows(scores[None], labels[None].astype(bool))[0]) if len(labels) else float("nan")
        nan = float("nan")
        return {
            "epoch": epoch,
            "auc": float(np.maximum(per_batch, 1 - per_batch).mean()) if len(per_batch) else nan,
            "raw_auc": float(per_batch.mean()) if len(per_batch) else nan,
            "pooled_auc": max(pooled, 1 - pooled),
            "pooled_raw_auc": pooled,
            "chance_auc": batch_chance_auc(kept_labels, seed=self.seed + epoch),
            "batches_scored": int(len(per_batch)),
        }

    # -- result ------------------------------------------------------------------------------------
    def result(self) -> AttackResult:
        if not self.per_epoch:
            raise ConfigError(f"{self.name} has no finished epoch to report (train at least one epoch)")
        last = self.per_epoch[-1]
        info = {k: v for k, v in last.items() if k != "epoch" and isinstance(v, (int, float))}
        info.update(observed_gradient_messages=self.observed_messages, party=self.party, epochs_observed=len(self.per_epoch))
        info.update(self.extra_info())
        return AttackResult(attack=self.name, threat_model=self.threat_model.describe(), label_scores=self.last_scores,
                            true_labels=self.last_labels, per_epoch=list(self.per_epoch), info=info)

    def extra_info(self) -> dict:
        return {}

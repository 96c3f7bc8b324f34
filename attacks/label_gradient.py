"""Norm and direction (cosine) label attacks on returned gradients (Li et al., ICLR'22, "Label
Leakage and Protection in Two-party Split Learning").

In two-party split learning the label party returns, per sample, g_i = (p_i - e_{y_i})^T dlogits/dz_i.
Its *norm* scales with |p_{y_i} - 1|, which, with imbalanced labels, is larger for the rare
positives the model is still unsure of; its *direction* flips with the label (for two classes,
p - e_y = +-(1 - p_y)(1, -1)), so gradients of the same class point the same way.

Both attacks watch from the client's seat (see :mod:`secsplit.attacks.label_base`) and score the
labels of every training batch; leak AUC is reported per epoch (per batch and pooled), and the
result's info carries the best epoch's pooled AUC (``best_pooled_auc``, ``best_epoch``): the leak
moves with training (it peaks while the model is unsure of the rare class), so an audit reports the
curve and its maximum, not only the last epoch.

What the label owner's loss makes of the gradient: for softmax cross-entropy over two logits (and
for a single-logit BCE alike) g_i = (p_i - e_{y_i})^T J_i = +-(1 - p_{y_i}) * v_i, with
v_i = d(z_1 - z_0)/dh_i the gradient of the logit margin at the cut. Its size carries the label only
through (1 - p_y), which vanishes for both classes once the model fits the data (Adam on
breast-cancer-imbalanced: train accuracy 0.98 by epoch 4, norm leak ~0.75); its *sign* along the
margin direction carries the label whatever the model's confidence. Hence the norm attack's second
score, ``spectral``: label-free, like the norm, it projects each unit gradient on the principal
direction of the epoch's unit gradients (the margin direction, up to sign).
"""

from __future__ import annotations

import numpy as np
import torch

from secsplit.attacks.base import ATTACKS, ThreatModel
from secsplit.attacks.label_base import LabelAttack
from secsplit.errors import ConfigError


SCORES = ("norm", "spectral")


def principal_direction_scores(gradients: list[torch.Tensor]) -> list[np.ndarray]:
    """Label-free direction scores: the projection of each unit-normalized gradient on the top right
    singular vector of all of them (the shared margin direction), oriented so that the side whose
    gradients are larger on average scores high (Li et al.'s intuition: the rarer, less fitted
    class gets the larger gradients). One array per batch."""
    flat = torch.cat(gradients).double()
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
    if len(unit) < 2:
        return [np.zeros(len(g)) for g in gradients]
    _, _, vh = torch.linalg.svd(unit, full_matrices=False)
    proj = unit @ vh[0]
    norms = flat.norm(dim=1)
    side = proj > 0
    if side.any() and (~side).any() and norms[side].mean() < norms[~side].mean():
        proj = -proj
    return [part.numpy() for part in proj.split([len(g) for g in gradients])]


class _BestEpoch:
    """Mixin: the best epoch's pooled leak AUC in the result's info, next to the last epoch's."""

    def extra_info(self) -> dict:
        rows = [r for r in self.per_epoch if np.isfinite(r.get("pooled_auc", np.nan))]
        if not rows:
            return {}
        best = max(rows, key=lambda r: r["pooled_auc"])
        return {"best_pooled_auc": best["pooled_auc"], "best_epoch": best["epoch"], "best_auc": max(r["auc"] for r in rows)}


@ATTACKS.register("norm-attack")
class NormAttack(_BestEpoch, LabelAttack):
    """Label-free scores of each returned gradient; higher = more likely positive.

    From the client's seat (vanilla, labels at the server) by default; ``attacker="server"`` is
    the server of U-shape, which receives the gradient of the client's tail input.

    Binary labels only. Per epoch: leak AUC per batch (``auc``, ``raw_auc``), pooled over the
    epoch (``pooled_auc``) and the per-batch chance level (``chance_auc``); the result's info adds the
    best epoch (``best_pooled_auc``, ``best_epoch``).

    Args:
        score: "norm" (default; Li et al.'s norm attack: the L2 norm of each sample's gradient) or
            "spectral" (the projection of each unit gradient on the epoch's principal gradient
            direction, see :func:`principal_direction_scores`; no label needed either).
        dataset, seed, attacker: see :class:`~secsplit.attacks.label_base.LabelAttack`.

    The norm leaks only as much as the gap in |p_y - 1| between classes: near 1.0 while the model is
    still unsure of the rare positives (breast-cancer-imbalanced, mlp, SGD lr 0.01: 0.97-1.0 from
    epoch 2), ~0.75 at its best epoch under Adam lr 1e-3 (5 seeds), near chance with balanced labels.
    ``spectral`` reads the label from the gradient's sign along the margin direction instead: 1.00 in
    every epoch under both optimizers (benchmarks/bench_attack_strength.py).
    """

    seats = ("client", "server")

    name = "norm-attack"
    threat_model = ThreatModel(attacker="client", behaviour="honest-but-curious", knows=(), target="labels")
    search_space = {"score": list(SCORES)}
    tuning_trials = 2

    def __init__(self, *, score: str = "norm", dataset=None, seed: int = 0, attacker: str | None = None) -> None:
        super().__init__(dataset=dataset, seed=seed, attacker=attacker)
        if score not in SCORES:
            raise ConfigError(f"unknown norm-attack score {score!r}; valid: {', '.join(SCORES)}")
        self.score = score

    def params(self) -> dict:
        return {**super().params(), "score": self.score}

    def score_epoch(self, epoch, gradients, batches):
        labels = self.dataset.y_train
        if self.score == "norm":
            scores = [g.norm(dim=1).double().numpy() for g in gradients]
        else:
            scores = principal_direction_scores(gradients)
        return self.binary_row(epoch, scores, [labels[b].numpy() for b in batches])


@ATTACKS.register("cosine-attack")
class CosineAttack(_BestEpoch, LabelAttack):
    """Score = cosine similarity of each sample's gradient with the known positives' gradients (Li et al.'s
    direction attack), minus that with the known negatives' when any are known.

    Granted labels ("few-labels", the only use of ground truth beyond scoring), two ways:

    - ``known_per_class`` (default 1): that many training samples per class, drawn once (seeded) for
      the whole training: with the default, two labels in all. Each epoch, the known samples'
      gradients of that epoch (every sample is sent once per epoch) are the references for the
      whole epoch: the client scores the epoch's gradients once it ends.
    - ``known_per_batch=True``: one positive of every batch (drawn from the batch's positives; a
      batch without one reuses the last reference), far more labels (30 of 32 positives by epoch 10
      on breast-cancer-imbalanced), kept for comparison with the earlier setting.

    Known samples are left out of the scores; a reference is the mean of the known samples' unit
    gradients.

    Args:
        known_per_class: labeled samples per class granted for the whole training (>= 1).
        known_per_batch: grant one positive per batch instead.
        dataset, seed, attacker: see :class:`~secsplit.attacks.label_base.LabelAttack`.
    """

    seats = ("client", "server")

    name = "cosine-attack"
    threat_model = ThreatModel(attacker="client", behaviour="honest-but-curious", knows=("few-labels",), target="labels")
    search_space = {"known_per_class": [1]}
    tuning_trials = 1

    def __init__(self, *, known_per_class: int = 1, known_per_batch: bool = False, dataset=None, seed: int = 0,
                 attacker: str | None = None) -> None:
        super().__init__(dataset=dataset, seed=seed, attacker=attacker)
        if isinstance(known_per_class, bool) or int(known_per_class) < 1:
            raise ConfigError(f"known_per_class must be >= 1, got {known_per_class}")
        self.known_per_class = int(known_per_class)
        self.known_per_batch = bool(known_per_batch)
        self.reference: torch.Tensor | None = None
        self.known: dict[int, int] | None = None
        self.known_ids_used: set[int] = set()
        self.known_labels_used = 0
        self.reused_references = 0

    def params(self) -> dict:
        return {**super().params(), "known_per_class": self.known_per_class, "known_per_batch": self.known_per_batch}

    def score_epoch(self, epoch, gradients, batches):
        if self.known_per_batch:
            return self._score_per_batch(epoch, gradients, batches)
        if self.known is None:
            self.known = self.known_label_ids(self.known_per_class)
        flat = torch.cat(gradients).double()
        index = torch.cat(batches).numpy()
        unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
        rows = {c: [r for r, i in enumerate(index) if self.known.get(int(i)) == c] for c in (0, 1)}
        self.known_ids_used.update(int(index[r]) for rs in rows.values() for r in rs)
        self.known_labels_used = len(self.known_ids_used)
        s = torch.zeros(len(unit), dtype=torch.float64)
        references = {}
        for c, sign in ((1, 1.0), (0, -1.0)):
            if rows[c]:
                ref = unit[rows[c]].mean(0)
                references[c] = ref
                s += sign * torch.nn.functional.cosine_similarity(unit, ref[None], dim=1)
        if not references:  # no known sample was sent this epoch (only with Poisson sampling)
            s = torch.full((len(unit),), float("nan"), dtype=torch.float64)
        s = s.numpy().copy()
        for rs in rows.values():
            s[rs] = np.nan  # the known samples are not guessed
        labels = self.dataset.y_train
        sizes = [len(g) for g in gradients]
        return self.binary_row(epoch, list(np.split(s, np.cumsum(sizes)[:-1])), [labels[b].numpy() for b in batches])

    def _score_per_batch(self, epoch, gradients, batches):
        rng = np.random.default_rng([self.seed, epoch])
        scores, labels = [], []
        for g, index in zip(gradients, batches):
            y = self.dataset.y_train[index].numpy()
            positives = np.flatnonzero(y == 1)
            known = None
            if len(positives):  # the attacker's one granted label in this batch
                known = int(rng.choice(positives))
                self.reference = g[known].double()
                self.known_labels_used += 1
                self.known_ids_used.add(int(index[known]))
            elif self.reference is not None:
                self.reused_references += 1
            if self.reference is None:
                s = np.full(len(y), np.nan)
            else:
                s = torch.nn.functional.cosine_similarity(g.double(), self.reference[None], dim=1).numpy().copy()
            if known is not None:
                s[known] = np.nan  # the known sample is not guessed
            scores.append(s)
            labels.append(y)
        return self.binary_row(epoch, scores, labels)

    def extra_info(self) -> dict:
        return {**super().extra_info(), "known_labels_used": self.known_labels_used,
                "distinct_known_samples": len(self.known_ids_used), "reused_references": self.reused_references}

"""Norm and direction (cosine) label attacks on returned gradients (Li et al., ICLR'22, "Label
Leakage and Protection in Two-party Split Learning").

In two-party split learning the label party returns, per sample, g_i = (p_i - e_{y_i})^T dlogits/dz_i.
Its *norm* scales with |p_{y_i} - 1|, which, with imbalanced labels, is larger for the rare
positives the model is still unsure of; its *direction* flips with the label (for two classes,
p - e_y = +-(1 - p_y)(1, -1)), so gradients of the same class point the same way.

Both attacks watch from the client's seat (see :mod:`secsplit.attacks.label_base`) and score the
labels of every training batch; leak AUC is reported per epoch (per batch and pooled).
"""

from __future__ import annotations

import numpy as np
import torch

from secsplit.attacks.base import ATTACKS, ThreatModel
from secsplit.attacks.label_base import LabelAttack


@ATTACKS.register("norm-attack")
class NormAttack(LabelAttack):
    """Score = L2 norm of each sample's returned gradient; higher = more likely positive.

    From the client's seat (vanilla, labels at the server) by default; ``attacker="server"`` is
    the server of U-shape, which receives the gradient of the client's tail input.

    Binary labels only. Per epoch: leak AUC per batch (``auc``, ``raw_auc``), pooled over the
    epoch (``pooled_auc``) and the per-batch chance level (``chance_auc``).

    The leak is only as large as the gap in |p_y - 1| between classes: it is near 1.0 while the
    model is still unsure of the rare positives (breast-cancer-imbalanced, mlp, SGD lr 0.01: 0.97-1.0
    from epoch 2), and falls to ~0.7-0.9 once the model learns them (Adam lr 1e-3: train accuracy
    0.98 by epoch 4); with balanced labels it stays near the per-batch chance level.
    """

    seats = ("client", "server")

    name = "norm-attack"
    threat_model = ThreatModel(attacker="client", behaviour="honest-but-curious", knows=(), target="labels")

    def score_epoch(self, epoch, gradients, batches):
        labels = self.dataset.y_train
        scores = [g.norm(dim=1).double().numpy() for g in gradients]
        return self.binary_row(epoch, scores, [labels[b].numpy() for b in batches])


@ATTACKS.register("cosine-attack")
class CosineAttack(LabelAttack):
    """Score = cosine similarity of each sample's gradient with a known positive's gradient.

    The attacker is granted the label of one positive sample per batch ("few-labels"; drawn,
    seeded, from the batch's positives: the only use of ground truth beyond scoring). That sample
    is left out of the scores. A batch without a positive reuses the last known positive's gradient
    (gradient directions drift slowly); batches before the first known positive are not scored.

    Args:
        dataset, seed: see :class:`~secsplit.attacks.label_base.LabelAttack`.
    """

    seats = ("client", "server")

    name = "cosine-attack"
    threat_model = ThreatModel(attacker="client", behaviour="honest-but-curious", knows=("few-labels",), target="labels")

    def __init__(self, *, dataset=None, seed: int = 0, attacker: str | None = None) -> None:
        super().__init__(dataset=dataset, seed=seed, attacker=attacker)
        self.reference: torch.Tensor | None = None
        self.known_labels_used = 0
        self.reused_references = 0

    def score_epoch(self, epoch, gradients, batches):
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
        return {"known_labels_used": self.known_labels_used, "reused_references": self.reused_references}

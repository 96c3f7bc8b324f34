"""Direct label scoring for many classes from the returned gradients (the direct / batch-level label
inference of VFL benchmarks: Fu et al., USENIX Security'22 "direct label inference"; Zou et al.,
"Batch Label Inference and Replacement Attacks in Black-Boxed VFL", arXiv 2112.05409; VFLAIR and
SecretFlow implement both).

With softmax cross-entropy the gradient at the logits is (p_i - e_{y_i}) / B: exactly one entry,
the label's, is negative. An attacker that receives the gradient at the logits (a VFL party whose
bottom model outputs logits the label owner only sums) reads every label off its sign pattern:
``argmin_j g_ij``, with no knowledge at all (the "logits" regime, exact).

In split learning the label owner's segment usually ends with a linear classifier W (k x d) the
attacker does not know: what it receives is g_i = W^T (p_i - e_{y_i}) / B. Then every gradient of an
epoch lies in one (k - 1)-dimensional subspace (c_i = p_i - e_{y_i} sums to zero), and in it the label
is still the argmin of a linear map of g_i (c_i = g_i W^+). The attack ("subspace" regime):

1. projects the epoch's unit-normalized gradients on their top ``rank`` (default k - 1) right
   singular vectors (label-free: the span of W's rows);
2. learns the linear argmin map in that subspace from the attacker's few known labels
   (``known_per_class``, "few-labels"): a multinomial logistic regression, which is exactly a
   linear argmin classifier;
3. labels every other sample of the epoch by it.

This is exact up to the fit for a linear last layer (the attacker's cut right before the
classifier: vanilla cut at the penultimate layer, the server of U-shape with the client's tail =
the classifier, secsplit's default U-shape cuts); deeper label-owner segments bend the subspace and
the attack degrades (measured and reported in benchmarks/README.md).

Reported per epoch: ``accuracy`` (known samples excluded), ``chance_accuracy`` (the majority class),
``regime``, and ``explained_variance`` (the share of the gradients' energy in the subspace:
near 1 where the linear model holds).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from secsplit.attacks.base import ATTACKS, ThreatModel
from secsplit.attacks.label_base import LabelAttack

from secsplit.errors import ConfigError

REGIMES = ("auto", "logits", "subspace")


@ATTACKS.register("direct-label")
class DirectLabelScoring(LabelAttack):
    """Read labels off the returned gradients: argmin at the logits, or the argmin map in their subspace.

    Args:
        known_per_class: training samples per class whose labels the attacker is granted (seeded draw);
            used in the "subspace" regime only.
        regime: "logits" (the gradient arrives at the logits: argmin, no knowledge), "subspace" (see the
            module docstring) or "auto" (logits when the gradient has as many columns as classes).
        rank: dimension of the subspace (default: classes - 1).
        dataset, seed, attacker: see :class:`~secsplit.attacks.label_base.LabelAttack`.
    """

    name = "direct-label"
    threat_model = ThreatModel(attacker="client", behaviour="honest-but-curious", knows=("few-labels",), target="labels")
    seats = ("client", "server")
    binary = False
    #: the attack's own hyperparameters for tuning (see Attack.search_space)
    search_space: ClassVar[dict] = {"known_per_class": [1, 5], "rank": [None, 16]}

    def __init__(self, *, known_per_class: int = 5, regime: str = "auto", rank: int | None = None, dataset=None,
                 seed: int = 0, attacker: str | None = None) -> None:
        super().__init__(dataset=dataset, seed=seed, attacker=attacker)
        if regime not in REGIMES:
            raise ConfigError(f"unknown regime {regime!r}; valid: {', '.join(REGIMES)}")
        if isinstance(known_per_class, bool) or int(known_per_class) < 0:
            raise ConfigError(f"known_per_class must be >= 0, got {known_per_class}")
        if rank is not None and int(rank) < 1:
            raise ConfigError(f"rank must be >= 1 or None, got {rank}")
        self.known_per_class, self.regime = int(known_per_class), regime
        self.rank = None if rank is None else int(rank)

    def params(self) -> dict:
        return {"seed": self.seed, "attacker": self.party, "known_per_class": self.known_per_class,
                "regime": self.regime, "rank": self.rank}

    def score_epoch(self, epoch, gradients, batches):
        k = self.dataset.num_classes
        g = torch.cat(gradients).double().numpy()
        index = torch.cat(batches).numpy()
        regime = self.regime
        if regime == "auto":
            regime = "logits" if g.shape[1] == k else "subspace"
        known = self.known_label_ids(self.known_per_class) if regime == "subspace" else {}
        is_known = np.array([int(i) in known for i in index])
        row: dict = {"epoch": epoch, "regime": regime}
        if regime == "logits":
            if g.shape[1] != k:
                raise ConfigError(f"{self.name}: regime 'logits' needs the gradient at the {k} logits; the {self.party} "
                                  f"receives {g.shape[1]} columns (use regime='subspace')")
            scores = -g
        else:
            if self.known_per_class < 1:
                raise ConfigError(f"{self.name}: the subspace regime names its argmin map with known labels; "
                                  f"set known_per_class >= 1")
            scores, row["explained_variance"] = self._subspace_scores(g, index, is_known, known, k)
        pred = scores.argmax(1)
        truth = self.dataset.y_train[torch.as_tensor(index)].numpy()  # scoring only, after the guess
        unknown = ~is_known
        self.last_scores = torch.as_tensor(scores[unknown], dtype=torch.float32)
        self.last_labels = torch.as_tensor(truth[unknown], dtype=torch.int64)
        row.update(accuracy=float((pred[unknown] == truth[unknown]).mean()),
                   chance_accuracy=float(np.bincount(truth, minlength=k).max() / len(truth)),
                   known_labels=int(is_known.sum()))
        return row

    def _subspace_scores(self, g, index, is_known, known, k):
        from sklearn.linear_model import LogisticRegression

        unit = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-30)
        rank = min(self.rank or k - 1, unit.shape[1])
        _, s, vt = np.linalg.svd(unit, full_matrices=False)
        explained = float((s[:rank] ** 2).sum() / max((s ** 2).sum(), 1e-30))
        a = unit @ vt[:rank].T
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
        rows = np.flatnonzero(is_known)
        y = np.array([known[int(index[r])] for r in rows])
        model = LogisticRegression(C=100.0, max_iter=2000).fit(a[rows], y)
        scores = np.full((len(a), k), -np.inf)
        scores[:, model.classes_] = model.decision_function(a) if len(model.classes_) > 2 else \
            np.stack([-model.decision_function(a), model.decision_function(a)], 1)
        return scores, explained

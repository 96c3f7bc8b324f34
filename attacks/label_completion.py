"""Passive model completion (Fu et al., USENIX Security'22, "Label Inference Attacks Against
Vertical Federated Learning").

The non-label party already holds a trained bottom model: its own segment, which split training
taught to extract label-relevant features. With a handful of labeled samples it *completes* the
model: it trains a small head on its segment's outputs and then labels any sample it holds, here
the test set. No message is observed or changed (passive); only the attacker's own segment, its
own inputs and its granted few labels are used.

Fu et al. also use the attacker's *unlabeled* inputs (MixMatch); here, with ``semi_supervised``
(default), the labels of the few known samples are spread over the k-nearest-neighbour graph of the
segment's features of all the attacker's training inputs (scikit-learn's LabelSpreading), and the
head is then fitted to the spread labels. A lighter stand-in for MixMatch, same idea: the trained
segment makes same-class inputs neighbours.

What the leak is measured against. A few labels alone already train a fair classifier, so the
attack's gain is its accuracy minus the *best* control that uses the same labels (and the same
unlabeled inputs, when the attack does) without the trained segment:

- ``scratch_accuracy``: the same architecture (a fresh segment plus the same head) trained end to
  end on the known samples alone;
- ``logistic_accuracy``: logistic regression on the raw inputs (standardized);
- ``spreading_accuracy`` (semi-supervised only): the same label spreading on the raw inputs;
- ``random_bottom_accuracy``: the attack's own recipe over a freshly initialized segment.

Reported per epoch (after that epoch's training): ``accuracy`` on the test set, the controls,
``best_control_accuracy`` and ``gain`` (accuracy - best control).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn

from secsplit.attacks.base import ATTACKS, NotApplicable, ThreatModel, in_batches
from secsplit.attacks.label_base import LabelAttack
from secsplit.errors import ConfigError


HEADS = ("logistic", "mlp")


def _standardize(train: np.ndarray, *others: np.ndarray):
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-6, std, 1.0)
    return [(a - mean) / std for a in (train, *others)]


def spread_labels(features: np.ndarray, known_rows: np.ndarray, known_y: np.ndarray, *, neighbours: int = 7) -> np.ndarray:
    """Labels for every row of ``features``, spread from the known rows over the kNN graph (LabelSpreading)."""
    from sklearn.semi_supervised import LabelSpreading

    labels = np.full(len(features), -1, dtype=np.int64)
    labels[known_rows] = known_y
    (scaled,) = _standardize(features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LabelSpreading(kernel="knn", n_neighbors=min(neighbours, len(features) - 1), alpha=0.2, max_iter=100)
        return model.fit(scaled, labels).transduction_


def fit_logistic(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, num_classes: int) -> np.ndarray:
    """Test-set class probabilities (n, num_classes) of logistic regression on standardized ``x``."""
    from sklearn.linear_model import LogisticRegression

    x, x_test = _standardize(x, x_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    out = np.zeros((len(x_test), num_classes))
    out[:, model.classes_] = model.predict_proba(x_test)
    return out


@ATTACKS.register("model-completion")
class ModelCompletion(LabelAttack):
    """Complete the client's own segment with a head fitted on a few labels; predict test labels.

    Args:
        known_per_class: labeled training samples per class the attacker is granted (seeded draw).
        head: "logistic" (default: logistic regression on the standardized features) or "mlp" (a
            small network, ``hidden`` units, ``steps`` full-batch Adam steps).
        semi_supervised: spread the known labels over the attacker's unlabeled training inputs first
            (see the module docstring); the head then fits all of them.
        hidden: width of the mlp head's hidden layer (0: a linear head).
        steps: full-batch Adam steps training the mlp head (and the from-scratch control).
        dataset, seed: see :class:`~secsplit.attacks.label_base.LabelAttack`.
    """

    #: its seat is fixed: the data owner completes its own bottom model
    seat_option = None

    name = "model-completion"
    threat_model = ThreatModel(attacker="client", behaviour="honest-but-curious", knows=("few-labels",), target="labels")
    binary = False
    search_space = {"head": list(HEADS), "semi_supervised": [True, False]}
    tuning_trials = 4

    def __init__(self, *, known_per_class: int = 4, head: str = "logistic", semi_supervised: bool = True,
                 hidden: int = 64, steps: int = 300, dataset=None, seed: int = 0) -> None:
        super().__init__(dataset=dataset, seed=seed)
        if isinstance(known_per_class, bool) or int(known_per_class) < 1:
            raise ConfigError(f"known_per_class must be >= 1, got {known_per_class}")
        if int(hidden) < 0 or int(steps) < 1:
            raise ConfigError(f"hidden must be >= 0 and steps >= 1, got {hidden} and {steps}")
        if head not in HEADS:
            raise ConfigError(f"unknown model-completion head {head!r}; valid: {', '.join(HEADS)}")
        self.known_per_class, self.hidden, self.steps = int(known_per_class), int(hidden), int(steps)
        self.head, self.semi_supervised = head, bool(semi_supervised)
        self.random_bottom_accuracy: float | None = None
        self.controls: dict[str, float] | None = None

    def params(self) -> dict:
        return {"seed": self.seed, "known_per_class": self.known_per_class, "head": self.head,
                "semi_supervised": self.semi_supervised, "hidden": self.hidden, "steps": self.steps}

    def check_applicable(self, topology, dataset) -> None:
        super().check_applicable(topology, dataset)
        if topology.data_owner != self.party:
            raise NotApplicable(f"model completion needs the attacker to hold inputs and a bottom segment; the data owner is {topology.data_owner}")

    def on_setup(self, trainer) -> None:
        if self.dataset is None:
            raise ConfigError(f"{self.name} needs the data set: pass dataset= or call check_applicable(topology, dataset) first")
        self.check_applicable(trainer.topology, self.dataset)
        self.trainer = trainer  # no tap: the attack observes no message

    def on_epoch_end(self, *, epoch, metrics) -> None:
        bottom = self.trainer.topology.segments[0]  # the client's own first segment
        logits = self.complete(bottom)
        if self.random_bottom_accuracy is None:
            fresh = copy.deepcopy(bottom)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + 104729)
                for layer in fresh.modules():
                    if layer is not fresh and hasattr(layer, "reset_parameters"):
                        layer.reset_parameters()
            self.random_bottom_accuracy = self._accuracy(self.complete(fresh))
            self.controls = self.from_scratch_controls(bottom)
        y_test = self.dataset.y_test
        self.last_scores, self.last_labels = logits, y_test.clone()
        accuracy = self._accuracy(logits)
        controls = {**self.controls, "random_bottom_accuracy": self.random_bottom_accuracy}
        best = max(controls.values())
        row = {"epoch": epoch, "accuracy": accuracy, **controls, "best_control_accuracy": best, "gain": accuracy - best,
               "chance_accuracy": float(torch.bincount(y_test, minlength=self.dataset.num_classes).max() / len(y_test)),
               "known_labels": len(self.known_label_ids(self.known_per_class))}
        for key in ("train_accuracy", "test_accuracy"):
            if key in metrics:
                row[key] = metrics[key]
        self.per_epoch.append(row)

    def _accuracy(self, logits: torch.Tensor) -> float:
        return float((logits.argmax(1) == self.dataset.y_test).float().mean())  # scoring only

    @torch.no_grad()
    def _features(self, bottom: nn.Module, x: torch.Tensor) -> torch.Tensor:
        device = next(bottom.parameters()).device
        was_training = bottom.training
        bottom.eval()
        try:
            return in_batches(lambda chunk: bottom(chunk.to(device)).flatten(1).cpu(), x, 1024)
        finally:
            bottom.train(was_training)

    def _known(self):
        known = self.known_label_ids(self.known_per_class)
        ids = torch.as_tensor(sorted(known), dtype=torch.int64)
        return ids, torch.as_tensor([known[int(i)] for i in ids], dtype=torch.int64)

    def _fit_head(self, f_train: torch.Tensor, y: torch.Tensor, f_test: torch.Tensor) -> torch.Tensor:
        """Test-set scores of the head fitted to features ``f_train`` labelled ``y``."""
        k = self.dataset.num_classes
        if self.head == "logistic":
            return torch.as_tensor(fit_logistic(f_train.numpy(), y.numpy(), f_test.numpy(), k), dtype=torch.float32)
        mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-6) if len(f_train) > 1 else torch.ones(f_train.shape[1])
        f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            head = (nn.Sequential(nn.Linear(f_train.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, k))
                    if self.hidden else nn.Linear(f_train.shape[1], k))
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-3)
        with torch.enable_grad():
            for _ in range(self.steps):
                optimizer.zero_grad()
                nn.functional.cross_entropy(head(f_train), y).backward()
                optimizer.step()
        with torch.no_grad():
            return head(f_test)

    def complete(self, bottom: nn.Module) -> torch.Tensor:
        """Test-set scores of the head fitted on ``bottom``'s features of the known samples (and, semi-supervised,
        of every training input, labelled by spreading the known labels)."""
        ids, y = self._known()
        f_test = self._features(bottom, self.dataset.x_test)
        if self.semi_supervised:
            f_all = self._features(bottom, self.dataset.x_train)
            spread = torch.as_tensor(spread_labels(f_all.double().numpy(), ids.numpy(), y.numpy()), dtype=torch.int64)
            return self._fit_head(f_all, spread, f_test)
        return self._fit_head(self._features(bottom, self.dataset.x_train[ids]), y, f_test)

    def from_scratch_controls(self, bottom: nn.Module) -> dict[str, float]:
        """What the same labels (and unlabeled inputs) give without the trained segment; see the module docstring."""
        ids, y = self._known()
        k = self.dataset.num_classes
        x_train, x_test = self.dataset.x_train.flatten(1).double().numpy(), self.dataset.x_test.flatten(1).double().numpy()
        controls = {"logistic_accuracy": self._accuracy(torch.as_tensor(fit_logistic(x_train[ids.numpy()], y.numpy(), x_test, k)))}
        if self.semi_supervised:
            spread = spread_labels(x_train, ids.numpy(), y.numpy())
            controls["spreading_accuracy"] = self._accuracy(torch.as_tensor(fit_logistic(x_train, spread, x_test, k)))
        # the same architecture trained end to end on the known samples alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 104729)
            fresh = copy.deepcopy(bottom).cpu()
            for layer in fresh.modules():
                if layer is not fresh and hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
            fresh.train()
            with torch.no_grad():
                width = fresh(self.dataset.x_train[:2]).flatten(1).shape[1]
            head = (nn.Sequential(nn.Linear(width, self.hidden), nn.ReLU(), nn.Linear(self.hidden, k))
                    if self.hidden else nn.Linear(width, k))
        net = nn.Sequential(fresh, nn.Flatten(), head)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-3)
        x_known = self.dataset.x_train[ids].float()
        with torch.enable_grad():
            for _ in range(self.steps):
                optimizer.zero_grad()
                nn.functional.cross_entropy(net(x_known), y).backward()
                optimizer.step()
        net.eval()
        with torch.no_grad():
            controls["scratch_accuracy"] = self._accuracy(in_batches(lambda chunk: net(chunk.float()), self.dataset.x_test, 1024))
        return controls

    def result(self):
        out = super().result()
        out.info.pop("observed_gradient_messages", None)
        return out

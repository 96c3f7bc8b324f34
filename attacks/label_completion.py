"""Passive model completion (Fu et al., USENIX Security'22, "Label Inference Attacks Against
Vertical Federated Learning").

The non-label party already holds a trained bottom model: its own segment, which split training
taught to extract label-relevant features. With a handful of labeled samples it *completes* the
model: it trains a small head on its segment's outputs and then labels any sample it holds, here
the test set. No message is observed or changed (passive); only the attacker's own segment, its
own inputs and its granted few labels are used.

Reported per epoch (after that epoch's training): ``accuracy`` of the completed model on the test
set, and ``random_bottom_accuracy``: the same head trained on the same few labels over a freshly
initialized copy of the segment: what the few labels alone give, without what training leaked.

Left out: Fu et al.'s semi-supervised fine-tuning (MixMatch over the attacker's unlabeled data);
this is their supervised baseline, a lower bound on the attack.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from secsplit.attacks.base import ATTACKS, NotApplicable, ThreatModel
from secsplit.attacks.label_base import LabelAttack
from secsplit.errors import ConfigError


@ATTACKS.register("model-completion")
class ModelCompletion(LabelAttack):
    """Train a small head on the client's own segment with a few labels; predict test labels.

    Args:
        known_per_class: labeled training samples per class the attacker is granted (seeded draw).
        hidden: width of the head's hidden layer (0: a linear head).
        steps: full-batch Adam steps training the head.
        dataset, seed: see :class:`~secsplit.attacks.label_base.LabelAttack`.
    """

    name = "model-completion"
    threat_model = ThreatModel(attacker="client", behaviour="honest-but-curious", knows=("few-labels",), target="labels")
    binary = False

    def __init__(self, *, known_per_class: int = 4, hidden: int = 64, steps: int = 300, dataset=None, seed: int = 0) -> None:
        super().__init__(dataset=dataset, seed=seed)
        if isinstance(known_per_class, bool) or int(known_per_class) < 1:
            raise ConfigError(f"known_per_class must be >= 1, got {known_per_class}")
        if int(hidden) < 0 or int(steps) < 1:
            raise ConfigError(f"hidden must be >= 0 and steps >= 1, got {hidden} and {steps}")
        self.known_per_class, self.hidden, self.steps = int(known_per_class), int(hidden), int(steps)
        self.random_bottom_accuracy: float | None = None

    def params(self) -> dict:
        return {"seed": self.seed, "known_per_class": self.known_per_class, "hidden": self.hidden, "steps": self.steps}

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
        y_test = self.dataset.y_test
        self.last_scores, self.last_labels = logits, y_test.clone()
        row = {"epoch": epoch, "accuracy": self._accuracy(logits), "random_bottom_accuracy": self.random_bottom_accuracy,
               "chance_accuracy": float(torch.bincount(y_test, minlength=self.dataset.num_classes).max() / len(y_test)),
               "known_labels": self.known_per_class * self.dataset.num_classes}
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
            return torch.cat([bottom(x[i:i + 1024].to(device)).flatten(1).cpu() for i in range(0, len(x), 1024)])
        finally:
            bottom.train(was_training)

    def complete(self, bottom: nn.Module) -> torch.Tensor:
        """Test-set logits of a head trained on ``bottom``'s features of the known samples."""
        known = self.known_label_ids(self.known_per_class)
        ids = torch.as_tensor(sorted(known), dtype=torch.int64)
        y = torch.as_tensor([known[int(i)] for i in ids], dtype=torch.int64)
        f_known = self._features(bottom, self.dataset.x_train[ids])
        f_test = self._features(bottom, self.dataset.x_test)
        mean, std = f_known.mean(0), f_known.std(0).clamp_min(1e-6) if len(ids) > 1 else torch.ones(f_known.shape[1])
        f_known, f_test = (f_known - mean) / std, (f_test - mean) / std
        k = self.dataset.num_classes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            head = (nn.Sequential(nn.Linear(f_known.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, k))
                    if self.hidden else nn.Linear(f_known.shape[1], k))
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-3)
        with torch.enable_grad():
            for _ in range(self.steps):
                optimizer.zero_grad()
                nn.functional.cross_entropy(head(f_known), y).backward()
                optimizer.step()
        with torch.no_grad():
            return head(f_test)

    def result(self):
        out = super().result()
        out.info.pop("observed_gradient_messages", None)
        return out

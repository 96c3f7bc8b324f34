"""Label DP by randomized response on the labels the label owner trains with (Ghazi et al., NeurIPS'21 RR)."""

from __future__ import annotations

import math

import torch

from secsplit.callbacks import SeededGenerator
from secsplit.defenses.base import DEFENSES, Defense
from secsplit.errors import ConfigError


def keep_probability(epsilon: float, num_classes: int) -> float:
    """Randomized response over K classes keeps the true label with probability e^eps / (e^eps + K - 1)."""
    if num_classes < 2:
        raise ConfigError(f"randomized response needs at least 2 classes, got {num_classes}")
    if math.isinf(epsilon):
        return 1.0
    return 1.0 / (1.0 + (num_classes - 1) * math.exp(-epsilon))  # = e^eps / (e^eps + K - 1), overflow-safe


def randomized_response(y: torch.Tensor, *, epsilon: float, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each label kept with :func:`keep_probability`, else replaced by a uniformly random *other* class."""
    keep = torch.rand(y.shape, device=y.device, generator=generator) < keep_probability(epsilon, num_classes)
    shift = torch.randint(1, num_classes, y.shape, device=y.device, generator=generator)  # 1..K-1: never the true class
    return torch.where(keep, y, (y + shift) % num_classes)


@DEFENSES.register("label-dp")
class LabelDP(Defense):
    """Randomized response on each training label at the label owner: epsilon-label-DP per use of a label.

    The label owner trains on noisy labels, so everything it sends (returned gradients, its model's
    outputs) is post-processing of them. Labels are re-randomized every time they are used (every
    epoch; no sample ids reach the loss), so over E epochs the guarantee composes to E * epsilon
    (reported as ``composed``). The guarantee is against everyone but the label owner; where the
    data owner sends labels to a separate label owner (``label_source="data_owner"``) that owner
    still sees them in clear.

    Args:
        epsilon: per-label epsilon (> 0; ``inf`` disables the noise).
        num_classes: K; default: the model's output width (read in ``on_setup``).
        seed: seeds the randomized response.
    """

    name = "label-dp"
    aliases = {"eps": "epsilon", "k": "num_classes"}
    addresses = "label inference by the non-label party (gradient norm/direction attacks, model completion)"
    threat_model = "any party other than the label owner, whatever it observes (label DP, Ghazi et al. 2021)"

    def __init__(self, *, epsilon: float = 1.0, num_classes: int | None = None, seed: int = 0) -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or math.isnan(epsilon) or epsilon <= 0:
            raise ConfigError(f"epsilon must be a positive number, got {epsilon!r}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
            raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.epsilon_value = float(epsilon)
        self.num_classes = num_classes
        self.seed = int(seed)
        self.label_owner: str | None = None
        self.random = SeededGenerator(self.seed)
        self.epochs = 0
        self.flipped = 0
        self.seen = 0

    @property
    def keep_probability(self) -> float:
        if self.num_classes is None:
            raise ConfigError("label-dp needs num_classes= or a Trainer whose model reports its output width")
        return keep_probability(self.epsilon_value, self.num_classes)

    def on_setup(self, trainer) -> None:
        self.label_owner = trainer.topology.label_owner
        classes = trainer.topology.num_classes  # None where the topology cannot tell
        if self.num_classes is None:
            if classes is None:
                raise ConfigError("label-dp cannot read the number of classes from this topology's model; pass num_classes=")
            self.num_classes = int(classes)
        elif classes is not None and classes != self.num_classes:
            raise ConfigError(f"label-dp num_classes={self.num_classes} but the model has {classes} outputs")

    def transform_labels(self, y, *, party, step):
        if self.label_owner is None:
            raise ConfigError("the label-dp defense must be attached through a Trainer (on_setup) to know the label owner")
        if party != self.label_owner:
            return y
        return self.randomize(y)

    def randomize(self, y: torch.Tensor) -> torch.Tensor:
        """Randomized response on a batch of class indices (never modifies ``y``)."""
        if self.num_classes is None:
            raise ConfigError("label-dp needs num_classes= or a Trainer whose model reports its output width")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ConfigError(f"label-dp got labels outside 0..{self.num_classes - 1}")
        out = randomized_response(y, epsilon=self.epsilon_value, num_classes=self.num_classes,
                                  generator=self.random.on(y.device))
        self.flipped += int((out != y).sum())
        self.seen += int(y.numel())
        return out

    def on_epoch_end(self, *, epoch, metrics):
        self.epochs = epoch

    def state_dict(self):
        """The generator goes on where it stopped (fresh randomness per use of a label, as the composition assumes)."""
        return {"generator": self.random.state(), "epochs": self.epochs, "flipped": self.flipped, "seen": self.seen}

    def load_state_dict(self, state):
        self.random.restore(state["generator"])
        self.epochs, self.flipped, self.seen = int(state["epochs"]), int(state["flipped"]), int(state["seen"])

    def params(self):
        return {"epsilon": self.epsilon_value, "num_classes": self.num_classes, "seed": self.seed}

    def epsilon(self) -> dict:
        """Per-label epsilon (pure DP, delta 0) and its basic composition over the epochs trained so far."""
        uses = max(self.epochs, 1)
        return {"per_label": self.epsilon_value, "delta": 0.0, "uses": uses, "composed": self.epsilon_value * uses,
                "notion": "label DP (randomized response), per use of each label; composed over epochs"}

    def report(self) -> dict:
        rate = self.flipped / self.seen if self.seen else None
        return {**super().report(), "flip_rate": rate,
                "expected_flip_rate": 1 - self.keep_probability if self.num_classes else None}

"""Hijack detection: notice gradients that cannot come from the honest training task, then stop.

An honest label owner's gradient for sample i is shaped by its label (for cross-entropy the
gradient at the logits is softmax - onehot(y_i)), so gradients of same-label samples point in
more similar directions than gradients of different-label samples. A hijacking server (FSHA,
Pasquini et al. CCS'21) returns gradients of its own label-blind objective, and that gap vanishes.
This is the label-consistency check of gradient-scrutiny defenses (in the spirit of SplitGuard,
Erdogan et al. 2022, which probes with fake labels instead); it needs the client to know its labels.
"""

from __future__ import annotations

import statistics

import torch

from secsplit.defenses.base import DEFENSES, Defense
from secsplit.errors import ConfigError, TrainingStopped


def label_consistency_gap(grad: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Mean cosine similarity of same-label gradient pairs minus that of different-label pairs.

    None when the batch has no same-label pair or no different-label pair.
    """
    g = grad.reshape(grad.shape[0], -1).double()
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = g @ g.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    same, different = same & off_diagonal, ~same
    if not same.any() or not different.any():
        return None
    return float(cos[same].mean() - cos[different].mean())


@DEFENSES.register("hijack-detection")
class HijackDetection(Defense):
    """Detect label-blind (hijacking) gradients from the server and stop sending activations.

    Args:
        threshold: alarm when the median label-consistency gap of the last ``window`` steps
            falls below this (honest training keeps it well above; see the tests' measurements).
        window: steps the median is taken over.
        warmup: steps before the first decision.
    """

    name = "hijack-detection"
    addresses = "feature-space hijacking (FSHA) and other active servers returning label-independent gradients"
    threat_model = "active (malicious) server; the client knows its own labels (vanilla with client labels, U-shape)"

    def __init__(self, *, threshold: float = 0.15, window: int = 5, warmup: int = 5) -> None:
        if window < 1 or warmup < 0:
            raise ConfigError(f"hijack-detection needs window >= 1 and warmup >= 0, got {window}, {warmup}")
        self.threshold, self.window, self.warmup = threshold, window, warmup
        self.gaps: list[float] = []
        self.detected_at: int | None = None
        self._labels: torch.Tensor | None = None
        self._step = 0

    def on_setup(self, trainer) -> None:
        topology = trainer.topology
        self._client = topology.data_owner
        # the data owner knows its labels where it is the label owner (U-shape) or sends them
        knows_labels = topology.label_owner == topology.data_owner or topology.label_source == "data_owner"
        if not knows_labels:
            raise ConfigError("hijack-detection needs labels at the client (vanilla with client-sent labels, or U-shape); "
                              "here the server holds them")
        trainer.channel.add_tap(self._client, self._observe)

    def transform_labels(self, y, *, party, step):
        if party == self._client:
            self._labels = y
        return y

    def _observe(self, message) -> None:
        if message.phase != "train":
            return
        if message.kind == "labels" and message.src == self._client:
            self._labels = message.tensor
        elif message.kind == "gradient" and message.dst == self._client and self._labels is not None:
            gap = label_consistency_gap(message.tensor, self._labels)
            if gap is not None:
                self.gaps.append(gap)
                self._decide(message.step)

    def _decide(self, step: int) -> None:
        if self.detected_at is not None or len(self.gaps) < max(self.window, self.warmup):
            return
        if statistics.median(self.gaps[-self.window:]) < self.threshold:
            self.detected_at = step

    def transform_activation(self, z, *, party, step, phase):
        if party == self._client and self.detected_at is not None:
            raise TrainingStopped(f"hijack-detection: gradients from the server stopped depending on the labels "
                                  f"(detected at step {self.detected_at}); the client sends no more activations")
        return z

    def state_dict(self):
        """The gaps seen and any alarm: a restarted client does not forget a detected hijack."""
        return {"gaps": list(self.gaps), "detected_at": self.detected_at}

    def load_state_dict(self, state):
        self.gaps = [float(g) for g in state["gaps"]]
        self.detected_at = None if state["detected_at"] is None else int(state["detected_at"])

    def params(self):
        return {"threshold": self.threshold, "window": self.window, "warmup": self.warmup}

    def report(self):
        return {**super().report(), "detected": self.detected_at is not None, "detected_at_step": self.detected_at,
                "steps_checked": len(self.gaps), "median_gap": statistics.median(self.gaps) if self.gaps else None}

"""What travels between parties: one tensor with its routing and meaning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Message kinds secsplit's topologies send. Labels have their own kind, so a test (or an auditor)
#: can assert that no label ever reaches a party that must not see it.
KINDS = ("activation", "gradient", "labels", "logits", "weights", "ids")


@dataclass(frozen=True)
class Message:
    """One tensor sent from ``src`` to ``dst``.

    Attributes:
        src: sending party's name.
        dst: receiving party's name.
        kind: one of :data:`KINDS`; says what the tensor means.
        step: training step (or inference request) the message belongs to.
        phase: "train" or "eval" (split inference / evaluation).
        tensor: the payload as the receiver gets it (detached from the sender's autograd graph).
        tag: optional sub-name, e.g. the parameter name of a weight message.
    """

    src: str
    dst: str
    kind: str
    step: int
    phase: str
    tensor: torch.Tensor
    tag: str = ""

    @property
    def nbytes(self) -> int:
        """Payload size in bytes: exactly what a raw-tensor wire format carries, framing excluded."""
        return self.tensor.numel() * self.tensor.element_size()

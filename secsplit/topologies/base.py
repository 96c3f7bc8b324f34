"""The Topology interface: every split-learning configuration implements these few methods."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from secsplit.accounting import FlopMeter
from secsplit.callbacks import Callback, CallbackList
from secsplit.channel import Channel
from secsplit.parties import Party


@dataclass(frozen=True)
class StepResult:
    """What the Trainer (the simulation driver, not a party) learns from one training step."""

    loss: float
    correct: int
    count: int


class Topology(ABC):
    """Wires parties and a channel for one configuration; implements a training step and prediction.

    The Trainer never branches on topology names: it calls :meth:`train_step` and :meth:`predict`.

    Attributes:
        parties: party name -> :class:`Party`.
        channel: the only way parties exchange tensors.
        data_owner: the party holding raw inputs.
        label_owner: the party holding labels and computing the loss.
        flops: per-party FLOP counts (see :class:`secsplit.accounting.FlopMeter`).
    """

    name: str = "topology"

    def __init__(self, *, parties: dict[str, Party], channel: Channel, data_owner: str, label_owner: str) -> None:
        self.parties = parties
        self.channel = channel
        self.data_owner = data_owner
        self.label_owner = label_owner
        self.callbacks: Callback = CallbackList()
        self.flops = FlopMeter()

    @abstractmethod
    def train_step(self, x: torch.Tensor, y: torch.Tensor, *, step: int) -> StepResult:
        """One forward/backward/update over a batch; every cross-party tensor goes through the channel."""

    @abstractmethod
    def predict(self, x: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        """Split inference: logits as the data owner finally holds them."""

    def train(self, mode: bool = True) -> None:
        for party in self.parties.values():
            party.train(mode)

    def eval(self) -> None:
        self.train(False)

    def to(self, device: torch.device | str) -> Topology:
        for party in self.parties.values():
            party.segments.to(device)
        return self

    def describe(self) -> dict:
        """JSON-ready summary: topology name, parties, their segments and parameter counts."""
        return {
            "topology": self.name,
            "data_owner": self.data_owner,
            "label_owner": self.label_owner,
            "parties": {n: {"segments": list(p.segments), "parameters": p.num_parameters()} for n, p in self.parties.items()},
        }

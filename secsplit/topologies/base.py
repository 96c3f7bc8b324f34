"""The Topology interface: every split-learning configuration implements these few methods."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from secsplit.accounting import FlopMeter
from secsplit.callbacks import Callback, CallbackList
from secsplit.channel import Channel
from secsplit.parties import Party


def gradient_at(received: torch.Tensor) -> torch.Tensor:
    """The gradient that reached a received tensor; zeros when nothing downstream depended on it."""
    return received.grad if received.grad is not None else torch.zeros_like(received)


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

    def epoch_plan(self, n: int, *, labels: torch.Tensor | None = None, epoch: int, batch_size: int,
                   generator: torch.Generator) -> Iterable[torch.Tensor] | None:
        """The index batches of one epoch in the order this configuration trains them; None: the Trainer's own.

        Only configurations where who trains when matters return a plan (many clients taking
        turns, SplitFed rounds); the Trainer then uses it in place of its seeded shuffle. Iterating
        the plan may act between steps (a client hands its weights on, an aggregator averages): the
        Trainer asks for the next batch only after the previous step finished, and exhausts the
        plan before it evaluates. Invalid settings (e.g. more clients than the ``n`` samples) must
        raise here, before any step.

        Args:
            n: training-set size.
            labels: the training labels (label-dependent partitions read them).
            epoch: 1-based epoch number.
            batch_size: samples per step.
            generator: seeded by the Trainer's seed and the epoch; use it for every random choice.
        """
        return None

    def return_gradient(self, received: torch.Tensor, *, src: str, dst: str, step: int) -> torch.Tensor:
        """``src`` sends back the gradient at the tensor it received from ``dst``, through its gradient plug-ins."""
        grad = self.callbacks.transform_gradient(gradient_at(received), party=src, step=step)
        return self.channel.send(src, dst, "gradient", grad, step=step)

    def close(self) -> None:
        """Release transport resources (a link to a remote party); nothing to do in process."""

    def train(self, mode: bool = True) -> None:
        for party in self.parties.values():
            party.train(mode)

    def eval(self) -> None:
        self.train(False)

    def to(self, device: torch.device | str) -> Topology:
        for party in self.parties.values():
            party.segments.to(device)
        return self

    # -- training checkpoints (see secsplit.training.Checkpointing) ------------------------------
    def save_training_state(self, directory, step: int) -> None:
        """Write every local party's weights and optimizer state for ``step``."""
        from secsplit.party_state import save_party_state

        for name, party in self.parties.items():
            save_party_state(directory, f"{name}-step{step:09d}", party, info={"step": step, "party": name})

    def load_training_state(self, directory, step: int) -> None:
        from secsplit.party_state import load_party_state

        for name, party in self.parties.items():
            load_party_state(directory, f"{name}-step{step:09d}", party)

    def prune_training_states(self, directory, *, keep_steps) -> None:
        """Delete saved party states of steps not in ``keep_steps``."""
        from pathlib import Path

        keep = {f"-step{s:09d}" for s in keep_steps}
        for path in Path(directory).glob("*-step*.*"):
            if path.suffix in (".json", ".safetensors") and not any(path.stem.endswith(k) for k in keep):
                path.unlink(missing_ok=True)

    def describe(self) -> dict:
        """JSON-ready summary: topology name, parties, their segments and parameter counts."""
        return {
            "topology": self.name,
            "data_owner": self.data_owner,
            "label_owner": self.label_owner,
            "parties": {n: {"segments": list(p.segments), "parameters": p.num_parameters()} for n, p in self.parties.items()},
        }

"""A party: a named owner of segments and of the optimizer over them."""

from __future__ import annotations

import torch
from torch import nn

from secsplit.optim import OptimizerSpec


class Party:
    """One participant of split learning (a client, a server, a hop).

    Its segments sit in one ``nn.ModuleDict`` so a defense can wrap everything one party trains as
    a single module (DP-SGD must account for the client's head and tail together).

    Args:
        name: unique party name; the channel routes and counts by it.
        segments: segment name -> module this party owns and trains.
        optimizer: optimizer settings; ``None`` builds none (a relay that owns no weights).

    Attributes:
        loaded: False when the party's weights were meant to come from a checkpoint but were not
            loaded (:func:`secsplit.checkpoint.load_split_model` sets it): they are untrained.
    """

    loaded: bool = True

    def __init__(self, name: str, segments: dict[str, nn.Module], optimizer: OptimizerSpec | None) -> None:
        self.name = name
        self.segments = nn.ModuleDict(segments)
        params = [p for p in self.segments.parameters() if p.requires_grad]
        self.optimizer: torch.optim.Optimizer | None = optimizer.build(params) if optimizer and params else None

    def zero_grad(self) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.optimizer is not None:
            self.optimizer.step()

    def train(self, mode: bool = True) -> None:
        self.segments.train(mode)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.segments.parameters())

    def __repr__(self) -> str:
        return f"Party({self.name!r}, segments={list(self.segments)}, params={self.num_parameters()})"

"""Optimizer settings as data, so configs and cache keys can name them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from secsplit.errors import ConfigError

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer every party builds over its own parameters.

    Per-parameter optimizers (SGD, Adam, AdamW) give the same update whether one optimizer holds
    the whole model or each party holds its own segment's share, which is what makes split
    training exactly equal to unsplit training.
    """

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in _OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.name!r}; valid names: {', '.join(sorted(_OPTIMIZERS))}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ConfigError("momentum and weight_decay must be >= 0")

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        kwargs: dict = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.name == "sgd":
            kwargs["momentum"] = self.momentum
        return _OPTIMIZERS[self.name](params, **kwargs)

    def to_dict(self) -> dict:
        return asdict(self)

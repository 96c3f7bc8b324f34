"""Model zoo with named cut points: mlp, lenet, resnet, vgg."""

from __future__ import annotations

import torch

from secsplit.errors import ConfigError
from secsplit.models.base import CuttableModel
from secsplit.models.zoo import MODELS


def create_model(name: str, *, input_shape, num_classes: int, seed: int | None = None, **options) -> CuttableModel:
    """Build model ``name`` for per-sample ``input_shape`` and ``num_classes`` outputs.

    With ``seed`` the initialization is deterministic and the global RNG state is left untouched.
    """
    factory = MODELS.lookup(name)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
    if not input_shape or any(int(d) < 1 for d in input_shape):
        raise ConfigError(f"input_shape must be positive dimensions, got {input_shape}")
    input_shape = tuple(int(d) for d in input_shape)
    try:
        if seed is None:
            return factory(input_shape=input_shape, num_classes=num_classes, **options)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory(input_shape=input_shape, num_classes=num_classes, **options)
    except TypeError as error:
        raise ConfigError(f"bad options for model {name!r}: {error}") from None


def list_models() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered model."""
    return [(n, (MODELS.lookup(n).__doc__ or "").strip().splitlines()[0]) for n in MODELS.names()]


__all__ = ["CuttableModel", "MODELS", "create_model", "list_models"]

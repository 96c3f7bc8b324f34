"""Model zoo with named cut points: mlp, lenet, resnet, vgg, and the paper-scale resnet50 and vgg16; one
file per model, registered by name."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from secsplit.errors import ConfigError
from secsplit.models.base import CuttableModel
from secsplit.registry import Registry
from secsplit.seeding import seeded

MODELS: Registry[CuttableModel] = Registry("model")

# Each module registers its model with MODELS on import; they need MODELS defined above.
from secsplit.models import lenet, mlp, resnet, resnet50, vgg, vgg16  # noqa: E402,F401


def create_model(name: str, *, input_shape: Sequence[int], num_classes: int, seed: int | None = None,
                 **options) -> CuttableModel:
    """Build model ``name`` for per-sample ``input_shape`` and ``num_classes`` outputs.

    Args:
        name: a registered model (see ``list_models()``).
        input_shape: per-sample shape, e.g. (1, 28, 28) for images or (30,) for tabular data.
        num_classes: width of the output layer (>= 2).
        seed: when given, the initial weights depend only on it; the global RNG state is untouched.
        **options: model-specific options, e.g. ``hidden=(64, 32)`` for mlp.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
        ConfigError: a bad shape, class count or option.
    """
    factory = MODELS.lookup(name)
    input_shape = _check_input_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        valid = ", ".join(p for p in parameters if p not in ("input_shape", "num_classes")) or "(none)"
        raise ConfigError(f"bad options for model {name!r}: {', '.join(unknown)}; valid options: {valid}")
    if seed is None:
        return factory(input_shape=input_shape, num_classes=num_classes, **options)
    with seeded(seed):
        return factory(input_shape=input_shape, num_classes=num_classes, **options)


def list_models() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered model, sorted by name."""
    return [(n, (MODELS.lookup(n).__doc__ or "").strip().splitlines()[0]) for n in MODELS.names()]


def _check_input_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"input_shape must be a sequence of ints, got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise ConfigError(f"input_shape must be positive dimensions, got {input_shape!r}")
    return shape


__all__ = ["CuttableModel", "MODELS", "create_model", "list_models"]

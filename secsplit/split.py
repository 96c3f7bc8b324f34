"""Cut a CuttableModel into segments at named cut points."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from secsplit.errors import ConfigError, UnknownNameError
from secsplit.models.base import CuttableModel


def split(model: CuttableModel, cuts: Sequence[str]) -> list[nn.Sequential]:
    """Cut ``model`` after each named block in ``cuts``; ``len(cuts) + 1`` segments in forward order.

    Each segment is an ``nn.Sequential`` of the model's own named blocks (``segment.conv1``,
    ``segment[0]`` work), so running the segments in order is exactly the model's forward.
    Segments share their parameters with ``model`` (no copies): training the segments trains the
    model. Deep-copy the model first (``copy.deepcopy``) if independent segments are wanted.

    Args:
        model: the model to cut.
        cuts: names from ``model.cut_points``, strictly in forward order. A single name may be
            given as a plain string.

    Raises:
        UnknownNameError: a cut is not one of the model's cut points (the message lists them).
        ConfigError: ``model`` is not a CuttableModel, or cuts are repeated or out of order.
    """
    if not isinstance(model, CuttableModel):
        raise ConfigError(f"split needs a CuttableModel (see secsplit.models.create_model), got {type(model).__name__}")
    cuts = [cuts] if isinstance(cuts, str) else list(cuts)
    points = model.cut_points
    valid = ", ".join(points)
    for cut in cuts:
        if cut not in points:
            raise UnknownNameError(f"unknown cut point {cut!r}; valid cut points: {valid}")
    if len(set(cuts)) != len(cuts):
        raise ConfigError(f"cut points must not repeat, got {cuts}; valid cut points in order: {valid}")
    positions = [points.index(cut) for cut in cuts]
    if positions != sorted(positions):
        raise ConfigError(f"cut points must be in forward order, got {cuts}; valid cut points in order: {valid}")
    bounds = [0, *(p + 1 for p in positions), len(model)]
    return [model[start:stop] for start, stop in zip(bounds, bounds[1:])]

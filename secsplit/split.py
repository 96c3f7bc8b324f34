"""Cut a CuttableModel into segments at named cut points."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from secsplit.errors import ConfigError, UnknownNameError
from secsplit.models.base import CuttableModel


def split(model: CuttableModel, cuts: Sequence[str]) -> list[nn.Sequential]:
    """Return ``len(cuts) + 1`` segments whose composition is the model.

    Segments share their parameters with ``model`` (no copies): training the segments trains the
    model. Deep-copy the model first if independent segments are wanted.

    Raises:
        UnknownNameError: a cut is not one of the model's cut points (the message lists them).
        ConfigError: cuts are repeated or out of order, or ``model`` is not a CuttableModel.
    """
    if not isinstance(model, CuttableModel):
        raise ConfigError(f"split needs a CuttableModel (see secsplit.models), got {type(model).__name__}")
    if isinstance(cuts, str):
        cuts = [cuts]
    points = model.cut_points
    for cut in cuts:
        if cut not in points:
            raise UnknownNameError(f"unknown cut point {cut!r}; valid cut points: {', '.join(points)}")
    positions = [points.index(cut) for cut in cuts]
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise ConfigError(f"cut points must be distinct and in forward order ({', '.join(points)}), got {list(cuts)}")
    names = list(model._modules)
    bounds = [0, *(p + 1 for p in positions), len(names)]
    return [nn.Sequential(OrderedDict((n, model._modules[n]) for n in names[a:b])) for a, b in zip(bounds, bounds[1:])]

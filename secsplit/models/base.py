"""CuttableModel: an ordered sequence of named blocks; a cut may fall between any two blocks."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from secsplit.errors import ConfigError


class CuttableModel(nn.Sequential):
    """A model whose forward is its named blocks in order, so cutting it is slicing it.

    Args:
        blocks: name -> module, in forward order.
        input_shape: per-sample input shape, e.g. (1, 28, 28) or (30,).
        num_classes: output width.
        default_cuts: for n = 1, 2, ... cuts, the model author's suggested cut points.
    """

    def __init__(self, blocks: OrderedDict[str, nn.Module], *, input_shape: tuple[int, ...], num_classes: int,
                 default_cuts: dict[int, tuple[str, ...]]) -> None:
        super().__init__(blocks)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self._default_cuts = dict(default_cuts)

    @property
    def cut_points(self) -> list[str]:
        """Names of the blocks after which the model may be cut (all but the last)."""
        return list(self._modules)[:-1]

    def suggested_cuts(self, n: int) -> tuple[str, ...]:
        """Sensible cut points for ``n`` cuts: shallow client segment first, classifier last for U-shape."""
        if n in self._default_cuts:
            return self._default_cuts[n]
        if n < 1 or n > len(self.cut_points):
            raise ConfigError(f"cannot suggest {n} cuts for a model with {len(self.cut_points)} cut points")
        # spread the cuts evenly over the cut points
        points = self.cut_points
        step = len(points) / (n + 1)
        picks = sorted({points[min(len(points) - 1, round(step * (i + 1)))] for i in range(n)}, key=points.index)
        if len(picks) < n:
            picks = points[:n]
        return tuple(picks)

    @torch.no_grad()
    def describe_cuts(self) -> list[tuple[str, tuple[int, ...]]]:
        """Each cut point with the per-sample shape of the tensor that crosses it."""
        was_training = self.training
        self.eval()
        try:
            h = torch.zeros(2, *self.input_shape, device=next(self.parameters()).device)
            shapes = []
            for name, block in self._modules.items():
                h = block(h)
                shapes.append((name, tuple(h.shape[1:])))
            return shapes[:-1]
        finally:
            self.train(was_training)

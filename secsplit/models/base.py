"""CuttableModel: an ordered sequence of named blocks; a cut may fall between any two blocks."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from secsplit.errors import ConfigError


class CuttableModel(nn.Sequential):
    """A model whose forward is its named blocks in order, so cutting it is slicing it.

    Args:
        blocks: name -> module, in forward order.
        input_shape: per-sample input shape, e.g. (1, 28, 28) or (30,).
        num_classes: output width.
        shallow_cut: the usual split-learning client segment ends after this block (the first
            conv block's activation/pool, or an MLP's first hidden ReLU). Default: the first cut point.
        stage_ends: blocks that end a natural stage (after an activation, pool or residual block);
            suggested multi-hop cuts fall on these where possible. Default: every cut point.
    """

    def __init__(self, blocks: OrderedDict[str, nn.Module], *, input_shape: Sequence[int], num_classes: int,
                 shallow_cut: str | None = None, stage_ends: Sequence[str] | None = None) -> None:
        if len(blocks) < 2:
            raise ConfigError(f"a CuttableModel needs at least 2 blocks to be cut, got {len(blocks)}")
        super().__init__(blocks)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        points = self.cut_points
        self._shallow_cut = shallow_cut if shallow_cut is not None else points[0]
        self._stage_ends = list(stage_ends) if stage_ends is not None else points
        unknown = [n for n in (self._shallow_cut, *self._stage_ends) if n not in points]
        if unknown:
            raise ConfigError(f"suggested cut(s) {unknown} are not cut points; valid cut points: {', '.join(points)}")

    def __getitem__(self, idx: int | slice) -> nn.Module:
        """A block by position, or for a slice a plain ``nn.Sequential`` of those named blocks.

        nn.Sequential would rebuild a slice with ``self.__class__``, which needs the model's
        keyword arguments; a slice is a segment, not a whole model, so it is a plain Sequential.
        """
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)

    @property
    def cut_points(self) -> list[str]:
        """Names of the blocks after which the model may be cut (all but the last), in forward order."""
        return list(self._modules)[:-1]

    def suggested_cuts(self, n: int) -> tuple[str, ...]:
        """Sensible default cut points for ``n`` cuts, in forward order.

        n = 1: the shallow client cut (vanilla split learning). n = 2: that cut plus the cut right
        before the final classifier layer (U-shape: the client keeps the last layer). n >= 3: the
        same two ends with n - 2 cuts spread over the stage ends in between (multi-hop), falling
        back to any cut point in between when there are too few stage ends.

        Raises:
            ConfigError: ``n`` < 1, or the model has too few cut points between the ends for ``n``.
        """
        points = self.cut_points
        first, last = points.index(self._shallow_cut), len(points) - 1
        if n < 1:
            raise ConfigError(f"number of cuts must be >= 1, got {n}")
        if n == 1:
            return (points[first],)
        inner = n - 2
        between = points[first + 1:last]
        stages = [p for p in between if p in self._stage_ends]
        pool = stages if len(stages) >= inner else between
        if first >= last or len(pool) < inner:
            most = 1 if first >= last else len(between) + 2
            raise ConfigError(f"cannot suggest {n} cuts: this model supports at most {most} suggested cut(s) "
                              f"(cut points: {', '.join(points)}); pass explicit cuts instead")
        # centred, evenly spaced picks from the pool; distinct because len(pool) >= inner
        middle = [pool[((2 * j + 1) * len(pool) - 1) // (2 * inner)] for j in range(inner)]
        return (points[first], *middle, points[last])

    def describe_cuts(self) -> list[tuple[str, tuple[int, ...]]]:
        """Each cut point with the per-sample shape of the tensor that crosses it.

        Runs a dummy batch of 2 zeros (so BatchNorm works) in eval mode under ``torch.no_grad``;
        the model's train/eval state is restored afterwards.
        """
        return block_output_shapes(self, self.input_shape)[:-1]


def block_output_shapes(model: nn.Sequential, input_shape: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, per-sample output shape) of every named block of ``model`` for one input shape."""
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else None
    dtype = reference.dtype if reference is not None else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            h = torch.zeros(2, *input_shape, device=device, dtype=dtype)
            shapes = []
            for name, block in model.named_children():
                h = block(h)
                shapes.append((name, tuple(h.shape[1:])))
        return shapes
    finally:
        model.train(was_training)


def flat_size(blocks: OrderedDict[str, nn.Module], input_shape: Sequence[int]) -> int:
    """Per-sample number of values the ``blocks`` (so far) output, to size the first linear layer."""
    return int(torch.Size(block_output_shapes(nn.Sequential(blocks), input_shape)[-1][1]).numel())


def image_shape(input_shape: Sequence[int], model: str, *, min_side: int = 1) -> tuple[int, int, int]:
    """``input_shape`` as (C, H, W), or a ConfigError naming the model and what it needs."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ConfigError(f"model {model!r} needs image inputs (C, H, W), got input_shape {shape}")
    if min(shape[1:]) < min_side:
        raise ConfigError(f"model {model!r} needs images of at least {min_side}x{min_side}, got input_shape {shape}")
    return shape

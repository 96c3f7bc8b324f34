"""mlp: fully connected network for tabular data (images are flattened)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from secsplit.errors import ConfigError
from secsplit.models import MODELS
from secsplit.models.base import CuttableModel


@MODELS.register("mlp")
def mlp(*, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (64, 32)) -> CuttableModel:
    """Multi-layer perceptron: flatten, fc-relu per hidden width, classifier (tabular or flattened images).

    Blocks: flatten, fc1, relu1, ..., fcK, reluK, fc{K+1} for K = len(hidden).
    """
    hidden = tuple(hidden)
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ConfigError(f"mlp needs at least one hidden layer of positive width, got hidden={hidden}")
    blocks: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = int(torch.Size(input_shape).numel())
    for i, h in enumerate(hidden, start=1):
        blocks[f"fc{i}"] = nn.Linear(width, int(h))
        blocks[f"relu{i}"] = nn.ReLU()
        width = int(h)
    blocks[f"fc{len(hidden) + 1}"] = nn.Linear(width, num_classes)
    relus = [f"relu{i}" for i in range(1, len(hidden) + 1)]
    return CuttableModel(blocks, input_shape=input_shape, num_classes=num_classes,
                         shallow_cut="relu1", stage_ends=relus)

"""resnet: a small CIFAR-size residual network (ResNet-8 by default)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from secsplit.errors import ConfigError
from secsplit.models import MODELS
from secsplit.models.base import CuttableModel, image_shape


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-bn layers and an identity (or 1x1 projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@MODELS.register("resnet")
def resnet(*, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, width: int = 16,
           blocks_per_stage: int = 1) -> CuttableModel:
    """Small CIFAR ResNet: stem, 3 stages of basic blocks (widths w, 2w, 4w), global pool, fc.

    ``blocks_per_stage`` = 1 is ResNet-8, 3 is ResNet-20 (He et al. 2016, CIFAR variant). Blocks:
    conv1, bn1, relu1 (stem), layer{stage}_{i} (one residual block each), pool, flatten, fc. The
    global average pool makes any input of at least 8x8 work.
    """
    c, _, _ = image_shape(input_shape, "resnet", min_side=8)
    if width < 1 or blocks_per_stage < 1:
        raise ConfigError(f"resnet needs width >= 1 and blocks_per_stage >= 1, got {width}, {blocks_per_stage}")
    blocks: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(c, width, 3, padding=1, bias=False), bn1=nn.BatchNorm2d(width), relu1=nn.ReLU())
    c_in = width
    for stage, multiplier in enumerate((1, 2, 4), start=1):
        for i in range(blocks_per_stage):
            blocks[f"layer{stage}_{i}"] = BasicBlock(c_in, width * multiplier, stride=2 if stage > 1 and i == 0 else 1)
            c_in = width * multiplier
    residual = [name for name in blocks if name.startswith("layer")]
    blocks.update(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(c_in, num_classes))
    return CuttableModel(blocks, input_shape=input_shape, num_classes=num_classes,
                         shallow_cut="relu1", stage_ends=["relu1", *residual, "flatten"])

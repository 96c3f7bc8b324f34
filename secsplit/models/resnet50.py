"""resnet50: ResNet-50 with bottleneck blocks, CIFAR variant (the paper-scale ResNet of the efficiency table)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from secsplit.errors import ConfigError
from secsplit.models import MODELS
from secsplit.models.base import CuttableModel, image_shape

EXPANSION = 4  # a bottleneck block's output has 4x the channels of its 3x3 conv


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand, each with batch norm; identity or projected shortcut."""

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * EXPANSION
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


@MODELS.register("resnet50")
def resnet50(*, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, width: int = 64,
             blocks: Sequence[int] = (3, 4, 6, 3)) -> CuttableModel:
    """ResNet-50, CIFAR variant: 3x3 stem without max-pool, 4 stages of bottleneck blocks, global pool, fc.

    He et al. 2016's ResNet-50 (stages of 3, 4, 6, 3 bottleneck blocks, widths 64-512, outputs
    256-2048) with the CIFAR stem of the widely used pytorch-cifar ResNet50: one stride-1 3x3
    conv, so stage 1 runs at the full 32x32; 23.5M parameters for 10 classes, 23.7M for 100.
    ``blocks`` = (3, 4, 23, 3) gives ResNet-101. Blocks: conv1, bn1, relu1 (stem),
    layer{stage}_{i} (one bottleneck each), pool, flatten, fc; the shallow cut is relu1.
    """
    c, _, _ = image_shape(input_shape, "resnet50", min_side=8)
    blocks = tuple(blocks)
    if width < 1 or len(blocks) != 4 or min(blocks) < 1:
        raise ConfigError(f"resnet50 needs width >= 1 and 4 positive stage depths, got width {width}, blocks {blocks}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(c, width, 3, padding=1, bias=False), bn1=nn.BatchNorm2d(width), relu1=nn.ReLU())
    c_in = width
    for stage, depth in enumerate(blocks, start=1):
        stage_width = width * 2 ** (stage - 1)
        for i in range(depth):
            layers[f"layer{stage}_{i}"] = Bottleneck(c_in, stage_width, stride=2 if stage > 1 and i == 0 else 1)
            c_in = stage_width * EXPANSION
    residual = [name for name in layers if name.startswith("layer")]
    layers.update(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(c_in, num_classes))
    return CuttableModel(layers, input_shape=input_shape, num_classes=num_classes,
                         shallow_cut="relu1", stage_ends=["relu1", *residual, "flatten"])

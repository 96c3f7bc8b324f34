"""The model zoo: every block a separately named layer, so users can cut after e.g. "relu1"."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from secsplit.errors import ConfigError
from secsplit.models.base import CuttableModel
from secsplit.registry import Registry

MODELS: Registry = Registry("model")


def _flat_size(blocks: OrderedDict, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(nn.Sequential(blocks)(torch.zeros(1, *input_shape)).numel())


def _image_shape(input_shape, model: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError(f"model {model!r} needs image inputs (C, H, W), got input_shape {tuple(input_shape)}")
    return tuple(input_shape)


@MODELS.register("mlp")
def mlp(*, input_shape, num_classes, hidden=(64, 32)) -> CuttableModel:
    """Multi-layer perceptron for tabular data (flattens images): fc-relu blocks, then a classifier."""
    if not hidden:
        raise ConfigError("mlp needs at least one hidden layer")
    blocks: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = int(torch.Size(input_shape).numel())
    for i, h in enumerate(hidden, start=1):
        blocks[f"fc{i}"] = nn.Linear(width, h)
        blocks[f"relu{i}"] = nn.ReLU()
        width = h
    last = len(hidden) + 1
    blocks[f"fc{last}"] = nn.Linear(width, num_classes)
    return CuttableModel(blocks, input_shape=input_shape, num_classes=num_classes,
                         default_cuts={1: ("relu1",), 2: ("relu1", f"relu{len(hidden)}")})


@MODELS.register("lenet")
def lenet(*, input_shape=(1, 28, 28), num_classes=10) -> CuttableModel:
    """LeNet-5-style MNIST network of UnSplit / He et al.: conv-conv-FC120-FC84-FC10.

    conv1 6x5x5 (padding 2, so 28x28 stays 28x28), 2x2 max-pool, conv2 16x5x5, 2x2 max-pool, then
    fully connected 120 and 84 and the classifier. Inputs smaller than 16x16 (digits, 8x8) get
    padding 2 on conv2 too, so both pools still fit.
    """
    c, h, w = _image_shape(input_shape, "lenet")
    small = min(h, w) < 16
    blocks: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(c, 6, 5, padding=2), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(6, 16, 5, padding=2 if small else 0), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(),
    )
    blocks.update(fc1=nn.Linear(_flat_size(blocks, input_shape), 120), relu3=nn.ReLU(),
                  fc2=nn.Linear(120, 84), relu4=nn.ReLU(), fc3=nn.Linear(84, num_classes))
    return CuttableModel(blocks, input_shape=input_shape, num_classes=num_classes,
                         default_cuts={1: ("pool1",), 2: ("pool1", "relu4"), 3: ("pool1", "pool2", "relu4")})


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-bn layers and a (projected) identity shortcut."""

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
def resnet(*, input_shape=(3, 32, 32), num_classes=10, width=16, blocks_per_stage=1) -> CuttableModel:
    """Small CIFAR-size ResNet (ResNet-8 by default: stem + 3 stages of basic blocks, widths w, 2w, 4w)."""
    c, _, _ = _image_shape(input_shape, "resnet")
    if width < 1 or blocks_per_stage < 1:
        raise ConfigError("resnet needs width >= 1 and blocks_per_stage >= 1")
    blocks: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(c, width, 3, padding=1, bias=False), bn1=nn.BatchNorm2d(width), relu1=nn.ReLU())
    c_in = width
    for stage, mult in enumerate((1, 2, 4), start=1):
        for i in range(blocks_per_stage):
            stride = 2 if stage > 1 and i == 0 else 1
            blocks[f"layer{stage}_{i}"] = BasicBlock(c_in, width * mult, stride)
            c_in = width * mult
    blocks.update(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(c_in, num_classes))
    return CuttableModel(blocks, input_shape=input_shape, num_classes=num_classes,
                         default_cuts={1: ("relu1",), 2: ("relu1", "flatten"), 3: ("relu1", "layer2_0", "flatten")})


VGG_CONFIGS = {"vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")}


@MODELS.register("vgg")
def vgg(*, input_shape=(3, 32, 32), num_classes=10, width_multiplier=0.25, config="vgg11") -> CuttableModel:
    """Small VGG (VGG-11 layout at a quarter of the width by default) with batch norm."""
    c, h, w = _image_shape(input_shape, "vgg")
    if config not in VGG_CONFIGS:
        raise ConfigError(f"unknown vgg config {config!r}; valid: {', '.join(VGG_CONFIGS)}")
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    size, conv, pool = min(h, w), 0, 0
    for item in VGG_CONFIGS[config]:
        if item == "M":
            if size >= 2:  # small inputs skip the pools that would shrink them below 1x1
                pool += 1
                blocks[f"pool{pool}"] = nn.MaxPool2d(2)
                size //= 2
            continue
        conv += 1
        out = max(1, int(item * width_multiplier))
        blocks.update({f"conv{conv}": nn.Conv2d(c, out, 3, padding=1, bias=False),
                       f"bn{conv}": nn.BatchNorm2d(out), f"relu{conv}": nn.ReLU()})
        c = out
    blocks.update(avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(c, num_classes))
    return CuttableModel(blocks, input_shape=input_shape, num_classes=num_classes,
                         default_cuts={1: ("pool1",), 2: ("pool1", "flatten"), 3: ("pool1", "pool3", "flatten")})

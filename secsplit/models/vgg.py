"""vgg: a narrow VGG with batch norm (VGG-11 layout at a quarter of the width by default)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from secsplit.errors import ConfigError
from secsplit.models import MODELS
from secsplit.models.base import CuttableModel, image_shape

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool (Simonyan & Zisserman 2015, table 1).
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


@MODELS.register("vgg")
def vgg(*, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, width_multiplier: float = 0.25,
        config: str = "vgg11") -> CuttableModel:
    """Small VGG with batch norm: conv-bn-relu blocks and max-pools, global pool, one linear classifier.

    Blocks: conv{i}, bn{i}, relu{i} per conv, pool{j} per pool, avgpool, flatten, fc. Channel
    counts are the config's times ``width_multiplier``. Pools that would shrink the map below 1x1
    are left out (an 8x8 input keeps 3 of VGG-11's 5 pools); the adaptive average pool before the
    classifier makes any input of at least 8x8 work.
    """
    c, h, w = image_shape(input_shape, "vgg", min_side=8)
    if config not in VGG_CONFIGS:
        raise ConfigError(f"unknown vgg config {config!r}; valid configs: {', '.join(VGG_CONFIGS)}")
    if width_multiplier <= 0:
        raise ConfigError(f"vgg needs width_multiplier > 0, got {width_multiplier}")
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    side, convs, pools = min(h, w), 0, []
    for item in VGG_CONFIGS[config]:
        if item == "M":
            if side >= 2:
                pools.append(f"pool{len(pools) + 1}")
                blocks[pools[-1]] = nn.MaxPool2d(2)
                side //= 2
            continue
        convs += 1
        out = max(1, round(item * width_multiplier))
        blocks.update({f"conv{convs}": nn.Conv2d(c, out, 3, padding=1, bias=False),
                       f"bn{convs}": nn.BatchNorm2d(out), f"relu{convs}": nn.ReLU()})
        c = out
    blocks.update(avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(c, num_classes))
    return CuttableModel(blocks, input_shape=input_shape, num_classes=num_classes,
                         shallow_cut="pool1", stage_ends=[*pools, "flatten"])

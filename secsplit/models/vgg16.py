"""vgg16: full-width VGG-16 with batch norm, CIFAR variant (the paper-scale VGG of the efficiency table)."""

from __future__ import annotations

from collections.abc import Sequence

from secsplit.models import MODELS
from secsplit.models.base import CuttableModel
from secsplit.models.vgg import vgg


@MODELS.register("vgg16")
def vgg16(*, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10) -> CuttableModel:
    """VGG-16 with batch norm, CIFAR variant: 13 full-width 3x3 convs, 5 pools, global pool, one linear layer.

    The usual CIFAR adaptation of Simonyan & Zisserman's configuration D (as in the widely used
    pytorch-cifar VGG16): the 4096-wide ImageNet classifier is replaced by a single 512 -> classes
    layer, 14.7M parameters for 10 classes. Same blocks and cut points as ``vgg``: conv{i}, bn{i},
    relu{i} per conv (13), pool{j} (5), avgpool, flatten, fc; the shallow cut is pool1 (after the
    first two convs); ``secsplit efficiency --paper`` cuts after relu1, the cut the paper's numbers imply.
    """
    return vgg(input_shape=input_shape, num_classes=num_classes, width_multiplier=1.0, config="vgg16")

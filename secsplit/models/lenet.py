"""lenet: the MNIST network of UnSplit (Erdogan et al., WPES 2022), a LeNet-5 variant."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from secsplit.models import MODELS
from secsplit.models.base import CuttableModel, flat_size, image_shape

# Below this side length the unpadded convolutions would shrink the map to nothing.
_UNPADDED_MIN_SIDE = 16


@MODELS.register("lenet")
def lenet(*, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> CuttableModel:
    """LeNet-5-style CNN of UnSplit: conv8-pool-conv16-pool-FC120-FC84-classifier.

    Matches ``MnistNet`` of UnSplit (github.com/ege-erdogan/unsplit, unsplit/models.py): conv1 8
    channels 5x5, ReLU, 2x2 max-pool, conv2 16 channels 5x5, ReLU, 2x2 max-pool, then fully
    connected 120, 84 and the classifier. On 28x28 the convolutions are unpadded, as in UnSplit
    (28 -> 24 -> 12 -> 8 -> 4, 256 features). Inputs smaller than 16x16 (e.g. 8x8 digits) get
    padding 2 on both convolutions so they keep their size (8 -> 8 -> 4 -> 4 -> 2, 64 features).
    The first linear layer is sized by a dummy forward.
    """
    c, h, w = image_shape(input_shape, "lenet", min_side=4)
    padding = 0 if min(h, w) >= _UNPADDED_MIN_SIDE else 2
    blocks: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(c, 8, 5, padding=padding), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(8, 16, 5, padding=padding), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(),
    )
    blocks.update(fc1=nn.Linear(flat_size(blocks, input_shape), 120), relu3=nn.ReLU(),
                  fc2=nn.Linear(120, 84), relu4=nn.ReLU(), fc3=nn.Linear(84, num_classes))
    return CuttableModel(blocks, input_shape=input_shape, num_classes=num_classes,
                         shallow_cut="pool1", stage_ends=["pool1", "pool2", "relu3", "relu4"])

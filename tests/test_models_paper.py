"""The paper-scale CIFAR models (vgg16, resnet50): architecture, cut points, a few split training steps.

Shapes and parameter counts are checked on the meta device (no memory, no time); the training
tests run a handful of steps on one tiny synthetic CIFAR-shaped batch.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.split import split
from secsplit.topologies import build_topology


def _meta(name, num_classes=10, **options):
    with torch.device("meta"):
        return create_model(name, input_shape=(3, 32, 32), num_classes=num_classes, seed=0, **options)


def _conv_params(c_in, c_out, k):
    return c_in * c_out * k * k


def test_vgg16_is_configuration_d_with_batch_norm_and_one_linear_classifier():
    model = _meta("vgg16")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    widths = [c.out_channels for c in convs]
    assert widths == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    ins = [3, *widths[:-1]]
    expected = sum(_conv_params(i, o, 3) + 2 * o for i, o in zip(ins, widths)) + 512 * 10 + 10  # convs, BN, fc
    assert sum(p.numel() for p in model.parameters()) == expected == 14_724_042
    assert model.cut_points[:4] == ["conv1", "bn1", "relu1", "conv2"]
    assert [c for c in model.cut_points if c.startswith("pool")] == [f"pool{i}" for i in range(1, 6)]
    assert model.suggested_cuts(1) == ("pool1",)


def test_resnet50_has_the_bottleneck_stages_and_parameter_count_of_the_cifar_variant():
    model = _meta("resnet50", num_classes=100)
    stages = [[n for n in model.cut_points if n.startswith(f"layer{s}_")] for s in (1, 2, 3, 4)]
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    assert model.layer1_0.conv3.out_channels == 256 and model.layer4_2.conv3.out_channels == 2048
    assert model.layer2_0.conv2.stride == (2, 2) and model.layer1_0.conv2.stride == (1, 1)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)  # CIFAR stem: no 7x7, no max-pool
    assert sum(p.numel() for p in model.parameters()) == 23_705_252  # 23,520,842 + 2048·90 + 90 for 100 classes
    assert sum(p.numel() for p in _meta("resnet50").parameters()) == 23_520_842
    assert model.suggested_cuts(3) == ("relu1", "layer3_0", "flatten")


@pytest.mark.parametrize("name,cut,q", [("vgg16", "relu1", 64 * 32 * 32), ("vgg16", "pool5", 512),
                                        ("resnet50", "relu1", 64 * 32 * 32), ("resnet50", "layer1_2", 256 * 32 * 32),
                                        ("resnet50", "layer3_5", 1024 * 8 * 8), ("resnet50", "layer4_2", 2048 * 4 * 4)])
def test_cut_sizes_on_the_meta_device(name, cut, q):
    model = _meta(name)
    head, tail = split(model, [cut])
    h = head(torch.empty(2, 3, 32, 32, device="meta"))
    assert h[0].numel() == q and tail(h).shape == (2, 10)


def test_bad_options_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="resnet50 needs width >= 1 and 4 positive stage depths"):
        create_model("resnet50", input_shape=(3, 32, 32), num_classes=10, blocks=(3, 4, 6))
    with pytest.raises(ConfigError, match="bad options for model 'vgg16'"):
        create_model("vgg16", input_shape=(3, 32, 32), num_classes=10, width_multiplier=0.5)
    with pytest.raises(ConfigError, match="'resnet50' needs image inputs"):
        create_model("resnet50", input_shape=(30,), num_classes=10)


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_split_training_steps_fit_a_tiny_cifar_batch(name):
    """A few vanilla split steps (client up to the shallow cut, server the rest) drive the loss down."""
    torch.manual_seed(0)
    model = create_model(name, input_shape=(3, 32, 32), num_classes=10, seed=0)
    topology = build_topology("vanilla", model, optimizer=OptimizerSpec("adam", lr=1e-3))
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("conv1")}
    losses = [topology.train_step(x, y, step=i).loss for i in range(3)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0], losses
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)  # client trained
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(x), y).isfinite()

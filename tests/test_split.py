"""split(): exact composition, shared parameters, named segments, clear errors on bad cuts."""

import itertools

import pytest
import torch
from torch import nn

from secsplit.errors import ConfigError, UnknownNameError
from secsplit.models import create_model
from secsplit.split import split

CASES = [("mlp", (30,)), ("mlp", (1, 8, 8)), ("lenet", (1, 28, 28)), ("lenet", (1, 8, 8)),
         ("resnet", (3, 32, 32)), ("vgg", (3, 32, 32))]


def _compose(segments, x):
    for segment in segments:
        x = segment(x)
    return x


@pytest.fixture
def lenet():
    return create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=0)


@pytest.mark.parametrize("name,shape", CASES)
def test_segments_compose_to_the_model_exactly(name, shape):
    model = create_model(name, input_shape=shape, num_classes=5, seed=1).eval()
    x = torch.rand(4, *shape)
    expected = model(x)
    points = model.cut_points
    combos = [model.suggested_cuts(n) for n in (1, 2, 3)]
    combos += [[points[0]], [points[-1]], points[::2], points]
    for cuts in combos:
        segments = split(model, cuts)
        assert len(segments) == len(cuts) + 1
        assert torch.equal(_compose(segments, x), expected), cuts


def test_segments_compose_exactly_in_train_mode_too():
    model = create_model("resnet", input_shape=(3, 32, 32), num_classes=10, seed=0).train()
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(_compose(split(model, ["relu1", "layer2_0", "flatten"]), x), model(x))


def test_every_single_and_pair_of_lenet_cuts_composes_exactly(lenet):
    x = torch.rand(2, 1, 28, 28)
    expected = lenet(x)
    for cut in lenet.cut_points:
        head, tail = split(lenet, [cut])
        assert torch.equal(tail(head(x)), expected), cut
    for cuts in itertools.combinations(lenet.cut_points, 2):
        assert torch.equal(_compose(split(lenet, cuts), x), expected), cuts


def test_segments_share_parameters_with_the_model(lenet):
    head, tail = split(lenet, ["pool1"])
    before = lenet.conv1.weight.detach().clone()
    with torch.no_grad():
        head.conv1.weight.add_(1.0)
    assert torch.equal(lenet.conv1.weight, before + 1.0)
    assert head.conv1 is lenet.conv1 and tail.fc3 is lenet.fc3
    tail(head(torch.rand(2, 1, 28, 28))).sum().backward()
    assert lenet.conv1.weight.grad is not None and lenet.fc3.weight.grad is not None


def test_segments_are_sequentials_of_the_named_blocks(lenet):
    head, body, tail = split(lenet, ["pool1", "relu4"])
    assert all(type(s) is nn.Sequential for s in (head, body, tail))
    assert list(head._modules) == ["conv1", "relu1", "pool1"] and head[0] is lenet.conv1
    assert list(tail._modules) == ["fc3"]
    assert sum(len(s) for s in (head, body, tail)) == len(lenet)


def test_no_cuts_gives_one_segment_and_a_single_name_is_accepted(lenet):
    (whole,) = split(lenet, [])
    assert list(whole._modules) == list(lenet._modules)
    assert [list(s._modules)[-1] for s in split(lenet, "pool1")] == ["pool1", "fc3"]


def test_unknown_cut_lists_the_valid_cut_points(lenet):
    valid = "conv1, relu1, pool1, conv2, relu2, pool2, flatten, fc1, relu3, fc2, relu4"
    with pytest.raises(UnknownNameError) as error:
        split(lenet, ["conv9"])
    assert str(error.value) == f"unknown cut point 'conv9'; valid cut points: {valid}"
    with pytest.raises(UnknownNameError, match="unknown cut point 'fc3'"):  # the output layer is no cut point
        split(lenet, ["pool1", "fc3"])


def test_out_of_order_and_repeated_cuts_are_rejected(lenet):
    with pytest.raises(ConfigError, match=r"forward order, got \['pool2', 'pool1'\]; valid cut points in order: conv1"):
        split(lenet, ["pool2", "pool1"])
    with pytest.raises(ConfigError, match=r"must not repeat, got \['pool1', 'pool1'\]"):
        split(lenet, ["pool1", "pool1"])


def test_split_needs_a_cuttable_model():
    with pytest.raises(ConfigError, match="needs a CuttableModel .* got Sequential"):
        split(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), ["0"])

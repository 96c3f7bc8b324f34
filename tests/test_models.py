"""Model zoo and split(): shapes, cut points, exact composition, shared parameters, clear errors."""

import pytest
import torch

from secsplit.errors import ConfigError, UnknownNameError
from secsplit.models import CuttableModel, create_model, list_models
from secsplit.split import split

CASES = [("mlp", (30,)), ("mlp", (1, 8, 8)), ("lenet", (1, 28, 28)), ("lenet", (1, 8, 8)),
         ("resnet", (3, 32, 32)), ("vgg", (3, 32, 32)), ("vgg", (1, 8, 8))]


@pytest.mark.parametrize("name,shape", CASES)
def test_forward_shape_and_described_cuts_match_real_segments(name, shape):
    model = create_model(name, input_shape=shape, num_classes=7, seed=0).eval()
    x = torch.rand(3, *shape)
    assert model(x).shape == (3, 7)
    for cut, cut_shape in model.describe_cuts():
        head, _ = split(model, [cut])
        assert tuple(head(x).shape[1:]) == cut_shape, cut


@pytest.mark.parametrize("name,shape", CASES)
def test_segments_compose_to_the_model_exactly(name, shape):
    model = create_model(name, input_shape=shape, num_classes=5, seed=1).eval()
    x = torch.rand(4, *shape)
    expected = model(x)
    for n in (1, 2, 3):
        h = x
        for segment in split(model, model.suggested_cuts(n)):
            h = segment(h)
        assert torch.equal(h, expected)


def test_every_single_lenet_cut_composes_exactly():
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=0)
    x = torch.rand(2, 1, 28, 28)
    for cut in model.cut_points:
        head, tail = split(model, [cut])
        assert torch.equal(tail(head(x)), model(x))
    assert model.cut_points[:3] == ["conv1", "relu1", "pool1"]


def test_segments_share_parameters_with_the_model():
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=0)
    head, _ = split(model, ["pool1"])
    with torch.no_grad():
        head.conv1.weight.add_(1.0)
    assert torch.equal(head.conv1.weight, model.conv1.weight)


def test_bad_cuts_are_clear_errors():
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=0)
    with pytest.raises(UnknownNameError, match="unknown cut point 'conv9'; valid cut points: conv1, relu1, pool1"):
        split(model, ["conv9"])
    with pytest.raises(ConfigError, match="distinct and in forward order"):
        split(model, ["pool2", "pool1"])
    with pytest.raises(ConfigError, match="distinct and in forward order"):
        split(model, ["pool1", "pool1"])
    with pytest.raises(UnknownNameError, match="fc3"):  # the output layer is no cut point
        split(model, ["fc3"])
    with pytest.raises(ConfigError, match="needs a CuttableModel"):
        split(torch.nn.Linear(2, 2), ["x"])


def test_seeded_models_are_reproducible_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = create_model("vgg", input_shape=(3, 32, 32), num_classes=10, seed=5)
    b = create_model("vgg", input_shape=(3, 32, 32), num_classes=10, seed=5)
    c = create_model("vgg", input_shape=(3, 32, 32), num_classes=10, seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_registry_and_option_errors():
    assert {"mlp", "lenet", "resnet", "vgg"} <= {n for n, _ in list_models()}
    with pytest.raises(UnknownNameError, match="unknown model 'gpt'; valid names: lenet, mlp, resnet, vgg"):
        create_model("gpt", input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ConfigError, match="needs image inputs"):
        create_model("lenet", input_shape=(30,), num_classes=2)
    with pytest.raises(ConfigError, match="bad options for model 'mlp'"):
        create_model("mlp", input_shape=(30,), num_classes=2, depth=3)
    assert isinstance(create_model("resnet", input_shape=(3, 16, 16), num_classes=3), CuttableModel)


def test_suggested_cuts_are_valid_and_ordered():
    for name, shape in CASES:
        model = create_model(name, input_shape=shape, num_classes=3, seed=0)
        for n in (1, 2, 3):
            cuts = model.suggested_cuts(n)
            positions = [model.cut_points.index(c) for c in cuts]
            assert len(cuts) == n and positions == sorted(set(positions))

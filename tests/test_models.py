"""Model zoo: shapes, cut points, suggested cuts, seeded initialisation, clear errors."""

import pytest
import torch
from torch import nn

from secsplit.errors import ConfigError, UnknownNameError
from secsplit.models import MODELS, CuttableModel, create_model, list_models
from secsplit.split import split

CASES = [("mlp", (30,)), ("mlp", (1, 8, 8)), ("lenet", (1, 28, 28)), ("lenet", (1, 8, 8)),
         ("resnet", (3, 32, 32)), ("resnet", (3, 8, 8)), ("vgg", (3, 32, 32)), ("vgg", (1, 8, 8))]


@pytest.mark.parametrize("name,shape", CASES)
def test_forward_gives_one_logit_per_class(name, shape):
    model = create_model(name, input_shape=shape, num_classes=7, seed=0)
    assert model.input_shape == shape and model.num_classes == 7
    assert model(torch.rand(3, *shape)).shape == (3, 7)


@pytest.mark.parametrize("name,shape", CASES)
def test_described_cut_shapes_match_real_segment_outputs(name, shape):
    model = create_model(name, input_shape=shape, num_classes=7, seed=0).eval()
    described = model.describe_cuts()
    assert [cut for cut, _ in described] == model.cut_points
    h = torch.rand(3, *shape)
    for segment, (cut, cut_shape) in zip(split(model, model.cut_points), described):
        h = segment(h)
        assert tuple(h.shape[1:]) == cut_shape, cut


def test_describe_cuts_leaves_train_mode_and_batchnorm_statistics_alone():
    model = create_model("resnet", input_shape=(3, 32, 32), num_classes=10, seed=0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.describe_cuts()
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_cut_points_are_every_block_but_the_last():
    lenet = create_model("lenet", input_shape=(1, 28, 28), num_classes=10)
    assert lenet.cut_points == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
                                "fc1", "relu3", "fc2", "relu4"]
    assert create_model("mlp", input_shape=(30,), num_classes=2).cut_points == ["flatten", "fc1", "relu1", "fc2", "relu2"]
    resnet = create_model("resnet", input_shape=(3, 32, 32), num_classes=10, blocks_per_stage=3)
    assert resnet.cut_points == ["conv1", "bn1", "relu1", *[f"layer{s}_{i}" for s in (1, 2, 3) for i in range(3)],
                                 "pool", "flatten"]
    vgg = create_model("vgg", input_shape=(3, 32, 32), num_classes=10)
    assert vgg.cut_points[:4] == ["conv1", "bn1", "relu1", "pool1"] and vgg.cut_points[-2:] == ["avgpool", "flatten"]
    assert [n for n in vgg.cut_points if n.startswith("pool")] == [f"pool{i}" for i in range(1, 6)]


def test_lenet_is_the_unsplit_mnist_network():
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10)
    assert (model.conv1.out_channels, model.conv1.kernel_size, model.conv1.padding) == (8, (5, 5), (0, 0))
    assert (model.conv2.out_channels, model.conv2.kernel_size, model.conv2.padding) == (16, (5, 5), (0, 0))
    assert [(m.in_features, m.out_features) for m in (model.fc1, model.fc2, model.fc3)] == [(256, 120), (120, 84), (84, 10)]
    assert sum(p.numel() for p in model.parameters()) == 45_278


def test_lenet_pads_small_images_so_both_pools_fit():
    shapes = dict(create_model("lenet", input_shape=(1, 8, 8), num_classes=10).describe_cuts())
    assert shapes["conv1"] == (8, 8, 8) and shapes["pool2"] == (16, 2, 2) and shapes["flatten"] == (64,)


def test_vgg_drops_pools_that_would_shrink_small_images_below_one_pixel():
    shapes = dict(create_model("vgg", input_shape=(1, 8, 8), num_classes=10).describe_cuts())
    assert [shapes[f"pool{i}"][1:] for i in (1, 2, 3)] == [(4, 4), (2, 2), (1, 1)] and "pool4" not in shapes


@pytest.mark.parametrize("name,shape", CASES)
def test_suggested_cuts_are_valid_ordered_and_keep_the_classifier_for_ushape(name, shape):
    model = create_model(name, input_shape=shape, num_classes=3, seed=0)
    for n in (1, 2, 3):
        cuts = model.suggested_cuts(n)
        positions = [model.cut_points.index(c) for c in cuts]
        assert len(cuts) == n and positions == sorted(set(positions))
        assert cuts[0] == model.suggested_cuts(1)[0]
    assert model.suggested_cuts(2)[-1] == model.cut_points[-1]


def test_suggested_cuts_per_model():
    def cuts(name, shape, n, **options):
        return create_model(name, input_shape=shape, num_classes=10, **options).suggested_cuts(n)

    assert [cuts("lenet", (1, 28, 28), n) for n in (1, 2, 3, 4)] == [
        ("pool1",), ("pool1", "relu4"), ("pool1", "pool2", "relu4"), ("pool1", "pool2", "relu3", "relu4")]
    assert cuts("mlp", (30,), 2) == ("relu1", "relu2")
    assert cuts("resnet", (3, 32, 32), 3) == ("relu1", "layer2_0", "flatten")
    assert cuts("vgg", (3, 32, 32), 3) == ("pool1", "pool3", "flatten")


def test_suggested_cuts_reject_impossible_counts():
    lenet = create_model("lenet", input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ConfigError, match="at most 9 suggested cut"):
        lenet.suggested_cuts(10)
    with pytest.raises(ConfigError, match=">= 1"):
        lenet.suggested_cuts(0)
    with pytest.raises(ConfigError, match="at most 1 suggested cut"):  # shallow cut is already the last cut point
        create_model("mlp", input_shape=(30,), num_classes=2, hidden=(16,)).suggested_cuts(2)


@pytest.mark.parametrize("name,shape", CASES[::2] + [CASES[-1]])
def test_seeded_models_are_reproducible_and_leave_the_global_rng_alone(name, shape):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b, c = (create_model(name, input_shape=shape, num_classes=10, seed=s) for s in (5, 5, 6))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_unknown_model_name_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match="unknown model 'gpt'; valid names: lenet, mlp, resnet, resnet50, vgg, vgg16"):
        create_model("gpt", input_shape=(1, 28, 28), num_classes=10)


def test_bad_shapes_and_options_are_config_errors():
    with pytest.raises(ConfigError, match="'lenet' needs image inputs"):
        create_model("lenet", input_shape=(30,), num_classes=2)
    with pytest.raises(ConfigError, match="at least 8x8"):
        create_model("resnet", input_shape=(3, 4, 4), num_classes=2)
    with pytest.raises(ConfigError, match="bad options for model 'mlp': depth; valid options: hidden"):
        create_model("mlp", input_shape=(30,), num_classes=2, depth=3)
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("mlp", input_shape=(30,), num_classes=1)
    with pytest.raises(ConfigError, match="input_shape"):
        create_model("mlp", input_shape=30, num_classes=2)
    with pytest.raises(ConfigError, match="unknown vgg config"):
        create_model("vgg", input_shape=(3, 32, 32), num_classes=2, config="vgg99")


def test_list_models_gives_a_one_line_description_per_registered_model():
    listed = dict(list_models())
    assert sorted(listed) == MODELS.names() == ["lenet", "mlp", "resnet", "resnet50", "vgg", "vgg16"]
    assert all(description and "\n" not in description for description in listed.values())


def test_options_change_the_architecture():
    assert create_model("mlp", input_shape=(30,), num_classes=2, hidden=(8, 8, 8)).fc4.in_features == 8
    wide = create_model("vgg", input_shape=(3, 32, 32), num_classes=2, width_multiplier=0.5)
    assert wide.conv1.out_channels == 32
    assert create_model("resnet", input_shape=(3, 32, 32), num_classes=2, width=8).fc.in_features == 32


def test_slicing_a_model_gives_a_plain_sequential_of_named_blocks():
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10)
    head = model[0:3]
    assert type(head) is nn.Sequential and list(head._modules) == ["conv1", "relu1", "pool1"]
    assert head[0] is model.conv1 and isinstance(model, CuttableModel)

"""FORA: a passive server with unlabeled auxiliary images and the client's architecture (no weights, no
queries) reconstructs held-out digits far better than the mean image; the substitute is its own."""

import pytest
import torch
from secsplit.attacks import NotApplicable, create_attack
from secsplit.attacks.reconstruction_fora import mmd2
from secsplit.evaluation.metrics import mse, ssim

from secsplit.data import load_dataset
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_fora_reconstructs_held_out_digits_better_than_the_mean_image(digits):
    model = create_model("lenet", input_shape=digits.input_shape, num_classes=10, seed=0)
    topology = build_topology("vanilla", model, cuts=["relu2"])
    targets = digits.x_test[-32:]
    attack = create_attack("fora", targets=targets, aux_size=500)
    attack.check_applicable(topology, digits)
    Trainer(topology, epochs=3, batch_size=64, seed=0, callbacks=[attack]).fit(digits)
    result = attack.result()
    mean = digits.x_train.mean(0, keepdim=True).expand_as(targets)
    # measured (seed 0, 1,000 auxiliary images): SSIM 0.87 against the mean image's 0.55
    assert ssim(result.reconstructions, targets, data_range=1.0) > ssim(mean, targets, data_range=1.0) + 0.15
    assert mse(result.reconstructions, targets) < 0.8 * mse(mean, targets)
    assert result.info["substitute_steps"] == 3 * 23 * attack.steps_per_batch
    client = {id(p) for p in topology.segments[0].parameters()}
    for net in (attack.substitute, attack.critic, attack.decoder):
        assert not client & {id(p) for p in net.parameters()}


def test_mmd_separates_distributions_and_vanishes_on_one():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 16, generator=gen), torch.randn(64, 16, generator=gen)
    assert mmd2(a, b) < 0.1 * mmd2(a, b + 3.0)


def test_fora_threat_model_and_applicability(digits):
    attack = create_attack("fora")
    assert attack.threat_model.knows == ("client-architecture", "auxiliary-data")
    assert attack.threat_model.behaviour == "honest-but-curious"
    model = create_model("lenet", input_shape=digits.input_shape, num_classes=10, seed=0)
    with pytest.raises(NotApplicable):
        attack.check_applicable(build_topology("multihop", model), digits)
    with pytest.raises(ConfigError):
        create_attack("fora", mmd_weight=0.0, adv_weight=0.0)

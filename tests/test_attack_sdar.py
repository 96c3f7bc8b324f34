"""SDAR: a passive server with labeled auxiliary data reconstructs held-out digits far better than the
mean image, infers U-shape labels, never touches the client's weights, and says where it does not apply."""

import pytest
import torch
from secsplit.attacks import NotApplicable, create_attack
from secsplit.evaluation.metrics import mse, ssim

from secsplit.data import load_dataset
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _run(data, topology_name, epochs, n_targets=32, **params):
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=0)
    topology = build_topology(topology_name, model, optimizer=OptimizerSpec("adam", lr=3e-3))
    targets = data.x_test[-n_targets:]
    attack = create_attack("sdar", targets=targets, max_targets=n_targets, aux_size=500, **params)
    attack.check_applicable(topology, data)
    Trainer(topology, epochs=epochs, batch_size=64, seed=0, callbacks=[attack]).fit(data)
    return topology, attack, attack.result(), targets


@pytest.fixture(scope="module")
def ushape(digits):
    return _run(digits, "ushape", 4, n_targets=64, steps_per_batch=1)


def test_sdar_reconstructs_held_out_digits_better_than_the_mean_image(digits):
    _, attack, result, targets = _run(digits, "vanilla", 3, steps_per_batch=1)
    mean = digits.x_train.mean(0, keepdim=True).expand_as(targets)
    score, error = ssim(result.reconstructions, targets, data_range=1.0), mse(result.reconstructions, targets)
    # the data-free control: the mean training image
    assert score > ssim(mean, targets, data_range=1.0) + 0.15
    assert error < 0.7 * mse(mean, targets)
    assert result.info["sdar_steps"] == 3 * 23 * attack.steps_per_batch
    assert result.label_scores is None  # vanilla: no label inference reported


def test_sdar_infers_ushape_labels_from_the_server_seat(ushape):
    _, _, result, _ = ushape
    scores = result.scores()
    truth = result.true_labels
    chance = float(torch.bincount(truth).max()) / len(truth)
    # measured with all networks at 1e-3 (seed 0, 4 epochs, steps_per_batch=1): 0.81, majority class 0.16; 25 epochs: benchmarks/README.md
    assert scores["label_accuracy"] > 0.7 and scores["label_accuracy"] > chance + 0.5
    assert result.info["ushape"] is True


def test_sdar_never_reads_the_client_weights(ushape):
    topology, attack, _, _ = ushape
    client = {id(p) for s in (topology.segments[0], topology.segments[2]) for p in s.parameters()}
    for net in (attack.simulator, attack.tail, attack.decoder, attack.critic_z, attack.critic_x):
        assert not client & {id(p) for p in net.parameters()}
    # the simulator has the client's architecture but its own weights
    own = dict(attack.simulator.named_parameters())
    assert any(not torch.equal(p.detach().cpu(), own[n].detach().cpu()) for n, p in topology.segments[0].named_parameters())
    assert attack.threat_model.behaviour == "honest-but-curious" and attack.threat_model.attacker == "server"
    assert "client-weights" not in attack.threat_model.knows


def test_sdar_applicability(digits):
    model = create_model("lenet", input_shape=digits.input_shape, num_classes=10, seed=0)
    with pytest.raises(NotApplicable):
        create_attack("sdar").check_applicable(build_topology("multihop", model), digits)
    table = load_dataset("breast-cancer", seed=0)
    mlp = create_model("mlp", input_shape=table.input_shape, num_classes=2, seed=0)
    with pytest.raises(NotApplicable, match="tabular"):
        create_attack("sdar").check_applicable(build_topology("vanilla", mlp), table)
    with pytest.raises(ConfigError):
        create_attack("sdar", auxiliary=digits.x_train[:10])  # images without their labels
    with pytest.raises(ConfigError):
        create_attack("sdar", steps_per_batch=0)
    with pytest.raises(ConfigError, match="flip_rate"):
        create_attack("sdar", flip_rate=1.0)
    with pytest.raises(ConfigError):
        create_attack("sdar", critic_lr=0)

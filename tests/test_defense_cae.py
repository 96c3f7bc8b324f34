"""CAE / DCAE: the confuser hides and recovers labels, training decodes, gradients are confused or discretized."""

import pytest
import torch

from secsplit.attacks import create_attack
from secsplit.data import load_dataset
from secsplit.defenses import create_defense
from secsplit.defenses.cae import discretize, train_confuser
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


@pytest.mark.parametrize("classes", [2, 10])
def test_confuser_fake_labels_are_confused_yet_decodable(classes):
    cae = train_confuser(classes, lambda1=0.0, lambda2=4.0, steps=1000, lr=0.02, seed=0)
    eye = torch.eye(classes)
    fake = cae.encoder(eye)
    entropy = -(fake * torch.log(fake + 1e-12)).sum(1)
    assert float(entropy.min()) > 0.9 * torch.log(torch.tensor(float(classes)))  # close to uniform
    assert torch.equal(cae.decoder(fake).argmax(1), torch.arange(classes))


def _cosine_auc(defense):
    data = load_dataset("breast-cancer-imbalanced", seed=0)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=2, seed=0)
    topo = build_topology("vanilla", model, label_source="label_owner")
    attack = create_attack("cosine-attack", dataset=data)
    report = Trainer(topo, epochs=3, batch_size=32, callbacks=[*([defense] if defense else []), attack]).fit(data)
    return attack.result().scores()["leak_auc"], report.summary["test_accuracy"]


def test_cae_lowers_the_cosine_attack_and_keeps_decoded_accuracy():
    plain_auc, plain_acc = _cosine_auc(None)
    cae_auc, cae_acc = _cosine_auc(create_defense("cae"))
    assert cae_auc < plain_auc - 0.1, (plain_auc, cae_auc)
    assert cae_acc > 0.85  # predictions are decoded at inference


def test_training_targets_are_soft_fake_labels_of_the_label_owner():
    data = load_dataset("digits", seed=0)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=10, seed=0)
    topo = build_topology("vanilla", model)
    cae = create_defense("cae")
    Trainer(topo, epochs=0, callbacks=[cae])
    soft = cae.transform_labels(torch.tensor([0, 3]), party=topo.label_owner, step=0)
    assert soft.shape == (2, 10) and torch.allclose(soft.sum(1), torch.ones(2))
    assert torch.equal(cae.transform_labels(torch.tensor([1]), party="client", step=0), torch.tensor([1]))


def test_dcae_rounds_returned_gradients_to_few_levels():
    g = torch.randn(16, 8)
    out = discretize(g, 12)
    assert len(torch.unique(out)) <= 13
    assert float((out - g).abs().max()) <= float(g.abs().max()) / 12 + 1e-6
    assert create_defense("dcae").bins == 12
    with pytest.raises(ConfigError):
        create_defense("dcae", bins=0)

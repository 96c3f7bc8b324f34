"""Direct label scoring: exact at the logits, near-exact through an unknown linear classifier (vanilla
cut before the classifier, U-shape server seat), at chance on label-free gradients."""

import numpy as np
import pytest
import torch
from secsplit.attacks import NotApplicable, create_attack

from secsplit.data import load_dataset
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _attack(data, topology_name, cuts, attacker, epochs=1):
    net = create_model("lenet", input_shape=data.input_shape, num_classes=data.num_classes, seed=0)
    extra = {"label_source": "label_owner"} if topology_name == "vanilla" else {}
    topology = build_topology(topology_name, net, cuts=cuts, optimizer=OptimizerSpec(), **extra)
    attack = create_attack("direct-label", attacker=attacker)
    attack.check_applicable(topology, data)
    Trainer(topology, epochs=epochs, batch_size=64, seed=0, callbacks=[attack]).fit(data)
    return attack


def test_direct_label_through_the_unknown_classifier_from_the_client_seat(digits):
    attack = _attack(digits, "vanilla", ["relu4"], "client")
    for row in attack.per_epoch:  # measured: 1.00; chance 0.10
        assert row["regime"] == "subspace" and row["explained_variance"] > 0.95
        assert row["accuracy"] > 0.95 and row["accuracy"] > row["chance_accuracy"] + 0.8
    scores = attack.result().scores()
    assert scores["label_accuracy"] == pytest.approx(attack.per_epoch[-1]["accuracy"])


def test_direct_label_from_the_server_seat_of_ushape(digits):
    attack = _attack(digits, "ushape", None, "server")
    assert attack.threat_model.attacker == "server"
    assert all(row["accuracy"] > 0.95 for row in attack.per_epoch)


def test_direct_label_is_exact_at_the_logits_and_at_chance_on_label_free_gradients(digits):
    attack = create_attack("direct-label", dataset=digits)
    rng = np.random.default_rng(0)
    index = torch.arange(256)
    y = digits.y_train[index]
    p = torch.softmax(torch.as_tensor(rng.normal(size=(256, 10))), 1)
    logit_grad = (p - torch.nn.functional.one_hot(y, 10)) / 256
    assert attack.score_epoch(1, [logit_grad], [index])["accuracy"] == 1.0  # the sign pattern, no knowledge
    attack.regime = "subspace"
    noise = torch.as_tensor(rng.normal(size=(256, 84)))  # label-independent "gradients": the control
    row = attack.score_epoch(1, [noise], [index])
    assert row["accuracy"] < row["chance_accuracy"] + 0.15


def test_direct_label_applicability_and_options(digits):
    net = create_model("lenet", input_shape=digits.input_shape, num_classes=10, seed=0)
    with pytest.raises(NotApplicable, match="label owner is the attacker"):
        create_attack("direct-label").check_applicable(build_topology("ushape", net), digits)
    with pytest.raises(ConfigError):
        create_attack("direct-label", regime="sign")
    with pytest.raises(ConfigError):
        create_attack("direct-label", attacker="eavesdropper")

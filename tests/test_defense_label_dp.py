"""Label DP by randomized response: the keep probability, flip statistics, epsilon, where it acts."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from secsplit.callbacks import Callback
from secsplit.data import load_dataset
from secsplit.defenses import create_defense, defense_from_spec
from secsplit.defenses.label_dp import keep_probability, randomized_response
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


@pytest.mark.parametrize("epsilon,k", [(1.0, 2), (1.0, 10), (0.1, 4), (3.0, 3), (10.0, 5)])
def test_keep_probability_is_the_randomized_response_formula(epsilon, k):
    q = keep_probability(epsilon, k)
    assert q == pytest.approx(math.exp(epsilon) / (math.exp(epsilon) + k - 1), rel=1e-12)
    # the output distribution's largest likelihood ratio between two true labels is exactly e^eps
    other = (1 - q) / (k - 1)
    assert math.log(q / other) == pytest.approx(epsilon, rel=1e-9)
    assert keep_probability(math.inf, k) == 1.0


@pytest.mark.parametrize("epsilon,k", [(1.0, 4), (0.5, 2), (2.0, 10)])
def test_flip_rate_and_flipped_labels_are_as_specified(epsilon, k):
    n = 40_000
    y = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(1))
    out = randomized_response(y, epsilon=epsilon, num_classes=k, generator=torch.Generator().manual_seed(2))
    flipped = out != y
    expected = 1 - keep_probability(epsilon, k)
    assert stats.binomtest(int(flipped.sum()), n, expected).pvalue > 1e-3
    if k > 2:  # a flipped label is uniform over the K-1 other classes
        offsets = ((out[flipped] - y[flipped]) % k).numpy()
        counts = np.bincount(offsets, minlength=k)
        assert counts[0] == 0
        assert stats.chisquare(counts[1:]).pvalue > 1e-3


def _attach(defense, *, classes=3, label_owner="server"):
    topology = SimpleNamespace(label_owner=label_owner, data_owner="client", num_classes=classes)
    defense.on_setup(SimpleNamespace(topology=topology))
    return defense


def test_acts_only_at_the_label_owner_seeded_and_never_in_place():
    defense = _attach(create_defense("label-dp", epsilon=0.5, seed=4))
    assert defense.num_classes == 3
    y = torch.randint(0, 3, (20_000,), generator=torch.Generator().manual_seed(0))
    y_copy = y.clone()
    assert defense.transform_labels(y, party="client", step=0) is y
    out = defense.transform_labels(y, party="server", step=0)
    assert torch.equal(y, y_copy) and not torch.equal(out, y)
    again = _attach(create_defense("label-dp", epsilon=0.5, seed=4)).transform_labels(y, party="server", step=0)
    assert torch.equal(out, again)
    assert defense.report()["flip_rate"] == pytest.approx(1 - keep_probability(0.5, 3), abs=0.015)  # 4 sigma


def test_num_classes_from_the_model_or_checked_against_it():
    with pytest.raises(ConfigError, match="num_classes=4 but the model has 3 outputs"):
        _attach(create_defense("label-dp", num_classes=4), classes=3)
    with pytest.raises(ConfigError, match="must be attached through a Trainer"):
        create_defense("label-dp").transform_labels(torch.zeros(3, dtype=torch.long), party="server", step=0)
    with pytest.raises(ConfigError, match="labels outside 0..1"):
        _attach(create_defense("label-dp"), classes=2).transform_labels(torch.tensor([0, 2]), party="server", step=0)


def test_epsilon_report_per_label_and_over_epochs():
    defense = defense_from_spec("label-dp:eps=1.5,k=2")
    assert defense.epsilon()["per_label"] == 1.5 and defense.epsilon()["composed"] == 1.5
    for epoch in (1, 2, 3):
        defense.on_epoch_end(epoch=epoch, metrics={})
    report = defense.report()
    assert report["epsilon"]["uses"] == 3 and report["epsilon"]["composed"] == pytest.approx(4.5)
    assert report["params"] == {"epsilon": 1.5, "num_classes": 2, "seed": 0}


@pytest.mark.parametrize("kwargs,message", [
    ({"epsilon": 0.0}, "epsilon must be a positive number"),
    ({"epsilon": -1.0}, "epsilon must be a positive number"),
    ({"num_classes": 1}, "num_classes must be an int >= 2"),
])
def test_bad_label_dp_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_defense("label-dp", **kwargs)


class _LossLabels(Callback):
    """Sees the labels after label-dp (it runs later in the callback list)."""

    def __init__(self):
        self.flips = self.total = 0
        self.last_true = None

    def transform_labels(self, y, *, party, step):
        self.flips += int((y != self.last_true).sum())
        self.total += len(y)
        return y


def test_training_uses_noisy_labels_but_reports_accuracy_on_true_ones():
    data = load_dataset("synthetic", seed=0, n_samples=512, num_classes=3, n_features=10)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=3, seed=0, hidden=(16,))
    topo = build_topology("vanilla", model, label_source="label_owner")
    defense = create_defense("label-dp", epsilon=2.0, seed=0)
    spy = _LossLabels()

    class TrueLabels(Callback):
        def transform_labels(self, y, *, party, step):
            spy.last_true = y.clone()
            return y

    report = Trainer(topo, batch_size=64, epochs=4, callbacks=[TrueLabels(), defense, spy]).fit(data)
    assert spy.total == 4 * len(data.x_train)
    assert spy.flips / spy.total == pytest.approx(1 - keep_probability(2.0, 3), abs=0.04)
    assert defense.epsilon()["composed"] == pytest.approx(8.0)
    assert report.summary["test_accuracy"] > 0.8  # RR noise at eps=2 (keep prob 0.79) still learns

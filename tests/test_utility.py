"""Split models reach useful accuracy on the embedded data sets (the README records these runs)."""

import pytest

from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def _train(dataset_name, model_name, topology, epochs, batch_size=64, seed=0):
    data = load_dataset(dataset_name, seed=seed)
    model = create_model(model_name, input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)
    topo = build_topology(topology, model)
    return Trainer(topo, epochs=epochs, batch_size=batch_size, seed=seed, progress=False).fit(data)


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["vanilla", "ushape"])
def test_mnist_lenet_reaches_95_percent_within_10_epochs(topology):
    report = _train("mnist", "lenet", topology, epochs=10)
    assert max(row["test_accuracy"] for row in report.history) >= 0.95
    assert report.summary["test_accuracy"] >= 0.95


@pytest.mark.slow
def test_digits_mlp_reaches_95_percent():
    assert _train("digits", "mlp", "vanilla", epochs=30, batch_size=32).summary["test_accuracy"] >= 0.95


@pytest.mark.slow
def test_breast_cancer_mlp_reaches_95_percent_on_average_over_splits():
    """114 test samples make one split's accuracy coarse (1 sample = 0.9%), so average 5 seeded splits."""
    accuracies = [_train("breast-cancer", "mlp", "ushape", epochs=30, batch_size=32, seed=s).summary["test_accuracy"]
                  for s in range(5)]
    assert sum(accuracies) / len(accuracies) >= 0.95
    assert min(accuracies) >= 0.93

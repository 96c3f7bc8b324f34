"""Per-party FLOPs and bytes against closed-form formulas."""

import pytest

from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def _fit(model, topology, cuts, data, batch_size, epochs=1):
    topo = build_topology(topology, model, cuts=cuts)
    report = Trainer(topo, batch_size=batch_size, epochs=epochs, seed=0).fit(data)
    return topo, report


def test_mlp_flops_match_closed_form():
    """Linear layer: forward 2*B*in*out; backward 2*B*in*out for the weight gradient plus the same
    again for the input gradient, which the first layer does not need (its input is raw data)."""
    data = load_dataset("breast-cancer", seed=0)
    n, d, h1, h2, c = len(data.x_train), 30, 64, 32, 2
    model = create_model("mlp", input_shape=(d,), num_classes=c, seed=0, hidden=(h1, h2))
    topo, _ = _fit(model, "vanilla", ["relu1"], data, batch_size=32)
    client = 4 * n * d * h1
    server = 6 * n * (h1 * h2 + h2 * c)
    train = topo.flops.totals["train"]
    assert train["client"] == pytest.approx(client, rel=0.01)
    assert train["server"] == pytest.approx(server, rel=0.01)
    # evaluation: forward only
    n_test = len(data.x_test)
    assert topo.flops.totals["eval"]["client"] == pytest.approx(2 * n_test * d * h1, rel=0.01)


def test_lenet_client_conv_flops_match_closed_form():
    """conv1 of UnSplit's LeNet: 1->8 channels, 5x5 kernel, 24x24 output: 2*25*8*576 per sample forward."""
    data = load_dataset("synthetic", kind="image", image_shape=(1, 28, 28), n_samples=200, num_classes=2, seed=0)
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=2, seed=0)
    topo, _ = _fit(model, "vanilla", ["pool1"], data, batch_size=40)
    per_sample = 2 * 25 * 8 * 24 * 24
    assert topo.flops.totals["train"]["client"] == pytest.approx(2 * per_sample * len(data.x_train), rel=0.01)


@pytest.mark.parametrize("topology,cuts", [("vanilla", ["relu1"]), ("ushape", ["relu1", "relu2"])])
def test_bytes_per_epoch_match_closed_form(topology, cuts):
    """One client, p samples, cut width q (float32): 4*p*q bytes of activations up and 4*p*q of
    gradients down per epoch (U-shape: twice, one per cut), plus 8 bytes per label in vanilla."""
    data = load_dataset("breast-cancer", seed=0)
    p = len(data.x_train)
    model = create_model("mlp", input_shape=(30,), num_classes=2, seed=0, hidden=(64, 32))
    epochs = 2
    topo, report = _fit(model, topology, cuts, data, batch_size=32, epochs=epochs)
    t = topo.channel.traffic
    widths = [dict(model.describe_cuts())[c][0] for c in cuts]
    assert t.total(src="client", dst="server", kind="activation", phase="train") == epochs * 4 * p * widths[0]
    assert t.total(src="server", dst="client", kind="gradient", phase="train") == epochs * 4 * p * widths[0]
    if topology == "ushape":
        assert t.total(src="server", dst="client", kind="activation", phase="train") == epochs * 4 * p * widths[1]
        assert t.total(src="client", dst="server", kind="gradient", phase="train") == epochs * 4 * p * widths[1]
        assert t.total(kind="labels") == 0
    else:
        assert t.total(kind="labels", phase="train") == epochs * 8 * p
    assert report.summary["client_bytes_sent"] == t.total(src="client", phase="train")

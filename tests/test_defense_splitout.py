"""SplitOut: a label-blind (hijacking) server is detected early and the client stops sending."""

import torch
from torch import nn

from secsplit.callbacks import Callback
from secsplit.data import load_dataset
from secsplit.defenses import create_defense
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


class LabelBlindServer(Callback):
    """Returns the gradient of a fixed random critic on the activations, as a hijacking server does."""

    def __init__(self, dim, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.disc = nn.Sequential(nn.Flatten(), nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, 1))
        for p in self.disc.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.1

    def on_setup(self, trainer):
        trainer.channel.add_tap("server", self._see)

    def _see(self, message):
        if message.kind == "activation" and message.dst == "server":
            self.z = message.tensor

    def transform_gradient(self, grad, *, party, step):
        if party != "server":
            return grad
        z = self.z.detach().requires_grad_(True)
        return torch.autograd.grad(self.disc(z).sum(), z)[0] / len(z)


def test_label_blind_server_is_detected_and_client_stops():
    data = load_dataset("digits", seed=0)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=0)
    topo = build_topology("vanilla", model)
    dim = int(torch.Size(dict(model.describe_cuts())[topo.cuts[0]]).numel())
    detector = create_defense("splitout")
    sent = []
    topo.channel.add_tap("client", lambda m: sent.append(m.step) if m.kind == "activation" and m.src == "client" else None)
    report = Trainer(topo, epochs=1, batch_size=32, callbacks=[detector, LabelBlindServer(dim)]).fit(data)
    assert detector.detected_at is not None and detector.detected_at <= 15
    assert "splitout" in report.summary["stopped"]
    assert max(sent) <= detector.detected_at + 1
    assert detector.report()["honest_examples"] == 40


def test_honest_first_epoch_raises_no_alarm():
    data = load_dataset("digits", seed=0)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=0)
    topo = build_topology("vanilla", model)
    detector = create_defense("splitout")
    Trainer(topo, epochs=1, batch_size=32, callbacks=[detector]).fit(data)
    assert detector.detected_at is None and detector.armed_at == 3

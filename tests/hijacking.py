"""A label-blind server for detection tests: the gradient it returns ignores the labels, as a hijacking server's does."""

import torch
from torch import nn

from secsplit.callbacks import Callback


class LabelBlindServer(Callback):
    """Returns the gradient of a fixed random critic on the activations (feature-space hijacking's shape)."""

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


def cut_width(model, cut) -> int:
    """How many numbers one sample's activation at ``cut`` holds (the critic's input size)."""
    return int(torch.Size(dict(model.describe_cuts())[cut]).numel())


def record_releases(topology) -> list[int]:
    """The steps at which the client released activations (to check nothing leaves after an alarm)."""
    sent = []
    topology.channel.add_tap(
        "client", lambda m: sent.append(m.step) if m.kind == "activation" and m.src == "client" else None)
    return sent

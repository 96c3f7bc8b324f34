"""MID: a variational information bottleneck at the cut (Zou et al., "Mutual Information Regularization
for Vertical Federated Learning", arXiv 2301.01142; also in VFLAIR, SecretFlow and AIJack).

A layer maps the cut activation h to a Gaussian code: mu, sigma = encoder(h), z = mu + sigma * eps, and
decodes it back to h's shape. Training adds ``lam * KL(N(mu, sigma^2) || N(0, I))`` (batch mean), a
variational upper bound on the mutual information I(h; z), so the code keeps only what the task needs.
The encoder/decoder are MLPs over the flattened activation (hidden width ``hidden``, code size
``bottleneck``); sigma = softplus(raw - 5) as in VFLAIR.

Two sides:

- ``side="input"`` (default): the layer ends the data owner's segment, so what leaves the client is
  the decoded noisy code. It addresses input reconstruction (the release carries at most the code's
  information). The layer is part of the client segment: a white-box attacker has its weights too.
- ``side="labels"``: the layer starts the receiving party's segment (the label owner's in vanilla),
  as in VFLAIR's MID at the active party: the gradient sent back to the client passes through the
  noisy code and the KL term, which blunts label inference from returned gradients.

No formal guarantee: the KL bounds a variational estimate of the information, not what an attacker
can recover. Cost: two small MLPs trained with the party's optimizer, and the task accuracy the
bottleneck costs (``lam`` trades them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from secsplit.callbacks import SeededGenerator
from secsplit.defenses.base import DEFENSES, Defense
from secsplit.defenses.layers import AddLoss, add_layer, chain_segments, output_shape
from secsplit.errors import ConfigError

SIDES = ("input", "labels")


class VariationalBottleneck(nn.Module):
    """h -> (mu, sigma) -> z ~ N(mu, sigma^2) -> h' of h's shape; adds lam * KL in backward while training.

    Args:
        shape: per-sample shape of h.
        bottleneck: size of the code z.
        hidden: width of the encoder's and decoder's hidden layer.
        lam: weight of the KL term.
        sample_at_eval: draw z at inference too (else z = mu).
        seed: seeds the noise.
    """

    def __init__(self, shape, *, bottleneck: int, hidden: int, lam: float, sample_at_eval: bool, seed: int) -> None:
        super().__init__()
        d = math.prod(shape)
        self.shape, self.k, self.lam, self.sample_at_eval, self.seed = tuple(shape), bottleneck, lam, sample_at_eval, seed
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 2 * bottleneck))
        self.decoder = nn.Sequential(nn.Linear(bottleneck, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.random = SeededGenerator(seed)
        self.last_kl: float | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        stats = self.encoder(h)
        mu, std = stats[:, : self.k], F.softplus(stats[:, self.k:] - 5.0)
        if self.training or self.sample_at_eval:
            eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=self.random.on(h.device))
            z = mu + std * eps
        else:
            z = mu
        out = self.decoder(z).reshape(h.shape[0], *self.shape)
        if self.training and torch.is_grad_enabled() and self.lam > 0:
            kl = 0.5 * (mu.pow(2) + std.pow(2) - 2 * torch.log(std.clamp_min(1e-12)) - 1).sum(1).mean()
            self.last_kl = float(kl.detach())
            out = AddLoss.apply(out, kl, self.lam)
        return out


@DEFENSES.register("mid")
class MID(Defense):
    """Variational information bottleneck on the cut (MID): lam * KL to a unit Gaussian code, decoded back.

    Args:
        lam: weight of the KL term (the information bound); 0 keeps the layer but no pressure on it.
        bottleneck: size of the Gaussian code.
        hidden: hidden width of the encoder and decoder MLPs.
        side: "input" (the layer ends the client's segment: protects inputs) or "labels" (it starts the
            label owner's segment: protects labels from returned gradients).
        sample_at_eval: draw the code at inference too; default: yes on the input side (what leaves
            the client at inference leaks too), no on the label side.
        seed: seeds the layer's initialization and noise.
    """

    name = "mid"
    addresses = ("input reconstruction from activations (side=input); label inference from returned gradients "
                 "(side=labels)")
    threat_model = ("honest-but-curious server observing releases (input side) or client observing returned "
                    "gradients (label side); no formal guarantee (a variational bound on I(h; z))")

    def __init__(self, *, lam: float = 0.01, bottleneck: int = 64, hidden: int = 256, side: str = "input",
                 sample_at_eval: bool | None = None, seed: int = 0) -> None:
        if not lam >= 0 or not math.isfinite(lam):
            raise ConfigError(f"mid lam must be a finite number >= 0, got {lam}")
        if bottleneck < 1 or hidden < 1:
            raise ConfigError(f"mid bottleneck and hidden must be >= 1, got {bottleneck}, {hidden}")
        if side not in SIDES:
            raise ConfigError(f"mid side must be one of {', '.join(SIDES)}, got {side!r}")
        self.lam, self.bottleneck, self.hidden, self.side, self.seed = float(lam), bottleneck, hidden, side, seed
        self.sample_at_eval = (side == "input") if sample_at_eval is None else bool(sample_at_eval)
        self.layer: VariationalBottleneck | None = None

    def on_setup(self, trainer) -> None:
        topology = trainer.topology
        segments, owners = chain_segments(topology, self.name)
        if topology.input_shape is None:
            raise ConfigError("mid needs the topology's input shape to size its layer")
        shape = output_shape(segments[0], topology.input_shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            layer = VariationalBottleneck(shape, bottleneck=self.bottleneck, hidden=self.hidden, lam=self.lam,
                                          sample_at_eval=self.sample_at_eval, seed=self.seed + 1)
        if self.side == "input":
            self.layer = add_layer(topology, 0, layer, name="mid", at="end")
        else:
            self.layer = add_layer(topology, 1, layer, name="mid", at="start")

    def state_dict(self):
        """The layer's sampling generator goes on where it stopped (its weights are the party's)."""
        return {"generator": self.layer.random.state() if self.layer is not None else None}

    def load_state_dict(self, state):
        if self.layer is not None:
            self.layer.random.restore(state["generator"])

    def params(self):
        return {"lam": self.lam, "bottleneck": self.bottleneck, "hidden": self.hidden, "side": self.side,
                "sample_at_eval": self.sample_at_eval}

    def report(self):
        return {**super().report(), "last_kl": None if self.layer is None else self.layer.last_kl}

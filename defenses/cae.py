"""CAE and DCAE: the label owner trains on confused soft labels (Liu et al., "Defending Label Inference and
Backdoor Attacks in Vertical Federated Learning", arXiv 2112.05409; also in VFLAIR, SecretFlow, FATE).

Before training, the label owner fits a tiny *confusional autoencoder* on the one-hot labels alone:
an encoder E maps each class's one-hot y to a soft fake label y~ = E(y), a decoder D maps it back,
minimizing::

    CE(D(E(y)), y) - lambda1 * CE(E(y), y) - lambda2 * H(E(y))

so y~ is recoverable by D but far from y and of high entropy. Training then uses y~ as the target
(soft cross-entropy), so the gradients it sends back are those of the fake labels; at inference the
label owner decodes its prediction, p -> D(p) (a frozen layer ending its segment, active in eval
mode only). DCAE adds DiscreteSGD: each returned gradient is rounded to ``bins`` levels over
[-max|g|, max|g|] of the batch.

Threat model: a non-label party inferring labels from returned gradients (norm, cosine, clustering)
or from its trained bottom model (model completion). No formal guarantee. Cost: a few hundred
steps of a (C x (6C)^2) autoencoder before training, and the accuracy lost to decoding soft labels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from secsplit.defenses.base import DEFENSES, Defense
from secsplit.defenses.layers import add_layer, chain_segments
from secsplit.errors import ConfigError


class ConfusionalAutoencoder(nn.Module):
    """One-hot label -> soft fake label (encoder) -> label distribution (decoder); both end in softmax."""

    def __init__(self, num_classes: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or (6 * num_classes) ** 2
        self.num_classes = num_classes
        self.encoder = nn.Sequential(nn.Linear(num_classes, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
                                     nn.Softmax(dim=1))
        self.decoder = nn.Sequential(nn.Linear(num_classes, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
                                     nn.Softmax(dim=1))


def confusion_loss(labels, fake, decoded, *, lambda1: float, lambda2: float) -> torch.Tensor:
    """CE(decoded, y) - lambda1 * CE(fake, y) - lambda2 * H(fake), batch means (nats)."""
    eps = 1e-12
    ce_decoded = -(labels * torch.log(decoded + eps)).sum(1).mean()
    ce_fake = -(labels * torch.log(fake + eps)).sum(1).mean()
    entropy = -(fake * torch.log(fake + eps)).sum(1).mean()
    return ce_decoded - lambda1 * ce_fake - lambda2 * entropy


def train_confuser(num_classes: int, *, lambda1: float, lambda2: float, steps: int, lr: float,
                   seed: int) -> ConfusionalAutoencoder:
    """Fit a confusional autoencoder on the ``num_classes`` one-hot labels (seeded), frozen on return."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cae = ConfusionalAutoencoder(num_classes)
        labels = torch.eye(num_classes)
        opt = torch.optim.Adam(cae.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            fake = cae.encoder(labels)
            loss = confusion_loss(labels, fake, cae.decoder(fake), lambda1=lambda1, lambda2=lambda2)
            loss.backward()
            opt.step()
    for p in cae.parameters():
        p.requires_grad_(False)
    return cae.eval()


class DecodeAtInference(nn.Module):
    """Identity while training; in eval mode maps logits to log D(softmax(logits)) (decoded log-probabilities)."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, logits):
        if self.training:
            return logits
        return torch.log(self.decoder(torch.softmax(logits, dim=1)).clamp_min(1e-12))


def discretize(grad: torch.Tensor, bins: int) -> torch.Tensor:
    """DiscreteSGD: round every entry to ``bins`` equal steps over [-b, b], b = the batch's max |entry|."""
    bound = grad.detach().abs().max()
    if not torch.isfinite(bound) or bound == 0:
        return grad.clone()
    step = 2 * bound / bins
    return torch.round(grad / step) * step


@DEFENSES.register("cae")
class CAE(Defense):
    """The label owner trains on soft fake labels from a confusional autoencoder and decodes at inference (CAE).

    Args:
        lambda1: weight pushing the fake labels away from the true ones (CE(E(y), y)). Off by default:
            the term is unbounded below and, measured (C = 2 and 10, lambda1 >= 0.5), drives the fake
            labels to a hard permutation of the true ones (entropy 0), which hides nothing from the
            norm and cosine attacks.
        lambda2: weight of the fake labels' entropy: the strength knob (higher: closer to uniform,
            harder to decode; 4 gives [0.47, 0.53] / [0.53, 0.47] for two classes).
        steps, lr: Adam steps and learning rate fitting the autoencoder on the one-hot labels.
        bins: DiscreteSGD levels for the returned gradients (0: none; the ``dcae`` defense sets 12).
        seed: seeds the autoencoder.
    """

    name = "cae"
    addresses = ("label inference from returned gradients (norm, cosine, clustering) and from the bottom model "
                 "(model completion)")
    threat_model = ("honest-but-curious non-label party (the client in vanilla with server-held labels, or the "
                    "server in U-shape); no formal guarantee")

    def __init__(self, *, lambda1: float = 0.0, lambda2: float = 4.0, steps: int = 1000, lr: float = 0.02,
                 bins: int = 0, seed: int = 0) -> None:
        for key, value in (("lambda1", lambda1), ("lambda2", lambda2)):
            if not value >= 0 or not math.isfinite(value):
                raise ConfigError(f"{self.name} {key} must be a finite number >= 0, got {value}")
        if steps < 1 or not lr > 0 or bins < 0 or bins == 1:
            raise ConfigError(f"{self.name} needs steps >= 1, lr > 0 and bins 0 or >= 2; got {steps}, {lr}, {bins}")
        self.lambda1, self.lambda2, self.steps, self.lr, self.bins, self.seed = float(lambda1), float(lambda2), steps, lr, bins, seed
        self.cae: ConfusionalAutoencoder | None = None
        self.label_owner: str | None = None

    def on_setup(self, trainer) -> None:
        topology = trainer.topology
        segments, owners = chain_segments(topology, self.name)
        if owners[-1] != topology.label_owner:
            raise ConfigError(f"{self.name} decodes predictions at the label owner, which must own the last segment")
        if topology.num_classes is None or topology.num_classes < 2:
            raise ConfigError(f"{self.name} needs a classification topology (num_classes >= 2)")
        self.label_owner = topology.label_owner
        self.cae = train_confuser(topology.num_classes, lambda1=self.lambda1, lambda2=self.lambda2, steps=self.steps,
                                  lr=self.lr, seed=self.seed)
        add_layer(topology, len(segments) - 1, DecodeAtInference(self.cae.decoder), name="cae_decode", at="end")

    def fake_labels(self, y: torch.Tensor) -> torch.Tensor:
        """The soft labels the label owner trains on for integer labels ``y``."""
        one_hot = F.one_hot(y.long(), self.cae.num_classes).float()
        enc = self.cae.encoder.to(y.device)
        with torch.no_grad():
            return enc(one_hot)

    def transform_labels(self, y, *, party, step):
        if party != self.label_owner or self.cae is None or y.dim() != 1:
            return y
        return self.fake_labels(y)

    def transform_gradient(self, grad, *, party, step):
        if self.bins and party == self.label_owner:
            return discretize(grad, self.bins)
        return grad

    def confusion(self) -> dict:
        """How confused the fake labels are: their entropy (nats), how often argmax E(y) != y, and decoder accuracy."""
        eye = torch.eye(self.cae.num_classes)
        with torch.no_grad():
            fake = self.cae.encoder(eye)
            decoded = self.cae.decoder(fake)
        return {"fake_entropy": float(-(fake * torch.log(fake + 1e-12)).sum(1).mean()),
                "fake_argmax_differs": float((fake.argmax(1) != torch.arange(len(eye))).float().mean()),
                "decoder_accuracy": float((decoded.argmax(1) == torch.arange(len(eye))).float().mean())}

    def params(self):
        return {"lambda1": self.lambda1, "lambda2": self.lambda2, "steps": self.steps, "lr": self.lr, "bins": self.bins}

    def report(self):
        return {**super().report(), **(self.confusion() if self.cae is not None else {})}


@DEFENSES.register("dcae")
class DCAE(CAE):
    """CAE plus DiscreteSGD: confused soft labels, and returned gradients rounded to a few levels (DCAE).

    Args:
        bins: DiscreteSGD levels over [-max|g|, max|g|] per batch.
        lambda1, lambda2, steps, lr, seed: as for ``cae``.
    """

    name = "dcae"

    def __init__(self, *, lambda1: float = 0.0, lambda2: float = 4.0, steps: int = 1000, lr: float = 0.02,
                 bins: int = 12, seed: int = 0) -> None:
        if bins < 2:
            raise ConfigError(f"dcae needs bins >= 2 (bins=0 is plain cae), got {bins}")
        super().__init__(lambda1=lambda1, lambda2=lambda2, steps=steps, lr=lr, bins=bins, seed=seed)

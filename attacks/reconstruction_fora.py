"""FORA: feature-oriented reconstruction by a substitute client (Xu, Hu, Li, Liu, Hu, Li and Chen, "A Stealthy
Wolf in Sheep's Clothing: Model-agnostic Feature-Oriented Reconstruction Attack against Split
Learning", CVPR 2024, arXiv 2405.04115).

A passive server with unlabeled public auxiliary images from the client's distribution, no client
weights and no query access, builds a *substitute* of the client segment whose outputs on the
auxiliary images are distributed like the activations the client releases, then inverts the
substitute. Beside every training step (the protocol is followed; nothing the client receives
changes) it trains:

1. the substitute f^ (the client segment's architecture, freshly initialized: the paper's
   substitute shares the client's architecture by default) to minimize
   ``mmd_weight`` x MMD^2(f^(x_aux), f(x_priv)) (multi-bandwidth Gaussian kernel over the
   flattened activations of the two batches) plus ``adv_weight`` x the non-saturating GAN loss of a
   discriminator D telling the two apart;
2. D on f(x_priv) (real) against f^(x_aux) (fake).

The paper combines both terms; here the GAN term is off by default (``adv_weight=0``): on MNIST at
relu2 (3 epochs) it collapsed one seed of three (SSIM 0.21, no better than the mean image) where
MMD alone gave 0.76 on the same trained model (benchmarks/README.md).

After training, an inverse network (:class:`CoarseFineDecoder`)
learns f^(x_aux) -> x_aux for ``decoder_epochs`` passes and decodes the activations the client
releases for the targets.

Differences from the paper, on purpose: the paper's feature-oriented losses act on the
substitute's *feature maps* through a pretrained perceptual extractor and a domain discriminator
over many epochs of public data; here the distribution matching is on the released activations
themselves (the only thing the server sees), with small MLP critics, over the training run's
steps (``steps_per_batch`` substitute updates per received batch).

Threat model: honest-but-curious server; knows the client segment's architecture and has unlabeled
auxiliary data ("client-architecture", "auxiliary-data"). It never reads the client's weights.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from secsplit.attacks.base import ATTACKS, ThreatModel, in_batches
from secsplit.attacks.reconstruction_base import LearnsFromReleases, reset_parameters
from torch import nn

from secsplit.errors import ConfigError


class CoarseFineDecoder(nn.Module):
    """Activations -> images: a fully connected path for the global layout, conv refinement for detail.

    FORA's inverse network as benchmarked (benchmarks/README.md; kept so those numbers stay tied to this
    code; the inverse network and SDAR use :class:`~secsplit.attacks.decoders.ImageDecoder`, which scores higher):
    the fully connected path undoes pooling and deep cuts, the conv path (the activation upsampled to
    the image size, next to the coarse image) adds local detail.
    """

    def __init__(self, z_shape: tuple[int, ...], x_shape: tuple[int, ...], width: int = 64) -> None:
        super().__init__()
        self.x_shape = x_shape
        z_size, x_size = int(torch.Size(z_shape).numel()), int(torch.Size(x_shape).numel())
        self.coarse = nn.Sequential(nn.Flatten(), nn.Linear(z_size, 8 * width), nn.ReLU(), nn.Linear(8 * width, x_size))
        self.conv = len(z_shape) == 3 and len(x_shape) == 3
        if self.conv:
            self.refine = nn.Sequential(
                nn.Conv2d(z_shape[0] + x_shape[0], width // 2, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width // 2, width // 2, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width // 2, x_shape[0], 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        coarse = self.coarse(z).view(-1, *self.x_shape)
        if not self.conv:
            return torch.sigmoid(coarse)
        up = F.interpolate(z, size=self.x_shape[1:], mode="bilinear", align_corners=False)
        return torch.sigmoid(coarse + self.refine(torch.cat([up, coarse], 1)))


def mmd2(a: torch.Tensor, b: torch.Tensor, bandwidths=(0.5, 1.0, 2.0, 4.0)) -> torch.Tensor:
    """Biased squared MMD of two batches (rows flattened) under a sum of Gaussian kernels whose widths
    are ``bandwidths`` times the median pairwise distance (a scale-free choice)."""
    a, b = a.flatten(1), b.flatten(1)
    joint = torch.cat([a, b])
    d2 = torch.cdist(joint, joint).pow(2)
    scale = d2.detach()[d2.detach() > 0].median().clamp_min(1e-12)
    k = sum(torch.exp(-d2 / (2 * w * w * scale)) for w in bandwidths)
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


@ATTACKS.register("fora")
class FORA(LearnsFromReleases):
    """FORA (Xu et al., CVPR'24): match a substitute client's release distribution (MMD + GAN), invert it.

    Args:
        auxiliary: the attacker's own unlabeled images (N, C, H, W) in [0, 1]; default: the last
            ``aux_size`` training images of the audited data set.
        aux_size: how many auxiliary images to take by default.
        lr: Adam learning rate of substitute, critic and decoder.
        mmd_weight, adv_weight: weights of the MMD and GAN terms of the substitute's loss.
        steps_per_batch: substitute updates per received training batch (each on a fresh auxiliary batch).
        decoder_epochs: passes of the inverse network over the auxiliary set after training.
        critic_width: hidden width of the discriminator.
        targets, max_targets, seed: see :class:`ReconstructionAttack`.
    """

    #: its seat is fixed (the server); its substitute is the client segment's
    seat_option = None

    name = "fora"
    threat_model = ThreatModel(attacker="server", behaviour="honest-but-curious",
                               knows=("client-architecture", "auxiliary-data"), target="inputs")
    #: the attack's own hyperparameters for tuning (see Attack.search_space)
    search_space: ClassVar[dict] = {"mmd_weight": [1.0, 10.0], "adv_weight": [0.0, 0.1, 1.0], "steps_per_batch": [1, 4]}

    def __init__(self, *, auxiliary: torch.Tensor | None = None, aux_size: int = 1000, lr: float = 1e-3,
                 mmd_weight: float = 1.0, adv_weight: float = 0.0, steps_per_batch: int = 2, decoder_epochs: int = 10,
                 critic_width: int = 128, targets: torch.Tensor | None = None, max_targets: int = 32, seed: int = 0) -> None:
        super().__init__(targets=targets, max_targets=max_targets, phase="eval", seed=seed, steps_per_batch=steps_per_batch)
        if aux_size < 1 or lr <= 0 or steps_per_batch < 1 or decoder_epochs < 1 or critic_width < 1:
            raise ConfigError(f"{self.name} needs aux_size, steps_per_batch, decoder_epochs, critic_width >= 1 and lr > 0")
        if min(mmd_weight, adv_weight) < 0 or mmd_weight + adv_weight == 0:
            raise ConfigError(f"{self.name} needs non-negative mmd_weight and adv_weight, not both zero")
        self.auxiliary, self.aux_size, self.lr = auxiliary, aux_size, lr
        self.mmd_weight, self.adv_weight = mmd_weight, adv_weight
        self.decoder_epochs, self.critic_width = decoder_epochs, critic_width
        self.substitute = self.critic = self.decoder = None

    def params(self) -> dict:
        return {"aux_size": None if self.auxiliary is None else len(self.auxiliary), "lr": self.lr,
                "mmd_weight": self.mmd_weight, "adv_weight": self.adv_weight, "steps_per_batch": self.steps_per_batch,
                "decoder_epochs": self.decoder_epochs, "critic_width": self.critic_width}

    def check_applicable(self, topology, dataset) -> None:
        super().check_applicable(topology, dataset)
        self.draw_auxiliary(dataset)

    def _build(self, z: torch.Tensor) -> None:
        if self.auxiliary is None:
            raise ConfigError(f"{self.name} has no auxiliary data: pass auxiliary= or run check_applicable with a data set")
        device = z.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            # the client segment's architecture with every weight re-drawn ("client-architecture")
            self.substitute = reset_parameters(copy.deepcopy(self.topology.segments[0]), self.seed).to(device).train()
            self.critic = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(z.shape[1:]), self.critic_width), nn.LeakyReLU(0.2),
                                        nn.Linear(self.critic_width, self.critic_width), nn.LeakyReLU(0.2),
                                        nn.Linear(self.critic_width, 1)).to(device)
        for p in self.substitute.parameters():
            p.requires_grad_(True)
        self._opt_sub = torch.optim.Adam(self.substitute.parameters(), lr=self.lr)
        self._opt_critic = torch.optim.Adam(self.critic.parameters(), lr=self.lr)
        self._aux = self.auxiliary.to(device)
        self._generator = torch.Generator().manual_seed(self.seed)

    def _update(self, z_priv: torch.Tensor) -> dict:
        bce = F.binary_cross_entropy_with_logits
        index = torch.randint(len(self._aux), (len(z_priv),), generator=self._generator).to(z_priv.device)
        with torch.enable_grad():
            z_sub = self.substitute(self._aux[index])
            distance = mmd2(z_sub, z_priv)
            fake = self.critic(z_sub)
            loss = self.mmd_weight * distance + self.adv_weight * bce(fake, torch.ones_like(fake))
            self._opt_sub.zero_grad(set_to_none=True)
            loss.backward()
            self._opt_sub.step()
            self._opt_critic.zero_grad(set_to_none=True)
            real, fake = self.critic(z_priv), self.critic(z_sub.detach())
            critic_loss = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
            critic_loss.backward()
            self._opt_critic.step()
        return {"mmd2": float(distance.detach()), "critic_loss": float(critic_loss.detach())}

    def _train_decoder(self, z_shape) -> None:
        with torch.no_grad():
            self.substitute.eval()
            z_aux = in_batches(self.substitute, self._aux)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.decoder = CoarseFineDecoder(tuple(z_shape), tuple(self._aux.shape[1:])).to(z_aux.device)
        optimizer = torch.optim.Adam(self.decoder.parameters(), lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.decoder_epochs):
                for idx in torch.randperm(len(self._aux), generator=self._generator).split(64):
                    optimizer.zero_grad(set_to_none=True)
                    F.mse_loss(self.decoder(z_aux[idx]), self._aux[idx]).backward()
                    optimizer.step()

    def reconstruct(self, z):
        if self.substitute is None:
            raise ConfigError(f"{self.name} never saw a training step: it must watch training (pass it to a Trainer)")
        if self.decoder is None:
            self._train_decoder(z.shape[1:])
        with torch.no_grad():
            rec = self.decoder.eval()(z)
        first, last = (self.history[0], self.history[-1]) if self.history else ({}, {})
        return rec, {"substitute_steps": len(self.history), "first_mmd2": first.get("mmd2"), "final_mmd2": last.get("mmd2"),
                     "final_critic_loss": last.get("critic_loss")}

"""Attacker-aware training in the manner of ResSFL (Li et al., "ResSFL: A Resistance Transfer Framework
for Defending Model Inversion Attack in Split Federated Learning", CVPR 2022, arXiv 2205.04007).

The client simulates the attacker it fears: a decoder from its cut activation back to its input,
trained on its own batches to *minimize* the reconstruction error, while the client segment is
trained to *maximize* that error on top of the task loss::

    decoder:  min  MSE(D(f(x)), x)                      (``decoder_steps`` Adam steps per batch)
    client:   min  task loss - lam * MSE(D(f(x)), x)

``loss = "ssim"`` is the objective of the authors' code (zlijingtao/ResSFL, ``gan_loss_type=SSIM``):
the decoder maximizes the SSIM of its reconstructions, and the client pays only while that SSIM
is above ``ssim_threshold`` (0.5 there), a hinge instead of an unbounded error to maximize::

    decoder:  max  SSIM(D(f(x)), x)
    client:   min  task loss + lam * max(0, SSIM(D(f(x)), x) - ssim_threshold)

(there lam = 0.3-0.8 with an 8-channel bottleneck). The unbounded ``mse`` objective lets the client
win against *this* decoder by moving its features faster than the decoder follows, which a
decoder trained afterwards on the frozen client undoes; the hinge stops pushing once the simulated
attacker is held at the threshold.

An optional bottleneck (``bottleneck`` channels: a 1x1 convolution, or a linear layer for flat
activations) ends the client segment, and a matching layer starts the server's, as in ResSFL's
bottleneck option; it is part of the client segment, so white-box attackers have its weights.
Paper: reconstruction MSE 0.005 -> 0.050 at ~1 point of accuracy (CIFAR-100, VGG-11). Not
implemented: the paper's resistance transfer (pretraining the client with the simulated attacker
on a source task, then fine-tuning it with a 10x lower learning rate on the target task).

No formal guarantee: it protects against attackers like the simulated one; a stronger inverse
(more data, a bigger decoder, optimization-based inversion) may still succeed. Cost: the decoder's
forward/backward at the client every step, and the accuracy the adversarial term costs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from secsplit.defenses.base import DEFENSES, Defense
from secsplit.defenses.layers import add_layer, chain_segments, output_shape
from secsplit.errors import ConfigError


class SimulatedDecoder(nn.Module):
    """Cut activation -> input in [0, 1]: convolutions with an upsampling for image activations, an MLP otherwise."""

    def __init__(self, z_shape, x_shape, *, width: int = 32) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        if len(z_shape) == 3 and len(x_shape) == 3:
            self.net = nn.Sequential(
                nn.Conv2d(z_shape[0], width, 3, padding=1), nn.ReLU(),
                nn.Upsample(size=tuple(x_shape[1:]), mode="bilinear", align_corners=False),
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width, x_shape[0], 3, padding=1), nn.Sigmoid())
        else:
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(z_shape), 8 * width), nn.ReLU(),
                                     nn.Linear(8 * width, math.prod(x_shape)), nn.Sigmoid())

    def forward(self, z):
        return self.net(z).reshape(z.shape[0], *self.x_shape)


SSIM_WINDOW = 7  # the window of secsplit.metrics.ssim, so the threshold reads like the audit's SSIM


def soft_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable mean SSIM of two [0, 1] image batches (N, C, H, W): secsplit.metrics.ssim's formula
    (7x7 uniform window, K1 0.01, K2 0.03) in the batch's dtype, gradients kept."""
    n, c, h, w = x.shape
    window = torch.full((1, 1, SSIM_WINDOW, SSIM_WINDOW), 1.0 / SSIM_WINDOW**2, dtype=x.dtype, device=x.device)
    stacked = torch.cat([x, y, x * x, y * y, x * y]).reshape(5 * n * c, 1, h, w)
    ux, uy, uxx, uyy, uxy = F.conv2d(stacked, window).reshape(5, n, c, h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1)
    norm = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)
    vx, vy, vxy = norm * (uxx - ux * ux), norm * (uyy - uy * uy), norm * (uxy - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))).mean()


def _bottleneck_pair(shape, channels: int) -> tuple[nn.Module, nn.Module]:
    if len(shape) == 3:
        return nn.Conv2d(shape[0], channels, 1), nn.Conv2d(channels, shape[0], 1)
    if len(shape) == 1:
        return nn.Linear(shape[0], channels), nn.Linear(channels, shape[0])
    raise ConfigError(f"attacker-aware bottleneck needs a (C, H, W) or flat activation, got shape {shape}")


@DEFENSES.register("attacker-aware")
class AttackerAwareTraining(Defense):
    """ResSFL-style: the client trains against a simulated inversion decoder, maximizing its reconstruction error.

    Args:
        lam: weight of the decoder's reconstruction error subtracted from the client's loss.
        decoder_steps: the simulated attacker's Adam steps per training batch (it trains on the
            client's own batch, detached from the client segment).
        decoder_lr: its learning rate.
        bottleneck: channels of an optional bottleneck ending the client segment (0: none).
        warmup: steps the decoder trains before the client starts maximizing its error.
        loss: "mse" (the client maximizes the decoder's MSE) or "ssim" (ResSFL's code: the decoder
            maximizes SSIM, the client pays lam * max(0, SSIM - ssim_threshold); images only).
        ssim_threshold: the SSIM the client lets the simulated attacker keep (loss "ssim").
        decoder_width: channels of the simulated decoder.
        seed: seeds the decoder and bottleneck initialization.
    """

    name = "attacker-aware"
    addresses = "input reconstruction from activations (inverse networks, model inversion)"
    threat_model = ("honest-but-curious server inverting cut activations; no formal guarantee (resists attackers "
                    "like the simulated decoder)")

    def __init__(self, *, lam: float = 1.0, decoder_steps: int = 1, decoder_lr: float = 1e-3, bottleneck: int = 0,
                 warmup: int = 0, loss: str = "mse", ssim_threshold: float = 0.5, decoder_width: int = 32,
                 seed: int = 0) -> None:
        if not lam >= 0 or not math.isfinite(lam):
            raise ConfigError(f"attacker-aware lam must be a finite number >= 0, got {lam}")
        if decoder_steps < 1 or not decoder_lr > 0 or bottleneck < 0 or warmup < 0 or decoder_width < 1:
            raise ConfigError("attacker-aware needs decoder_steps >= 1, decoder_lr > 0, bottleneck >= 0, warmup >= 0, "
                              "decoder_width >= 1")
        if loss not in ("mse", "ssim"):
            raise ConfigError(f"attacker-aware loss must be 'mse' or 'ssim', got {loss!r}")
        if not -1 <= ssim_threshold < 1:
            raise ConfigError(f"attacker-aware ssim_threshold must lie in [-1, 1), got {ssim_threshold}")
        self.lam, self.decoder_steps, self.decoder_lr = float(lam), decoder_steps, decoder_lr
        self.bottleneck, self.warmup, self.seed = bottleneck, warmup, seed
        self.loss, self.ssim_threshold, self.decoder_width = loss, float(ssim_threshold), decoder_width
        self.decoder: SimulatedDecoder | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.clients: set[str] = set()
        self.steps = 0
        self.last_decoder_mse: float | None = None
        self.last_decoder_ssim: float | None = None

    def on_setup(self, trainer) -> None:
        topology = trainer.topology
        self.clients = set(topology.data_owners)
        if self.bottleneck:
            segments, _ = chain_segments(topology, f"{self.name} with a bottleneck")
            if topology.input_shape is None:
                raise ConfigError("attacker-aware needs the topology's input shape to size its bottleneck")
            shape = output_shape(segments[0], topology.input_shape)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                down, up = _bottleneck_pair(shape, self.bottleneck)
            add_layer(topology, 0, down, name="bottleneck", at="end")
            add_layer(topology, 1, up, name="bottleneck", at="start")

    def _build_decoder(self, z: torch.Tensor, x: torch.Tensor) -> None:
        """The simulated attacker, sized by the first release it sees (one per run, shared by the data owners)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.decoder = SimulatedDecoder(tuple(z.shape[1:]), tuple(x.shape[1:]), width=self.decoder_width).to(z.device)
        self.optimizer = torch.optim.Adam(self.decoder.parameters(), lr=self.decoder_lr)

    def extra_loss(self, x, z, *, party, step):
        if party not in self.clients:
            return None
        if self.decoder is None:
            if self.loss == "ssim" and (x.dim() != 4 or min(x.shape[-2:]) < SSIM_WINDOW):
                raise ConfigError(f"attacker-aware loss 'ssim' needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, "
                                  f"got inputs of shape {tuple(x.shape[1:])}; use loss = 'mse'")
            self._build_decoder(z, x)
        target = x.detach()
        released = z.detach()
        with torch.enable_grad():
            for _ in range(self.decoder_steps):  # the simulated attacker learns on the client's own batch
                self.optimizer.zero_grad(set_to_none=True)
                guess = self.decoder(released)
                loss = F.mse_loss(guess, target) if self.loss == "mse" else -soft_ssim(guess, target)
                loss.backward()
                self.optimizer.step()
        self.last_decoder_mse = float(F.mse_loss(guess.detach(), target))
        self.last_decoder_ssim = float(-loss.detach()) if self.loss == "ssim" else None
        self.steps += 1
        if self.lam == 0 or self.steps <= self.warmup:
            return None
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        try:
            guess = self.decoder(z)
            if self.loss == "mse":
                adversarial = -self.lam * F.mse_loss(guess, target)
            else:  # ResSFL: hold the simulated attacker at the threshold, no further
                adversarial = self.lam * torch.relu(soft_ssim(guess, target) - self.ssim_threshold)
        finally:
            for p in self.decoder.parameters():
                p.requires_grad_(True)
        return adversarial.to(z.dtype)

    def params(self):
        return {"lam": self.lam, "decoder_steps": self.decoder_steps, "decoder_lr": self.decoder_lr,
                "bottleneck": self.bottleneck, "warmup": self.warmup, "loss": self.loss,
                "ssim_threshold": self.ssim_threshold, "decoder_width": self.decoder_width}

    def report(self):
        return {**super().report(), "decoder_mse": self.last_decoder_mse, "decoder_ssim": self.last_decoder_ssim,
                "steps": self.steps}

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
Paper: reconstruction MSE 0.005 -> 0.050 at ~1 point of accuracy (CIFAR-100, VGG-11).

Resistance transfer (the paper's pretraining phase): with ``pretrain_epochs`` > 0 the client first
trains, alone and before any split training, its segment with a simulated server head (a freshly
initialized copy of the rest of the chain, dropped afterwards) and the simulated decoder,
adversarially as above, on ``pretrain_data`` (a registered data set of the same input shape and
classes; the authors use a source task, CIFAR-10, for 200 epochs; naming the run's own data set
pretrains on the client's own training split, same seed, same split). The real training then starts
from that client segment and that decoder, and ``client_lr_scale`` scales the client's learning
rate for it (the authors fine-tune the client at 0.1x: 0.005 vs 0.05), so the features the
pretraining made resistant move little while the server learns on them.

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
from secsplit.defenses.layers import add_layer, chain_segments, output_shape, reinitialized, segment_device
from secsplit.errors import ConfigError
from secsplit.metrics import SSIM_WINDOW, ssim_per_image


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


def soft_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable mean SSIM of two [0, 1] image batches (N, C, H, W): the formula secsplit.metrics.ssim
    reports (7x7 uniform window, K1 0.01, K2 0.03), so the threshold reads like the audit's SSIM."""
    return ssim_per_image(x, y).mean()


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
        pretrain_epochs: epochs of the pretraining phase (0: none); see the module docstring.
        pretrain_data: the registered data set the pretraining trains on (needed when pretrain_epochs > 0).
        client_lr_scale: factor on the client's learning rate during the real training (ResSFL: 0.1
            after pretraining).
        seed: seeds the decoder and bottleneck initialization (and the pretraining).
    """

    name = "attacker-aware"
    addresses = "input reconstruction from activations (inverse networks, model inversion)"
    threat_model = ("honest-but-curious server inverting cut activations; no formal guarantee (resists attackers "
                    "like the simulated decoder)")

    def __init__(self, *, lam: float = 1.0, decoder_steps: int = 1, decoder_lr: float = 1e-3, bottleneck: int = 0,
                 warmup: int = 0, loss: str = "mse", ssim_threshold: float = 0.5, decoder_width: int = 32,
                 pretrain_epochs: int = 0, pretrain_data: str = "", client_lr_scale: float = 1.0,
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
        if isinstance(pretrain_epochs, bool) or not isinstance(pretrain_epochs, int) or pretrain_epochs < 0:
            raise ConfigError(f"attacker-aware pretrain_epochs must be an integer >= 0, got {pretrain_epochs!r}")
        if pretrain_epochs and not pretrain_data:
            raise ConfigError("attacker-aware pretrain_epochs > 0 needs pretrain_data (a data set name, e.g. the run's)")
        if not client_lr_scale > 0 or not math.isfinite(client_lr_scale):
            raise ConfigError(f"attacker-aware client_lr_scale must be a finite number > 0, got {client_lr_scale}")
        self.lam, self.decoder_steps, self.decoder_lr = float(lam), decoder_steps, decoder_lr
        self.bottleneck, self.warmup, self.seed = bottleneck, warmup, seed
        self.loss, self.ssim_threshold, self.decoder_width = loss, float(ssim_threshold), decoder_width
        self.pretrain_epochs, self.pretrain_data = pretrain_epochs, str(pretrain_data)
        self.client_lr_scale = float(client_lr_scale)
        self.decoder: SimulatedDecoder | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.clients: set[str] = set()
        self.topology = None
        self.steps = 0
        self.batch_size = 64
        self.last_decoder_mse: float | None = None
        self.last_decoder_ssim: float | None = None
        self.pretrain_summary: dict | None = None
        self._restored: tuple[dict, dict] | None = None

    def on_setup(self, trainer) -> None:
        topology = self.topology = trainer.topology
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
        if self.pretrain_epochs:
            chain_segments(topology, f"{self.name} with pretraining")  # fail at setup, not after training started

    def on_fit_start(self, *, num_samples, epochs, batch_size):
        """Pretrain (once: a resumed run's restored weights and optimizer replace what it made), then scale the
        client's learning rate; after every on_setup, so layers other defenses added are in the optimizer."""
        self.batch_size = batch_size
        if self.pretrain_epochs and self.pretrain_summary is None:
            self.pretrain()
        if self.client_lr_scale != 1.0:
            for party in self.clients:
                optimizer = self.topology.parties[party].optimizer
                for group in optimizer.param_groups if optimizer is not None else ():
                    group["lr"] = group["lr"] * self.client_lr_scale

    def state_dict(self):
        """The simulated attacker as trained so far, and whether pretraining ran (a resumed run does not rerun it)."""
        decoder = None
        if self.decoder is not None:
            decoder = {"weights": self.decoder.state_dict(), "optimizer": self.optimizer.state_dict()}
        return {"steps": self.steps, "pretrain_summary": self.pretrain_summary, "decoder": decoder}

    def load_state_dict(self, state):
        self.steps, self.pretrain_summary = int(state["steps"]), state["pretrain_summary"]
        decoder = state["decoder"]
        self.decoder, self.optimizer = None, None
        self._restored = None if decoder is None else (decoder["weights"], decoder["optimizer"])

    # -- the simulated attacker ----------------------------------------------------------------------

    def _build_decoder(self, z: torch.Tensor, x: torch.Tensor) -> None:
        """The simulated attacker, sized by the first release it sees (one per run, shared by the data owners)."""
        if self.loss == "ssim" and (x.dim() != 4 or min(x.shape[-2:]) < SSIM_WINDOW):
            raise ConfigError(f"attacker-aware loss 'ssim' needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, "
                              f"got inputs of shape {tuple(x.shape[1:])}; use loss = 'mse'")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.decoder = SimulatedDecoder(tuple(z.shape[1:]), tuple(x.shape[1:]), width=self.decoder_width).to(z.device)
        self.optimizer = torch.optim.Adam(self.decoder.parameters(), lr=self.decoder_lr)
        if self._restored is not None:  # a resumed run: the decoder as it was at the checkpoint
            decoder, optimizer = self._restored
            self.decoder.load_state_dict(decoder)
            self.optimizer.load_state_dict({**optimizer, "state": {int(k): v for k, v in optimizer["state"].items()}})
            self._restored = None

    def _train_decoder(self, released: torch.Tensor, target: torch.Tensor) -> None:
        """``decoder_steps`` steps of the simulated attacker on (release, input) pairs, the client segment detached."""
        if self.decoder is None:
            self._build_decoder(released, target)
        with torch.enable_grad():
            for _ in range(self.decoder_steps):
                self.optimizer.zero_grad(set_to_none=True)
                guess = self.decoder(released)
                loss = F.mse_loss(guess, target) if self.loss == "mse" else -soft_ssim(guess, target)
                loss.backward()
                self.optimizer.step()
        self.last_decoder_mse = float(F.mse_loss(guess.detach(), target))
        self.last_decoder_ssim = float(-loss.detach()) if self.loss == "ssim" else None

    def _adversarial(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The client's term: minus lam x the decoder's MSE, or lam x the SSIM hinge; the decoder frozen."""
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        try:
            guess = self.decoder(z)
            if self.loss == "mse":
                return -self.lam * F.mse_loss(guess, target)
            return self.lam * torch.relu(soft_ssim(guess, target) - self.ssim_threshold)  # ResSFL: no further
        finally:
            for p in self.decoder.parameters():
                p.requires_grad_(True)

    def extra_loss(self, x, z, *, party, step):
        if party not in self.clients:
            return None
        target = x.detach()
        self._train_decoder(z.detach(), target)  # the simulated attacker learns on the client's own batch
        self.steps += 1
        if self.lam == 0 or self.steps <= self.warmup:
            return None
        return self._adversarial(z, target).to(z.dtype)

    # -- pretraining (resistance transfer) -----------------------------------------------------------

    def pretrain_set(self):
        """The pretraining data: ``pretrain_data``'s training split (seeded like the run), checked against the model."""
        from secsplit.data import load_dataset

        data = load_dataset(self.pretrain_data, seed=self.seed)
        shape, classes = self.topology.input_shape, self.topology.num_classes
        if shape is not None and tuple(data.x_train.shape[1:]) != tuple(shape):
            raise ConfigError(f"attacker-aware pretrain_data {self.pretrain_data!r} has inputs of shape "
                              f"{tuple(data.x_train.shape[1:])}; the model takes {tuple(shape)}")
        if classes is not None and int(data.y_train.max()) >= classes:
            raise ConfigError(f"attacker-aware pretrain_data {self.pretrain_data!r} has {data.num_classes} classes; "
                              f"the model has {classes} outputs")
        return data.x_train, data.y_train

    def pretrain(self) -> dict:
        """Train the client segment, a simulated server head and the decoder together, before split training."""
        segments, _ = chain_segments(self.topology, f"{self.name} with pretraining")
        client = segments[0]
        device = segment_device(client)
        x, y = (t.to(device) for t in self.pretrain_set())
        base = self.topology.parties[self.topology.data_owner].optimizer
        opt_class = type(base) if base is not None else torch.optim.Adam
        defaults = dict(base.defaults) if base is not None else {"lr": 1e-3}
        correct = seen = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 2)
            head = nn.Sequential(*[reinitialized(s) for s in segments[1:]]).to(device)
            optimizer = opt_class([*client.parameters(), *head.parameters()], **defaults)
            generator = torch.Generator().manual_seed(self.seed + 2)
            client.train()
            with torch.enable_grad():
                for epoch in range(self.pretrain_epochs):
                    correct = seen = 0
                    for index in torch.randperm(len(x), generator=generator).split(self.batch_size):
                        xb, yb = x[index], y[index]
                        z = client(xb)
                        self._train_decoder(z.detach(), xb)
                        out = head(z)
                        loss = F.cross_entropy(out, yb)
                        if self.lam:
                            loss = loss + self._adversarial(z, xb).to(loss.dtype)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        correct += int((out.detach().argmax(1) == yb).sum())
                        seen += len(yb)
        client.zero_grad(set_to_none=True)
        self.pretrain_summary = {"epochs": self.pretrain_epochs, "samples": len(x),
                                 "train_accuracy": correct / max(seen, 1), "decoder_mse": self.last_decoder_mse,
                                 "decoder_ssim": self.last_decoder_ssim}
        return self.pretrain_summary

    def params(self):
        return {"lam": self.lam, "decoder_steps": self.decoder_steps, "decoder_lr": self.decoder_lr,
                "bottleneck": self.bottleneck, "warmup": self.warmup, "loss": self.loss,
                "ssim_threshold": self.ssim_threshold, "decoder_width": self.decoder_width,
                "pretrain_epochs": self.pretrain_epochs, "pretrain_data": self.pretrain_data,
                "client_lr_scale": self.client_lr_scale}

    def report(self):
        return {**super().report(), "decoder_mse": self.last_decoder_mse, "decoder_ssim": self.last_decoder_ssim,
                "steps": self.steps, "pretrain": self.pretrain_summary}

"""Black-box inverse network (He, Zhang and Lee, ACSAC 2019).

The server does not know the client's weights. It owns auxiliary images from the same distribution
and can query the client segment on them (query access: e.g. through the client's inference
service), so it learns a decoder from activations back to inputs and applies it to the
activations it observes. He et al. report SSIM ~0.99 on MNIST at shallow cuts.

Auxiliary data: by default the last ``aux_size`` (3,000) training images of the data set, which are
disjoint from the held-out test images attacked and scored. The default budget (3,000 images, 20
epochs, cosine-decayed Adam) is what the published shallow-cut numbers need: with 1,000 images and
10 epochs the decoder was undertrained (MNIST LeNet: SSIM 0.94 / 0.85 at relu1 / pool1 against He et
al.'s ~0.99; see benchmarks/README.md, "Attack strength"). Audits that need it fast pass a smaller
``aux_size``/``epochs``. The queries are simulated by running a
frozen copy of the client segment; they are not counted as channel traffic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from secsplit.attacks.base import ATTACKS, ThreatModel
from secsplit.attacks.reconstruction_base import ReconstructionAttack, frozen_copy
from secsplit.errors import ConfigError


class _Decoder(nn.Module):
    """Activations -> images: a fully connected path for the global layout, conv refinement for detail.

    The fully connected path (two hidden layers) sees the whole activation, so it can undo pooling
    and deep cuts where each spatial cell mixes a wide patch of the input; the conv path refines the
    coarse image, next to the activation upsampled to the image size when the cut is spatial (for a
    flat cut it refines the coarse image alone: a learned image prior). A purely convolutional
    decoder of a few 3x3 layers sees too little of an 8x8 or 4x4 map: at LeNet's relu2 it collapsed
    to the mean image (SSIM 0.29), against 0.80 with the global path.
    """

    def __init__(self, z_shape: tuple[int, ...], x_shape: tuple[int, ...], width: int = 64) -> None:
        super().__init__()
        self.x_shape = x_shape
        z_size, x_size = int(torch.Size(z_shape).numel()), int(torch.Size(x_shape).numel())
        hidden = 8 * width
        self.coarse = nn.Sequential(nn.Flatten(), nn.Linear(z_size, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, x_size))
        self.spatial = len(z_shape) == 3
        self.image = len(x_shape) == 3
        if self.image:
            channels, conv = (z_shape[0] if self.spatial else 0) + x_shape[0], width // 2
            self.refine = nn.Sequential(
                nn.Conv2d(channels, conv, 3, padding=1), nn.ReLU(),
                nn.Conv2d(conv, conv, 3, padding=1), nn.ReLU(),
                nn.Conv2d(conv, conv, 3, padding=1), nn.ReLU(),
                nn.Conv2d(conv, x_shape[0], 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        coarse = self.coarse(z).view(-1, *self.x_shape)
        if not self.image:
            return torch.sigmoid(coarse)
        features = coarse
        if self.spatial:
            up = F.interpolate(z, size=self.x_shape[1:], mode="bilinear", align_corners=False)
            features = torch.cat([up, coarse], 1)
        return torch.sigmoid(coarse + self.refine(features))


@ATTACKS.register("inverse-network")
class InverseNetwork(ReconstructionAttack):
    """Black-box inverse network (He et al., ACSAC'19): learn activations -> inputs on queried auxiliary data.

    Args:
        auxiliary: the attacker's own images (N, C, H, W) in [0, 1]; default: the last ``aux_size``
            training images of the audited data set.
        aux_size: how many auxiliary images to take by default.
        epochs, lr, batch_size: decoder training.
        targets, max_targets, phase, seed, attacker: see :class:`ReconstructionAttack`.
    """

    name = "inverse-network"
    threat_model = ThreatModel(attacker="server", behaviour="honest-but-curious",
                               knows=("query-access", "auxiliary-data"), target="inputs")
    search_space = {"epochs": [10, 20, 40], "aux_size": [1000, 3000]}
    tuning_trials = 4

    def __init__(self, *, auxiliary: torch.Tensor | None = None, aux_size: int = 3000, epochs: int = 20,
                 lr: float = 1e-3, batch_size: int = 64, targets: torch.Tensor | None = None, max_targets: int = 32,
                 phase: str = "eval", seed: int = 0, attacker: str | None = None) -> None:
        super().__init__(targets=targets, max_targets=max_targets, phase=phase, seed=seed, attacker=attacker)
        if aux_size < 1 or epochs < 1 or lr <= 0 or batch_size < 1:
            raise ConfigError(f"{self.name} needs aux_size, epochs, batch_size >= 1 and lr > 0")
        self.auxiliary, self.aux_size, self.epochs, self.lr, self.batch_size = auxiliary, aux_size, epochs, lr, batch_size

    def check_applicable(self, topology, dataset) -> None:
        super().check_applicable(topology, dataset)
        self.draw_auxiliary(dataset)

    def params(self) -> dict:
        return {"aux_size": None if self.auxiliary is None else len(self.auxiliary), "epochs": self.epochs,
                "lr": self.lr, "batch_size": self.batch_size}

    def reconstruct(self, z):
        if self.auxiliary is None:
            raise ConfigError(f"{self.name} has no auxiliary data: pass auxiliary= or run it through an audit")
        segment = frozen_copy(self.topology.segments[0]).to(z.device)
        aux = self.auxiliary.to(z.device)
        with torch.no_grad():  # the queries: the client segment's answers on the attacker's own images
            z_aux = torch.cat([segment(aux[i:i + 256]) for i in range(0, len(aux), 256)])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            decoder = _Decoder(tuple(z.shape[1:]), tuple(aux.shape[1:])).to(z.device)
            order_gen = torch.Generator().manual_seed(self.seed)
            opt = torch.optim.Adam(decoder.parameters(), lr=self.lr)
            per_epoch = -(-len(aux) // self.batch_size)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs * per_epoch, eta_min=self.lr / 50)
            losses = []
            for _ in range(self.epochs):
                total = 0.0
                for idx in torch.randperm(len(aux), generator=order_gen).split(self.batch_size):
                    opt.zero_grad(set_to_none=True)
                    loss = F.mse_loss(decoder(z_aux[idx]), aux[idx])
                    loss.backward()
                    opt.step()
                    schedule.step()
                    total += float(loss.detach()) * len(idx)
                losses.append(total / len(aux))
        with torch.no_grad():
            return decoder.eval()(z), {"decoder_loss_per_epoch": losses}

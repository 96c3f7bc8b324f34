"""Black-box inverse network (He, Zhang and Lee, ACSAC 2019).

The server does not know the client's weights. It owns auxiliary images from the same distribution
and can query the client segment on them (query access: e.g. through the client's inference
service), so it learns a decoder from activations back to inputs and applies it to the
activations it observes. He et al. report SSIM ~0.99 on MNIST at shallow cuts.

Auxiliary data: by default the last ``aux_size`` training images of the data set, which are
disjoint from the held-out test images attacked and scored. The queries are simulated by running a
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

    The fully connected path sees the whole activation, so it can undo pooling and deep cuts where
    each spatial cell mixes a wide patch of the input; the conv path (on the activation upsampled
    to the image size, next to the coarse image) adds the local detail shallow cuts keep. A purely
    convolutional decoder of a few 3x3 layers sees too little of an 8x8 or 4x4 map: at LeNet's
    relu2 it collapsed to the mean image (SSIM 0.29), against 0.80 with the global path.
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

    def __init__(self, *, auxiliary: torch.Tensor | None = None, aux_size: int = 1000, epochs: int = 10,
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
            losses = []
            for _ in range(self.epochs):
                for idx in torch.randperm(len(aux), generator=order_gen).split(self.batch_size):
                    opt.zero_grad(set_to_none=True)
                    loss = F.mse_loss(decoder(z_aux[idx]), aux[idx])
                    loss.backward()
                    opt.step()
                losses.append(float(loss.detach()))
        with torch.no_grad():
            return decoder.eval()(z), {"decoder_loss_per_epoch": losses}

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

from secsplit.attacks.base import ATTACKS, NotApplicable, ThreatModel
from secsplit.attacks.reconstruction_base import ReconstructionAttack, frozen_copy
from secsplit.errors import ConfigError


class _Decoder(nn.Module):
    """Activations -> images: conv layers after upsampling for feature maps, an MLP for flat vectors."""

    def __init__(self, z_shape: tuple[int, ...], x_shape: tuple[int, ...], width: int = 64) -> None:
        super().__init__()
        self.x_shape = x_shape
        channels = x_shape[0]
        if len(z_shape) == 3:
            self.body = nn.Sequential(
                nn.Conv2d(z_shape[0], width, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width, channels, 3, padding=1))
            self.conv = True
        else:
            size = int(torch.Size(x_shape).numel())
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(z_shape).numel()), 8 * width), nn.ReLU(),
                                      nn.Linear(8 * width, size))
            self.conv = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.conv:
            z = F.interpolate(z, size=self.x_shape[1:], mode="bilinear", align_corners=False)
            return torch.sigmoid(self.body(z))
        return torch.sigmoid(self.body(z)).view(-1, *self.x_shape)


@ATTACKS.register("inverse-network")
class InverseNetwork(ReconstructionAttack):
    """Black-box inverse network (He et al., ACSAC'19): learn activations -> inputs on queried auxiliary data.

    Args:
        auxiliary: the attacker's own images (N, C, H, W) in [0, 1]; default: the last ``aux_size``
            training images of the audited data set.
        aux_size: how many auxiliary images to take by default.
        epochs, lr, batch_size: decoder training.
        targets, max_targets, phase, seed: see :class:`ReconstructionAttack`.
    """

    name = "inverse-network"
    threat_model = ThreatModel(attacker="server", behaviour="honest-but-curious",
                               knows=("query-access", "auxiliary-data"), target="inputs")

    def __init__(self, *, auxiliary: torch.Tensor | None = None, aux_size: int = 1000, epochs: int = 10,
                 lr: float = 1e-3, batch_size: int = 64, targets: torch.Tensor | None = None, max_targets: int = 32,
                 phase: str = "eval", seed: int = 0) -> None:
        super().__init__(targets=targets, max_targets=max_targets, phase=phase, seed=seed)
        if aux_size < 1 or epochs < 1 or lr <= 0 or batch_size < 1:
            raise ConfigError(f"{self.name} needs aux_size, epochs, batch_size >= 1 and lr > 0")
        self.auxiliary, self.aux_size, self.epochs, self.lr, self.batch_size = auxiliary, aux_size, epochs, lr, batch_size

    def check_applicable(self, topology, dataset) -> None:
        super().check_applicable(topology, dataset)
        if self.auxiliary is None:
            if dataset is None:
                raise NotApplicable("inverse-network needs auxiliary images (auxiliary=) or a data set to draw them from")
            self.auxiliary = dataset.x_train[-self.aux_size:]

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

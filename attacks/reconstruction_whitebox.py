"""White-box model inversion (rMLE) of He, Zhang and Lee, "Model inversion attacks against
collaborative inference", ACSAC 2019.

The server knows the client segment f (its weights) and observes z = f(x). It searches the input
space for x' minimizing ||f(x') - z||^2 + lambda * TV(x') with Adam, x' kept in [0, 1] by clipping
after each step (projected gradient; a sigmoid parameterization is an option), starting from a
constant 0.5 image. He et al. report SSIM ~0.997 on MNIST when
cutting after the first convolution and ~0.6 after the second ReLU.

The squared error is normalized by the mean square of z per sample (so one ``tv_weight`` works at
every cut depth); each sample is optimized independently (the loss is a sum over the batch).
"""

from __future__ import annotations

import torch
from torch import nn

from secsplit.attacks.base import ATTACKS, ThreatModel
from secsplit.attacks.reconstruction_base import ReconstructionAttack, frozen_copy, relative_mse, total_variation
from secsplit.errors import ConfigError


BOXES = ("projected", "sigmoid")


def invert(segment: nn.Module, z: torch.Tensor, input_shape, *, steps: int = 1000, lr: float = 0.01,
           tv_weight: float = 0.001, init: str = "constant", box: str = "projected",
           seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Find inputs in [0, 1] whose ``segment`` outputs match ``z``; returns (images, loss history every 100 steps).

    ``box``: how x stays in [0, 1]. "projected" (default) takes Adam steps on x itself and clips
    after each; it reaches the exact 0 and 1 that image backgrounds and strokes sit at. "sigmoid"
    optimizes w with x = sigmoid(w) and never quite gets there: a 0.005 offset on a black
    background costs SSIM ~20% in flat regions (LeNet on MNIST after 3,000 steps: SSIM 0.94 at relu1
    and 0.81 at relu2 with the sigmoid, 1.00 and 0.999 projected).
    """
    if box not in BOXES:
        raise ConfigError(f"box must be one of {', '.join(BOXES)}, got {box!r}")
    device = z.device
    shape = (z.shape[0], *input_shape)
    if init == "constant":
        w = torch.zeros(shape, device=device)
    elif init == "noise":
        w = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).mul_(0.1).to(device)
    else:
        raise ConfigError(f"init must be 'constant' or 'noise', got {init!r}")
    if box == "projected":
        w = (w + 0.5).clamp_(0, 1)  # the same starting images as sigmoid(w)
    w.requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    image = torch.sigmoid if box == "sigmoid" else (lambda v: v)
    history = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        x = image(w)
        loss = (relative_mse(segment(x), z) + tv_weight * total_variation(x)).sum()
        loss.backward()
        opt.step()
        if box == "projected":
            with torch.no_grad():
                w.clamp_(0, 1)
        if step % 100 == 0 or step == steps - 1:
            history.append(float(loss.detach()) / shape[0])
    return image(w).detach(), history


@ATTACKS.register("whitebox-inversion")
class WhiteBoxInversion(ReconstructionAttack):
    """rMLE white-box model inversion (He et al., ACSAC'19): optimize an input to match the activations.

    Args:
        client_segment: the client segment's weights as the attacker knows them; default: the
            topology's own client segment (``topology.segments[0]``), copied at attack time (the
            threat model grants white-box access to the client's weights).
        steps, lr: Adam steps and learning rate on the input (default lr: 0.01 projected, 0.1 sigmoid).
        tv_weight: weight of the total-variation prior.
        init: "constant" (0.5 everywhere) or "noise".
        box: keep the input in [0, 1] by clipping after each step ("projected") or by a sigmoid.
        targets, max_targets, phase, seed, attacker: see :class:`ReconstructionAttack`.
    """

    name = "whitebox-inversion"
    threat_model = ThreatModel(attacker="server", behaviour="honest-but-curious",
                               knows=("client-architecture", "client-weights"), target="inputs")

    def __init__(self, *, client_segment: nn.Module | None = None, steps: int = 3000, lr: float | None = None,
                 tv_weight: float = 0.001, init: str = "constant", box: str = "projected",
                 targets: torch.Tensor | None = None, max_targets: int = 32, phase: str = "eval", seed: int = 0,
                 attacker: str | None = None) -> None:
        super().__init__(targets=targets, max_targets=max_targets, phase=phase, seed=seed, attacker=attacker)
        if box not in BOXES:
            raise ConfigError(f"box must be one of {', '.join(BOXES)}, got {box!r}")
        lr = (0.01 if box == "projected" else 0.1) if lr is None else lr  # x itself vs the sigmoid's logits
        if steps < 1 or lr <= 0 or tv_weight < 0:
            raise ConfigError(f"{self.name} needs steps >= 1, lr > 0, tv_weight >= 0; got {steps}, {lr}, {tv_weight}")
        if init not in ("constant", "noise"):
            raise ConfigError(f"init must be 'constant' or 'noise', got {init!r}")
        self.client_segment = client_segment
        self.steps, self.lr, self.tv_weight, self.init, self.box = steps, lr, tv_weight, init, box

    def params(self) -> dict:
        return {"steps": self.steps, "lr": self.lr, "tv_weight": self.tv_weight, "init": self.init, "box": self.box}

    def reconstruct(self, z):
        segment = frozen_copy(self.client_segment if self.client_segment is not None else self.topology.segments[0])
        segment.to(z.device)
        x, history = invert(segment, z, self.input_shape, steps=self.steps, lr=self.lr, tv_weight=self.tv_weight,
                            init=self.init, box=self.box, seed=self.seed)
        return x, {"loss_history": history}

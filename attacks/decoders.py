"""The learned inverse (activations -> images) that the inverse network and SDAR share, and how it is fitted.

One builder (:class:`ImageDecoder`), one loss (:func:`image_loss`: MSE plus ``ssim_weight`` x (1 - SSIM)) and
one fitting loop (:func:`fit_decoder`: one-cycle Adam, the epoch with the best held-out score kept), so the
two attacks differ only in the features they decode: the client's own (the inverse network queries the
client) or a simulator's (SDAR never does).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from secsplit.metrics import SSIM_WINDOW
from secsplit.metrics import ssim_per_image as metric_ssim_per_image


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


def geometry_plan(small: tuple[int, int], big: tuple[int, int]) -> tuple[int, tuple[int, int]] | None:
    """(doublings, start size) with start * 2**doublings == big and start >= small per side, or None.

    Mirrors how convolutional clients shrink an image: unpadded convolutions trim a few pixels, pooling
    halves. The decoder first grows ``small`` to ``start`` with an unpadded transposed convolution, then
    doubles: each decoder pixel then stands where its features came from (a bilinear resize would
    stretch the map and shift every pixel by a different amount, which no convolution can undo).
    """
    doublings = 0
    while all(b % 2 ** (doublings + 1) == 0 and b // 2 ** (doublings + 1) >= s for s, b in zip(small, big)):
        doublings += 1
    start = tuple(b // 2 ** doublings for b in big)
    return (doublings, start) if all(0 <= st - s <= 8 for s, st in zip(small, start)) else None


class ImageDecoder(nn.Module):
    """Activations -> images, shaped like the cut's geometry.

    Spatial cuts: convolutions at the map's resolution, an unpadded transposed convolution to the
    size the image has at that depth, then transposed convolutions that double it (the client's
    pooling in reverse). Flat cuts: a fully connected layer to a small map (an image prior), then
    the same doublings. BatchNorm throughout. The earlier design (a fully connected global path plus a
    conv refinement on a bilinearly resized map) was weaker on MNIST LeNet: SSIM 0.57 / 0.49 / 0.32 at
    relu1 / pool1 / pool2 with 500 images x 5 epochs (this one: 0.98 / 0.97 / 0.85, similar CPU time),
    0.960 at pool1 with 3,000 x 20 (this one: 0.99 with 3,000 x 10).
    """

    def __init__(self, z_shape: tuple[int, ...], x_shape: tuple[int, ...], width: int = 64) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        z_size, x_size = int(torch.Size(z_shape).numel()), int(torch.Size(x_shape).numel())
        self.image = len(x_shape) == 3
        if not self.image:
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(z_size, 8 * width), nn.ReLU(), nn.Linear(8 * width, x_size))
            return
        channels, size = x_shape[0], tuple(x_shape[1:])
        plan = geometry_plan(tuple(z_shape[1:]), size) if len(z_shape) == 3 else None
        if len(z_shape) == 3 and plan is not None:
            doublings, start = plan
            if start[0] * start[1] > 256:  # full-resolution maps: a quarter of the channels
                width //= 4
            stem = [*_block(z_shape[0], width), *_block(width, width)]
            kernel = tuple(st - s + 1 for s, st in zip(z_shape[1:], start))
            if kernel != (1, 1):
                stem += [nn.ConvTranspose2d(width, width, kernel), nn.BatchNorm2d(width), nn.ReLU()]
        else:  # flat cut (or a map whose geometry does not fit): a learned map of the image's coarse layout
            doublings, start = geometry_plan((4, 4), size) or (0, size)
            stem = [nn.Flatten(), nn.Linear(z_size, width * start[0] * start[1]), nn.Unflatten(1, (width, *start)),
                    nn.BatchNorm2d(width), nn.ReLU(), *_block(width, width)]
        layers, c = stem, width
        for _ in range(doublings):
            layers += [nn.ConvTranspose2d(c, max(c // 2, 16), 4, stride=2, padding=1), nn.BatchNorm2d(max(c // 2, 16)),
                       nn.ReLU()]
            c = max(c // 2, 16)
        layers += [*_block(c, c), nn.Conv2d(c, channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        if self.image and tuple(out.shape[1:]) != self.x_shape:
            out = F.interpolate(out, size=self.x_shape[1:], mode="bilinear", align_corners=False)
        return torch.sigmoid(out).reshape(-1, *self.x_shape)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable SSIM per image of [0, 1] images (:func:`secsplit.metrics.ssim_per_image`), shape (N,);
    0 for images smaller than its 7x7 window (they are scored by MSE alone)."""
    if min(x.shape[-2:]) < SSIM_WINDOW:
        return torch.zeros(len(x), device=x.device)
    return metric_ssim_per_image(x, y)


def image_loss(rec: torch.Tensor, x: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """MSE plus ``ssim_weight`` x (1 - SSIM) for images (MSE alone for other inputs)."""
    loss = F.mse_loss(rec, x)
    if ssim_weight and x.dim() == 4:
        loss = loss + ssim_weight * (1 - ssim_per_image(rec, x)).mean()
    return loss


def held_out_score(rec: torch.Tensor, x: torch.Tensor) -> float:
    """What picks the best epoch: mean SSIM for images, -MSE otherwise."""
    return float(-F.mse_loss(rec, x) if x.dim() != 4 else ssim_per_image(rec, x).mean())


def held_out_size(n: int, batch_size: int) -> int:
    """How many of ``n`` auxiliary samples are held out to pick the best epoch: a tenth, at least one
    batch (or half), always leaving one to train on."""
    return min(max(n // 10, min(batch_size, n // 2)), n - 1)


def fit_decoder(decoder: nn.Module, z_train: torch.Tensor, x_train: torch.Tensor, z_val: torch.Tensor,
                x_val: torch.Tensor, *, epochs: int, lr: float, batch_size: int, ssim_weight: float,
                generator: torch.Generator, refresh: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
                start_is_candidate: bool = False) -> dict:
    """Train ``decoder`` on (z_train -> x_train) with one-cycle Adam; keep the epoch that scores best on (z_val, x_val).

    ``refresh``, when given, returns fresh (z, x) training pairs at the start of every epoch (the inverse
    network's shifted queries). ``start_is_candidate``: the decoder as passed in competes too (a warm
    start is kept if no epoch beats it). Returns the per-epoch training losses, held-out scores and the
    kept epoch (0: the start).
    """
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    per_epoch = -(-len(x_train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch)
    losses, scores, best = [], [], (-float("inf"), None, 0)
    if start_is_candidate:
        with torch.no_grad():
            best = (held_out_score(decoder.eval()(z_val), x_val), copy.deepcopy(decoder.state_dict()), 0)
    for epoch in range(epochs):
        decoder.train()
        if refresh is not None:
            z_train, x_train = refresh()
        total = 0.0
        for idx in torch.randperm(len(x_train), generator=generator).split(batch_size):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            loss = image_loss(decoder(z_train[idx]), x_train[idx], ssim_weight)
            loss.backward()
            opt.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x_train))
        with torch.no_grad():
            score = held_out_score(decoder.eval()(z_val), x_val)
        scores.append(score)
        if score > best[0]:
            best = (score, copy.deepcopy(decoder.state_dict()), epoch + 1)
    decoder.load_state_dict(best[1])
    decoder.eval()
    return {"decoder_loss_per_epoch": losses, "held_out_score_per_epoch": scores, "best_epoch": best[2]}

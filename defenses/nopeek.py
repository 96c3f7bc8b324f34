"""NoPeek: make what leaves the client carry less information about the raw input.

Vepakomma et al., "NoPeek: Information leakage reduction to share activations in distributed deep
learning" (2019): the client minimizes ``alpha * dCor(X, Z) + task loss``, where dCor is the
(biased) distance correlation between the raw batch X and its cut-layer output Z.
"""

from __future__ import annotations

import torch

from secsplit.defenses.base import DEFENSES, Defense
from secsplit.errors import ConfigError
from secsplit.stats import distance_correlation


class _ClipGradient(torch.autograd.Function):
    """Identity forward; backward rescales the incoming gradient to norm <= max_norm.

    The dCor gradient blows up as the batch's spread shrinks; clipping only the regularizer's path
    keeps the task gradient from the server untouched.
    """

    @staticmethod
    def forward(ctx, z, max_norm):
        ctx.max_norm = max_norm
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        norm = grad.norm()
        if torch.isfinite(norm) and norm > ctx.max_norm:
            grad = grad * (ctx.max_norm / norm)
        return torch.nan_to_num(grad), None


@DEFENSES.register("nopeek")
class NoPeek(Defense):
    """Add alpha * dCor(X, Z) to the client's loss (NoPeek) so activations decorrelate from inputs.

    Args:
        alpha: weight of the distance-correlation term (0 disables it).
        max_grad_norm: bound on the norm of the regularizer's gradient w.r.t. Z per step.
    """

    name = "nopeek"
    addresses = "input reconstruction from activations (inversion, inverse networks, UnSplit)"
    threat_model = "honest-but-curious server or eavesdropper observing cut-layer activations; no formal guarantee"

    def __init__(self, *, alpha: float = 0.5, max_grad_norm: float = 1.0) -> None:
        if alpha < 0:
            raise ConfigError(f"nopeek alpha must be >= 0, got {alpha}")
        if not max_grad_norm > 0:
            raise ConfigError(f"nopeek max_grad_norm must be > 0, got {max_grad_norm}")
        self.alpha = alpha
        self.max_grad_norm = max_grad_norm
        self.last_dcor: float | None = None

    def extra_loss(self, x, z, *, party, step):
        if self.alpha == 0 or x.shape[0] < 2:
            return None
        dcor = distance_correlation(x.detach(), _ClipGradient.apply(z, self.max_grad_norm))
        self.last_dcor = float(dcor.detach())
        return (self.alpha * dcor).to(z.dtype)

    def params(self):
        return {"alpha": self.alpha, "max_grad_norm": self.max_grad_norm}

"""Label protection on returned gradients: Gaussian noise, sparsification and max-norm alignment
(Li et al.'s scaling along the gradient, and an isotropic variant).

In two-party split learning the label owner sends back the gradient of the loss at the cut, and
that gradient's norm and direction reveal each sample's label (Li et al., ICLR'22: the norm and
direction attacks). These defenses perturb the gradient the *label owner* returns, per sample; the
gradients other parties send (in U-shape or multi-hop) carry no fresh label signal of their own and
are left untouched. Each defense records the topology in ``on_setup`` to know who the label owner
is; :meth:`LabelGradientDefense.perturb` is the pure per-batch transformation.
"""

from __future__ import annotations

import math
import time

import torch

from secsplit.callbacks import SeededGenerator
from secsplit.defenses.base import DEFENSES, Defense
from secsplit.errors import ConfigError

SPARSIFICATION_METHODS = ("topk", "random")


def per_sample_norms(grad: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample's gradient (first dimension = batch)."""
    return grad.reshape(grad.shape[0], -1).norm(dim=1)


def _check_number(name: str, value, *, low: float = 0.0, high: float | None = None, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if (value <= low if low_open else value < low) or (high is not None and value > high):
        bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}{']' if high is not None else ')'}"
        raise ConfigError(f"{name} must be in {bounds}, got {value!r}")
    return float(value)


class LabelGradientDefense(Defense):
    """Base of defenses that perturb the gradient the label owner sends back (not registered).

    Subclasses implement :meth:`perturb` on one batch; this class acts only for the label owner,
    keeps the labels it trains with (some defenses need them), seeds the generator and times itself.
    """

    addresses = "label inference from returned gradients (norm and direction attacks, Li et al. ICLR'22)"
    threat_model = ("honest-but-curious non-label party (the client in vanilla with server-held labels) "
                    "that observes the per-sample gradients the label owner sends back")

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = int(seed)
        self.label_owner: str | None = None
        self.random = SeededGenerator(self.seed)
        self.labels: torch.Tensor | None = None
        self.steps = 0
        self.seconds = 0.0

    def on_setup(self, trainer) -> None:
        self.label_owner = trainer.topology.label_owner

    def transform_labels(self, y, *, party, step):
        if party == self.label_owner:
            self.labels = y.detach()  # the labels this step's loss (and so its gradient) is built from
        return y

    def transform_gradient(self, grad, *, party, step):
        if self.label_owner is None:
            raise ConfigError(f"the {self.name} defense must be attached through a Trainer (on_setup) to know the label owner")
        if party != self.label_owner:
            return grad
        start = time.perf_counter()
        out = self.perturb(grad, labels=self.labels)
        self.steps += 1
        self.seconds += time.perf_counter() - start
        return out

    def _gen(self, device: torch.device) -> torch.Generator:
        return self.random.on(device)

    def state_dict(self):
        return {"generator": self.random.state(), "steps": self.steps}

    def load_state_dict(self, state):
        self.random.restore(state["generator"])
        self.steps = int(state["steps"])

    def _randn(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=self._gen(like.device))

    def perturb(self, grad: torch.Tensor, *, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The defended version of one batch of gradients (batch first); never modifies ``grad``."""
        raise NotImplementedError

    def report(self) -> dict:
        return {**super().report(), "steps": self.steps, "seconds": self.seconds}


@DEFENSES.register("gradient-noise")
class GradientNoise(LabelGradientDefense):
    """Add isotropic Gaussian noise to the per-sample gradients the label owner sends back.

    Args:
        scale: the noise standard deviation per coordinate; with ``relative`` (default) it is a
            multiple of the batch's mean per-sample gradient L2 norm, so the same ``scale`` means the
            same protection whatever the batch size (the mean-reduced loss makes gradients ~ 1/B).
            The noise vector's norm is then about ``scale * sqrt(d) * mean norm`` for d coordinates.
        relative: std = scale * mean per-sample norm (True) or std = scale (False).
        seed: seeds the noise generator.
    """

    name = "gradient-noise"

    def __init__(self, *, scale: float = 1.0, relative: bool = True, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.scale = _check_number("scale", scale)
        self.relative = bool(relative)
        self.last_std: float | None = None

    def std_for(self, grad: torch.Tensor) -> float:
        if not self.relative:
            return self.scale
        return self.scale * float(per_sample_norms(grad.detach()).mean()) if grad.shape[0] else 0.0

    def perturb(self, grad, *, labels=None):
        std = self.last_std = self.std_for(grad)
        return grad + std * self._randn(grad) if std > 0 else grad.clone()

    def params(self):
        return {"scale": self.scale, "relative": self.relative, "seed": self.seed}


def keep_count(keep: float, d: int) -> int:
    """How many of ``d`` entries a sample keeps at fraction ``keep``: ceil(keep * d), at least 1."""
    return min(d, max(1, math.ceil(keep * d - 1e-9)))


@DEFENSES.register("gradient-sparsification")
class GradientSparsification(LabelGradientDefense):
    """Keep only a fraction of each sample's returned gradient entries (top-k or random), zero the rest.

    Args:
        keep: fraction of entries kept per sample, 0 < keep <= 1 (ceil(keep * d) entries, at least one).
        method: "topk" (largest magnitudes, deterministic) or "random" (uniform, seeded).
        seed: seeds the random selection.
    """

    name = "gradient-sparsification"
    aliases = {"frac": "keep"}

    def __init__(self, *, keep: float = 0.1, method: str = "topk", seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.keep = _check_number("keep", keep, low=0.0, high=1.0, low_open=True)
        if method not in SPARSIFICATION_METHODS:
            raise ConfigError(f"unknown sparsification method {method!r}; valid: {', '.join(SPARSIFICATION_METHODS)}")
        self.method = method

    def mask(self, grad: torch.Tensor) -> torch.Tensor:
        """Boolean mask (shape of ``grad``) of the entries each sample keeps."""
        flat = grad.detach().reshape(grad.shape[0], -1)
        k = keep_count(self.keep, flat.shape[1])
        if self.method == "topk":
            index = flat.abs().topk(k, dim=1).indices
        else:
            scores = torch.rand(flat.shape, device=flat.device, generator=self._gen(flat.device))
            index = scores.topk(k, dim=1).indices
        mask = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
        mask.scatter_(1, index, True)
        return mask.reshape(grad.shape)

    def perturb(self, grad, *, labels=None):
        if grad.shape[0] == 0:
            return grad.clone()
        return torch.where(self.mask(grad), grad, torch.zeros_like(grad))

    def params(self):
        return {"keep": self.keep, "method": self.method, "seed": self.seed}


@DEFENSES.register("max-norm")
class MaxNormAlignment(LabelGradientDefense):
    """Li et al.'s max-norm heuristic (ICLR'22, section 4.1): scale each returned gradient along itself
    by a random factor so every sample's *expected squared norm* equals the batch's largest.

    Sample i is sent g_i * (1 + sigma_i * xi_i), one standard normal xi_i per sample and
    sigma_i = sqrt(max_j ||g_j||^2 / ||g_i||^2 - 1), so E||g_i'||^2 = max_j ||g_j||^2 for every i (the
    authors' code, ``gradient_masking`` in OscarcarLi/label-protection). The noise lies along the
    gradient itself: the direction is kept up to a sign, and the sign flips (1 + sigma_i xi_i < 0)
    often for the small gradients, which is what blunts the direction (cosine) attack too. The
    isotropic variant (noise spread over every coordinate) is ``max-norm-isotropic``.

    Args:
        seed: seeds the noise generator.
    """

    name = "max-norm"
    addresses = "label inference from returned gradient norms (norm attack, Li et al. ICLR'22)"

    def scale_std(self, grad: torch.Tensor) -> torch.Tensor:
        """Per-sample sigma_i, shaped to broadcast against ``grad``."""
        sq = grad.detach().reshape(grad.shape[0], -1).pow(2).sum(dim=1)
        std = (sq.max() / sq.clamp_min(1e-32) - 1).clamp_min(0).sqrt()
        std = torch.where(sq > 0, std, torch.zeros_like(std))  # a zero gradient stays zero
        return std.view(-1, *([1] * (grad.dim() - 1)))

    def perturb(self, grad, *, labels=None):
        if grad.shape[0] == 0:
            return grad.clone()
        xi = torch.randn((grad.shape[0],) + (1,) * (grad.dim() - 1), dtype=grad.dtype, device=grad.device,
                         generator=self._gen(grad.device))
        return grad * (1 + self.scale_std(grad) * xi)

    def params(self):
        return {"seed": self.seed}


@DEFENSES.register("max-norm-isotropic")
class IsotropicMaxNorm(LabelGradientDefense):
    """Pad every sample's returned gradient with isotropic Gaussian noise up to the batch's max expected norm.

    A variant of Li et al.'s max-norm (which scales the gradient along itself, ``max-norm``): sample i
    gets noise with per-coordinate variance (max_j ||g_j||^2 - ||g_i||^2) / d, so
    E||g_i + noise||^2 = max_j ||g_j||^2 for every i. Directions are barely perturbed: the cosine
    attack is unaffected.

    Args:
        seed: seeds the noise generator.
    """

    name = "max-norm-isotropic"
    addresses = "label inference from returned gradient norms (norm attack, Li et al. ICLR'22)"

    def noise_std(self, grad: torch.Tensor) -> torch.Tensor:
        """Per-sample noise std, shaped to broadcast against ``grad``."""
        flat = grad.detach().reshape(grad.shape[0], -1)
        sq = flat.pow(2).sum(dim=1)
        std = ((sq.max() - sq).clamp_min(0) / flat.shape[1]).sqrt()
        return std.view(-1, *([1] * (grad.dim() - 1)))

    def perturb(self, grad, *, labels=None):
        if grad.shape[0] == 0:
            return grad.clone()
        return grad + self.noise_std(grad) * self._randn(grad)

    def params(self):
        return {"seed": self.seed}

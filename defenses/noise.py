"""Activation noise: clip each release, add Laplace or Gaussian noise, state the local-DP epsilon."""

from __future__ import annotations

import time

import torch

from secsplit.callbacks import SeededGenerator
from secsplit.defenses import dp_math
from secsplit.defenses.base import DEFENSES, Defense
from secsplit.errors import ConfigError

MECHANISMS = ("laplace", "gaussian")


def clip_per_sample(z: torch.Tensor, clip: float, *, p: int) -> torch.Tensor:
    """Scale each sample of ``z`` down to Lp norm <= clip (p=1 or 2); differentiable."""
    flat = z.reshape(z.shape[0], -1)
    norms = flat.norm(p=p, dim=1).clamp_min(1e-12)
    factor = (clip / norms).clamp(max=1.0)
    return z * factor.view(-1, *([1] * (z.dim() - 1)))


@DEFENSES.register("noise")
class ActivationNoise(Defense):
    """Clip each cut-layer output to norm C, then add Laplace or Gaussian noise (local DP per release).

    Args:
        mechanism: "laplace" (pure epsilon, L1 clipping) or "gaussian" ((epsilon, delta), L2 clipping).
        clip: the norm bound C of each sample's release.
        scale: noise scale (Laplace b, or Gaussian sigma); give either ``scale`` or ``epsilon``.
        epsilon: target epsilon per release; the scale is derived from it.
        delta: delta for the Gaussian mechanism (and for advanced composition of Laplace releases).
        seed: seeds the noise generator.
        at_eval: also noise releases at inference (what leaves the client then leaks too).
    """

    name = "noise"
    aliases = {"mech": "mechanism"}
    addresses = "input reconstruction from activations (inversion, inverse networks, UnSplit); also lowers dCor"
    threat_model = "honest-but-curious server or eavesdropper that observes the client's cut-layer releases"

    def __init__(self, *, mechanism: str = "laplace", clip: float = 1.0, scale: float | None = None,
                 epsilon: float | None = None, delta: float = 1e-5, seed: int = 0, at_eval: bool = True) -> None:
        if mechanism not in MECHANISMS:
            raise ConfigError(f"unknown noise mechanism {mechanism!r}; valid: {', '.join(MECHANISMS)}")
        if (scale is None) == (epsilon is None):
            raise ConfigError("noise defense needs exactly one of scale= or epsilon=")
        self.mechanism, self.clip, self.delta, self.seed, self.at_eval = mechanism, clip, delta, seed, at_eval
        if mechanism == "laplace":
            self.scale = scale if scale is not None else dp_math.laplace_scale(clip=clip, epsilon=epsilon)
            self.per_release = dp_math.laplace_epsilon(clip=clip, scale=self.scale)
        else:
            self.scale = scale if scale is not None else dp_math.gaussian_sigma(clip=clip, epsilon=epsilon, delta=delta)
            self.per_release = dp_math.gaussian_epsilon(clip=clip, sigma=self.scale, delta=delta)
        self.random = SeededGenerator(seed)
        self.epochs = 0
        self.seconds = 0.0

    def transform_activation(self, z, *, party, step, phase):
        if phase != "train" and not self.at_eval:
            return z
        start = time.perf_counter()
        clipped = clip_per_sample(z, self.clip, p=1 if self.mechanism == "laplace" else 2)
        out = clipped + self.sample_noise(z.shape, z.dtype, z.device)
        self.seconds += time.perf_counter() - start
        return out

    def sample_noise(self, shape, dtype, device) -> torch.Tensor:
        """Laplace(0, b) as b * (E1 - E2) with E exponential(1); Gaussian N(0, sigma^2)."""
        g = self.random.on(device)
        if self.mechanism == "laplace":
            e1 = torch.empty(shape, dtype=dtype, device=device).exponential_(generator=g)
            e2 = torch.empty(shape, dtype=dtype, device=device).exponential_(generator=g)
            return self.scale * (e1 - e2)
        return self.scale * torch.randn(shape, dtype=dtype, device=device, generator=g)

    def on_epoch_end(self, *, epoch, metrics):
        self.epochs = epoch  # each epoch releases every training sample once

    def state_dict(self):
        """The generator goes on where it stopped: a replayed draw on two releases would cancel in their difference."""
        return {"generator": self.random.state(), "epochs": self.epochs}

    def load_state_dict(self, state):
        self.random.restore(state["generator"])
        self.epochs = int(state["epochs"])

    def params(self):
        return {"mechanism": self.mechanism, "clip": self.clip, "scale": self.scale, "delta": self.delta}

    def epsilon(self) -> dict:
        """Per-release epsilon and its composition over the epochs trained so far."""
        k = max(self.epochs, 1)
        if self.mechanism == "laplace":
            composed, composed_delta = dp_math.compose_pure(self.per_release, k, delta_slack=self.delta)
            per_release_delta = 0.0
        else:
            composed = dp_math.gaussian_epsilon(clip=self.clip, sigma=self.scale, delta=self.delta, releases=k)
            composed_delta = per_release_delta = self.delta
        return {"per_release": self.per_release, "per_release_delta": per_release_delta, "releases": k,
                "composed": composed, "composed_delta": composed_delta, "notion": "local DP per sample (replace-one)"}

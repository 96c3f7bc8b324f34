"""Distance correlation in torch: differentiable, batched, float64 inside.

Lives in the core because a defense (NoPeek) optimizes it and the evaluation reports it.
Two estimators:

- ``"biased"``: the V-statistic dCor of Szekely et al. (``dcor.distance_correlation``), the one
  NoPeek minimizes. It is biased upward: for independent 784-d and 400-d data it is ~0.90 at
  n=512 and ~0.98 at n=64, so alone it overstates leakage.
- ``"unbiased"``: the bias-corrected *squared* distance correlation from U-centered distance
  matrices (``dcor.u_distance_correlation_sqr``), ~0 for independent data; use it for reports.
"""

from __future__ import annotations

import torch

from secsplit.errors import ConfigError

ESTIMATORS = ("biased", "unbiased")


def _distances(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Pairwise Euclidean distances with a finite gradient at 0 (sqrt of squared distance + eps)."""
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    d2 = d2 * (1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device))  # exact zeros on the diagonal
    return torch.sqrt(d2 + eps) - eps**0.5


def _double_center(d: torch.Tensor) -> torch.Tensor:
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def _u_center(d: torch.Tensor) -> torch.Tensor:
    n = d.shape[0]
    row = d.sum(1, keepdim=True) / (n - 2)
    col = d.sum(0, keepdim=True) / (n - 2)
    total = d.sum() / ((n - 1) * (n - 2))
    centered = d - row - col + total
    return centered * (1.0 - torch.eye(n, dtype=d.dtype, device=d.device))


def _prepare(x: torch.Tensor, z: torch.Tensor, estimator: str) -> tuple[torch.Tensor, torch.Tensor]:
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown dCor estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if not isinstance(x, torch.Tensor) or not isinstance(z, torch.Tensor):
        raise ConfigError("distance correlation needs two tensors")
    if x.shape[0] != z.shape[0]:
        raise ConfigError(f"distance correlation needs the same number of samples, got {x.shape[0]} and {z.shape[0]}")
    minimum = 4 if estimator == "unbiased" else 2
    if x.shape[0] < minimum:
        raise ConfigError(f"the {estimator} dCor estimator needs at least {minimum} samples, got {x.shape[0]}")
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    z = z.reshape(z.shape[0], -1).to(torch.float64)
    if not (torch.isfinite(x).all() and torch.isfinite(z).all()):
        raise ConfigError("distance correlation inputs contain NaN or infinite values")
    # dCor is scale-invariant, so dividing by a detached scale changes neither value nor gradient,
    # and it makes the epsilons below relative to the data's spread.
    return x / _scale(x), z / _scale(z)


def _scale(x: torch.Tensor) -> torch.Tensor:
    return x.detach().std(0, correction=0).pow(2).sum().sqrt().clamp_min(1e-12)


def distance_correlation(x: torch.Tensor, z: torch.Tensor, *, estimator: str = "biased", eps: float = 1e-18) -> torch.Tensor:
    """Distance correlation between samples ``x`` (n, ...) and ``z`` (n, ...), as a float64 scalar.

    ``biased`` returns dCor in [0, 1]; ``unbiased`` returns the bias-corrected squared dCor (can
    be slightly negative). A constant input gives 0 with finite gradients, not NaN.
    """
    x, z = _prepare(x, z, estimator)
    center = _double_center if estimator == "biased" else _u_center
    a, b = center(_distances(x, eps)), center(_distances(z, eps))
    if estimator == "biased":
        n2 = x.shape[0] ** 2
        dcov2, dvar_x, dvar_z = (a * b).sum() / n2, (a * a).sum() / n2, (b * b).sum() / n2
        # eps inside the square roots keeps a collapsed (constant) input at 0 with finite gradients
        ratio = dcov2.clamp_min(0.0) / torch.sqrt(dvar_x * dvar_z + eps)
        return torch.sqrt(ratio + eps) - eps**0.5
    n = x.shape[0]
    scale = 1.0 / (n * (n - 3))
    dcov2, dvar_x, dvar_z = (a * b).sum() * scale, (a * a).sum() * scale, (b * b).sum() * scale
    denominator = torch.sqrt((dvar_x * dvar_z).clamp_min(0.0))
    if float(denominator.detach()) <= eps:
        return dcov2 * 0.0
    return dcov2 / denominator

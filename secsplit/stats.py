"""Distance correlation in torch: differentiable, vectorized over all sample pairs, float64 inside.

Lives in the core because a defense (NoPeek) optimizes it and the evaluation reports it.
Two estimators:

- ``"biased"``: the V-statistic dCor of Szekely et al. (equals ``dcor.distance_correlation``), the
  one NoPeek minimizes. It is biased upward for high-dimensional data: for independent 784-d and
  400-d Gaussian samples it is ~0.90 at n=512 and ~0.98 at n=64, so alone it overstates leakage.
- ``"unbiased"``: the bias-corrected *squared* distance correlation from U-centered distance
  matrices (equals ``dcor.u_distance_correlation_sqr``); ~0 for independent data, can be slightly
  negative. Use it for reports.
"""

from __future__ import annotations

import torch

from secsplit.errors import ConfigError

ESTIMATORS = ("biased", "unbiased")


def distance_correlation(
    x: torch.Tensor, z: torch.Tensor, *, estimator: str = "biased", eps: float = 1e-12
) -> torch.Tensor:
    """Distance correlation between paired samples ``x`` (n, ...) and ``z`` (n, ...).

    Each sample is flattened, so ``x`` may be images (n, C, H, W) and ``z`` activations (n, k).

    Args:
        x: n samples of the first variable.
        z: the n paired samples of the second variable.
        estimator: ``"biased"`` for dCor in [0, 1], ``"unbiased"`` for the bias-corrected squared
            dCor (needs n >= 4). See the module docstring.
        eps: added under every square root *in the backward pass only*, so gradients stay finite
            at zero distances and at dCor = 0; the returned value is exact. Units: squared
            distances of the data after centering and scaling to unit total variance.

    Returns:
        A float64 scalar tensor (whatever the input dtype), differentiable w.r.t. both inputs.
        A constant (collapsed) ``x`` or ``z`` gives exactly 0 with zero gradients, as in ``dcor``.

    Raises:
        ConfigError: unknown estimator, different sample counts, too few samples, NaN or inf.
    """
    x, z = _check(x, z, estimator)
    if _is_constant(x) or _is_constant(z):
        return (x.sum() + z.sum()) * 0.0
    dcov_xz, dvar_x, dvar_z = distance_covariance_sqr_terms(x, z, estimator=estimator, eps=eps)
    denominator = _safe_sqrt((dvar_x * dvar_z).abs(), eps)
    if estimator == "unbiased":
        return dcov_xz / denominator
    return _safe_sqrt((dcov_xz / denominator).clamp_min(0.0), eps)


def distance_covariance_sqr_terms(
    x: torch.Tensor, z: torch.Tensor, *, estimator: str = "biased", eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Squared distance covariance dCov^2(x, z) and the squared distance variances of x and z.

    Inputs are flattened per sample and cast to float64, as in :func:`distance_correlation`;
    ``"biased"`` gives the V-statistics (double centering, divided by n^2), ``"unbiased"`` the
    U-statistics (U-centering, divided by n(n-3)). Returned values are those of the data after
    centering and scaling each input to unit total variance (dCor does not change).
    """
    x, z = _check(x, z, estimator)
    a, b = (_centered_distances(_normalize(v), estimator, eps) for v in (x, z))
    n = x.shape[0]
    norm = n * n if estimator == "biased" else n * (n - 3)
    return (a * b).sum() / norm, (a * a).sum() / norm, (b * b).sum() / norm


def _check(x, z, estimator: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate at the boundary; return both inputs as (n, features) float64 tensors."""
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown dCor estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    x, z = torch.as_tensor(x), torch.as_tensor(z)
    if x.ndim == 0 or z.ndim == 0:
        raise ConfigError("distance correlation needs sample arrays of shape (n, ...), got a scalar")
    if x.shape[0] != z.shape[0]:
        raise ConfigError(f"distance correlation needs the same number of samples, got {x.shape[0]} and {z.shape[0]}")
    minimum = 4 if estimator == "unbiased" else 2
    if x.shape[0] < minimum:
        raise ConfigError(f"the {estimator} dCor estimator needs at least {minimum} samples, got {x.shape[0]}")
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    z = z.reshape(z.shape[0], -1).to(torch.float64)
    if x.shape[1] == 0 or z.shape[1] == 0:
        raise ConfigError("distance correlation needs at least one feature per sample")
    if not (torch.isfinite(x).all() and torch.isfinite(z).all()):
        raise ConfigError("distance correlation inputs contain NaN or infinite values")
    return x, z


def _is_constant(x: torch.Tensor) -> bool:
    return bool((x == x[:1]).all())


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Center and scale to unit total variance with detached statistics.

    Distances (and so dCor) do not change under translation and change only by a common factor
    under scaling, so neither the value of dCor nor its gradient changes; what this buys is
    (1) no cancellation in the Gram-matrix trick below when the data sit far from the origin and
    (2) an ``eps`` relative to the data's spread.
    """
    centered = x - x.detach().mean(0, keepdim=True)
    peak = centered.detach().abs().max()  # scale twice so squaring cannot under- or overflow
    if peak == 0:  # a constant input: its distances are all 0 anyway
        return centered
    spread = (centered.detach() / peak).pow(2).sum(1).mean().sqrt() * peak
    return centered / spread


def _centered_distances(x: torch.Tensor, estimator: str, eps: float) -> torch.Tensor:
    """Euclidean distance matrix of the rows of ``x``, double- or U-centered."""
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    off_diagonal = 1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device)
    d = _safe_sqrt(d2, eps) * off_diagonal  # the diagonal is exactly 0, with zero gradient
    n = len(x)
    if estimator == "biased":
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()
    row = d.sum(1, keepdim=True) / (n - 2)
    col = d.sum(0, keepdim=True) / (n - 2)
    total = d.sum() / ((n - 1) * (n - 2))
    return (d - row - col + total) * off_diagonal


def _safe_sqrt(t: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(t) in the forward pass; the gradient of sqrt(t + eps) in the backward pass.

    torch's sqrt has an infinite gradient at 0 (zero distances, dCor = 0); this keeps the value
    exact and the gradient finite.
    """
    smooth = torch.sqrt(t + eps)
    return smooth - (smooth - torch.sqrt(t)).detach()

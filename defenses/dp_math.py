"""Epsilon for the local-DP noise mechanisms on activations, and their composition.

Neighbouring inputs are any two samples (replace-one, local DP): after clipping each release to
norm C, two releases differ by at most 2C, so the sensitivity is 2C (L1 for Laplace, L2 for Gaussian).
"""

from __future__ import annotations

import math


from secsplit.errors import ConfigError


def laplace_epsilon(*, clip: float, scale: float) -> float:
    """Pure epsilon of the Laplace mechanism: L1 sensitivity 2C over scale b."""
    _positive(clip=clip, scale=scale)
    return 2.0 * clip / scale


def laplace_scale(*, clip: float, epsilon: float) -> float:
    """The Laplace scale b that gives ``epsilon`` per release."""
    _positive(clip=clip, epsilon=epsilon)
    return 2.0 * clip / epsilon


def gaussian_delta(*, epsilon: float, mu: float) -> float:
    """delta(epsilon) of a Gaussian mechanism with sensitivity/sigma = mu (Balle & Wang 2018, Thm. 8)."""
    # the second term in log space: e^epsilon overflows long before the product does
    from scipy.stats import norm  # scipy imported where used: it is slow to import
    return float(norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon + norm.logcdf(-epsilon / mu - mu / 2)))


def gaussian_epsilon(*, clip: float, sigma: float, delta: float, releases: int = 1) -> float:
    """Smallest epsilon of the analytic Gaussian mechanism for L2 sensitivity 2C and noise std sigma.

    ``releases`` compositions of the same Gaussian mechanism are exactly one Gaussian mechanism with
    mu = sqrt(releases) * 2C / sigma, so composition is exact here.
    """
    _positive(clip=clip, sigma=sigma)
    _delta(delta)
    if releases < 1:
        raise ConfigError(f"releases must be >= 1, got {releases}")
    mu = math.sqrt(releases) * 2.0 * clip / sigma
    if gaussian_delta(epsilon=0.0, mu=mu) <= delta:
        return 0.0
    hi = 1.0
    while gaussian_delta(epsilon=hi, mu=mu) > delta:
        hi *= 2.0
    from scipy.optimize import brentq  # scipy imported where used: it is slow to import
    return float(brentq(lambda e: gaussian_delta(epsilon=e, mu=mu) - delta, 0.0, hi, xtol=1e-12))


def gaussian_sigma(*, clip: float, epsilon: float, delta: float) -> float:
    """The smallest sigma whose analytic-Gaussian epsilon per release is ``epsilon`` at ``delta``."""
    _positive(clip=clip, epsilon=epsilon)
    _delta(delta)
    lo, hi = clip, clip
    while gaussian_epsilon(clip=clip, sigma=hi, delta=delta) > epsilon:
        hi *= 2.0
    while gaussian_epsilon(clip=clip, sigma=lo, delta=delta) < epsilon:
        lo /= 2.0
    from scipy.optimize import brentq  # scipy imported where used: it is slow to import
    return float(brentq(lambda s: gaussian_epsilon(clip=clip, sigma=s, delta=delta) - epsilon, lo, hi, xtol=1e-12 * clip))


def compose_pure(epsilon: float, releases: int, *, delta_slack: float | None = None) -> tuple[float, float]:
    """(epsilon, delta) after ``releases`` pure-epsilon releases.

    Basic composition gives (k*eps, 0); with ``delta_slack`` the advanced composition theorem
    (Dwork, Rothblum, Vadhan 2010) gives sqrt(2k ln(1/d)) eps + k eps (e^eps - 1) at delta d; the
    smaller epsilon is returned.
    """
    if releases < 1:
        raise ConfigError(f"releases must be >= 1, got {releases}")
    basic = (releases * epsilon, 0.0)
    if delta_slack is None:
        return basic
    _delta(delta_slack)
    if epsilon > 1:  # the advanced bound only helps for small epsilon (and e^epsilon overflows for large)
        return basic
    advanced = math.sqrt(2 * releases * math.log(1 / delta_slack)) * epsilon + releases * epsilon * math.expm1(epsilon)
    return (advanced, delta_slack) if advanced < basic[0] else basic


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")

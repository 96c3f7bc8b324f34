"""Leakage and utility metrics: see :mod:`secsplit.metrics` (they live in the core, so attacks can
score their own results); re-exported here for the evaluation layer, with the report's two summary
numbers on top: the normalized leak and the DCS trade-off score computed on it.

Raw scores are not comparable across attacks (an SSIM of 0.2 and a leak AUC of 0.6 can both be
chance), and a trade-off score on raw scores rewards a model that learned nothing. Both numbers
below are therefore measured from the chance level up.
"""

from secsplit.metrics import *  # noqa: F401,F403
from secsplit.metrics import __all__ as _core_all
from secsplit.metrics import tradeoff_score

from secsplit.evaluation.leaks import leak_vs_full

#: the DCS weight of privacy against utility (VFLAIR's default)
DCS_BETA = 0.5

__all__ = [*_core_all, "DCS_BETA", "chance_margin", "dcs_score", "normalized_leak", "normalized_utility"]


def chance_margin(chance: float, n: int, *, z: float = 2.0) -> float:
    """``z`` standard errors of an accuracy of ``chance`` measured on ``n`` samples: a utility closer to
    chance than this cannot be told from guessing."""
    return z * (chance * (1 - chance) / n) ** 0.5 if n > 0 else 0.0


#: 0 = chance, 1 = a full leak, clipped (defined with the chance levels in :mod:`secsplit.evaluation.leaks`)
normalized_leak = leak_vs_full


def normalized_utility(utility: float, *, reference: float, chance: float) -> float | None:
    """Utility from chance (0) to the undefended model's (1), capped at 1; None when the undefended
    model itself is at chance (nothing to lose, so no trade-off to score)."""
    if reference <= chance:
        return None
    return min(1.0, max(0.0, (utility - chance) / (reference - chance)))


def dcs_score(utility: float, leak: float, *, utility_ref: float, utility_chance: float, chance_margin: float = 0.0,
              beta: float = DCS_BETA) -> float | None:
    """VFLAIR's defense capability score on chance-normalized axes, in [0, 1] (higher is better).

    DCS = 1 / (1 + sqrt((1 - beta) * (1 - u)^2 + beta * l^2)), with u the :func:`normalized_utility`
    (1 = as useful as undefended) and l the :func:`normalized_leak` (0 = chance). The ideal point is
    (u, l) = (1, 0). A model whose utility is at chance, or within ``chance_margin`` above it (e.g. two
    standard errors of the test set's chance accuracy: :func:`chance_margin`), scores 0: it protects
    nothing worth having, so it is never ranked above a useful model, however little it leaks.
    """
    if utility <= utility_chance + chance_margin:
        return 0.0
    u = normalized_utility(utility, reference=utility_ref, chance=utility_chance)
    if u is None:
        return None
    return tradeoff_score(u, leak, utility_ref=1.0, leakage_ref=0.0, beta=beta)

"""Marvell (Li et al., "Label Leakage and Protection in Two-party Split Learning", ICLR 2022).

Binary labels. The label owner adds Gaussian noise N(0, Sigma_1) to positive samples' returned
gradients and N(0, Sigma_0) to negative ones', choosing the covariances per batch to minimize the
sum of the two KL divergences between the perturbed positive and negative gradient distributions
(sumKL; it lower-bounds any label detector's error: FPR + FNR >= 1 - sqrt(sumKL)/2, so the mean
error is >= 1/2 - sqrt(sumKL)/4) under a noise-power budget

    p * tr(Sigma_1) + (1 - p) * tr(Sigma_0) <= P        (p: fraction of positives in the batch).

What is implemented (the paper's tractable version, as in the authors' code):

* The clean gradients of each class are modelled as isotropic Gaussians N(mean_c, w_c I): ``u`` (negatives)
  and ``v`` (positives) are the batch's average per-coordinate variances, ``g = ||mean_1 - mean_0||^2``.
* The optimal covariances then have the form Sigma_c = lam1c e e^T + lam2c (I - e e^T) with
  e = (mean_1 - mean_0) / ||mean_1 - mean_0||: one eigenvalue along the mean difference, one on its
  (d-1)-dimensional orthogonal complement. The problem becomes four scalars:

      min  (d-1) [(u+lam20)/(v+lam21) + (v+lam21)/(u+lam20)] + (u+lam10+g)/(v+lam11) + (v+lam11+g)/(u+lam10)
      s.t. p (lam11 + (d-1) lam21) + (1-p) (lam10 + (d-1) lam20) <= P,   all lam >= 0

  and sumKL = objective / 2 - d.
* Solver (ours; the authors use alternating minimization over three blocks): orthogonal noise only
  helps on the class with the smaller variance and only up to equalizing the variances, so it is one
  scalar t in [0, |u - v|] (lam20 = t if u < v, else lam21 = t). For fixed t the direction-e problem with
  the remaining budget D = P - (d-1) * weight * t is convex along its (tight) budget line and has a
  closed-form optimum: with C = D + p v + (1-p) u and E = sqrt((C + (1-p) g) / (C + p g)), the total
  variances along e are a0 = C / (1 - p + p E) (negatives) and a1 = E a0 (positives), clipped to the
  budget segment. The outer scalar t is found by a grid search refined with bounded Brent.
* Power: give ``power`` (absolute P) or ``scale`` (P = scale * g, the paper's "s"; default 1.0). With
  the mean-reduced loss gradient magnitudes scale with 1/batch size, so ``scale`` is the portable choice.
  ``sumkl_threshold`` reproduces the authors' "dynamic" mode: P grows by 1.5x until sumKL <= threshold.
* Batches holding only one class reuse the previous batch's noise covariances (no mean difference can be
  estimated); before any two-class batch they pass unchanged (counted in ``report()["skipped"]``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from secsplit.defenses.base import DEFENSES
from secsplit.defenses.label_gradient import LabelGradientDefense, _check_number
from secsplit.errors import ConfigError

GRID_POINTS = 64


def symkl_objective(lam10: float, lam20: float, lam11: float, lam21: float, *, u: float, v: float, d: int, g: float) -> float:
    """The paper's objective: 2 * (sumKL + d) for the isotropic-Gaussian model (see module docstring)."""
    a0, a1, b0, b1 = u + lam10, v + lam11, u + lam20, v + lam21
    return (d - 1) * (b0 / b1 + b1 / b0) + (a0 + g) / a1 + (a1 + g) / a0


def sum_kl(lam10: float, lam20: float, lam11: float, lam21: float, *, u: float, v: float, d: int, g: float) -> float:
    """KL(pos || neg) + KL(neg || pos) of the perturbed isotropic-Gaussian gradient models."""
    return 0.5 * symkl_objective(lam10, lam20, lam11, lam21, u=u, v=v, d=d, g=g) - d


@dataclass(frozen=True)
class MarvellSolution:
    """Noise eigenvalues: lam1c along the mean difference, lam2c orthogonal to it (c=0 negative, 1 positive)."""

    lam10: float
    lam20: float
    lam11: float
    lam21: float
    sumkl: float
    sumkl_before: float
    power: float

    def used_power(self, *, p: float, d: int) -> float:
        return p * (self.lam11 + (d - 1) * self.lam21) + (1 - p) * (self.lam10 + (d - 1) * self.lam20)


def _direction_optimum(D: float, *, u: float, v: float, g: float, p: float) -> tuple[float, float]:
    """(lam10, lam11) minimizing (u+lam10+g)/(v+lam11) + (v+lam11+g)/(u+lam10) s.t. (1-p) lam10 + p lam11 <= D."""
    D = max(D, 0.0)
    C = D + p * v + (1 - p) * u
    E = math.sqrt((C + (1 - p) * g) / (C + p * g))
    a0 = C / ((1 - p) + p * E)
    lam10 = min(max(a0 - u, 0.0), D / (1 - p))  # the objective is convex along the budget line: clip
    lam11 = max((D - (1 - p) * lam10) / p, 0.0)
    return lam10, lam11


def solve_marvell(*, u: float, v: float, d: int, g: float, p: float, power: float) -> MarvellSolution:
    """Optimal Marvell noise eigenvalues for one batch (see the module docstring for the problem)."""
    if not 0 < p < 1:
        raise ConfigError(f"marvell needs a positive fraction p in (0, 1), got {p}")
    if d < 1 or power < 0:
        raise ConfigError(f"marvell needs d >= 1 and power >= 0, got d={d}, power={power}")
    floor = 1e-12 * max(g, u, v, 1e-30)  # zero variance (one sample of a class) would make KL infinite
    u, v = max(u, floor), max(v, floor)
    weight = (1 - p) if u < v else p  # cost per unit of orthogonal noise on the smaller-variance class
    t_max = 0.0 if d == 1 else min(abs(u - v), power / (weight * (d - 1)))

    def place(t: float) -> tuple[float, float, float, float]:
        lam10, lam11 = _direction_optimum(power - weight * (d - 1) * t, u=u, v=v, g=g, p=p)
        return (lam10, t, lam11, 0.0) if u < v else (lam10, 0.0, lam11, t)

    def objective(t: float) -> float:
        return symkl_objective(*place(t), u=u, v=v, d=d, g=g)

    best_t = 0.0
    if t_max > 0:
        grid = [t_max * i / GRID_POINTS for i in range(GRID_POINTS + 1)]
        values = [objective(t) for t in grid]
        k = min(range(len(grid)), key=values.__getitem__)
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, GRID_POINTS)]
        best_t = grid[k]
        from scipy.optimize import minimize_scalar  # scipy imported where used: it is slow to import
        refined = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10 * t_max + 1e-300})
        if refined.success and refined.fun < values[k]:
            best_t = float(refined.x)
    lams = place(best_t)
    return MarvellSolution(*lams, sumkl=sum_kl(*lams, u=u, v=v, d=d, g=g),
                           sumkl_before=sum_kl(0.0, 0.0, 0.0, 0.0, u=u, v=v, d=d, g=g), power=power)


@DEFENSES.register("marvell")
class Marvell(LabelGradientDefense):
    """Marvell (Li et al. ICLR'22): per-class Gaussian gradient noise minimizing the sumKL leakage bound.

    Binary labels only (label 1 is the positive class). See the module docstring for the exact
    optimization solved each batch.

    Args:
        scale: power budget relative to the batch's squared mean-gradient difference, P = scale * g
            (the paper's "s"); used unless ``power`` is given. Default 1.0.
        power: absolute power budget P (expected squared noise norm per sample); excludes ``scale``.
        p: weight of the positives' noise in the budget; default: the batch's positive fraction.
        sumkl_threshold: if given, grow P by 1.5x per try (at most 60) until sumKL <= threshold.
        seed: seeds the noise generator.
    """

    name = "marvell"
    addresses = "label inference from returned gradients of binary tasks (norm and direction attacks, Li et al. ICLR'22)"
    threat_model = ("honest-but-curious non-label party observing the per-sample gradients the label owner "
                    "returns; binary labels; gradients per class roughly isotropic Gaussian (the bound's model)")

    def __init__(self, *, scale: float | None = None, power: float | None = None, p: float | None = None,
                 sumkl_threshold: float | None = None, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if scale is not None and power is not None:
            raise ConfigError("marvell takes one of scale= or power=, not both")
        self.power = None if power is None else _check_number("power", power)
        self.scale = None if self.power is not None else _check_number("scale", 1.0 if scale is None else scale)
        self.p = None if p is None else _check_number("p", p, low=0.0, high=1.0, low_open=True)
        if self.p == 1.0:
            raise ConfigError("p must be in (0, 1), got 1.0")
        self.sumkl_threshold = None if sumkl_threshold is None else _check_number("sumkl_threshold", sumkl_threshold, low_open=True)
        self.last: MarvellSolution | None = None
        self._last_direction: torch.Tensor | None = None
        self.skipped = 0
        self.reused = 0
        self.sumkl_before: list[float] = []
        self.sumkl_after: list[float] = []

    def on_setup(self, trainer) -> None:
        super().on_setup(trainer)
        classes = trainer.topology.num_classes
        if classes is not None and classes != 2:
            raise ConfigError(f"marvell protects binary labels only; this model has {classes} outputs")

    def transform_labels(self, y, *, party, step):
        if party == self.label_owner:
            self._check_binary(y)
        return super().transform_labels(y, party=party, step=step)

    @staticmethod
    def _check_binary(labels: torch.Tensor) -> None:
        if labels.dim() != 1 or labels.dtype.is_floating_point or bool(((labels != 0) & (labels != 1)).any()):
            found = sorted({int(c) for c in labels.unique().tolist()}) if not labels.dtype.is_floating_point and labels.dim() == 1 else f"{labels.dtype} {tuple(labels.shape)}"
            raise ConfigError(f"marvell protects binary labels only (class indices 0/1); got {found}")

    def solve(self, flat: torch.Tensor, positive: torch.Tensor) -> tuple[MarvellSolution, torch.Tensor]:
        """The batch's noise eigenvalues and the unit direction of the positive-minus-negative mean."""
        pos, neg = flat[positive], flat[~positive]
        mean1, mean0 = pos.mean(0), neg.mean(0)
        v = float((pos - mean1).pow(2).mean())
        u = float((neg - mean0).pow(2).mean())
        diff = mean1 - mean0
        g = float(diff.pow(2).sum())
        if g > 0:
            direction = diff / math.sqrt(g)
        else:  # equal means: any direction is as good for the (then purely variance-driven) problem
            direction = torch.zeros_like(diff)
            direction[0] = 1.0
        p = self.p if self.p is not None else float(positive.double().mean())
        power = self.power if self.power is not None else self.scale * g
        d = flat.shape[1]
        solution = solve_marvell(u=u, v=v, d=d, g=g, p=p, power=power)
        tries = 0
        while self.sumkl_threshold is not None and solution.sumkl > self.sumkl_threshold and tries < 60:
            power = max(power * 1.5, 1e-12 * (g + u + v) + 1e-30)
            solution = solve_marvell(u=u, v=v, d=d, g=g, p=p, power=power)
            tries += 1
        return solution, direction

    def perturb(self, grad, *, labels=None):
        if labels is None:
            raise ConfigError("marvell needs the batch's labels (seen by transform_labels at the label owner)")
        self._check_binary(labels)
        if labels.shape[0] != grad.shape[0]:
            raise ConfigError(f"marvell got {labels.shape[0]} labels for a batch of {grad.shape[0]} gradients")
        flat = grad.detach().reshape(grad.shape[0], -1).double()
        positive = labels.to(flat.device) == 1
        if bool(positive.all()) or not bool(positive.any()):
            if self.last is None:
                self.skipped += 1
                return grad.clone()
            self.reused += 1
            solution, direction = self.last, self._last_direction.to(flat.device)
        else:
            solution, direction = self.solve(flat, positive)
            self.last, self._last_direction = solution, direction
            self.sumkl_before.append(solution.sumkl_before)
            self.sumkl_after.append(solution.sumkl)
        z = torch.randn(flat.shape, dtype=flat.dtype, device=flat.device, generator=self._gen(flat.device))
        along = (z @ direction)[:, None] * direction[None, :]
        pos = positive[:, None]
        s_along = torch.where(pos, math.sqrt(solution.lam11), math.sqrt(solution.lam10))
        s_perp = torch.where(pos, math.sqrt(solution.lam21), math.sqrt(solution.lam20))
        noise = s_along * along + s_perp * (z - along)
        return grad + noise.to(grad.dtype).reshape(grad.shape)

    def state_dict(self):
        """Besides the generator: the last batch's solution, reused for a one-class batch after a resume too."""
        last = None if self.last is None else {"solution": asdict(self.last),
                                               "direction": self._last_direction}
        return {**super().state_dict(), "last": last, "skipped": self.skipped, "reused": self.reused,
                "sumkl_before": list(self.sumkl_before), "sumkl_after": list(self.sumkl_after)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        last = state["last"]
        self.last = None if last is None else MarvellSolution(**{k: float(v) for k, v in last["solution"].items()})
        self._last_direction = None if last is None else last["direction"]
        self.skipped, self.reused = int(state["skipped"]), int(state["reused"])
        self.sumkl_before = [float(v) for v in state["sumkl_before"]]
        self.sumkl_after = [float(v) for v in state["sumkl_after"]]

    def params(self):
        return {"scale": self.scale, "power": self.power, "p": self.p, "sumkl_threshold": self.sumkl_threshold, "seed": self.seed}

    def report(self) -> dict:
        n = len(self.sumkl_after)
        return {**super().report(), "skipped": self.skipped, "reused": self.reused,
                "mean_sumkl_before": sum(self.sumkl_before) / n if n else None,
                "mean_sumkl_after": sum(self.sumkl_after) / n if n else None,
                "last_solution": asdict(self.last) if self.last else None}

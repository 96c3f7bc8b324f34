"""Marvell: the per-batch optimization against a generic solver, the noise it adds, refusals."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from secsplit.defenses import create_defense
from secsplit.defenses.label_gradient import per_sample_norms
from secsplit.defenses.label_marvell import solve_marvell, sum_kl, symkl_objective
from secsplit.errors import ConfigError

INSTANCES = [  # u (negative variance), v (positive variance), d, g = ||mean diff||^2, p, P
    (1e-4, 3e-4, 64, 2e-3, 0.1, 8e-3),
    (3e-4, 1e-4, 64, 2e-3, 0.1, 8e-3),
    (1.0, 1.0, 16, 4.0, 0.5, 1.0),
    (0.5, 2.0, 8, 10.0, 0.3, 20.0),
    (2.0, 0.1, 32, 1.0, 0.05, 0.5),
    (1e-3, 1e-3, 1, 5e-2, 0.2, 0.1),
    (0.2, 0.7, 4, 0.01, 0.6, 5.0),
]


def _reference_minimum(u, v, d, g, p, P):
    """A generic constrained solver (SLSQP, many starts) on the same four-scalar problem, in units of P."""
    s = P

    def f(x):
        return symkl_objective(*(np.maximum(x, 0) * s), u=u, v=v, d=d, g=g)

    budget = {"type": "ineq", "fun": lambda x: 1 - (p * (x[2] + (d - 1) * x[3]) + (1 - p) * (x[0] + (d - 1) * x[1]))}
    rng = np.random.default_rng(0)
    best = math.inf
    for _ in range(40):
        x0 = rng.dirichlet(np.ones(4)) / np.array([1 - p, (1 - p) * max(d - 1, 1), p, p * max(d - 1, 1)])
        res = minimize(f, x0, method="SLSQP", bounds=[(0, None)] * 4, constraints=[budget], options={"maxiter": 500, "ftol": 1e-14})
        if res.success and budget["fun"](res.x) > -1e-9:
            best = min(best, f(res.x))
    return best


@pytest.mark.parametrize("u,v,d,g,p,P", INSTANCES)
def test_solver_meets_the_budget_and_matches_a_generic_solver(u, v, d, g, p, P):
    sol = solve_marvell(u=u, v=v, d=d, g=g, p=p, power=P)
    assert min(sol.lam10, sol.lam20, sol.lam11, sol.lam21) >= 0
    assert sol.used_power(p=p, d=d) == pytest.approx(P, rel=1e-9)  # more noise always helps: the budget binds
    ours = symkl_objective(sol.lam10, sol.lam20, sol.lam11, sol.lam21, u=u, v=v, d=d, g=g)
    assert ours <= _reference_minimum(u, v, d, g, p, P) * (1 + 1e-6)
    assert sol.sumkl == pytest.approx(0.5 * ours - d)
    assert 0 <= sol.sumkl < sol.sumkl_before


def test_sumkl_formula_is_the_gaussian_kl():
    """sum of both KLs between N(0, a0) and N(sqrt(g), a1) in 1-d, plus equal orthogonal parts."""
    a0, a1, g = 0.7, 1.9, 2.5
    kl = lambda m, s1, s2: 0.5 * (s1 / s2 + m / s2 - 1 + math.log(s2 / s1))
    expected = kl(g, a0, a1) + kl(g, a1, a0)
    assert sum_kl(0.0, 0.0, 0.0, 0.0, u=a0, v=a1, d=1, g=g) == pytest.approx(expected)
    assert sum_kl(0.0, 0.0, 0.0, 0.0, u=1.0, v=1.0, d=50, g=0.0) == pytest.approx(0.0, abs=1e-12)


def test_more_power_means_less_leakage_and_zero_power_means_no_noise():
    values = [solve_marvell(u=1e-4, v=3e-4, d=64, g=2e-3, p=0.1, power=s * 2e-3).sumkl for s in (0, 0.25, 1, 4, 16)]
    assert all(a > b for a, b in zip(values, values[1:]))
    zero = solve_marvell(u=1e-4, v=3e-4, d=64, g=2e-3, p=0.1, power=0.0)
    assert (zero.lam10, zero.lam20, zero.lam11, zero.lam21) == (0.0, 0.0, 0.0, 0.0)


def _batch(n=6000, d=8, seed=0, positive_rate=0.3):
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, generator=gen) < positive_rate).long()
    mean = torch.zeros(d)
    mean[0] = 1.0
    spread = 0.15 + 0.15 * labels[:, None]  # positives: larger variance, so the negatives get orthogonal noise
    grad = spread * torch.randn(n, d, generator=gen) + labels[:, None] * mean  # positives shifted along e_0
    return grad, labels


def test_noise_has_the_solved_covariances_per_class():
    grad, labels = _batch()
    defense = create_defense("marvell", scale=2.0, seed=1)
    noise = (defense.perturb(grad, labels=labels) - grad).double()
    sol = defense.last
    diff = grad[labels == 1].double().mean(0) - grad[labels == 0].double().mean(0)
    e = diff / diff.norm()
    for cls, lam1, lam2 in [(0, sol.lam10, sol.lam20), (1, sol.lam11, sol.lam21)]:
        n = noise[labels == cls]
        along = n @ e
        perp = n - along[:, None] * e
        assert float(along.pow(2).mean()) == pytest.approx(lam1, rel=0.1, abs=1e-6)
        assert float(perp.pow(2).sum(1).mean()) / 7 == pytest.approx(lam2, rel=0.1, abs=1e-4)
        assert abs(float(along.mean())) < 4 * math.sqrt(lam1 / len(n)) + 1e-9  # zero mean
    assert sol.lam20 > 0.01 and sol.lam21 == 0.0  # equalizing variances orthogonally is part of the optimum
    assert sol.power == pytest.approx(2.0 * float(diff.pow(2).sum()), rel=1e-4)  # P = scale * ||mean diff||^2
    p = float(labels.double().mean())
    power = p * float(noise[labels == 1].pow(2).sum(1).mean()) + (1 - p) * float(noise[labels == 0].pow(2).sum(1).mean())
    assert power == pytest.approx(sol.power, rel=0.05)


def test_marvell_hides_the_norm_signal_of_a_synthetic_batch():
    from sklearn.metrics import roc_auc_score

    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(2000, generator=gen) < 0.1).long()
    direction = torch.randn(64, generator=gen)
    grad = 0.01 * torch.randn(2000, 64, generator=gen) + 0.05 * labels[:, None] * direction  # positives: larger norms
    before = roc_auc_score(labels, per_sample_norms(grad))
    defense = create_defense("marvell", scale=4.0)
    after = roc_auc_score(labels, per_sample_norms(defense.perturb(grad, labels=labels)))
    assert before > 0.99 and abs(after - 0.5) < 0.1
    assert defense.last.sumkl < 0.5 < defense.last.sumkl_before


def test_power_parameter_is_absolute_and_threshold_mode_reaches_its_target():
    grad, labels = _batch(n=500, d=16)
    fixed = create_defense("marvell", power=0.7)
    fixed.perturb(grad, labels=labels)
    assert fixed.last.power == 0.7
    dynamic = create_defense("marvell", scale=0.01, sumkl_threshold=0.3)
    dynamic.perturb(grad, labels=labels)
    assert dynamic.last.sumkl <= 0.3 and dynamic.last.power > 0.01 * 1.0 * 0.9


def test_single_class_batches_reuse_the_last_covariances():
    defense = create_defense("marvell", scale=1.0)
    only_neg = torch.randn(8, 4)
    assert torch.equal(defense.perturb(only_neg, labels=torch.zeros(8, dtype=torch.long)), only_neg)
    assert defense.skipped == 1
    grad, labels = _batch(n=200, d=4)
    defense.perturb(grad, labels=labels)
    out = defense.perturb(only_neg, labels=torch.zeros(8, dtype=torch.long))
    assert defense.reused == 1 and not torch.equal(out, only_neg)
    assert defense.report()["mean_sumkl_after"] is not None


def _attach(defense, *, classes=2, label_owner="server"):
    topology = SimpleNamespace(label_owner=label_owner, data_owner="client", num_classes=classes)
    defense.on_setup(SimpleNamespace(topology=topology))
    return defense


def test_marvell_uses_the_labels_the_label_owner_trained_with():
    defense = _attach(create_defense("marvell", scale=1.0))
    grad, labels = _batch(n=64, d=8)
    assert torch.equal(defense.transform_labels(labels, party="server", step=0), labels)
    assert torch.equal(defense.transform_gradient(grad, party="client", step=0), grad)  # not the label owner
    out = defense.transform_gradient(grad, party="server", step=0)
    assert defense.steps == 1 and not torch.equal(out, grad)
    with pytest.raises(ConfigError, match="got 3 labels for a batch of 64"):
        defense.transform_labels(labels[:3], party="server", step=1)
        defense.transform_gradient(grad, party="server", step=1)


def test_marvell_refuses_non_binary_tasks_clearly():
    with pytest.raises(ConfigError, match="binary labels only; this model has 3 outputs"):
        _attach(create_defense("marvell"), classes=3)
    defense = _attach(create_defense("marvell"))
    with pytest.raises(ConfigError, match=r"binary labels only \(class indices 0/1\); got \[0, 1, 2\]"):
        defense.transform_labels(torch.tensor([0, 1, 2, 1]), party="server", step=0)
    with pytest.raises(ConfigError, match="needs the batch's labels"):
        create_defense("marvell").perturb(torch.zeros(4, 2))


@pytest.mark.parametrize("kwargs,message", [
    ({"scale": 1.0, "power": 1.0}, "one of scale= or power=, not both"),
    ({"scale": -1.0}, r"scale must be in \[0.0, inf\)"),
    ({"p": 1.0}, r"p must be in \(0, 1\)"),
    ({"sumkl_threshold": 0.0}, r"sumkl_threshold must be in \(0.0, inf\)"),
])
def test_bad_marvell_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_defense("marvell", **kwargs)

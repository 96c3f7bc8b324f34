"""Activation noise: clipping, noise statistics, and epsilon against the formulas and Opacus' accountants."""

import math
import warnings

import pytest
import torch
from scipy import stats

from secsplit.defenses import create_defense, dp_math
from secsplit.errors import ConfigError, UnknownNameError


def _release(defense, z):
    return defense.transform_activation(z, party="client", step=0, phase="train")


@pytest.mark.parametrize("mechanism,p", [("laplace", 1), ("gaussian", 2)])
def test_clipping_bounds_each_sample_norm_and_leaves_small_ones(mechanism, p):
    from secsplit.defenses.noise import clip_per_sample

    z = torch.cat([torch.randn(8, 3, 4) * 10, torch.full((2, 3, 4), 1e-3)])
    clipped = clip_per_sample(z, 2.0, p=p)
    norms = clipped.reshape(10, -1).norm(p=p, dim=1)
    assert torch.all(norms <= 2.0 + 1e-5)
    assert torch.allclose(norms[:8], torch.full((8,), 2.0), atol=1e-5)
    assert torch.equal(clipped[8:], z[8:])


def test_laplace_noise_matches_its_distribution():
    defense = create_defense("noise", mechanism="laplace", clip=1.0, scale=0.7, seed=3)
    noise = _release(defense, torch.zeros(200, 100)).flatten().numpy()  # zero input: the release is pure noise
    assert stats.kstest(noise, stats.laplace(scale=0.7).cdf).pvalue > 1e-3
    assert abs(noise.var() - 2 * 0.7**2) < 0.05


def test_gaussian_noise_matches_its_distribution():
    defense = create_defense("noise", mechanism="gaussian", clip=1.0, scale=1.3, seed=3)
    noise = _release(defense, torch.zeros(200, 100)).flatten().numpy()
    assert stats.kstest(noise, stats.norm(scale=1.3).cdf).pvalue > 1e-3
    assert abs(noise.std() - 1.3) < 0.02


def test_noise_is_seeded_and_differs_across_steps():
    a = create_defense("noise", mechanism="laplace", clip=1.0, scale=1.0, seed=1)
    b = create_defense("noise", mechanism="laplace", clip=1.0, scale=1.0, seed=1)
    z = torch.zeros(4, 5)
    first = _release(a, z)
    assert torch.equal(first, _release(b, z))
    assert not torch.equal(first, _release(a, z))


def test_noise_keeps_gradient_flowing_to_the_client():
    defense = create_defense("noise", mechanism="gaussian", clip=100.0, scale=0.1)
    z = torch.randn(3, 4, requires_grad=True)
    _release(defense, z).sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # no clipping active: d(z + noise)/dz = 1


def test_laplace_epsilon_is_l1_sensitivity_over_scale():
    assert dp_math.laplace_epsilon(clip=1.5, scale=0.5) == pytest.approx(6.0)
    defense = create_defense("noise", mechanism="laplace", clip=2.0, epsilon=0.8)
    assert defense.scale == pytest.approx(5.0)
    assert defense.epsilon()["per_release"] == pytest.approx(0.8)


def _opacus_epsilon(kind, *, noise_multiplier, steps, delta):
    from opacus.accountants import PRVAccountant, RDPAccountant

    accountant = PRVAccountant() if kind == "prv" else RDPAccountant()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            accountant.step(noise_multiplier=noise_multiplier, sample_rate=1.0)
        return accountant.get_epsilon(delta=delta)


@pytest.mark.parametrize("sigma,clip,releases", [(4.0, 1.0, 1), (2.5, 0.5, 1), (8.0, 1.0, 5), (6.0, 1.0, 20)])
def test_gaussian_epsilon_agrees_with_opacus_accountants(sigma, clip, releases):
    """Opacus' Gaussian mechanism has sensitivity = clip; ours is 2C, so its noise multiplier is sigma / 2C."""
    delta = 1e-5
    ours = dp_math.gaussian_epsilon(clip=clip, sigma=sigma, delta=delta, releases=releases)
    prv = _opacus_epsilon("prv", noise_multiplier=sigma / (2 * clip), steps=releases, delta=delta)
    rdp = _opacus_epsilon("rdp", noise_multiplier=sigma / (2 * clip), steps=releases, delta=delta)
    assert ours == pytest.approx(prv, rel=0.02, abs=0.02)  # PRV is numerically tight
    assert ours <= rdp + 1e-9  # RDP conversion is an upper bound


def test_analytic_gaussian_is_tighter_than_the_classic_bound():
    eps, delta = 0.9, 1e-5
    classic_sigma = 2 * math.sqrt(2 * math.log(1.25 / delta)) / eps  # sensitivity 2, Dwork & Roth Thm A.1
    sigma = dp_math.gaussian_sigma(clip=1.0, epsilon=eps, delta=delta)
    assert sigma < classic_sigma
    assert dp_math.gaussian_epsilon(clip=1.0, sigma=sigma, delta=delta) == pytest.approx(eps, rel=1e-6)
    assert dp_math.gaussian_delta(epsilon=eps, mu=2 / sigma) == pytest.approx(delta, rel=1e-4)


def test_composition_over_epochs():
    defense = create_defense("noise", mechanism="laplace", clip=1.0, scale=20.0, delta=1e-5)
    for epoch in range(1, 101):
        defense.on_epoch_end(epoch=epoch, metrics={})
    report = defense.epsilon()
    eps = 0.1
    advanced = math.sqrt(2 * 100 * math.log(1e5)) * eps + 100 * eps * math.expm1(eps)
    assert report["releases"] == 100
    assert report["composed"] == pytest.approx(min(advanced, 100 * eps))
    assert dp_math.compose_pure(0.5, 3) == (1.5, 0.0)
    assert dp_math.compose_pure(800.0, 5, delta_slack=1e-5) == (4000.0, 0.0)  # large epsilon: basic, no overflow


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"mechanism": "laplace"}, "exactly one of scale= or epsilon="),
        ({"mechanism": "laplace", "scale": 1.0, "epsilon": 1.0}, "exactly one of"),
        ({"mechanism": "cauchy", "scale": 1.0}, "unknown noise mechanism 'cauchy'"),
        ({"mechanism": "gaussian", "epsilon": 1.0, "delta": 2.0}, "delta must be in"),
        ({"mechanism": "laplace", "scale": -1.0}, "scale must be a positive number"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_defense("noise", **kwargs)


def test_unknown_defense_lists_valid_names():
    with pytest.raises(UnknownNameError, match="unknown defense 'magic'; valid names: .*noise"):
        create_defense("magic")

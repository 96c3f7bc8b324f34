"""Distance correlation in torch against the dcor package, its gradients, and its estimator bias."""

import dcor
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from secsplit.errors import ConfigError
from secsplit.stats import distance_correlation


@settings(max_examples=40, deadline=None)
@given(n=st.integers(4, 60), dx=st.integers(1, 30), dz=st.integers(1, 10), seed=st.integers(0, 1000),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), dependent=st.booleans())
def test_matches_dcor_package_both_estimators(n, dx, dz, seed, scale, dependent):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx)) * scale
    z = rng.normal(size=(n, dz))
    if dependent:
        z[:, 0] += np.tanh(x[:, 0] / scale)
    xt, zt = torch.from_numpy(x), torch.from_numpy(z)
    assert float(distance_correlation(xt, zt)) == pytest.approx(dcor.distance_correlation(x, z), abs=1e-6)
    assert float(distance_correlation(xt, zt, estimator="unbiased")) == pytest.approx(
        dcor.u_distance_correlation_sqr(x, z), abs=1e-6)


def test_images_and_activations_are_flattened_per_sample():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 28, 28, generator=g)
    z = torch.relu(x[:, :, ::2, ::2] - 0.5) + 0.1 * torch.rand(32, 1, 14, 14, generator=g)
    expected = dcor.distance_correlation(x.reshape(32, -1).double().numpy(), z.reshape(32, -1).double().numpy())
    assert float(distance_correlation(x, z)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_constant_input_gives_zero_and_finite_gradients(estimator):
    x = torch.full((10, 4), 3.0, requires_grad=True)
    z = torch.randn(10, 3, requires_grad=True)
    value = distance_correlation(x, z, estimator=estimator)
    value.backward()
    assert float(value) == 0.0
    assert torch.isfinite(x.grad).all() and torch.isfinite(z.grad).all()


def test_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    z = torch.randn(7, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: distance_correlation(a, b), (x, z))
    assert torch.autograd.gradcheck(lambda a, b: distance_correlation(a, b, estimator="unbiased"), (x, z))


def test_biased_estimator_overstates_independence_the_unbiased_one_does_not():
    """Independent 784-d and 400-d data: biased dCor ~0.90 at n=512 and ~0.98 at n=64; unbiased ~0."""
    g = torch.Generator().manual_seed(0)
    for n, expected in [(512, 0.90), (64, 0.98)]:
        x, z = torch.randn(n, 784, generator=g), torch.randn(n, 400, generator=g)
        assert float(distance_correlation(x, z)) == pytest.approx(expected, abs=0.015)
        assert abs(float(distance_correlation(x, z, estimator="unbiased"))) < (0.01 if n == 512 else 0.05)


@pytest.mark.parametrize(
    "x,z,kwargs,message",
    [
        (torch.zeros(5, 2), torch.zeros(4, 2), {}, "same number of samples"),
        (torch.zeros(1, 2), torch.zeros(1, 2), {}, "at least 2 samples"),
        (torch.zeros(3, 2), torch.zeros(3, 2), {"estimator": "unbiased"}, "at least 4 samples"),
        (torch.tensor([[float("nan")], [1.0]]), torch.zeros(2, 1), {}, "NaN"),
        (torch.zeros(4, 2), torch.zeros(4, 2), {"estimator": "fast"}, "unknown dCor estimator 'fast'"),
    ],
)
def test_bad_input_is_a_clear_error(x, z, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        distance_correlation(x, z, **kwargs)

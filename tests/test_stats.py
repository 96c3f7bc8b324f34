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


@pytest.mark.parametrize("n", [16, 64, 200])
def test_matches_dcor_package_on_mnist_like_inputs_and_16d_activations(n):
    rng = np.random.default_rng(n)
    x = rng.random((n, 784))  # pixels in [0, 1], far from the origin: the Gram trick must not cancel
    z = np.maximum(x @ rng.normal(size=(784, 16)) / 28, 0) + 0.1 * rng.normal(size=(n, 16))
    for xs, zs in [(x, z), (x, rng.normal(size=(n, 16))), (x + 1e4, z * 1e-4)]:
        xt, zt = torch.from_numpy(xs), torch.from_numpy(zs)
        assert float(distance_correlation(xt, zt)) == pytest.approx(dcor.distance_correlation(xs, zs), abs=1e-6)
        assert float(distance_correlation(xt, zt, estimator="unbiased")) == pytest.approx(
            dcor.u_distance_correlation_sqr(xs, zs), abs=1e-6)


def test_result_is_a_float64_scalar_whatever_the_input_dtype():
    value = distance_correlation(torch.rand(8, 3), torch.rand(8, 2, dtype=torch.float16))
    assert value.dtype == torch.float64 and value.shape == ()


def test_images_and_activations_are_flattened_per_sample():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 28, 28, generator=g)
    z = torch.relu(x[:, :, ::2, ::2] - 0.5) + 0.1 * torch.rand(32, 1, 14, 14, generator=g)
    expected = dcor.distance_correlation(x.reshape(32, -1).double().numpy(), z.reshape(32, -1).double().numpy())
    assert float(distance_correlation(x, z)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("collapsed", ["x", "z"])
def test_constant_input_gives_zero_and_finite_gradients(estimator, collapsed):
    x = torch.full((10, 4), 3.0, requires_grad=True)
    z = torch.randn(10, 3, requires_grad=True)
    if collapsed == "z":  # a collapsed activation, what NoPeek could drive the client towards
        x, z = torch.randn(10, 4, requires_grad=True), torch.full((10, 3), 0.1, requires_grad=True)
    value = distance_correlation(x, z, estimator=estimator)
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(x.grad).all() and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_duplicate_samples_keep_the_value_exact_and_the_gradient_finite(estimator):
    """Zero off-diagonal distances: sqrt has an infinite slope at 0, the estimator must not."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 5, dtype=torch.float64, generator=g).repeat(2, 1).requires_grad_()
    z = torch.relu(x[:, :3].detach() + torch.randn(12, 3, dtype=torch.float64, generator=g)).requires_grad_()
    value = distance_correlation(x, z, estimator=estimator)
    value.backward()
    reference = dcor.distance_correlation if estimator == "biased" else dcor.u_distance_correlation_sqr
    assert value.item() == pytest.approx(reference(x.detach().numpy(), z.detach().numpy()), abs=1e-9)
    assert torch.isfinite(x.grad).all() and torch.isfinite(z.grad).all()


def test_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    z = torch.randn(7, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: distance_correlation(a, b), (x, z))
    assert torch.autograd.gradcheck(lambda a, b: distance_correlation(a, b, estimator="unbiased"), (x, z))


def test_biased_estimator_overstates_independence_the_unbiased_one_does_not():
    """Independent 784-d and 400-d Gaussians: biased dCor ~0.90 at n=512, ~0.98 at n=64; unbiased ~0.

    Measured over 20 seeds: biased 0.8981 +- 0.0003 (n=512) and 0.9852 +- 0.0006 (n=64); unbiased
    -0.0005 +- 0.0027 (n=512) and -0.008 +- 0.024 (n=64), hence the mean over seeds at n=64.
    """
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(512, 784, generator=g), torch.randn(512, 400, generator=g)
    assert distance_correlation(x, z).item() == pytest.approx(0.90, abs=0.01)
    assert abs(distance_correlation(x, z, estimator="unbiased").item()) < 0.015
    biased, unbiased = [], []
    for _ in range(10):
        x, z = torch.randn(64, 784, generator=g), torch.randn(64, 400, generator=g)
        biased.append(distance_correlation(x, z).item())
        unbiased.append(distance_correlation(x, z, estimator="unbiased").item())
    assert min(biased) > 0.98 - 0.01 and max(biased) < 0.99
    assert abs(np.mean(unbiased)) < 0.03


@pytest.mark.parametrize(
    "x,z,kwargs,message",
    [
        (torch.zeros(5, 2), torch.zeros(4, 2), {}, "same number of samples"),
        (torch.zeros(1, 2), torch.zeros(1, 2), {}, "at least 2 samples"),
        (torch.zeros(3, 2), torch.zeros(3, 2), {"estimator": "unbiased"}, "at least 4 samples"),
        (torch.tensor([[float("nan")], [1.0]]), torch.zeros(2, 1), {}, "NaN"),
        (torch.zeros(4, 2), torch.zeros(4, 2), {"estimator": "fast"}, "unknown dCor estimator 'fast'"),
        (torch.zeros(3, 1), torch.tensor([[1.0], [float("inf")], [0.0]]), {}, "infinite"),
        (torch.zeros(4, 0), torch.zeros(4, 2), {}, "at least one feature"),
    ],
)
def test_bad_input_is_a_clear_error(x, z, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        distance_correlation(x, z, **kwargs)

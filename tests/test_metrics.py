"""Evaluation metrics against scikit-image, scikit-learn, numpy and dcor; classes against functions."""

import math

import dcor
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from sklearn.metrics import accuracy_score, roc_auc_score

import secsplit.stats
from secsplit.errors import ConfigError
from secsplit.evaluation import metrics as M


def _image_pairs():
    """(x, y, data_range) batches: noisy copies, unrelated noise, and smooth structured images."""
    rng = np.random.default_rng(0)
    for shape in [(3, 1, 7, 7), (2, 3, 16, 20), (4, 28, 28), (2, 3, 32, 32)]:
        x = rng.random(shape)
        yield x, np.clip(x + 0.1 * rng.normal(size=shape), 0, 1), 1.0
        yield x, rng.random(shape), 1.0
        yield 2 * x - 1, 2 * np.clip(x + 0.3 * rng.normal(size=shape), 0, 1) - 1, 2.0
    h, w = np.mgrid[0:32, 0:24] / 8.0
    gradient = np.stack([np.sin(h) * np.cos(w), (h + w) / 7.0, (h > 2) * 1.0])[None]
    yield gradient, np.clip(gradient * 0.8 + 0.05, 0, 1), 1.0
    yield gradient[:, :1], np.roll(gradient[:, :1], 2, axis=-1), 1.0


def _skimage_ssim(x, y, data_range):
    """Mean over the batch of skimage's SSIM, with channel_axis for multi-channel images."""
    if x.ndim == 4 and x.shape[1] == 1:
        x, y = x[:, 0], y[:, 0]
    kwargs = {"channel_axis": 0} if x.ndim == 4 else {}
    return np.mean([sk_ssim(a, b, data_range=data_range, **kwargs) for a, b in zip(x, y)])


@pytest.mark.parametrize("x,y,data_range", list(_image_pairs()))
def test_ssim_psnr_mse_match_skimage_and_numpy(x, y, data_range):
    assert M.ssim(x, y, data_range=data_range) == pytest.approx(_skimage_ssim(x, y, data_range), abs=1e-6)
    expected_psnr = np.mean([sk_psnr(a, b, data_range=data_range) for a, b in zip(x, y)])
    assert M.psnr(torch.from_numpy(x), torch.from_numpy(y), data_range=data_range) == pytest.approx(expected_psnr, abs=1e-6)
    assert M.mse(x, y) == pytest.approx(np.mean((x - y) ** 2), rel=1e-12)


def test_ssim_of_an_image_with_itself_is_one_and_psnr_infinite():
    x = torch.rand(3, 3, 12, 12)
    assert M.ssim(x, x, data_range=1.0) == pytest.approx(1.0, abs=1e-12)
    assert M.psnr(x, x, data_range=1.0) == math.inf


def test_psnr_is_the_mean_of_per_image_values_not_of_the_pooled_error():
    x = torch.zeros(2, 1, 8, 8)
    y = torch.cat([torch.full((1, 1, 8, 8), 0.1), torch.full((1, 1, 8, 8), 0.01)])
    assert M.psnr(x, y, data_range=1.0) == pytest.approx((20.0 + 40.0) / 2)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: M.ssim(torch.rand(2, 1, 6, 9), torch.rand(2, 1, 6, 9), data_range=1.0), "at least 7x7"),
        (lambda: M.ssim(torch.rand(2, 8, 8), torch.rand(2, 8, 9), data_range=1.0), "same shape"),
        (lambda: M.psnr(torch.rand(8, 8), torch.rand(8, 8), data_range=1.0), r"\(N, C, H, W\)"),
        (lambda: M.psnr(torch.rand(2, 8, 8), torch.rand(2, 8, 8), data_range=0), "data_range"),
        (lambda: M.mse(torch.rand(0), torch.rand(0)), "empty"),
    ],
)
def test_bad_images_are_clear_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


@pytest.mark.parametrize("seed", range(6))
def test_leak_auc_matches_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 50 + 10 * seed)
    labels[:2] = [0, 1]
    continuous = rng.normal(size=len(labels)) + 0.5 * labels
    tied = rng.integers(0, 4, len(labels)).astype(float)  # many ties
    for scores in (continuous, tied, -continuous):
        assert M.leak_auc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
            roc_auc_score(labels, scores), abs=1e-12)
    auc = roc_auc_score(labels, -continuous)
    assert M.leak_auc_symmetric(-continuous, labels) == pytest.approx(max(auc, 1 - auc))
    assert M.leak_auc(continuous, np.where(labels == 1, 7, -3)) == pytest.approx(roc_auc_score(labels, continuous))


@pytest.mark.parametrize(
    "scores,labels,message",
    [
        ([0.1, 0.2, 0.3], [1, 1, 1], "leak AUC needs both classes"),
        ([0.1, 0.2, 0.3], [0, 1, 2], "binary labels"),
        ([0.1, 0.2], [0, 1, 1], "differ in length"),
        ([0.1, float("nan")], [0, 1], "NaN"),
    ],
)
def test_leak_auc_bad_input_is_a_clear_error(scores, labels, message):
    with pytest.raises(ConfigError, match=message):
        M.leak_auc(scores, labels)


def test_chance_auc_of_balanced_batches_of_32_is_about_0_6():
    """Random scores on balanced labels: symmetric per-batch AUC at batch 32 measured 0.585."""
    labels = np.repeat([0, 1], 2000)
    chance = M.chance_auc(labels, batch_size=32, n_permutations=100)
    assert 0.57 < chance < 0.60
    assert M.chance_auc(labels, batch_size=32, n_permutations=100, symmetric=False) == pytest.approx(0.5, abs=0.01)
    assert M.chance_auc(labels, n_permutations=100) < 0.52  # one batch of 4000: near 0.5
    assert M.chance_auc(labels, batch_size=128, n_permutations=100) < chance


def test_chance_auc_skips_single_class_batches_and_refuses_hopeless_input():
    assert 0.5 <= M.chance_auc([0, 1, 0, 0, 0, 0, 0, 0], batch_size=4, seed=1) <= 1.0
    with pytest.raises(ConfigError, match="both classes"):
        M.chance_auc([1, 1, 1, 1])
    with pytest.raises(ConfigError, match="batch_size"):
        M.chance_auc([0, 1, 0, 1], batch_size=1)


def test_accuracy_matches_sklearn_for_classes_and_logits():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, 300)
    logits = rng.normal(size=(300, 5)) + 2 * np.eye(5)[target]
    assert M.accuracy(torch.from_numpy(logits), torch.from_numpy(target)) == pytest.approx(
        accuracy_score(target, logits.argmax(1)))
    pred = rng.integers(0, 5, 300)
    assert M.accuracy(pred, target) == pytest.approx(accuracy_score(target, pred))
    with pytest.raises(ConfigError, match="as many predictions"):
        M.accuracy(pred[:10], target)


def test_hungarian_matching_recovers_a_permuted_labeling_exactly():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 500)
    clusters = np.array([4, 0, 5, 2, 1, 3])[labels] + 10  # same partition, other names
    assert M.label_accuracy_with_matching(clusters, labels) == 1.0
    noisy = clusters.copy()
    noisy[:50] = 10 + (noisy[:50] - 10 + 1) % 6  # 50 samples moved to a wrong cluster
    assert M.label_accuracy_with_matching(noisy, labels) == pytest.approx(450 / 500)
    # classes 4 and 5 merged into one cluster: it is matched to the larger, the smaller is all wrong
    smaller = min(np.mean(labels == 4), np.mean(labels == 5))
    assert M.label_accuracy_with_matching(np.minimum(labels, 4), labels) == pytest.approx(1 - smaller)


def test_tradeoff_score_known_values():
    # no defense: utility at its reference, attack at 0.9 against an ideal 0.5, beta 0.5
    assert M.tradeoff_score(0.95, 0.9, utility_ref=0.95, leakage_ref=0.5) == pytest.approx(1 / (1 + math.sqrt(0.5 * 0.16)))
    # perfect privacy at no cost
    assert M.tradeoff_score(0.95, 0.0, utility_ref=0.95) == 1.0
    # total privacy bought with 0.3 accuracy, weighted by 1 - beta = 0.8
    assert M.tradeoff_score(0.65, 0.0, utility_ref=0.95, beta=0.2) == pytest.approx(1 / (1 + math.sqrt(0.8 * 0.09)))
    with pytest.raises(ConfigError, match="beta"):
        M.tradeoff_score(0.9, 0.1, utility_ref=0.9, beta=1.5)


def test_distance_correlation_is_reexported_from_the_core():
    assert M.distance_correlation is secsplit.stats.distance_correlation


def _batches(*arrays, size=7):
    for start in range(0, len(arrays[0]), size):
        yield tuple(a[start:start + size] for a in arrays)


def test_classes_equal_functions_on_the_accumulated_batches():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 3, 10, 10, generator=g)
    y = (x + 0.2 * torch.randn(20, 3, 10, 10, generator=g)).clamp(0, 1)
    scores, labels = torch.randn(20, generator=g), torch.arange(20) % 2
    logits, target = torch.randn(20, 4, generator=g), torch.arange(20) % 4
    z = torch.tanh(x.flatten(1)[:, :16]) + 0.1 * torch.randn(20, 16, generator=g)
    cases = [
        (M.SSIM(data_range=1.0), (x, y), M.ssim(x, y, data_range=1.0)),
        (M.PSNR(data_range=1.0), (x, y), M.psnr(x, y, data_range=1.0)),
        (M.MSE(), (x, y), M.mse(x, y)),
        (M.Accuracy(), (logits, target), M.accuracy(logits, target)),
        (M.LeakAUC(), (scores, labels), M.leak_auc(scores, labels)),
        (M.LeakAUC(symmetric=True), (-scores, labels), M.leak_auc_symmetric(-scores, labels)),
        (M.DistanceCorrelation(), (x, z), M.distance_correlation(x, z).item()),
        (M.DistanceCorrelation(estimator="unbiased"), (x, z), M.distance_correlation(x, z, estimator="unbiased").item()),
    ]
    for metric, data, expected in cases:
        for batch in _batches(*data):
            metric.update(*batch)
        assert metric.compute() == pytest.approx(expected, rel=1e-9), type(metric).__name__
        metric.reset()
        with pytest.raises(ConfigError, match="before any update"):
            metric.compute()


def test_distance_correlation_class_caps_samples_with_a_seeded_subset():
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(300, 20)), rng.normal(size=(300, 5))
    metric = M.DistanceCorrelation(max_samples=100, seed=3)
    for batch in _batches(x, z, size=64):
        metric.update(*batch)
    keep = torch.randperm(300, generator=torch.Generator().manual_seed(3))[:100].numpy()
    assert metric.compute() == pytest.approx(dcor.distance_correlation(x[keep], z[keep]), abs=1e-9)
    assert metric.compute() == metric.compute()

"""Leakage and utility metrics, each as a function and as a class that accumulates over batches.

Functions take tensors or array-likes and return Python floats (these are reported, not
optimized; the differentiable dCor is :func:`secsplit.stats.distance_correlation`, re-exported
here). Each is tested against a reference: dcor, scikit-image, scikit-learn.

Classes follow torchmetrics: ``update(...)`` per batch, ``compute()`` on everything seen since
the last ``reset()``; each is a thin wrapper around its function.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from secsplit.errors import ConfigError
from secsplit.stats import distance_correlation

__all__ = [
    "distance_correlation", "mse", "psnr", "ssim", "leak_auc", "leak_auc_symmetric", "chance_auc",
    "accuracy", "label_accuracy_with_matching", "tradeoff_score",
    "Metric", "DistanceCorrelation", "MSE", "PSNR", "SSIM", "LeakAUC", "Accuracy",
]

SSIM_WINDOW = 7  # scikit-image's default uniform window
SSIM_K1, SSIM_K2 = 0.01, 0.03


# --- images: reconstruction quality ------------------------------------------------------------

def mse(x, y) -> float:
    """Mean squared error over all elements of two same-shaped arrays (float64)."""
    x, y = _pair(x, y, "mse")
    return float(((x - y) ** 2).mean())


def psnr(x, y, *, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, the mean of per-image PSNRs over the batch.

    Per image it equals ``skimage.metrics.peak_signal_noise_ratio(x_i, y_i, data_range=...)``,
    10 log10(data_range^2 / MSE_i); the batch value is the mean over images (the usual
    convention, not the PSNR of the pooled MSE). An image identical to its reference gives inf.

    Args:
        x, y: image batches (N, C, H, W) or (N, H, W).
        data_range: max possible value minus min possible value (1 for [0, 1], 2 for [-1, 1]).
    """
    return float(_psnr_per_image(x, y, data_range).mean())


def ssim(x, y, *, data_range: float) -> float:
    """Mean structural similarity over a batch of images, in [-1, 1] (1: identical).

    Per image it equals ``skimage.metrics.structural_similarity`` with its defaults and
    ``channel_axis`` for C > 1: 7x7 uniform window, K1=0.01, K2=0.03, sample covariance (49/48),
    averaged over the valid region (3-pixel borders cropped) and over channels. The batch value is
    the mean over images. Images must be at least 7x7.

    Args:
        x, y: image batches (N, C, H, W) or (N, H, W).
        data_range: max possible value minus min possible value (1 for [0, 1], 2 for [-1, 1]).
    """
    return float(_ssim_per_image(x, y, data_range).mean())


def _psnr_per_image(x, y, data_range: float) -> torch.Tensor:
    x, y = _images(x, y, "psnr", data_range)
    err = ((x - y) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / err)


def _ssim_per_image(x, y, data_range: float) -> torch.Tensor:
    x, y = _images(x, y, "ssim", data_range)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ConfigError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(x.shape[-2:])}")
    return ssim_per_image(x, y, data_range=data_range)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each image pair (N, C, H, W), shape (N,), in the inputs' dtype with gradients kept: the
    formula :func:`ssim` reports, for losses that optimize it (attack decoders, attacker-aware training).
    Images must be at least 7x7 (unchecked here: callers decide what a smaller image scores)."""
    n, c, h, w = x.shape
    # valid convolution = skimage's reflect-padded filter cropped by (win - 1) // 2 on every side
    window = torch.full((1, 1, SSIM_WINDOW, SSIM_WINDOW), 1.0 / SSIM_WINDOW**2, dtype=x.dtype, device=x.device)
    stacked = torch.cat([x, y, x * x, y * y, x * y]).reshape(5 * n * c, 1, h, w)
    ux, uy, uxx, uyy, uxy = F.conv2d(stacked, window).reshape(5, n, c, h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1)
    cov_norm = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def _images(x, y, name: str, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate an image pair; return both as (N, C, H, W) float64."""
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ConfigError(f"{name} data_range must be a positive number, got {data_range!r}")
    x, y = _pair(x, y, name)
    if x.ndim not in (3, 4):
        raise ConfigError(f"{name} expects image batches (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ConfigError(f"{name} got an empty batch")
    return (x[:, None], y[:, None]) if x.ndim == 3 else (x, y)


def _pair(x, y, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_float64(x), _as_float64(y)
    if x.shape != y.shape:
        raise ConfigError(f"{name} needs two arrays of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() == 0:
        raise ConfigError(f"{name} got empty inputs")
    return x, y


def _as_float64(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


# --- labels: leakage and utility ---------------------------------------------------------------

def leak_auc(scores, labels) -> float:
    """ROC AUC of attack scores against binary labels; equals ``sklearn.metrics.roc_auc_score``.

    Computed as the Mann-Whitney statistic with average ranks (ties count one half). The larger of
    the two label values is the positive class, as in scikit-learn. 0.5 is chance; an AUC below
    0.5 leaks as much as its mirror image, see :func:`leak_auc_symmetric`.

    Raises:
        ConfigError: mismatched lengths, NaN scores, more than two classes, or a single class
            (AUC is undefined then; scikit-learn would warn and return NaN).
    """
    positive = _positive(labels, "leak AUC")
    scores = _numpy(scores).astype(np.float64).reshape(-1)
    if len(scores) != len(positive):
        raise ConfigError(f"scores and labels differ in length: {len(scores)} and {len(positive)}")
    if np.isnan(scores).any():
        raise ConfigError("leak AUC scores contain NaN")
    return float(_auc_rows(scores[None], positive[None])[0])


def leak_auc_symmetric(scores, labels) -> float:
    """max(AUC, 1 - AUC): the attacker can always flip the sign of its score."""
    auc = leak_auc(scores, labels)
    return max(auc, 1.0 - auc)


def chance_auc(labels, *, n_permutations: int = 200, seed: int = 0, batch_size: int | None = None,
               symmetric: bool = True) -> float:
    """The AUC an attack with random scores reaches on these labels: the baseline to beat.

    Each of ``n_permutations`` rounds shuffles the labels, draws uniform random scores and computes
    the AUC (``max(AUC, 1 - AUC)`` when ``symmetric``, as attackers flip signs). With
    ``batch_size`` the shuffled labels are cut into consecutive batches of that size (the last one
    may be smaller), the AUC is computed per batch, as attacks report per-batch AUC, and batches
    holding one class are skipped; the result is the mean over all batches and rounds. Symmetric
    AUC on small batches sits well above 0.5: ~0.58-0.59 for balanced labels at batch 32.
    """
    positive = _positive(labels, "chance AUC")
    if n_permutations < 1:
        raise ConfigError(f"chance_auc n_permutations must be >= 1, got {n_permutations}")
    size = len(positive) if batch_size is None else batch_size
    if size < 2:
        raise ConfigError(f"chance_auc batch_size must be >= 2, got {batch_size}")
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_permutations):
        shuffled = rng.permutation(positive)
        scores = rng.random(len(shuffled))
        full = len(shuffled) // size * size
        parts = [(scores[:full].reshape(-1, size), shuffled[:full].reshape(-1, size))]
        if full < len(shuffled) - 1:  # a last, smaller batch of at least two samples
            parts.append((scores[None, full:], shuffled[None, full:]))
        aucs.extend(_auc_rows(s, p) for s, p in parts if len(s))
    values = np.concatenate(aucs)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        raise ConfigError(f"chance_auc: no batch of size {size} holds both classes")
    return float(np.maximum(values, 1 - values).mean() if symmetric else values.mean())


def _auc_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUC of each row of ``scores`` (rows, n) against boolean ``positive``; NaN for one class."""
    from scipy.stats import rankdata  # scipy imported where used: it is slow to import
    ranks = rankdata(scores, axis=1)  # average ranks: ties count one half
    n_pos = positive.sum(1)
    n_neg = positive.shape[1] - n_pos
    u = (ranks * positive).sum(1) - n_pos * (n_pos + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _positive(labels, name: str) -> np.ndarray:
    """Boolean mask of the positive class (the larger label value) of two-class labels."""
    labels = _numpy(labels).reshape(-1)
    classes = np.unique(labels)
    if len(classes) > 2:
        raise ConfigError(f"{name} needs binary labels, got {len(classes)} classes")
    if len(classes) < 2:
        raise ConfigError(f"{name} needs both classes among the labels, got {len(classes)} class(es)")
    return labels == classes[-1]


def accuracy(pred, target) -> float:
    """Fraction of correct predictions; equals ``sklearn.metrics.accuracy_score``.

    Args:
        pred: predicted classes (n,), or scores/logits (n, C) whose argmax is the prediction.
        target: true classes (n,).
    """
    return float(_correct(pred, target).mean())


def _correct(pred, target) -> np.ndarray:
    pred, target = _numpy(pred), _numpy(target).reshape(-1)
    if pred.ndim == 2 and pred.shape[0] == len(target) and pred.shape[1] > 1:
        pred = pred.argmax(1)
    pred = pred.reshape(-1)
    if len(pred) != len(target) or len(target) == 0:
        raise ConfigError(f"accuracy needs as many predictions as targets (>= 1), got {len(pred)} and {len(target)}")
    return pred == target


def label_accuracy_with_matching(cluster_ids, labels) -> float:
    """Accuracy of a clustering after the best one-to-one matching of clusters to classes.

    Label-inference attacks that cluster gradients or activations find groups, not names; the
    Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) picks the cluster-to-class map
    that maximizes agreement. Clusters left unmatched (more clusters than classes) count as wrong.
    """
    cluster_ids, labels = _numpy(cluster_ids).reshape(-1), _numpy(labels).reshape(-1)
    if len(cluster_ids) != len(labels) or len(labels) == 0:
        raise ConfigError(f"matching accuracy needs one cluster id per label (>= 1), got {len(cluster_ids)} and {len(labels)}")
    _, clusters = np.unique(cluster_ids, return_inverse=True)
    _, classes = np.unique(labels, return_inverse=True)
    counts = np.zeros((clusters.max() + 1, classes.max() + 1), dtype=np.int64)
    np.add.at(counts, (clusters, classes), 1)
    from scipy.optimize import linear_sum_assignment  # scipy imported where used: it is slow to import
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def tradeoff_score(utility: float, leakage: float, *, utility_ref: float, leakage_ref: float = 0.0,
                   beta: float = 0.5) -> float:
    """Privacy-utility trade-off score in (0, 1], after VFLAIR's defense capability score (DCS).

    score = 1 / (1 + sqrt((1 - beta) * (AP - AP*)^2 + beta * (MP - MP*)^2))

    where AP = ``utility`` (main-task performance with the defense), AP* = ``utility_ref`` (the
    same without defense), MP = ``leakage`` (attack performance against the defended model) and
    MP* = ``leakage_ref`` (the ideal attack performance: 0, or chance level such as
    :func:`chance_auc`). 1 means no utility lost and leakage at the ideal; ``beta`` in [0, 1]
    weighs privacy against utility. All four values should share a scale (e.g. fractions in [0, 1]).
    """
    if not 0.0 <= beta <= 1.0:
        raise ConfigError(f"tradeoff_score beta must be in [0, 1], got {beta}")
    values = (utility, leakage, utility_ref, leakage_ref)
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"tradeoff_score needs finite values, got {values}")
    distance = math.sqrt((1 - beta) * (utility - utility_ref) ** 2 + beta * (leakage - leakage_ref) ** 2)
    return 1.0 / (1.0 + distance)


def _numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


# --- classes: accumulate over batches ----------------------------------------------------------

class Metric:
    """Accumulate with ``update`` per batch, read with ``compute``, clear with ``reset``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, *args) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def _empty(self) -> ConfigError:
        return ConfigError(f"{type(self).__name__}.compute() called before any update()")


class _MeanMetric(Metric):
    """A mean of per-item values (images, elements, predictions) over every batch seen."""

    def reset(self) -> None:
        self._total, self._count = 0.0, 0

    def update(self, *args) -> None:
        values = self._values(*args)
        self._total += float(values.sum())
        self._count += values.numel()

    def compute(self) -> float:
        if self._count == 0:
            raise self._empty()
        return self._total / self._count

    def _values(self, *args) -> torch.Tensor:
        raise NotImplementedError


class MSE(_MeanMetric):
    """:func:`mse` over every element seen: ``update(x, y)``."""

    def _values(self, x, y):
        x, y = _pair(x, y, "mse")
        return (x - y) ** 2


class PSNR(_MeanMetric):
    """:func:`psnr` (mean of per-image PSNR) over every image seen: ``update(x, y)``."""

    def __init__(self, *, data_range: float) -> None:
        self.data_range = data_range
        super().__init__()

    def _values(self, x, y):
        return _psnr_per_image(x, y, self.data_range)


class SSIM(_MeanMetric):
    """:func:`ssim` (mean of per-image SSIM) over every image seen: ``update(x, y)``."""

    def __init__(self, *, data_range: float) -> None:
        self.data_range = data_range
        super().__init__()

    def _values(self, x, y):
        return _ssim_per_image(x, y, self.data_range)


class Accuracy(_MeanMetric):
    """:func:`accuracy` over every prediction seen: ``update(pred, target)``."""

    def _values(self, pred, target):
        return torch.as_tensor(_correct(pred, target), dtype=torch.float64)


class LeakAUC(Metric):
    """:func:`leak_auc` (or its symmetric form) on all scores and labels seen: ``update(scores, labels)``."""

    def __init__(self, *, symmetric: bool = False) -> None:
        self.symmetric = symmetric
        super().__init__()

    def reset(self) -> None:
        self._scores, self._labels = [], []

    def update(self, scores, labels) -> None:
        scores, labels = _numpy(scores).reshape(-1), _numpy(labels).reshape(-1)
        if len(scores) != len(labels):
            raise ConfigError(f"scores and labels differ in length: {len(scores)} and {len(labels)}")
        self._scores.append(scores.copy())
        self._labels.append(labels.copy())

    def compute(self) -> float:
        if not self._scores:
            raise self._empty()
        auc = leak_auc_symmetric if self.symmetric else leak_auc
        return auc(np.concatenate(self._scores), np.concatenate(self._labels))


class DistanceCorrelation(Metric):
    """:func:`distance_correlation` on all (x, z) pairs seen: ``update(x, z)``.

    Memory and time grow as n^2, so at most ``max_samples`` pairs enter the computation: beyond
    that a uniform random subset drawn with a generator seeded by ``seed``. Inputs are kept on the
    CPU, detached, in their own dtype until ``compute``.
    """

    def __init__(self, *, estimator: str = "biased", max_samples: int | None = 2048, seed: int = 0) -> None:
        if max_samples is not None and max_samples < 4:
            raise ConfigError(f"DistanceCorrelation max_samples must be >= 4 or None, got {max_samples}")
        self.estimator, self.max_samples, self.seed = estimator, max_samples, seed
        super().__init__()

    def reset(self) -> None:
        self._x, self._z = [], []

    def update(self, x, z) -> None:
        x, z = torch.as_tensor(x).detach().cpu(), torch.as_tensor(z).detach().cpu()
        if x.ndim == 0 or z.ndim == 0 or x.shape[0] != z.shape[0]:
            raise ConfigError(f"DistanceCorrelation.update needs paired samples, got shapes {tuple(x.shape)} and {tuple(z.shape)}")
        self._x.append(x.reshape(len(x), -1))
        self._z.append(z.reshape(len(z), -1))

    def compute(self) -> float:
        if not self._x:
            raise self._empty()
        x, z = torch.cat(self._x), torch.cat(self._z)
        if self.max_samples is not None and len(x) > self.max_samples:
            keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[: self.max_samples]
            x, z = x[keep], z[keep]
        return float(distance_correlation(x, z, estimator=self.estimator))

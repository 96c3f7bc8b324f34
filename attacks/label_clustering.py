"""Multi-class label inference by clustering the returned gradients, named with a few known labels.

The gradient the label party returns for sample i is g_i = (p_i - e_{y_i})^T dlogits/dz_i: its
direction is dominated by the -e_{y_i} term, so same-class gradients point alike while their sizes
shrink as the model learns each sample. The attack therefore clusters the *unit-normalized*
per-sample gradients (raw gradients cluster by size, not class, and fall to ~chance late in
training) into ``num_classes`` groups, with k-means (default) or spectral clustering, over each
epoch (or each window of ``window`` steps). Clusters are named by Hungarian matching
(``scipy.optimize.linear_sum_assignment``) against the attacker's few known labels: the score of
cluster k for class c is the number of known class-c samples in k, tie-broken by the cosine of k's
centroid with the class's known gradients (the last seen, for classes with no known sample in the
window). Reported per epoch: ``accuracy`` (known samples excluded), ``oracle_accuracy`` (the best
one-to-one naming, the clustering's upper bound) and ``chance_accuracy`` (the majority class).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from secsplit.attacks.base import ATTACKS, ThreatModel
from secsplit.attacks.label_base import LabelAttack
from secsplit.errors import ConfigError

METHODS = ("auto", "kmeans", "spectral")
#: the candidates "auto" tries, in order of preference on ties: (method, n_neighbors)
AUTO_CANDIDATES = (("spectral", 10), ("spectral", 20), ("kmeans", 0))


def cluster(x: np.ndarray, k: int, *, method: str, seed: int, n_neighbors: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ids (n,) and unit-norm centroids (k, d) of the rows of ``x``.

    ``method``: "kmeans" (Euclidean k-means; on unit vectors, close to cosine k-means) or
    "spectral" (spectral clustering of the ``n_neighbors``-nearest-neighbour graph).
    """
    if method == "kmeans":
        from sklearn.cluster import KMeans

        ids = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    else:
        from sklearn.cluster import SpectralClustering

        with warnings.catch_warnings():  # "graph is not fully connected": harmless, components become clusters
            warnings.simplefilter("ignore", UserWarning)
            ids = SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=min(n_neighbors, len(x) - 1),
                                     random_state=seed, assign_labels="cluster_qr").fit_predict(x)
    centroids = np.zeros((k, x.shape[1]))
    for c in range(k):
        if (ids == c).any():
            centroids[c] = x[ids == c].mean(0)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return ids, centroids


def oracle_matching_accuracy(ids: np.ndarray, labels: np.ndarray, k: int) -> float:
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (ids, labels), 1)
    from scipy.optimize import linear_sum_assignment  # scipy imported where used: it is slow to import
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / max(len(labels), 1))


@ATTACKS.register("gradient-clustering")
class GradientClustering(LabelAttack):
    """Cluster unit-normalized returned gradients; name clusters with a few known labels.

    Args:
        known_per_class: training samples per class whose labels the attacker is granted (seeded draw).
        method: "kmeans", "spectral" (10-nearest-neighbour graph) or "auto" (default): try spectral
            with 10 and 20 neighbours and k-means, keep the clustering whose named clusters agree
            best with the attacker's known labels (no other ground truth enters the choice).
        window: steps per clustering window; None clusters each whole epoch at once.
        normalize: scale each gradient to unit L2 norm first (recommended; False clusters raw gradients).
        dataset, seed: see :class:`~secsplit.attacks.label_base.LabelAttack`.
    """

    seats = ("client", "server")

    name = "gradient-clustering"
    threat_model = ThreatModel(attacker="client", behaviour="honest-but-curious", knows=("few-labels",), target="labels")
    binary = False
    search_space = {"method": list(METHODS)}
    tuning_trials = 3

    def __init__(self, *, known_per_class: int = 5, method: str = "auto", window: int | None = None,
                 normalize: bool = True, dataset=None, seed: int = 0, attacker: str | None = None) -> None:
        super().__init__(dataset=dataset, seed=seed, attacker=attacker)
        if method not in METHODS:
            raise ConfigError(f"unknown clustering method {method!r}; valid: {', '.join(METHODS)}")
        if isinstance(known_per_class, bool) or int(known_per_class) < 1:
            raise ConfigError(f"known_per_class must be >= 1 (clusters are named by known labels), got {known_per_class}")
        if window is not None and int(window) < 1:
            raise ConfigError(f"window must be >= 1 steps or None (whole epoch), got {window}")
        self.known_per_class = int(known_per_class)
        self.method = method
        self.window = None if window is None else int(window)
        self.normalize = bool(normalize)
        self.known: dict[int, int] | None = None
        self.references: dict[int, np.ndarray] = {}
        self.chosen: list[str] = []

    def params(self) -> dict:
        return {"seed": self.seed, "known_per_class": self.known_per_class, "method": self.method,
                "window": self.window, "normalize": self.normalize}

    def score_epoch(self, epoch, gradients, batches):
        k = self.dataset.num_classes
        if self.known is None:
            self.known = self.known_label_ids(self.known_per_class)
        step = self.window or len(gradients)
        preds, truths, is_known, oracle, chosen = [], [], [], [], []
        for start in range(0, len(gradients), step):
            x = torch.cat(gradients[start:start + step]).double().numpy()
            index = torch.cat(batches[start:start + step]).numpy()
            if len(x) <= k:
                continue
            if self.normalize:
                x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            ids, pred, label = self._guess(x, index, k, seed=self.seed + epoch)
            truth = self.dataset.y_train[index].numpy()  # scoring only, after the guess
            preds.append(pred)
            truths.append(truth)
            is_known.append(np.array([int(i) in self.known for i in index]))
            oracle.append((oracle_matching_accuracy(ids, truth, k), len(truth)))
            chosen.append(label)
        pred, truth, known_mask = np.concatenate(preds), np.concatenate(truths), np.concatenate(is_known)
        unknown = ~known_mask
        self.last_scores = torch.nn.functional.one_hot(torch.as_tensor(pred[unknown]), k).float()
        self.last_labels = torch.as_tensor(truth[unknown], dtype=torch.int64)
        self.chosen = chosen
        return {
            "epoch": epoch,
            "accuracy": float((pred[unknown] == truth[unknown]).mean()),
            "oracle_accuracy": float(sum(a * n for a, n in oracle) / sum(n for _, n in oracle)),
            "chance_accuracy": float(np.bincount(truth, minlength=k).max() / len(truth)),
            "known_labels": int(known_mask.sum()),
            "method": ",".join(sorted(set(chosen))),
        }

    def _guess(self, x, index, k, *, seed):
        """(cluster ids, predicted labels, method label) of one window; "auto" picks by known-label agreement."""
        if self.method == "auto":
            candidates = AUTO_CANDIDATES
        else:
            candidates = ((self.method, 10),)
        known_rows = np.array([row for row, i in enumerate(index) if int(i) in self.known], dtype=np.int64)
        known_y = np.array([self.known[int(index[row])] for row in known_rows], dtype=np.int64)
        saved = dict(self.references)
        best = None
        for method, neighbours in candidates:
            self.references = dict(saved)
            ids, centroids = cluster(x, k, method=method, seed=seed, n_neighbors=neighbours)
            mapping = self._name_clusters(x, ids, centroids, index)
            pred = mapping[ids]
            agreement = float((pred[known_rows] == known_y).mean()) if len(known_rows) else 0.0
            label = method if method == "kmeans" else f"spectral{neighbours}"
            if best is None or agreement > best[0]:
                best = (agreement, ids, pred, label, dict(self.references))
        _, ids, pred, label, self.references = best
        return ids, pred, label

    def _name_clusters(self, x, ids, centroids, index) -> np.ndarray:
        """Cluster id -> class, by Hungarian matching on known-label counts (+ centroid cosines)."""
        k = self.dataset.num_classes
        counts = np.zeros((k, k))
        members: dict[int, list[np.ndarray]] = {}
        for row, i in enumerate(index):
            c = self.known.get(int(i))
            if c is not None:
                counts[ids[row], c] += 1
                members.setdefault(c, []).append(x[row] / max(np.linalg.norm(x[row]), 1e-12))
        for c, vectors in members.items():
            self.references[c] = np.mean(vectors, axis=0)
        cosines = np.zeros((k, k))
        for c, ref in self.references.items():
            cosines[:, c] = centroids @ (ref / max(np.linalg.norm(ref), 1e-12))
        from scipy.optimize import linear_sum_assignment  # scipy imported where used: it is slow to import
        rows, cols = linear_sum_assignment(counts + 0.25 * cosines, maximize=True)
        mapping = np.zeros(k, dtype=np.int64)
        mapping[rows] = cols
        return mapping

"""Who holds what: horizontal partitions (samples over clients) and vertical ones (features over clients).

All partitions are deterministic given their seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from secsplit.errors import ConfigError, DataError


def partition_iid(n_samples: int, num_clients: int, *, seed: int) -> list[torch.Tensor]:
    """Shuffle the sample indices and deal them out: disjoint, covering, sizes differ by at most one."""
    if num_clients < 1 or n_samples < num_clients:
        raise ConfigError(f"need 1 <= num_clients <= n_samples, got {num_clients} clients for {n_samples} samples")
    order = torch.randperm(n_samples, generator=torch.Generator().manual_seed(seed))
    return [chunk.clone() for chunk in torch.tensor_split(order, num_clients)]


def partition_dirichlet(labels, num_clients: int, *, alpha: float, seed: int, min_size: int = 1,
                        max_tries: int = 100) -> list[torch.Tensor]:
    """Non-iid split: each class is spread over clients by proportions drawn from Dirichlet(alpha).

    Small alpha gives each client few classes; large alpha approaches iid. Draws again (up to
    ``max_tries``) until every client holds at least ``min_size`` samples.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ConfigError(f"labels must be one-dimensional (N,), got shape {y.shape}")
    if alpha <= 0:
        raise ConfigError(f"Dirichlet alpha must be > 0, got {alpha}")
    if num_clients < 1 or len(y) < num_clients * min_size:
        raise ConfigError(f"cannot give {num_clients} clients {min_size} sample(s) each from {len(y)} samples")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for cls in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == cls))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [torch.tensor(sorted(p), dtype=torch.int64) for p in parts]
    raise DataError(f"no Dirichlet(alpha={alpha}) draw gave every one of {num_clients} clients {min_size} "
                    f"sample(s) in {max_tries} tries; raise alpha or lower num_clients/min_size")


@dataclass(frozen=True)
class FeatureView:
    """One client's share of each sample's features in a vertical partition.

    Exactly one of ``columns`` (tabular: feature indices) or ``region`` (images: (row_start,
    row_stop, col_start, col_stop) in pixels, all channels) selects the share from a batch; the
    client's head segment is built for ``output_shape(input_shape)``.
    """

    name: str
    columns: tuple[int, ...] | None = None
    region: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if (self.columns is None) == (self.region is None):
            raise ConfigError(f"{self.name}: give exactly one of columns or region")
        if self.columns is not None and (not self.columns or min(self.columns) < 0):
            raise ConfigError(f"{self.name}: columns must be a non-empty set of indices >= 0, got {self.columns}")
        if self.region is not None:
            r0, r1, c0, c1 = self.region
            if not (0 <= r0 < r1 and 0 <= c0 < c1):
                raise ConfigError(f"{self.name}: region must be a non-empty (row_start, row_stop, col_start, "
                                  f"col_stop) box, got {self.region}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """This client's share of batch ``x``: (N, D) -> (N, len(columns)); (N, C, H, W) -> (N, C, h, w)."""
        self.output_shape(tuple(x.shape[1:]))  # validates x against the view
        if self.columns is not None:
            return x[:, list(self.columns)]
        r0, r1, c0, c1 = self.region
        return x[:, :, r0:r1, c0:c1]

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Per-sample shape of this client's share for per-sample ``input_shape``.

        Raises:
            DataError: ``input_shape`` is not (D,) / (C, H, W), or too small for the view.
        """
        input_shape = tuple(int(d) for d in input_shape)
        if self.columns is not None:
            if len(input_shape) != 1 or max(self.columns) >= input_shape[0]:
                raise DataError(f"{self.name}: column view needs (D,) samples with D > {max(self.columns)}, "
                                f"got {input_shape}")
            return (len(self.columns),)
        r0, r1, c0, c1 = self.region
        if len(input_shape) != 3 or r1 > input_shape[1] or c1 > input_shape[2]:
            raise DataError(f"{self.name}: region view needs (C, H, W) samples with H >= {r1} and W >= {c1}, "
                            f"got {input_shape}")
        return (input_shape[0], r1 - r0, c1 - c0)


def vertical_columns(n_features: int, k: int | None = None, *,
                     groups: Sequence[Sequence[int]] | None = None) -> list[FeatureView]:
    """Split tabular columns over clients: ``k`` contiguous near-equal groups, or explicit ``groups``.

    Args:
        n_features: number of columns D.
        k: number of clients; the first ``D % k`` groups get one column more.
        groups: explicit column indices per client (e.g. which hospital holds which measurements);
            together they must cover every column exactly once. If ``k`` is also given it must
            equal ``len(groups)``.

    Raises:
        ConfigError: k not in 1..D, or groups that are empty, overlap or miss columns.
    """
    if groups is None:
        if k is None or not 1 <= k <= n_features:
            raise ConfigError(f"need 1 <= k <= {n_features} clients for {n_features} columns, got {k}")
        groups = [g.tolist() for g in np.array_split(np.arange(n_features), k)]
    if k is not None and k != len(groups):
        raise ConfigError(f"k={k} but {len(groups)} column groups were given")
    if not groups or any(len(g) == 0 for g in groups):
        raise ConfigError("every client needs a non-empty column group")
    flat = sorted(int(c) for g in groups for c in g)
    if flat != list(range(n_features)):
        raise ConfigError(f"column groups must cover each of the {n_features} columns exactly once, got {flat}")
    return [FeatureView(f"client{i}", columns=tuple(int(c) for c in g)) for i, g in enumerate(groups)]


def vertical_image_regions(image_shape: Sequence[int], k: int, *, layout: str = "strips") -> list[FeatureView]:
    """Split images over clients: ``k`` vertical strips (k=2: left/right halves) or a 2x2 ``grid`` (k=4).

    Strips run full height and split the width into near-equal parts, left to right; grid
    quadrants are ordered top-left, top-right, bottom-left, bottom-right. Every pixel belongs to
    exactly one client.

    Raises:
        ConfigError: image_shape not (C, H, W), k not in 1..W for strips, k != 4 for grid, unknown layout.
    """
    if len(image_shape) != 3:
        raise ConfigError(f"image regions need an image shape (C, H, W), got {tuple(image_shape)}")
    _, h, w = (int(d) for d in image_shape)
    if layout == "strips":
        if not 1 <= k <= w:
            raise ConfigError(f"need 1 <= k <= {w} strips for width {w}, got {k}")
        edges = np.linspace(0, w, k + 1).round().astype(int)
        return [FeatureView(f"client{i}", region=(0, h, int(a), int(b)))
                for i, (a, b) in enumerate(zip(edges, edges[1:]))]
    if layout == "grid":
        if k != 4:
            raise ConfigError(f"grid layout splits images into 4 quadrants, got k={k}")
        if h < 2 or w < 2:
            raise ConfigError(f"grid layout needs images of at least 2x2, got {h}x{w}")
        hh, hw = h // 2, w // 2
        boxes = [(0, hh, 0, hw), (0, hh, hw, w), (hh, h, 0, hw), (hh, h, hw, w)]
        return [FeatureView(f"client{i}", region=box) for i, box in enumerate(boxes)]
    raise ConfigError(f"unknown layout {layout!r}; valid: strips, grid")

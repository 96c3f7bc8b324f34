"""Who holds what: horizontal partitions (samples over clients) and vertical ones (features over clients).

All partitions are deterministic given their seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from secsplit.data.dataset import Dataset
from secsplit.errors import ConfigError, DataError

#: how many names an error message lists before "... (N more)"
_LISTED = 40


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


# -- columns and views by name -------------------------------------------------------------------
ColumnSpec = str | int | Sequence[str | int]


def select_columns(spec: ColumnSpec, *, count: int, names: Sequence[str] | None = None,
                   groups: Mapping[str, Sequence[int]] | None = None,
                   reserved: Mapping[int, str] | None = None) -> list[int]:
    """Column indices picked by ``spec``, in the order given, so configs can name columns as people do.

    Args:
        spec: one item or a list of items; an item is a column name, an index, a name range
            ``"age:bmi"`` (both ends included, as spreadsheets select) or an index range ``"2:10"``
            (half-open, as Python slices); a range end may be left out (``"age:"``, ``":5"``). A string
            that is itself a column name always means that column.
        count: number of columns.
        names: the column names, if the columns have names.
        groups: further names that stand for several columns (e.g. ``sex`` for ``sex=F``, ``sex=M``).
        reserved: columns that are not features (index -> role, e.g. "label"): naming one is an
            error, ranges skip them.

    Raises:
        ConfigError: an unknown name (lists the valid ones), an index or range out of bounds, a
            malformed item, a column picked twice, an empty selection.
    """
    lookup = _name_lookup(names, groups)
    reserved = dict(reserved or {})
    items = spec.tolist() if isinstance(spec, np.ndarray) else spec
    items = [items] if isinstance(items, (str, int, np.integer)) else items
    if isinstance(items, Mapping) or not isinstance(items, Sequence):
        raise ConfigError(f"columns must be a name, an index, a range or a list of them, got {spec!r}")
    picked: dict[int, object] = {}  # column -> the item that picked it; dicts keep insertion order
    for item in items:
        indices, is_range = _resolve_item(item, count, names, lookup)
        for index in indices:
            if index in reserved:
                if is_range:
                    continue
                raise ConfigError(f"column {_label(index, names)} is the {reserved[index]} column; it cannot be a feature")
            if index in picked:
                raise ConfigError(f"column {_label(index, names)} is picked twice (by {picked[index]!r} and {item!r})")
            picked[index] = item
    if not picked:
        raise ConfigError(f"no columns picked by {spec!r}")
    return list(picked)


def _name_lookup(names: Sequence[str] | None, groups: Mapping[str, Sequence[int]] | None) -> dict[str, list[int]]:
    lookup = {name: [i] for i, name in enumerate(names or ())}
    for name, members in (groups or {}).items():
        lookup.setdefault(name, list(members))  # a real column of that name wins
    return lookup


def _resolve_item(item, count: int, names, lookup: dict[str, list[int]]) -> tuple[list[int], bool]:
    """(indices, whether the item was a range) for one item of a column spec."""
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        if not 0 <= item < count:
            raise ConfigError(f"column index {item} is out of range 0..{count - 1}")
        return [int(item)], False
    if not isinstance(item, str):
        raise ConfigError(f"a column must be a name, an index or a range, got {item!r}")
    if item in lookup:
        return lookup[item], False
    if ":" not in item:
        raise ConfigError(f"unknown column {item!r}; {_valid_names(names, count)}")
    return _resolve_range(item, count, names, lookup), True


def _resolve_range(item: str, count: int, names, lookup: dict[str, list[int]]) -> list[int]:
    ends = [part.strip() for part in item.split(":", 1)]
    kinds = set()
    for end in ends:
        if end in lookup:
            kinds.add("name")
        elif end.isdigit():
            kinds.add("index")
        elif end:
            raise ConfigError(f"unknown column {end!r} in range {item!r}; {_valid_names(names, count)}")
    if kinds == {"name", "index"}:
        raise ConfigError(f"range {item!r} mixes a column name and an index; use names or indices on both ends")
    if "name" in kinds:
        start = min(lookup[ends[0]]) if ends[0] else 0
        stop = max(lookup[ends[1]]) + 1 if ends[1] else count
    else:
        start = int(ends[0]) if ends[0] else 0
        stop = int(ends[1]) if ends[1] else count
        if stop > count:
            raise ConfigError(f"index range {item!r} runs past the last column ({count} columns: 0..{count - 1})")
    if start >= stop:
        raise ConfigError(f"range {item!r} picks no columns (its start is not before its end)")
    return list(range(start, stop))


def _label(index: int, names: Sequence[str] | None) -> str:
    return repr(names[index]) if names else str(index)


def _valid_names(names: Sequence[str] | None, count: int) -> str:
    if not names:
        return f"the columns have no names: use indices 0..{count - 1}"
    shown = ", ".join(names[:_LISTED])
    more = f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else ""
    return f"columns: {shown}{more}"


def resolve_views(dataset: Dataset, views) -> list[FeatureView]:
    """The vertical partition ``views`` describes, as FeatureViews checked against ``dataset``.

    Configs name who holds what the way people say it (column names, pixel boxes); this turns that
    into the FeatureViews the vertical topologies take. Columns no view names are simply unused.

    Args:
        dataset: the data set being split.
        views: a list with one entry per client (``client0``, ``client1``, ...), or a mapping from
            view name to entry. Tabular entries are column specs (see :func:`select_columns`):
            ``[["age", "bmi"], ["glucose", "insulin"]]``, indices or ``"A:B"`` ranges; after one-hot
            encoding, the original column name (``"sex"``) stands for all its columns (``sex=F``, ...).
            Image entries are ``[row_start, row_stop, col_start, col_stop]`` pixel boxes. FeatureView
            entries pass through (checked against the data set).

    Returns:
        One FeatureView per entry, in order.

    Raises:
        ConfigError: a malformed entry, an unknown column (lists the valid names), a box outside the
            image, or views that overlap (names the shared column or the overlapping box).
    """
    if isinstance(views, (str, bytes)) or not isinstance(views, (Sequence, Mapping)):
        raise ConfigError(f"views must be a list with one entry per client, got {views!r}")
    named = list(views.items()) if isinstance(views, Mapping) else [(f"client{i}", v) for i, v in enumerate(views)]
    if not named:
        raise ConfigError("views is empty; give one entry per client")
    resolved = [_resolve_view(dataset, str(name), entry) for name, entry in named]
    (_check_disjoint_columns if dataset.kind == "tabular" else _check_disjoint_regions)(resolved, dataset)
    return resolved


def _resolve_view(dataset: Dataset, name: str, entry) -> FeatureView:
    if isinstance(entry, FeatureView):
        entry.output_shape(dataset.input_shape)  # a view that does not fit the data fails here, not mid-training
        return entry
    if dataset.kind == "image":
        return FeatureView(name, region=_region(name, entry, dataset.input_shape))
    names = dataset.feature_names
    try:
        columns = select_columns(entry, count=dataset.input_shape[0], names=names, groups=_onehot_groups(names))
    except ConfigError as error:
        raise ConfigError(f"view {name!r}: {error}") from None
    return FeatureView(name, columns=tuple(columns))


def _onehot_groups(names: Sequence[str] | None) -> dict[str, list[int]]:
    """``sex`` -> the indices of ``sex=F``, ``sex=M``: one-hot columns answer to their source column's name."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names or ()):
        if "=" in name:
            groups.setdefault(name.split("=", 1)[0], []).append(index)
    return groups


def _region(name: str, entry, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    _, h, w = image_shape
    box = list(entry) if isinstance(entry, Sequence) and not isinstance(entry, str) else None
    if box is None or len(box) != 4 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                               for v in box):
        raise ConfigError(f"view {name!r}: an image view is [row_start, row_stop, col_start, col_stop] in pixels, "
                          f"got {entry!r}")
    r0, r1, c0, c1 = (int(v) for v in box)
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise ConfigError(f"view {name!r}: box {box} does not fit the {h}x{w} image; need 0 <= row_start < row_stop "
                          f"<= {h} and 0 <= col_start < col_stop <= {w}")
    return r0, r1, c0, c1


def _check_disjoint_columns(views: list[FeatureView], dataset: Dataset) -> None:
    owner: dict[int, str] = {}
    for view in views:
        for column in view.columns or ():
            if column in owner:
                raise ConfigError(f"column {_label(column, dataset.feature_names)} is in views {owner[column]!r} and "
                                  f"{view.name!r}; views must be disjoint")
            owner[column] = view.name


def _check_disjoint_regions(views: list[FeatureView], dataset: Dataset) -> None:
    for i, a in enumerate(views):
        for b in views[i + 1:]:
            rows = (max(a.region[0], b.region[0]), min(a.region[1], b.region[1]))
            cols = (max(a.region[2], b.region[2]), min(a.region[3], b.region[3]))
            if rows[0] < rows[1] and cols[0] < cols[1]:
                raise ConfigError(f"views {a.name!r} and {b.name!r} overlap in rows {rows[0]}:{rows[1]}, columns "
                                  f"{cols[0]}:{cols[1]}; views must be disjoint")

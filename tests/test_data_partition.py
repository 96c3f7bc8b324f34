"""Partitions at the edges: Dirichlet refusals, explicit column groups, view validation, strips."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from secsplit.data import FeatureView, partition_dirichlet, vertical_columns, vertical_image_regions
from secsplit.errors import ConfigError, DataError


def test_dirichlet_respects_min_size_and_gives_up_with_a_clear_error():
    labels = np.arange(300) % 3
    parts = partition_dirichlet(labels, 5, alpha=0.5, seed=1, min_size=10)
    assert min(len(p) for p in parts) >= 10
    assert sorted(torch.cat(parts).tolist()) == list(range(300))
    with pytest.raises(DataError, match="in 3 tries; raise alpha"):
        partition_dirichlet(labels, 20, alpha=0.01, seed=0, min_size=14, max_tries=3)
    with pytest.raises(ConfigError, match="cannot give 4 clients 100 sample"):
        partition_dirichlet(labels, 4, alpha=1.0, seed=0, min_size=100)
    with pytest.raises(ConfigError, match="one-dimensional"):
        partition_dirichlet(labels.reshape(3, 100), 2, alpha=1.0, seed=0)


def test_dirichlet_accepts_torch_labels_and_differs_by_seed():
    labels = torch.arange(500) % 5
    a = partition_dirichlet(labels, 4, alpha=0.3, seed=0)
    b = partition_dirichlet(labels, 4, alpha=0.3, seed=1)
    assert any(not torch.equal(x, y) for x, y in zip(a, b))
    assert all(p.dtype == torch.int64 for p in a)


def test_explicit_column_groups_select_those_columns():
    views = vertical_columns(5, groups=[[4, 0], [1, 2, 3]])
    x = torch.arange(10.0).reshape(2, 5)
    assert torch.equal(views[0](x), x[:, [4, 0]])
    assert [v.output_shape((5,)) for v in views] == [(2,), (3,)]
    with pytest.raises(ConfigError, match="non-empty column group"):
        vertical_columns(2, groups=[[0, 1], []])
    with pytest.raises(ConfigError, match="k=3 but 2 column groups"):
        vertical_columns(2, 3, groups=[[0], [1]])
    with pytest.raises(ConfigError, match="exactly once"):
        vertical_columns(3, groups=[[0], [1]])
    with pytest.raises(ConfigError, match="need 1 <= k <= 5"):
        vertical_columns(5, 0)


def test_views_refuse_inputs_they_do_not_fit():
    (view, _) = vertical_columns(6, 2)
    with pytest.raises(DataError, match="column view needs \\(D,\\) samples"):
        view(torch.zeros(2, 1, 6, 6))
    left, right = vertical_image_regions((1, 8, 8), 2)
    with pytest.raises(DataError, match="W >= 8"):
        right(torch.zeros(2, 1, 8, 6))
    with pytest.raises(DataError, match="region view needs \\(C, H, W\\)"):
        left.output_shape((64,))
    with pytest.raises(ConfigError, match="exactly one of columns or region"):
        FeatureView("both", columns=(0,), region=(0, 1, 0, 1))
    with pytest.raises(ConfigError, match="non-empty"):
        FeatureView("empty", region=(0, 0, 0, 4))


def test_image_region_validation():
    with pytest.raises(ConfigError, match="need 1 <= k <= 8 strips"):
        vertical_image_regions((1, 8, 8), 9)
    with pytest.raises(ConfigError, match="image shape \\(C, H, W\\)"):
        vertical_image_regions((8, 8), 2)
    with pytest.raises(ConfigError, match="at least 2x2"):
        vertical_image_regions((1, 1, 8), 4, layout="grid")


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(2, 12), w=st.integers(1, 12), k=st.integers(1, 12))
def test_strips_tile_any_image_exactly_once(c, h, w, k):
    if k > w:
        with pytest.raises(ConfigError):
            vertical_image_regions((c, h, w), k)
        return
    views = vertical_image_regions((c, h, w), k)
    x = torch.rand(2, c, h, w)
    parts = [v(x) for v in views]
    assert all(p.shape[1:] == v.output_shape((c, h, w)) for p, v in zip(parts, views))
    widths = [p.shape[3] for p in parts]
    assert min(widths) >= 1 and max(widths) - min(widths) <= 1
    assert torch.equal(torch.cat(parts, dim=3), x)


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 40), k=st.integers(1, 40))
def test_column_groups_cover_every_feature_once_for_any_d_and_k(d, k):
    if k > d:
        with pytest.raises(ConfigError):
            vertical_columns(d, k)
        return
    views = vertical_columns(d, k)
    assert sorted(c for v in views for c in v.columns) == list(range(d))
    sizes = [len(v.columns) for v in views]
    assert max(sizes) - min(sizes) <= 1

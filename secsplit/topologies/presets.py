"""Named chain configurations: vanilla, U-shape, multi-hop and multi-hop U-shape."""

from __future__ import annotations

from collections.abc import Sequence

from secsplit.errors import ConfigError
from secsplit.registry import Registry
from secsplit.topologies.base import Topology
from secsplit.topologies.chain import ChainTopology

TOPOLOGIES: Registry = Registry("topology")


def _resolve_cuts(model, cuts: Sequence[str] | None, n: int, topology: str) -> list[str]:
    if cuts is None:
        return list(model.suggested_cuts(n))
    cuts = list(cuts)
    if len(cuts) != n:
        raise ConfigError(f"topology {topology!r} needs {n} cut point(s), got {len(cuts)}: {cuts}")
    return cuts


@TOPOLOGIES.register("vanilla")
def vanilla(model, *, cuts=None, **kwargs) -> ChainTopology:
    """Client segment -> server segment; the client sends labels, the server computes the loss."""
    return ChainTopology(model, cuts=_resolve_cuts(model, cuts, 1, "vanilla"), owners=["client", "server"], name="vanilla", **kwargs)


@TOPOLOGIES.register("ushape")
def ushape(model, *, cuts=None, **kwargs) -> ChainTopology:
    """Client head -> server body -> client tail: labels and loss never leave the client."""
    return ChainTopology(model, cuts=_resolve_cuts(model, cuts, 2, "ushape"), owners=["client", "server", "client"], name="ushape", **kwargs)


def _hop_cuts(model, cuts, hops: int, extra: int, topology: str) -> list[str]:
    if hops < 1:
        raise ConfigError(f"{topology} needs hops >= 1, got {hops}")
    if cuts is not None:
        hops = len(list(cuts)) - extra
        if hops < 1:
            raise ConfigError(f"{topology} needs at least {extra + 1} cut points, got {len(list(cuts))}")
    return _resolve_cuts(model, cuts, hops + extra, topology)


@TOPOLOGIES.register("multihop")
def multihop(model, *, cuts=None, hops: int = 1, **kwargs) -> ChainTopology:
    """Client -> hop1 -> ... -> server: a chain of >= 3 parties where only neighbours talk.

    ``hops`` intermediate parties (ignored when ``cuts`` is given: then there is one hop per cut
    beyond the first).
    """
    cuts = _hop_cuts(model, cuts, hops, 1, "multihop")
    owners = ["client", *[f"hop{i}" for i in range(1, len(cuts))], "server"]
    return ChainTopology(model, cuts=cuts, owners=owners, name="multihop", **kwargs)


@TOPOLOGIES.register("multihop-ushape")
def multihop_ushape(model, *, cuts=None, hops: int = 1, **kwargs) -> ChainTopology:
    """Client -> hop1 -> ... -> server -> client: multi-hop with labels kept by the client."""
    cuts = _hop_cuts(model, cuts, hops, 2, "multihop-ushape")
    owners = ["client", *[f"hop{i}" for i in range(1, len(cuts) - 1)], "server", "client"]
    return ChainTopology(model, cuts=cuts, owners=owners, name="multihop-ushape", **kwargs)


def build_topology(name: str, model, **kwargs) -> Topology:
    """Build the topology registered as ``name`` over ``model`` (see each builder for options)."""
    try:
        return TOPOLOGIES.create(name, model=model, **kwargs)
    except TypeError as error:  # builders forward **kwargs: a misspelt option surfaces one level down
        if "keyword argument" not in str(error):
            raise
        bad = str(error).rsplit(" ", 1)[-1]
        raise ConfigError(f"topology {name!r} has no option {bad}; see help(secsplit.topologies.presets) "
                          f"or `secsplit list` for its options") from None


def list_topologies() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered topology."""
    return [(n, (TOPOLOGIES.lookup(n).__doc__ or "").strip().splitlines()[0]) for n in TOPOLOGIES.names()]


# -- vertical (feature-partitioned) configurations -------------------------------------------------
def _vertical_views(input_shape, k: int | None, views, layout: str):
    from secsplit.data.partition import vertical_columns, vertical_image_regions

    if views is not None:
        views = list(views)
        if k is not None and k != len(views):
            raise ConfigError(f"k={k} but {len(views)} views were given")
        return views
    if len(input_shape) == 3:
        k = (4 if layout == "grid" else 2) if k is None else k
        return vertical_image_regions(input_shape, k, layout=layout)
    if layout != "strips":
        raise ConfigError(f"layout {layout!r} applies to image inputs; tabular inputs are split by columns")
    if len(input_shape) != 1:
        raise ConfigError(f"vertical needs (D,) tabular or (C, H, W) image inputs, got {tuple(input_shape)}")
    return vertical_columns(input_shape[0], 2 if k is None else k)


def _vertical(model, name: str, ushape: bool, *, model_name, k, merge, views, layout, cuts, seed, model_options,
              **kwargs):
    from secsplit.topologies.vertical import VerticalTopology

    if model_name is None:
        raise ConfigError(f"topology {name!r} builds one model per client for that client's own features, so it "
                          f"needs model_name= (the registered model name, e.g. 'lenet' or 'mlp'); the given "
                          f"model only supplies input_shape and num_classes")
    views = _vertical_views(tuple(model.input_shape), k, views, layout)
    return VerticalTopology(model_name, input_shape=model.input_shape, num_classes=model.num_classes, views=views,
                            cuts=cuts, merge=merge, ushape=ushape, seed=seed, model_options=model_options, name=name,
                            **kwargs)


@TOPOLOGIES.register("vertical")
def vertical(model, *, model_name: str | None = None, k: int | None = None, merge: str = "concat", views=None,
             layout: str = "strips", cuts=None, seed: int = 0, model_options: dict | None = None, **kwargs):
    """k clients hold different features of each sample (vertical / multi-modal); the server merges and labels.

    ``model`` supplies ``input_shape`` and ``num_classes``; each client gets its own
    ``model_name`` model (required) for its view, seeded ``seed + i``. ``views`` default: for
    images ``k`` (default 2) vertical strips, or with ``layout="grid"`` 4 quadrants; for tables
    ``k`` (default 2) contiguous column groups. ``merge``: "concat" (aggregation layer), "sum" or
    "mean". ``cuts=[cut]`` (default: the per-client model's ``suggested_cuts(1)``). Other
    keywords (channel, optimizer, label_source) go to :class:`VerticalTopology`.
    """
    return _vertical(model, "vertical", False, model_name=model_name, k=k, merge=merge, views=views, layout=layout,
                     cuts=cuts, seed=seed, model_options=model_options, **kwargs)


@TOPOLOGIES.register("vertical-ushape")
def vertical_ushape(model, *, model_name: str | None = None, k: int | None = None, merge: str = "concat",
                    views=None, layout: str = "strips", cuts=None, seed: int = 0, model_options: dict | None = None,
                    **kwargs):
    """Vertical clients -> server -> client0: client0 keeps the last layer(s), labels and loss.

    Options as for ``vertical``; ``cuts=[cut, tail_cut]`` (default: ``suggested_cuts(2)``).
    """
    return _vertical(model, "vertical-ushape", True, model_name=model_name, k=k, merge=merge, views=views,
                     layout=layout, cuts=cuts, seed=seed, model_options=model_options, **kwargs)

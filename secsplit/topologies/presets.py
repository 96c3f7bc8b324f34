"""Named chain configurations: vanilla, U-shape, multi-hop and multi-hop U-shape."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from secsplit.channel import Channel
from secsplit.errors import ConfigError
from secsplit.optim import OptimizerSpec
from secsplit.registry import Registry
from secsplit.topologies.base import Topology, check_label_source
from secsplit.topologies.chain import ChainTopology

TOPOLOGIES: Registry = Registry("topology")

#: Keywords :func:`build_topology` accepts for every topology. Each topology uses those that apply
#: to it and ignores the others (U-shape ignores ``label_source``: its client holds the labels;
#: chains ignore ``seed``, ``model_name`` and ``model_options``: they cut the given model).
#: A builder declares the ones it uses as keyword parameters; :func:`topology_options` lists the rest.
#:
#: - ``cuts``: cut-point names (None: the model's suggestion for the topology);
#: - ``optimizer``: every party's :class:`~secsplit.optim.OptimizerSpec` (None: the default);
#: - ``label_source``: "data_owner" or "label_owner" (see :data:`~secsplit.topologies.base.LABEL_SOURCES`);
#: - ``seed``: seeds what the topology builds or draws itself (per-client models, partitions, extra heads);
#: - ``model_name``, ``model_options``: the registered model (and its options) a topology that
#:   builds its own models (vertical: one per client view) creates;
#: - ``channel``: the :class:`~secsplit.channel.Channel` (None: a new in-process one).
COMMON_OPTIONS = ("cuts", "optimizer", "label_source", "seed", "model_name", "model_options", "channel")


def _resolve_cuts(model, cuts: Sequence[str] | None, n: int, topology: str) -> list[str]:
    if cuts is None:
        return list(model.suggested_cuts(n))
    cuts = list(cuts)
    if len(cuts) != n:
        raise ConfigError(f"topology {topology!r} needs {n} cut point(s), got {len(cuts)}: {cuts}")
    return cuts


@TOPOLOGIES.register("vanilla")
def vanilla(model, *, cuts=None, channel: Channel | None = None, optimizer: OptimizerSpec | None = None,
            label_source: str = "data_owner") -> ChainTopology:
    """Client segment -> server segment; the client sends labels, the server computes the loss."""
    return ChainTopology(model, cuts=_resolve_cuts(model, cuts, 1, "vanilla"), owners=["client", "server"], name="vanilla",
                         channel=channel, optimizer=optimizer, label_source=label_source)


@TOPOLOGIES.register("ushape")
def ushape(model, *, cuts=None, channel: Channel | None = None, optimizer: OptimizerSpec | None = None) -> ChainTopology:
    """Client head -> server body -> client tail: labels and loss never leave the client."""
    return ChainTopology(model, cuts=_resolve_cuts(model, cuts, 2, "ushape"), owners=["client", "server", "client"],
                         name="ushape", channel=channel, optimizer=optimizer)


def _hop_cuts(model, cuts, hops: int, extra: int, topology: str) -> list[str]:
    if hops < 1:
        raise ConfigError(f"{topology} needs hops >= 1, got {hops}")
    if cuts is not None:
        hops = len(list(cuts)) - extra
        if hops < 1:
            raise ConfigError(f"{topology} needs at least {extra + 1} cut points, got {len(list(cuts))}")
    return _resolve_cuts(model, cuts, hops + extra, topology)


@TOPOLOGIES.register("multihop")
def multihop(model, *, hops: int = 1, cuts=None, channel: Channel | None = None, optimizer: OptimizerSpec | None = None,
             label_source: str = "data_owner") -> ChainTopology:
    """Client -> hop1 -> ... -> server: a chain of >= 3 parties where only neighbours talk.

    ``hops`` intermediate parties (ignored when ``cuts`` is given: then there is one hop per cut
    beyond the first).
    """
    cuts = _hop_cuts(model, cuts, hops, 1, "multihop")
    owners = ["client", *[f"hop{i}" for i in range(1, len(cuts))], "server"]
    return ChainTopology(model, cuts=cuts, owners=owners, name="multihop", channel=channel, optimizer=optimizer,
                         label_source=label_source)


@TOPOLOGIES.register("multihop-ushape")
def multihop_ushape(model, *, hops: int = 1, cuts=None, channel: Channel | None = None,
                    optimizer: OptimizerSpec | None = None) -> ChainTopology:
    """Client -> hop1 -> ... -> server -> client: multi-hop with labels kept by the client."""
    cuts = _hop_cuts(model, cuts, hops, 2, "multihop-ushape")
    owners = ["client", *[f"hop{i}" for i in range(1, len(cuts) - 1)], "server", "client"]
    return ChainTopology(model, cuts=cuts, owners=owners, name="multihop-ushape", channel=channel, optimizer=optimizer)


def _builder_parameters(name: str) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters of the builder registered as ``name`` (without ``model``), and whether
    it also takes arbitrary keywords (``**kwargs``: a builder that forwards them unchecked)."""
    params = inspect.signature(TOPOLOGIES.lookup(name)).parameters.values()
    named = {p.name: p for p in params
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("self", "model")}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def build_topology(name: str, model, **kwargs) -> Topology:
    """Build the topology registered as ``name`` over ``model``.

    Every topology accepts the :data:`COMMON_OPTIONS` (``cuts``, ``optimizer``, ``label_source``,
    ``seed``, ``model_name``, ``model_options``, ``channel``) and uses those that apply to it; a
    common option given as None means the topology's default. Anything else must be one of the
    topology's own options (:func:`topology_options`; see each builder's docstring).

    Raises:
        UnknownNameError: no topology is registered as ``name``.
        ConfigError: an option the topology does not have, an invalid ``label_source``, or a bad
            value of one of its options.
    """
    named, forwards = _builder_parameters(name)  # UnknownNameError for an unknown name
    if kwargs.get("label_source") is not None:
        check_label_source(kwargs["label_source"])  # checked even where it does not apply
    if not forwards:
        unknown = [k for k in kwargs if k not in named and k not in COMMON_OPTIONS]
        if unknown:
            own = ", ".join(topology_options(name)) or "none"
            raise ConfigError(f"topology {name!r} has no option {unknown[0]!r}; its own options: {own} (and the common "
                              f"ones: {', '.join(COMMON_OPTIONS)}); see help(secsplit.topologies.presets) or "
                              f"`secsplit list`")
        kwargs = {k: v for k, v in kwargs.items()
                  if k not in COMMON_OPTIONS or (k in named and v is not None)}
    else:  # a builder taking **kwargs gets every option given; None still means its default
        kwargs = {k: v for k, v in kwargs.items() if k not in COMMON_OPTIONS or v is not None}
    try:
        return TOPOLOGIES.create(name, model=model, **kwargs)
    except TypeError as error:  # a builder forwarding **kwargs: a misspelt option surfaces one level down
        if not forwards or "keyword argument" not in str(error):
            raise
        bad = str(error).rsplit(" ", 1)[-1]
        raise ConfigError(f"topology {name!r} has no option {bad}; see help(secsplit.topologies.presets) "
                          f"or `secsplit list` for its options") from None


def topology_options(name: str) -> dict[str, object]:
    """The options of the topology registered as ``name`` beyond :data:`COMMON_OPTIONS`, with their defaults.

    E.g. ``{"k": None, "merge": "concat", "views": None, "layout": "strips"}`` for vertical, ``{}``
    for vanilla; an option without a default maps to :data:`inspect.Parameter.empty`. For docs,
    ``secsplit list`` and validating configurations.

    Raises:
        UnknownNameError: no topology is registered as ``name``.
    """
    named, _ = _builder_parameters(name)
    return {n: p.default for n, p in named.items() if n not in COMMON_OPTIONS}


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
              channel, optimizer, label_source="data_owner"):
    from secsplit.topologies.vertical import VerticalTopology

    if model_name is None:
        raise ConfigError(f"topology {name!r} builds one model per client for that client's own features, so it "
                          f"needs model_name= (the registered model name, e.g. 'lenet' or 'mlp'); the given "
                          f"model only supplies input_shape and num_classes")
    views = _vertical_views(tuple(model.input_shape), k, views, layout)
    return VerticalTopology(model_name, input_shape=model.input_shape, num_classes=model.num_classes, views=views,
                            cuts=cuts, merge=merge, ushape=ushape, seed=seed, model_options=model_options, name=name,
                            channel=channel, optimizer=optimizer, label_source=label_source)


@TOPOLOGIES.register("vertical")
def vertical(model, *, k: int | None = None, merge: str = "concat", views=None, layout: str = "strips",
             model_name: str | None = None, model_options: dict | None = None, cuts=None, seed: int = 0,
             channel: Channel | None = None, optimizer: OptimizerSpec | None = None,
             label_source: str = "data_owner") -> Topology:
    """k clients hold different features of each sample (vertical / multi-modal); the server merges and labels.

    ``model`` supplies ``input_shape`` and ``num_classes``; each client gets its own
    ``model_name`` model (required; with ``model_options``) for its view, seeded ``seed + i``.
    ``views`` default: for images ``k`` (default 2) vertical strips, or with ``layout="grid"`` 4
    quadrants; for tables ``k`` (default 2) contiguous column groups. ``merge``: "concat"
    (aggregation layer), "sum" or "mean". ``cuts=[cut]`` (default: the per-client model's
    ``suggested_cuts(1)``). ``channel``, ``optimizer``, ``label_source`` go to :class:`VerticalTopology`.
    """
    return _vertical(model, "vertical", False, model_name=model_name, k=k, merge=merge, views=views, layout=layout,
                     cuts=cuts, seed=seed, model_options=model_options, channel=channel, optimizer=optimizer,
                     label_source=label_source)


@TOPOLOGIES.register("vertical-ushape")
def vertical_ushape(model, *, k: int | None = None, merge: str = "concat", views=None, layout: str = "strips",
                    model_name: str | None = None, model_options: dict | None = None, cuts=None, seed: int = 0,
                    channel: Channel | None = None, optimizer: OptimizerSpec | None = None) -> Topology:
    """Vertical clients -> server -> client0: client0 keeps the last layer(s), labels and loss.

    Options as for ``vertical``; ``cuts=[cut, tail_cut]`` (default: ``suggested_cuts(2)``).
    """
    return _vertical(model, "vertical-ushape", True, model_name=model_name, k=k, merge=merge, views=views,
                     layout=layout, cuts=cuts, seed=seed, model_options=model_options, channel=channel,
                     optimizer=optimizer)

"""Named chain configurations: vanilla, U-shape, multi-hop and multi-hop U-shape."""

from __future__ import annotations

from collections.abc import Sequence

from secsplit.errors import ConfigError
from secsplit.registry import Registry
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


def build_topology(name: str, model, **kwargs) -> ChainTopology:
    """Build the topology registered as ``name`` over ``model`` (see each builder for options)."""
    return TOPOLOGIES.create(name, model=model, **kwargs)


def list_topologies() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered topology."""
    return [(n, (TOPOLOGIES.lookup(n).__doc__ or "").strip().splitlines()[0]) for n in TOPOLOGIES.names()]

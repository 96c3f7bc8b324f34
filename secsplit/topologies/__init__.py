"""Split-learning configurations; each is a Topology the one Trainer drives."""

from secsplit.topologies.base import LABEL_SOURCES, Route, StepResult, Topology
from secsplit.topologies.chain import ChainTopology
from secsplit.topologies.many_clients import ManyClientTopology, RelayTopology, SplitFedTopology
from secsplit.topologies import multitask  # noqa: F401  (registers multitask, multitask-ushape, multitask-local)
from secsplit.topologies.presets import COMMON_OPTIONS, TOPOLOGIES, build_topology, list_topologies, topology_options
from secsplit.topologies.vertical import VerticalTopology, align_ids, assemble_vertical

__all__ = [
    "COMMON_OPTIONS", "ChainTopology", "LABEL_SOURCES", "ManyClientTopology", "RelayTopology", "Route",
    "SplitFedTopology", "StepResult", "TOPOLOGIES", "Topology", "VerticalTopology", "align_ids", "assemble_vertical",
    "build_topology", "list_topologies", "topology_options",
]

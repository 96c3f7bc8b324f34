"""Split-learning configurations; each is a Topology the one Trainer drives."""

from secsplit.topologies.base import StepResult, Topology
from secsplit.topologies.chain import ChainTopology
from secsplit.topologies.many_clients import ManyClientTopology, RelayTopology, SplitFedTopology
from secsplit.topologies import multitask  # noqa: F401  (registers multitask, multitask-ushape, multitask-local)
from secsplit.topologies.presets import TOPOLOGIES, build_topology, list_topologies
from secsplit.topologies.vertical import VerticalTopology, align_ids, assemble_vertical

__all__ = [
    "ChainTopology", "ManyClientTopology", "RelayTopology", "SplitFedTopology", "StepResult", "TOPOLOGIES",
    "Topology", "VerticalTopology", "align_ids", "assemble_vertical",
    "build_topology", "list_topologies",
]

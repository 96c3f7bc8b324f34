"""Split-learning configurations; each is a Topology the one Trainer drives."""

from secsplit.topologies.base import StepResult, Topology
from secsplit.topologies.chain import ChainTopology
from secsplit.topologies.presets import TOPOLOGIES, build_topology, list_topologies

__all__ = ["ChainTopology", "StepResult", "TOPOLOGIES", "Topology", "build_topology", "list_topologies"]

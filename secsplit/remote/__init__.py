"""Split training and inference across processes and machines (gRPC with mutual TLS)."""

from secsplit.remote.client import RemoteChainTopology
from secsplit.remote.server import TrainingServer
from secsplit.remote.session import REMOTE_TOPOLOGIES, SessionSpec

__all__ = ["REMOTE_TOPOLOGIES", "RemoteChainTopology", "SessionSpec", "TrainingServer"]

"""Served split inference across processes and machines (gRPC with mutual TLS).

Training across processes runs every topology's own step over a
:class:`~secsplit.channel.network.NetworkChannel` (``secsplit serve --role PARTY``, ``secsplit launch``);
this package holds only the inference server and its client.
"""

from secsplit.remote.serving import InferenceClient, InferenceServer, spec_from_manifest
from secsplit.remote.session import SERVED_TOPOLOGIES, SessionSpec

__all__ = ["SERVED_TOPOLOGIES", "InferenceClient", "InferenceServer", "SessionSpec", "spec_from_manifest"]

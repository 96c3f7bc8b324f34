"""Split training and inference across processes and machines (gRPC with mutual TLS)."""

from secsplit.remote.client import RemoteChainTopology
from secsplit.remote.server import TrainingServer
from secsplit.remote.session import REMOTE_TOPOLOGIES, SessionSpec


def training_handler(pinned: dict, *, max_batch: int, wait_s: float, checkpoint_dir=None, allow=None):
    """The serving side for the pinned topology: (handler, accepted client names, threads it needs at least).

    One place decides which server runtime a topology needs, so callers never test topology names.
    """
    from secsplit.errors import ConfigError

    topology = pinned.get("topology")
    if topology is not None and topology not in REMOTE_TOPOLOGIES:
        raise ConfigError(f"topology {topology!r} does not run across machines yet; valid: {', '.join(REMOTE_TOPOLOGIES)}")
    if topology == "vertical":
        from secsplit.remote.session import MAX_VERTICAL_CLIENTS
        from secsplit.remote.vertical import VerticalServer

        allowed = allow or [f"client{i}" for i in range(MAX_VERTICAL_CLIENTS)]
        handler = VerticalServer(pinned=pinned, max_batch=max_batch, wait_s=wait_s, checkpoint_dir=checkpoint_dir)
        return handler, allowed, 2 * len(allowed) + 2  # each client's request may wait for the others
    handler = TrainingServer(pinned=pinned, checkpoint_dir=checkpoint_dir, max_batch=max_batch)
    return handler, allow or ["client"], 1


def connect_client(spec: SessionSpec, link, *, party: str, sample_ids, run_id=None, resume_step: int = 0):
    """The client side of a session for ``spec``'s topology (vertical clients also prove their sample ids)."""
    if spec.topology == "vertical":
        from secsplit.remote.vertical import RemoteVerticalClient, sample_digest

        return RemoteVerticalClient(spec, link, party=party, samples=sample_digest(sample_ids), run_id=run_id,
                                    resume_step=resume_step)
    return RemoteChainTopology(spec, link, run_id=run_id, resume_step=resume_step)


__all__ = ["REMOTE_TOPOLOGIES", "RemoteChainTopology", "SessionSpec", "TrainingServer", "connect_client",
           "training_handler"]

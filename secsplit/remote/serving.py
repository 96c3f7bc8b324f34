"""Served split inference: the server's segments of a saved split model answer clients' activations.

``secsplit serve --role inference --checkpoint DIR`` loads only ``server.safetensors`` from a
checkpoint written by ``secsplit train --save``. A client opens a session with a hello carrying the
session spec (it must describe the checkpoint's model, shapes and cuts), then sends eval-phase
activations and gets back logits (vanilla) or the tail's input (U-shape; the answer is computed by
the client's own tail, so the server never sees it). Requests are independent: the gRPC listener
serves them on a thread pool with a bounded queue (see :class:`~secsplit.channel.grpc_link.Listener`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from secsplit.channel.codec import WireMessage, check_tensor
from secsplit.errors import ChannelError, ConfigError
from secsplit.remote.session import PROTOCOL_VERSION, SessionSpec

log = logging.getLogger("secsplit.inference_server")
PARTY = "server"


def spec_from_manifest(manifest: dict) -> SessionSpec:
    """The session spec that describes a saved split model."""
    model, topology = manifest["model"], manifest["topology"]
    seed = model.get("seed")
    return SessionSpec(model=model["name"], input_shape=tuple(manifest["input_shape"]), num_classes=manifest["num_classes"],
                       topology=topology["name"], cuts=tuple(topology["cuts"]), seed=seed if isinstance(seed, int) else 0,
                       model_options=dict(model.get("options") or {}))


def _same_model(a: SessionSpec, b: SessionSpec) -> str | None:
    for key in ("model", "input_shape", "num_classes", "topology", "cuts", "model_options"):
        if getattr(a, key) != getattr(b, key):
            return f"client expects {key}={getattr(a, key)!r}, this server holds {key}={getattr(b, key)!r}"
    return None


class InferenceServer:
    """Answers split-inference requests with the server segments of a checkpoint.

    Args:
        checkpoint: directory written by ``secsplit train --save`` / :func:`save_split_model`.
        max_batch: the largest batch accepted per request.
        max_sessions: open sessions remembered (least recently used forgotten first).
    """

    def __init__(self, checkpoint: str | Path, *, max_batch: int = 4096, max_sessions: int = 1024) -> None:
        from secsplit.checkpoint import load_split_model

        topology = load_split_model(checkpoint, parties=PARTY)
        self.spec = spec_from_manifest(topology.checkpoint.manifest)
        self.topology = topology
        self.indices = [i for i, owner in enumerate(topology.owners) if owner == PARTY]
        if not self.indices:
            raise ConfigError(f"checkpoint {checkpoint} has no server segments to serve")
        self.is_last = self.indices[-1] == len(topology.owners) - 1
        from secsplit.remote.server import TrainingServer

        self.input_shape = TrainingServer._cut_shape(topology, self.indices[0])
        self.max_batch, self.max_sessions = max_batch, max_sessions
        self.sessions: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.requests = 0
        topology.eval()

    def handle(self, message: WireMessage, peer: str) -> WireMessage:
        if message.kind == "control":
            return self._control(message, peer)
        with self._lock:
            if message.run_id not in self.sessions:
                raise ChannelError(f"unknown run {message.run_id!r}: send hello first")
            self.sessions.move_to_end(message.run_id)
        if message.phase != "eval" or message.kind != "activation":
            raise ChannelError(f"an inference server answers eval activations only, got {message.phase} {message.kind}")
        tensor = message.tensor
        batch = 0 if tensor is None or tensor.dim() == 0 else tensor.shape[0]
        if not 1 <= batch <= self.max_batch:
            raise ChannelError(f"activation batch of {batch} outside 1..{self.max_batch}")
        h = check_tensor(message, kind="activation", shape=(batch, *self.input_shape), dtype=torch.float32)
        with torch.no_grad():
            for i in self.indices:
                h = self.topology.segments[i](h)
        with self._lock:
            self.requests += 1
        return WireMessage(run_id=message.run_id, step=message.step, kind="logits" if self.is_last else "activation",
                           src=PARTY, dst=message.src, phase="eval", tensor=h)

    def _control(self, message: WireMessage, peer: str) -> WireMessage:
        if message.tag == "hello":
            if message.meta.get("protocol") != PROTOCOL_VERSION:
                raise ChannelError(f"client speaks protocol {message.meta.get('protocol')!r}, this server {PROTOCOL_VERSION}")
            if not message.run_id:
                raise ChannelError("hello without a run id")
            mismatch = _same_model(SessionSpec.from_dict(message.meta.get("spec")), self.spec)
            if mismatch:
                raise ChannelError(mismatch)
            with self._lock:
                self.sessions[message.run_id] = peer
                while len(self.sessions) > self.max_sessions:
                    self.sessions.popitem(last=False)
            log.info("inference session %s opened by %s", message.run_id, peer)
        elif message.tag == "bye":
            with self._lock:
                self.sessions.pop(message.run_id, None)
        else:
            raise ChannelError(f"an inference server accepts hello and bye control messages, got {message.tag!r}")
        return WireMessage(run_id=message.run_id, step=message.step, kind="control", src=PARTY, dst=message.src,
                           tag=message.tag, meta={"segments": [f"segment{i}" for i in self.indices],
                                                  "parameters": self.topology.parties[PARTY].num_parameters()})

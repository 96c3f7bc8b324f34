"""Served split inference: the server's segments of a saved split model answer clients' activations.

Server: :class:`InferenceServer`; client: :class:`InferenceClient` (what ``secsplit predict --connect`` runs).

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
import uuid
from collections import OrderedDict
from pathlib import Path

import torch

from secsplit.channel import Channel
from secsplit.channel.codec import WireMessage, check_tensor
from secsplit.channel.grpc_link import PeerRefused
from secsplit.errors import ChannelError, ConfigError
from secsplit.remote.session import PROTOCOL_VERSION, SessionSpec
from secsplit.topologies.base import Topology
from secsplit.topologies.chain import chain_routes

log = logging.getLogger("secsplit.inference_server")
PARTY = "server"
#: how the server refuses a request of a session it does not hold (the client then says hello again)
UNKNOWN_SESSION = "send hello first"


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


def cut_shape(topology, index: int) -> tuple[int, ...]:
    """Per-sample shape of what enters segment ``index`` (one zero sample through the segments before it)."""
    with torch.no_grad():
        h = torch.zeros(1, *topology.model.input_shape)
        for segment in topology.segments[:index]:
            was_training = segment.training
            segment.eval()
            h = segment(h)
            segment.train(was_training)
    return tuple(h.shape[1:])


class InferenceServer:
    """Answers split-inference requests with the server segments of a checkpoint.

    Args:
        checkpoint: directory written by ``secsplit train --save`` / :func:`save_split_model`.
        max_batch: the largest batch accepted per request.
        max_sessions: open sessions remembered per client (certificate name); a client's hello
            beyond that forgets its own least recently used session, never another client's. One
            certificate may stand for many client processes (bench_grpc.py's overload run: 128),
            and a session costs only its run id, so the bound is generous.
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
        self.input_shape = cut_shape(topology, self.indices[0])
        self.max_batch, self.max_sessions = max_batch, max_sessions
        self.sessions: dict[str, OrderedDict[str, None]] = {}  # client -> its open run ids, least recent first
        self._lock = threading.Lock()
        self.requests = 0
        topology.eval()

    def handle(self, message: WireMessage, peer: str) -> WireMessage:
        if message.kind == "control":
            return self._control(message, peer)
        with self._lock:
            mine = self.sessions.get(peer, {})
            if message.run_id not in mine:
                raise ChannelError(f"unknown run {message.run_id[:80]!r}: {UNKNOWN_SESSION}")
            mine.move_to_end(message.run_id)
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
                raise ChannelError(f"client speaks protocol {str(message.meta.get('protocol'))[:40]!r}, "
                                   f"this server {PROTOCOL_VERSION}")
            if not message.run_id:
                raise ChannelError("hello without a run id")
            mismatch = _same_model(SessionSpec.from_dict(message.meta.get("spec")), self.spec)
            if mismatch:
                raise ChannelError(mismatch)
            with self._lock:
                mine = self.sessions.setdefault(peer, OrderedDict())
                mine[message.run_id] = None
                mine.move_to_end(message.run_id)
                while len(mine) > self.max_sessions:
                    mine.popitem(last=False)
            log.info("inference session %s opened by %s", message.run_id, peer)
        elif message.tag == "bye":
            with self._lock:
                self.sessions.get(peer, {}).pop(message.run_id, None)
        else:
            raise ChannelError(f"an inference server accepts hello and bye control messages, got {message.tag[:40]!r}")
        return WireMessage(run_id=message.run_id, step=message.step, kind="control", src=PARTY, dst=message.src,
                           tag=message.tag, meta={"segments": [f"segment{i}" for i in self.indices],
                                                  "parameters": self.topology.parties[PARTY].num_parameters()})


CLIENT = "client"


def exchange_retrying(link, message: WireMessage, *, rng=None) -> WireMessage:
    """``link.exchange(message)``, retrying a server at capacity with jittered exponential backoff
    (50 ms doubling to 1 s) until the link's timeout; any other refusal is raised at once."""
    import random
    import time

    from secsplit.channel.grpc_link import PeerBusy

    rng = rng or random.Random()
    deadline, wait = time.monotonic() + link.timeout_s, 0.05
    while True:
        try:
            return link.exchange(message)
        except PeerBusy:
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait * (0.5 + rng.random()))
            wait = min(2 * wait, 1.0)


class InferenceClient(Topology):
    """A saved split model whose server segments answer behind ``link`` (``secsplit serve --role inference``).

    Only :meth:`predict` crosses the link; the client's own segments (and, in U-shape, its tail)
    run here. Every tensor also passes through a local :class:`~secsplit.channel.Channel`, so byte
    accounting and taps are those of local split inference; envelope bytes are in ``link.stats``.

    Args:
        local: the client's part of the checkpoint (``load_split_model(DIR, parties="client")``).
        link: a :class:`~secsplit.channel.grpc_link.Link` to the inference server.
    """

    def __init__(self, local, link) -> None:
        self.spec = spec_from_manifest(local.checkpoint.manifest)
        self.link, self.local, self.checkpoint = link, local, local.checkpoint
        self.name = local.name
        self.model, self.cuts, self.owners = local.model, list(local.cuts), list(local.owners)
        self.run_id = f"run-{uuid.uuid4().hex[:12]}"
        self.head = local.segments[0]
        self.tail = local.segments[-1] if self.owners[-1] == CLIENT else None
        self.segments = local.segments
        super().__init__(parties={CLIENT: local.parties[CLIENT]}, channel=Channel(), data_owner=CLIENT,
                         label_owner=self.owners[-1])
        self.server_info = self._control("hello", spec=self.spec.to_dict(), protocol=PROTOCOL_VERSION).meta

    @property
    def party_names(self) -> tuple[str, ...]:
        return (CLIENT, PARTY)

    def routes(self):
        return chain_routes(self.owners, label_source=self.label_source)

    def _control(self, tag: str, **meta) -> WireMessage:
        return exchange_retrying(self.link, WireMessage(run_id=self.run_id, step=0, kind="control", src=CLIENT,
                                                        dst=PARTY, tag=tag, meta=meta))

    def train_step(self, x, y, *, step):
        raise ConfigError("an inference server only answers predictions; train across processes with "
                          "`secsplit serve --role PARTY --config run.toml` (docs/transport.md)")

    @torch.no_grad()
    def predict(self, x, *, step=0):
        with self.channel.phase_scope("eval"), self.flops.step("eval", int(x.shape[0])):
            with self.flops.party(CLIENT):
                z = self.callbacks.transform_activation(self.head(x), party=CLIENT, step=step, phase="eval")
            self.channel.send(CLIENT, PARTY, "activation", z, step=step)
            request = WireMessage(run_id=self.run_id, step=step, kind="activation", src=CLIENT, dst=PARTY,
                                  phase="eval", tensor=z)
            try:
                reply = exchange_retrying(self.link, request)
            except PeerRefused as error:
                if UNKNOWN_SESSION not in str(error):
                    raise
                # the server forgot the session (it restarted, or this certificate's oldest session
                # made way for a newer one): open it again, once
                self._control("hello", spec=self.spec.to_dict(), protocol=PROTOCOL_VERSION)
                reply = exchange_retrying(self.link, request)
            kind = "logits" if self.tail is None else "activation"
            shape = (x.shape[0], self.spec.num_classes) if self.tail is None else None
            tensor = check_tensor(reply, kind=kind, shape=shape, dtype=torch.float32, what=f"server's {kind}")
            h = self.channel.send(PARTY, CLIENT, kind, tensor, step=step)
            if self.tail is None:
                return h
            with self.flops.party(CLIENT):
                return self.tail(h)

    def close(self) -> None:
        """Tell the server the session is over (a server already gone is no error here)."""
        try:
            self._control("bye")
        except ChannelError:
            pass

    def describe(self) -> dict:
        info = super().describe()
        info["parties"][PARTY] = {"segments": self.server_info.get("segments", []),
                                  "parameters": self.server_info.get("parameters"), "remote": self.link.address}
        info["transport"] = self.link.stats.as_dict()
        return info

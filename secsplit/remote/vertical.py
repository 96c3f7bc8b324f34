"""Vertical split training across machines: k client processes, one feature view each, one server.

Each client ``client{i}`` holds view i of every sample (columns or an image region) and runs its
own head on it; the server merges the k cut-layer outputs (concat / sum / mean) and runs the rest.
client0 also holds the labels and sends them, as in process with ``label_source="data_owner"``.
Only client0 learns the predictions; the other clients see nothing but their own gradients.

Protocol for training step ``s`` (each client runs the same Trainer over the same batches):

- every client: ``activation`` of its view [ack];
- client0: ``labels`` [its ``gradient``, loss and accuracy in meta]: the server waits until all
  k activations of step s are in, then runs merge + body, the loss and the backward pass;
- client i > 0: control ``pull`` [its ``gradient``]: waits until step s's backward is done.

Evaluation: every client sends its eval ``activation`` numbered by its own evaluation counter
[ack]; client0's request waits for the other views of the same batch and gets the ``logits``.

Sample alignment: every client's hello carries a digest of its training sample IDs (in order); the
server refuses a client whose digest differs from the first client's, naming both, so misaligned
rows never train together. Waits are bounded (``wait_s``): a missing client is a clear refusal,
not a hang. Checkpoints: every client asks the server to save at the same steps (the first request
saves); a resumed session's clients all name the same resume step.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import torch
import torch.nn.functional as F

from secsplit.callbacks import Callback, CallbackList
from secsplit.channel import Channel
from secsplit.channel.codec import WireMessage, check_tensor
from secsplit.errors import ChannelError, ConfigError
from secsplit.remote.client import RemoteClient
from secsplit.remote.session import PROTOCOL_VERSION, SessionSpec
from secsplit.topologies.base import Route, StepResult, gradient_at

log = logging.getLogger("secsplit.server")
SERVER = "server"
#: Evaluation batches a server keeps waiting for their other views before refusing more.
MAX_PENDING_EVAL = 64


def sample_digest(ids: torch.Tensor) -> str:
    """A digest of the training sample IDs in order: equal digests mean aligned rows."""
    return hashlib.sha256(torch.as_tensor(ids, dtype=torch.int64).contiguous().numpy().tobytes()).hexdigest()


class VerticalServer:
    """Plays the server of vertical split training for one set of k clients at a time.

    Args:
        pinned: settings every client's spec must match (None values are free).
        callbacks: server-side plug-ins (``transform_labels``, ``transform_gradient``).
        max_batch: the largest batch accepted.
        wait_s: how long one client's request waits for the others' messages of the same step.
    """

    def __init__(self, *, pinned: dict | None = None, callbacks: list[Callback] | tuple = (), max_batch: int = 4096,
                 wait_s: float = 30.0, checkpoint_dir=None, keep: int = 3) -> None:
        from secsplit.remote.server import ServerStates

        self.states = ServerStates(checkpoint_dir, keep=keep)
        self.pinned = dict(pinned or {})
        self.callbacks = CallbackList(callbacks)
        self.max_batch, self.wait_s = max_batch, wait_s
        self.cond = threading.Condition()
        self.finished = threading.Event()
        self.last_activity = time.monotonic()
        self.steps_trained = 0
        self._reset_session()

    def _reset_session(self) -> None:
        self.run_id: str | None = None
        self.spec: SessionSpec | None = None
        self.joined: dict[str, str] = {}  # client -> its sample digest
        self.resume_step = 0
        self.left: set[str] = set()
        self.next_step = 0
        self.activations: dict[str, torch.Tensor] = {}
        self.gradients: dict[int, dict[str, torch.Tensor]] = {}
        self.evaluations: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def session_open(self) -> bool:
        return self.run_id is not None

    def abort(self, reason: str) -> None:
        with self.cond:
            if self.run_id is not None:
                log.error("vertical session %s aborted at step %d: %s", self.run_id, self.next_step, reason)
                self._reset_session()
                self.cond.notify_all()

    # -- entry point -------------------------------------------------------------------------------
    def handle(self, message: WireMessage, peer: str) -> WireMessage:
        with self.cond:
            self.last_activity = time.monotonic()
            if message.kind == "control" and message.tag == "hello":
                return self._hello(message, peer)
            if self.run_id is None or message.run_id != self.run_id:
                raise ChannelError(f"unknown run {message.run_id!r}: send hello first")
            if peer not in self.joined:
                raise ChannelError(f"{peer!r} has not joined run {self.run_id!r}")
            if message.kind == "control":
                return self._control(message, peer)
            if message.phase == "eval":
                return self._evaluate(message, peer)
            if message.kind == "activation":
                return self._activation(message, peer)
            if message.kind == "labels" and peer == self.clients[0]:
                return self._labels(message, peer)
            raise ChannelError(f"unexpected {message.kind} message from {peer} in a vertical step")

    def _reply(self, message: WireMessage, kind: str, tensor=None, **meta) -> WireMessage:
        return WireMessage(run_id=message.run_id, step=message.step, kind=kind, src=SERVER, dst=message.src,
                           phase=message.phase, tag=message.tag if kind == "control" else "", tensor=tensor, meta=meta)

    def _wait(self, ready, what: str) -> None:
        """Wait (lock released) until ``ready()``; a clear refusal when the others do not come."""
        run = self.run_id
        if not self.cond.wait_for(lambda: ready() or self.run_id != run, timeout=self.wait_s):
            raise ChannelError(f"waited {self.wait_s:g} s for {what}")
        if self.run_id != run:
            raise ChannelError(f"run {run!r} was aborted while waiting for {what}")

    # -- session -----------------------------------------------------------------------------------
    def _hello(self, message: WireMessage, peer: str) -> WireMessage:
        meta = message.meta
        if meta.get("protocol") != PROTOCOL_VERSION:
            raise ChannelError(f"client speaks protocol {meta.get('protocol')!r}, this server {PROTOCOL_VERSION}")
        spec = SessionSpec.from_dict(meta.get("spec"))
        spec.check_pinned(self.pinned)
        if spec.topology != "vertical":
            raise ConfigError(f"this server runs vertical sessions; the client proposes {spec.topology!r}")
        if spec.model_options and "model_options" not in self.pinned:
            raise ConfigError("this server accepts model options only when its operator pins them")
        digest = meta.get("samples")
        if not isinstance(digest, str) or len(digest) != 64:
            raise ChannelError("hello lacks the digest of the client's training sample IDs")
        if peer not in spec.clients:
            raise ChannelError(f"{peer!r} is not a client of this vertical session; expected one of {spec.clients}")
        resume = meta.get("resume_step", 0)
        if not isinstance(resume, int) or isinstance(resume, bool) or resume < 0:
            raise ChannelError(f"resume_step must be a non-negative integer, got {resume!r}")
        if self.run_id is None:
            topology = spec.build()
            if resume:
                self.states.load(message.run_id, spec, topology.parties[SERVER], resume)
            self.resume_step = self.next_step = resume
            self.run_id, self.spec, self.topology = message.run_id, spec, topology
            self.clients = list(topology.clients)
            self.party = topology.parties[SERVER]
            self.cut_shapes = {c: tuple(s) for c, s in zip(self.clients, topology.cut_shapes)}
            log.info("vertical session %s opened by %s: %d clients, %s, merge %s", self.run_id, peer, len(self.clients),
                     spec.model, topology.merge)
        if spec != self.spec:  # checked before the run id: a different spec is why the derived ids differ
            raise ConfigError(f"{peer} proposes a session spec different from the one {sorted(self.joined)} agreed on "
                              f"(or run {self.run_id!r} is still in progress)")
        if peer in self.joined:
            raise ChannelError(f"{peer} has already joined run {self.run_id!r}")
        for other, theirs in self.joined.items():
            if theirs != digest:
                raise ChannelError(f"{peer}'s training sample IDs differ from {other}'s: the rows are not aligned "
                                   f"(use the same data set, split and seed, or align by ID first)")
        if message.run_id != self.run_id:
            raise ChannelError(f"busy: run {self.run_id!r} is in progress")
        if resume != self.resume_step:
            raise ChannelError(f"{peer} resumes from step {resume}, the session from step {self.resume_step}")
        self.joined[peer] = digest
        self.cond.notify_all()
        return self._reply(message, "control", parameters=self.party.num_parameters(), segments=list(self.party.segments),
                           clients=self.clients)

    def _control(self, message: WireMessage, peer: str) -> WireMessage:
        if message.tag == "pull":
            step = message.step
            if peer == self.clients[0]:
                raise ChannelError("client0 gets its gradient in the reply to its labels")
            self._wait(lambda: peer in self.gradients.get(step, {}), f"the gradient of step {step} (has client0 sent "
                       f"its labels, and every client its activation?)")
            grads = self.gradients[step]
            grad = grads.pop(peer)
            if not grads:
                del self.gradients[step]
            return self._reply(message, "gradient", grad)
        if message.tag == "checkpoint":  # every client asks at the same steps; the first request saves
            if message.step != self.next_step:
                raise ChannelError(f"checkpoint at step {message.step} but the server is at step {self.next_step}")
            if not self.states.has(self.run_id, message.step):
                self.states.save(self.run_id, self.spec, self.party, message.step)
            return self._reply(message, "control", step=message.step)
        if message.tag == "bye":
            self.left.add(peer)
            if self.left >= set(self.joined):
                log.info("vertical session %s closed after step %d", self.run_id, self.next_step)
                self._reset_session()
                self.finished.set()
                self.cond.notify_all()
            return self._reply(message, "control")
        raise ChannelError(f"unknown control message {message.tag!r}; valid: hello, pull, checkpoint, bye")

    # -- training ----------------------------------------------------------------------------------
    def _check(self, message: WireMessage, peer: str) -> torch.Tensor:
        tensor = message.tensor
        batch = 0 if tensor is None or tensor.dim() == 0 else tensor.shape[0]
        if not 1 <= batch <= self.max_batch:
            raise ChannelError(f"activation batch of {batch} outside 1..{self.max_batch}")
        return check_tensor(message, kind="activation", shape=(batch, *self.cut_shapes[peer]), dtype=torch.float32)

    def _activation(self, message: WireMessage, peer: str) -> WireMessage:
        if message.step != self.next_step:
            raise ChannelError(f"activation for step {message.step} out of order: expected step {self.next_step}")
        if peer in self.activations:
            raise ChannelError(f"{peer} already sent its activation for step {message.step}")
        tensor = self._check(message, peer)
        batches = {t.shape[0] for t in self.activations.values()}
        if batches and tensor.shape[0] not in batches:
            raise ChannelError(f"{peer} sent a batch of {tensor.shape[0]} for step {message.step}, the others {batches.pop()}")
        self.activations[peer] = tensor.clone().requires_grad_(True)
        self.cond.notify_all()
        return self._reply(message, "control")

    def _labels(self, message: WireMessage, peer: str) -> WireMessage:
        step = message.step
        if step != self.next_step:
            raise ChannelError(f"labels for step {step} out of order: expected step {self.next_step}")
        self._wait(lambda: len(self.activations) == len(self.clients) and step == self.next_step,
                   f"every client's activation of step {step} (have {sorted(self.activations)})")
        received = [self.activations[c] for c in self.clients]
        labels = check_tensor(message, kind="labels", shape=(received[0].shape[0],), dtype=torch.int64)
        if int(labels.min()) < 0 or int(labels.max()) >= self.spec.num_classes:
            raise ChannelError(f"labels must lie in 0..{self.spec.num_classes - 1}")
        labels = self.callbacks.transform_labels(labels, party=SERVER, step=step)
        self.party.zero_grad()
        logits = self.topology.body(self.topology.merger(received))
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        self.party.step()
        grads = {}
        for client, r in zip(self.clients, received):
            grads[client] = self.callbacks.transform_gradient(gradient_at(r), party=SERVER, step=step).detach()
        own = grads.pop(peer)
        if grads:
            self.gradients[step] = grads
        self.activations = {}
        self.next_step = step + 1
        self.steps_trained += 1
        self.cond.notify_all()
        return self._reply(message, "gradient", own, loss=float(loss.detach()),
                           correct=int((logits.detach().argmax(1) == labels).sum()))

    # -- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def _evaluate(self, message: WireMessage, peer: str) -> WireMessage:
        if message.kind != "activation":
            raise ChannelError(f"evaluation accepts activation messages only, got {message.kind}")
        seq = message.step
        views = self.evaluations.setdefault(seq, {})
        if len(self.evaluations) > MAX_PENDING_EVAL:
            del self.evaluations[seq]
            raise ChannelError(f"more than {MAX_PENDING_EVAL} evaluation batches wait for their other views")
        if peer in views:
            raise ChannelError(f"{peer} already sent evaluation batch {seq}")
        views[peer] = self._check(message, peer)
        self.cond.notify_all()
        if peer != self.clients[0]:
            return self._reply(message, "control")
        self._wait(lambda: len(self.evaluations.get(seq, {})) == len(self.clients), f"every view of evaluation batch {seq}")
        views = self.evaluations.pop(seq)
        if len({t.shape[0] for t in views.values()}) != 1:
            raise ChannelError(f"the clients' evaluation batches {seq} differ in size")
        was_training = self.party.segments.training
        self.party.train(False)
        try:
            logits = self.topology.body(self.topology.merger([views[c] for c in self.clients]))
        finally:
            self.party.train(was_training)
        return self._reply(message, "logits", logits)


class RemoteVerticalClient(RemoteClient):
    """One client of vertical split training across machines; the Trainer drives it like any topology.

    Args:
        spec: the session every client proposes identically (topology "vertical").
        link: a connected :class:`~secsplit.channel.grpc_link.Link` to the server.
        party: this client's name, ``client0`` .. ``client{k-1}``: it reads view i of each sample.
        samples: digest of the training sample IDs (:func:`sample_digest`), checked across clients.
        run_id: shared by all clients of the session (default: derived from the spec and samples).

    ``holds_labels`` is True for client0 only; the others report no loss or accuracy. Its routes
    are this client's own: its activation to the server and the gradient back (client0: also the
    labels and, at inference, the logits).
    """

    def __init__(self, spec: SessionSpec, link, *, party: str, samples: str, run_id: str | None = None,
                 resume_step: int = 0) -> None:
        local = spec.build()
        if party not in local.clients:
            raise ConfigError(f"party {party!r} is not a client of this vertical session; expected one of {local.clients}")
        self.spec, self.link, self.party_name = spec, link, party
        self.name, self.cuts = local.name, list(local.cuts)
        index = local.clients.index(party)
        self.view, self.head = local.views[index], local.heads[index]
        self._input_shape, self._num_classes, self._clients = local.input_shape, local.num_classes, tuple(local.clients)
        self.holds_labels = index == 0
        self.run_id = run_id or "vertical-" + hashlib.sha256(repr(spec.to_dict()).encode()).hexdigest()[:16]
        self._eval_seq = 0
        super().__init__(parties={party: local.parties[party]}, channel=Channel(), data_owner=party,
                         label_owner=SERVER)
        reply = self._control("hello", 0, spec=spec.to_dict(), protocol=PROTOCOL_VERSION, samples=samples,
                              resume_step=resume_step)
        self.server_info = reply.meta

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The joint input's per-sample shape (this client reads its own view of it)."""
        return self._input_shape

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def party_names(self) -> tuple[str, ...]:
        """Every client of the session and the server."""
        return (*self._clients, SERVER)

    def routes(self):
        me = self.party_name
        routes = [Route(me, SERVER, "activation"), Route(SERVER, me, "gradient")]
        if self.holds_labels:
            routes += [Route(me, SERVER, "labels"), Route(SERVER, me, "logits")]
        return tuple(routes)

    def _exchange(self, kind: str, tensor: torch.Tensor | None, step: int, phase: str, wire_step: int | None = None,
                  tag: str = "") -> WireMessage:
        if tensor is not None:
            self.channel.send(self.party_name, SERVER, kind, tensor, step=step)
        return self.link.exchange(WireMessage(run_id=self.run_id, step=step if wire_step is None else wire_step, kind=kind,
                                              src=self.party_name, dst=SERVER, phase=phase, tag=tag, tensor=tensor))

    def save_training_state(self, directory, step: int) -> None:
        """The server saves its state for ``step`` first (once, whichever client asks first), then this client."""
        self._control("checkpoint", step)
        super().save_training_state(directory, step)

    def train_step(self, x, y, *, step):
        party = self.parties[self.party_name]
        party.zero_grad()
        with self.channel.phase_scope("train"), self.flops.step("train", int(x.shape[0])):
            x_view = self.view(x)  # this client's own features: nothing else of x is read
            with self.flops.party(self.party_name):
                z = self.head(x_view)
                out = self.callbacks.transform_activation(z, party=self.party_name, step=step, phase="train")
            self._exchange("activation", out.detach(), step, "train")
            if self.holds_labels:
                reply = self._exchange("labels", y, step, "train")
                loss, correct = float(reply.meta.get("loss", float("nan"))), int(reply.meta.get("correct", 0))
            else:
                reply = self._control("pull", step)
                loss, correct = float("nan"), 0
            grad = check_tensor(reply, kind="gradient", shape=tuple(out.shape), dtype=torch.float32, what="server's gradient")
            grad = self.channel.send(SERVER, self.party_name, "gradient", grad, step=step)
            with self.flops.party(self.party_name):
                roots, grads = [out], [grad]
                extra = self.callbacks.extra_loss(x_view, z, party=self.party_name, step=step)
                if extra is not None:
                    roots, grads = roots + [extra], grads + [None]
                pairs = [(r, g) for r, g in zip(roots, grads) if r.requires_grad]
                if pairs:
                    torch.autograd.backward([r for r, _ in pairs], [g for _, g in pairs])
        party.step()
        return StepResult(loss=loss, correct=correct, count=int(y.shape[0]))

    @torch.no_grad()
    def predict(self, x, *, step=0):
        """client0: the logits; the other clients contribute their view and get nothing back (None)."""
        seq, self._eval_seq = self._eval_seq, self._eval_seq + 1
        with self.channel.phase_scope("eval"), self.flops.step("eval", int(x.shape[0])):
            with self.flops.party(self.party_name):
                z = self.callbacks.transform_activation(self.head(self.view(x)), party=self.party_name, step=step,
                                                        phase="eval")
            reply = self._exchange("activation", z, step, "eval", wire_step=seq)
            if not self.holds_labels:
                return None
            logits = check_tensor(reply, kind="logits", shape=(x.shape[0], self.spec.num_classes), dtype=torch.float32,
                                  what="server's logits")
            return self.channel.send(SERVER, self.party_name, "logits", logits, step=step)

    def describe(self) -> dict:
        return {**super().describe(), "cuts": list(self.cuts)}

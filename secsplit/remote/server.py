"""The server's side of split training across machines: answers each client message in protocol order.

Protocol for one training step ``s`` (client -> server, reply in brackets):

- vanilla: ``activation`` [ack], ``labels`` [``gradient`` at the cut, with loss and accuracy in meta]
- U-shape: ``activation`` [``activation`` for the client's tail], ``gradient`` of the tail input
  [``gradient`` at the cut]
- evaluation (phase eval): ``activation`` [``logits`` (vanilla) or ``activation`` (U-shape)]
- control: ``hello`` (session spec, run id, resume step) [party info], ``checkpoint`` [ack after the
  server's state for step s is on disk], ``bye`` [ack].

Every message is checked before use: the run id, the step (training steps arrive in order, each
exactly once), dtype and shape (activations must have the cut's shape, gradients the shape of what
the server sent, labels one class index in range per sample). A refusal names the problem; the
client sees it as :class:`~secsplit.channel.grpc_link.PeerRefused` and the server logs it.
One client trains at a time; a second hello while a session is live is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from secsplit.callbacks import Callback, CallbackList
from secsplit.channel.codec import WireMessage, check_tensor
from secsplit.errors import ChannelError, ConfigError
from secsplit.party_state import load_party_state, save_party_state
from secsplit.remote.session import PROTOCOL_VERSION, SessionSpec
from secsplit.topologies.base import gradient_at

log = logging.getLogger("secsplit.server")
PARTY = "server"


@dataclass
class _Pending:
    step: int
    received: torch.Tensor  # the client's activation as a leaf
    output: torch.Tensor    # the server stretch's output, graph attached


class ServerStates:
    """The server party's saved training states: one folder per run id, the last ``keep`` steps kept."""

    def __init__(self, directory: str | Path | None, *, keep: int = 3) -> None:
        self.directory = Path(directory) if directory else None
        self.keep = keep

    def run_dir(self, run_id: str) -> Path:
        if self.directory is None:
            raise ChannelError("this server keeps no checkpoints (start it with --checkpoint-dir to allow resuming)")
        if not run_id or not all(c.isalnum() or c in "-_" for c in run_id) or len(run_id) > 64:
            raise ChannelError("run ids used for checkpoints must be 1-64 letters, digits, '-' or '_'")
        return self.directory / run_id

    def has(self, run_id: str, step: int) -> bool:
        return (self.run_dir(run_id) / f"server-step{step:09d}.json").exists()

    def save(self, run_id: str, spec: SessionSpec, party, step: int) -> None:
        directory = self.run_dir(run_id)
        save_party_state(directory, f"server-step{step:09d}", party, info={"run_id": run_id, "step": step,
                                                                           "spec": spec.to_dict()})
        states = sorted(directory.glob("server-step*.json"))
        for old in states[: max(0, len(states) - self.keep)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".safetensors").unlink(missing_ok=True)

    def load(self, run_id: str, spec: SessionSpec, party, step: int) -> None:
        directory = self.run_dir(run_id)
        name = f"server-step{step:09d}"
        if not (directory / f"{name}.json").exists():
            have = sorted(int(p.stem.removeprefix("server-step")) for p in directory.glob("server-step*.json"))
            raise ChannelError(f"cannot resume run {run_id!r} at step {step}: the server has states for steps "
                               f"{have or 'none'}")
        info = load_party_state(directory, name, party)
        if info.get("spec") != spec.to_dict():
            raise ChannelError("cannot resume: the server's saved state belongs to a different session spec")


class TrainingServer:
    """Plays the server in vanilla and U-shape split training for one client at a time.

    Args:
        pinned: settings the client's spec must match (e.g. ``{"model": "lenet", "topology": "ushape"}``);
            None values are free.
        checkpoint_dir: where ``checkpoint`` requests write the server's state (one subfolder per
            run id, the last ``keep`` steps kept), and where a resuming session reads it.
        callbacks: server-side plug-ins (``transform_labels``, ``transform_gradient``).
        max_batch: the largest batch accepted, bounding memory a client can make the server use.
        wait_s: how long a step's labels or gradient wait for its activation, which a pipelining
            client sends just before them and which may arrive second.
    """

    def __init__(self, *, pinned: dict | None = None, checkpoint_dir: str | Path | None = None,
                 callbacks: Iterable[Callback] = (), max_batch: int = 4096, keep: int = 3, wait_s: float = 10.0) -> None:
        self.pinned = dict(pinned or {})
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.states = ServerStates(checkpoint_dir, keep=keep)
        self.callbacks = CallbackList(callbacks)
        self.max_batch, self.keep = max_batch, keep
        self.lock = threading.Condition()
        self.wait_s = wait_s  # a step's second message may overtake its activation (pipelined client): wait this long
        self.run_id: str | None = None
        self.finished = threading.Event()
        self.last_activity = time.monotonic()
        self.steps_trained = 0
        self._reset_session()

    def _reset_session(self) -> None:
        self.run_id = None
        self.spec: SessionSpec | None = None
        self.topology = None
        self.next_step = 0
        self.pending: _Pending | None = None
        self.refused_step: int | None = None

    # -- entry point ---------------------------------------------------------------------------
    def handle(self, message: WireMessage, peer: str) -> WireMessage:
        with self.lock:
            self.last_activity = time.monotonic()
            if message.kind == "control" and message.tag == "hello":
                return self._hello(message, peer)
            if self.run_id is None:
                raise ChannelError(f"no session is open (run {message.run_id!r} unknown): send hello first")
            if message.run_id != self.run_id:
                raise ChannelError(f"unknown run {message.run_id!r}; this server is in run {self.run_id!r}")
            if message.kind == "control":
                return self._control(message)
            if message.phase == "eval":
                return self._evaluate(message)
            return self._train(message)

    def _reply(self, message: WireMessage, kind: str, tensor=None, **meta) -> WireMessage:
        return WireMessage(run_id=self.run_id or message.run_id, step=message.step, kind=kind, src=PARTY,
                           dst=message.src, phase=message.phase, tag=message.tag if kind == "control" else "",
                           tensor=tensor, meta=meta)

    # -- session ---------------------------------------------------------------------------------
    def _hello(self, message: WireMessage, peer: str) -> WireMessage:
        meta = message.meta
        if meta.get("protocol") != PROTOCOL_VERSION:
            raise ChannelError(f"client speaks protocol {meta.get('protocol')!r}, this server {PROTOCOL_VERSION}")
        if self.run_id is not None:
            raise ChannelError(f"busy: run {self.run_id!r} is in progress (one client trains at a time)")
        if not message.run_id:
            raise ChannelError("hello without a run id")
        spec = SessionSpec.from_dict(meta.get("spec"))
        spec.check_pinned(self.pinned)
        if spec.model_options and "model_options" not in self.pinned:
            raise ConfigError("this server accepts model options only when its operator pins them")
        topology = spec.build()
        if topology.owners[0] != "client" or PARTY not in topology.owners:
            raise ConfigError(f"topology {spec.topology!r} has no client -> server crossing")
        indices = [i for i, owner in enumerate(topology.owners) if owner == PARTY]
        if indices != list(range(indices[0], indices[-1] + 1)):
            raise ConfigError(f"the server's segments must be contiguous, got owners {topology.owners}")
        resume = meta.get("resume_step", 0)
        if not isinstance(resume, int) or isinstance(resume, bool) or resume < 0:
            raise ChannelError(f"resume_step must be a non-negative integer, got {resume!r}")
        if resume:
            self._load(message.run_id, spec, topology.parties[PARTY], resume)
        # the session opens only once everything above succeeded
        self.spec, self.topology, self.run_id, self.indices = spec, topology, message.run_id, indices
        self.is_last = indices[-1] == len(topology.owners) - 1
        self.input_shape = self._cut_shape(topology, indices[0])
        self.party = topology.parties[PARTY]
        self.next_step = resume
        self.pending = None
        log.info("session %s opened by %s: %s %s cuts %s, from step %d", self.run_id, peer, spec.topology, spec.model,
                 list(topology.cuts), resume)
        return self._reply(message, "control", parameters=self.party.num_parameters(), segments=list(self.party.segments),
                           step=self.next_step)

    @staticmethod
    def _cut_shape(topology, index: int) -> tuple[int, ...]:
        with torch.no_grad():
            h = torch.zeros(1, *topology.model.input_shape)
            for segment in topology.segments[:index]:
                segment.eval()
                h = segment(h)
                segment.train()
        return tuple(h.shape[1:])

    def _control(self, message: WireMessage) -> WireMessage:
        if message.tag == "checkpoint":
            if message.step != self.next_step or self.pending is not None:
                raise ChannelError(f"checkpoint at step {message.step} but the server is at step {self.next_step}")
            self._save(message.step)
            return self._reply(message, "control", step=message.step)
        if message.tag == "bye":
            log.info("session %s closed after step %d", self.run_id, self.next_step)
            reply = self._reply(message, "control", step=self.next_step)
            self._reset_session()
            self.finished.set()
            return reply
        raise ChannelError(f"unknown control message {message.tag!r}; valid: hello, checkpoint, bye")

    def abort(self, reason: str) -> None:
        """End the live session (e.g. its client went silent); its saved states stay for a resume."""
        with self.lock:
            if self.run_id is not None:
                log.error("session %s aborted at step %d: %s", self.run_id, self.next_step, reason)
                self._reset_session()
                self.lock.notify_all()

    @property
    def session_open(self) -> bool:
        return self.run_id is not None

    # -- training --------------------------------------------------------------------------------
    def _check_activation(self, message: WireMessage) -> torch.Tensor:
        tensor = message.tensor
        if tensor is None or tensor.dim() != len(self.input_shape) + 1:
            shape = None if tensor is None else tuple(tensor.shape)
            raise ChannelError(f"activation must have shape (batch, {', '.join(map(str, self.input_shape))}), got {shape}")
        batch = tensor.shape[0]
        if not 1 <= batch <= self.max_batch:
            raise ChannelError(f"activation batch of {batch} outside 1..{self.max_batch}")
        return check_tensor(message, kind="activation", shape=(batch, *self.input_shape), dtype=torch.float32)

    def _stretch(self, h: torch.Tensor) -> torch.Tensor:
        for i in self.indices:
            h = self.topology.segments[i](h)
        return h

    def _train(self, message: WireMessage) -> WireMessage:
        step = message.step
        if message.kind == "activation":
            if self.pending is not None or step != self.next_step:
                expected = f"step {self.next_step}" if self.pending is None else f"the rest of step {self.pending.step}"
                raise ChannelError(f"activation for step {step} out of order: expected {expected}")
            try:
                received = self._check_activation(message).clone().requires_grad_(True)
            except ChannelError:
                self.refused_step = step  # wakes a pipelined second message of this step, which then fails at once
                self.lock.notify_all()
                raise
            self.party.zero_grad()
            output = self._stretch(received)
            self.pending = _Pending(step, received, output)
            self.lock.notify_all()
            if self.is_last:
                return self._reply(message, "control")
            return self._reply(message, "activation", output.detach())
        if self.pending is None and step == self.next_step:  # the activation is still on its way
            run = self.run_id
            self.lock.wait_for(lambda: self.run_id != run or self.refused_step == step
                               or (self.pending is not None and self.pending.step == step), timeout=self.wait_s)
            if self.run_id != run:
                raise ChannelError(f"run {run!r} ended while {message.kind} for step {step} waited for its activation")
            if self.refused_step == step and self.pending is None:
                raise ChannelError(f"{message.kind} for step {step} refused: its activation was refused")
        if self.pending is None or step != self.pending.step:
            raise ChannelError(f"{message.kind} for step {step} arrived before its activation")
        pending = self.pending
        if message.kind == "labels" and self.is_last:
            labels = check_tensor(message, kind="labels", shape=(pending.output.shape[0],), dtype=torch.int64)
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.spec.num_classes):
                raise ChannelError(f"labels must lie in 0..{self.spec.num_classes - 1}")
            labels = self.callbacks.transform_labels(labels, party=PARTY, step=step)
            loss = F.cross_entropy(pending.output, labels)
            loss.backward()
            meta = {"loss": float(loss.detach()), "correct": int((pending.output.detach().argmax(1) == labels).sum())}
        elif message.kind == "gradient" and not self.is_last:
            grad = check_tensor(message, kind="gradient", shape=tuple(pending.output.shape), dtype=torch.float32)
            pending.output.backward(grad)
            meta = {}
        else:
            raise ChannelError(f"unexpected {message.kind} message in a {self.spec.topology} step")
        grad_in = self.callbacks.transform_gradient(gradient_at(pending.received), party=PARTY, step=step)
        self.party.step()
        self.pending = None
        self.next_step = step + 1
        self.steps_trained += 1
        return self._reply(message, "gradient", grad_in.detach(), **meta)

    @torch.no_grad()
    def _evaluate(self, message: WireMessage) -> WireMessage:
        if message.kind != "activation":
            raise ChannelError(f"evaluation accepts activation messages only, got {message.kind}")
        was_training = self.party.segments.training
        self.party.train(False)
        try:
            output = self._stretch(self._check_activation(message))
        finally:
            self.party.train(was_training)
        return self._reply(message, "logits" if self.is_last else "activation", output)

    # -- checkpoints -----------------------------------------------------------------------------
    def _save(self, step: int) -> None:
        self.states.save(self.run_id, self.spec, self.party, step)

    def _load(self, run_id: str, spec: SessionSpec, party, step: int) -> None:
        self.states.load(run_id, spec, party, step)

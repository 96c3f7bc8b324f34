"""The client's side of split training across machines: a Topology whose server stretch is remote.

The Trainer, defenses and attacks use it like any in-process topology. Every tensor the client
sends or receives also passes through its local :class:`~secsplit.channel.Channel`, so byte
accounting and taps (what the client observes) are the same as in process; the envelope overhead
is counted separately in :attr:`RemoteChainTopology.link` ``.stats``.

Step by step the arithmetic is the in-process :class:`~secsplit.topologies.ChainTopology`'s, in
the same order, so a remote run with the same seed reproduces the in-process run.
"""

from __future__ import annotations

import uuid

import torch
import torch.nn.functional as F

from secsplit.channel import Channel
from secsplit.channel.codec import WireMessage, check_tensor
from secsplit.errors import ChannelError, ConfigError
from secsplit.remote.session import PROTOCOL_VERSION, SessionSpec
from secsplit.topologies.base import StepResult, Topology, gradient_at
from secsplit.topologies.chain import chain_routes

CLIENT, SERVER = "client", "server"


class RemoteClient(Topology):
    """What every client-side topology across machines shares: control messages, closing, describing the link.

    Subclasses set ``party_name``, ``run_id``, ``link`` and (after their hello) ``server_info``.
    """

    party_name: str = CLIENT

    @property
    def party_names(self) -> tuple[str, ...]:
        """This side's own party and the server across the link."""
        return (*self.parties, SERVER)

    def _control(self, tag: str, step: int, **meta) -> WireMessage:
        return self.link.exchange(WireMessage(run_id=self.run_id, step=step, kind="control", src=self.party_name,
                                              dst=SERVER, tag=tag, meta=meta))

    def close(self) -> None:
        """Tell the server the session is over (a server already gone is no error here)."""
        try:
            self._control("bye", 0)
        except ChannelError:
            pass

    def describe(self) -> dict:
        info = super().describe()
        info["parties"][SERVER] = {"segments": self.server_info.get("segments", []),
                                   "parameters": self.server_info.get("parameters"), "remote": self.link.address}
        info["transport"] = self.link.stats.as_dict()
        return info


class RemoteChainTopology(RemoteClient):
    """Vanilla or U-shape with the server's segments on the far side of ``link``.

    Args:
        spec: the session both sides build (model, shapes, topology, cuts, seed, optimizer).
        link: a connected :class:`~secsplit.channel.grpc_link.Link` to the server.
        run_id: names the session; a resumed run reuses its id.
        resume_step: ask the server to restore its state saved at this step.
        local: the client's own copy of the topology (e.g. loaded from a checkpoint for split
            inference against ``secsplit serve --role inference``); default: built from ``spec``.
    """

    def __init__(self, spec: SessionSpec, link, *, run_id: str | None = None, resume_step: int = 0, local=None) -> None:
        local = spec.build() if local is None else local
        if local.label_source != "data_owner":
            raise ConfigError("across machines the client holds the labels (label_source=data_owner)")
        self.spec, self.link = spec, link
        self.name = local.name
        self.model, self.cuts, self.owners = local.model, list(local.cuts), list(local.owners)
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        self.local = local
        self.head = local.segments[0]
        self.tail = local.segments[-1] if self.owners[-1] == CLIENT else None
        self.segments = local.segments  # the server's entries stay at their initial weights here, unused
        super().__init__(parties={CLIENT: local.parties[CLIENT]}, channel=Channel(), data_owner=CLIENT,
                         label_owner=self.owners[-1])
        reply = self._control("hello", 0, spec=spec.to_dict(), protocol=PROTOCOL_VERSION, resume_step=resume_step)
        self.server_info = reply.meta

    def routes(self):
        return chain_routes(self.owners, label_source=self.label_source)

    # -- messages -----------------------------------------------------------------------------------
    def _exchange(self, kind: str, tensor: torch.Tensor | None, step: int, phase: str) -> WireMessage:
        if tensor is not None:
            self.channel.send(CLIENT, SERVER, kind, tensor, step=step)  # accounting and taps, as in process
        message = WireMessage(run_id=self.run_id, step=step, kind=kind, src=CLIENT, dst=SERVER, phase=phase, tensor=tensor)
        return self.link.exchange(message)

    def _receive(self, reply: WireMessage, kind: str, shape: tuple[int, ...] | None, step: int) -> torch.Tensor:
        tensor = check_tensor(reply, kind=kind, shape=shape, dtype=torch.float32, what=f"server's {kind}")
        return self.channel.send(SERVER, CLIENT, kind, tensor, step=step)

    def checkpoint_remote(self, step: int) -> None:
        """Ask the server to save its state as of ``step`` (before the client saves its own)."""
        self._control("checkpoint", step)

    def save_training_state(self, directory, step: int) -> None:
        """The server saves its state for ``step`` first, then the client its own."""
        self.checkpoint_remote(step)
        super().save_training_state(directory, step)

    # -- training ---------------------------------------------------------------------------------
    def train_step(self, x, y, *, step):
        party = self.parties[CLIENT]
        party.zero_grad()
        with self.channel.phase_scope("train"), self.flops.step("train", int(x.shape[0])):
            with self.flops.party(CLIENT):
                z = self.head(x)
                out = self.callbacks.transform_activation(z, party=CLIENT, step=step, phase="train")
            if self.tail is None:  # vanilla: labels go to the server right behind the activation (its reply
                # is an acknowledgement, so no need to wait for it), and the gradient comes back
                self.channel.send(CLIENT, SERVER, "activation", out.detach(), step=step)
                acknowledged = self.link.exchange_later(WireMessage(run_id=self.run_id, step=step, kind="activation",
                                                                    src=CLIENT, dst=SERVER, phase="train",
                                                                    tensor=out.detach()))
                labels = self.channel.send(CLIENT, SERVER, "labels", y, step=step)
                try:
                    reply = self.link.exchange(WireMessage(run_id=self.run_id, step=step, kind="labels", src=CLIENT,
                                                           dst=SERVER, tensor=labels))
                finally:
                    acknowledged()  # an activation refusal is the reason to report, so it goes first
                loss_value, correct = float(reply.meta.get("loss", float("nan"))), int(reply.meta.get("correct", 0))
            else:  # U-shape: the tail and the loss stay here
                reply = self._exchange("activation", out.detach(), step, "train")
                h = self._receive(reply, "activation", None, step).requires_grad_(True)
                with self.flops.party(CLIENT):
                    logits = self.tail(h)
                    labels = self.callbacks.transform_labels(y, party=CLIENT, step=step)
                    loss = F.cross_entropy(logits, labels)
                    loss.backward()
                grad_h = self.callbacks.transform_gradient(gradient_at(h), party=CLIENT, step=step)
                reply = self._exchange("gradient", grad_h, step, "train")
                loss_value, correct = float(loss.detach()), int((logits.detach().argmax(1) == y).sum())
            grad = self._receive(reply, "gradient", tuple(out.shape), step)
            with self.flops.party(CLIENT):
                roots, grads = [out], [grad]
                extra = self.callbacks.extra_loss(x, z, party=CLIENT, step=step)
                if extra is not None:
                    roots, grads = roots + [extra], grads + [None]
                torch.autograd.backward(roots, grads)
        party.step()
        return StepResult(loss=loss_value, correct=correct, count=int(y.shape[0]))

    @torch.no_grad()
    def predict(self, x, *, step=0):
        with self.channel.phase_scope("eval"), self.flops.step("eval", int(x.shape[0])):
            with self.flops.party(CLIENT):
                z = self.callbacks.transform_activation(self.head(x), party=CLIENT, step=step, phase="eval")
            reply = self._exchange("activation", z, step, "eval")
            if self.tail is None:
                return self._receive(reply, "logits", (x.shape[0], self.spec.num_classes), step)
            h = self._receive(reply, "activation", None, step)
            with self.flops.party(CLIENT):
                return self.tail(h)

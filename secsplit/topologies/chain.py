"""Chains of segments, each owned by one party: vanilla, U-shape, multi-hop and their hybrids.

A chain is the model cut at k points into k+1 segments, plus the owner of each segment. Where two
consecutive segments have different owners, the activation crosses the channel forward and its
gradient crosses back. The first owner holds the raw data; the last owner holds the labels.

- vanilla:   client -> server                 (labels sent to the server, or held by it:
                                               ``label_source="server"``, the two-party setting
                                               of label-leakage studies)
- U-shape:   client -> server -> client       (labels and loss never leave the client)
- multi-hop: client -> hop1 -> ... -> server  (only neighbours talk)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from secsplit.channel import Channel
from secsplit.errors import ConfigError
from secsplit.optim import OptimizerSpec
from secsplit.parties import Party
from secsplit.split import split
from secsplit.topologies.base import LABEL_SOURCES, Route, StepResult, Topology, check_label_source, unknown_outcome

__all__ = ["ChainTopology", "LABEL_SOURCES", "chain_routes"]


def chain_routes(owners: Sequence[str], *, label_source: str) -> tuple[Route, ...]:
    """The routes of a chain owned by ``owners``: each cut's activation forward and its gradient back,
    the labels (data owner to label owner) when the data owner supplies them, and the logits back
    to the data owner at inference, where the two differ."""
    routes = []
    for sender, receiver in zip(owners, owners[1:]):
        routes += [Route(sender, receiver, "activation"), Route(receiver, sender, "gradient")]
    data_owner, label_owner = owners[0], owners[-1]
    if data_owner != label_owner:
        if label_source == "data_owner":
            routes.append(Route(data_owner, label_owner, "labels"))
        routes.append(Route(label_owner, data_owner, "logits"))
    return tuple(routes)


class ChainTopology(Topology):
    """Segments in a line, owned by ``owners[i]``; see the module docstring.

    Args:
        model: a CuttableModel; its segments share parameters with it.
        cuts: k cut-point names, in order.
        owners: k+1 party names, one per segment.
        channel: where messages go (default: a new in-process Channel).
        optimizer: every party's optimizer settings.
        name: the configuration's name (vanilla, ushape, ...), for errors and reports.
        label_source: "data_owner" (the data owner sends each batch's labels to the label owner
            over the channel) or "label_owner" (the label owner holds the labels itself; nothing
            label-related crosses the channel, as in two-party split learning with a label party).
            Moot where the data owner also owns the last segment (U-shape): it then reads "data_owner".
    """

    name = "chain"
    exportable = True

    def __init__(
        self,
        model,
        *,
        cuts: Sequence[str],
        owners: Sequence[str],
        channel: Channel | None = None,
        optimizer: OptimizerSpec | None = None,
        name: str = "chain",
        label_source: str = "data_owner",
    ) -> None:
        self.name = name
        check_label_source(label_source)
        cuts = list(cuts)
        owners = list(owners)
        # where the data owner holds the last segment, the labels never cross: label_source is moot
        self.label_source = "data_owner" if owners and owners[0] == owners[-1] else label_source
        if len(owners) != len(cuts) + 1:
            raise ConfigError(f"{self.name} needs one owner per segment: {len(cuts)} cuts give {len(cuts) + 1} segments, got {len(owners)} owners")
        if any(a == b for a, b in zip(owners, owners[1:])):
            raise ConfigError(f"consecutive segments must have different owners (a cut inside one party is no cut): {owners}")
        self.segments = split(model, cuts)
        self.owners = owners
        self.cuts = cuts
        self.model = model
        optimizer = optimizer or OptimizerSpec()
        by_party: dict[str, dict] = {}
        for i, owner in enumerate(owners):
            by_party.setdefault(owner, {})[f"segment{i}"] = self.segments[i]
        parties = {name: Party(name, segs, optimizer) for name, segs in by_party.items()}
        super().__init__(parties=parties, channel=channel or Channel(), data_owner=owners[0], label_owner=owners[-1])

    def routes(self):
        return chain_routes(self.owners, label_source=self.label_source)

    # -- forward ---------------------------------------------------------------------------------
    # The step is written once for every party, in protocol order: a statement that is one party's
    # work runs where the channel hosts that party (everywhere in process), and a value a party
    # holds is None elsewhere. Only messages cross between parties.
    def _forward(self, x: torch.Tensor, *, step: int, phase: str):
        """Run the chain; returns logits, the crossings ``(sender's output, receiver's leaf, i)`` and
        the data owner's release before any defense transformed it."""
        hosts = self.channel.hosts
        h = x if hosts(self.owners[0]) else None
        crossings = []
        first_release = None
        for i, segment in enumerate(self.segments):
            owner = self.owners[i]
            if i > 0:  # consecutive owners always differ, so every cut is a crossing
                sender = self.owners[i - 1]
                out = h
                if i == 1 and hosts(sender):  # the data owner's release: what input-protection defenses act on
                    first_release = h
                    with self.flops.party(sender):
                        out = self.callbacks.transform_activation(h, party=sender, step=step, phase=phase)
                received = self.channel.send(sender, owner, "activation", out, step=step)
                if phase == "train" and received is not None:
                    received = received.requires_grad_(True)
                crossings.append((out, received, i))
                h = received
            if hosts(owner):
                with self.flops.party(owner):
                    h = segment(h)
        return h, crossings, first_release

    def train_step(self, x, y, *, step):
        hosts, label_owner = self.channel.hosts, self.label_owner
        for party in self.hosted().values():
            party.zero_grad()
        loss = correct = None
        with self.channel.phase_scope("train"), self.flops.step("train", int(x.shape[0])):
            labels = y
            if label_owner != self.data_owner and self.label_source == "data_owner":
                # sent before the forward pass, so they travel while the data owner computes
                labels = self.channel.send(self.data_owner, label_owner, "labels", y, step=step)
            logits, crossings, first_release = self._forward(x, step=step, phase="train")
            if hosts(label_owner):
                loss, correct = self.label_owner_loss(logits, labels, step=step)
            self._backward(loss, crossings, x, first_release, step=step)
        for party in self.hosted().values():
            party.step()
        return unknown_outcome(y) if loss is None else StepResult(loss=float(loss.detach()), correct=correct,
                                                                  count=int(y.shape[0]))

    # -- backward --------------------------------------------------------------------------------
    def _backward(self, loss, crossings, x, first_release, *, step):
        """Each party back-propagates its stretch of the chain and sends the gradient back.

        The data owner's extra loss (e.g. NoPeek) joins its last backward, the one through its cut,
        so the client segment sees one combined backward per step.
        """
        hosts = self.channel.hosts
        roots, grads = [loss], [None]
        for out, received, i in reversed(crossings):
            if hosts(self.owners[i]):
                with self.flops.party(self.owners[i]):
                    torch.autograd.backward(roots, grads)
            grad = self.return_gradient(received, src=self.owners[i], dst=self.owners[i - 1], step=step)
            roots, grads = [out], [grad]
        if hosts(self.data_owner):
            with self.flops.party(self.data_owner):
                extra = self.callbacks.extra_loss(x, first_release, party=self.data_owner, step=step)
                if extra is not None:
                    roots, grads = roots + [extra], grads + [None]
                torch.autograd.backward(roots, grads)

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x, *, step=0):
        """The logits as the data owner holds them; across processes, the label owner's process
        returns the logits it computed and a process hosting neither returns None."""
        with self.channel.phase_scope("eval"):
            with self.flops.step("eval", int(x.shape[0])):
                logits, _, _ = self._forward(x, step=step, phase="eval")
            if self.label_owner != self.data_owner:
                received = self.channel.send(self.label_owner, self.data_owner, "logits", logits, step=step)
                if self.channel.hosts(self.data_owner):
                    logits = received
        return logits

"""The Topology interface: every split-learning configuration implements these few methods."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from secsplit.accounting import FlopMeter
from secsplit.callbacks import Callback, CallbackList
from secsplit.channel import KINDS, Channel
from secsplit.errors import ConfigError
from secsplit.parties import Party

#: Who supplies the labels to the label owner: the data owner sends them over the channel each
#: step, or the label owner holds them itself (nothing label-related crosses the channel).
LABEL_SOURCES = ("data_owner", "label_owner")


def gradient_at(received: torch.Tensor) -> torch.Tensor:
    """The gradient that reached a received tensor; zeros when nothing downstream depended on it."""
    return received.grad if received.grad is not None else torch.zeros_like(received)


def check_label_source(label_source: str) -> str:
    """``label_source`` if it is one of :data:`LABEL_SOURCES`; a ConfigError naming the valid ones otherwise."""
    if label_source not in LABEL_SOURCES:
        raise ConfigError(f"unknown label_source {label_source!r}; valid: {', '.join(LABEL_SOURCES)}")
    return label_source


@dataclass(frozen=True)
class StepResult:
    """What the Trainer (the simulation driver, not a party) learns from one training step."""

    loss: float
    correct: int
    count: int


def unknown_outcome(y: torch.Tensor) -> StepResult:
    """The step result of a process that does not compute the loss (across processes, every party but
    the label owner): NaN loss and no correct predictions; the Trainer reports them as unknown."""
    return StepResult(loss=float("nan"), correct=0, count=int(y.shape[0]))


@dataclass(frozen=True)
class Route:
    """One way a message travels in a configuration: ``src`` sends ``dst`` tensors of ``kind``."""

    src: str
    dst: str
    kind: str


class Topology(ABC):
    """Wires parties and a channel for one configuration; implements a training step and prediction.

    The Trainer never branches on topology names: it calls :meth:`train_step` and :meth:`predict`.
    What the Trainer, attacks, defenses and checkpoints need to know about a configuration is
    declared here with a default; a configuration overrides what differs (never probe for it).

    Attributes:
        parties: party name -> :class:`Party`.
        channel: the only way parties exchange tensors.
        data_owner: the party holding raw inputs (the one that runs split inference; with several
            data owners, the first).
        data_owners: every party holding raw inputs (its own features or its own samples), data
            owner first; default ``(data_owner,)``. The Trainer's client byte and FLOP totals sum
            over them.
        label_owner: the party holding labels and computing the loss.
        flops: per-party FLOP counts (see :class:`secsplit.accounting.FlopMeter`).
    """

    name: str = "topology"
    #: who supplies the labels to the label owner (:data:`LABEL_SOURCES`): "data_owner" (sent over
    #: the channel each step, kind ``labels``) or "label_owner" (held there; no labels cross). Where
    #: the data owner is the label owner (U-shape) nothing crosses either way and it reads "data_owner".
    label_source: str = "data_owner"
    #: whether this process learns the labels' outcome: its training loss/accuracy and evaluation
    #: logits mean something. False only for a party across machines that never sees them (a
    #: vertical client other than client0); the Trainer then reports None for them.
    holds_labels: bool = True
    #: the session id a run across machines is resumed under; None in process
    run_id: str | None = None
    #: the whole model the segments were cut from, where there is one (it supplies
    #: :attr:`input_shape` and :attr:`num_classes`); None otherwise
    model: nn.Module | None = None
    #: where the configuration is one chain of segments (vanilla, U-shape, multi-hop): the owner of
    #: each segment in forward order (``owners[i]`` owns ``segments[i]``; the first is the data
    #: owner). None for configurations that are not one chain (vertical, multi-task, many clients).
    owners: list[str] | None = None
    #: the chain's segments in forward order, where there is one chain of them; else None
    segments: list[nn.Module] | None = None
    #: the cut-point names, in forward order, where the configuration has them
    cuts: list[str] | None = None
    #: whether :func:`secsplit.checkpoint.save_split_model` can store it (and
    #: :func:`~secsplit.checkpoint.load_split_model` rebuild it for split inference): chains built
    #: by :func:`~secsplit.topologies.build_topology` from their name, cuts and label source
    exportable: ClassVar[bool] = False

    def __init__(self, *, parties: dict[str, Party], channel: Channel, data_owner: str, label_owner: str,
                 data_owners: Sequence[str] | None = None) -> None:
        self.parties = parties
        self.channel = channel
        self.data_owner = data_owner
        self.label_owner = label_owner
        self.data_owners: tuple[str, ...] = (data_owner,) if data_owners is None else tuple(data_owners)
        if data_owner not in self.data_owners:
            raise ConfigError(f"the data owner {data_owner!r} must be one of the data owners {list(self.data_owners)}")
        self.callbacks: Callback = CallbackList()
        self.flops = FlopMeter()

    # -- declared capabilities ---------------------------------------------------------------------
    @property
    def party_names(self) -> tuple[str, ...]:
        """Every party of the configuration, including those whose state this process does not hold
        as a separate :attr:`parties` entry (many clients sharing one simulated client segment, the
        server of a run across machines); by default the names of :attr:`parties`."""
        return tuple(self.parties)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample shape of the inputs :meth:`predict` takes (the joint input where clients hold
        parts of it); by default the model's; None when unknown."""
        return None if self.model is None else tuple(self.model.input_shape)

    @property
    def num_classes(self) -> int | None:
        """Width of the logits :meth:`predict` returns; by default the model's; None when unknown."""
        return None if self.model is None else int(self.model.num_classes)

    def routes(self) -> tuple[Route, ...]:
        """Every route a message takes in this configuration, training or inference, in forward order.

        The default is the two-party split: the data owner's activation to the label owner, the
        gradient back, the labels when the data owner supplies them (:attr:`label_source`), and
        the logits back at inference. Configurations with other routes override this; the
        message-flow tests check the declaration against the traffic.
        """
        data, label = self.data_owner, self.label_owner
        if data == label:
            return ()
        routes = [Route(data, label, "activation"), Route(label, data, "gradient")]
        if self.label_source == "data_owner":
            routes.append(Route(data, label, "labels"))
        routes.append(Route(label, data, "logits"))
        return tuple(routes)

    def receivers(self, kind: str, src: str | None = None) -> tuple[str, ...]:
        """The parties that receive messages of ``kind`` (from ``src`` if given), in forward order.

        Who observes what: an attack sits at one of these seats, e.g. ``receivers("gradient")``
        are the parties a label-inference attack can watch.

        Raises:
            ConfigError: ``kind`` is not a message kind.
        """
        if kind not in KINDS:
            raise ConfigError(f"unknown message kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        return tuple(dict.fromkeys(r.dst for r in self.routes() if r.kind == kind and (src is None or r.src == src)))

    @property
    def first_receiver(self) -> str | None:
        """The party that receives the data owner's released activations (the input-reconstruction
        seat): the server in vanilla and U-shape, ``hop1`` in multi-hop; None if there is none."""
        found = self.receivers("activation", src=self.data_owner)
        return found[0] if found else None

    def feature_view(self, party: str):
        """The part of each sample's input ``party`` holds where data owners hold different features of
        the same samples (a vertical client's :class:`~secsplit.data.FeatureView`); None: all of it."""
        return None

    def own_training_rows(self, party: str, n: int) -> torch.Tensor | None:
        """The training rows (of ``n``) ``party`` holds where data owners hold samples of their own
        (many clients); None: every row. Only what can be known without the labels: a partition
        drawn from the labels raises :class:`~secsplit.errors.ConfigError`."""
        return None

    def task_metrics(self, x: torch.Tensor, y: torch.Tensor, *,
                     step: int = 0) -> tuple[torch.Tensor | None, torch.Tensor, dict[str, float]]:
        """One split inference on a labelled batch, as ``Trainer.evaluate`` scores it.

        Returns:
            ``(logits, targets, metrics)``: the logits the data owner holds (None where this party
            is not told them), the targets they are scored against, and per-task batch means
            (``{"task_<task>_accuracy": ..., "task_<task>_loss": ...}``) the Trainer averages over
            batches. By default :meth:`predict`'s logits, ``y`` itself and no per-task metrics;
            multi-task configurations report each task.
        """
        return self.predict(x, step=step), y, {}

    @abstractmethod
    def train_step(self, x: torch.Tensor, y: torch.Tensor, *, step: int) -> StepResult:
        """One forward/backward/update over a batch; every cross-party tensor goes through the channel."""

    @abstractmethod
    def predict(self, x: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        """Split inference: logits as the data owner finally holds them."""

    def epoch_plan(self, n: int, *, labels: torch.Tensor | None = None, epoch: int, batch_size: int,
                   generator: torch.Generator) -> Iterable[torch.Tensor] | None:
        """The index batches of one epoch in the order this configuration trains them; None: the Trainer's own.

        Only configurations where who trains when matters return a plan (many clients taking
        turns, SplitFed rounds); the Trainer then uses it in place of its seeded shuffle. Iterating
        the plan may act between steps (a client hands its weights on, an aggregator averages): the
        Trainer asks for the next batch only after the previous step finished, and exhausts the
        plan before it evaluates. Invalid settings (e.g. more clients than the ``n`` samples) must
        raise here, before any step.

        Args:
            n: training-set size.
            labels: the training labels (label-dependent partitions read them).
            epoch: 1-based epoch number.
            batch_size: samples per step.
            generator: seeded by the Trainer's seed and the epoch; use it for every random choice.
        """
        return None

    def label_owner_loss(self, logits: torch.Tensor, labels: torch.Tensor, *, step: int) -> tuple[torch.Tensor, int]:
        """The label owner's loss (on labels its label plug-ins may have changed) and its count of correct
        predictions (against the true labels, whatever the plug-ins did)."""
        owner = self.label_owner
        transformed = self.callbacks.transform_labels(labels, party=owner, step=step)
        with self.flops.party(owner):
            loss = torch.nn.functional.cross_entropy(logits, transformed)
        return loss, int((logits.detach().argmax(1) == labels).sum())

    def return_gradient(self, received: torch.Tensor, *, src: str, dst: str, step: int) -> torch.Tensor:
        """``src`` sends back the gradient at the tensor it received from ``dst``, through its gradient plug-ins."""
        grad = None
        if self.channel.hosts(src):
            grad = self.callbacks.transform_gradient(gradient_at(received), party=src, step=step)
        return self.channel.send(src, dst, "gradient", grad, step=step)

    def hosted(self) -> dict[str, Party]:
        """The parties whose code runs in this process (every party in process; across processes,
        those the channel hosts): the ones whose optimizers step and whose state is saved here."""
        return {name: party for name, party in self.parties.items() if self.channel.hosts(name)}

    def close(self) -> None:
        """Release transport resources (a link to a remote party); nothing to do in process."""

    def train(self, mode: bool = True) -> None:
        for party in self.parties.values():
            party.train(mode)

    def eval(self) -> None:
        self.train(False)

    def to(self, device: torch.device | str) -> Topology:
        for party in self.parties.values():
            party.segments.to(device)
        return self

    # -- training checkpoints (see secsplit.training.Checkpointing) ------------------------------
    def save_training_state(self, directory, step: int) -> None:
        """Write every local party's weights and optimizer state for ``step``."""
        from secsplit.party_state import save_party_state

        for name, party in self.hosted().items():
            save_party_state(directory, f"{name}-step{step:09d}", party, info={"step": step, "party": name})

    def load_training_state(self, directory, step: int) -> None:
        from secsplit.party_state import load_party_state

        for name, party in self.hosted().items():
            load_party_state(directory, f"{name}-step{step:09d}", party)

    def prune_training_states(self, directory, *, keep_steps) -> None:
        """Delete saved party states of steps not in ``keep_steps``."""
        from pathlib import Path

        keep = {f"-step{s:09d}" for s in keep_steps}
        for path in Path(directory).glob("*-step*.*"):
            if path.suffix in (".json", ".safetensors") and not any(path.stem.endswith(k) for k in keep):
                path.unlink(missing_ok=True)

    def describe(self) -> dict:
        """JSON-ready summary: topology name, parties, their segments and parameter counts."""
        return {
            "topology": self.name,
            "data_owner": self.data_owner,
            "label_owner": self.label_owner,
            "parties": {n: {"segments": list(p.segments), "parameters": p.num_parameters()} for n, p in self.parties.items()},
        }

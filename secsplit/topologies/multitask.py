"""Multi-task split learning: one shared trunk, several task heads (secsplit issue #4).

A *task* is a named target function of the data set's label ``y`` (see :data:`TASKS`): ``class``
(``y`` itself), ``parity`` (``y % 2``), ``half`` (``y >= num_classes // 2``), or one registered
with :func:`register_task`. Each task gets its own head: the model's final classifier block resized
to the task's number of outputs (the blocks after the head cut, if any, come along). The total
loss is ``sum_t weights[t] * cross_entropy_t``; weights are configurable (default all 1).

Two configurations, both built from one :class:`~secsplit.models.base.CuttableModel` cut at
``cuts = [cut]`` or ``[cut, head_cut]`` (``head_cut`` defaults to the last cut point, so by default
a head is exactly the final classifier layer):

- ``multitask`` (a central entity and one local entity): ``client`` (the data owner) runs the
  model up to ``cut`` and sends the activation to the ``server``, which runs the shared trunk
  (``cut`` .. ``head_cut``) and *all* task heads, computes the weighted loss and returns one
  gradient. The client sends each task's labels (kind ``labels``, tag = task name; only the
  derived targets, so a ``parity``-only server never sees the digit), or the server holds them
  (``label_source="label_owner"``: no labels cross). At inference the server returns each task's
  logits (kind ``logits``, tag = task name).
  With ``heads="client"`` (registered as ``multitask-ushape``) the heads stay with the client, as in
  U-shape: the server returns the trunk output and receives its gradient; no labels, logits or
  losses reach the server.
- ``multitask-local`` (several local entities sharing a server trunk): entity ``client{i}`` has its
  own head segment (up to ``cut``), its own task tail (from ``head_cut``) and its own labels for
  ``tasks[i]``; the ``server`` holds one trunk trained by every entity. Per step, each entity in
  turn sends its activation, gets the trunk output back, computes its task loss (weighted by
  ``weights[i]``), returns the gradient of the trunk output and gets the gradient of its
  activation. The server accumulates all entities' trunk gradients and steps once per step, so the
  trunk follows the gradient of the weighted sum of the task losses. Entities train on the same
  samples (``samples="shared"``: the Trainer's batch) or on disjoint ones (``samples="split"``:
  entity ``i`` gets rows ``i, i+k, i+2k, ...`` of each batch). No entity sees another's labels,
  activations or gradients; the server sees no labels.

Per-task metrics: both topologies override :meth:`~secsplit.topologies.Topology.task_metrics`, the
capability the Trainer's ``evaluate`` calls, so history rows carry ``test_task_<task>_accuracy`` and
``test_task_<task>_loss``. :meth:`predict` returns the primary task's (``tasks[0]``) logits after
running split inference for every task, so FLOP and byte accounting of evaluation are the same
whichever is called.

Exactness: ``multitask`` with ``tasks="class"`` trains exactly as ``vanilla`` (same model, same
seed: identical weights), and ``multitask-local`` with one entity and ``tasks="class"`` exactly as
``ushape``, because the first task reuses the model's own blocks.

Label defenses (``transform_labels``, e.g. label DP over the model's classes) apply to the labels of
tasks whose target is the label itself (``class``); derived targets such as ``parity`` are passed as
they are.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from secsplit.channel import Channel
from secsplit.errors import ConfigError, UnknownNameError
from secsplit.models.base import CuttableModel
from secsplit.optim import OptimizerSpec
from secsplit.parties import Party
from secsplit.registry import Registry
from secsplit.seeding import seeded
from secsplit.topologies.base import Route, StepResult, Topology, check_label_source, unknown_outcome
from secsplit.topologies.presets import TOPOLOGIES

CLIENT = "client"
SERVER = "server"
HEADS = ("server", "client")
SAMPLES = ("shared", "split")


# -- tasks ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskTarget:
    """A task derived from the data set's label.

    Attributes:
        name: registry name.
        description: one line.
        outputs: ``num_classes -> number of outputs`` of the task's head.
        target: ``(y, num_classes) -> targets`` (class indices in ``0 .. outputs - 1``).
        identity: the target is the label itself (label defenses apply to it).
    """

    name: str
    description: str
    outputs: Callable[[int], int]
    target: Callable[[torch.Tensor, int], torch.Tensor]
    identity: bool = False


#: Task name -> :class:`TaskTarget`.
TASKS: Registry = Registry("task")


def register_task(name: str, *, outputs: Callable[[int], int], target: Callable[[torch.Tensor, int], torch.Tensor],
                  description: str = "", identity: bool = False) -> TaskTarget:
    """Register a task derived from the label; returns its :class:`TaskTarget`."""
    task = TaskTarget(name, description, outputs, target, identity)
    TASKS.register(name)(task)
    return task


register_task("class", outputs=lambda k: k, target=lambda y, k: y, identity=True,
              description="the label itself (num_classes outputs)")
register_task("parity", outputs=lambda k: 2, target=lambda y, k: torch.remainder(y, 2),
              description="y % 2 (2 outputs)")
register_task("half", outputs=lambda k: 2, target=lambda y, k: (y >= k // 2).to(y.dtype),
              description="y >= num_classes // 2 (2 outputs)")


def parse_tasks(tasks) -> list[str]:
    """Task names from ``"class,parity"`` or a sequence of names; checked against :data:`TASKS`.

    Raises:
        ConfigError: no task, a repeated task, or an unknown name (the message lists valid ones).
    """
    if isinstance(tasks, str):
        names = [t.strip() for t in tasks.split(",") if t.strip()]
    elif isinstance(tasks, Sequence) and all(isinstance(t, str) for t in tasks):
        names = [t.strip() for t in tasks]
    else:
        raise ConfigError(f"tasks must be a comma-separated string or a list of task names, got {tasks!r}")
    if not names:
        raise ConfigError(f"multi-task needs at least one task; valid tasks: {', '.join(TASKS.names())}")
    repeated = sorted({t for t in names if names.count(t) > 1})
    if repeated:
        raise ConfigError(f"tasks must be distinct, got {repeated} more than once in {names}")
    for name in names:
        TASKS.lookup(name)  # UnknownNameError (a ConfigError) listing the valid names
    return names


def parse_weights(weights, n: int) -> list[float]:
    """One non-negative finite weight per task from None (all 1), a number, ``"1,0.5"`` or a sequence.

    Raises:
        ConfigError: wrong count, a negative / non-finite / non-numeric weight, or all weights zero.
    """
    if weights is None:
        return [1.0] * n
    if isinstance(weights, str):
        parts = [w.strip() for w in weights.split(",")]
        try:
            values = [float(w) for w in parts]
        except ValueError:
            raise ConfigError(f"task weights must be numbers, got {weights!r}") from None
    elif isinstance(weights, (int, float)) and not isinstance(weights, bool):
        values = [float(weights)]
    elif isinstance(weights, Sequence) and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        values = [float(w) for w in weights]
    else:
        raise ConfigError(f"task weights must be numbers (e.g. weights=1,0.5), got {weights!r}")
    if len(values) != n:
        raise ConfigError(f"got {len(values)} task weight(s) {values} for {n} task(s); give one weight per task")
    bad = [w for w in values if not math.isfinite(w) or w < 0]
    if bad:
        raise ConfigError(f"task weights must be finite and >= 0, got {values}")
    if not any(values):
        raise ConfigError(f"at least one task weight must be positive, got {values}")
    return values


# -- model pieces --------------------------------------------------------------------------------
def _resolve_cuts(model, cuts, name: str) -> tuple[int, int, list[str]]:
    """Block positions of ``cut`` and ``head_cut`` and the resolved cut names."""
    if not isinstance(model, CuttableModel):
        raise ConfigError(f"{name} needs a CuttableModel (see secsplit.models.create_model), got {type(model).__name__}")
    points = model.cut_points
    if cuts is None:
        cuts = [model.suggested_cuts(1)[0]]
    cuts = [cuts] if isinstance(cuts, str) else list(cuts)
    if len(cuts) == 1:
        cuts.append(points[-1])
    if len(cuts) != 2:
        raise ConfigError(f"topology {name!r} takes 1 or 2 cut points ([cut] or [cut, head_cut]), got {len(cuts)}: {cuts}")
    valid = ", ".join(points)
    for cut in cuts:
        if cut not in points:
            raise UnknownNameError(f"unknown cut point {cut!r}; valid cut points: {valid}")
    first, head = points.index(cuts[0]), points.index(cuts[1])
    if first >= head:
        raise ConfigError(f"{name}: the head cut {cuts[1]!r} must come after the cut {cuts[0]!r} (the server's trunk "
                          f"lies between them); valid cut points in order: {valid}")
    return first, head, cuts


def _task_tail(model: CuttableModel, start: int, width: int, *, original: bool, seed: int) -> nn.Sequential:
    """The model's blocks from position ``start`` on, with the final classifier resized to ``width``.

    ``original``: reuse the model's own blocks (and its classifier when the width matches);
    otherwise deep copies (same initial weights) and, where the width differs or the copy is not
    the original, a fresh ``Linear`` initialized from ``seed``.
    """
    blocks = list(model.named_children())
    classifier_name, classifier = blocks[-1]
    middle = blocks[start:-1]
    if not original:
        middle = [(n, copy.deepcopy(b)) for n, b in middle]
    if original and getattr(classifier, "out_features", None) == width:
        head = classifier
    else:
        if not isinstance(classifier, nn.Linear):
            raise ConfigError(f"multi-task heads replace the model's final classifier, which must be an nn.Linear; "
                              f"this model ends in {type(classifier).__name__}")
        with seeded(seed):
            head = nn.Linear(classifier.in_features, width, bias=classifier.bias is not None)
        head = head.to(device=classifier.weight.device, dtype=classifier.weight.dtype)
    return nn.Sequential(OrderedDict([*middle, (classifier_name, head)]))


def _trainable(roots, grads):
    """The (root, grad) pairs autograd can go through (a segment without parameters has none)."""
    pairs = [(r, g) for r, g in zip(roots, grads) if r is not None and r.requires_grad]
    if pairs:
        torch.autograd.backward([r for r, _ in pairs], [g for _, g in pairs])


class _TaskMixin:
    """Targets, losses and per-task metrics shared by both topologies."""

    tasks: list[str]
    weights: list[float]

    def _targets(self, task: str, y: torch.Tensor) -> torch.Tensor:
        return TASKS.lookup(task).target(y, self.num_classes)

    def _label_defended(self, task: str, labels: torch.Tensor, *, party: str, step: int) -> torch.Tensor:
        if TASKS.lookup(task).identity:
            return self.callbacks.transform_labels(labels, party=party, step=step)
        return labels

    def task_metrics(self, x: torch.Tensor, y: torch.Tensor, *,
                     step: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """One split inference for every task (the capability ``Trainer.evaluate`` calls).

        Returns:
            ``(logits, targets, metrics)``: the primary task's (``tasks[0]``) logits and targets, and
            ``{"task_<task>_accuracy": mean, "task_<task>_loss": mean}`` over this batch for every
            task (the Trainer averages them over batches, weighted by batch size).
        """
        outputs = self.predict_tasks(x, step=step)
        metrics = {}
        for task, logits in outputs.items():
            if logits is None:  # across processes: an entity this process does not run
                continue
            target = self._targets(task, y)
            n = max(len(y), 1)
            metrics[f"task_{task}_accuracy"] = int((logits.argmax(1) == target).sum()) / n
            metrics[f"task_{task}_loss"] = float(F.cross_entropy(logits, target, reduction="sum")) / n
        primary = self.tasks[0]
        return outputs[primary], self._targets(primary, y), metrics

    def predict(self, x, *, step=0):
        """Split inference for every task; returns the primary task's (``tasks[0]``) logits."""
        return self.predict_tasks(x, step=step)[self.tasks[0]]


# -- (a) one data owner, a server trunk, several heads ---------------------------------------------
class MultiTaskTopology(_TaskMixin, Topology):
    """One client segment feeding a server trunk and several task heads; see the module docstring.

    Args:
        model: a CuttableModel (its blocks are shared with the first task's pipeline).
        tasks: task names (:data:`TASKS`), ``"class,parity"`` or a list; the first is primary.
        weights: loss weight per task (``"1,0.5"``, a list, or a number for one task); default 1 each.
        cuts: ``[cut]`` or ``[cut, head_cut]``; default the model's ``suggested_cuts(1)`` and the
            last cut point.
        heads: "server" (heads and loss at the server) or "client" (U-shape: heads, labels and loss
            stay with the client).
        channel, optimizer, label_source: as for :class:`~secsplit.topologies.ChainTopology`
            (``label_source`` applies to ``heads="server"`` only; with the heads at the client it
            reads "data_owner").
        seed: seeds the fresh heads (task ``i`` > 0, or a task whose width differs): ``seed + i``.
        name: configuration name for reports.

    Raises:
        ConfigError: unknown/repeated/no task, bad weights, bad cuts, unknown heads or label_source.
    """

    def __init__(self, model, *, tasks="class,parity", weights=None, cuts=None, heads: str = "server",
                 channel: Channel | None = None, optimizer: OptimizerSpec | None = None,
                 label_source: str = "data_owner", seed: int = 0, name: str | None = None) -> None:
        if heads not in HEADS:
            raise ConfigError(f"unknown heads {heads!r}; valid: {', '.join(HEADS)}")
        self.name = name or ("multitask-ushape" if heads == "client" else "multitask")
        check_label_source(label_source)
        self.tasks = parse_tasks(tasks)
        self.weights = parse_weights(weights, len(self.tasks))
        first, head_cut, self.cuts = _resolve_cuts(model, cuts, self.name)
        self.model = model
        self.heads_at = heads
        self.label_source = label_source if heads == "server" else "data_owner"  # heads at the client: none cross
        self.client_segment = model[: first + 1]
        self.trunk = model[first + 1 : head_cut + 1]
        #: task -> head; in the owning party's segments as ModuleDict keys ``task_<name>`` (a bare key
        #: could clash with nn.Module attributes, e.g. ``half``)
        self.head_of = {
            task: _task_tail(model, head_cut + 1, TASKS.lookup(task).outputs(self.num_classes), original=i == 0,
                             seed=seed + i)
            for i, task in enumerate(self.tasks)}
        self.heads = nn.ModuleDict({f"task_{t}": head for t, head in self.head_of.items()})
        optimizer = optimizer or OptimizerSpec()
        if heads == "server":
            parties = {CLIENT: Party(CLIENT, {"segment0": self.client_segment}, optimizer),
                       SERVER: Party(SERVER, {"segment1": self.trunk, "heads": self.heads}, optimizer)}
            label_owner = SERVER
        else:
            parties = {CLIENT: Party(CLIENT, {"segment0": self.client_segment, "heads": self.heads}, optimizer),
                       SERVER: Party(SERVER, {"segment1": self.trunk}, optimizer)}
            label_owner = CLIENT
        super().__init__(parties=parties, channel=channel or Channel(), data_owner=CLIENT, label_owner=label_owner)

    def routes(self):
        """The client's activation to the server and its gradient back; with the heads at the
        server the labels (``label_source``) and each task's logits at inference, else the trunk
        output to the client and its gradient back."""
        routes = [Route(CLIENT, SERVER, "activation"), Route(SERVER, CLIENT, "gradient")]
        if self.heads_at == "server":
            if self.label_source == "data_owner":
                routes.append(Route(CLIENT, SERVER, "labels"))
            routes.append(Route(SERVER, CLIENT, "logits"))
        else:
            routes += [Route(SERVER, CLIENT, "activation"), Route(CLIENT, SERVER, "gradient")]
        return tuple(routes)

    # -- forward pieces --------------------------------------------------------------------------
    # Written once for every party: a party's statements run where the channel hosts it (everywhere
    # in process); values a party holds are None elsewhere. Only messages cross between parties.
    def _client_release(self, x, *, step, phase):
        z = out = None
        if self.channel.hosts(CLIENT):
            with self.flops.party(CLIENT):
                z = self.client_segment(x)
                out = self.callbacks.transform_activation(z, party=CLIENT, step=step, phase=phase)
        received = self.channel.send(CLIENT, SERVER, "activation", out, step=step)
        if phase == "train" and received is not None:
            received = received.requires_grad_(True)
        return z, out, received

    def train_step(self, x, y, *, step):
        hosts = self.channel.hosts
        for party in self.hosted().values():
            party.zero_grad()
        loss = logits = None
        primary = self.tasks[0]
        with self.channel.phase_scope("train"), self.flops.step("train", int(x.shape[0])):
            z, out, received = self._client_release(x, step=step, phase="train")
            targets = {t: self._targets(t, y) for t in self.tasks}  # at the data owner, who holds the labels
            if self.heads_at == "server":
                if self.label_source == "data_owner":
                    targets = {t: self.channel.send(CLIENT, SERVER, "labels", v, step=step, tag=t)
                               for t, v in targets.items()}
                truth = targets[primary]
                if hosts(SERVER):
                    targets = {t: self._label_defended(t, v, party=SERVER, step=step) for t, v in targets.items()}
                    with self.flops.party(SERVER):
                        h = self.trunk(received)
                        logits = {t: self.head_of[t](h) for t in self.tasks}
                        loss = self._loss(logits, targets)
                        loss.backward()
            else:
                truth = targets[primary]
                h_out = None
                if hosts(CLIENT):
                    targets = {t: self._label_defended(t, v, party=CLIENT, step=step) for t, v in targets.items()}
                if hosts(SERVER):
                    with self.flops.party(SERVER):
                        h_out = self.trunk(received)
                h = self.channel.send(SERVER, CLIENT, "activation", h_out, step=step)
                if h is not None:
                    h = h.requires_grad_(True)
                    with self.flops.party(CLIENT):
                        logits = {t: self.head_of[t](h) for t in self.tasks}
                        loss = self._loss(logits, targets)
                        loss.backward()
                grad = self.return_gradient(h, src=CLIENT, dst=SERVER, step=step)
                if hosts(SERVER):
                    with self.flops.party(SERVER):
                        _trainable([h_out], [grad])
            grad = self.return_gradient(received, src=SERVER, dst=CLIENT, step=step)
            if hosts(CLIENT):
                with self.flops.party(CLIENT):
                    extra = self.callbacks.extra_loss(x, z, party=CLIENT, step=step)
                    _trainable([out, extra], [grad, None])
        for party in self.hosted().values():
            party.step()
        if loss is None:
            return unknown_outcome(y)
        correct = int((logits[primary].detach().argmax(1) == truth).sum())
        return StepResult(loss=float(loss.detach()), correct=correct, count=int(y.shape[0]))

    def _loss(self, logits, targets):
        return sum(w * F.cross_entropy(logits[t], targets[t]) for t, w in zip(self.tasks, self.weights))

    @torch.no_grad()
    def predict_tasks(self, x: torch.Tensor, *, step: int = 0) -> dict[str, torch.Tensor]:
        """Split inference: task name -> logits, as the client finally holds them."""
        with self.channel.phase_scope("eval"), self.flops.step("eval", int(x.shape[0])):
            _, _, received = self._client_release(x, step=step, phase="eval")
            h, logits = None, dict.fromkeys(self.tasks)
            if self.channel.hosts(SERVER):
                with self.flops.party(SERVER):
                    h = self.trunk(received)
                    if self.heads_at == "server":
                        logits = {t: self.head_of[t](h) for t in self.tasks}
            if self.heads_at == "server":
                sent = {t: self.channel.send(SERVER, CLIENT, "logits", v, step=step, tag=t) for t, v in logits.items()}
                return sent if self.channel.hosts(CLIENT) else logits  # the server's own where it runs alone
            h = self.channel.send(SERVER, CLIENT, "activation", h, step=step)
            if h is None:
                return dict.fromkeys(self.tasks)
            with self.flops.party(CLIENT):
                return {t: self.head_of[t](h) for t in self.tasks}

    def describe(self) -> dict:
        info = super().describe()
        info.update(tasks=list(self.tasks), weights=list(self.weights), heads=self.heads_at, cuts=list(self.cuts))
        return info


# -- (b) several local entities sharing a server trunk ---------------------------------------------
class LocalEntitiesTopology(_TaskMixin, Topology):
    """Local entities ``client{i}``, each with its own head, task tail and labels, sharing a server trunk.

    Args:
        model: a CuttableModel; entity 0 uses its blocks, the others deep copies (same initial weights)
            with their task's classifier.
        tasks: one task per entity (``"class,parity"`` or a list); entity 0's is the primary task.
        entities: number of entities (default: one per task); must equal the number of tasks.
        weights: loss weight per entity; default 1 each.
        samples: "shared" (every entity trains on the whole batch) or "split" (entity ``i`` on rows
            ``i::k`` of it).
        cuts: ``[cut]`` or ``[cut, head_cut]`` (default ``suggested_cuts(1)`` and the last cut point):
            head up to ``cut``, server trunk up to ``head_cut``, entity tail after it.
        channel, optimizer: as for :class:`~secsplit.topologies.ChainTopology`.
        label_source: only "data_owner": every entity holds its own labels.
        seed: entity ``i`` > 0 gets a fresh classifier seeded ``seed + i`` (entity 0 too if its task's
            width differs from the model's).
        name: configuration name for reports.

    Raises:
        ConfigError: bad tasks/weights/cuts, entities != number of tasks, unknown samples, or
            label_source other than "data_owner".
    """

    def __init__(self, model, *, tasks="class,parity", entities: int | None = None, weights=None,
                 samples: str = "shared", cuts=None, channel: Channel | None = None,
                 optimizer: OptimizerSpec | None = None, label_source: str = "data_owner", seed: int = 0,
                 name: str = "multitask-local") -> None:
        self.name = name
        self.tasks = parse_tasks(tasks)
        if entities is not None:
            if isinstance(entities, bool) or not isinstance(entities, int) or entities < 1:
                raise ConfigError(f"entities must be an int >= 1, got {entities!r}")
            if entities != len(self.tasks):
                raise ConfigError(f"{name} has one task per local entity: entities={entities} but {len(self.tasks)} "
                                  f"task(s) {self.tasks}; give one task per entity, e.g. tasks=class,parity for 2")
        if samples not in SAMPLES:
            raise ConfigError(f"unknown samples {samples!r}; valid: {', '.join(SAMPLES)}")
        if label_source != "data_owner":
            raise ConfigError(f"{name}: every local entity holds its own labels and keeps them (label_source="
                              f"'data_owner'); got label_source={label_source!r}")
        self.label_source = label_source
        self.weights = parse_weights(weights, len(self.tasks))
        first, head_cut, self.cuts = _resolve_cuts(model, cuts, name)
        self.model = model
        self.samples = samples
        self.clients = [f"client{i}" for i in range(len(self.tasks))]
        self.trunk = model[first + 1 : head_cut + 1]
        self.client_heads = [model[: first + 1] if i == 0 else copy.deepcopy(model[: first + 1])
                             for i in range(len(self.tasks))]
        self.tails = [_task_tail(model, head_cut + 1, TASKS.lookup(t).outputs(self.num_classes), original=i == 0,
                                 seed=seed + i) for i, t in enumerate(self.tasks)]
        optimizer = optimizer or OptimizerSpec()
        parties = {c: Party(c, {"segment0": head, "segment2": tail}, optimizer)
                   for c, head, tail in zip(self.clients, self.client_heads, self.tails)}
        parties[SERVER] = Party(SERVER, {"segment1": self.trunk}, optimizer)
        super().__init__(parties=parties, channel=channel or Channel(), data_owner=self.clients[0],
                         label_owner=self.clients[0], data_owners=self.clients)
        self.task_of = dict(zip(self.clients, self.tasks))

    def routes(self):
        """Per entity: its activation to the server, the trunk output back, and both gradients."""
        routes = []
        for client in self.clients:
            routes += [Route(client, SERVER, "activation"), Route(SERVER, client, "activation"),
                       Route(client, SERVER, "gradient"), Route(SERVER, client, "gradient")]
        return tuple(routes)

    def _rows(self, i: int, n: int, device) -> torch.Tensor | None:
        if self.samples == "shared":
            return None
        return torch.arange(i, n, len(self.clients), device=device)

    def train_step(self, x, y, *, step):
        hosts = self.channel.hosts
        for party in self.hosted().values():
            party.zero_grad()
        total, primary, known = 0.0, (0, 0), False
        with self.channel.phase_scope("train"), self.flops.step("train", int(x.shape[0])):
            for i, (client, task, weight) in enumerate(zip(self.clients, self.tasks, self.weights)):
                rows = self._rows(i, len(x), x.device)
                xi, yi = (x, y) if rows is None else (x[rows], y[rows])
                if len(xi) == 0:
                    continue  # a batch smaller than the number of entities: this entity sits the step out
                z = out = h_out = None
                if hosts(client):
                    with self.flops.party(client):
                        z = self.client_heads[i](xi)
                        out = self.callbacks.transform_activation(z, party=client, step=step, phase="train")
                received = self.channel.send(client, SERVER, "activation", out, step=step)
                if hosts(SERVER):
                    received = received.requires_grad_(True)
                    with self.flops.party(SERVER):
                        h_out = self.trunk(received)
                h = self.channel.send(SERVER, client, "activation", h_out, step=step)
                if hosts(client):
                    h = h.requires_grad_(True)
                    target = self._label_defended(task, self._targets(task, yi), party=client, step=step)
                    with self.flops.party(client):
                        logits = self.tails[i](h)
                        loss = F.cross_entropy(logits, target)
                        (weight * loss).backward()
                grad = self.return_gradient(h, src=client, dst=SERVER, step=step)
                if hosts(SERVER):
                    with self.flops.party(SERVER):
                        _trainable([h_out], [grad])  # accumulates into the trunk's .grad over the entities
                grad = self.return_gradient(received, src=SERVER, dst=client, step=step)
                if hosts(client):
                    with self.flops.party(client):
                        extra = self.callbacks.extra_loss(xi, z, party=client, step=step)
                        _trainable([out, extra], [grad, None])
                    total += weight * float(loss.detach())
                    known = True
                    if i == 0:
                        primary = (int((logits.detach().argmax(1) == self._targets(task, yi)).sum()), len(yi))
        for party in self.hosted().values():
            party.step()
        if not known or not hosts(self.clients[0]):  # the reported outcome is the whole step's, primary task's
            return unknown_outcome(y)
        return StepResult(loss=total, correct=primary[0], count=primary[1])

    @torch.no_grad()
    def predict_tasks(self, x: torch.Tensor, *, step: int = 0) -> dict[str, torch.Tensor]:
        """Split inference of every entity on ``x``: task name -> logits, each held by its entity."""
        outputs = {}
        with self.channel.phase_scope("eval"), self.flops.step("eval", int(x.shape[0])):
            for i, (client, task) in enumerate(zip(self.clients, self.tasks)):
                z = h = outputs[task] = None
                if self.channel.hosts(client):
                    with self.flops.party(client):
                        z = self.client_heads[i](x)
                        z = self.callbacks.transform_activation(z, party=client, step=step, phase="eval")
                received = self.channel.send(client, SERVER, "activation", z, step=step)
                if self.channel.hosts(SERVER):
                    with self.flops.party(SERVER):
                        h = self.trunk(received)
                h = self.channel.send(SERVER, client, "activation", h, step=step)
                if self.channel.hosts(client):
                    with self.flops.party(client):
                        outputs[task] = self.tails[i](h)
        return outputs

    def describe(self) -> dict:
        info = super().describe()
        info.update(tasks=list(self.tasks), entity_tasks=dict(self.task_of), weights=list(self.weights),
                    samples=self.samples, cuts=list(self.cuts), data_owners=list(self.data_owners))
        return info


# -- registry ------------------------------------------------------------------------------------
@TOPOLOGIES.register("multitask")
def multitask(model, *, tasks: str | Sequence[str] = "class,parity", weights=None, heads: str = "server", cuts=None,
              seed: int = 0, channel: Channel | None = None, optimizer: OptimizerSpec | None = None,
              label_source: str = "data_owner") -> MultiTaskTopology:
    """One client segment -> server trunk + several task heads (e.g. tasks=class,parity); per-task metrics.

    ``tasks``: comma-separated names (class, parity, half); ``weights``: loss weight per task (e.g.
    ``1,0.5``); ``cuts=[cut]`` or ``[cut, head_cut]``; ``heads="client"`` keeps heads and labels at
    the client (U-shape). ``channel``, ``optimizer``, ``label_source`` as for :class:`MultiTaskTopology`.
    """
    return MultiTaskTopology(model, tasks=tasks, weights=weights, cuts=cuts, heads=heads, seed=seed, channel=channel,
                             optimizer=optimizer, label_source=label_source)


@TOPOLOGIES.register("multitask-ushape")
def multitask_ushape(model, *, tasks: str | Sequence[str] = "class,parity", weights=None, cuts=None,
                     seed: int = 0, channel: Channel | None = None,
                     optimizer: OptimizerSpec | None = None) -> MultiTaskTopology:
    """Client head -> server trunk -> client's task heads: multi-task with labels and losses at the client.

    Same as ``multitask`` with ``heads="client"``.
    """
    return MultiTaskTopology(model, tasks=tasks, weights=weights, cuts=cuts, heads="client", seed=seed, channel=channel,
                             optimizer=optimizer)


@TOPOLOGIES.register("multitask-local")
def multitask_local(model, *, tasks: str | Sequence[str] = "class,parity", entities: int | None = None,
                    weights=None, samples: str = "shared", cuts=None, seed: int = 0, channel: Channel | None = None,
                    optimizer: OptimizerSpec | None = None) -> LocalEntitiesTopology:
    """Local entities (one task each, e.g. tasks=class,parity) with own heads/tails share a server trunk.

    ``entities``: must equal the number of tasks (default: one per task); ``samples``: "shared"
    (same batch) or "split" (disjoint rows); ``weights``: per entity; ``cuts=[cut]`` or
    ``[cut, head_cut]``. Every entity holds its own labels, so ``label_source`` does not apply.
    """
    return LocalEntitiesTopology(model, tasks=tasks, entities=entities, weights=weights, samples=samples, cuts=cuts,
                                 seed=seed, channel=channel, optimizer=optimizer)

"""Vertically partitioned (multi-modal) split learning: k clients hold different features of the same samples.

Each client ``client{i}`` owns a :class:`~secsplit.data.FeatureView` (tabular columns, or an image
region such as a left/right half or a quadrant) and a bottom segment: the head, up to the cut, of
a model built for its own view's shape (``create_model(model_name, input_shape=view.output_shape(
input_shape), seed=seed + i)``). The server merges the k cut activations and runs the top:

- ``merge="sum"`` / ``"mean"``: element-wise sum / mean of the client activations, which must all
  have the same shape; the server's top is the tail of client0's model after the cut.
- ``merge="concat"``: the *aggregation layer* of the standard VFL top model. Each activation is
  flattened, the k are concatenated, and a server-owned ``Linear(sum of widths -> width of
  client0's cut output)`` maps them back to client0's cut shape, followed by the tail of client0's
  model. Client outputs may differ in shape (e.g. strips of unequal width).

Two configurations:

- ``vertical``: clients -> server. Labels are held by client0 (``label_source="data_owner"``:
  sent to the server each step, kind ``labels``) or by the server (``"label_owner"``: nothing
  label-related crosses the channel); the server computes the loss and returns each client's
  gradient. At inference the server sends the logits to client0.
- ``vertical-ushape``: clients -> server -> client0. A second cut splits off the last layer(s),
  owned by client0 together with the labels; the server sees only activations and gradients,
  never labels or the loss.

Per step, each client sends exactly one ``activation`` (its own share) to the server and gets back
exactly one ``gradient`` of its own shape; no client ever receives another client's activation,
gradient or features.

Sample alignment. In a real deployment each party holds its rows in its own order, keyed by a
sample ID. Before training, align them on the label holder's order::

    topo = build_topology("vertical", model, model_name="mlp", k=2)
    # client i holds (features_i, ids_i): its own columns/region of its rows, in its own order
    x_train = topo.align([f0, f1], [ids0, ids1], label_ids)   # rows now in label_ids' order
    # x_train is the simulation's joint batch (each client still only reads its own view)

:func:`align_ids` alone returns the permutations (``client_ids[i][perm[i]] == label_ids``) and
raises a :class:`~secsplit.errors.DataError` naming the client and the missing/extra IDs when the
sets differ; :meth:`VerticalTopology.align` also routes the IDs over the channel (kind ``ids``,
phase ``setup``) as a stand-in for private set intersection, and assembles the aligned batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from secsplit.channel import Channel
from secsplit.data.partition import FeatureView
from secsplit.errors import ConfigError, DataError
from secsplit.models import create_model
from secsplit.models.base import block_output_shapes
from secsplit.optim import OptimizerSpec
from secsplit.parties import Party
from secsplit.seeding import seeded
from secsplit.split import split
from secsplit.topologies.base import Route, StepResult, Topology, check_label_source, unknown_outcome

MERGES = ("concat", "sum", "mean")
SERVER = "server"
_EXAMPLES = 5


# -- sample alignment ----------------------------------------------------------------------------
def align_ids(client_ids: Sequence[torch.Tensor], label_ids: torch.Tensor, *,
              names: Sequence[str] | None = None) -> list[torch.Tensor]:
    """Permutations ordering each client's rows like the label owner's: ``client_ids[i][perm[i]] == label_ids``.

    Args:
        client_ids: per client, the (N,) integer sample IDs of its rows, in its own order.
        label_ids: the label owner's (N,) sample IDs, in the order training uses.
        names: client names for error messages (default ``client0``, ``client1``, ...).

    Raises:
        DataError: IDs that are not 1-D integers, repeated IDs, or a client whose ID set differs
            from the label owner's (the message names the client, how many IDs are missing and
            extra, and a few examples of each).
    """
    names = list(names) if names is not None else [f"client{i}" for i in range(len(client_ids))]
    if len(names) != len(client_ids):
        raise ConfigError(f"{len(client_ids)} ID lists but {len(names)} client names")
    label_ids = _check_id_tensor(label_ids, "the label owner")
    label_list = label_ids.tolist()
    position = {sample: row for row, sample in enumerate(label_list)}
    perms = []
    for name, ids in zip(names, client_ids):
        ids = _check_id_tensor(ids, name)
        mine = ids.tolist()
        mine_set = set(mine)
        missing = [s for s in label_list if s not in mine_set]
        extra = [s for s in mine if s not in position]
        if missing or extra:
            raise DataError(
                f"{name}'s sample IDs do not match the label owner's: {len(missing)} missing "
                f"(e.g. {missing[:_EXAMPLES]}), {len(extra)} extra (e.g. {extra[:_EXAMPLES]}); "
                f"every party must hold exactly the same samples (intersect the ID sets first)")
        row_of = {sample: row for row, sample in enumerate(mine)}
        perms.append(torch.tensor([row_of[s] for s in label_list], dtype=torch.int64, device=ids.device))
    return perms


def _check_id_tensor(ids, who: str) -> torch.Tensor:
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise DataError(f"{who}'s sample IDs must be a 1-D integer tensor, got shape {tuple(ids.shape)} and dtype {ids.dtype}")
    if len(torch.unique(ids)) != len(ids):
        values, counts = torch.unique(ids, return_counts=True)
        repeated = values[counts > 1].tolist()
        raise DataError(f"{who}'s sample IDs repeat ({len(repeated)} repeated, e.g. {repeated[:_EXAMPLES]}); "
                        f"IDs must identify samples uniquely")
    return ids


def assemble_vertical(views: Sequence[FeatureView], client_features: Sequence[torch.Tensor],
                      perms: Sequence[torch.Tensor], *, input_shape: Sequence[int]) -> torch.Tensor:
    """The joint (N, *input_shape) batch of the simulation: client i's rows reordered by ``perms[i]``
    and written into its view's columns/region (positions no view covers stay zero).

    Raises:
        DataError: a client's features do not have its view's per-sample shape.
    """
    input_shape = tuple(int(d) for d in input_shape)
    n = len(perms[0]) if perms else 0
    first = client_features[0]
    x = torch.zeros(n, *input_shape, dtype=first.dtype, device=first.device)
    for view, features, perm in zip(views, client_features, perms):
        expected = view.output_shape(input_shape)
        if tuple(features.shape[1:]) != expected or len(features) != len(perm):
            raise DataError(f"{view.name}: features must be ({len(perm)}, {', '.join(map(str, expected))}) for its "
                            f"view, got {tuple(features.shape)}")
        rows = features[perm.to(features.device)]
        if view.columns is not None:
            x[:, list(view.columns)] = rows
        else:
            r0, r1, c0, c1 = view.region
            x[:, :, r0:r1, c0:c1] = rows
    return x


# -- the server's merge --------------------------------------------------------------------------
class ConcatMerge(nn.Module):
    """Aggregation layer of the standard VFL top model: flatten, concatenate, Linear, reshape.

    ``Linear(sum of the clients' flattened widths -> prod(out_shape))``, reshaped to ``out_shape``
    (client0's cut shape) so the tail of client0's model can follow.
    """

    def __init__(self, in_shapes: Sequence[Sequence[int]], out_shape: Sequence[int]) -> None:
        super().__init__()
        self.in_shapes = [tuple(s) for s in in_shapes]
        self.out_shape = tuple(out_shape)
        width_in = sum(torch.Size(s).numel() for s in self.in_shapes)
        self.linear = nn.Linear(width_in, torch.Size(self.out_shape).numel())

    def forward(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        h = torch.cat([p.flatten(1) for p in parts], dim=1)
        return self.linear(h).reshape(-1, *self.out_shape)


class ElementwiseMerge(nn.Module):
    """Sum or mean of equally shaped client activations (no parameters)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        h = torch.stack(list(parts)).sum(0)
        return h / len(parts) if self.mode == "mean" else h

    def extra_repr(self) -> str:
        return self.mode


# -- the topology --------------------------------------------------------------------------------
class VerticalTopology(Topology):
    """k clients with disjoint feature views -> one server (-> client0 for U-shape); see the module docstring.

    Args:
        model_name: registered model each client's model is built from (``create_model``).
        input_shape: per-sample shape of the joint input (the simulation's whole batch).
        num_classes: output width.
        views: one FeatureView per client (``vertical_columns`` / ``vertical_image_regions``).
        cuts: ``[cut]`` (vertical) or ``[cut, tail_cut]`` (U-shape); default: the per-client
            model's ``suggested_cuts(1)`` / ``suggested_cuts(2)``.
        merge: "concat" (aggregation layer), "sum" or "mean".
        ushape: give client0 the part after ``tail_cut`` and the labels.
        channel, optimizer: as for :class:`~secsplit.topologies.ChainTopology`.
        label_source: vanilla only: "data_owner" (client0 holds the labels and sends them to the
            server) or "label_owner" (the server holds them). In U-shape client0 always holds them
            (the attribute then reads "data_owner").
        seed: client i's model is seeded ``seed + i``; the concat layer ``seed + k``.
        model_options: extra options for ``create_model`` (e.g. ``hidden=(64, 32)`` for mlp).
        name: configuration name for reports (default "vertical" / "vertical-ushape").

    Raises:
        ConfigError: unknown merge or label_source, wrong number of cuts, no views, or sum/mean
            over clients whose cut outputs differ in shape.
    """

    def __init__(
        self,
        model_name: str,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        views: Sequence[FeatureView],
        cuts: Sequence[str] | None = None,
        merge: str = "concat",
        ushape: bool = False,
        channel: Channel | None = None,
        optimizer: OptimizerSpec | None = None,
        label_source: str = "data_owner",
        seed: int = 0,
        model_options: dict | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or ("vertical-ushape" if ushape else "vertical")
        if merge not in MERGES:
            raise ConfigError(f"unknown merge {merge!r}; valid: {', '.join(MERGES)}")
        check_label_source(label_source)
        views = list(views)
        if len(views) < 2:
            raise ConfigError(f"{self.name} splits each sample's features across clients, so it needs at least 2 "
                              f"client views, got {len(views)}; with one client use vanilla or ushape")
        if not all(isinstance(v, FeatureView) for v in views):
            raise ConfigError(f"views must be FeatureView objects (see secsplit.data.vertical_columns / "
                              f"vertical_image_regions), got {[type(v).__name__ for v in views]}")
        self._input_shape = tuple(int(d) for d in input_shape)
        self._num_classes = int(num_classes)
        self.views = views
        self.merge = merge
        self.ushape = ushape
        self.label_source = "data_owner" if ushape else label_source  # U-shape: client0 holds them, none cross
        self.model_name = model_name
        self.clients = [f"client{i}" for i in range(len(views))]
        view_shapes = [v.output_shape(self.input_shape) for v in views]  # validates views against the input
        options = dict(model_options or {})
        self.models = [create_model(model_name, input_shape=s, num_classes=self.num_classes, seed=seed + i, **options)
                       for i, s in enumerate(view_shapes)]
        n_cuts = 2 if ushape else 1
        if cuts is None:
            cuts = list(self.models[0].suggested_cuts(n_cuts))
        cuts = [cuts] if isinstance(cuts, str) else list(cuts)
        if len(cuts) != n_cuts:
            raise ConfigError(f"topology {self.name!r} needs {n_cuts} cut point(s), got {len(cuts)}: {cuts}")
        self.cuts = cuts
        pieces = [split(m, cuts) for m in self.models]
        self.heads = [p[0] for p in pieces]
        self.body = pieces[0][1]  # client0's model from the cut on (to the tail cut in U-shape)
        self.tail = pieces[0][2] if ushape else None
        self.cut_shapes = [dict(block_output_shapes(m, s))[cuts[0]] for m, s in zip(self.models, view_shapes)]
        if merge == "concat":
            with seeded(seed + len(views)):
                self.merger: nn.Module = ConcatMerge(self.cut_shapes, self.cut_shapes[0])
        else:
            if len(set(self.cut_shapes)) > 1:
                shapes = ", ".join(f"{c} {s}" for c, s in zip(self.clients, self.cut_shapes))
                raise ConfigError(f"merge {merge!r} needs every client's cut output to have the same shape, got "
                                  f"{shapes} at cut {cuts[0]!r}; use merge='concat' or views of equal size")
            self.merger = ElementwiseMerge(merge)

        optimizer = optimizer or OptimizerSpec()
        parties = {}
        for i, client in enumerate(self.clients):
            segments = {"segment0": self.heads[i]}
            if ushape and i == 0:
                segments["segment2"] = self.tail
            parties[client] = Party(client, segments, optimizer)
        parties[SERVER] = Party(SERVER, {"merge": self.merger, "segment1": self.body}, optimizer)
        label_owner = self.clients[0] if ushape else SERVER
        super().__init__(parties=parties, channel=channel or Channel(), data_owner=self.clients[0], label_owner=label_owner,
                         data_owners=self.clients)
        #: who holds the labels before training (and aligns sample IDs): client0, or the server
        #: when it is the label owner with label_source="label_owner".
        self.label_holder = SERVER if (not ushape and label_source == "label_owner") else self.clients[0]

    # -- declared capabilities ------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the joint input (each client reads its own view of it)."""
        return self._input_shape

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def feature_view(self, party: str):
        return dict(zip(self.clients, self.views)).get(party)

    def routes(self):
        """Each client's activation to the server and its gradient back; in U-shape the server's
        output to client0 and its gradient back, else client0's labels (``label_source``) and the
        logits to client0 at inference; sample IDs to and from the label holder for alignment."""
        first = self.clients[0]
        routes = []
        for client in self.clients:
            routes += [Route(client, SERVER, "activation"), Route(SERVER, client, "gradient")]
        if self.ushape:
            routes += [Route(SERVER, first, "activation"), Route(first, SERVER, "gradient")]
        else:
            if self.label_source == "data_owner":
                routes.append(Route(first, SERVER, "labels"))
            routes.append(Route(SERVER, first, "logits"))
        for client in self.clients:
            if client != self.label_holder:
                routes += [Route(client, self.label_holder, "ids"), Route(self.label_holder, client, "ids")]
        return tuple(routes)

    # -- alignment -------------------------------------------------------------------------------
    def align(self, client_features: Sequence[torch.Tensor], client_ids: Sequence[torch.Tensor],
              label_ids: torch.Tensor, *, step: int = 0) -> torch.Tensor:
        """Align every client's rows on the label holder's sample IDs; returns the joint batch.

        Each client (other than the label holder) sends its IDs to the label holder (kind ``ids``,
        phase ``setup``), which computes the permutations with :func:`align_ids` and returns each
        client's own (kind ``ids``); the client reorders its rows. The result, (N, *input_shape)
        in ``label_ids`` order, is what the simulation's Trainer takes as ``x`` (each client still
        only reads its own view of it).

        Raises:
            DataError: see :func:`align_ids` and :func:`assemble_vertical`.
        """
        if len(client_features) != len(self.clients) or len(client_ids) != len(self.clients):
            raise ConfigError(f"{self.name} has {len(self.clients)} clients; got {len(client_features)} feature "
                              f"tensors and {len(client_ids)} ID lists")
        with self.channel.phase_scope("setup"):
            received = [ids if client == self.label_holder else
                        self.channel.send(client, self.label_holder, "ids", torch.as_tensor(ids), step=step)
                        for client, ids in zip(self.clients, client_ids)]
            perms = align_ids(received, label_ids, names=self.clients)
            perms = [p if client == self.label_holder else
                     self.channel.send(self.label_holder, client, "ids", p, step=step)
                     for client, p in zip(self.clients, perms)]
        return assemble_vertical(self.views, client_features, perms, input_shape=self.input_shape)

    # -- forward ---------------------------------------------------------------------------------
    # Written once for every party: a party's statements run where the channel hosts it (everywhere
    # in process); values a party holds are None elsewhere. Only messages cross between parties.
    def _clients_forward(self, x, *, step, phase):
        """Each client runs its head on its own view and releases the activation to the server."""
        hosts = self.channel.hosts
        outs, releases, received, x_views = [], [], [], []
        for client, view, head in zip(self.clients, self.views, self.heads):
            x_view = z = out = None
            if hosts(client):
                x_view = view(x)  # the client's own features: nothing else of x is touched
                with self.flops.party(client):
                    z = head(x_view)
                    out = self.callbacks.transform_activation(z, party=client, step=step, phase=phase)
            r = self.channel.send(client, SERVER, "activation", out, step=step)
            if phase == "train" and r is not None:
                r = r.requires_grad_(True)
            x_views.append(x_view)
            releases.append(z)
            outs.append(out)
            received.append(r)
        return x_views, releases, outs, received

    def _server_forward(self, received):
        if not self.channel.hosts(SERVER):
            return None
        with self.flops.party(SERVER):
            return self.body(self.merger(received))

    # -- training --------------------------------------------------------------------------------
    def train_step(self, x, y, *, step):
        hosts, label_owner = self.channel.hosts, self.label_owner
        for party in self.hosted().values():
            party.zero_grad()
        loss = correct = h_out = None
        with self.channel.phase_scope("train"), self.flops.step("train", int(x.shape[0])):
            x_views, releases, outs, received = self._clients_forward(x, step=step, phase="train")
            h = self._server_forward(received)
            labels = y
            if self.ushape:
                h_out = h
                h = self.channel.send(SERVER, self.data_owner, "activation", h_out, step=step)
                if h is not None:
                    h = h.requires_grad_(True)
                    with self.flops.party(self.data_owner):
                        logits = self.tail(h)
            else:
                logits = h
                if self.label_source == "data_owner":
                    labels = self.channel.send(self.data_owner, SERVER, "labels", y, step=step)
            if hosts(label_owner):
                loss, correct = self.label_owner_loss(logits, labels, step=step)
            self._backward(loss, h, h_out, x_views, releases, outs, received, step=step)
        for party in self.hosted().values():
            party.step()
        return unknown_outcome(y) if loss is None else StepResult(loss=float(loss.detach()), correct=correct,
                                                                  count=int(y.shape[0]))

    def _backward(self, loss, h, h_out, x_views, releases, outs, received, *, step):
        hosts = self.channel.hosts
        if self.ushape:  # client0 back-propagates its tail and returns the server-output gradient
            if hosts(self.data_owner):
                with self.flops.party(self.data_owner):
                    loss.backward()
            grad = self.return_gradient(h, src=self.data_owner, dst=SERVER, step=step)
            roots, grads = [h_out], [grad]
        else:
            roots, grads = [loss], [None]
        if hosts(SERVER):
            with self.flops.party(SERVER):
                torch.autograd.backward(roots, grads)
        for client, x_view, z, out, r in zip(self.clients, x_views, releases, outs, received):
            grad = self.return_gradient(r, src=SERVER, dst=client, step=step)
            if not hosts(client):
                continue
            with self.flops.party(client):
                roots, grads = [out], [grad]
                extra = self.callbacks.extra_loss(x_view, z, party=client, step=step)
                if extra is not None:
                    roots, grads = roots + [extra], grads + [None]
                pairs = [(r, g) for r, g in zip(roots, grads) if r.requires_grad]
                if pairs:  # a head without trainable parameters (e.g. cut at "flatten") has nothing to update
                    torch.autograd.backward([r for r, _ in pairs], [g for _, g in pairs])

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x, *, step=0):
        """The logits as client0 holds them; across processes, the server's process (vanilla) returns
        the logits it computed and every other process None."""
        with self.channel.phase_scope("eval"), self.flops.step("eval", int(x.shape[0])):
            _, _, _, received = self._clients_forward(x, step=step, phase="eval")
            h = self._server_forward(received)
            if self.ushape:
                h = self.channel.send(SERVER, self.data_owner, "activation", h, step=step)
                logits = None
                if h is not None:
                    with self.flops.party(self.data_owner):
                        logits = self.tail(h)
            else:
                logits = self.channel.send(SERVER, self.data_owner, "logits", h, step=step)
                if not self.channel.hosts(self.data_owner):
                    logits = h
        return logits

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            data_owners=list(self.data_owners),
            merge=self.merge,
            model=self.model_name,
            cuts=list(self.cuts),
            views={c: {"columns": list(v.columns)} if v.columns is not None else {"region": list(v.region)}
                   for c, v in zip(self.clients, self.views)},
        )
        return info

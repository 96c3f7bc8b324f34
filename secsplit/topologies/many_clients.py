"""Many clients, one server: sequential relay and SplitFed (secsplit issue #4).

K clients ``client0`` .. ``client{K-1}`` each hold a shard of the training set (iid by default, or
Dirichlet non-iid; seeded) and the same client segment architecture; one ``server`` holds the rest
of the model. Every step is a vanilla (labels sent to the server) or U-shape (labels and loss stay
at the client) split step of the one client whose batch it is, through the channel under that
client's name, so traffic and FLOPs are counted per client.

- ``relay`` (sequential split learning, Gupta & Raskar 2018): in each epoch the clients take turns
  in order; a client trains on its whole shard, then hands the client segment's weights to the
  next client, directly (``weights_via="peer"``) or through the server (``"server"``: client ->
  server -> client, so the server also sees the weights). The last client hands them to client0,
  which starts the next epoch and runs split inference: per epoch every client receives the
  weights once and sends them once, 2·eta·N floats, as in the cost model of
  :mod:`secsplit.efficiency`. With one client nothing is handed over (relay == vanilla).
- ``splitfed`` (SplitFed, Thapa et al. AAAI 2022, variant SFLV2): in each round every client with
  data left starts from the global client segment, trains on its next batches against the one
  server (whose model is updated by each client's batches in turn, client0 first), and sends its
  client segment to the aggregator, which averages them weighted by the samples each trained on
  and sends the average back to every client of the round. The aggregator is a separate
  ``fed-server`` party by default (as in the paper: the main server never sees client weights,
  which with its own segment would give it the whole model) or the ``server`` itself. A round is
  one pass over each client's shard unless ``local_batches`` caps its batches per round. Clients
  of a round run one after the other in process, but each starts from the same weights, so the
  client-side math is that of parallel clients.

Optimizer state: the weights are what travels. A client builds a fresh optimizer whenever it
receives weights (a relay hand-over, the start of each SplitFed round), so Adam moments and SGD
momentum are reset and never sent; plain SGD (no momentum) makes this moot. The server keeps its
optimizer throughout.

Memory does not grow with K: the simulation holds one client segment (the one of the client whose
turn it is, ``parties["client0"]`` -- client0 is also ``data_owner``, the client that runs split
inference after training), the server's segment, and for SplitFed one copy of the global client
state plus a running weighted sum (float64), as :func:`secsplit.baselines.train_fedavg` does. The
partition is one permuted index tensor with K+1 offsets. What grows with K is bookkeeping: the
channel's traffic table and the FLOP counters hold a few entries per client (about 1 KB of Python
objects each; ``benchmarks/bench_many_clients.py`` measures it). Memory is held by the simulation
only: each weight message carries its own snapshot, freed once the receiver has loaded it unless a
tap keeps it.

Weights travel as kind ``weights``, one message per tensor of the client segment's state dict
(tag: its name), so eta·N·4 bytes per transfer for float32 parameters and no buffers.
:meth:`ManyClientTopology.describe` reports each client's training bytes and FLOPs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import torch

from secsplit.averaging import WeightedAverage
from secsplit.channel import Channel
from secsplit.data.partition import partition_dirichlet, partition_iid
from secsplit.errors import ConfigError
from secsplit.optim import OptimizerSpec
from secsplit.parties import Party
from secsplit.topologies.base import Route, StepResult, Topology
from secsplit.topologies.chain import ChainTopology, chain_routes
from secsplit.topologies.presets import TOPOLOGIES, _resolve_cuts

SERVER = "server"
FED_SERVER = "fed-server"
WEIGHTS_VIA = ("peer", "server")
AGGREGATORS = (FED_SERVER, SERVER)


def _check_partition(partition, name: str):
    """``"iid"`` or ``("dirichlet", alpha)`` with alpha > 0 (a list from a TOML config, or the text
    ``"dirichlet:ALPHA"`` from the CLI's ``--option partition=dirichlet:0.5``, works too)."""
    if partition == "iid":
        return "iid"
    if isinstance(partition, str) and partition.startswith("dirichlet:"):
        try:
            partition = ("dirichlet", float(partition.split(":", 1)[1]))
        except ValueError:
            pass
    if isinstance(partition, (tuple, list)) and len(partition) == 2 and partition[0] == "dirichlet":
        alpha = partition[1]
        if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha > 0:
            return ("dirichlet", float(alpha))
    raise ConfigError(f"{name}: partition must be 'iid' or ('dirichlet', alpha) (text: 'dirichlet:ALPHA') with "
                      f"alpha > 0, got {partition!r}")


class ManyClientTopology(Topology):
    """K clients sharing one client segment architecture, one server; see the module docstring.

    Subclasses decide who trains when (:meth:`epoch_plan`) and how weights move between turns.

    Args:
        model: a CuttableModel; cut into the client segment(s) and the server's.
        clients: K, the number of clients (>= 1).
        cuts: one cut (vanilla) or two (U-shape: the client also holds the last layers).
        ushape: keep labels and loss at the clients.
        channel, optimizer: as for :class:`~secsplit.topologies.ChainTopology`.
        label_source: vanilla only: each client sends its labels ("data_owner") or the server
            holds them ("label_owner").
        partition: "iid" (near-equal shards) or ("dirichlet", alpha).
        seed: seeds the partition (the batch order within shards follows the Trainer's seed).
        name: the configuration's name, for errors and reports.

    Raises:
        ConfigError: K not a positive integer, a bad partition, or a bad chain configuration.
    """

    def __init__(self, model, *, clients: int, cuts: Sequence[str], ushape: bool = False,
                 channel: Channel | None = None, optimizer: OptimizerSpec | None = None,
                 label_source: str = "data_owner", partition="iid", seed: int = 0, name: str = "many-clients") -> None:
        if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
            raise ConfigError(f"{name}: clients must be an integer >= 1, got {clients!r}")
        self.name = name
        self.partition = _check_partition(partition, name)
        self.seed = seed
        self.ushape = ushape
        self.clients = [f"client{i}" for i in range(clients)]
        first = self.clients[0]
        owners = [first, SERVER, first] if ushape else [first, SERVER]
        self.optimizer_spec = optimizer or OptimizerSpec()
        # The step itself is a chain step; the chain's owners are renamed to whichever client's turn it is.
        self._chain = ChainTopology(model, cuts=cuts, owners=owners, channel=channel, optimizer=self.optimizer_spec,
                                    name=name, label_source=label_source)
        self._client_positions = [i for i, owner in enumerate(owners) if owner == first]
        self.cuts, self.segments, self.model = self._chain.cuts, self._chain.segments, self._chain.model
        self.label_source = self._chain.label_source  # "data_owner" in U-shape, where no labels cross
        # every client is a data owner (the Trainer's per-client totals of bytes and FLOPs sum over them)
        super().__init__(parties=dict(self._chain.parties), channel=self._chain.channel, data_owner=first,
                         label_owner=first if ushape else SERVER, data_owners=self.clients)
        self._client_party = self.parties[first]
        self.current = first
        self._last_step = 0

    # -- the chain step, under the current client's name --------------------------------------
    @property
    def callbacks(self):
        return self._chain.callbacks

    @callbacks.setter
    def callbacks(self, value) -> None:
        self._chain.callbacks = value

    @property
    def party_names(self) -> tuple[str, ...]:
        """Every client (one simulated client segment, held as client0) and the server(s)."""
        return (*self.clients, *[p for p in self.parties if p not in self.clients])

    def routes(self):
        """Every client's split step with the server (its inference: client0's), then how weights travel."""
        owners = self._chain.owners
        routes = []
        for client in self.clients:
            chain = chain_routes([client if i in self._client_positions else SERVER for i in range(len(owners))],
                                 label_source=self.label_source)
            routes += [r for r in chain if r.kind != "logits" or r.dst == self.data_owner]
        return tuple(routes) + self._weight_routes()

    def _weight_routes(self) -> tuple[Route, ...]:
        """The ``weights`` messages between turns (subclasses)."""
        return ()

    def _become(self, client: str) -> None:
        """Route the next steps as ``client``'s: its name on the channel and in the FLOP counts."""
        self.current = client
        chain = self._chain
        chain.owners = [client if i in self._client_positions else SERVER for i in range(len(chain.owners))]
        chain.data_owner = client
        chain.label_owner = client if self.ushape else SERVER
        # the one simulated client segment is the current client's: its optimizer steps where that client runs
        chain.parties = {client: self._client_party, **{n: p for n, p in chain.parties.items()
                                                         if p is not self._client_party}}

    def _role_flops(self, phase: str) -> tuple[int, int]:
        counter = self._chain.flops.totals.get(phase, Counter())
        server = counter[SERVER]
        return sum(counter.values()) - server, server

    def _credit_flops(self, phase: str, before: tuple[int, int], client: str) -> None:
        """Book the chain's FLOPs since ``before`` to ``client`` and the server.

        The chain's meter reuses the counts of the first step of each batch shape, under the
        names it had then; only the client/server split of the increase is trusted here.
        """
        after = self._role_flops(phase)
        totals = self.flops.totals.setdefault(phase, Counter())
        for party, delta in ((client, after[0] - before[0]), (SERVER, after[1] - before[1])):
            if delta:
                totals[party] += delta

    def train_step(self, x, y, *, step):
        self._last_step = step
        before = self._role_flops("train")
        result: StepResult = self._chain.train_step(x, y, step=step)
        self._credit_flops("train", before, self.current)
        return result

    def predict(self, x, *, step=0):
        previous = self.current
        self._become(self.data_owner)
        try:
            before = self._role_flops("eval")
            logits = self._chain.predict(x, step=step)
            self._credit_flops("eval", before, self.data_owner)
        finally:
            self._become(previous)
        return logits

    # -- data and weights ------------------------------------------------------------------------
    def shards(self, n: int, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int]]:
        """The partition of ``n`` training samples: client k holds ``order[bounds[k]:bounds[k + 1]]`` (sorted).

        One index tensor and K+1 offsets rather than K tensors. Dirichlet partitions need ``labels``.

        Raises:
            ConfigError: more clients than samples, or a Dirichlet partition without labels.
        """
        k = len(self.clients)
        if k > n:
            raise ConfigError(f"{self.name}: {k} clients but only {n} training samples; every client needs at least "
                              f"one sample (use at most {n} clients)")
        if self.partition == "iid":
            parts = partition_iid(n, k, seed=self.seed)
        else:
            if labels is None:
                raise ConfigError(f"{self.name}: a Dirichlet partition needs the training labels")
            parts = partition_dirichlet(labels.detach().cpu().numpy(), k, alpha=self.partition[1], seed=self.seed)
        bounds = [0]
        for part in parts:
            bounds.append(bounds[-1] + len(part))
        return torch.cat([part.sort().values for part in parts]), bounds

    def own_training_rows(self, party: str, n: int) -> torch.Tensor | None:
        if party not in self.clients:
            return None
        if self.partition != "iid":
            raise ConfigError(f"{self.name}: a client's own samples under a Dirichlet partition are drawn from the "
                              f"training labels, which not every party holds; use partition = \"iid\"")
        order, bounds = self.shards(n)
        k = self.clients.index(party)
        return order[bounds[k]:bounds[k + 1]]

    def _epoch_orders(self, n, labels, generator) -> tuple[torch.Tensor, list[int]]:
        """Each shard in this epoch's order (a seeded permutation per client, client0 first)."""
        order, bounds = self.shards(n, labels)
        shuffled = torch.cat([order[a:b][torch.randperm(b - a, generator=generator)]
                              for a, b in zip(bounds, bounds[1:])])
        return shuffled, bounds

    def client_state(self) -> dict[str, torch.Tensor]:
        """The client segment's weights and buffers as the current client holds them (no copy)."""
        return self._client_party.segments.state_dict()

    def _send_state(self, src: str, dst: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Send ``state`` from ``src`` to ``dst`` as ``weights`` messages (one per tensor); return what arrived.

        Each message carries a snapshot: the in-process channel shares memory, and the sender's
        segment keeps training in place after it sends, which must not change what the receiver
        (or a tap on it) got. One transfer's copy at a time, so memory stays O(1) in K.
        """
        here = self.channel.hosts(src)  # across processes only the sender's values are real
        with self.channel.phase_scope("train"):
            return {name: self.channel.send(src, dst, "weights", t.detach().clone() if here else None,
                                            step=self._last_step, tag=name)
                    for name, t in state.items()}

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        """The receiving client loads weights into its segment and starts a fresh optimizer."""
        self._client_party.segments.load_state_dict(state)
        params = [p for p in self._client_party.segments.parameters() if p.requires_grad]
        self._client_party.optimizer = self.optimizer_spec.build(params) if params else None

    def per_client(self) -> dict[str, dict[str, int]]:
        """Each client's training bytes sent/received (all kinds, weights included) and training FLOPs.

        One pass over the traffic table, so a report for 500 clients stays cheap.
        """
        rows = {c: {"bytes_sent": 0, "bytes_received": 0, "train_flops": 0} for c in self.clients}
        for (src, dst, _, phase), value in self.channel.traffic.bytes.items():
            if phase != "train":
                continue
            if src in rows:
                rows[src]["bytes_sent"] += value
            if dst in rows:
                rows[dst]["bytes_received"] += value
        for client, flops in self.flops.totals.get("train", Counter()).items():
            if client in rows:
                rows[client]["train_flops"] = flops
        return rows

    def describe(self) -> dict:
        """The base summary plus K, the client segment's size, one weight transfer's bytes and, per
        client, training bytes and FLOPs (the ``parties`` entry lists the one simulated client
        segment under client0)."""
        info = super().describe()
        per_client = self.per_client()
        totals = [row["bytes_sent"] + row["bytes_received"] for row in per_client.values()]
        info.update(clients=len(self.clients), cuts=list(self.cuts), ushape=self.ushape,
                    partition=self.partition if isinstance(self.partition, str) else list(self.partition),
                    client_segment_parameters=self._client_party.num_parameters(),
                    weights_bytes_per_transfer=sum(t.numel() * t.element_size() for t in self.client_state().values()),
                    client_segment_held_by="one copy in memory, loaded by each client in turn (listed as client0)",
                    per_client=per_client,
                    client_train_bytes={"mean": sum(totals) / len(totals), "min": min(totals), "max": max(totals)})
        return info


class RelayTopology(ManyClientTopology):
    """Sequential split learning: clients take turns and pass the client segment on; see the module docstring.

    Args:
        weights_via: "peer" (client to client) or "server" (client -> server -> client).
        Others as for :class:`ManyClientTopology`.
    """

    def __init__(self, model, *, weights_via: str = "peer", name: str | None = None, **kwargs) -> None:
        name = name or ("relay-ushape" if kwargs.get("ushape") else "relay")
        if weights_via not in WEIGHTS_VIA:
            raise ConfigError(f"{name}: unknown weights_via {weights_via!r}; valid: {', '.join(WEIGHTS_VIA)}")
        self.weights_via = weights_via
        super().__init__(model, name=name, **kwargs)

    def _weight_routes(self):
        if len(self.clients) == 1:  # nothing is handed over
            return ()
        if self.weights_via == "server":
            return tuple(r for c in self.clients for r in (Route(c, SERVER, "weights"), Route(SERVER, c, "weights")))
        nexts = self.clients[1:] + self.clients[:1]  # the last hands them back to client0
        return tuple(Route(a, b, "weights") for a, b in zip(self.clients, nexts))

    def epoch_plan(self, n, *, labels=None, epoch, batch_size, generator):
        order, bounds = self._epoch_orders(n, labels, generator)  # validates before any step
        return self._turns(order, bounds, batch_size)

    def _turns(self, order, bounds, batch_size) -> Iterator[torch.Tensor]:
        self._become(self.clients[0])
        for k, client in enumerate(self.clients):
            if k:
                self._hand_over(self.clients[k - 1], client)
            yield from order[bounds[k]:bounds[k + 1]].split(batch_size)
        if len(self.clients) > 1:  # back to client0, who starts the next epoch and runs inference
            self._hand_over(self.clients[-1], self.clients[0])

    def _hand_over(self, src: str, dst: str) -> None:
        state = self.client_state()
        if self.weights_via == "server":
            state = self._send_state(SERVER, dst, self._send_state(src, SERVER, state))
        else:
            state = self._send_state(src, dst, state)
        if self.channel.hosts(dst):
            self._load(state)
        self._become(dst)

    def describe(self) -> dict:
        return {**super().describe(), "weights_via": self.weights_via}


class SplitFedTopology(ManyClientTopology):
    """SplitFed (SFLV2): clients train from the same weights each round; client segments averaged; see the module docstring.

    Args:
        aggregator: "fed-server" (a separate party averages the client segments) or "server".
        local_batches: batches per client per round; None: the client's whole shard (one round
            per epoch, as in Thapa et al.).
        Others as for :class:`ManyClientTopology`.
    """

    def __init__(self, model, *, aggregator: str = FED_SERVER, local_batches: int | None = None,
                 name: str | None = None, **kwargs) -> None:
        name = name or ("splitfed-ushape" if kwargs.get("ushape") else "splitfed")
        if aggregator not in AGGREGATORS:
            raise ConfigError(f"{name}: unknown aggregator {aggregator!r}; valid: {', '.join(AGGREGATORS)}")
        if local_batches is not None and (isinstance(local_batches, bool) or not isinstance(local_batches, int)
                                          or local_batches < 1):
            raise ConfigError(f"{name}: local_batches must be None or an integer >= 1, got {local_batches!r}")
        self.aggregator = aggregator
        self.local_batches = local_batches
        super().__init__(model, name=name, **kwargs)
        if aggregator == FED_SERVER:
            self.parties[FED_SERVER] = Party(FED_SERVER, {}, None)

    def _weight_routes(self):
        return tuple(r for c in self.clients for r in (Route(c, self.aggregator, "weights"),
                                                        Route(self.aggregator, c, "weights")))

    def epoch_plan(self, n, *, labels=None, epoch, batch_size, generator):
        order, bounds = self._epoch_orders(n, labels, generator)  # validates before any step
        return self._rounds(order, bounds, batch_size)

    def _rounds(self, order, bounds, batch_size) -> Iterator[torch.Tensor]:
        hosts = self.channel.hosts
        cursor = list(bounds[:-1])
        per_round = None if self.local_batches is None else self.local_batches * batch_size
        while any(c < b for c, b in zip(cursor, bounds[1:])):
            global_state = {name: t.detach().clone() for name, t in self.client_state().items()}
            running, taken = WeightedAverage(global_state), []
            for k, client in enumerate(self.clients):
                start, stop = cursor[k], bounds[k + 1]
                if start == stop:
                    continue
                stop = stop if per_round is None else min(stop, start + per_round)
                if hosts(client):
                    self._load(global_state)  # the client's own copy of the last broadcast (or the initial weights)
                self._become(client)
                yield from order[start:stop].split(batch_size)
                cursor[k] = stop
                sent = self._send_state(client, self.aggregator, self.client_state())
                if hosts(self.aggregator):
                    running.add(sent, stop - start)
                taken.append(client)
            average = running.result() if hosts(self.aggregator) else None
            del running, global_state
            if average is not None:
                self._load(average)
            for client in taken:  # the new global weights down to every client of the round
                received = self._send_state(self.aggregator, client, average or self.client_state())
                if average is None and hosts(client):
                    self._load(received)
        self._become(self.data_owner)

    def describe(self) -> dict:
        return {**super().describe(), "aggregator": self.aggregator, "local_batches": self.local_batches,
                "variant": "SFLV2"}


# -- registered configurations -------------------------------------------------------------------
@TOPOLOGIES.register("relay")
def relay(model, *, clients: int = 10, weights_via: str = "peer", partition: str | Sequence = "iid", cuts=None,
          seed: int = 0, channel: Channel | None = None, optimizer: OptimizerSpec | None = None,
          label_source: str = "data_owner") -> RelayTopology:
    """K clients take turns training against the server and pass the client segment's weights on.

    ``weights_via``: "peer" or "server"; ``partition``: "iid" or ("dirichlet", alpha), seeded by
    ``seed``. ``channel``, ``optimizer``, ``label_source`` as for vanilla.
    """
    return RelayTopology(model, clients=clients, weights_via=weights_via, cuts=_resolve_cuts(model, cuts, 1, "relay"),
                         partition=partition, seed=seed, channel=channel, optimizer=optimizer, label_source=label_source)


@TOPOLOGIES.register("relay-ushape")
def relay_ushape(model, *, clients: int = 10, weights_via: str = "peer", partition: str | Sequence = "iid", cuts=None,
                 seed: int = 0, channel: Channel | None = None, optimizer: OptimizerSpec | None = None) -> RelayTopology:
    """Sequential relay in U-shape: each client keeps the last layers, its labels and the loss."""
    return RelayTopology(model, clients=clients, weights_via=weights_via, ushape=True, partition=partition, seed=seed,
                         cuts=_resolve_cuts(model, cuts, 2, "relay-ushape"), channel=channel, optimizer=optimizer)


@TOPOLOGIES.register("splitfed")
def splitfed(model, *, clients: int = 10, aggregator: str = FED_SERVER, local_batches: int | None = None,
             partition: str | Sequence = "iid", cuts=None, seed: int = 0, channel: Channel | None = None,
             optimizer: OptimizerSpec | None = None, label_source: str = "data_owner") -> SplitFedTopology:
    """SplitFed (SFLV2): clients train in parallel rounds against the server; client segments averaged each round.

    ``aggregator``: "fed-server" or "server"; ``local_batches``: batches per client per round
    (default: its whole shard). Other keywords as for ``relay``.
    """
    return SplitFedTopology(model, clients=clients, aggregator=aggregator, local_batches=local_batches,
                            cuts=_resolve_cuts(model, cuts, 1, "splitfed"), partition=partition, seed=seed,
                            channel=channel, optimizer=optimizer, label_source=label_source)


@TOPOLOGIES.register("splitfed-ushape")
def splitfed_ushape(model, *, clients: int = 10, aggregator: str = FED_SERVER, local_batches: int | None = None,
                    partition: str | Sequence = "iid", cuts=None, seed: int = 0, channel: Channel | None = None,
                    optimizer: OptimizerSpec | None = None) -> SplitFedTopology:
    """SplitFed in U-shape: each client keeps the last layers, its labels and the loss."""
    return SplitFedTopology(model, clients=clients, aggregator=aggregator, local_batches=local_batches, ushape=True,
                            cuts=_resolve_cuts(model, cuts, 2, "splitfed-ushape"), partition=partition, seed=seed,
                            channel=channel, optimizer=optimizer)

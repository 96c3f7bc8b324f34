"""Declared topology capabilities: what the Trainer, attacks, defenses and checkpoints read, for
every registered topology, consistent with the traffic; the channel's phase scope; build_topology's
common keywords."""

import copy

import pytest
import torch

from secsplit.attacks import NotApplicable, create_attack
from secsplit.attacks.label_base import check_gradient_seat
from secsplit.channel import EAVESDROPPER, KINDS, Channel
from secsplit.data import Dataset
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.parties import Party
from secsplit.topologies import (COMMON_OPTIONS, LABEL_SOURCES, TOPOLOGIES, Topology, build_topology,
                                 list_topologies, topology_options)
from secsplit.training import Trainer

CHAINS = ("vanilla", "ushape", "multihop", "multihop-ushape")
#: the party receiving the data owner's released activations (the reconstruction seat)
FIRST_RECEIVER = {name: "server" for name in TOPOLOGIES.names()} | {"multihop": "hop1", "multihop-ushape": "hop1"}
#: options some topologies need to be small here
SMALL = {"relay": {"clients": 3}, "relay-ushape": {"clients": 3}, "splitfed": {"clients": 3},
         "splitfed-ushape": {"clients": 3}}


def _data(n_train=24, n_test=8, features=12, classes=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_test, features, generator=g)
    y = torch.arange(n_train + n_test) % classes
    ids = torch.arange(n_train + n_test)
    return Dataset(name="tiny", kind="tabular", x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                   y_test=y[n_train:], ids_train=ids[:n_train], ids_test=ids[n_train:], num_classes=classes)


def _mlp(seed=0):
    return create_model("mlp", input_shape=(12,), num_classes=4, seed=seed, hidden=(16, 8))


def _common(channel=None, **overrides):
    """Every common keyword, as a caller that does not look at the topology's name passes them."""
    options = dict(cuts=None, optimizer=OptimizerSpec("sgd", lr=0.05), label_source="label_owner", seed=3,
                   model_name="mlp", model_options={"hidden": (16, 8)}, channel=channel or Channel())
    options.update(overrides)
    return options


def _build(name, **overrides):
    return build_topology(name, _mlp(), **_common(**overrides), **SMALL.get(name, {}))


# -- every registered topology declares consistent capabilities --------------------------------------
@pytest.mark.parametrize("name", TOPOLOGIES.names())
def test_declared_capabilities_are_consistent(name):
    channel = Channel()
    topo = _build(name, channel=channel)
    assert isinstance(topo, Topology) and topo.channel is channel
    parties = set(topo.party_names)
    assert set(topo.parties) <= parties
    assert isinstance(topo.data_owners, tuple) and topo.data_owners[0] == topo.data_owner
    assert set(topo.data_owners) <= parties and topo.label_owner in parties
    assert topo.label_source in LABEL_SOURCES
    if topo.label_owner == topo.data_owner:  # U-shape-like: the labels never cross, label_source is moot
        assert topo.label_source == "data_owner"
    assert topo.holds_labels is True and topo.run_id is None
    assert topo.input_shape == (12,) and topo.num_classes == 4
    assert topo.exportable == (name in CHAINS)
    routes = topo.routes()
    assert routes and all(r.src in parties and r.dst in parties and r.src != r.dst and r.kind in KINDS
                          for r in routes)
    assert topo.first_receiver == FIRST_RECEIVER[name]
    for kind in KINDS:
        assert set(topo.receivers(kind)) <= parties
        assert topo.receivers(kind, src=topo.data_owner) == tuple(
            dict.fromkeys(r.dst for r in routes if r.kind == kind and r.src == topo.data_owner))
    assert topo.data_owner in topo.receivers("gradient")  # every data owner is trained through the channel
    if topo.owners is not None:  # a chain: its segments in forward order, data owner first
        assert topo.owners[0] == topo.data_owner and len(topo.segments) == len(topo.owners)
    with pytest.raises(ConfigError, match="unknown message kind 'activations'"):
        topo.receivers("activations")


@pytest.mark.parametrize("name", TOPOLOGIES.names())
def test_declared_routes_cover_every_message_sent(name):
    """Training (with whatever the topology does between steps: hand-overs, averaging) and evaluation
    send only along declared routes."""
    data = _data()
    topo = _build(name)
    seen = set()
    topo.channel.add_tap(EAVESDROPPER, lambda m: seen.add((m.src, m.dst, m.kind)))
    report = Trainer(topo, epochs=1, batch_size=8, progress=False).fit(data)
    declared = {(r.src, r.dst, r.kind) for r in topo.routes()}
    assert seen and seen <= declared, sorted(seen - declared)
    assert report.history[-1]["test_accuracy"] is not None


def test_vertical_alignment_ids_travel_along_declared_routes():
    topo = build_topology("vertical", _mlp(), model_name="mlp", k=3)
    seen = set()
    topo.channel.add_tap(EAVESDROPPER, lambda m: seen.add((m.src, m.dst, m.kind, m.phase)))
    ids = torch.arange(5)
    features = [torch.randn(5, *v.output_shape((12,))) for v in topo.views]
    topo.align(features, [ids.flip(0), ids, ids], ids)
    assert {(s, d, k) for s, d, k, _ in seen} <= {(r.src, r.dst, r.kind) for r in topo.routes()}
    assert {p for *_, p in seen} == {"setup"} and topo.channel.phase == "train"


@pytest.mark.parametrize("name,receivers", [
    ("vanilla", ("server",)), ("ushape", ("server",)), ("multihop", ("hop1", "server")),
    ("multihop-ushape", ("hop1", "server")),
])
def test_who_receives_activations_and_gradients_in_chains(name, receivers):
    topo = build_topology(name, _mlp())
    assert topo.receivers("activation", src="client") == receivers[:1]
    assert set(topo.receivers("activation")) == set(receivers) | ({"client"} if "ushape" in name else set())
    assert topo.receivers("gradient") == tuple(dict.fromkeys(topo.owners[:-1]))


def test_multihop_first_receiver_is_hop1_at_every_depth():
    for hops in (1, 2):
        topo = build_topology("multihop", _mlp(), hops=hops)
        assert topo.first_receiver == "hop1" and topo.receivers("activation", src="hop1") == (
            "hop2" if hops == 2 else "server",)


def test_data_owners_of_multi_party_topologies():
    assert build_topology("vertical", _mlp(), model_name="mlp", k=3).data_owners == ("client0", "client1", "client2")
    assert build_topology("splitfed", _mlp(), clients=4).data_owners == tuple(f"client{i}" for i in range(4))
    assert build_topology("multitask-local", _mlp(), tasks="class,parity").data_owners == ("client0", "client1")
    assert build_topology("vanilla", _mlp()).data_owners == ("client",)


def test_defaults_of_a_minimal_topology():
    """A configuration that declares nothing beyond the abstract methods gets the two-party defaults."""

    class Minimal(Topology):
        def train_step(self, x, y, *, step):
            raise NotImplementedError

        def predict(self, x, *, step=0):
            return torch.zeros(len(x), 3)

    topo = Minimal(parties={"a": Party("a", {}, None), "b": Party("b", {}, None)}, channel=Channel(),
                   data_owner="a", label_owner="b")
    assert topo.data_owners == ("a",) and topo.label_source == "data_owner" and topo.holds_labels
    assert topo.run_id is None and topo.model is None and topo.input_shape is None and topo.num_classes is None
    assert topo.owners is None and topo.segments is None and not topo.exportable
    assert topo.first_receiver == "b" and topo.receivers("labels") == ("b",) and topo.receivers("logits") == ("a",)
    logits, targets, metrics = topo.task_metrics(torch.zeros(2, 1), torch.tensor([0, 1]))
    assert logits.shape == (2, 3) and targets.tolist() == [0, 1] and metrics == {}
    with pytest.raises(ConfigError, match="data owner 'c' must be one of"):
        Minimal(parties={}, channel=Channel(), data_owner="c", label_owner="b", data_owners=["a"])
    assert Party("a", {}, None).loaded is True


# -- attacks read the declarations -------------------------------------------------------------------
LENET = (1, 28, 28)


def _images():
    ids = torch.arange(4)
    return Dataset(name="img", kind="image", x_train=torch.rand(4, *LENET), y_train=ids % 2, x_test=torch.rand(4, *LENET),
                   y_test=ids % 2, ids_train=ids, ids_test=ids, num_classes=10)


def test_reconstruction_from_hop1_seat_in_multihop():
    images = _images()
    topo = build_topology("multihop", create_model("lenet", input_shape=LENET, num_classes=10, seed=0))
    with pytest.raises(NotApplicable, match=r"server does not receive the client's activations in multihop "
                                            r"\(the client sends them to 'hop1'\)"):
        create_attack("inverse-network").check_applicable(topo, images)  # the default seat is still the server's
    attack = create_attack("inverse-network", attacker="hop1", targets=images.x_test)
    attack.check_applicable(topo, images)
    attack.attach(topo)
    observed, originals = attack.observed()
    with torch.no_grad():
        assert torch.equal(observed, topo.segments[0].eval()(images.x_test))
    assert torch.equal(originals, images.x_test)
    result = create_attack("whitebox-inversion", attacker="hop1", steps=3, targets=images.x_test[:2])
    result.attach(topo)
    result = result.result()
    assert result.reconstructions.shape == (2, *LENET) and result.info["attacker"] == "hop1"
    with pytest.raises(NotApplicable, match="hop1 does not receive"):
        create_attack("inverse-network", attacker="hop1").check_applicable(
            build_topology("vanilla", create_model("lenet", input_shape=LENET, num_classes=10, seed=0)), images)


def test_label_attack_seats_follow_declared_gradient_receivers():
    topo = build_topology("multihop", _mlp(), label_source="label_owner")
    check_gradient_seat(topo, "client")
    check_gradient_seat(topo, "hop1")
    with pytest.raises(NotApplicable, match="label owner is the attacker"):
        check_gradient_seat(topo, "server")
    with pytest.raises(NotApplicable, match="chain"):
        check_gradient_seat(build_topology("splitfed", _mlp(), clients=2, label_source="label_owner"), "client0")


# -- the channel's phase scope -----------------------------------------------------------------------
def test_phase_scope_sets_and_restores_the_phase_even_on_error():
    channel = Channel()
    with channel.phase_scope("eval") as scoped:
        assert scoped is channel and channel.phase == "eval"
        with channel.phase_scope("setup"):
            channel.send("a", "b", "ids", torch.arange(2), step=0)
        assert channel.phase == "eval"
        channel.send("a", "b", "activation", torch.zeros(1), step=0)
    assert channel.phase == "train"
    with pytest.raises(RuntimeError, match="boom"), channel.phase_scope("eval"):
        raise RuntimeError("boom")
    assert channel.phase == "train"
    assert channel.traffic.total(phase="setup") == 16 and channel.traffic.total(phase="eval") == 4


def test_an_interrupted_prediction_leaves_the_training_phase():
    topo = build_topology("vanilla", _mlp())

    class Boom(Exception):
        pass

    def refuse(message):
        raise Boom

    remove = topo.channel.add_tap("server", refuse)
    with pytest.raises(Boom):
        topo.predict(torch.randn(2, 12))
    remove()
    assert topo.channel.phase == "train"


# -- build_topology's common keywords ---------------------------------------------------------------
@pytest.mark.parametrize("name", TOPOLOGIES.names())
def test_build_topology_accepts_every_common_keyword(name):
    assert _build(name).name == name
    none = {k: None for k in COMMON_OPTIONS} | {"model_name": "mlp"}  # None: the topology's default
    topo = build_topology(name, _mlp(), **none, **SMALL.get(name, {}))
    assert topo.name == name and topo.label_source == "data_owner"
    assert not set(topology_options(name)) & set(COMMON_OPTIONS)
    with pytest.raises(ConfigError, match=f"topology '{name}' has no option 'colour'"):
        build_topology(name, _mlp(), colour=1)
    with pytest.raises(ConfigError, match="unknown label_source 'nobody'"):  # checked even where it is moot
        build_topology(name, _mlp(), **_common(label_source="nobody"))


def test_ignored_common_keywords_change_nothing():
    """U-shape ignores label_source, chains ignore seed/model_name/model_options: bitwise the same run."""
    x, y = torch.randn(8, 12), torch.arange(8) % 4
    for name, label_source, seed in (("ushape", "label_owner", 3), ("vanilla", "data_owner", 3),
                                     ("multihop-ushape", "label_owner", 3), ("multitask-local", "label_owner", 0)):
        plain_model, common_model = _mlp(), _mlp()
        plain = build_topology(name, plain_model, optimizer=OptimizerSpec("sgd", lr=0.05))
        common = build_topology(name, common_model, **_common(label_source=label_source, seed=seed))
        assert common.label_source == "data_owner"
        for step in range(2):
            assert plain.train_step(x, y, step=step) == common.train_step(x, y, step=step)
        for a, b in zip(plain_model.parameters(), common_model.parameters()):
            assert torch.equal(a, b)
        assert plain.channel.traffic.bytes == common.channel.traffic.bytes


def test_topology_options_list_own_options_with_defaults():
    assert topology_options("vanilla") == {} and topology_options("ushape") == {}
    assert topology_options("multihop") == {"hops": 1}
    assert topology_options("vertical") == {"k": None, "merge": "concat", "views": None, "layout": "strips"}
    assert topology_options("splitfed") == {"clients": 10, "aggregator": "fed-server", "local_batches": None,
                                            "partition": "iid"}
    assert set(topology_options("relay")) == {"clients", "weights_via", "partition"}
    assert set(topology_options("multitask-local")) == {"tasks", "entities", "weights", "samples"}
    assert [n for n, _ in list_topologies()] == TOPOLOGIES.names()


def test_builders_taking_arbitrary_keywords_still_get_them():
    """A third-party builder forwarding **kwargs receives every option given (common ones too)."""
    seen = {}

    def forwarding(model, *, cuts=None, **kwargs):
        seen.update(kwargs, cuts=cuts)
        return build_topology("vanilla", model, cuts=cuts, **kwargs)

    TOPOLOGIES.register("test-forwarding")(forwarding)
    try:
        topo = build_topology("test-forwarding", _mlp(), label_source="label_owner", seed=None, cuts=["relu1"])
        assert topo.label_source == "label_owner" and seen == {"label_source": "label_owner", "cuts": ["relu1"]}
        assert topology_options("test-forwarding") == {}
    finally:
        del TOPOLOGIES._factories["test-forwarding"]


def test_checkpoint_and_inference_read_declarations():
    from secsplit.checkpoint import check_savable
    from secsplit.checkpoint import CheckpointError
    from secsplit.inference import SplitInference

    with pytest.raises(CheckpointError, match="'splitfed' is not one"):
        check_savable(build_topology("splitfed", _mlp(), clients=2))
    check_savable(build_topology("multihop-ushape", _mlp()))
    session = SplitInference(build_topology("vertical", _mlp(), model_name="mlp"))
    assert session.input_shape == (12,)
    with pytest.raises(ConfigError, match=r"inputs must have shape \(N, 12\)"):
        session.predict(torch.randn(2, 11))
    assert session.predict(torch.randn(0, 12)).shape == (0, 4)
    topo = build_topology("vanilla", copy.deepcopy(_mlp()))
    topo.parties["server"].loaded = False
    with pytest.raises(CheckpointError, match="parties server have no trained weights"):
        SplitInference(topo)

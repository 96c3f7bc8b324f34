"""Many clients (sequential relay, SplitFed): they learn, they equal their references, bytes match the
closed forms, bad settings fail before training, memory does not grow with the number of clients."""

import copy
import gc
import json
import tracemalloc

import pytest
import torch
import torch.nn.functional as F

from secsplit.callbacks import Callback
from secsplit.channel import Channel
from secsplit.data import load_dataset
from secsplit.data.dataset import Dataset
from secsplit.efficiency import measure_model_costs, per_client_costs
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.split import split
from secsplit.topologies import RelayTopology, SplitFedTopology, build_topology
from secsplit.training import Checkpointing, Trainer

ADAM = OptimizerSpec("adam", lr=1e-2)
SGD = OptimizerSpec("sgd", lr=0.1)
NAMES = ["relay", "relay-ushape", "splitfed", "splitfed-ushape"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _tiny(n_train=40, n_features=6, num_classes=3, n_test=12, seed=0):
    """A Dataset with exactly ``n_train`` training samples (so shards and byte counts are known)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, n_features, generator=g)
    y = torch.arange(n_train + n_test) % num_classes
    ids = torch.arange(n_train + n_test)
    return Dataset(name="tiny", kind="tabular", x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                   y_test=y[n_train:], ids_train=ids[:n_train], ids_test=ids[n_train:], num_classes=num_classes)


def _model(dataset, hidden=(16, 8), seed=0):
    return create_model("mlp", input_shape=tuple(dataset.x_train.shape[1:]), num_classes=dataset.num_classes,
                        seed=seed, hidden=hidden)


def _build(name, dataset, *, optimizer=ADAM, hidden=(16, 8), **options):
    model = _model(dataset, hidden=hidden)
    return build_topology(name, model, optimizer=optimizer, **options), model


def _fit(topology, dataset, **trainer):
    trainer.setdefault("progress", False)
    return Trainer(topology, **trainer).fit(dataset)


def _weight_bytes(topology):
    return sum(p.numel() * 4 for p in topology.parties["client0"].segments.parameters())


# -- it learns -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_learns_on_digits_and_predicts(digits, name):
    topo, _ = _build(name, digits, hidden=(64, 32), clients=5)
    report = _fit(topo, digits, batch_size=32, epochs=2)
    # chance is 0.1; measured 0.89 (relay), 0.89 (relay-ushape), 0.85 (splitfed), 0.80 (splitfed-ushape)
    assert report.summary["test_accuracy"] > 0.6
    logits = topo.predict(digits.x_test[:50])  # split inference after training, by client0
    assert logits.shape == (50, 10)
    assert (logits.argmax(1) == digits.y_test[:50]).float().mean() > 0.6
    eval_traffic = topo.channel.traffic.total(phase="eval")
    assert eval_traffic == topo.channel.traffic.total(phase="eval", src="client0") + \
        topo.channel.traffic.total(phase="eval", dst="client0")  # only client0 takes part in inference


def test_cli_relay_through_server(capsys):
    from secsplit.evaluation.cli import main

    argv = ["train", "--dataset", "digits", "--topology", "relay", "--option", "clients=5", "--option",
            "weights_via=server", "--epochs", "1", "--quiet", "--json", "--device", "cpu"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["topology"] == "relay" and summary["clients"] == 5 and summary["weights_via"] == "server"
    assert summary["test_accuracy"] > 0.2  # chance 0.1; one epoch of Adam at lr 1e-3 gives ~0.34
    weights = summary["traffic"]["per_direction"]
    assert set(weights["client0->server"]) >= {"train/weights", "train/activation", "train/labels"}
    assert "train/weights" in weights["server->client1"]
    assert not any(k.startswith("client") and "->client" in k for k in weights)  # no peer-to-peer messages


def test_cli_human_output_and_dirichlet_option(capsys):
    from secsplit.evaluation.cli import main

    argv = ["train", "--dataset", "digits", "--topology", "splitfed", "--option", "clients=4", "--option",
            "partition=dirichlet:0.5", "--option", "aggregator=server", "--epochs", "1", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "splitfed split of mlp" in out and "test accuracy" in out


# -- exactness -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,vanilla,epochs", [("relay", "vanilla", 2), ("relay-ushape", "ushape", 2),
                                                 ("splitfed", "vanilla", 1), ("splitfed-ushape", "ushape", 1)])
def test_one_client_equals_single_client_split_learning(digits, name, vanilla, epochs):
    """K=1: the same batches and updates as vanilla / U-shape (SplitFed resets Adam each round, so one epoch)."""
    ours, model = _build(name, digits, hidden=(64, 32), clients=1)
    ref_topo, ref_model = _build(vanilla, digits, hidden=(64, 32))
    a = _fit(ours, digits, batch_size=64, epochs=epochs, seed=3)
    b = _fit(ref_topo, digits, batch_size=64, epochs=epochs, seed=3)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)
    assert a.summary["test_accuracy"] == b.summary["test_accuracy"] > 0.5
    uploads = _weight_bytes(ours) if name.startswith("splitfed") else 0  # SplitFed: the one client still uploads
    assert a.summary["client_bytes_sent"] == b.summary["client_bytes_sent"] + uploads
    assert ours.channel.traffic.total(kind="weights") == 2 * uploads


def test_relay_with_plain_sgd_equals_unsplit_training_on_the_turn_order():
    """Plain SGD keeps no state, so handing weights on changes nothing: relay == one model trained on
    client0's batches, then client1's, ... (the plan's order)."""
    data = _tiny(n_train=30)
    topo, model = _build("relay", data, optimizer=SGD, clients=3)
    reference = copy.deepcopy(model)
    ref_opt = SGD.build(reference.parameters())
    senders = []
    topo.channel.add_tap("server", lambda m: senders.append(m.src) if m.kind == "activation" else None)
    for epoch in (1, 2):
        plan = topo.epoch_plan(30, labels=data.y_train, epoch=epoch, batch_size=4,
                               generator=torch.Generator().manual_seed(epoch))
        for step, index in enumerate(plan):
            x, y = data.x_train[index], data.y_train[index]
            topo.train_step(x, y, step=step)
            ref_opt.zero_grad()
            F.cross_entropy(reference(x), y).backward()
            ref_opt.step()
    assert max((p - q).abs().max().item() for p, q in zip(model.parameters(), reference.parameters())) <= 1e-6
    # clients take turns: 3 batches (4, 4, 2 samples) each, client0 first
    assert senders == (["client0"] * 3 + ["client1"] * 3 + ["client2"] * 3) * 2
    assert topo.current == "client0"


def test_shards_are_disjoint_and_cover_the_training_set():
    data = _tiny(n_train=23)
    for partition in ("iid", ("dirichlet", 0.3)):
        topo, _ = _build("relay", data, clients=4, partition=partition)
        order, bounds = topo.shards(23, data.y_train)
        assert sorted(order.tolist()) == list(range(23)) and len(bounds) == 5
        assert all(b > a for a, b in zip(bounds, bounds[1:]))
    topo, _ = _build("relay", data, clients=4)
    _, bounds = topo.shards(23)
    assert [b - a for a, b in zip(bounds, bounds[1:])] == [6, 6, 6, 5]  # iid: sizes differ by at most one


def test_a_clients_own_rows_are_its_shard_and_a_label_drawn_partition_is_refused_without_labels():
    data = _tiny(n_train=23)
    topo, _ = _build("relay", data, clients=4)
    order, bounds = topo.shards(23)
    assert torch.equal(topo.own_training_rows("client2", 23), order[bounds[2]:bounds[3]])
    assert topo.own_training_rows("server", 23) is None  # the server holds no samples of its own
    topo, _ = _build("relay", data, clients=4, partition=("dirichlet", 0.3))
    with pytest.raises(ConfigError, match="Dirichlet partition are drawn from the training labels"):
        topo.own_training_rows("client0", 23)


def test_splitfed_average_equals_hand_computed_weighted_average():
    """One round, one batch per client (shards of 3, 2, 2): each client steps from the same weights,
    the server's segment is updated by each in turn, and the new global client segment is
    (3·w0 + 2·w1 + 2·w2) / 7."""
    data = _tiny(n_train=7)
    topo, model = _build("splitfed", data, optimizer=SGD, clients=3)
    client_seg, server_seg = (copy.deepcopy(s) for s in split(copy.deepcopy(model), topo.cuts))
    uploads = []
    topo.channel.add_tap("fed-server", uploads.append)
    plan = topo.epoch_plan(7, epoch=1, batch_size=8, generator=torch.Generator().manual_seed(0))
    order, bounds = topo.shards(7)
    batches = []
    for step, index in enumerate(plan):
        batches.append(index)
        topo.train_step(data.x_train[index], data.y_train[index], step=step)
    assert [len(b) for b in batches] == [3, 2, 2]
    assert [sorted(b.tolist()) for b in batches] == [sorted(order[a:b].tolist()) for a, b in zip(bounds, bounds[1:])]

    # the reference, by hand
    server_opt = SGD.build(server_seg.parameters())
    initial = copy.deepcopy(client_seg.state_dict())
    states = []
    for index in batches:
        client_seg.load_state_dict(initial)
        client_opt = SGD.build(client_seg.parameters())
        client_opt.zero_grad()
        server_opt.zero_grad()
        F.cross_entropy(server_seg(client_seg(data.x_train[index])), data.y_train[index]).backward()
        client_opt.step()
        server_opt.step()
        states.append(copy.deepcopy(client_seg.state_dict()))
    expected = {k: (3 * states[0][k] + 2 * states[1][k] + 2 * states[2][k]) / 7 for k in initial}

    ours = list(topo.client_state().values())  # same order as the reference's state dict
    assert len(ours) == len(expected) == 2
    for mine, want in zip(ours, expected.values()):
        assert torch.allclose(mine, want, atol=1e-6)
    for p, q in zip(topo.segments[1].parameters(), server_seg.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    # what went over the wire: each client's trained segment up, the average down to each
    for client, state in enumerate(states):
        up = [m.tensor for m in uploads if m.src == f"client{client}"]
        down = [m.tensor for m in uploads if m.dst == f"client{client}"]
        assert len(up) == len(down) == 2
        assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(up, state.values()))
        assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(down, expected.values()))
    # and the clients really differed, so the average is not any one of them
    weight = next(iter(initial))
    assert min((ours[0] - state[weight]).abs().max().item() for state in states) > 1e-5


def test_splitfed_local_batches_makes_several_rounds():
    data = _tiny(n_train=40)
    topo, _ = _build("splitfed", data, clients=4, local_batches=1)  # shards of 10, batches 4, 4, 2: 3 rounds
    _fit(topo, data, batch_size=4, epochs=1)
    w = _weight_bytes(topo)
    for k in range(4):
        assert topo.channel.traffic.total(src=f"client{k}", dst="fed-server", kind="weights") == 3 * w
        assert topo.channel.traffic.total(src="fed-server", dst=f"client{k}", kind="weights") == 3 * w
        assert topo.channel.traffic.total(src=f"client{k}", kind="weights", what="messages") == 3 * 2  # w and b


# -- bytes against the closed forms -------------------------------------------------------------
@pytest.mark.parametrize("weights_via", ["peer", "server"])
def test_relay_bytes_equal_the_cost_model(weights_via):
    """Per client per epoch: 2·(p/K)·q·4 (activations up, gradients down) + 2·eta·N·4 (weights in and
    out) bytes, as :func:`secsplit.efficiency.per_client_costs` says; vanilla adds 8 bytes per label."""
    data, k, epochs = _tiny(n_train=40), 4, 2
    for label_source, label_bytes in (("label_owner", 0), ("data_owner", 8)):
        topo, model = _build("relay", data, clients=k, weights_via=weights_via, label_source=label_source)
        _fit(topo, data, batch_size=3, epochs=epochs)
        costs = measure_model_costs(_model(data), cut=topo.cuts[0])
        split_row = next(r for r in per_client_costs(costs, samples=40, clients=k) if r["method"] == "split")
        q, eta_n = costs.cut_size, costs.client_parameters
        assert (q, eta_n) == (16, 6 * 16 + 16)
        per_client = topo.describe()["per_client"]
        for c in topo.clients:
            sent, received = per_client[c]["bytes_sent"], per_client[c]["bytes_received"]
            assert sent == epochs * (10 * q * 4 + 10 * label_bytes + eta_n * 4)
            assert received == epochs * (10 * q * 4 + eta_n * 4)
            if label_bytes == 0:
                assert sent + received == epochs * split_row["client_bytes"]
            # FLOPs: (p/K) x the client segment's fwd+bwd per sample
            assert per_client[c]["train_flops"] == pytest.approx(epochs * split_row["client_flops"], rel=1e-9)
        traffic = topo.channel.traffic
        server_weights = (traffic.total(dst="server", kind="weights"), traffic.total(src="server", kind="weights"))
        if weights_via == "server":  # the server carries every hand-over: in from one client, out to the next
            assert server_weights == (epochs * k * eta_n * 4,) * 2
            assert all(traffic.total(src=c, kind="weights") == traffic.total(src=c, dst="server", kind="weights")
                       for c in topo.clients)
        else:  # a ring: client k -> client k+1, the last back to client0
            assert server_weights == (0, 0)
            for i, c in enumerate(topo.clients):
                assert traffic.total(src=c, dst=topo.clients[(i + 1) % k], kind="weights") == epochs * eta_n * 4


def test_relay_ushape_bytes():
    """U-shape: both cuts cross at each client; no labels leave it."""
    data = _tiny(n_train=30)
    topo, _ = _build("relay-ushape", data, clients=3)
    _fit(topo, data, batch_size=4, epochs=1)
    q1, q2 = 16, 8  # mlp hidden=(16, 8), cuts relu1 and relu2
    eta_n = _weight_bytes(topo) // 4
    assert eta_n == (6 * 16 + 16) + (8 * 3 + 3)
    for c, row in topo.describe()["per_client"].items():
        assert row["bytes_sent"] == row["bytes_received"] == 10 * (q1 + q2) * 4 + eta_n * 4, c
    assert topo.channel.traffic.total(kind="labels") == 0


@pytest.mark.parametrize("aggregator", ["fed-server", "server"])
def test_splitfed_bytes_each_client_sends_and_receives_its_segment_once_per_round(aggregator):
    data, k = _tiny(n_train=40), 4
    topo, _ = _build("splitfed", data, clients=k, aggregator=aggregator, label_source="label_owner")
    _fit(topo, data, batch_size=3, epochs=2)
    eta_n4 = _weight_bytes(topo)
    for c, row in topo.describe()["per_client"].items():
        assert row["bytes_sent"] == row["bytes_received"] == 2 * (10 * 16 * 4 + eta_n4), c
    traffic = topo.channel.traffic
    assert traffic.total(dst=aggregator, kind="weights") == traffic.total(src=aggregator, kind="weights") == 2 * k * eta_n4
    if aggregator == "fed-server":  # the main server never sees a client segment
        assert traffic.total(dst="server", kind="weights") == traffic.total(src="server", kind="weights") == 0


def test_describe_reports_per_client_costs():
    data = _tiny(n_train=40)
    topo, _ = _build("relay", data, clients=4, weights_via="server")
    report = _fit(topo, data, batch_size=5, epochs=1)
    info = topo.describe()
    assert info["clients"] == 4 and info["weights_via"] == "server" and info["partition"] == "iid"
    assert info["client_segment_parameters"] == 112 and info["weights_bytes_per_transfer"] == 448
    assert set(info["per_client"]) == {"client0", "client1", "client2", "client3"}
    assert all(row["train_flops"] > 0 for row in info["per_client"].values())
    assert info["client_train_bytes"]["min"] == info["client_train_bytes"]["max"]  # equal shards, equal costs
    summary = report.summary
    assert summary["client_bytes_sent"] == sum(r["bytes_sent"] for r in info["per_client"].values())
    assert summary["client_train_flops"] == sum(r["train_flops"] for r in info["per_client"].values())
    json.dumps(summary)  # JSON-ready
    sf = _build("splitfed", data, clients=2)[0].describe()
    assert sf["aggregator"] == "fed-server" and sf["variant"] == "SFLV2" and "fed-server" in sf["parties"]


# -- bad settings fail before training ----------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("options,message", [
    (dict(clients=0), "clients must be an integer >= 1"),
    (dict(clients=-3), "clients must be an integer >= 1"),
    (dict(clients=2.5), "clients must be an integer"),
    (dict(clients=True), "clients must be an integer"),
    (dict(partition="sorted"), "partition must be 'iid' or ('dirichlet', alpha)"),
    (dict(partition=("dirichlet", 0)), "partition must be"),
    (dict(partition="dirichlet:abc"), "partition must be"),
    (dict(cuts=["relu1", "relu2", "fc3"]), "cut point"),
    (dict(no_such_option=1), "has no option"),
])
def test_bad_settings_raise_config_errors(name, options, message):
    data = _tiny()
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _build(name, data, **options)


@pytest.mark.parametrize("name,options,message", [
    ("relay", dict(weights_via="pigeon"), "unknown weights_via 'pigeon'; valid: peer, server"),
    ("splitfed", dict(aggregator="cloud"), "unknown aggregator 'cloud'; valid: fed-server, server"),
    ("splitfed", dict(local_batches=0), "local_batches must be None or an integer >= 1"),
])
def test_bad_relay_and_splitfed_options(name, options, message):
    with pytest.raises(ConfigError, match=message):
        _build(name, _tiny(), **options)


@pytest.mark.parametrize("name", NAMES)
def test_more_clients_than_samples_fails_before_any_step(name):
    data = _tiny(n_train=10)
    topo, model = _build(name, data, clients=11)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError, match="11 clients but only 10 training samples"):
        _fit(topo, data, batch_size=4)
    assert topo.channel.traffic.total() == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_poisson_sampling_is_refused():
    topo, _ = _build("relay", _tiny(), clients=2)
    with pytest.raises(ConfigError, match="sampling='poisson'"):
        _fit(topo, _tiny(), batch_size=4, sampling="poisson")
    assert topo.channel.traffic.total() == 0


def test_dpsgd_is_refused():
    from secsplit.defenses import create_defense

    topo, _ = _build("splitfed", _tiny(), clients=2)
    with pytest.raises(ConfigError, match="plans its own batches"):
        _fit(topo, _tiny(), batch_size=4, callbacks=[create_defense("dpsgd", noise_multiplier=1.0)])
    assert topo.channel.traffic.total() == 0


@pytest.mark.parametrize("name", ["relay", "splitfed"])
def test_epoch_end_checkpoints_resume_to_the_uninterrupted_run(tmp_path, name):
    """Mid-epoch states are never written for planned turns; an epoch-end state resumes exactly."""
    data = _tiny(n_train=40)
    whole, _ = _build(name, data, clients=4)
    expected = _fit(whole, data, batch_size=4, epochs=2)
    first, _ = _build(name, data, clients=4)
    _fit(first, data, batch_size=4, epochs=1, checkpointing=Checkpointing(str(tmp_path), every=3))
    state = json.loads((tmp_path / "trainer-state.json").read_text())
    assert (state["epoch"], state["batches_done"]) == (2, 0)  # the epoch end, not step 9
    again, _ = _build(name, data, clients=4)
    resumed = _fit(again, data, batch_size=4, epochs=2, checkpointing=Checkpointing(str(tmp_path), every=3, resume=True))
    assert [r["test_accuracy"] for r in resumed.history] == [r["test_accuracy"] for r in expected.history]
    for a, b in zip(whole.parties["server"].segments.parameters(), again.parties["server"].segments.parameters(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- memory does not grow with K ----------------------------------------------------------------
class _LeakyRelay(RelayTopology):
    """Negative control: keeps every client's own copy of the client segment, as a naive simulation would."""

    def _hand_over(self, src, dst):
        self.__dict__.setdefault("kept", {})[src] = copy.deepcopy(self._client_party.segments)
        super()._hand_over(src, dst)


class _PeakAtEpochEnd(Callback):
    """tracemalloc's peak when the epoch (training and evaluation) is over, before the final report,
    whose per-client rows are output rather than simulation state."""

    peak = 0

    def on_epoch_end(self, *, epoch, metrics):
        self.peak = tracemalloc.get_traced_memory()[1]


def _memory(cls, k, data):
    """(Python peak of one epoch, bytes of CPU tensors alive after it, per-client costs): tracemalloc
    does not see torch's allocations, so tensors are counted from the live objects, the topology's
    among them while it is alive."""
    model = _model(data, hidden=(256, 16))
    topo = cls(model, clients=k, cuts=["relu1"], optimizer=SGD)
    probe = _PeakAtEpochEnd()
    trainer = Trainer(topo, batch_size=50, epochs=1, progress=False, callbacks=[probe])
    gc.collect()
    tracemalloc.start()
    try:
        trainer.fit(data)
    finally:
        tracemalloc.stop()
    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        if type(obj) in (torch.Tensor, torch.nn.Parameter) and obj.device.type == "cpu":
            storages[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
    per_client = topo.per_client()
    return probe.peak, sum(storages.values()), per_client


def _grows(small, large):
    """The bound: K=100 may not use more than 1.5x K=10's memory plus 128 KB (the traffic table and
    FLOP counters hold ~1 KB per client; one copy of the client segment is ~21 KB of tensors and
    ~9 KB of Python objects)."""
    return large > 1.5 * small + 128_000


@pytest.fixture(scope="module")
def small_data():
    data = _tiny(n_train=500, n_features=20, num_classes=4, n_test=100)
    _memory(RelayTopology, 2, data)  # warm-up: one-time allocations (lazy imports, caches) must not count
    return data


@pytest.mark.parametrize("cls", [RelayTopology, SplitFedTopology])
def test_hundred_clients_run_in_constant_memory(cls, small_data):
    peak10, tensors10, _ = _memory(cls, 10, small_data)
    peak100, tensors100, per_client = _memory(cls, 100, small_data)
    assert len(per_client) == 100
    assert all(row["train_flops"] > 0 and row["bytes_sent"] > 0 for row in per_client.values())
    assert not _grows(peak10, peak100), (peak10, peak100)
    assert not _grows(tensors10, tensors100), (tensors10, tensors100)


def test_memory_bound_catches_per_client_copies(small_data):
    """The bound above is not vacuous: keeping a copy of the segment per client breaks it, both for
    Python objects and for tensors."""
    peak10, tensors10, _ = _memory(_LeakyRelay, 10, small_data)
    peak100, tensors100, _ = _memory(_LeakyRelay, 100, small_data)
    assert _grows(peak10, peak100), (peak10, peak100)
    assert _grows(tensors10, tensors100), (tensors10, tensors100)


@pytest.mark.parametrize("name", ["relay", "splitfed"])
def test_five_hundred_clients_one_epoch(name):
    """Driven through the plan as the Trainer drives it (the Trainer's final report scans the traffic
    table once per client, quadratic in K, which the benchmark measures)."""
    data = _tiny(n_train=1000, n_features=10, num_classes=2, n_test=50)
    topo, _ = _build(name, data, clients=500, label_source="label_owner", optimizer=SGD)
    plan = topo.epoch_plan(1000, labels=data.y_train, epoch=1, batch_size=8, generator=torch.Generator().manual_seed(1))
    steps = sum(1 for step, index in enumerate(plan) if topo.train_step(data.x_train[index], data.y_train[index], step=step))
    assert steps == 500  # 2 samples per client, one batch each
    rows = topo.per_client()
    eta_n4 = _weight_bytes(topo)
    assert all(row["bytes_sent"] == row["bytes_received"] == 2 * 16 * 4 + eta_n4 for row in rows.values())
    assert topo.predict(data.x_test).shape == (50, 2)


def test_channel_is_shared_and_client0_is_the_data_owner():
    channel = Channel()
    topo, _ = _build("relay-ushape", _tiny(), clients=3, channel=channel)
    assert topo.channel is channel and topo.data_owner == topo.label_owner == "client0"
    assert topo.data_owners == ("client0", "client1", "client2")
    assert topo.party_names == ("client0", "client1", "client2", "server")
    assert set(topo.parties) == {"client0", "server"}

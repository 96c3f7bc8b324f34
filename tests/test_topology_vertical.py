"""Vertical (feature-partitioned) split learning: it learns, it routes only what it must, it aligns samples."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from secsplit.callbacks import Callback, CallbackList
from secsplit.channel import Channel
from secsplit.data import FeatureView, load_dataset, vertical_columns
from secsplit.errors import ConfigError, DataError
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import VerticalTopology, align_ids, build_topology, list_topologies
from secsplit.training import Trainer

ADAM = OptimizerSpec("adam", lr=1e-2)



@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def cancer():
    return load_dataset("breast-cancer")


def _topology(dataset, model_name, name="vertical", **options):
    model = create_model(model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=0)
    options.setdefault("optimizer", ADAM)
    return build_topology(name, model, model_name=model_name, **options)


def _test_accuracy(topology, dataset, epochs=2):
    report = Trainer(topology, batch_size=32, epochs=epochs, progress=False).fit(dataset)
    return report.summary["test_accuracy"]


# -- it learns -----------------------------------------------------------------------------------
@pytest.mark.parametrize("options,threshold", [
    (dict(k=2, merge="concat"), 0.8),   # left/right halves; measured 0.93 after 2 epochs
    (dict(k=2, merge="mean"), 0.8),     # 0.91
    (dict(layout="grid", merge="sum"), 0.8),     # 4 quadrants; 0.93
    (dict(layout="grid", merge="concat"), 0.8),  # 0.96
])
def test_digits_mlp_learns(digits, options, threshold):
    topo = _topology(digits, "mlp", **options)
    assert len(topo.data_owners) == (4 if options.get("layout") == "grid" else 2)
    assert _test_accuracy(topo, digits) > threshold  # chance is 0.1


def test_digits_lenet_halves_learn(digits):
    topo = _topology(digits, "lenet", k=2, merge="concat")
    assert [v.region for v in topo.views] == [(0, 8, 0, 4), (0, 8, 4, 8)]
    assert _test_accuracy(topo, digits, epochs=1) > 0.4  # chance is 0.1; measured 0.59 after 1 epoch


@pytest.mark.parametrize("k,merge", [(2, "concat"), (4, "concat"), (4, "sum"), (4, "mean")])
def test_breast_cancer_columns_learn(cancer, k, merge):
    topo = _topology(cancer, "mlp", k=k, merge=merge)
    assert sorted(c for v in topo.views for c in v.columns) == list(range(30))
    assert _test_accuracy(topo, cancer) > 0.85  # majority class is ~0.63; measured 0.92-0.94


def test_vertical_ushape_learns(cancer):
    topo = _topology(cancer, "mlp", name="vertical-ushape", k=2)
    assert topo.cuts == list(create_model("mlp", input_shape=(15,), num_classes=2).suggested_cuts(2))
    assert topo.label_owner == "client0" and set(topo.parties["client0"].segments) == {"segment0", "segment2"}
    assert _test_accuracy(topo, cancer) > 0.85


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_vertical_training_equals_joint_training(cancer, merge):
    """Routing through the channel changes nothing: same updates as one optimizer over the joint model."""
    topo = _topology(cancer, "mlp", k=2, merge=merge)
    heads, merger, body = (copy.deepcopy(m) for m in (topo.heads, topo.merger, topo.body))
    params = [p for m in (*heads, merger, body) for p in m.parameters()]
    reference = ADAM.build(params)
    for step in range(4):
        x, y = cancer.x_train[step * 16:(step + 1) * 16], cancer.y_train[step * 16:(step + 1) * 16]
        topo.train_step(x, y, step=step)
        reference.zero_grad()
        parts = [head(view(x)) for head, view in zip(heads, topo.views)]
        F.cross_entropy(body(merger(parts)), y).backward()
        reference.step()
    ours = [p for m in (*topo.heads, topo.merger, topo.body) for p in m.parameters()]
    assert max((a - b).abs().max().item() for a, b in zip(ours, params)) <= 1e-6
    assert max((a - b).abs().max().item() for a, b in zip(topo.heads[0].parameters(),
                                                           _topology(cancer, "mlp", k=2, merge=merge).heads[0].parameters())) > 1e-4


# -- who sees what -------------------------------------------------------------------------------
def _recorded(topology_name, dataset, model_name, batch=8, **options):
    channel = Channel()
    messages = []
    channel.add_tap("*", messages.append)
    topo = _topology(dataset, model_name, name=topology_name, channel=channel, **options)
    seen_inputs = {c: [] for c in topo.clients}
    for client, head in zip(topo.clients, topo.heads):
        head.register_forward_pre_hook(lambda m, args, client=client: seen_inputs[client].append(args[0]))
    x, y = dataset.x_train[:batch], dataset.y_train[:batch]
    topo.train_step(x, y, step=0)
    topo.predict(x, step=1)
    return topo, messages, seen_inputs, x, y


@pytest.mark.parametrize("name", ["vertical", "vertical-ushape"])
def test_each_client_sends_its_own_activation_each_step(cancer, name):
    # cut at "flatten": 30 columns over 4 clients are 8, 8, 7, 7 wide, so shapes differ per client
    topo, messages, _, x, _ = _recorded(name, cancer, "mlp", k=4, merge="concat",
                                        cuts=["flatten"] + (["relu2"] if name == "vertical-ushape" else []))
    for phase in ("train", "eval"):
        acts = [m for m in messages if m.kind == "activation" and m.dst == "server" and m.phase == phase]
        assert [m.src for m in acts] == topo.clients  # k per step, one from each client
        for m, view in zip(acts, topo.views):
            assert tuple(m.tensor.shape) == (len(x), len(view.columns))
            assert m.nbytes == len(x) * len(view.columns) * 4
    t = topo.channel.traffic
    for client, view in zip(topo.clients, topo.views):
        assert t.total(src=client, kind="activation", phase="train") == len(x) * len(view.columns) * 4
        assert t.total(dst=client, kind="gradient", phase="train") == len(x) * len(view.columns) * 4


@pytest.mark.parametrize("name,options", [
    ("vertical", dict(layout="grid", merge="sum")),
    ("vertical", dict(k=2, merge="concat", label_source="label_owner")),
    ("vertical-ushape", dict(k=2, merge="mean")),
])
def test_no_client_receives_another_clients_activations_or_features(digits, name, options):
    topo, messages, seen_inputs, x, _ = _recorded(name, digits, "lenet", **options)
    own_shape = {c: (len(x), *s) for c, s in zip(topo.clients, topo.cut_shapes)}
    for m in messages:
        assert not (m.src in topo.clients and m.dst in topo.clients), f"{m.src} -> {m.dst} ({m.kind})"
        if m.dst in topo.clients:
            assert m.src == "server"
            if m.kind == "gradient":
                assert tuple(m.tensor.shape) == own_shape[m.dst]
            else:  # predictions or the U-shape's return trip, only ever to the output owner
                assert m.dst == "client0" and m.kind in {"logits", "activation"}, m
    # each client's head only ever ran on its own view of the batch
    for client, view in zip(topo.clients, topo.views):
        assert len(seen_inputs[client]) == 2  # one training step, one prediction
        for seen in seen_inputs[client]:
            assert torch.equal(seen, view(x))


def test_vertical_ushape_server_never_receives_labels_or_loss(digits):
    topo, messages, _, x, y = _recorded("vertical-ushape", digits, "lenet", k=2)
    to_server = [m for m in messages if m.dst == "server"]
    assert to_server, "the check would be vacuous"
    for m in to_server:
        assert m.kind in {"activation", "gradient"}, m.kind
        assert m.tensor.is_floating_point() and m.tensor.dim() > 1 and m.tensor.shape[0] == len(y)
    assert topo.channel.traffic.total(kind="labels") == 0
    assert [m.kind for m in messages if m.dst == "client0" and m.phase == "eval"] == ["activation"]


def test_vanilla_vertical_labels_come_from_client0_or_stay_at_server(cancer):
    _, messages, _, _, y = _recorded("vertical", cancer, "mlp", k=2)
    labels = [m for m in messages if m.kind == "labels"]
    assert len(labels) == 1 and (labels[0].src, labels[0].dst) == ("client0", "server")
    assert torch.equal(labels[0].tensor, y)
    assert [(m.kind, m.src) for m in messages if m.dst == "client0" and m.phase == "eval"] == [("logits", "server")]
    topo, messages, _, _, _ = _recorded("vertical", cancer, "mlp", k=2, label_source="label_owner")
    assert not [m for m in messages if m.kind == "labels"] and topo.label_holder == "server"


class _Recorder(Callback):
    def __init__(self):
        self.calls = []

    def transform_activation(self, z, *, party, step, phase):
        self.calls.append(("activation", party, phase, tuple(z.shape)))
        return z

    def extra_loss(self, x, z, *, party, step):
        self.calls.append(("extra", party, tuple(x.shape), tuple(z.shape)))
        return (z ** 2).mean() * 0.0

    def transform_labels(self, y, *, party, step):
        self.calls.append(("labels", party))
        return y

    def transform_gradient(self, grad, *, party, step):
        self.calls.append(("gradient", party, tuple(grad.shape)))
        return grad


@pytest.mark.parametrize("name", ["vertical", "vertical-ushape"])
def test_callbacks_act_for_every_client(cancer, name):
    topo = _topology(cancer, "mlp", name=name, k=2)
    recorder = _Recorder()
    topo.callbacks = CallbackList([recorder])
    x, y = cancer.x_train[:8], cancer.y_train[:8]
    topo.train_step(x, y, step=0)
    calls = recorder.calls
    assert [c[1] for c in calls if c[0] == "activation"] == ["client0", "client1"]
    assert [(c[1], c[2]) for c in calls if c[0] == "extra"] == [("client0", (8, 15)), ("client1", (8, 15))]
    assert [c[1] for c in calls if c[0] == "labels"] == [topo.label_owner]
    grads = [c[1] for c in calls if c[0] == "gradient"]
    assert grads == (["client0"] if name == "vertical-ushape" else []) + ["server", "server"]


# -- sample alignment ----------------------------------------------------------------------------
def test_align_ids_reorders_shuffled_clients():
    label_ids = torch.tensor([40, 10, 30, 20, 50])
    client_ids = [label_ids[torch.tensor([3, 0, 4, 1, 2])], label_ids[torch.tensor([4, 3, 2, 1, 0])]]
    perms = align_ids(client_ids, label_ids)
    for ids, perm in zip(client_ids, perms):
        assert torch.equal(ids[perm], label_ids)


def test_topology_align_assembles_each_clients_rows_in_label_order(cancer):
    topo = _topology(cancer, "mlp", k=3)
    x, ids = cancer.x_train, cancer.ids_train
    g = torch.Generator().manual_seed(0)
    label_order = torch.randperm(len(x), generator=g)
    features, client_ids = [], []
    for view in topo.views:  # each client holds its own columns of its rows, in its own order
        order = torch.randperm(len(x), generator=g)
        features.append(view(x[order]))
        client_ids.append(ids[order])
    aligned = topo.align(features, client_ids, ids[label_order])
    assert torch.equal(aligned, x[label_order])
    t = topo.channel.traffic
    assert t.total(kind="ids", what="messages") == 4  # client1, client2 -> client0 and back
    assert t.total(phase="train") == 0  # alignment is setup traffic, not training traffic


def test_mismatched_ids_are_a_clear_error():
    label_ids = torch.arange(100)
    client1 = torch.cat([torch.arange(3, 100), torch.tensor([500, 501])])  # 3 missing, 2 extra
    with pytest.raises(DataError, match=r"client1's sample IDs do not match.*3 missing \(e\.g\. \[0, 1, 2\]\), "
                                        r"2 extra \(e\.g\. \[500, 501\]\)"):
        align_ids([torch.arange(100), client1], label_ids)
    with pytest.raises(DataError, match="client0's sample IDs repeat"):
        align_ids([torch.tensor([1, 1, 2])], torch.tensor([1, 2, 3]))


# -- configuration errors ------------------------------------------------------------------------
@pytest.mark.parametrize("merge", ["sum", "mean"])
def test_sum_and_mean_need_equal_cut_shapes(merge):
    views = [FeatureView("a", region=(0, 12, 0, 8)), FeatureView("b", region=(0, 12, 8, 12))]
    with pytest.raises(ConfigError, match=rf"merge '{merge}' needs every client's cut output to have the same "
                                          r"shape, got client0 \(8, 6, 4\), client1 \(8, 6, 2\)"):
        VerticalTopology("lenet", input_shape=(1, 12, 12), num_classes=10, views=views, merge=merge)
    topo = VerticalTopology("lenet", input_shape=(1, 12, 12), num_classes=10, views=views, merge="concat")
    assert topo.merger.linear.in_features == 8 * 6 * 6 and topo.merger.linear.out_features == 8 * 6 * 4


def test_builder_errors_and_defaults():
    model = create_model("mlp", input_shape=(30,), num_classes=2, seed=0)
    with pytest.raises(ConfigError, match="needs model_name="):
        build_topology("vertical", model)
    with pytest.raises(ConfigError, match="unknown merge 'max'"):
        build_topology("vertical", model, model_name="mlp", merge="max")
    with pytest.raises(ConfigError, match="'vertical-ushape' needs 2 cut point"):
        build_topology("vertical-ushape", model, model_name="mlp", cuts=["relu1"])
    with pytest.raises(ConfigError, match="at least 2 client views, got 1"):
        build_topology("vertical", model, model_name="mlp", k=1)
    with pytest.raises(ConfigError, match="k=3 but 2 views"):
        build_topology("vertical", model, model_name="mlp", k=3, views=vertical_columns(30, 2))
    topo = build_topology("vertical", model, model_name="mlp", k=3)
    assert topo.cuts == ["relu1"] and topo.data_owner == "client0" and topo.data_owners == ("client0", "client1", "client2")
    assert set(topo.parties) == {"client0", "client1", "client2", "server"}
    json.dumps(topo.describe())
    assert {"vertical", "vertical-ushape"} <= {n for n, _ in list_topologies()}

"""Multi-task topologies: learning every task, exactness vs vanilla/U-shape and vs a hand-written
multi-head reference, byte accounting in closed form, who sees labels, config errors, CLI."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from secsplit.channel import Channel
from secsplit.data import load_dataset
from secsplit.errors import ConfigError
from secsplit.evaluation.cli import main
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.topologies.multitask import LocalEntitiesTopology
from secsplit.training import Trainer

TABULAR = (64,)  # digits flattened; mlp default hidden (64, 32): q1 = 64 at relu1, q2 = 32 at relu2
Q1, Q2 = 64, 32


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _mlp(seed=0, shape=TABULAR):
    return create_model("mlp", input_shape=shape, num_classes=10, seed=seed)


def _batches(n_steps=5, batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, *TABULAR, generator=g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(n_steps)]


def _params_equal(a, b):
    return all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))


# -- learning every task ----------------------------------------------------------------------------
@pytest.mark.parametrize("topology,options", [
    ("multitask", {}),
    ("multitask-ushape", {}),
    ("multitask-local", {}),
    ("multitask-local", {"samples": "split"}),
])
def test_every_task_is_learned_and_reported_per_task(digits, topology, options):
    model = create_model("mlp", input_shape=digits.input_shape, num_classes=digits.num_classes, seed=0)
    topo = build_topology(topology, model, tasks="class,parity", optimizer=OptimizerSpec("adam", lr=3e-3), **options)
    report = Trainer(topo, batch_size=32, epochs=4, seed=0, progress=False).fit(digits)
    for row in report.history:
        assert {"test_task_class_accuracy", "test_task_class_loss", "test_task_parity_accuracy",
                "test_task_parity_loss"} <= set(row)
    last = report.history[-1]
    assert last["test_task_class_accuracy"] > 0.7  # chance 0.1
    assert last["test_task_parity_accuracy"] > 0.8  # chance 0.5
    # the primary task (the first) is what predict returns and what test_accuracy measures
    assert last["test_accuracy"] == pytest.approx(last["test_task_class_accuracy"])
    assert last["test_loss"] == pytest.approx(last["test_task_class_loss"], rel=1e-5)
    assert report.summary["tasks"]
    flops = report.summary["flops"]["train"]
    assert all(flops[p] > 0 for p in topo.parties)


def test_primary_task_need_not_be_the_class(digits):
    model = create_model("mlp", input_shape=digits.input_shape, num_classes=digits.num_classes, seed=0)
    topo = build_topology("multitask", model, tasks="parity,half")
    row = Trainer(topo, batch_size=32, epochs=1, seed=0, progress=False).fit(digits).history[-1]
    assert row["test_accuracy"] == pytest.approx(row["test_task_parity_accuracy"])
    assert "test_task_half_accuracy" in row and "test_task_class_accuracy" not in row
    assert topo.predict(digits.x_test[:5]).shape == (5, 2)


# -- exactness ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("topology,reference,cuts,options", [
    ("multitask", "vanilla", ["relu1"], {}),
    ("multitask", "vanilla", ["fc2"], {"label_source": "label_owner"}),
    ("multitask-ushape", "ushape", ["relu1", "relu2"], {}),
    ("multitask-local", "ushape", ["relu1", "relu2"], {"entities": 1}),
])
def test_single_class_task_trains_exactly_as_the_plain_topology(topology, reference, cuts, options):
    optimizer = OptimizerSpec("sgd", lr=0.1, momentum=0.9)
    a, b = _mlp(), _mlp()
    multi = build_topology(topology, a, tasks="class", cuts=cuts, optimizer=optimizer, **options)
    plain = build_topology(reference, b, cuts=cuts, optimizer=optimizer,
                           **({"label_source": options["label_source"]} if "label_source" in options else {}))
    for step, (x, y) in enumerate(_batches()):
        ra, rb = multi.train_step(x, y, step=step), plain.train_step(x, y, step=step)
        assert ra == rb
    assert _params_equal(a, b)
    assert not _params_equal(a, _mlp())  # the model moved
    x, _ = _batches(n_steps=1, seed=1)[0]
    assert torch.equal(multi.predict(x), plain.predict(x))
    for kind in ("activation", "gradient", "labels", "logits"):  # same messages, same bytes (entity 0 is "client0")
        for phase in ("train", "eval"):
            for what in ("bytes", "messages"):
                assert multi.channel.traffic.total(kind=kind, phase=phase, what=what) == \
                    plain.channel.traffic.total(kind=kind, phase=phase, what=what)


def _weighted_reference(pipelines, weights, batches, optimizer):
    """Unsplit reference: every task's pipeline (a list of modules), total loss sum_t w_t CE_t."""
    params = list({id(p): p for pipe, _ in pipelines for m in pipe for p in m.parameters()}.values())
    opt = optimizer.build(params)
    for x, y in batches:
        opt.zero_grad()
        loss = 0.0
        for (pipe, target), w in zip(pipelines, weights):
            h = x
            for module in pipe:
                h = module(h)
            loss = loss + w * F.cross_entropy(h, target(y))
        loss.backward()
        opt.step()


@pytest.mark.parametrize("heads", ["server", "client"])
def test_two_tasks_equal_an_unsplit_weighted_multi_head_model(heads):
    optimizer = OptimizerSpec("sgd", lr=0.1, momentum=0.9)
    topo = build_topology("multitask", _mlp(), tasks=["class", "parity"], weights="1,0.5", heads=heads,
                          optimizer=optimizer)
    client, trunk = copy.deepcopy(topo.client_segment), copy.deepcopy(topo.trunk)
    heads_ref = {t: copy.deepcopy(h) for t, h in topo.head_of.items()}
    batches = _batches()
    for step, (x, y) in enumerate(batches):
        topo.train_step(x, y, step=step)
    _weighted_reference([([client, trunk, heads_ref["class"]], lambda y: y),
                         ([client, trunk, heads_ref["parity"]], lambda y: y % 2)], [1.0, 0.5], batches, optimizer)
    for mine, ref in [(topo.client_segment, client), (topo.trunk, trunk), *((topo.head_of[t], heads_ref[t]) for t in heads_ref)]:
        assert max((p - q).abs().max().item() for p, q in zip(mine.parameters(), ref.parameters())) < 1e-6
    assert topo.weights == [1.0, 0.5]


def test_local_entities_equal_an_unsplit_shared_trunk_model():
    optimizer = OptimizerSpec("sgd", lr=0.1, momentum=0.9)
    topo = build_topology("multitask-local", _mlp(), tasks="class,parity", weights=[2, 1], optimizer=optimizer)
    heads = [copy.deepcopy(h) for h in topo.client_heads]
    tails = [copy.deepcopy(t) for t in topo.tails]
    trunk = copy.deepcopy(topo.trunk)
    batches = _batches()
    for step, (x, y) in enumerate(batches):
        topo.train_step(x, y, step=step)
    _weighted_reference([([heads[0], trunk, tails[0]], lambda y: y), ([heads[1], trunk, tails[1]], lambda y: y % 2)],
                        [2.0, 1.0], batches, optimizer)
    for mine, ref in [*zip(topo.client_heads, heads), *zip(topo.tails, tails), (topo.trunk, trunk)]:
        assert max((p - q).abs().max().item() for p, q in zip(mine.parameters(), ref.parameters())) < 1e-6
    # the entities started from the same head weights but trained apart
    assert not _params_equal(topo.client_heads[0], topo.client_heads[1])


# -- bytes -------------------------------------------------------------------------------------------
def test_multitask_bytes_match_closed_form():
    b, tasks = 8, ["class", "parity", "half"]
    topo = build_topology("multitask", _mlp(), tasks=tasks)
    x, y = _batches(n_steps=1, batch=b)[0]
    topo.train_step(x, y, step=0)
    t = topo.channel.traffic
    assert t.total(kind="activation", src="client", dst="server") == b * Q1 * 4
    assert t.total(kind="gradient", src="server", dst="client") == b * Q1 * 4
    assert t.total(kind="labels", src="client", dst="server") == len(tasks) * b * 8  # int64 targets, one message per task
    assert t.total(kind="labels", what="messages") == len(tasks)
    assert t.total() == 2 * b * Q1 * 4 + len(tasks) * b * 8
    topo.predict(x, step=1)
    assert t.total(kind="activation", phase="eval") == b * Q1 * 4
    assert t.total(kind="logits", src="server", dst="client", phase="eval") == b * (10 + 2 + 2) * 4


def test_multitask_labels_are_each_tasks_targets_only():
    channel, seen = Channel(), []
    channel.add_tap("server", lambda m: seen.append(m) if m.dst == "server" else None)
    topo = build_topology("multitask", _mlp(), tasks="parity", channel=channel)
    x, y = _batches(n_steps=1)[0]
    topo.train_step(x, y, step=0)
    labels = [m for m in seen if m.kind == "labels"]
    assert len(labels) == 1 and labels[0].tag == "parity" and torch.equal(labels[0].tensor, y % 2)  # never the digit


def test_label_owner_server_receives_no_labels():
    topo = build_topology("multitask", _mlp(), tasks="class,parity", label_source="label_owner")
    x, y = _batches(n_steps=1)[0]
    topo.train_step(x, y, step=0)
    assert topo.channel.traffic.total(kind="labels") == 0


def test_multitask_ushape_bytes_and_server_sees_no_labels():
    b = 8
    channel, seen = Channel(), []
    channel.add_tap("server", lambda m: seen.append(m) if m.dst == "server" else None)
    topo = build_topology("multitask-ushape", _mlp(), tasks="class,parity", channel=channel)
    x, y = _batches(n_steps=1, batch=b)[0]
    topo.train_step(x, y, step=0)
    topo.predict(x, step=1)
    t = topo.channel.traffic
    assert t.total(kind="activation", phase="train") == b * (Q1 + Q2) * 4
    assert t.total(kind="gradient", phase="train") == b * (Q1 + Q2) * 4
    assert t.total(kind="gradient", src="client", phase="train") == b * Q2 * 4
    assert t.total(kind="labels") == 0 and t.total(kind="logits") == 0
    assert t.total(phase="eval") == b * (Q1 + Q2) * 4
    assert seen and {m.kind for m in seen} == {"activation", "gradient"}


@pytest.mark.parametrize("samples", ["shared", "split"])
def test_local_entities_bytes_match_closed_form(samples):
    b, k = 9, 3  # 9 rows over 3 entities: 3 each when split
    channel, seen = Channel(), {}
    for party in ("server", "client0", "client1", "client2"):
        channel.add_tap(party, lambda m, party=party: seen.setdefault(party, []).append(m) if m.dst == party else None)
    topo = build_topology("multitask-local", _mlp(), tasks="class,parity,half", samples=samples, channel=channel)
    x, y = _batches(n_steps=1, batch=b)[0]
    topo.train_step(x, y, step=0)
    t = topo.channel.traffic
    rows = b if samples == "shared" else b // k
    for client in topo.clients:
        # each entity: its activation up (q1) and the trunk output down (q2); the same back as gradients
        assert t.total(src=client, kind="activation") == rows * Q1 * 4
        assert t.total(dst=client, kind="activation") == rows * Q2 * 4
        assert t.total(src=client, kind="gradient") == rows * Q2 * 4
        assert t.total(dst=client, kind="gradient") == rows * Q1 * 4
        assert {m.src for m in seen[client]} == {"server"}  # no entity hears from another
    assert t.total() == k * rows * 2 * (Q1 + Q2) * 4
    assert t.total(kind="labels") == 0
    assert {m.kind for m in seen["server"]} == {"activation", "gradient"}
    topo.predict(x, step=1)
    assert t.total(phase="eval") == k * b * (Q1 + Q2) * 4  # every entity infers on the whole batch


def test_split_samples_give_each_entity_its_own_rows():
    topo = build_topology("multitask-local", _mlp(), tasks="class,parity", samples="split")
    received = []
    topo.channel.add_tap("server", lambda m: received.append(m) if m.kind == "activation" and m.dst == "server" else None)
    x, y = _batches(n_steps=1, batch=10)[0]
    with torch.no_grad():  # before the step moves the heads
        expected = [topo.client_heads[0](x[0::2]), topo.client_heads[1](x[1::2])]
    result = topo.train_step(x, y, step=0)
    assert [m.src for m in received] == ["client0", "client1"]
    assert all(torch.equal(m.tensor, e) for m, e in zip(received, expected))
    assert result.count == 5  # the primary task's rows


def test_label_defenses_see_the_class_labels_only():
    from secsplit.callbacks import Callback, CallbackList

    class Recorder(Callback):
        def __init__(self):
            self.calls = []

        def transform_labels(self, y, *, party, step):
            self.calls.append((party, y.clone()))
            return y

    for topology, party in [("multitask", "server"), ("multitask-ushape", "client"), ("multitask-local", "client0")]:
        topo = build_topology(topology, _mlp(), tasks="parity,class" if topology != "multitask-local" else "class,parity")
        recorder = Recorder()
        topo.callbacks = CallbackList([recorder])
        x, y = _batches(n_steps=1)[0]
        topo.train_step(x, y, step=0)
        assert len(recorder.calls) == 1 and recorder.calls[0][0] == party and torch.equal(recorder.calls[0][1], y)


# -- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("topology,options,message", [
    ("multitask", {"tasks": "class,colour"}, "unknown task 'colour'; valid names: .*parity"),
    ("multitask", {"tasks": ""}, "at least one task"),
    ("multitask", {"tasks": []}, "at least one task"),
    ("multitask", {"tasks": "class,class"}, "distinct"),
    ("multitask", {"tasks": "class,parity", "weights": "1,-0.5"}, "finite and >= 0"),
    ("multitask", {"tasks": "class,parity", "weights": "1"}, "1 task weight.*2 task"),
    ("multitask", {"tasks": "class,parity", "weights": "0,0"}, "positive"),
    ("multitask", {"tasks": "class", "weights": "one"}, "numbers"),
    ("multitask", {"heads": "middle"}, "unknown heads"),
    ("multitask", {"cuts": ["relu2", "relu1"]}, "must come after"),
    ("multitask", {"cuts": ["relu1", "fc2", "relu2"]}, "1 or 2 cut points"),
    ("multitask", {"label_source": "nobody"}, "unknown label_source"),
    ("multitask", {"colour": 1}, "has no option"),
    ("multitask-local", {"tasks": "class,parity", "entities": 3}, "one task per local entity: entities=3 but 2"),
    ("multitask-local", {"entities": 0}, "entities must be an int >= 1"),
    ("multitask-local", {"samples": "random"}, "unknown samples"),
])
def test_bad_config_is_a_clear_config_error(topology, options, message):
    with pytest.raises(ConfigError, match=message):
        build_topology(topology, _mlp(), **options)


def test_local_entities_keep_their_labels_whatever_label_source_says():
    """label_source is a common keyword every topology accepts; every local entity holds its own
    labels, so build_topology ignores it, and the class itself refuses any other source."""
    topo = build_topology("multitask-local", _mlp(), label_source="label_owner")
    assert topo.label_source == "data_owner" and not topo.receivers("labels")
    with pytest.raises(ConfigError, match="holds its own labels"):
        LocalEntitiesTopology(_mlp(), label_source="label_owner")


# -- CLI ---------------------------------------------------------------------------------------------
def test_cli_trains_multitask_and_reports_per_task_metrics(capsys):
    code = main(["train", "--dataset", "digits", "--topology", "multitask", "--option", "tasks=class,parity",
                 "--option", "weights=1,0.5", "--epochs", "2", "--quiet", "--json", "--device", "cpu"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"] == ["class", "parity"] and summary["weights"] == [1.0, 0.5]
    assert 0 <= summary["history"][-1]["test_task_parity_accuracy"] <= 1
    assert main(["train", "--dataset", "digits", "--topology", "multitask-local", "--option", "tasks=class,parity",
                 "--epochs", "1", "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out

"""Checkpoints (one safetensors file per party) and split inference: round trip, integrity, privacy, CLI."""

import ast
import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

import secsplit
from secsplit.checkpoint import CheckpointError, load_split_model, read_manifest, save_split_model
from secsplit.data import load_dataset
from secsplit.errors import ConfigError, SecsplitError
from secsplit.evaluation.cli import main
from secsplit.inference import SplitInference
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _train(digits, name):
    model = create_model("mlp", input_shape=digits.input_shape, num_classes=digits.num_classes, seed=0)
    topology = build_topology(name, model)
    Trainer(topology, epochs=1, batch_size=64, seed=0, device="cpu", progress=False).fit(digits)
    topology.eval()
    return topology


def _save(topology, directory, digits):
    return save_split_model(topology, directory, model_name="mlp", model_options={}, dataset_name="digits",
                            dataset_seed=0, model_seed=0, input_shape=digits.input_shape, num_classes=digits.num_classes)


@pytest.fixture(scope="module", params=["vanilla", "ushape"])
def trained(request, digits, tmp_path_factory):
    """(trained topology, its checkpoint directory) for vanilla and U-shape."""
    topology = _train(digits, request.param)
    directory = _save(topology, tmp_path_factory.mktemp(request.param) / "ckpt", digits)
    return topology, directory


@pytest.fixture(scope="module")
def ushape(digits, tmp_path_factory):
    topology = _train(digits, "ushape")
    return topology, _save(topology, tmp_path_factory.mktemp("u") / "ckpt", digits)


@pytest.fixture
def copy(tmp_path):
    """Copy a checkpoint to a scratch directory a test may damage."""
    def make(directory):
        target = tmp_path / "damaged"
        shutil.copytree(directory, target)
        return target
    return make


# -- round trip ------------------------------------------------------------------------------------

def test_reload_gives_identical_logits(trained, digits):
    topology, directory = trained
    expected = topology.predict(digits.x_test)
    loaded = load_split_model(directory)
    assert loaded is not topology and loaded.name == topology.name and loaded.cuts == topology.cuts
    assert loaded.checkpoint.loaded == tuple(topology.parties) and loaded.checkpoint.unloaded == ()
    logits = SplitInference(loaded, batch_size=len(digits.x_test)).predict(digits.x_test)
    assert torch.equal(logits, expected)
    assert torch.equal(SplitInference(loaded).predict_classes(digits.x_test), expected.argmax(1))


def test_checkpoint_layout_and_manifest(trained, digits):
    topology, directory = trained
    manifest = read_manifest(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["client.safetensors", "manifest.json", "server.safetensors"]
    assert manifest["format_version"] == 1 and manifest["secsplit_version"] == secsplit.__version__
    assert manifest["model"] == {"name": "mlp", "options": {}, "seed": 0}
    assert manifest["input_shape"] == list(digits.input_shape) and manifest["num_classes"] == digits.num_classes
    assert manifest["dataset"] == {"name": "digits", "seed": 0}
    assert manifest["topology"]["name"] == topology.name
    assert manifest["topology"]["cuts"] == topology.cuts and manifest["topology"]["owners"] == topology.owners
    for party, entry in manifest["parties"].items():
        path = directory / entry["file"]
        assert entry["file"] == f"{party}.safetensors"
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
        segments = {f"segment{i}" for i, owner in enumerate(topology.owners) if owner == party}
        assert {k.split(".")[0] for k in keys} == segments == set(entry["segments"])
    # each party's file holds only its own segments: U-shape's client file has the head and the tail
    if topology.name == "ushape":
        assert manifest["parties"]["client"]["segments"] == ["segment0", "segment2"]


def test_client_loads_only_its_own_file(trained, digits, copy):
    topology, directory = trained
    directory = copy(directory)
    (directory / "server.safetensors").unlink()  # the client never has the server's file
    loaded = load_split_model(directory, parties="client")
    assert loaded.parties["client"].loaded and not loaded.parties["server"].loaded
    assert loaded.checkpoint.unloaded == ("server",)
    fresh = build_topology(topology.name, create_model("mlp", input_shape=digits.input_shape, num_classes=10, seed=0),
                           cuts=topology.cuts)
    for i, owner in enumerate(topology.owners):
        for (key, got), trained_tensor, fresh_tensor in zip(loaded.segments[i].state_dict().items(),
                                                            topology.segments[i].state_dict().values(),
                                                            fresh.segments[i].state_dict().values()):
            if owner == "client":
                assert torch.equal(got, trained_tensor), key
            else:  # untouched: still the seeded initial weights, not the trained ones
                assert torch.equal(got, fresh_tensor) and not torch.equal(got, trained_tensor), key
    with pytest.raises(CheckpointError, match="server"):
        SplitInference(loaded)
    assert SplitInference(loaded, allow_unloaded=True).predict(digits.x_test[:3]).shape == (3, 10)
    with pytest.raises(CheckpointError, match="no party 'hop1'"):
        load_split_model(directory, parties=["hop1"])


# -- integrity and clear errors ---------------------------------------------------------------------

def test_flipped_bytes_fail_sha256(ushape, copy):
    directory = copy(ushape[1])
    path = directory / "server.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_split_model(directory)
    load_split_model(directory, parties="client")  # the client's own file is intact


def test_truncated_and_missing_files(ushape, copy):
    directory = copy(ushape[1])
    path = directory / "client.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted.*sha256"):
        load_split_model(directory)
    path.unlink()
    with pytest.raises(CheckpointError, match="missing 'client.safetensors'"):
        load_split_model(directory)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_split_model(directory / "nowhere")
    (directory / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="no manifest.json"):
        load_split_model(directory)


@pytest.mark.parametrize("edit,message", [
    (lambda text, m: "{not json", "not valid JSON"),
    (lambda text, m: "[1, 2]", "must be a JSON object"),
    (lambda text, m: json.dumps({**m, "format_version": 99}), "unknown checkpoint format version 99"),
    (lambda text, m: json.dumps({k: v for k, v in m.items() if k != "model"}), "missing 'model'"),
    (lambda text, m: json.dumps({**m, "parties": {**m["parties"], "server": {**m["parties"]["server"], "file": "../server.safetensors"}}}),
     "plain"),
    (lambda text, m: json.dumps({**m, "model": {**m["model"], "name": "gpt"}}), "cannot build.*unknown model 'gpt'"),
])
def test_bad_manifest(ushape, copy, edit, message):
    directory = copy(ushape[1])
    path = directory / "manifest.json"
    text = path.read_text()
    path.write_text(edit(text, json.loads(text)))
    with pytest.raises(CheckpointError, match=message):
        load_split_model(directory)


def _rewrite_party(directory, party, change):
    """Replace ``party``'s tensors by ``change(tensors)`` with a matching sha256, as a careless tool would."""
    path = directory / f"{party}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    data = safetensors_save(change(tensors))
    path.write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["parties"][party]["sha256"] = hashlib.sha256(data).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_shape_mismatch_names_the_tensor(ushape, copy):
    directory = copy(ushape[1])
    key = "segment1.fc2.weight"
    _rewrite_party(directory, "server", lambda t: {**t, key: torch.zeros(3, 3)})
    with pytest.raises(CheckpointError, match=rf"tensor '{key}' has shape \(3, 3\)"):
        load_split_model(directory)


def test_missing_and_extra_tensors(ushape, copy):
    directory = copy(ushape[1])
    key = "segment1.fc2.bias"
    _rewrite_party(directory, "server", lambda t: {k: v for k, v in t.items() if k != key})
    with pytest.raises(CheckpointError, match=f"missing tensor.*{key}"):
        load_split_model(directory)
    _rewrite_party(directory, "client", lambda t: {**t, "segment9.evil": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="segment9.evil"):
        load_split_model(directory, parties="client")


def test_save_refuses_a_file_path(ushape, digits, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        _save(ushape[0], target, digits)


def test_no_unsafe_deserialization_in_sources():
    """No Python object deserialization in the checkpoint/inference code paths: safetensors only."""
    banned_modules = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
    for relative in ["secsplit/checkpoint.py", "secsplit/inference.py", "evaluation/commands/predict.py"]:
        source = (ROOT / relative).read_text()
        assert "torch.load" not in source and "torch.save" not in source and "allow_pickle" not in source, relative
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & banned_modules, (relative, names)
            if isinstance(node, ast.ImportFrom) and node.module == "torch":
                assert not {a.name for a in node.names} & {"load", "save"}, relative


# -- split inference ------------------------------------------------------------------------------

def test_ushape_server_never_sees_logits(ushape, digits):
    loaded = load_split_model(ushape[1])
    seen = []
    loaded.channel.add_tap("server", seen.append)
    inference = SplitInference(loaded, batch_size=100)
    logits = inference.predict(digits.x_test)
    assert len(seen) == 2 * inference.last_request.batches == 8
    assert {(m.src, m.dst, m.kind, m.phase) for m in seen} == {("client", "server", "activation", "eval"),
                                                              ("server", "client", "activation", "eval")}
    assert all(m.tensor.shape[1] != logits.shape[1] for m in seen)  # nothing logit-shaped crosses
    # the client alone turns the server's answer into logits: no "logits" or "labels" message at all
    assert loaded.channel.traffic.total(kind="logits") == 0 and loaded.channel.traffic.total(kind="labels") == 0


def test_what_the_server_sees_during_predict(trained, digits):
    """U-shape: activations only, both ways. Vanilla: the server computes and returns the logits."""
    topology, directory = trained
    loaded = load_split_model(directory)
    seen = []
    loaded.channel.add_tap("server", seen.append)
    SplitInference(loaded).predict(digits.x_test[:5])
    back = "activation" if topology.name == "ushape" else "logits"
    assert [(m.src, m.kind, m.phase) for m in seen] == [("client", "activation", "eval"), ("server", back, "eval")]


def test_traffic_accounting_and_batching(ushape, digits):
    loaded = load_split_model(ushape[1])
    x = digits.x_test
    whole = SplitInference(loaded, batch_size=len(x)).predict(x)
    inference = SplitInference(loaded, batch_size=100)
    logits = inference.predict(x)
    assert torch.allclose(logits, whole, atol=1e-5)
    request = inference.last_request
    assert (request.samples, request.batches, request.messages_sent, request.messages_received) == (len(x), 4, 4, 4)
    cut_width = loaded.segments[0](x[:1]).shape[1]
    back_width = loaded.segments[1](loaded.segments[0](x[:1])).shape[1]
    assert request.bytes_sent == len(x) * cut_width * 4
    assert request.bytes_received == len(x) * back_width * 4
    assert request.by_direction == {"client->server": {"activation": request.bytes_sent},
                                    "server->client": {"activation": request.bytes_received}}
    inference.predict(x[:10])
    assert inference.last_request.samples == 10 and inference.total.samples == len(x) + 10
    assert inference.total.bytes_sent == request.bytes_sent + 10 * cut_width * 4
    assert inference.predict(x[:0]).shape == (0, 10) and inference.last_request.bytes_sent == 0
    with pytest.raises(ConfigError, match="add a batch dimension"):
        inference.predict(x[0])
    with pytest.raises(ConfigError, match="batch_size"):
        SplitInference(loaded, batch_size=0)


# -- CLI ------------------------------------------------------------------------------------------

def test_cli_train_save_then_predict(tmp_path, capsys):
    directory = tmp_path / "ckpt"
    assert main(["train", "--dataset", "digits", "--topology", "ushape", "--epochs", "1", "--device", "cpu",
                 "--json", "--save", str(directory)]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["checkpoint"] == str(directory) and (directory / "manifest.json").is_file()

    output = tmp_path / "predictions.csv"
    assert main(["predict", "--checkpoint", str(directory), "--dataset", "digits", "--json", "--device", "cpu",
                 "--output", str(output)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == trained["test_accuracy"]
    assert result["samples"] == 360 and result["split"] == "test" and result["topology"] == "ushape"
    assert result["client_bytes_sent"] > 0 and result["client_bytes_received"] > 0
    rows = list(csv.reader(output.open()))
    assert rows[0] == ["sample_id", "predicted_class"] and len(rows) == 361
    assert all(0 <= int(c) < 10 for _, c in rows[1:])

    assert main(["predict", "--checkpoint", str(directory), "--limit", "7"]) == 0  # data set from the manifest
    out = capsys.readouterr().out
    assert "test accuracy" in out and "/7 on digits" in out and "client -> others" in out


@pytest.mark.parametrize("argv,message", [
    (["predict", "--checkpoint", "/nonexistent/ckpt", "--dataset", "digits"], "does not exist"),
    (["predict", "--checkpoint", "."], "no manifest.json"),
])
def test_cli_bad_checkpoint_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("secsplit predict: error:")


def test_checkpoint_error_is_a_secsplit_error():
    assert issubclass(CheckpointError, SecsplitError)

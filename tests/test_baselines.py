"""Baselines: FedAvg, large-batch SGD and centralized training, their accounting and memory use."""

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from secsplit.baselines import train_centralized, train_fedavg, train_large_batch_sgd
from secsplit.data import load_dataset
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec

D, H1, H2, C = 30, 64, 32, 2
N_PARAMS = D * H1 + H1 + H1 * H2 + H2 + H2 * C + C  # breast-cancer mlp, by hand from the layer sizes
SGD = OptimizerSpec("sgd", lr=0.1)



@pytest.fixture(scope="module")
def cancer():
    return load_dataset("breast-cancer", seed=0)


def _mlp(seed=0):
    return create_model("mlp", input_shape=(D,), num_classes=C, seed=seed, hidden=(H1, H2))


def test_fedavg_reaches_high_accuracy_with_four_iid_clients(cancer):
    report = train_fedavg(_mlp(), cancer, num_clients=4, rounds=3, local_epochs=1, batch_size=16, optimizer=SGD, seed=0)
    assert [row["round"] for row in report.history] == [1, 2, 3]
    assert report.test_accuracy > 0.9
    assert report.summary["test_accuracy"] == report.history[-1]["test_accuracy"]


def test_fedavg_bytes_per_client_per_round_are_twice_the_model(cancer):
    """Each selected client receives and sends the whole model once per round: 2·N·4 bytes."""
    rounds = 3
    report = train_fedavg(_mlp(), cancer, num_clients=4, rounds=rounds, batch_size=32, optimizer=SGD, seed=0)
    assert report.summary["parameters"] == N_PARAMS
    for sent, received in zip(report.client_bytes_sent, report.client_bytes_received):
        assert sent == received == rounds * N_PARAMS * 4
        assert (sent + received) / rounds == 2 * N_PARAMS * 4
    # with partial participation only the selected clients pay, still 2·N·4 each
    partial = train_fedavg(_mlp(), cancer, num_clients=10, rounds=rounds, client_fraction=0.3, batch_size=32,
                           optimizer=SGD, seed=0)
    assert all(row["clients"] == 3 for row in partial.history)
    total = sum(partial.client_bytes_sent) + sum(partial.client_bytes_received)
    assert total == rounds * 3 * 2 * N_PARAMS * 4


def test_fedavg_client_flops_match_closed_form(cancer):
    """Per local sample: forward 2·(D·H1 + H1·H2 + H2·C), backward twice that except the first
    layer's input gradient (raw data needs none)."""
    local_epochs = 2
    report = train_fedavg(_mlp(), cancer, num_clients=4, rounds=1, local_epochs=local_epochs, batch_size=16,
                          optimizer=SGD, seed=0)
    per_sample = 4 * D * H1 + 6 * (H1 * H2 + H2 * C)
    sizes = [math.ceil(len(cancer.x_train) / 4)] * (len(cancer.x_train) % 4) + \
            [len(cancer.x_train) // 4] * (4 - len(cancer.x_train) % 4)
    assert sorted(report.client_flops) == pytest.approx(sorted(local_epochs * n * per_sample for n in sizes), rel=0.01)


def test_fedavg_non_iid_and_bad_settings(cancer):
    report = train_fedavg(_mlp(), cancer, num_clients=5, rounds=2, partition=("dirichlet", 0.5), batch_size=32,
                          optimizer=SGD, seed=1)
    assert len(report.history) == 2 and report.summary["partition"] == ["dirichlet", 0.5]
    with pytest.raises(ConfigError, match="partition"):
        train_fedavg(_mlp(), cancer, num_clients=2, rounds=1, partition="by-hospital")
    with pytest.raises(ConfigError, match="client_fraction"):
        train_fedavg(_mlp(), cancer, num_clients=2, rounds=1, client_fraction=0)
    with pytest.raises(ConfigError, match="rounds"):
        train_fedavg(_mlp(), cancer, num_clients=2, rounds=0)


def test_fedavg_is_deterministic_and_leaves_the_global_model(cancer):
    a, b = _mlp(), _mlp()
    train_fedavg(a, cancer, num_clients=3, rounds=2, batch_size=32, seed=5)
    report = train_fedavg(b, cancer, num_clients=3, rounds=2, batch_size=32, seed=5)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    from secsplit.baselines import evaluate
    assert evaluate(b, cancer.x_test, cancer.y_test)["test_accuracy"] == report.test_accuracy


def test_large_batch_sgd_equals_centralized_with_the_global_batch(cancer):
    """K clients x b samples averaged = one step on the K·b batch: same parameters as centralized."""
    k, b, epochs = 4, 10, 2
    opt = OptimizerSpec("sgd", lr=0.1, momentum=0.9)
    central_model, parallel_model = _mlp(), _mlp()
    central = train_centralized(central_model, cancer, epochs=epochs, batch_size=k * b, optimizer=opt, seed=3)
    parallel = train_large_batch_sgd(parallel_model, cancer, num_clients=k, epochs=epochs, per_client_batch=b,
                                     optimizer=opt, seed=3)
    for p, q in zip(central_model.parameters(), parallel_model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert parallel.test_accuracy == central.test_accuracy
    # the clients together do the centralized FLOPs, each a K-th of them
    assert sum(parallel.client_flops) == pytest.approx(central.client_flops[0], rel=1e-9)
    # every client, every step: gradient up and weights down, 2·N·4 bytes
    steps = epochs * math.ceil(len(cancer.x_train) / (k * b))
    assert parallel.summary["steps"] == steps
    for sent, received in zip(parallel.client_bytes_sent, parallel.client_bytes_received):
        assert sent + received == steps * 2 * N_PARAMS * 4


def test_large_batch_sgd_with_batchnorm_runs():
    data = load_dataset("synthetic", kind="image", image_shape=(3, 8, 8), n_samples=60, num_classes=3, seed=0)
    model = create_model("resnet", input_shape=(3, 8, 8), num_classes=3, seed=0, width=4)
    report = train_large_batch_sgd(model, data, num_clients=3, epochs=1, per_client_batch=4, seed=0)
    assert all(f > 0 for f in report.client_flops)
    assert report.summary["state_bytes"] > 4 * report.summary["parameters"]  # BN buffers travel too
    assert model.bn1.num_batches_tracked.item() == report.summary["steps"] == 4  # averaged, once per step


def test_centralized_matches_unsplit_secsplit_train(cancer):
    """Same seed, batches and optimizer as `secsplit train` with a vanilla split: same model."""
    from secsplit.topologies import build_topology
    from secsplit.training import Trainer

    split_model, central_model = _mlp(), _mlp()
    spec = OptimizerSpec("adam", lr=1e-3)
    topology = build_topology("vanilla", split_model, cuts=["relu1"], optimizer=spec)
    trained = Trainer(topology, batch_size=32, epochs=2, seed=0, progress=False).fit(cancer)
    central = train_centralized(central_model, cancer, epochs=2, batch_size=32, optimizer=spec, seed=0)
    for p, q in zip(split_model.parameters(), central_model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
    assert central.test_accuracy == pytest.approx(trained.summary["test_accuracy"])
    assert central.test_accuracy > 0.9
    assert central.client_flops[0] == pytest.approx(sum(topology.flops.totals["train"].values()), rel=1e-9)


_MEMORY_SCRIPT = textwrap.dedent("""
    import gc, json, os, sys, threading, time, tracemalloc
    import torch
    torch.set_num_threads(1)
    from secsplit.baselines import state_bytes, train_fedavg
    from secsplit.data import load_dataset
    from secsplit.models import create_model
    from secsplit.optim import OptimizerSpec

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss():  # current resident set size in bytes (torch's tensors live outside Python's heap)
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    k, keep_copies = int(sys.argv[1]), sys.argv[2] == "copies"
    data = load_dataset("synthetic", n_samples=2500, n_features=30, num_classes=2, seed=0)  # 2,000 to train
    model = create_model("mlp", input_shape=(30,), num_classes=2, seed=0, hidden=(256, 256))
    opt = OptimizerSpec("sgd", lr=0.05)
    warm = create_model("mlp", input_shape=(30,), num_classes=2, seed=0, hidden=(256, 256))
    train_fedavg(warm, data, num_clients=2, rounds=1, batch_size=8, optimizer=opt, seed=0)  # load everything once
    del warm
    gc.collect()
    copies = []
    if keep_copies:  # what a naive simulation does: one model per client (shows the measurement sees it)
        import secsplit.baselines.fedavg as fedavg
        fedavg.state_bytes = lambda m: copies.append({n: t.clone() for n, t in m.state_dict().items()}) or 0
        original_build = OptimizerSpec.build
        OptimizerSpec.build = lambda self, params: (copies.append([p.detach().clone() for p in model.parameters()]),
                                                    original_build(self, params))[1]
    baseline, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    report = train_fedavg(model, data, num_clients=k, rounds=1, local_epochs=1, batch_size=8, optimizer=opt, seed=0)
    _, traced_peak = tracemalloc.get_traced_memory()
    peak[0] = max(peak[0], rss())
    done.set()
    sampler.join()
    print(json.dumps({"clients": k, "rss_growth": peak[0] - baseline, "rss_baseline": baseline,
                      "tracemalloc_peak": traced_peak, "state_bytes": state_bytes(model),
                      "accuracy": report.test_accuracy}))
""")


def _peak_memory(k: int, mode: str = "fedavg") -> dict:
    run = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(k), mode], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_fedavg_memory_does_not_grow_with_clients():
    """500 clients peak no higher than 100 (beyond noise), far below what K model copies would take.

    Measured in a fresh process: growth of the resident set (sampled every 0.5 ms; torch's tensors
    live outside Python's heap) and tracemalloc's peak of Python objects during one round. A model
    here is ~300 KB, so one copy per client would add ~150 MB at 500 clients; a naive variant that
    keeps them shows the measurement sees that.
    """
    small, large, naive = _peak_memory(100), _peak_memory(500), _peak_memory(500, "copies")
    print(f"\n100 clients: {small}\n500 clients: {large}\n500 clients, naive copies: {naive}")
    copies_cost = 500 * large["state_bytes"]
    assert naive["rss_growth"] > 0.5 * copies_cost  # the measurement would catch per-client copies
    assert large["rss_growth"] <= small["rss_growth"] + 8e6
    assert large["rss_growth"] < 0.1 * copies_cost
    assert large["tracemalloc_peak"] <= small["tracemalloc_peak"] + 1e6

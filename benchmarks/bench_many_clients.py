"""Many clients in constant memory: peak RSS, Python peak and wall time of relay and SplitFed for K clients.

Each (topology, K) runs in a fresh subprocess, so peak RSS (``resource.getrusage``'s ``ru_maxrss``)
belongs to that run alone: the process builds a synthetic data set and an mlp, notes its peak RSS,
trains one epoch through the Trainer and notes it again. A second subprocess per row repeats the run
under ``tracemalloc`` for the Python-object peak (torch's tensor storage is invisible to tracemalloc,
so tensor bytes are counted from the live tensors after training). It also checks every client's
training bytes against the closed form 2·(p/K)·q·4 + (p/K)·8 (labels, int64) + 2·eta·N·4 for relay,
and per round one upload and one download of the client segment for SplitFed.

``--control`` adds a deliberately leaky relay (every client keeps its own copy of the client
segment, as a naive simulation would) to show the measurement sees per-client growth.

    .venv/bin/python benchmarks/bench_many_clients.py                # K = 1, 10, 100, 500
    .venv/bin/python benchmarks/bench_many_clients.py --clients 1 10 --json
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import resource
import subprocess
import sys
import time
import tracemalloc

SAMPLES = 5000  # 4000 training samples after the 20% test split
FEATURES = 64
HIDDEN = (1024, 64)  # client segment: 64·1024 + 1024 = 66,560 parameters, 266 KB


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _tensor_bytes() -> int:
    import torch

    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        if type(obj) in (torch.Tensor, torch.nn.Parameter) and obj.device.type == "cpu":
            storages[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
    return sum(storages.values())


def _topology(name: str, k: int, model):
    from secsplit.optim import OptimizerSpec
    from secsplit.topologies import RelayTopology, build_topology

    optimizer = OptimizerSpec("adam", lr=1e-3)
    if name == "leaky-relay":
        class LeakyRelay(RelayTopology):
            def _hand_over(self, src, dst):
                self.__dict__.setdefault("kept", {})[src] = copy.deepcopy(self._client_party.segments)
                super()._hand_over(src, dst)

        return LeakyRelay(model, clients=k, cuts=list(model.suggested_cuts(1)), optimizer=optimizer, name=name)
    return build_topology(name, model, clients=k, optimizer=optimizer)


def child(name: str, k: int, batch_size: int, trace: bool) -> dict:
    """One run: build, train one epoch, measure; returns a JSON-ready row."""
    import torch

    from secsplit.data import load_dataset
    from secsplit.models import create_model
    from secsplit.training import Trainer

    torch.set_num_threads(1)
    dataset = load_dataset("synthetic", n_samples=SAMPLES, n_features=FEATURES, num_classes=4, seed=0)
    model = create_model("mlp", input_shape=dataset.input_shape, num_classes=4, seed=0, hidden=HIDDEN)
    topo = _topology(name, k, model)
    trainer = Trainer(topo, batch_size=batch_size, epochs=1, progress=False)
    rss_before = _peak_rss_mb()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    report = trainer.fit(dataset)
    total_s = time.perf_counter() - start
    python_peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    row = {"topology": name, "clients": k, "samples": len(dataset.x_train), "batch_size": batch_size,
           "peak_rss_mb_before": rss_before, "peak_rss_mb": _peak_rss_mb(), "tensor_bytes_after": _tensor_bytes(),
           "python_peak_bytes": python_peak, "epoch_s": report.history[0]["wall_time_s"], "fit_s": total_s,
           "test_accuracy": report.summary["test_accuracy"]}
    row.update(_bytes_check(topo, len(dataset.x_train), k))
    return row


def _bytes_check(topo, p: int, k: int) -> dict:
    """Every client's measured training bytes against the closed form."""
    import torch

    info = topo.describe()
    with torch.no_grad():
        q = int(topo.segments[0](torch.zeros(1, FEATURES)).shape[1])
    eta_n4 = info["weights_bytes_per_transfer"]
    share = p // k
    act = 2 * share * q * 4 + share * 8  # activations up, gradients down, labels up
    transfers = 0 if (k == 1 and "relay" in topo.name) else 2
    expected = act + transfers * eta_n4
    measured = [r["bytes_sent"] + r["bytes_received"] for r in info["per_client"].values()]
    return {"cut_size": q, "client_segment_bytes": eta_n4, "bytes_per_client_formula": expected,
            "bytes_per_client_min": min(measured), "bytes_per_client_max": max(measured),
            "bytes_match": p % k == 0 and min(measured) == max(measured) == expected}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 100, 500])
    parser.add_argument("--topologies", nargs="*", default=["relay", "splitfed"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--control", action="store_true", help="also run a relay that leaks a segment copy per client")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument("--child", nargs=2, metavar=("TOPOLOGY", "K"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.batch_size, args.trace)))
        return 0
    names = list(args.topologies) + (["leaky-relay"] if args.control else [])
    rows = []
    for name in names:
        for k in args.clients:
            if name == "leaky-relay" and k < 10:
                continue
            run = [sys.executable, __file__, "--child", name, str(k), "--batch-size", str(args.batch_size)]
            plain, traced = _run_child(run), _run_child(run + ["--trace"])
            plain["python_peak_bytes"] = traced["python_peak_bytes"]
            rows.append(plain)
            if args.json:
                print(json.dumps(plain), flush=True)
            else:
                print(_line(plain), flush=True)
    return 0


def _run_child(command: list[str]) -> dict:
    """The child's JSON row; its stderr when it fails."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def _line(r: dict) -> str:
    return (f"{r['topology']:<12} K={r['clients']:<4} peak RSS {r['peak_rss_mb']:7.1f} MB "
            f"(+{r['peak_rss_mb'] - r['peak_rss_mb_before']:5.1f} in fit)  python peak "
            f"{r['python_peak_bytes'] / 1e6:6.2f} MB  tensors {r['tensor_bytes_after'] / 1e6:6.2f} MB  "
            f"epoch {r['epoch_s']:6.2f} s  fit {r['fit_s']:6.2f} s  acc {r['test_accuracy']:.3f}  "
            f"bytes/client {r['bytes_per_client_max']:,} vs formula {r['bytes_per_client_formula']:,} "
            f"{'ok' if r['bytes_match'] else 'MISMATCH'}")


if __name__ == "__main__":
    sys.exit(main())

"""Split training and served inference over gRPC with mutual TLS on loopback, against in process.

1. Training step time, LeNet on MNIST-shaped batches of 64, Adam, vanilla (cut pool1) and U-shape
   (cuts pool1, relu4): the server party runs in its own process (`secsplit serve --role server`),
   the client here. In-process and remote steps alternate in blocks within one run, so machine
   noise hits both alike; the ratio of median step times is reported (target <= 1.5).
2. Served inference: `secsplit serve --role inference` in its own process holds the server
   segments of a saved LeNet split model; 1, 4 and 16 client threads, each its own connection and
   session, send batches for a fixed time. Requests/s and p50/p99 latency per concurrency.

Run: ``python benchmarks/bench_grpc.py [--steps N] [--rounds N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from secsplit.channel.certs import init_pki
from secsplit.channel.grpc_link import Link
from secsplit.checkpoint import load_split_model, save_split_model
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.remote import RemoteChainTopology, SessionSpec
from secsplit.remote.serving import spec_from_manifest
from secsplit.topologies import build_topology

SHAPE, CLASSES = (1, 28, 28), 10


def serve(*argv, threads: int) -> tuple[subprocess.Popen, int]:
    env = {"OMP_NUM_THREADS": str(threads)}
    import os

    process = subprocess.Popen([sys.executable, "-m", "secsplit.evaluation", "serve", "--listen", "127.0.0.1:0", *argv],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, **env})
    line = process.stdout.readline()
    match = re.search(r":(\d+) as", line)
    if not match:
        process.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return process, int(match.group(1))


def median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def training(args, pki: Path) -> list[dict]:
    torch.manual_seed(0)
    xs = torch.rand(args.steps, args.batch_size, *SHAPE)
    ys = torch.randint(0, CLASSES, (args.steps, args.batch_size))
    optimizer = OptimizerSpec("adam", lr=1e-3)
    rows = []
    for topology_name, cuts in [("vanilla", ("pool1",)), ("ushape", ("pool1", "relu4"))]:
        spec = SessionSpec(model="lenet", input_shape=SHAPE, num_classes=CLASSES, topology=topology_name, cuts=cuts,
                           optimizer=optimizer.to_dict())
        process, port = serve("--role", "server", "--certs", str(pki), threads=args.threads)
        try:
            remote = RemoteChainTopology(spec, Link(f"127.0.0.1:{port}", party="client", certs=pki))
            local = build_topology(topology_name, copy.deepcopy(create_model("lenet", input_shape=SHAPE, num_classes=CLASSES,
                                                                             seed=0)), cuts=list(cuts), optimizer=optimizer)
            step = 0
            for x, y in zip(xs[:5], ys[:5]):  # warm-up
                local.train_step(x, y, step=step), remote.train_step(x, y, step=step)
                step += 1
            local_times, remote_times = [], []
            for _ in range(args.rounds):
                for topo, times in ((local, local_times), (remote, remote_times)):
                    for x, y in zip(xs, ys):
                        start = time.perf_counter()
                        topo.train_step(x, y, step=step if topo is remote else 0)
                        times.append(time.perf_counter() - start)
                        if topo is remote:
                            step += 1
            stats = remote.link.stats.as_dict()
            remote.close()
        finally:
            process.terminate()
            process.wait(10)
        rows.append({"topology": topology_name, "in_process_ms": median_ms(local_times),
                     "grpc_mtls_ms": median_ms(remote_times), "ratio": statistics.median(remote_times) / statistics.median(local_times),
                     "framing_bytes_per_step": (stats["framing_sent"] + stats["framing_received"]) / stats["messages_sent"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def inference(args, pki: Path, workdir: Path) -> list[dict]:
    model = create_model("lenet", input_shape=SHAPE, num_classes=CLASSES, seed=0)
    topology = build_topology("vanilla", model, cuts=["pool1"])
    checkpoint = save_split_model(topology, workdir / "lenet", model_name="lenet", input_shape=SHAPE,
                                  num_classes=CLASSES, model_seed=0)
    rows = []
    process, port = serve("--role", "inference", "--certs", str(pki), "--checkpoint", str(checkpoint),
                          "--workers", str(args.workers), "--queue", "64", threads=args.threads)
    try:
        for batch in args.batches:
            for clients in (1, 4, 16):
                latencies: list[float] = []
                lock = threading.Lock()
                barrier = threading.Barrier(clients + 1)
                stop = threading.Event()

                def client() -> None:
                    local = load_split_model(checkpoint, parties="client")
                    remote = RemoteChainTopology(spec_from_manifest(local.checkpoint.manifest),
                                                 Link(f"127.0.0.1:{port}", party="client", certs=pki), local=local)
                    x = torch.rand(batch, *SHAPE)
                    remote.predict(x)  # warm-up
                    barrier.wait()
                    mine = []
                    while not stop.is_set():
                        start = time.perf_counter()
                        remote.predict(x)
                        mine.append(time.perf_counter() - start)
                    remote.close()
                    with lock:
                        latencies.extend(mine)

                threads = [threading.Thread(target=client) for _ in range(clients)]
                for thread in threads:
                    thread.start()
                barrier.wait()
                began = time.perf_counter()
                time.sleep(args.seconds)
                stop.set()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - began
                q = statistics.quantiles(latencies, n=100)
                rows.append({"batch": batch, "clients": clients, "requests_per_s": len(latencies) / elapsed,
                             "p50_ms": 1e3 * q[49], "p99_ms": 1e3 * q[98], "requests": len(latencies)})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        process.terminate()
        process.wait(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per side")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per concurrency level")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="inference batch sizes")
    parser.add_argument("--workers", type=int, default=4, help="inference server threads")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp) / "pki"
        init_pki(pki, ["server", "client"])
        print(json.dumps({"training": training(args, pki), "inference": inference(args, pki, Path(tmp))}, indent=2))


if __name__ == "__main__":
    main()

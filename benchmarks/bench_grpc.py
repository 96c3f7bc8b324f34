"""Served split inference over gRPC with mutual TLS on loopback.

`secsplit serve --role inference` in its own process holds the server segments of a saved LeNet
split model; 1, 4 and 16 client threads, each its own connection and session, send batches for a
fixed time. Requests/s and p50/p99 latency per concurrency. (Training across processes, every
topology: ``bench_transport.py``.)

Run: ``python benchmarks/bench_grpc.py [--seconds S]``.
"""

from __future__ import annotations

import argparse
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
from secsplit.remote import InferenceClient
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
                    remote = InferenceClient(load_split_model(checkpoint, parties="client"),
                                             Link(f"127.0.0.1:{port}", party="client", certs=pki))
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
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per concurrency level")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="inference batch sizes")
    parser.add_argument("--workers", type=int, default=4, help="inference server threads")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp) / "pki"
        init_pki(pki, ["server", "client"])
        print(json.dumps({"inference": inference(args, pki, Path(tmp))}, indent=2))


if __name__ == "__main__":
    main()

"""Served split inference over gRPC with mutual TLS on loopback.

`secsplit serve --role inference` in its own process holds the server segments of a saved LeNet
split model; 1, 4, 16 and 64 client threads, each its own connection and session, send batches for
a fixed time. Requests/s and p50/p99 latency per concurrency. Then an overload run against a
second server that holds fewer requests than there are clients (default 128 clients x 20 requests,
4 workers and a queue of 8): a refusal for capacity is retried by the client with jittered
exponential backoff (``exchange_retrying``), so every request must complete; errors and retried
refusals are counted.
(Training across processes, every topology: ``bench_transport.py``.)

Run: ``python benchmarks/bench_grpc.py [--seconds S] [--clients 1 4 16 64] [--overload 128 --requests 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
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
from secsplit.channel.grpc_link import Link, PeerBusy
from secsplit.checkpoint import load_split_model, save_split_model
from secsplit.models import create_model
from secsplit.remote import InferenceClient
from secsplit.topologies import build_topology

SHAPE, CLASSES = (1, 28, 28), 10


def serve(*argv, threads: int) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen([sys.executable, "-m", "secsplit.evaluation", "serve", "--listen", "127.0.0.1:0", *argv],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = process.stdout.readline()
    match = re.search(r":(\d+) as", line)
    if not match:
        process.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return process, int(match.group(1))


class CountingLink(Link):
    """A link that counts the refusals for capacity its exchanges met (each one retried by the client)."""

    busy = 0
    _lock = threading.Lock()

    def exchange(self, message, **kwargs):
        try:
            return super().exchange(message, **kwargs)
        except PeerBusy:
            with CountingLink._lock:
                CountingLink.busy += 1
            raise


def run_clients(local, port: int, pki: Path, *, clients: int, batch: int, seconds: float | None = None,
                requests: int | None = None, timeout_s: float = 60.0) -> dict:
    """``clients`` threads, each its own TLS connection and session, for ``seconds`` or ``requests`` each."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client() -> None:
        mine, remote = [], None
        try:
            remote = InferenceClient(local, CountingLink(f"127.0.0.1:{port}", party="client", certs=pki,
                                                         timeout_s=timeout_s))
            x = torch.rand(batch, *SHAPE)
            remote.predict(x)  # warm-up
        except Exception as error:  # counted below
            with lock:
                errors.append(f"{type(error).__name__}: {error}")
        barrier.wait()
        try:
            while remote is not None and not stop.is_set() and (requests is None or len(mine) < requests):
                start = time.perf_counter()
                remote.predict(x)
                mine.append(time.perf_counter() - start)
        except Exception as error:  # counted below
            with lock:
                errors.append(f"{type(error).__name__}: {error}")
        if remote is not None:
            remote.close()
        with lock:
            latencies.extend(mine)

    CountingLink.busy = 0
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    if seconds is not None:
        time.sleep(seconds)
        stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {"batch": batch, "clients": clients, "requests": len(latencies), "errors": len(errors),
            "busy_refusals_retried": CountingLink.busy, "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1e3 * q[49], 2), "p99_ms": round(1e3 * q[98], 2), "seconds": round(elapsed, 2),
            **({"first_error": errors[0][:200]} if errors else {})}


def inference(args, pki: Path, workdir: Path) -> list[dict]:
    model = create_model("lenet", input_shape=SHAPE, num_classes=CLASSES, seed=0)
    topology = build_topology("vanilla", model, cuts=["pool1"])
    checkpoint = save_split_model(topology, workdir / "lenet", model_name="lenet", input_shape=SHAPE,
                                  num_classes=CLASSES, model_seed=0)
    local = load_split_model(checkpoint, parties="client")  # one copy of the client segment, shared read-only
    rows = []
    process, port = serve("--role", "inference", "--certs", str(pki), "--checkpoint", str(checkpoint),
                          "--workers", str(args.workers), "--queue", str(args.queue), threads=args.threads)
    try:
        for batch in args.batches:
            for clients in args.clients:
                rows.append(run_clients(local, port, pki, clients=clients, batch=batch, seconds=args.seconds))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        process.terminate()
        process.wait(10)
    if args.overload:
        process, port = serve("--role", "inference", "--certs", str(pki), "--checkpoint", str(checkpoint),
                              "--workers", str(args.workers), "--queue", str(args.overload_queue), threads=args.threads)
        try:
            rows.append({"overload": True, "workers": args.workers, "queue": args.overload_queue,
                         **run_clients(local, port, pki, clients=args.overload, batch=1, requests=args.requests)})
            print(json.dumps(rows[-1]), flush=True)
        finally:
            process.terminate()
            process.wait(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per concurrency level")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="inference batch sizes")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64], help="concurrency levels")
    parser.add_argument("--workers", type=int, default=4, help="inference server threads")
    parser.add_argument("--queue", type=int, default=64, help="requests that may wait for a worker")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--overload", type=int, default=128, help="clients of the overload run (0: none)")
    parser.add_argument("--requests", type=int, default=20, help="requests per client in the overload run")
    parser.add_argument("--overload-queue", type=int, default=8, help="the overload run's server queue")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({"load_average": [round(v, 2) for v in os.getloadavg()]}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp) / "pki"
        init_pki(pki, ["server", "client"])
        rows = inference(args, pki, Path(tmp))
    print(json.dumps({"load_average": [round(v, 2) for v in os.getloadavg()], "rows": len(rows)}), flush=True)


if __name__ == "__main__":
    main()

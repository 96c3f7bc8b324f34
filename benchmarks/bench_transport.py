"""Training step across processes (NetworkChannel, gRPC + mutual TLS on loopback) against in process.

LeNet on MNIST-shaped random batches of 64, Adam. The same topology code runs in both: in process
(every party here) and across processes (the client here, every other party in its own process
started by this script with ``--party NAME``). Blocks of steps alternate between the two within
one run, so machine noise hits both alike; the ratio of median step times is reported.

Run: ``python benchmarks/bench_transport.py [--topology vanilla ushape multihop] [--steps N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from secsplit.channel.certs import init_pki
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology

SHAPE, CLASSES, BATCH = (1, 28, 28), 10, 64


def topology(name: str, channel=None):
    model = create_model("lenet", input_shape=SHAPE, num_classes=CLASSES, seed=0)
    return build_topology(name, model, optimizer=OptimizerSpec(), channel=channel)


def batches(n: int):
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(BATCH, *SHAPE, generator=g), torch.randint(0, CLASSES, (BATCH,), generator=g)) for _ in range(n)]


def network(party: str, addresses: dict, certs: str):
    from secsplit.channel.network import NetworkChannel

    return NetworkChannel(party=party, addresses=addresses, run_id="bench", certs=certs, timeout_s=120)


def party_main(args) -> None:
    """A non-client party: run every step of every round (it holds no inputs: zeros of the same shape)."""
    addresses = json.loads(args.addresses)
    channel = network(args.party, addresses, args.certs)
    topo = topology(args.topology, channel)
    channel.open()
    step = 0
    for _ in range(args.rounds):
        for x, y in batches(args.steps):
            topo.train_step(torch.zeros_like(x), torch.zeros_like(y), step=step)
            step += 1
    channel.close()


def measure(name: str, args, workdir: Path) -> dict:
    from secsplit.evaluation.commands.launch import free_port

    local = topology(name)
    parties = local.party_names
    init_pki(workdir / name, list(parties), hosts=["127.0.0.1"])
    addresses = {p: f"127.0.0.1:{free_port()}" for p in parties}
    others = [subprocess.Popen([sys.executable, __file__, "--party", p, "--topology", name, "--addresses",
                                json.dumps(addresses), "--certs", str(workdir / name), "--steps", str(args.steps),
                                "--rounds", str(args.rounds)]) for p in parties if p != "client"]
    channel = network("client", addresses, str(workdir / name))
    remote = topology(name, channel)
    channel.open()
    local_times, remote_times, step = [], [], 0
    for _ in range(args.rounds):
        for x, y in batches(args.steps):
            start = time.perf_counter()
            local.train_step(x, y, step=step)
            local_times.append(time.perf_counter() - start)
        for x, y in batches(args.steps):
            start = time.perf_counter()
            remote.train_step(x, y, step=step)
            remote_times.append(time.perf_counter() - start)
            step += 1
    transport = channel.transport()
    channel.close()
    for process in others:
        process.wait(60)
    warm = args.steps // 4  # the first steps of each side measure FLOPs and connect: not steady state
    lt, rt = local_times[warm:], remote_times[warm:]
    return {"topology": name, "processes": len(parties), "in_process_ms": round(statistics.median(lt) * 1e3, 2),
            "grpc_mtls_ms": round(statistics.median(rt) * 1e3, 2),
            "ratio": round(statistics.median(rt) / statistics.median(lt), 3),
            "framing_bytes_per_message": round(transport["framing_sent"] / max(transport["messages_sent"], 1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", nargs="+", default=["vanilla", "ushape"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--party", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--certs", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.party:
        args.topology = args.topology[0]
        party_main(args)
        return
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.topology:
            print(json.dumps(measure(name, args, Path(workdir))), flush=True)


if __name__ == "__main__":
    main()

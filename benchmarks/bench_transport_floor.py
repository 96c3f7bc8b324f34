"""How fast one training step's messages can cross between two processes: three designs side by side.

No training: the client and the server only exchange one step's messages, with the same sizes and
order as LeNet batch 64 (vanilla: the 288 KB activation and the labels to the server, the 288 KB
gradient back; U-shape: the activation to the server, its 64x84 output back, that output's gradient
to the server, the activation's gradient back). Every message is a codec envelope (encoded and
decoded with :mod:`secsplit.channel.codec`) and every connection uses mutual TLS with certificates
from :mod:`secsplit.channel.certs`. The designs:

- ``network``: the product's transport, :class:`~secsplit.channel.network.NetworkChannel`, with
  its checks, outboxes and watcher. Until commit fc678eb it pushed (each sender streamed to the
  receiver's listener; gRPC's threads handed each message to the receiving party); since 2c96ba6
  it pulls, as the next design.
- ``pull``: a bare prototype of the pull: each receiver's own thread reads a unary-stream call to
  the sender (gRPC's ``SingleThreadedUnaryStream`` option); the sender's listener yields from a
  queue.
- ``tls-socket``: a plain Python ``ssl`` socket, written and read directly in the training thread
  (length-prefixed envelopes): the floor without gRPC's threads.

Blocks of steps alternate between the designs within one run, so load hits all alike; the median
step time over every counted step is reported per design and pattern. ``--compute MS`` keeps each
side's training thread busy with small torch ops for that long before each message it computes
(forward or backward), so the transport's threads compete with it for the GIL and the cores as in
training.

Run: ``python benchmarks/bench_transport_floor.py [--steps 50] [--rounds 6] [--compute 0]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import grpc.experimental
import torch

from secsplit.channel.certs import CA_CERT, init_pki, load_credentials
from secsplit.channel.codec import WireMessage, decode, encode

ACTIVATION, LABELS, OUTPUT = (64, 8, 12, 12), (64,), (64, 84)
#: one step's messages in order: (sender, kind, shape, dtype, whether the sender computes before it);
#: the other party receives
PATTERNS = {
    "vanilla": [("client", "activation", ACTIVATION, torch.float32, True),
                ("client", "labels", LABELS, torch.int64, False),
                ("server", "gradient", ACTIVATION, torch.float32, True)],
    "ushape": [("client", "activation", ACTIVATION, torch.float32, True),
               ("server", "activation", OUTPUT, torch.float32, True),
               ("client", "gradient", OUTPUT, torch.float32, True),
               ("server", "gradient", ACTIVATION, torch.float32, True)],
}
DESIGNS = ("network", "pull", "tls-socket")
PULL_METHOD = "/bench.Floor/Pull"


_A, _B = torch.rand(64, 256), torch.rand(256, 256)


def spin(seconds: float) -> None:
    """Keep the thread busy for ``seconds`` with small torch ops, as a LeNet step's compute would: the
    GIL is held between ops and released inside them."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        torch.mm(_A, _B)


def tensors() -> dict:
    g = torch.Generator().manual_seed(0)
    return {(kind, shape): (torch.rand(shape, generator=g) if dtype == torch.float32 else torch.randint(0, 10, shape))
            for _, kind, shape, dtype, _ in PATTERNS["vanilla"] + PATTERNS["ushape"]}


def envelope_step(me: str, pattern, data: dict, step: int, compute: float, *, send, receive) -> None:
    """One step's messages as codec envelopes: ``me`` computes then ``send``s its own, ``receive``s and
    decodes the others' (the prototype designs; the product's NetworkChannel does this itself)."""
    for i, (src, kind, shape, _, computes) in enumerate(pattern):
        dst = "server" if src == "client" else "client"
        if src == me:
            if computes:
                spin(compute)
            send(encode(WireMessage(run_id="floor", step=step, kind=kind, src=src, dst=dst,
                                    tensor=data[(kind, shape)], seq=i)))
        else:
            decode(receive())


class NetworkPipe:
    """The product's transport: NetworkChannel."""

    def __init__(self, party: str, addresses: dict, certs: Path) -> None:
        from secsplit.channel.network import NetworkChannel

        self.channel = NetworkChannel(party=party, addresses=addresses, run_id="floor", certs=certs, timeout_s=60)
        self.channel.open()

    def step(self, me: str, pattern, data: dict, step: int, compute: float) -> None:
        for i, (src, kind, shape, _, computes) in enumerate(pattern):
            dst = "server" if src == "client" else "client"
            if src == me and computes:
                spin(compute)
            self.channel.send(src, dst, kind, data[(kind, shape)] if src == me else None, step=step, tag=str(i))

    def close(self) -> None:
        self.channel.close()


class PullPipe:
    """gRPC where the receiver's thread reads a unary-stream call to the sender's listener itself."""

    def __init__(self, party: str, addresses: dict, certs: Path) -> None:
        from concurrent import futures

        self.party, peer = party, ("server" if party == "client" else "client")
        cred = load_credentials(certs, party)
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.unary_stream_rpc_method_handler(self._serve_pull)
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Floor", {"Pull": handler})])
        self.server.add_secure_port(addresses[party], grpc.ssl_server_credentials(
            [(cred.key, cred.certificate)], root_certificates=cred.ca, require_client_auth=True))
        self.server.start()
        tls = grpc.ssl_channel_credentials(root_certificates=cred.ca, private_key=cred.key, certificate_chain=cred.certificate)
        self.channel = grpc.secure_channel(addresses[peer], tls, options=[
            ("grpc.ssl_target_name_override", peer), (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)])
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.inbox = self.channel.unary_stream(PULL_METHOD)(b"", wait_for_ready=True)

    def _serve_pull(self, request: bytes, context):
        while (item := self.outbox.get()) is not None:
            yield item

    def step(self, me: str, pattern, data: dict, step: int, compute: float) -> None:
        envelope_step(me, pattern, data, step, compute, send=self.outbox.put, receive=lambda: next(self.inbox))

    def close(self) -> None:
        self.outbox.put(None)
        for _ in self.inbox:
            pass
        self.channel.close()
        self.server.stop(0.5).wait()


class SocketPipe:
    """One mutual-TLS socket between the two parties, written and read in the training thread."""

    def __init__(self, party: str, addresses: dict, certs: Path) -> None:
        purpose = ssl.Purpose.CLIENT_AUTH if party == "server" else ssl.Purpose.SERVER_AUTH
        context = ssl.create_default_context(purpose, cafile=str(certs / CA_CERT))
        context.load_cert_chain(certs / f"{party}.pem", certs / f"{party}.key")
        host, port = addresses["server"].rsplit(":", 1)
        if party == "server":
            context.verify_mode = ssl.CERT_REQUIRED
            with socket.create_server((host, int(port))) as listening:
                raw, _ = listening.accept()
            self.sock = context.wrap_socket(raw, server_side=True)
            names = [v for rdn in self.sock.getpeercert()["subject"] for k, v in rdn if k == "commonName"]
            assert names == ["client"], names
        else:
            deadline = time.monotonic() + 30
            while True:
                try:
                    raw = socket.create_connection((host, int(port)))
                    break
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self.sock = context.wrap_socket(raw, server_hostname="server")
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read(self, n: int) -> bytearray:
        buffer, view, got = bytearray(n), None, 0
        view = memoryview(buffer)
        while got < n:
            read = self.sock.recv_into(view[got:])
            if not read:
                raise ConnectionError("peer closed")
            got += read
        return buffer

    def step(self, me: str, pattern, data: dict, step: int, compute: float) -> None:
        envelope_step(me, pattern, data, step, compute, send=self._send, receive=self._receive)

    def _send(self, envelope: bytes) -> None:
        self.sock.sendall(struct.pack("<Q", len(envelope)) + envelope)

    def _receive(self) -> bytes:
        (n,) = struct.unpack("<Q", self._read(8))
        return bytes(self._read(n))

    def close(self) -> None:
        self.sock.close()


PIPES = {"network": NetworkPipe, "pull": PullPipe, "tls-socket": SocketPipe}


def run_blocks(party: str, args, pipes: dict) -> dict:
    """Every round: each design, each pattern, one block of steps; the client returns its step times."""
    data, times, step = tensors(), {}, 0
    compute = args.compute / 1e3
    for r in range(args.rounds + 1):  # the first round warms up: not counted
        for pattern in args.patterns:
            for design in args.designs:
                for _ in range(args.steps):
                    start = time.perf_counter()
                    pipes[design].step(party, PATTERNS[pattern], data, step, compute)
                    if r:
                        times.setdefault(f"{pattern}/{design}", []).append(time.perf_counter() - start)
                    step += 1
    return times


def open_pipes(party: str, args, addresses: dict, certs: Path) -> dict:
    return {d: PIPES[d](party, addresses[d], certs) for d in args.designs}


def server_main(args) -> None:
    torch.set_num_threads(1)
    pipes = open_pipes("server", args, json.loads(args.addresses), Path(args.certs))
    run_blocks("server", args, pipes)
    for pipe in pipes.values():
        pipe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="steps per block")
    parser.add_argument("--rounds", type=int, default=6, help="blocks per design and pattern, after one to warm up")
    parser.add_argument("--compute", type=float, default=0.0, help="ms each side spins per step where it would compute")
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    parser.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=list(PATTERNS))
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--addresses", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--certs", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        server_main(args)
        return
    from secsplit.evaluation.commands.launch import free_port

    torch.set_num_threads(1)
    print(json.dumps({"load_average": [round(v, 2) for v in os.getloadavg()]}), flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        certs = Path(workdir)
        init_pki(certs, ["client", "server"], hosts=["127.0.0.1"])
        addresses = {d: {p: f"127.0.0.1:{free_port()}" for p in ("client", "server")} for d in args.designs}
        command = [sys.executable, __file__, "--server", "--addresses", json.dumps(addresses), "--certs", str(certs),
                   "--steps", str(args.steps), "--rounds", str(args.rounds), "--compute", str(args.compute),
                   "--designs", *args.designs, "--patterns", *args.patterns]
        server = subprocess.Popen(command)
        pipes = open_pipes("client", args, addresses, certs)
        times = run_blocks("client", args, pipes)
        for pipe in pipes.values():
            pipe.close()
        server.wait(60)
    for key, values in times.items():
        pattern, design = key.split("/")
        print(json.dumps({"pattern": pattern, "design": design, "compute_ms": args.compute, "steps": len(values),
                          "median_ms": round(statistics.median(values) * 1e3, 3),
                          "p90_ms": round(statistics.quantiles(values, n=10)[-1] * 1e3, 3)}), flush=True)
    print(json.dumps({"load_average": [round(v, 2) for v in os.getloadavg()]}), flush=True)


if __name__ == "__main__":
    main()

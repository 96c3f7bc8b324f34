"""Training step across processes (NetworkChannel, gRPC + mutual TLS on loopback) against in process.

LeNet on MNIST-shaped random batches of 64, Adam, one torch thread per process (``--threads``). The same topology
code runs in both: in process (every party here) and across processes (the first client here,
every other party in its own process started by this script with ``--party NAME``). Blocks of
steps alternate between the two within one run, so machine noise hits both alike; the ratio of
median step times is reported. SplitFed (4 client processes, a server and a fed-server) trains
whole rounds from the topology's epoch plan; its step time is a round's wall time over its steps,
the clients' weight hand-overs and the averaging included.

Per step: median wall time on each side, and CPU time (every process, all threads), which load
disturbs less than wall time. Every party process reports a SHA-256 of its final weights; the run
fails unless each equals the in-process run's (the transport must not change a bit). ``--rtt`` also measures the loopback
round trip of one exchange (an empty message and one of the activation's size, each acknowledged)
against a bare listener in another process: the floor that bounds the step's overhead.

``--trace`` adds, per chain topology (SplitFed's rounds are timed whole, not traced), when each
message is queued, taken by gRPC's writer thread, written, read and decoded, and when each backward
pass and optimizer step starts and ends, as medians since the start of the timing client's step
(CLOCK_MONOTONIC is one clock for every process on the host), with the in-process step's phases
beside them: where a step's time goes.

Run: ``python benchmarks/bench_transport.py [--topology vanilla ushape multihop splitfed] [--steps N]
[--rounds N] [--rtt] [--trace]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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
#: SplitFed clients, each its own process
FED_CLIENTS = 4


def topology(name: str, channel=None):
    model = create_model("lenet", input_shape=SHAPE, num_classes=CLASSES, seed=0)
    options = {"clients": FED_CLIENTS} if name.startswith("splitfed") else {}
    return build_topology(name, model, optimizer=OptimizerSpec(), channel=channel, **options)


def batches(n: int):
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(BATCH, *SHAPE, generator=g), torch.randint(0, CLASSES, (BATCH,), generator=g)) for _ in range(n)]


def network(party: str, addresses: dict, certs: str):
    from secsplit.channel.network import NetworkChannel

    return NetworkChannel(party=party, addresses=addresses, run_id="bench", certs=certs, timeout_s=120)


# -- --trace: where a step's time goes across processes ---------------------------------------------
#: (monotonic ns, party, event); CLOCK_MONOTONIC is one clock for every process on the host
EVENTS: list[tuple[int, str, str]] = []
#: the party this process traces for (the timing client's changes with the topology)
TRACE_PARTY = [""]
#: what is timed: (owner, function, event on entry, event on return); the compute phases too, so that
#: the same phase in process and across processes can be compared
TRACED = (("Outbox", "put", "queued", None), ("Outbox", "take", None, "taken by writer"),
          ("Outbox", "wrote", "written", None), ("Inbound", "read", None, "read"),
          ("NetworkChannel", "_accept", None, "decoded"), ("NetworkChannel", "_deliver", "send/receive", None),
          ("autograd", "backward", "backward start", "backward end"),
          ("Party", "step", "optimizer start", "optimizer end"))
#: the timing client's party name for the in-process blocks
IN_PROCESS = "in process"


def install_trace() -> None:
    """Record when each message is queued, taken by gRPC's writer, written, read and decoded, and when each
    backward pass and optimizer step starts and ends, in this process."""
    from secsplit.channel import grpc_link, network
    from secsplit.parties import Party

    classes = {"Outbox": grpc_link.Outbox, "Inbound": grpc_link.Inbound, "NetworkChannel": network.NetworkChannel,
               "autograd": torch.autograd, "Party": Party}
    for cls_name, method, before, after in TRACED:
        cls = classes[cls_name]
        original = getattr(cls, method)

        def timed(*a, _original=original, _before=before, _after=after, **k):
            if _before:
                EVENTS.append((time.monotonic_ns(), TRACE_PARTY[0], _before))
            out = _original(*a, **k)
            if _after:
                EVENTS.append((time.monotonic_ns(), TRACE_PARTY[0], _after))
            return out

        setattr(cls, method, timed)


def trace_table(events: list[tuple[int, str, str]], me: str) -> list[dict]:
    """Median time of each event since the start of ``me``'s step (the first 20 steps left out): the n-th
    occurrence of an event in a step is its own row. ``me`` = :data:`IN_PROCESS`: the in-process steps."""
    events = sorted(events)
    steps, current = [], None
    for event in events:
        if event[1] == me and event[2] == "step start":
            current = [event]
        elif current is not None:
            current.append(event)
            if event[1] == me and event[2] == "step end":
                steps.append(current)
                current = None
    rows: dict[str, list[float]] = {}
    for step in steps[20:]:
        start, seen = step[0][0], {}
        for t, party, name in step[1:]:
            key = (party, name)
            seen[key] = seen.get(key, 0) + 1
            rows.setdefault(f"{party}: {name} #{seen[key]}", []).append((t - start) / 1e3)
    counted = len(steps[20:])
    table = [{"event": k, "median_us": round(statistics.median(v)), "in_steps": len(v)}
             for k, v in rows.items() if len(v) >= 0.8 * counted]
    return sorted(table, key=lambda row: row["median_us"])


def block(topo, data, step: int, *, mask: bool) -> tuple[list[float], int]:
    """One block of training: every step's seconds (SplitFed: one round's seconds per step) and the next step number.

    A chain topology trains ``data`` batch by batch; SplitFed trains one epoch over ``data``'s
    samples as its plan orders them (each client one shard, then the weights averaged).
    ``mask``: this process holds no data (zeros of the same shape), as a party without inputs.
    """
    if topo.name.startswith("splitfed"):
        x, y = torch.cat([b[0] for b in data]), torch.cat([b[1] for b in data])
        if mask:
            x, y = torch.zeros_like(x), torch.zeros_like(y)
        plan = topo.epoch_plan(len(x), epoch=step, batch_size=BATCH, generator=torch.Generator().manual_seed(step))
        start, n = time.perf_counter(), 0
        for index in plan:
            topo.train_step(x[index], y[index], step=step + n)
            n += 1
        return [(time.perf_counter() - start) / n] * n, step + n
    times = []
    for x, y in data:
        if mask:
            x, y = torch.zeros_like(x), torch.zeros_like(y)
        start = time.perf_counter()
        if TRACE_PARTY[0]:
            EVENTS.append((time.monotonic_ns(), TRACE_PARTY[0], "step start"))
        topo.train_step(x, y, step=step)
        if TRACE_PARTY[0]:
            EVENTS.append((time.monotonic_ns(), TRACE_PARTY[0], "step end"))
        times.append(time.perf_counter() - start)
        step += 1
    return times, step


def digest(topo, party: str) -> str | None:
    """SHA-256 of the weights ``party`` holds (a SplitFed client: the one client segment), None if it holds none."""
    holder = topo.parties.get(party) or (getattr(topo, "_client_party", None) if party.startswith("client") else None)
    state = holder.segments.state_dict() if holder is not None and holder.segments is not None else {}
    if not state:
        return None
    h = hashlib.sha256()
    for name, tensor in state.items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def party_main(args) -> None:
    """A party other than the timing client: run every block of every round (only clients hold inputs)."""
    addresses = json.loads(args.addresses)
    channel = network(args.party, addresses, args.certs)
    topo = topology(args.topology, channel)
    channel.open()
    step, cpu = 0, 0.0
    for i in range(args.rounds + 1):
        start = time.process_time()
        _, step = block(topo, batches(args.steps), step, mask=not args.party.startswith("client"))
        cpu += time.process_time() - start if i else 0.0
    channel.close()
    print(json.dumps({"party": args.party, "weights": digest(topo, args.party), "cpu_s": cpu, "events": EVENTS}),
          flush=True)


def measure(name: str, args, workdir: Path) -> dict:
    from secsplit.evaluation.commands.launch import free_port

    local = topology(name)
    parties = local.party_names
    me = parties[0]  # the (first) data owner: "client", or "client0" with many clients
    EVENTS.clear()
    init_pki(workdir / name, list(parties), hosts=["127.0.0.1"])
    ports: set[int] = set()
    while len(ports) < len(parties):  # free_port can hand out the same free port twice in a row
        ports.add(free_port())
    addresses = {p: f"127.0.0.1:{port}" for p, port in zip(parties, sorted(ports))}
    others = {p: subprocess.Popen([sys.executable, __file__, "--party", p, "--topology", name, "--addresses",
                                   json.dumps(addresses), "--certs", str(workdir / name), "--steps", str(args.steps),
                                   "--rounds", str(args.rounds), "--threads", str(args.threads)]
                                  + (["--trace"] if args.trace else []),
                                  stdout=subprocess.PIPE, text=True)
              for p in parties if p != me}
    channel = network(me, addresses, str(workdir / name))
    remote = topology(name, channel)
    channel.open()
    local_times, remote_times, local_step, remote_step = [], [], 0, 0
    local_cpu = remote_cpu = 0.0  # CPU seconds (all threads of a process), less sensitive to load than wall time
    for i in range(args.rounds + 1):  # the first block of each side measures FLOPs and warms up: not counted
        start = time.process_time()
        TRACE_PARTY[0] = IN_PROCESS if args.trace else ""
        times, local_step = block(local, batches(args.steps), local_step, mask=False)
        TRACE_PARTY[0] = me if args.trace else ""
        local_times, local_cpu = (local_times + times, local_cpu + time.process_time() - start) if i else (local_times, 0.0)
        start = time.process_time()
        times, remote_step = block(remote, batches(args.steps), remote_step, mask=False)
        remote_times, remote_cpu = (remote_times + times, remote_cpu + time.process_time() - start) if i else (remote_times, 0.0)
    transport = channel.transport()
    channel.close()
    mismatched = [] if digest(remote, me) == digest(local, me) else [me]
    for party, process in others.items():
        out, _ = process.communicate(timeout=120)
        reported = json.loads(out.strip().splitlines()[-1])
        remote_cpu += reported["cpu_s"]
        if reported["weights"] != digest(local, party):
            mismatched.append(party)
        EVENTS.extend(tuple(e) for e in reported["events"])
    if mismatched:
        raise SystemExit(f"{name}: weights across processes differ from in process for {mismatched}")
    lt, rt = statistics.median(local_times), statistics.median(remote_times)
    steps = len(local_times)
    return {"topology": name, "processes": len(parties), "threads": args.threads, "in_process_ms": round(lt * 1e3, 2),
            "grpc_mtls_ms": round(rt * 1e3, 2), "ratio": round(rt / lt, 3),
            "overhead_ms": round((rt - lt) * 1e3, 2), "cpu_ms_in_process": round(local_cpu / steps * 1e3, 2),
            "cpu_ms_all_processes": round(remote_cpu / steps * 1e3, 2), "cpu_ratio": round(remote_cpu / local_cpu, 3),
            "weights_equal": True,
            "framing_bytes_per_message": round(transport["framing_sent"] / max(transport["messages_sent"], 1), 1),
            **({"trace": trace_table(EVENTS, me), "trace_in_process": trace_table(EVENTS, IN_PROCESS)}
               if args.trace else {})}


def rtt_listener(certs: str) -> None:
    """A bare listener that acknowledges every message (for ``--rtt``); prints its port."""
    from secsplit.channel.codec import WireMessage
    from secsplit.channel.grpc_link import Listener

    def ack(message, peer):
        return WireMessage(run_id=message.run_id, step=message.step, kind="control", src="server", dst=peer, tag="ack")

    listener = Listener(ack, listen="127.0.0.1:0", certs=certs).start()
    print(listener.port, flush=True)
    sys.stdin.read()
    listener.stop(0)


def measure_rtt(workdir: Path, *, n: int = 400) -> dict:
    """Median round trip of one acknowledged exchange, TLS on loopback, across processes."""
    from secsplit.channel.codec import WireMessage
    from secsplit.channel.grpc_link import Link

    certs = workdir / "rtt"
    init_pki(certs, ["server", "client"], hosts=["127.0.0.1"])
    server = subprocess.Popen([sys.executable, __file__, "--rtt-listener", str(certs)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    row = {"rtt": "loopback, mTLS, across processes"}
    try:
        with Link(f"127.0.0.1:{server.stdout.readline().strip()}", party="client", certs=certs) as link:
            activation = topology("vanilla").segments[0](batches(1)[0][0]).detach()
            for label, tensor in (("empty", None), (f"{activation.numel() * 4 // 1024} KB", activation)):
                message = WireMessage(run_id="bench", step=0, kind="control" if tensor is None else "activation",
                                      src="client", dst="server", tensor=tensor)
                times = []
                for i in range(n + 50):
                    start = time.perf_counter()
                    link.exchange(message)
                    if i >= 50:
                        times.append(time.perf_counter() - start)
                row[f"{label}_ms"] = round(statistics.median(times) * 1e3, 3)
    finally:
        server.stdin.close()
        server.wait(10)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", nargs="+", default=["vanilla", "ushape"])
    parser.add_argument("--steps", type=int, default=20, help="steps per block (SplitFed: per round of its 4 clients)")
    parser.add_argument("--rounds", type=int, default=3, help="blocks per side, alternating, after one to warm up")
    parser.add_argument("--rtt", action="store_true", help="also measure the loopback round trip (the floor)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of every process")
    parser.add_argument("--trace", action="store_true",
                        help="also give when each message is queued, written, read and decoded, and each backward "
                             "pass and optimizer step runs, within a step (medians)")
    parser.add_argument("--party", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--certs", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rtt-listener", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.trace:
        install_trace()
        TRACE_PARTY[0] = args.party or ""  # the timing client's name is set per topology in measure()
    if args.rtt_listener:
        rtt_listener(args.rtt_listener)
        return
    if args.party:
        args.topology = args.topology[0]
        party_main(args)
        return
    print(json.dumps({"load_average": [round(v, 2) for v in os.getloadavg()]}), flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        if args.rtt:
            print(json.dumps(measure_rtt(Path(workdir))), flush=True)
        for name in args.topology:
            print(json.dumps(measure(name, args, Path(workdir))), flush=True)
    print(json.dumps({"load_average": [round(v, 2) for v in os.getloadavg()]}), flush=True)


if __name__ == "__main__":
    main()

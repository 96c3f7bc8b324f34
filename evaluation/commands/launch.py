"""`secsplit launch run.toml`: every party of a run file as a local process on loopback, with fresh certificates.

A run file that trains across processes is an ordinary run file (docs/run-files.md) plus a
``[parties]`` table naming every party of its topology and the address its process listens on::

    data = "digits"
    topology = "multihop"
    epochs = 1

    [parties]
    client = "10.0.0.5:50051"
    hop1   = "10.0.0.6:50051"
    server = "10.0.0.7:50051"

On each host, ``secsplit serve --role PARTY --config run.toml --certs DIR`` runs that party (see
docs/transport.md). ``launch`` does the same for every party on this machine: it issues a fresh CA
and one certificate per party, gives every party a free loopback port, starts one process per
party, waits for all of them and prints each party's summary. Every process builds the same
topology from the same file and seed and runs only its own party's part of each step
(:class:`~secsplit.channel.network.NetworkChannel`); the in-process run of the same file gives the
same weights, accuracy and payload bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from secsplit.evaluation.commands.common import positive_float

PARTIES_KEY = "parties"
#: the largest seed every seeded component takes (the data split's random_state)
MAX_SEED = 2**32 - 1


def add_parser(sub) -> None:
    launch = sub.add_parser("launch", help="run every party of a run file as a local process (loopback, fresh mTLS)")
    launch.add_argument("config", type=Path, metavar="RUN.toml", help="run file with a [parties] table")
    launch.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                        help="a party waiting longer than S seconds for a message fails (default 60)")
    launch.add_argument("--keep-addresses", action="store_true",
                        help="listen on the run file's addresses instead of free loopback ports")
    launch.add_argument("--json", action="store_true", help="print one JSON object with every party's summary")
    launch.set_defaults(run=run)


# -- the shared run file ---------------------------------------------------------------------------
def read_party_file(path) -> tuple[object, dict[str, str]]:
    """The run description and the ``[parties]`` table (party -> "host:port") of a run file."""
    from secsplit.description import RunDescription, read_table_file
    from secsplit.errors import ConfigError

    raw = dict(read_table_file(path))
    parties = raw.pop(PARTIES_KEY, None)
    if parties is None:
        raise ConfigError(f"{path}: no [{PARTIES_KEY}] table (party name -> \"host:port\" for every party)")
    if not isinstance(parties, dict) or not parties:
        raise ConfigError(f"{path}: [{PARTIES_KEY}] must map each party name to \"host:port\"")
    for name, address in parties.items():
        host, sep, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"{path}: [{PARTIES_KEY}].{name} must be \"host:port\", got {address!r}")
    description = RunDescription.from_dict(raw, where=str(path))
    if isinstance(description.seed, bool) or not isinstance(description.seed, int) or not 0 <= description.seed <= MAX_SEED:
        raise ConfigError(f"{path}: seed must be an integer in 0..{MAX_SEED} (it seeds the data split), "
                          f"got {str(description.seed)[:40]}")
    return description, dict(parties)


def has_parties(path) -> bool:
    """Whether the run file at ``path`` names its parties (trains across processes)."""
    from secsplit.description import read_table_file

    return PARTIES_KEY in read_table_file(path)


def run_digest(description, parties) -> str:
    """What every party's messages carry: the same run (description and party names), or a refusal."""
    from secsplit.description import stable_hash

    return "run-" + stable_hash({"run": description.to_dict(), "parties": sorted(parties)})


def weights_digest(party) -> str:
    """SHA-256 over a party's state (names, dtypes, shapes, bytes): equal digests, equal weights."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in party.segments.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.reshape(-1)
        digest.update((flat.to(torch.uint8) if flat.dtype == torch.bool else flat.view(torch.uint8)).numpy().tobytes())
    return digest.hexdigest()


def _masked(dataset, *, inputs: bool, labels: bool):
    """The data set as one party holds it: inputs and labels it does not own are zeros (no memory)."""
    import torch

    def zeros(t):
        return torch.zeros((), dtype=t.dtype).expand(t.shape)

    changes = {}
    if not inputs:
        changes.update(x_train=zeros(dataset.x_train), x_test=zeros(dataset.x_test))
    if not labels:
        changes.update(y_train=zeros(dataset.y_train), y_test=zeros(dataset.y_test))
    return replace(dataset, **changes) if changes else dataset


def build_party(description, parties: dict[str, str], role: str, *, certs=None, insecure: bool = False,
                listen: str | None = None, timeout_s: float = 60.0, max_message_bytes: int | None = None,
                progress: bool = False):
    """The run as ``role`` holds it: the whole topology over a NetworkChannel hosting ``role`` only.

    Returns the built run; its data set keeps only what ``role`` owns (others' inputs and labels
    are zeros), so nothing the party does not hold can shape its results.
    """
    from secsplit.channel.network import NetworkChannel
    from secsplit.errors import ConfigError
    from secsplit.evaluation.build import build_run
    from secsplit.models import MODELS, create_model
    from secsplit.topologies import build_topology

    if role not in parties:
        raise ConfigError(f"--role {role!r} is not a party of the run; its parties: {', '.join(parties)}")
    channel_options = {"max_message_bytes": max_message_bytes} if max_message_bytes else {}
    holder = {}

    def remote(d, dataset, model_name, optimizer):
        options = dict(d.topology_options)
        if options.get("views") is not None:
            from secsplit.data import resolve_views

            options["views"] = resolve_views(dataset, options["views"])
        model_options = MODELS.check(model_name, d.model.options, partial=True)
        model = create_model(model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=d.seed,
                             **model_options)
        channel = NetworkChannel(party=role, addresses=parties, run_id=run_digest(d, parties), certs=certs,
                                 insecure=insecure, listen=listen, timeout_s=timeout_s, **channel_options)
        holder["channel"] = channel
        try:
            topology = build_topology(d.topology.name, model, cuts=list(d.cuts) if d.cuts else None,
                                      optimizer=optimizer, label_source=d.label_source, seed=d.seed,
                                      model_name=model_name, model_options=model_options, channel=channel, **options)
            names = set(topology.party_names)
            if names != set(parties):
                missing, extra = sorted(names - set(parties)), sorted(set(parties) - names)
                raise ConfigError(f"[{PARTIES_KEY}] must name exactly the parties of {d.topology.name}: "
                                  f"{', '.join(topology.party_names)}"
                                  + (f"; missing {', '.join(missing)}" if missing else "")
                                  + (f"; not a party: {', '.join(extra)}" if extra else ""))
        except BaseException:
            channel.close(error="its run file did not build")
            raise
        return topology

    if description.attacks and any(a != "none" for a in description.attacks):
        raise ConfigError("attacks run in process (secsplit attack / audit); a run across processes trains only")
    built = build_run(description, progress=progress, remote=remote, attach_attacks=False)
    topology = built.topology
    if topology.channel is not holder["channel"]:  # a defense that stands for a configuration rebuilt it
        holder["channel"].close(error="its run file did not build")
        raise ConfigError("a run across processes takes its topology from the run file, not from a defense")
    holds_inputs = role in topology.data_owners
    by_data_owner = topology.label_source == "data_owner"
    holds_labels = role in topology.data_owners if by_data_owner else role == topology.label_owner
    # the outcome (test accuracy) is known where the labels meet the logits: the data owner that runs
    # split inference, or the label owner that computes them when it holds the labels
    topology.holds_labels = role == (topology.data_owner if by_data_owner else topology.label_owner)
    built.dataset = _masked(built.dataset, inputs=holds_inputs, labels=holds_labels)
    return built


def run_party(description, parties, role: str, **options) -> dict:
    """Train as ``role`` (see :func:`build_party`); returns the party's JSON-ready summary.

    Says hello to every other party first (same run, or refused), and goodbye at the end, with the
    reason when this party fails, so the others stop at once rather than time out.
    """
    built = build_party(description, parties, role, **options)
    channel = built.topology.channel
    try:
        channel.open()
        report = built.fit()
        channel.flush()
    except BaseException as error:
        channel.close(error=f"{type(error).__name__}: {error}" if not str(error) else str(error))
        raise
    channel.close()
    return party_summary(built, role, report)


def party_summary(built, role: str, report) -> dict:
    """What one party knows of the run: its results, traffic (payload and framing), weights digest."""
    topology = built.topology
    history = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
               for row in report.history]
    for row in history:
        if row.get("train_loss") is None:
            row["train_accuracy"] = None
    traffic = topology.channel.traffic
    return {
        "party": role,
        "topology": topology.name,
        "test_accuracy": report.summary["test_accuracy"],
        "history": history,
        "bytes_sent": traffic.sent(role),
        "bytes_received": traffic.received(role),
        "traffic": traffic.summary(),
        "transport": topology.channel.transport(),
        "weights_sha256": weights_digest(topology.parties[role]) if role in topology.parties else None,
        "wall_time_s": report.summary["wall_time_s"],
        "run_key": built.description.key(),
    }


def print_party_summary(summary: dict) -> None:
    accuracy = summary["test_accuracy"]
    last = summary["history"][-1] if summary["history"] else {}
    loss = last.get("train_loss")
    transport = summary["transport"]
    print(f"{summary['party']:<10} {summary['topology']}: test accuracy "
          f"{'n/a' if accuracy is None else f'{accuracy:.4f}'}, train loss {'n/a' if loss is None else f'{loss:.4f}'}, "
          f"payload {summary['bytes_sent']:,} B sent / {summary['bytes_received']:,} B received, "
          f"framing {transport['framing_sent']:,} B, {summary['wall_time_s']:.1f} s")


# -- launching every party here ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(path, *, timeout_s: float = 60.0, keep_addresses: bool = False, workdir=None,
           extra_args=()) -> dict[str, dict]:
    """Start every party of the run file at ``path`` as a local process; return each party's summary.

    Raises:
        ConfigError: a bad run file; SecsplitError: a party failed (its one-line error).
    """
    from secsplit.channel.certs import init_pki
    from secsplit.errors import ConfigError, SecsplitError

    description, parties = read_party_file(path)
    own = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="secsplit-launch-"))
    certs = own / "certs"
    init_pki(certs, list(parties), hosts=["127.0.0.1", "localhost"])
    if not keep_addresses:
        parties = {name: f"127.0.0.1:{free_port()}" for name in parties}
    from secsplit.description import read_table_file

    raw = read_table_file(path)
    raw[PARTIES_KEY] = parties
    run_file = own / "run.json"
    run_file.write_text(json.dumps(raw, indent=2))
    processes = {}
    for name in parties:
        argv = [sys.executable, "-m", "secsplit.evaluation", "serve", "--role", name, "--config", str(run_file),
                "--certs", str(certs), "--timeout", f"{timeout_s:g}", "--json", *extra_args]
        with open(own / f"{name}.out", "w") as out, open(own / f"{name}.err", "w") as err:
            processes[name] = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    summaries, errors = {}, {}
    failed_at = None
    while any(p.poll() is None for p in processes.values()):
        if failed_at is None and any(p.poll() not in (None, 0) for p in processes.values()):
            failed_at = time.monotonic()  # the others hear its goodbye; those that do not are stopped
        if failed_at is not None and time.monotonic() - failed_at > 10:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
        time.sleep(0.1)
    for name, process in processes.items():
        out, err = ((own / f"{name}.{kind}").read_text(errors="replace") for kind in ("out", "err"))
        if process.returncode == 0:
            try:
                summaries[name] = json.loads(out.strip().splitlines()[-1])
                continue
            except (ValueError, IndexError):
                pass
        lines = [line for line in err.strip().splitlines() if line.startswith("secsplit serve: error:")]
        errors[name] = lines[-1].removeprefix("secsplit serve: error: ") if lines else \
            (err.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
    if errors:
        raise SecsplitError("; ".join(f"{name}: {why}" for name, why in errors.items()))
    if not summaries:
        raise ConfigError("no party ran")
    return summaries


def run(args: argparse.Namespace) -> int:
    summaries = launch(args.config, timeout_s=args.timeout, keep_addresses=args.keep_addresses)
    if args.json:
        print(json.dumps({"parties": summaries}, indent=2))
        return 0
    for summary in summaries.values():
        print_party_summary(summary)
    return 0

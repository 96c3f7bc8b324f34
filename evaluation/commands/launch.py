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
same weights, accuracy and payload bytes. With ``--checkpoint-dir DIR`` each party checkpoints its
own state in ``DIR/PARTY``; ``--resume`` restarts every party from the last checkpoint they all hold
(a single party restarted with ``serve --resume`` rejoins on its own: see
:mod:`secsplit.evaluation.party`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from secsplit.evaluation.commands.common import positive_float, positive_int
from secsplit.evaluation.party import PARTIES_KEY, print_party_summary

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
    resume = launch.add_argument_group("training checkpoints (resume after a crash)")
    resume.add_argument("--checkpoint-dir", type=Path, default=None, metavar="DIR",
                        help="each party saves its own state in DIR/PARTY every --checkpoint-every steps and at "
                             "epoch ends")
    resume.add_argument("--checkpoint-every", type=positive_int, default=50, metavar="STEPS", help="default 50")
    resume.add_argument("--resume", action="store_true",
                        help="every party continues from the last checkpoint all parties hold in DIR/PARTY")
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


# -- launching every party here ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(path, *, timeout_s: float = 60.0, keep_addresses: bool = False, workdir=None,
           extra_args=(), checkpoint_dir=None, checkpoint_every: int = 50, resume: bool = False) -> dict[str, dict]:
    """Start every party of the run file at ``path`` as a local process; return each party's summary.

    ``checkpoint_dir``: each party checkpoints its own state in ``checkpoint_dir/PARTY``; with
    ``resume`` every party continues from the last checkpoint they all hold.

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
    env = dict(os.environ)
    torch = sys.modules.get("torch")
    if torch is not None and "OMP_NUM_THREADS" not in env:
        # the launcher's intra-op threads: float reductions, and so the weights, as in this process
        env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    for name in parties:
        argv = [sys.executable, "-m", "secsplit.evaluation", "serve", "--role", name, "--config", str(run_file),
                "--certs", str(certs), "--timeout", f"{timeout_s:g}", "--json", *extra_args]
        if checkpoint_dir is not None:
            argv += ["--checkpoint-dir", str(Path(checkpoint_dir) / name), "--checkpoint-every", str(checkpoint_every)]
            argv += ["--resume"] if resume else []
        with open(own / f"{name}.out", "w") as out, open(own / f"{name}.err", "w") as err:
            processes[name] = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
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
    if args.resume and args.checkpoint_dir is None:
        from secsplit.errors import ConfigError

        raise ConfigError("--resume needs --checkpoint-dir DIR (where the parties saved their states)")
    summaries = launch(args.config, timeout_s=args.timeout, keep_addresses=args.keep_addresses,
                       checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every, resume=args.resume)
    if args.json:
        print(json.dumps({"parties": summaries}, indent=2))
        return 0
    for summary in summaries.values():
        print_party_summary(summary)
    return 0

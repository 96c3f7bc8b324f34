"""`secsplit serve`: run the server party across machines (training) or serve split inference."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from secsplit.evaluation.commands.common import positive_float, positive_int


def add_parser(sub) -> None:
    serve = sub.add_parser("serve", help="run the server party over gRPC with mutual TLS (training or inference)")
    serve.add_argument("--role", required=True, metavar="PARTY",
                       help="a party of the run file's [parties] table (client, server, hop1, ...: trains that party's "
                            "part across processes); inference: serve a checkpoint's server segments; server with a "
                            "run file without [parties]: the server side of `train --connect`")
    serve.add_argument("--listen", default=None, metavar="HOST:PORT",
                       help="address to listen on (port 0: any free port); default: the party's address in the run "
                            "file, else 127.0.0.1:50051")
    serve.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                       help="party: fail when a message expected from another party does not come within S seconds "
                            "(default 60)")
    serve.add_argument("--json", action="store_true", help="party: print the party's summary as one JSON line")
    add_tls_arguments(serve, party_default="server")
    serve.add_argument("--allow", action="append", dest="allow", metavar="NAME",
                       help="client party name accepted (certificate CN); repeat; default: client")
    serve.add_argument("--max-message-mb", type=positive_float, default=64.0, help="largest message accepted (default 64 MiB)")
    serve.add_argument("--max-batch", type=positive_int, default=4096, help="largest batch accepted per message")
    # training role
    serve.add_argument("--config", default=None, metavar="RUN.toml",
                       help="training: pin the model, topology, cuts and seed of this run file (the same file the "
                            "client trains with); the flags below override it")
    serve.add_argument("--model", default=None, help="training: accept only this model (default: what the client proposes)")
    serve.add_argument("--topology", default=None, choices=["vanilla", "ushape", "vertical"],
                       help="training: accept only this topology (vertical: k clients named client0.. one view each)")
    serve.add_argument("--wait", type=positive_float, default=30.0, metavar="S",
                       help="vertical: how long a client's message waits for the other clients' (default 30)")
    serve.add_argument("--cut", action="append", dest="cuts", metavar="NAME", help="training: accept only these cut points")
    serve.add_argument("--seed", type=int, default=None, help="training: accept only this model seed")
    serve.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                       help="training: save server state here when the client checkpoints, so runs can resume")
    serve.add_argument("--idle-timeout", type=positive_float, default=120.0, metavar="S",
                       help="training: abort a session whose client sends nothing for S seconds (default 120)")
    serve.add_argument("--once", action="store_true",
                       help="training: exit after one session ends (exit 1 if it was aborted)")
    # inference role
    serve.add_argument("--checkpoint", default=None, metavar="DIR", help="inference: checkpoint saved by `secsplit train --save`")
    serve.add_argument("--workers", type=positive_int, default=4, help="threads answering requests (default 4)")
    serve.add_argument("--queue", type=positive_int, default=64, help="requests allowed to wait beyond the workers (default 64)")
    serve.set_defaults(run=run)


def add_tls_arguments(parser, *, party_default: str) -> None:
    parser.add_argument("--certs", default=None, metavar="DIR", help="directory from `secsplit certs init` (mutual TLS)")
    parser.add_argument("--insecure", action="store_true", help="plaintext, no authentication: local tests only")
    parser.add_argument("--name", default=party_default, help=f"this party's name, as in its certificate (default {party_default})")


def add_connect_arguments(parser, *, what: str) -> None:
    """The client side's options for reaching a served party (train --connect, predict --connect)."""
    remote = parser.add_argument_group("across machines (see `secsplit serve`)")
    remote.add_argument("--connect", default=None, metavar="HOST:PORT", help=what)
    remote.add_argument("--certs", default=None, metavar="DIR", help="directory from `secsplit certs init` (mutual TLS)")
    remote.add_argument("--insecure", action="store_true", help="plaintext, no authentication: local tests only")
    remote.add_argument("--name", default="client", help="this party's name, as in its certificate (default client)")
    remote.add_argument("--server-name", default="server", help="the name the server's certificate must carry (default server)")
    remote.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                        help="fail when the server does not answer a message within S seconds (default 60)")
    remote.add_argument("--max-message-mb", type=positive_float, default=64.0, help="largest message (default 64 MiB)")


def connect_link(args):
    """A :class:`~secsplit.channel.grpc_link.Link` to ``args.connect`` with the TLS settings of ``args``."""
    from secsplit.channel.grpc_link import Link

    return Link(args.connect, party=args.name, peer=args.server_name, timeout_s=args.timeout,
                max_message_bytes=int(args.max_message_mb * 2**20), **tls_options(args))


def tls_options(args) -> dict:
    from secsplit.errors import ConfigError

    if args.insecure and args.certs:
        raise ConfigError("--insecure and --certs exclude each other")
    if not args.insecure and not args.certs:
        raise ConfigError("mutual TLS needs --certs DIR (create it with `secsplit certs init`); "
                          "--insecure runs plaintext for local tests")
    return {"certs": args.certs, "insecure": args.insecure}


def _pinned(args: argparse.Namespace) -> dict:
    """What the server accepts: the run file's model, topology, cuts and seed, flags overriding."""
    pinned = {"model": None, "topology": None, "seed": None, "cuts": None}
    if args.config:
        from secsplit.description import load_run_file

        description = load_run_file(args.config)
        pinned.update(model=description.model.name, topology=description.topology.name, seed=description.seed,
                      cuts=list(description.cuts) if description.cuts else None)
    for key, value in (("model", args.model), ("topology", args.topology), ("seed", args.seed),
                       ("cuts", list(args.cuts) if args.cuts else None)):
        if value is not None:
            pinned[key] = value
    return pinned


def run_as_party(args: argparse.Namespace) -> int:
    """One party of a run file with a [parties] table: train its part of every step (see `secsplit launch`)."""
    import json

    from secsplit.evaluation.commands.launch import print_party_summary, read_party_file, run_party

    description, parties = read_party_file(args.config)
    tls = tls_options(args)
    if args.insecure:
        logging.getLogger("secsplit.serve").warning("running PLAINTEXT without authentication (--insecure)")
    summary = run_party(description, parties, args.role, listen=args.listen, timeout_s=args.timeout,
                        max_message_bytes=int(args.max_message_mb * 2**20), **tls)
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print_party_summary(summary)
    return 0


def run(args: argparse.Namespace) -> int:
    from secsplit.channel.grpc_link import Listener
    from secsplit.errors import ConfigError

    if args.role != "inference" and args.config:
        from secsplit.evaluation.commands.launch import has_parties

        if has_parties(args.config):
            logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                                stream=sys.stderr)
            return run_as_party(args)
    if args.role not in ("server", "inference"):
        raise ConfigError(f"--role {args.role!r} needs --config RUN.toml with a [parties] table naming it "
                          f"(without one, --role is server or inference)")
    args.listen = args.listen or "127.0.0.1:50051"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    tls = tls_options(args)
    allowed, workers = args.allow or ["client"], args.workers
    if args.role == "inference":
        from secsplit.remote.serving import InferenceServer

        if not args.checkpoint:
            raise ConfigError("--role inference needs --checkpoint DIR (from `secsplit train --save DIR`)")
        handler = InferenceServer(args.checkpoint, max_batch=args.max_batch)
    else:
        from secsplit.remote import training_handler

        handler, allowed, needed = training_handler(_pinned(args), max_batch=args.max_batch, wait_s=args.wait,
                                                    checkpoint_dir=args.checkpoint_dir, allow=args.allow)
        workers = max(args.workers, needed)
    if args.insecure:
        logging.getLogger("secsplit.serve").warning("serving PLAINTEXT without authentication (--insecure)")
    listener = Listener(handler.handle, listen=args.listen, party=args.name, allowed_peers=allowed,
                        max_message_bytes=int(args.max_message_mb * 2**20), max_workers=workers,
                        max_queue=args.queue, **tls).start()
    host = args.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{listener.port} as {args.name} ({args.role})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    try:
        while not stop.wait(0.2):
            if args.role != "server":
                continue
            if handler.session_open and time.monotonic() - handler.last_activity > args.idle_timeout:
                handler.abort(f"no message from the client for {args.idle_timeout:g} s")
                if args.once:
                    code = 1
                    break
            if args.once and handler.finished.is_set():
                break
    except KeyboardInterrupt:
        pass
    listener.stop(grace=1.0)
    if code:
        print("secsplit serve: error: the session was aborted: the client went silent (see the log)", file=sys.stderr)
    return code

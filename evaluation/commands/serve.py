"""`secsplit serve`: run one party of a run across processes (``--role PARTY``) or serve split inference."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from secsplit.evaluation.commands.common import positive_float, positive_int


def add_parser(sub) -> None:
    serve = sub.add_parser("serve", help="run one party of a run file over gRPC with mutual TLS, or serve split inference")
    serve.add_argument("--role", required=True, metavar="PARTY",
                       help="a party of the run file's [parties] table (client, server, hop1, client0, ...: trains "
                            "that party's part of every step across processes); inference: serve a checkpoint's "
                            "server segments")
    serve.add_argument("--listen", default=None, metavar="HOST:PORT",
                       help="address to listen on (port 0: any free port); default: the party's address in the run "
                            "file, else 127.0.0.1:50051")
    serve.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                       help="party: fail when a message expected from another party does not come within S seconds "
                            "(default 60)")
    serve.add_argument("--json", action="store_true", help="party: print the party's summary as one JSON line")
    add_tls_arguments(serve, party_default="server")
    serve.add_argument("--max-message-mb", type=positive_float, default=64.0, help="largest message accepted (default 64 MiB)")
    # a party of a run across processes
    serve.add_argument("--config", default=None, metavar="RUN.toml",
                       help="party: the run file with a [parties] table, the same file on every party's host")
    serve.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                       help="party: save this party's own state here every --checkpoint-every steps and at epoch ends")
    serve.add_argument("--checkpoint-every", type=positive_int, default=50, metavar="STEPS",
                       help="party: steps between checkpoints (default 50)")
    serve.add_argument("--resume", action="store_true",
                       help="party: continue from the last checkpoint every party holds (a party restarted alone "
                            "rejoins the others, which go back to that checkpoint too; see docs/transport.md)")
    # inference role
    serve.add_argument("--checkpoint", default=None, metavar="DIR", help="inference: checkpoint saved by `secsplit train --save`")
    serve.add_argument("--allow", action="append", dest="allow", metavar="NAME",
                       help="inference: client party name accepted (certificate CN); repeat; default: client")
    serve.add_argument("--max-batch", type=positive_int, default=4096, help="inference: largest batch per request")
    serve.add_argument("--workers", type=positive_int, default=4, help="inference: threads answering requests (default 4)")
    serve.add_argument("--queue", type=positive_int, default=64,
                       help="inference: requests allowed to wait beyond the workers (default 64)")
    serve.set_defaults(run=run)


def add_tls_arguments(parser, *, party_default: str) -> None:
    parser.add_argument("--certs", default=None, metavar="DIR", help="directory from `secsplit certs init` (mutual TLS)")
    parser.add_argument("--insecure", action="store_true", help="plaintext, no authentication: local tests only")
    parser.add_argument("--name", default=party_default, help=f"this party's name, as in its certificate (default {party_default})")


def add_connect_arguments(parser, *, what: str) -> None:
    """The client side's options for reaching a served party (predict --connect)."""
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


def run_as_party(args: argparse.Namespace) -> int:
    """One party of a run file with a [parties] table: train its part of every step (see `secsplit launch`)."""
    import json

    from secsplit.evaluation.commands.launch import read_party_file
    from secsplit.evaluation.party import print_party_summary, run_party

    description, parties = read_party_file(args.config)
    tls = tls_options(args)
    if args.insecure:
        logging.getLogger("secsplit.serve").warning("running PLAINTEXT without authentication (--insecure)")
    summary = run_party(description, parties, args.role, listen=args.listen, timeout_s=args.timeout,
                        max_message_bytes=int(args.max_message_mb * 2**20), checkpoint_dir=args.checkpoint_dir,
                        checkpoint_every=args.checkpoint_every, resume=args.resume, **tls)
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print_party_summary(summary)
    return 0


def run(args: argparse.Namespace) -> int:
    from secsplit.channel.grpc_link import Listener
    from secsplit.errors import ConfigError

    if args.role == "inference" and (args.resume or args.checkpoint_dir):
        raise ConfigError("--resume and --checkpoint-dir are for training; --role inference serves --checkpoint DIR")
    if args.role != "inference":
        from secsplit.evaluation.commands.launch import has_parties

        if not args.config or not has_parties(args.config):
            raise ConfigError(f"--role {args.role!r} needs --config RUN.toml with a [parties] table naming every party "
                              f"and its address (docs/transport.md); --role inference serves a checkpoint")
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                            stream=sys.stderr)
        return run_as_party(args)
    args.listen = args.listen or "127.0.0.1:50051"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    tls = tls_options(args)
    from secsplit.remote.serving import InferenceServer

    if not args.checkpoint:
        raise ConfigError("--role inference needs --checkpoint DIR (from `secsplit train --save DIR`)")
    handler = InferenceServer(args.checkpoint, max_batch=args.max_batch)
    if args.insecure:
        logging.getLogger("secsplit.serve").warning("serving PLAINTEXT without authentication (--insecure)")
    listener = Listener(handler.handle, listen=args.listen, party=args.name, allowed_peers=args.allow or ["client"],
                        max_message_bytes=int(args.max_message_mb * 2**20), max_workers=args.workers,
                        max_queue=args.queue, **tls).start()
    host = args.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{listener.port} as {args.name} ({args.role})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    listener.stop(grace=1.0)
    return 0

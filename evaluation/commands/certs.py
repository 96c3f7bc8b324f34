"""`secsplit certs`: a small CA and per-party certificates for mutual TLS between parties."""

from __future__ import annotations

import argparse

from secsplit.evaluation.commands.common import positive_int


def add_parser(sub) -> None:
    certs = sub.add_parser("certs", help="create a CA and per-party certificates for mutual TLS")
    verbs = certs.add_subparsers(dest="verb", required=True, metavar="VERB")
    init = verbs.add_parser("init", help="a new CA plus one certificate per party")
    init.add_argument("--out", required=True, metavar="DIR", help="directory for ca.pem, ca.key, <party>.pem, <party>.key")
    init.add_argument("--party", action="append", dest="parties", metavar="NAME",
                      help="a party name (certificate CN/SAN); repeat; default: client and server")
    init.add_argument("--host", action="append", dest="hosts", default=[], metavar="NAME_OR_IP",
                      help="extra DNS name or IP address to put in every certificate")
    init.add_argument("--days", type=positive_int, default=365, help="validity in days (default 365)")
    init.add_argument("--force", action="store_true", help="overwrite an existing CA in DIR")
    init.set_defaults(run=run_init)
    issue = verbs.add_parser("issue", help="one more party certificate from an existing CA")
    issue.add_argument("--dir", required=True, metavar="DIR", help="directory holding ca.pem and ca.key")
    issue.add_argument("--party", required=True, metavar="NAME")
    issue.add_argument("--host", action="append", dest="hosts", default=[], metavar="NAME_OR_IP")
    issue.add_argument("--days", type=positive_int, default=365)
    issue.set_defaults(run=run_issue)


def run_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from secsplit.channel.certs import CA_CERT, init_pki
    from secsplit.errors import ConfigError

    if (Path(args.out) / CA_CERT).exists() and not args.force:
        raise ConfigError(f"{Path(args.out) / CA_CERT} exists; pass --force to replace the CA (old certificates stop working)")
    files = init_pki(args.out, args.parties or ["client", "server"], days=args.days, hosts=args.hosts)
    for path in files:
        print(path)
    print("give each party its own <party>.pem, <party>.key and ca.pem; keep ca.key with whoever issues certificates")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    from pathlib import Path

    from secsplit.channel.certs import issue

    issue(args.dir, args.party, days=args.days, hosts=args.hosts)
    print(Path(args.dir) / f"{args.party}.pem")
    print(Path(args.dir) / f"{args.party}.key")
    return 0

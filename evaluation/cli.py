"""The ``secsplit`` command line. Each subcommand is one module in ``secsplit.evaluation.commands``.

Every bad name or value ends in a one-line error naming the subcommand and exit code 2, never a
traceback. Building the parser imports no heavy library (torch, scikit-learn): subcommands import
what they need when they run, so ``secsplit list`` and ``--help`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from secsplit.errors import SecsplitError

#: Subcommand modules, in the order `secsplit --help` lists them.
COMMANDS = ["audit", "frontier", "attack", "report", "train", "predict", "efficiency", "serve", "launch", "certs", "list"]

#: Exit code of every usage error, unknown name or bad value (the others are listed in EXIT_CODES).
EXIT_BAD_INPUT = 2
EXIT_CODES = """\
exit codes:
  0  ok
  1  failure (training, an attack or an audit run failed)
  2  bad input (an unknown name, a bad value or file; one-line error)
  3  not applicable (the attack's threat model does not fit the configuration)"""


class OneLineErrorParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (plus where to look), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from secsplit import __version__

    parser = OneLineErrorParser(prog="secsplit", description="Privacy-focused split learning: train, attack, audit.",
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"secsplit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"secsplit.evaluation.commands.{name}").add_parser(sub)
    parser.set_defaults(subparsers=sub.choices)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an argument the subcommand does not know is that subcommand's error
    (``secsplit audit: error: unrecognized arguments``), not the top-level parser's."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        return args.run(args)
    except SecsplitError as error:
        print(f"secsplit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

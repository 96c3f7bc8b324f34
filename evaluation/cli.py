"""The ``secsplit`` command line. Each subcommand is one module in ``secsplit.evaluation.commands``.

Every bad name or value ends in a one-line error and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from secsplit.errors import SecsplitError

#: Subcommand modules, in the order `secsplit --help` lists them.
COMMANDS = ["audit", "frontier", "attack", "report", "train", "predict", "efficiency", "serve", "launch", "certs", "list"]


class OneLineErrorParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (plus where to look), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="secsplit", description="Privacy-focused split learning: train, attack, audit.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"secsplit.evaluation.commands.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SecsplitError as error:
        print(f"secsplit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`secsplit report results.jsonl`: regenerate tables, plots and the HTML report from results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from secsplit.evaluation.commands.common import fraction


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="regenerate tables, plots and report.html from an audit's results.jsonl")
    report.add_argument("results", type=Path, help="results.jsonl written by `secsplit audit`")
    report.add_argument("--out", type=Path, default=None, help="output folder (default: next to the results)")
    report.add_argument("--frontier", type=Path, default=None, metavar="FILE",
                        help="a `secsplit frontier` frontier.json: its searched settings join the findings "
                             "(default: frontier.json beside results.jsonl, if any)")
    report.add_argument("--utility-budget", type=fraction, default=None, metavar="FRACTION",
                        help="utility a defense may cost in the findings, as a fraction (default 0.05 = 5 points)")
    report.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from secsplit.evaluation.report import write_report

    out = args.out or args.results.parent
    config_file = args.results.parent / "audit-config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else None
    written = write_report(args.results, out, config_source=config, artifacts_dir=args.results.parent / "artifacts",
                           utility_budget=args.utility_budget, frontier=args.frontier)
    print(f"report: {written['html']}")
    print(f"tables: {written['markdown']}, {written['csv']}, {written['latex']}")
    return 0

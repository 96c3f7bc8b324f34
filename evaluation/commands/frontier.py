"""`secsplit frontier`: the least leakage each defense family reaches within a utility budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    frontier = sub.add_parser(
        "frontier", help="search each defense family's strength for the least leakage within a utility budget",
        description="For one configuration and its attacks, search each defense family's strength (bisection on "
                    "its knob) for the least leakage whose utility is within --budget of the undefended run; "
                    "write frontier.md/.csv/.json, runs.jsonl (resumable) and one Pareto plot per attack.",
        epilog=FRONTIER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    frontier.add_argument("--config", type=Path, required=True, help="frontier file (a run description + [frontier])")
    frontier.add_argument("--budget", type=float, default=None,
                          help="utility the defense may cost, as a fraction (0.01 = 1 accuracy point; default: the "
                               "file's [frontier].budget, else 0.01)")
    frontier.add_argument("--out", type=Path, default=Path("frontier-results"), help="output folder")
    frontier.add_argument("--threads", type=int, default=1,
                          help="torch threads (default 1: small models gain nothing from more, and idle OpenMP "
                               "workers spin on a shared machine)")
    frontier.add_argument("--quiet", action="store_true", help="no progress lines")
    frontier.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    frontier.set_defaults(run=run)


FRONTIER_HELP = """\
frontier file (TOML):
  data = "mnist"
  model = "lenet"
  cuts = ["pool1"]
  epochs = 5
  attacks = ["whitebox-inversion", "inverse-network"]

  [frontier]
  budget = 0.01            # 1 accuracy point
  trials = 6               # bisection steps per family (after its strongest setting)
  seeds = [0]              # each point is a mean over these seeds
  confirm_seeds = [1, 2]   # rerun the undefended run and each family's best point on these too
  confirm_attacks = ["whitebox-inversion", "inverse-network"]   # ...judged by these (e.g. full strength)
  families = ["nopeek", "noise", "mid", "attacker-aware"]

  [frontier.family.noise]  # optional: the knob's range and fixed options
  low = 0.01
  high = 10
  clip = 8"""


def run(args: argparse.Namespace) -> int:
    import torch

    from secsplit.description import read_table_file
    from secsplit.errors import ConfigError
    from secsplit.evaluation.commands.run_args import without_parties
    from secsplit.evaluation.frontier import build_frontier_config, run_frontier

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    raw = without_parties(read_table_file(args.config), str(args.config))
    config = build_frontier_config(raw, origin=str(args.config), budget=args.budget)
    summary = run_frontier(config, args.out, quiet=args.quiet or args.json)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items()}, indent=2, default=str))
        return 0
    print((args.out / "frontier.md").read_text())
    print(f"frontier: {args.out / 'frontier.md'}, {args.out / 'frontier.csv'}, plots {args.out}/pareto-*.png")
    return 0

"""`secsplit efficiency`: per-client FLOPs and bytes per epoch of split learning, FedAvg and
large-batch SGD (the cost model of Vepakomma et al. 2018 on measured FLOPs); with ``--paper``, the
paper's own table on VGG-16 and ResNet-50, each cell beside the paper's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from secsplit.evaluation.commands.common import positive_int

# the per-epoch table's settings; --paper fixes its own, so it refuses these
TABLE_OPTIONS = {"models": ["resnet", "vgg"], "clients": [100, 500], "samples": 50_000, "cut": None,
                 "local_epochs": 1, "per_client_batch": 10}


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _counts(text: str) -> list[int]:
    return [positive_int(part.strip()) for part in _names(text)]


def add_parser(sub) -> None:
    eff = sub.add_parser("efficiency", help="client FLOPs and bytes per epoch: split learning vs FedAvg vs large-batch SGD")
    eff.add_argument("--models", type=_names, help="comma-separated models (default resnet,vgg)")
    eff.add_argument("--clients", type=_counts, help="comma-separated client counts (default 100,500)")
    eff.add_argument("--samples", type=positive_int, help="training samples p (default 50000, CIFAR-10)")
    eff.add_argument("--cut", metavar="NAME", help="client cut point (default: each model's shallow cut)")
    eff.add_argument("--local-epochs", type=positive_int, help="FedAvg local epochs per round (default 1)")
    eff.add_argument("--per-client-batch", type=positive_int,
                     help="large-batch SGD: each client's share of a global batch (default 10)")
    eff.add_argument("--paper", action="store_true",
                     help="the paper's table on vgg16 (CIFAR-10) and resnet50 (CIFAR-100), beside the paper's cells, "
                          "with the settings its numbers imply")
    eff.add_argument("--assume", action="append", default=[], metavar="NAME=VALUE",
                     help="with --paper: change one assumption (e.g. fedavg_rounds=16); repeatable")
    eff.add_argument("--out", type=Path, default=Path("results/efficiency"), help="output folder (default results/efficiency)")
    eff.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    eff.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from secsplit.errors import ConfigError

    given = [name for name in TABLE_OPTIONS if getattr(args, name) is not None]
    if args.paper and given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigError(f"--paper fixes the models, clients, samples and settings; drop {flags}")
    if args.assume and not args.paper:
        raise ConfigError("--assume applies to --paper only")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {str(args.out)!r} exists and is not a directory")
    return _run_paper(args) if args.paper else _run_table(args)


def _run_table(args: argparse.Namespace) -> int:
    from secsplit.efficiency import SCALE_NOTE, efficiency_table, markdown_report, plot_efficiency, split_ratios

    options = {name: default if getattr(args, name) is None else getattr(args, name)
               for name, default in TABLE_OPTIONS.items()}
    rows = efficiency_table(options.pop("models"), options.pop("clients"), **options)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = markdown_report(rows)
    (args.out / "efficiency.md").write_text("# Per-client cost per epoch\n\n" + markdown)
    png = plot_efficiency(rows, args.out / "efficiency.png")
    files = {"markdown": str(args.out / "efficiency.md"), "plot": str(png)}
    if args.json:
        print(json.dumps({"rows": rows, "ratios": split_ratios(rows), "note": SCALE_NOTE, "files": files}, indent=2))
        return 0
    print(markdown)
    for r in split_ratios(rows):
        paper = r["paper_flops_split_over_fl"]
        print(f"split/FL client FLOPs  {r['model']:<8} K={r['clients']:<5} {r['flops_split_over_fedavg']:.4f}"
              + (f"   (paper, VGG: {paper:.4f})" if paper is not None else ""))
    print(f"\nwrote {files['markdown']}, {files['plot']}")
    return 0


def _run_paper(args: argparse.Namespace) -> int:
    from secsplit.efficiency_paper import paper_markdown, paper_report, parse_assumptions, plot_paper

    report = paper_report(parse_assumptions(args.assume))
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = paper_markdown(report)
    (args.out / "paper.md").write_text("# Vepakomma et al. 2018, tables 1-2, on the paper's architectures\n\n"
                                       + markdown)
    png = plot_paper(report, args.out / "paper.png")
    report["files"] = {"markdown": str(args.out / "paper.md"), "plot": str(png)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(markdown)
    print(f"wrote {report['files']['markdown']}, {report['files']['plot']}")
    return 0

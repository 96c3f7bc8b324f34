"""`secsplit efficiency`: per-client FLOPs and bytes per epoch of split learning, FedAvg and
large-batch SGD (the cost model of Vepakomma et al. 2018 on measured FLOPs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from secsplit.evaluation.commands.common import positive_int


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _counts(text: str) -> list[int]:
    return [positive_int(part.strip()) for part in _names(text)]


def add_parser(sub) -> None:
    eff = sub.add_parser("efficiency", help="client FLOPs and bytes per epoch: split learning vs FedAvg vs large-batch SGD")
    eff.add_argument("--models", type=_names, default=["resnet", "vgg"], help="comma-separated models (default resnet,vgg)")
    eff.add_argument("--clients", type=_counts, default=[100, 500], help="comma-separated client counts (default 100,500)")
    eff.add_argument("--samples", type=positive_int, default=50_000, help="training samples p (default 50000, CIFAR-10)")
    eff.add_argument("--cut", default=None, metavar="NAME", help="client cut point (default: each model's shallow cut)")
    eff.add_argument("--local-epochs", type=positive_int, default=1, help="FedAvg local epochs per round (default 1)")
    eff.add_argument("--per-client-batch", type=positive_int, default=10,
                     help="large-batch SGD: each client's share of a global batch (default 10)")
    eff.add_argument("--out", type=Path, default=Path("results/efficiency"), help="output folder (default results/efficiency)")
    eff.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    eff.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from secsplit.efficiency import SCALE_NOTE, efficiency_table, markdown_report, plot_efficiency, split_ratios
    from secsplit.errors import ConfigError

    rows = efficiency_table(args.models, args.clients, samples=args.samples, cut=args.cut,
                            local_epochs=args.local_epochs, per_client_batch=args.per_client_batch)
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {str(args.out)!r} exists and is not a directory")
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

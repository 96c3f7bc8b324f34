"""`secsplit audit`: run every configuration x defense x attack of an audit and write the report."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from secsplit.evaluation.commands.common import positive_int


def add_parser(sub) -> None:
    audit = sub.add_parser("audit", help="run a leakage audit (grid of configurations x defenses x attacks) and write the report")
    source = audit.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="audit TOML file")
    source.add_argument("--preset", default=None, help="built-in audit: quick (default) or full")
    audit.add_argument("--out", type=Path, default=Path("audit-results"), help="output folder (results.jsonl, tables, plots, report.html)")
    audit.add_argument("--jobs", type=positive_int, default=1, help="runs in parallel (local process pool)")
    audit.add_argument("--executor", choices=["process", "ray"], default="process", help="process pool (default) or a Ray cluster")
    audit.add_argument("--quiet", action="store_true", help="no progress bar")
    audit.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from secsplit.evaluation.audit_config import build_audit_config, load_audit_config
    from secsplit.evaluation.presets import preset
    from secsplit.evaluation.report import write_report
    from secsplit.evaluation.runner import run_audit

    if args.config:
        config = load_audit_config(args.config)
    else:
        name = args.preset or "quick"
        config = build_audit_config(preset(name), origin=f"preset {name}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audit-config.json").write_text(json.dumps(config.source, indent=2))
    results = args.out / "results.jsonl"
    start = time.perf_counter()
    counts = run_audit(config, results, jobs=args.jobs, executor=args.executor, quiet=args.quiet,
                       artifacts_dir=args.out / "artifacts")
    elapsed = time.perf_counter() - start
    written = write_report(results, args.out, config_source=config.source, artifacts_dir=args.out / "artifacts")
    print(f"audit {config.name}: {counts['runs']} training runs ({counts['skipped']} already done), "
          f"{counts['rows']} new rows, {counts['failed']} failed, {elapsed:.0f} s")
    print(f"results: {results}")
    print(f"report:  {written['html']}")
    print(f"tables:  {written['markdown']}, {written['csv']}, {written['latex']}")
    if not args.quiet:
        print()
        print(written["markdown"].read_text())
    return 0

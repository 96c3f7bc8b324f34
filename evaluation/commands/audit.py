"""`secsplit audit`: run every configuration x defense x attack of an audit and write the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from secsplit.evaluation.commands.common import fraction, positive_int


def add_parser(sub) -> None:
    audit = sub.add_parser(
        "audit", help="run a leakage audit (grid of configurations x defenses x attacks) and write the report",
        description="Run every configuration x defense x attack of an audit file (or a preset) and write "
                    "results.jsonl, tables, plots and report.html.",
        epilog=AUDIT_FILE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = audit.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path,
                        help="audit file (TOML or JSON; format below and in docs/run-files.md), or a run file "
                             "(the one train, launch or serve take): its worst-case audit")
    source.add_argument("--preset", default=None, help="built-in audit: quick (default), standard (trained models, 3 seeds, tuned attacks) or full")
    audit.add_argument("--out", type=Path, default=Path("audit-results"), help="output folder (results.jsonl, tables, plots, report.html)")
    audit.add_argument("--jobs", type=positive_int, default=1, help="runs in parallel (local process pool)")
    audit.add_argument("--executor", choices=["process", "ray"], default="process", help="process pool (default) or a Ray cluster")
    audit.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                       help="with --executor ray: join this running cluster (`ray start --head`; default $RAY_ADDRESS, "
                            "else a local Ray with --jobs CPUs)")
    audit.add_argument("--quiet", action="store_true", help="no progress bar")
    audit.add_argument("--tune", action="store_true",
                       help="tune every attack's own hyperparameters per row and report the strongest result "
                            "(worst case; trials score on held-back validation data, never the targets)")
    audit.add_argument("--print-config", nargs="?", const=True, default=None, metavar="FILE",
                       help="print the expanded grid (one run description per run) of FILE, --config or the preset, "
                            "and exit without training")
    audit.add_argument("--json", action="store_true",
                       help="print only a machine-readable summary on stdout: paths, row counts and the findings "
                            "(progress and anything else go to stderr)")
    audit.add_argument("--print-tables", action="store_true", help="also print the results tables (results.md)")
    audit.add_argument("--frontier", type=Path, default=None, metavar="FILE",
                       help="a `secsplit frontier` frontier.json: its searched settings join the findings "
                            "(default: frontier.json beside results.jsonl, if any)")
    audit.add_argument("--utility-budget", type=fraction, default=None, metavar="FRACTION",
                       help="utility a defense may cost in the findings, as a fraction (default 0.05 = 5 points)")
    audit.set_defaults(run=run)



AUDIT_FILE_HELP = """\
audit file (TOML; every key documented in docs/run-files.md):
  [audit]
  name = "mine"
  seeds = [0, 1, 2]                  # a grid over the seed
  epochs = 10                        # any run key here is a default for every experiment
  frontier = { budget = 0.01 }       # optional: search each defense family's strength after the grid

  [[experiment]]
  data = { source = "patients.csv", label = "outcome" }   # or a built-in name: data = "mnist"
  model = "mlp"
  topology = ["vanilla", { name = "splitfed", clients = [10, 100] }]
  cuts = { vanilla = ["relu1"] }     # per topology, one list, or a list of lists (a grid)
  defenses = ["none", "nopeek:alpha=0.5"]
  attacks = ["norm-attack", "cosine-attack"]

A list under a one-value key is a grid axis; a list-valued key (cuts, features, views, hidden) takes a
list of lists for a grid. attacks = "all" is every attack (each active one in a run of its own).
`secsplit audit --print-config FILE` shows the expanded grid.

a run file (no [audit] or [[experiment]]; [parties] set aside, every party simulated here) is audited
as written, and undefended beside it when it has defenses; unless it says otherwise: every attack
from every seat, tuned, trained to convergence; then each defense family is searched against each
seat's worst attack (a [frontier] table sets the search, frontier = false turns it off)."""


def tuned(config):
    """Every run of ``config`` with tuned attacks (rows are keyed apart from untuned ones)."""
    from dataclasses import replace

    from secsplit.evaluation.audit_config import RunSpec

    return replace(config, runs=[RunSpec(replace(spec.description, tune=True)) for spec in config.runs],
                   frontiers=[replace(f, base=replace(f.base, tune=True)) for f in config.frontiers])


def load_audit_file(path):
    """An audit file, or a run file (the one `train`, `launch` or `serve` take) as its worst-case audit."""
    from secsplit.description import read_table_file
    from secsplit.evaluation.audit_config import build_audit_config, is_run_file
    from secsplit.evaluation.commands.run_args import without_parties

    raw = read_table_file(path)
    if is_run_file(raw):
        raw = without_parties(raw, str(path))
    return build_audit_config(raw, origin=str(path))


def run(args: argparse.Namespace) -> int:
    from secsplit.evaluation.audit_config import build_audit_config, describe_grid
    from secsplit.evaluation.presets import preset
    from secsplit.evaluation.report import write_report
    from secsplit.evaluation.runner import run_audit

    path = args.print_config if isinstance(args.print_config, str) else args.config
    if path:
        config = load_audit_file(path)
    else:
        name = args.preset or "quick"
        config = build_audit_config(preset(name), origin=f"preset {name}")
    if args.tune:
        config = tuned(config)
    if args.print_config is not None:
        frontiers = [{"name": f.name, "budget": f.budget, "trials": f.trials, "seeds": list(f.seeds),
                      "confirm_seeds": list(f.confirm_seeds), "families": list(f.families)} for f in config.frontiers]
        search = config.defense_search
        if search is not None:  # what it searches depends on the attacks' results
            search = {"name": search.name, "against": "each target's worst attack on the undefended run",
                      **search.table}
        print(json.dumps({"name": config.name, "runs": describe_grid(config),
                          **({"frontiers": frontiers} if frontiers else {}),
                          **({"defense_search": search} if search else {})}, indent=2))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audit-config.json").write_text(json.dumps(config.source, indent=2))
    results = args.out / "results.jsonl"
    start = time.perf_counter()
    with _stdout_to_stderr() if args.json else contextlib.nullcontext():
        counts = run_audit(config, results, jobs=args.jobs, executor=args.executor, quiet=args.quiet,
                           ray_address=args.ray_address,
                           artifacts_dir=args.out / "artifacts")
        run_frontiers(config, args.out, results, quiet=args.quiet)
        if config.defense_search is not None:
            from secsplit.evaluation.findings import UTILITY_BUDGET
            from secsplit.evaluation.verdict import run_defense_search

            budget = UTILITY_BUDGET if args.utility_budget is None else args.utility_budget
            run_defense_search(config.defense_search, args.out, results, workers=args.jobs, utility_budget=budget,
                               quiet=args.quiet)
        elapsed = time.perf_counter() - start
        written = write_report(results, args.out, config_source=config.source, artifacts_dir=args.out / "artifacts",
                               utility_budget=args.utility_budget, frontier=args.frontier)
    if args.json:
        print(json.dumps(summary(config.name, counts, elapsed, results, written), indent=2))
        return 1 if counts["failed"] else 0
    print(f"audit {config.name}: {counts['runs']} training runs ({counts['skipped']} already done), "
          f"{counts['rows']} new rows, {counts['failed']} failed, {elapsed:.0f} s")
    phases = counts["worker_seconds"]
    print(f"time:    {phases['total']:.0f} s of worker time (--jobs {args.jobs}): training {phases['training']:.0f} s, "
          f"attacks {phases['attacks']:.0f} s, tuning {phases['tuning']:.0f} s")
    print(f"results: {results}")
    print(f"report:  {written['html']}")
    print(f"tables:  {written['markdown']}, {written['csv']}, {written['latex']}")
    if written["findings"]:
        worst = written["findings"][0]
        print(f"worst:   {worst['title']}: {worst['sentences'][0]}")
    if args.print_tables:
        print()
        print(written["markdown"].read_text())
    return 1 if counts["failed"] else 0


def run_frontiers(config, out: Path, results: Path, *, quiet: bool) -> None:
    """The frontier searches the audit file asks for, after its grid, under ``out/frontier/NAME``: the
    audit's rows and trained models stand for the settings they share (its undefended runs at least)."""
    from secsplit.evaluation.frontier import run_frontier

    for frontier in config.frontiers:
        if not quiet:
            print(f"frontier {frontier.name}: {', '.join(frontier.families)} within {frontier.budget * 100:g} "
                  f"point(s)", flush=True)
        run_frontier(frontier, out / "frontier" / frontier.name, quiet=quiet, reuse=(results,), cache_dir=out / "cache")


def summary(name: str, counts: dict, elapsed: float, results: Path, written: dict) -> dict:
    """What ``--json`` prints: this invocation's counts, the results file's rows by status, paths, findings."""
    paths = {key: str(value) for key, value in written.items() if isinstance(value, Path)}
    return {"audit": name, "wall_time_s": round(elapsed, 1), "training_runs": counts["runs"],
            "skipped_runs": counts["skipped"], "new_rows": counts["rows"], "failed_rows": counts["failed"],
            "worker_seconds": {k: round(v, 3) for k, v in counts["worker_seconds"].items()},
            "rows_by_status": written["counts"], "paths": {"results": str(results), **paths},
            "findings": written["findings"]}


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send everything written to stdout (this process's and its workers') to stderr meanwhile, so that
    ``--json`` output is the only thing on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)

"""The run flags shared by `train` and `attack`: they and ``--config run.toml`` fill one RunDescription.

A flag given on the command line overrides the same setting in the run file; a setting given
nowhere takes the description's default. ``--print-config`` prints the resulting description
(canonical TOML-ready JSON) and exits, so a user can save it as a run file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from secsplit.evaluation.commands.common import keyword_option, positive_float, positive_int


def add_run_arguments(parser: argparse.ArgumentParser, *, defaults: dict | None = None) -> None:
    """Add the run flags; ``defaults`` overrides description defaults for this command (e.g. epochs)."""
    parser.set_defaults(run_defaults=defaults or {})
    run = parser.add_argument_group("the run (flags override --config; see docs/run-files.md)")
    run.add_argument("--config", type=Path, default=None, metavar="RUN.toml",
                     help="run file (TOML or JSON) with the run description; flags override its settings")
    run.add_argument("--print-config", action="store_true",
                     help="print the run description these flags and --config give, and exit")
    run.add_argument("--data", "--dataset", dest="data", default=None, metavar="SOURCE",
                     help="a built-in data set (see `secsplit list`) or a file: .csv/.tsv (with --label), .npz, "
                          "MNIST idx, CIFAR-10 .bin (default mnist)")
    run.add_argument("--label", default=None, metavar="COLUMN", help="label column of a table file")
    run.add_argument("--id-column", dest="id_column", default=None, metavar="COLUMN",
                     help="sample-id column of a table file (aligns vertical parties; not a feature)")
    run.add_argument("--features", default=None, metavar="COLS",
                     help="feature columns of a table file, comma-separated names or ranges (age:bmi, 2:10)")
    run.add_argument("--data-option", action="append", dest="data_options", metavar="KEY=VALUE", type=keyword_option,
                     default=[], help="another option of the data source, repeatable (e.g. categorical=onehot)")
    run.add_argument("--model", default=None, help="model name (default: the data's default; see `secsplit list`)")
    run.add_argument("--model-option", action="append", dest="model_options", metavar="KEY=VALUE",
                     type=keyword_option, default=[], help="a model option, repeatable (e.g. width=2)")
    run.add_argument("--topology", default=None, help="vanilla, ushape, multihop, vertical, splitfed, ... (see `secsplit list`)")
    run.add_argument("--option", action="append", dest="options", metavar="KEY=VALUE", type=keyword_option, default=[],
                     help="a topology option, repeatable (e.g. clients=10, k=4, merge=sum, tasks=class,parity)")
    run.add_argument("--cut", action="append", dest="cuts", metavar="NAME",
                     help="a cut point; repeat for several (default: the model's suggestion)")
    run.add_argument("--label-source", default=None, choices=["data_owner", "label_owner"],
                     help="who holds the labels in vanilla/multi-hop: the data owner sends them (default) or the "
                          "server holds them")
    run.add_argument("--defense", action="append", dest="defenses", metavar="SPEC", default=None,
                     help="a defense as name:key=value,... e.g. nopeek:alpha=0.5 or "
                          "noise:mech=laplace,scale=0.5,clip=1; repeat to combine (see `secsplit list`)")
    run.add_argument("--epochs", type=positive_int, default=None)
    run.add_argument("--batch-size", type=positive_int, default=None)
    run.add_argument("--optimizer", default=None, help="sgd, adam (default) or adamw")
    run.add_argument("--lr", type=positive_float, default=None, help="learning rate of every party (default 1e-3)")
    run.add_argument("--seed", type=int, default=None, help="seeds the data split, partitions, models, defenses, attacks")
    run.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    run.add_argument("--early-stopping", type=positive_int, default=None, metavar="PATIENCE",
                     help="stop when validation accuracy (on held-out training samples) has not improved for PATIENCE epochs")


def description_from_args(args: argparse.Namespace, *, attacks: list[str] | None = None):
    """The RunDescription the run file and flags give together (flags win)."""
    from secsplit.description import RunDescription, normalize, read_table_file

    where = str(args.config) if args.config else "run"
    raw = normalize(without_parties(read_table_file(args.config), where), where=where) if args.config else {}
    for key, value in getattr(args, "run_defaults", {}).items():
        raw.setdefault(key, value)
    raw["data"] = _table(raw.get("data"), "source")
    if args.data is not None and args.data != raw["data"].get("source"):
        raw["data"] = {"source": args.data}  # another source: the file's options were for the other one
    for key, value in (("label", args.label), ("id", args.id_column), ("features", _columns(args.features))):
        if value is not None:
            raw["data"][key] = value
    raw["data"].update(dict(args.data_options))
    if not raw["data"]:
        raw.pop("data")
    raw["model"] = _override(raw.get("model"), args.model, dict(args.model_options))
    topology = _override(raw.get("topology"), args.topology, dict(args.options))
    if args.label_source is not None:
        topology = {**(topology or {}), "label_source": args.label_source}
    raw["topology"] = topology
    optimizer = _override(raw.get("optimizer"), args.optimizer, {})
    if args.lr is not None:
        optimizer = {**(optimizer or {}), "lr": args.lr}
    raw["optimizer"] = optimizer
    for key in ("cuts", "defenses", "epochs", "batch_size", "seed", "device"):
        value = getattr(args, key, None)
        if value is not None:
            raw[key] = value
    if args.early_stopping is not None:
        raw["early_stopping"] = {**_table(raw.get("early_stopping"), "patience"), "patience": args.early_stopping}
    if attacks is not None:
        raw["attacks"] = attacks
    probe = getattr(args, "probe_samples", None)
    if probe is not None:
        raw["probe_samples"] = probe
    return RunDescription.from_dict({k: v for k, v in raw.items() if v is not None}, where=where)


def without_parties(raw: dict, where: str) -> dict:
    """A deployment's run file without its ``[parties]`` table, said on stderr: this command runs every
    party in this process (the same run, weight for weight, as `secsplit launch` or `serve` give)."""
    from secsplit.evaluation.party import PARTIES_KEY

    if PARTIES_KEY not in raw:
        return raw
    print(f"secsplit: {where}: [{PARTIES_KEY}] set aside: every party runs in this process "
          f"(`secsplit launch` / `serve` run them apart)", file=sys.stderr)
    return {k: v for k, v in raw.items() if k != PARTIES_KEY}


def print_description(description) -> None:
    print(json.dumps(description.to_dict(), indent=2))


def _table(value, name_key: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return {name_key: value}


def _override(current, name: str | None, options: dict) -> dict | None:
    """A component table with ``name`` (when given: a new name drops the old name's options) and ``options``."""
    table = _table(current, "name")
    if name is not None and name != table.get("name"):
        table = {"name": name}
    table.update(options)
    return table or None


def _columns(text: str | None):
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]

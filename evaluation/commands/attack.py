"""`secsplit attack`: train one configuration with one attack watching, and print its threat model and metrics.

The run goes through the audit's own runner (:func:`secsplit.evaluation.runner.execute_run`), so a
configuration and an attack give the same metric names (mse, psnr, ssim, leak_auc, label_accuracy,
...) here, in audit results and in configs. Exit codes: 0 the attack ran; 2 a bad name or value
(one-line error, as every subcommand); 3 the attack does not apply to the configuration (the reason
is printed, nothing is trained); 1 the attack or the training failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from secsplit.evaluation.commands.common import keyword_option, positive_int
from secsplit.evaluation.commands.run_args import add_run_arguments, description_from_args, print_description

#: Exit code when the attack's threat model does not apply to the configuration.
NOT_APPLICABLE_EXIT = 3
#: Exit code when training or the attack failed.
FAILED_EXIT = 1


def add_parser(sub) -> None:
    attack = sub.add_parser("attack", help="train one configuration with an attack watching; print its threat model and metrics")
    attack.add_argument("name", metavar="ATTACK",
                        help="attack name, optionally with parameters as name:key=value,... (see `secsplit list`)")
    attack.add_argument("--param", action="append", dest="params", metavar="KEY=VALUE", type=keyword_option, default=[],
                        help="an attack parameter, repeatable (e.g. --param steps=500)")
    add_run_arguments(attack, defaults={"epochs": 1})
    attack.add_argument("--probe-samples", type=positive_int, default=None,
                        help="test samples for the distance-correlation probe of what the client releases (default 256)")
    attack.add_argument("--images", default=None, metavar="DIR",
                        help="save the originals-over-reconstructions grid of a reconstruction attack in DIR")
    attack.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    attack.set_defaults(run=run)


def attack_spec(name: str, params: list[tuple[str, object]]) -> str:
    """``name[:k=v,...]`` plus ``--param`` pairs as one spec string; the name and parameters are checked
    against the registry (an unknown name or parameter is a one-line error before anything trains)."""
    from secsplit.attacks import ATTACKS
    from secsplit.attacks.base import canonical_name
    from secsplit.errors import ConfigError
    from secsplit.specs import parse_spec

    base, given = parse_spec(name)
    base = canonical_name(base)  # the short names Python's attacks.get takes ("norm")
    for key, value in params:
        if key in given:
            raise ConfigError(f"attack parameter {key!r} given twice")
        given[key] = value
    ATTACKS.lookup(base)  # UnknownNameError lists the valid names
    unknown = sorted(set(given) - set(ATTACKS.parameters(base)))
    if unknown:
        raise ConfigError(f"bad parameters for attack {base!r}: {', '.join(unknown)}; "
                          f"valid parameters: {', '.join(ATTACKS.parameters(base)) or '(none)'}")
    if not given:
        return base
    return base + ":" + ",".join(f"{k}={v}" for k, v in given.items())


def check_configuration(description, spec: str) -> None:
    """Build the configuration as the runner does (without training) and ask the attack whether it applies.

    Raises NotApplicable with the reason, or a SecsplitError for a bad name or value.
    """
    from secsplit.attacks import NotApplicable
    from secsplit.evaluation.build import build_run

    built = build_run(description, all_seats=False)
    for (attack, _seat), reason in built.not_applicable.items():
        if attack == spec:
            raise NotApplicable(reason)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from secsplit.attacks import NotApplicable
    from secsplit.evaluation.audit_config import RunSpec
    from secsplit.evaluation.build import create_attack_from_spec
    from secsplit.evaluation.runner import display_training, execute_run

    spec = attack_spec(args.name, args.params)
    description = description_from_args(args, attacks=[spec])
    if args.print_config:
        print_description(description)
        return 0
    threat = create_attack_from_spec(spec, seed=description.seed).threat_model.describe()  # parameters may move the seat
    try:
        check_configuration(description, spec)
    except NotApplicable as reason:
        row = {"attack": spec, "threat_model": threat, "status": "not_applicable", "reason": str(reason),
               "training": display_training(description), "run": description.to_dict()}
        _emit(args, row)
        return NOT_APPLICABLE_EXIT
    images = Path(args.images) if args.images else None
    if images is not None:
        images.mkdir(parents=True, exist_ok=True)
    (row,) = execute_run(RunSpec(description), artifacts_dir=str(images) if images else None,  # no weight cache
                         all_seats=False)
    row = {"threat_model": threat, **row}
    if row.get("grid") and images is not None:
        row["grid"] = str(images / row["grid"])
    _emit(args, row)
    if row["status"] == "not_applicable":
        return NOT_APPLICABLE_EXIT
    return 0 if row["status"] == "ok" else FAILED_EXIT


def _emit(args: argparse.Namespace, row: dict) -> None:
    if args.json:
        print(json.dumps(row, indent=2, default=str))
        return
    t = row["training"]
    print(f"attack       {row['attack']}")
    print(f"threat model {row['threat_model']}")
    cuts = ", ".join(row.get("cuts") or t.get("cuts") or ["default"])
    print(f"on           {t['dataset']} / {t['model']} / {row.get('topology', t['topology'])} cut {cuts} / "
          f"defense {t['defense']} / {t['epochs']} epoch(s), seed {t['seed']}")
    if row["status"] == "not_applicable":
        print(f"not applicable: {row['reason']}", file=sys.stderr)
        return
    if row["status"] == "failed":
        print(f"failed: {row.get('error')}", file=sys.stderr)
        return
    if row.get("utility") is not None:
        print(f"utility      {row['utility_metric']} {row['utility']:.4f}")
    if row.get("stopped"):
        print(f"stopped      {row['stopped']}")
    if row.get("dcor") is not None:
        print(f"dcor(X, Z)   {row['dcor']:.4f} (n={row['dcor_n']})")
    print("metrics:")
    for key, value in row.get("leakage", {}).items():
        if isinstance(value, float):
            print(f"  {key:<26} {value:.4g}")
        elif isinstance(value, (int, str, bool)):
            print(f"  {key:<26} {value}")
    if row.get("grid"):
        print(f"images       {row['grid']}")

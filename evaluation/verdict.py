"""The defense search of a run file's audit: each leak's worst attack, then each defense family against it.

A run file's audit (:func:`secsplit.evaluation.audit_config.run_file_audit`) first runs every attack
from every seat. For each target (inputs, labels) and seat, the attack that leaked most on the undefended
run, at its tuned settings, is what a defense must stop: the frontier search
(:mod:`secsplit.evaluation.frontier`) then finds, per defense family, the strongest setting within
the utility budget and the leak it leaves. Searching against the worst attacks only keeps the
search's cost to one training and one or two attacks per point, whatever the number of attacks
audited; each family's best setting is then audited with every attack that leaked, tuned anew,
so the findings judge a defense by every attack, as they judge the run's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from secsplit.description import RunDescription

#: a leak (0 = chance, 1 = the attacker's perfect score) below this needs no defense search
MIN_LEAK = 0.1
#: the leakage metrics an attack reports (the dCor probe is not an attack)
ATTACK_METRICS = ("ssim", "leak_auc", "label_accuracy")


@dataclass
class DefenseSearch:
    """What a run file's audit searches after its attacks: the undefended run and the [frontier] keys."""

    undefended: RunDescription
    table: dict = field(default_factory=dict)
    name: str = "verdict"


@dataclass(frozen=True)
class WorstAttack:
    """What a defense must stop on one seat: the attack that leaked most there, as the search runs it."""

    target: str
    spec: str  # the attack at its tuned settings, seated where it leaked
    leak: float  # 0-1
    seat: str | None


def leaks_on(rows: list[dict], undefended: RunDescription):
    """(row, leak 0-1) for each attack row of the ``undefended`` run that leaked at least :data:`MIN_LEAK`."""
    from secsplit.evaluation.leaks import row_leaks

    key = undefended.key()
    for row in rows:
        if row.get("run_key") != key or row.get("status") != "ok" or row.get("attack") in (None, "none"):
            continue
        leaks = row_leaks(row)
        metric = next((m for m in ATTACK_METRICS if m in leaks), None)
        leak = None if metric is None else leaks[metric].normalized
        if leak is not None and leak >= MIN_LEAK:
            yield row, leak


def worst_attacks(rows: list[dict], undefended: RunDescription) -> dict[tuple, WorstAttack]:
    """(target, seat) -> the attack with the largest leak (0-1) on the ``undefended`` run from that seat,
    among the passive attacks that ran there (a defense may stop one seat and not another); leaks under
    :data:`MIN_LEAK` are left out."""
    from secsplit.evaluation.frontier import attack_target

    worst: dict[tuple, WorstAttack] = {}
    for row, leak in leaks_on(rows, undefended):
        target = attack_target(row["attack"])
        slot = (target, row.get("seat"))
        if slot not in worst or leak > worst[slot].leak:
            worst[slot] = WorstAttack(target, _pinned_spec(row), leak, row.get("seat"))
    return worst


def _pinned_spec(row: dict) -> str:
    """The row's attack with its tuned settings and its seat written into the spec."""
    from secsplit.evaluation.build import create_attack_from_spec
    from secsplit.evaluation.tuning import spec_with
    from secsplit.specs import parse_spec

    spec = row["attack"]
    params = dict((row.get("tuning") or {}).get("best_params") or {})
    option = create_attack_from_spec(spec).seat_option
    if option and row.get("seat") and option not in parse_spec(spec)[1]:
        params[option] = row["seat"]
    return spec_with(spec, **params) if params else spec


def run_defense_search(search: DefenseSearch, out, results, *, workers: int = 1, utility_budget: float,
                       quiet: bool = False) -> dict | None:
    """Search each defense family against the worst attacks in ``results``, then confirm each family's
    best setting with every attack that leaked; None when nothing leaked.

    The search's utility budget is the findings' (``[frontier].budget`` overrides it), so the search
    and the verdict weigh defenses alike. The search judges its points by the worst attacks only (at
    settings tuned on the undefended model), which a defense can stop while another attack still
    leaks; so each family's best setting is then audited like the run itself, with every attack that
    leaked undefended, tuned anew against the defended model. Those rows join the results, and the
    findings weigh only them (the search's own points are marked ``confirmed_in_audit``).
    """
    import json
    from pathlib import Path

    from secsplit.evaluation.frontier import frontier_config, run_frontier
    from secsplit.evaluation.results import load_rows

    rows = load_rows(results)
    worst = worst_attacks(rows, search.undefended)
    if not worst:
        if not quiet:
            print(f"defense search: no attack leaked more than {MIN_LEAK:g} of the way from chance; nothing to stop")
        return None
    specs = tuple(w.spec for w in worst.values())
    table = {"budget": utility_budget, "workers": workers, **search.table, "name": search.name}
    base = replace(search.undefended, attacks=specs, tune=False)
    config = frontier_config(base, table, origin=f"{search.name}.frontier")
    if not quiet:
        for w in worst.values():
            print(f"defense search against the worst {w.target} leak from the {w.seat} seat: {w.spec} ({w.leak:.2f}); "
                  f"families {', '.join(config.families)}, budget {config.budget * 100:g} points")
    folder = Path(out) / "frontier" / search.name
    summary = run_frontier(config, folder, quiet=quiet, reuse=(results,), cache_dir=Path(out) / "cache")
    settings = sorted({row["setting"] for row in summary["rows"] if row.get("within_budget")})
    if settings:
        if not quiet:
            print(f"defense search: confirming {', '.join(settings)} with every attack that leaked")
        confirm_settings(search, settings, leaking_attacks(rows, search.undefended), out, results, jobs=workers,
                         quiet=quiet)
        summary["confirmed_in_audit"] = settings
        (folder / "frontier.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def leaking_attacks(rows: list[dict], undefended: RunDescription) -> tuple[str, ...]:
    """The attack specs (as audited: a tuned audit's watching variants under their own attack) whose rows
    on the ``undefended`` run leaked at least :data:`MIN_LEAK`."""
    leaked = {(row.get("tuning") or {}).get("variant_of") or row["attack"] for row, _ in leaks_on(rows, undefended)}
    return tuple(a for a in dict.fromkeys(undefended.attacks) if a in leaked)


def confirm_settings(search: DefenseSearch, settings, attacks, out, results, *, jobs: int, quiet: bool) -> dict:
    """Audit the undefended run under each defense setting with ``attacks`` (rows appended to ``results``)."""
    from pathlib import Path

    from secsplit.evaluation.audit_config import AuditConfig, RunSpec
    from secsplit.evaluation.runner import run_audit

    runs = [RunSpec(replace(search.undefended, defenses=(setting,), attacks=attacks)) for setting in settings]
    config = AuditConfig(name=f"{search.name}-confirm", runs=runs)
    return run_audit(config, results, jobs=jobs, quiet=quiet, artifacts_dir=Path(out) / "artifacts")

"""Findings: per configuration, the worst leak, the best defense within a utility budget, and its cost.

This is what a report's reader needs before any table: which configuration leaks most, to whom, how
far above chance, and what stops it at what price. Everything is read off the table records
(:func:`secsplit.evaluation.tables.table_records`), so a finding never says more than the rows do.

Worst case by design: a configuration's leak is the largest normalized leak over every attack and
seat that ran against it, and a defense is judged by the largest leak it leaves over all of them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from secsplit.evaluation.leaks import FULL_LEAK, METRIC_NAMES, leak_vs_full
from secsplit.evaluation.tables import CONFIG_FIELDS, configuration_title, fmt, record_configuration

#: the default utility budget: a defense may cost at most this much utility (absolute, e.g. 0.05 = 5 points)
UTILITY_BUDGET = 0.05
#: a defense that lowers the worst leak by less than this has not really stopped anything
MEANINGFUL_DROP = 0.05
KNOWS_WORDS = {"client-architecture": "knows the client segment's architecture",
               "client-weights": "knows the client segment's weights", "query-access": "can query the client segment",
               "auxiliary-data": "holds unlabeled data like the client's", "few-labels": "knows a few true labels"}
TARGET_VERBS = {"inputs": "reconstructs the inputs", "labels": "infers the labels"}


@dataclass
class Finding:
    """Three sentences about one configuration, and the numbers behind them (for ``--json``)."""

    configuration: dict
    leak: float
    worst: str
    defense: str
    cost: str
    data: dict = field(default_factory=dict)
    caution: str = ""
    exposure: str = ""  # what the protocol itself hands over (labels sent in the clear), beside the attacks

    @property
    def title(self) -> str:
        return configuration_title(record_configuration(self.configuration))

    def to_dict(self) -> dict:
        return {"configuration": self.configuration, "title": self.title, "leak": self.leak,
                "sentences": [s for s in (self.worst, self.exposure, self.defense, self.cost, self.caution) if s],
                **self.data}


@dataclass(frozen=True)
class DefensePoint:
    """One defense (or "none") on one configuration, judged by the worst leak it leaves."""

    defense: str
    leak: float    # the largest normalized leak over every attack and seat
    group: tuple   # (attack, seat) behind that leak
    record: dict   # its table record (utility, chance, costs)


def defense_points(records_by_group: dict) -> dict[tuple, dict[str, DefensePoint]]:
    """configuration -> defense -> its worst-case point. The dCor probe stands in only where no attack ran."""
    items: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for group, records in records_by_group.items():
        for record in records:
            if record.get("leak") is not None:
                items[record_configuration(record)][record["defense"]].append((group, record))
    points: dict[tuple, dict[str, DefensePoint]] = {}
    for config, by_defense in items.items():
        points[config] = {}
        for defense, pairs in by_defense.items():
            attacked = [(g, r) for g, r in pairs if g[0] != "none"] or pairs
            group, record = max(attacked, key=lambda pair: pair[1]["leak"])
            points[config][defense] = DefensePoint(defense, record["leak"], group, record)
    return points


def findings(records_by_group: dict, *, utility_budget: float = UTILITY_BUDGET, frontier=None) -> list[Finding]:
    """One finding per configuration measured undefended, worst leak first.

    ``frontier``: a ``secsplit frontier`` summary (its frontier.json) or a list of them (an audit's own
    frontier searches); the defense settings each searched join the audit's own candidates for the
    configuration it ran on.
    """
    points = defense_points(records_by_group)
    summaries = frontier if isinstance(frontier, list) else [frontier] if frontier else []
    for summary in summaries:
        if "confirmed_in_audit" in summary:  # its settings were audited with every attack: their rows stand for them
            continue
        for config in points:
            if _frontier_matches(summary.get("configuration", ""), config):
                found = frontier_points(summary, points[config].get("none"))
                points[config].update({p.defense: p for p in found if p.defense not in points[config]})
    out = [_finding(config, by_defense, utility_budget) for config, by_defense in points.items() if "none" in by_defense]
    return sorted(out, key=lambda f: -f.leak)


def frontier_points(summary: dict, undefended: DefensePoint | None) -> list[DefensePoint]:
    """Each defense setting a frontier search trained, judged like the audit's: its worst normalized leak
    over the frontier's attacks (each against that attack's chance level)."""
    chance = {row["attack"]: row.get("chance") for row in summary.get("rows", [])}
    base = dict(undefended.record) if undefended else {}
    out = []
    for point in summary.get("points", []):
        leaks = [(attack, leak_vs_full(v["mean"], chance=chance[attack], full=FULL_LEAK.get(v.get("metric"), 1.0)))
                 for attack, v in (point.get("leakage") or {}).items() if chance.get(attack) is not None]
        if point.get("family") == "none" or point.get("utility") is None or not leaks:
            continue
        attack, leak = max(leaks, key=lambda item: item[1])
        record = {**{k: base.get(k) for k in ("utility_chance", "test_size")}, "utility": point["utility"],
                  "source": "frontier", "searched_attacks": sorted(attack for attack, _ in leaks)}
        out.append(DefensePoint(point["defense"], leak, (attack, None), record))
    return out


def _frontier_matches(label: str, config: tuple) -> bool:
    """Whether a frontier's configuration label ("mnist lenet vanilla pool1", "default ..." for unset
    parts) names this configuration."""
    parts = label.replace("default model", "*").replace("default cut", "*").split()
    if len(parts) != 4:
        return False
    dataset, model, topology, cuts = config
    wanted = (dataset, model, topology.partition(":")[0], ",".join(cuts.split()))
    return all(p in ("*", w) for p, w in zip(parts, wanted))


def _finding(config: tuple, points: dict[str, DefensePoint], budget: float) -> Finding:
    worst = points["none"]
    defended = [p for d, p in points.items() if d != "none"]
    reference, chance = worst.record.get("utility"), worst.record.get("utility_chance")
    defense_text, best, within = _best_defense(defended, worst, budget)
    cost_text = _cost_sentence(best.record, worst.record) if best else ""
    data = {"worst_leak": _leak_data(worst), "utility_budget": budget, "utility": reference, "utility_chance": chance,
            "best_defense": _defense_data(best, within) if best else None}
    caution = _chance_caution(worst.record)
    return Finding(dict(zip(CONFIG_FIELDS, config)), worst.leak, _worst_sentence(worst), defense_text, cost_text, data,
                   caution, _exposure_sentence(worst.record))


def _exposure_sentence(record: dict) -> str:
    """The labels this configuration's protocol sends another party: a full label leak no attack measures."""
    routes = record.get("labels_sent") or []
    if not routes:
        return ""
    return (f"Labels: every training label is sent in the clear ({', '.join(routes)}), so that party holds them "
            f"all without attacking; U-shape, or the labels held by the party computing the loss "
            f"(label_source = \"label_owner\"), keeps them from it.")


def _chance_caution(record: dict) -> str:
    """A warning when the undefended model's utility cannot be told from chance on this test set."""
    from secsplit.evaluation.metrics import chance_margin

    utility, chance, n = record.get("utility"), record.get("utility_chance"), record.get("test_size")
    if None in (utility, chance, n) or utility > chance + chance_margin(chance, int(n)):
        return ""
    return (f"Caution: even undefended, utility {fmt(utility)} is within two standard errors of chance ({fmt(chance)} "
            f"on {int(n)} test samples), so utility costs here are not measurable; use a larger or balanced test set.")


def _worst_sentence(point: DefensePoint) -> str:
    (attack, seat), record = point.group, point.record
    metric = record["metric"]
    level = f"{METRIC_NAMES[metric]} {fmt(record[metric])} against a chance level of {fmt(record.get(f'{metric}_chance'))}"
    if attack == "none":
        return (f"No attack measured this configuration; what the client releases depends on its inputs with "
                f"{level} (normalized leak {point.leak:.2f} on a 0-1 scale).")
    return (f"Worst leak: {attack} from the {seat or 'attacker'} seat ({threat_words(attack, seat)}) {_verb(attack)} "
            f"at {level} (normalized leak {point.leak:.2f} on a 0-1 scale, 0 = chance).")


def _best_defense(defended: list[DefensePoint], worst: DefensePoint, budget: float):
    """(sentence, the chosen defense point or None, whether it is within the budget)."""
    if not defended:
        return "No defense was tried on this configuration.", None, False
    reference = worst.record.get("utility")
    floor = None if reference is None else reference - budget
    within = [p for p in defended if floor is None or (p.record.get("utility") or 0.0) >= floor]
    words = f"a utility budget of {budget * 100:.0f} points" + ("" if floor is None else f" (utility at least {floor:.3f})")
    best = min(within or defended, key=lambda p: (p.leak, -(p.record.get("utility") or 0.0)))
    change = f"{worst.leak:.2f} to {best.leak:.2f}"
    if not within:
        return (f"No defense tried stays within {words}; the least leaky, {best.defense}, takes the worst leak "
                f"from {change}.", best, False)
    if worst.leak - best.leak < MEANINGFUL_DROP:
        helping = [p for p in defended if worst.leak - p.leak >= MEANINGFUL_DROP and p.record.get("utility") is not None]
        beyond = ""
        if helping and reference is not None:  # the cheapest defense that does help, whatever it costs
            cheapest = max(helping, key=lambda p: (p.record["utility"], -p.leak))
            beyond = (f"; outside the budget, the cheapest that does, {cheapest.defense}, takes it to "
                      f"{cheapest.leak:.2f} at a cost of {(reference - cheapest.record['utility']) * 100:.1f} points of utility")
        return (f"No defense tried within {words} lowers the worst leak meaningfully ({len(within)} tried; the least "
                f"leaky, {best.defense}, leaves {best.leak:.2f}){beyond}.", best, True)
    if best.record.get("source") == "frontier":  # judged by the attacks it was searched against, not every one
        attacks = ", ".join(best.record.get("searched_attacks") or ["its search's attacks"])
        return (f"Best defense within {words}: {best.defense} (found by the frontier search), which takes the worst "
                f"leak of the attacks it was searched against ({attacks}) from {change}; the audit's other attacks "
                f"were not rerun on it.", best, True)
    return (f"Best defense within {words}: {best.defense}, which takes the worst leak over every attack "
            f"and seat from {change}.", best, True)


def _cost_sentence(record: dict, undefended: dict) -> str:
    reference, chance = undefended.get("utility"), undefended.get("utility_chance")
    parts = []
    if record.get("utility") is not None and reference is not None:
        drop = (reference - record["utility"]) * 100
        verb = f"costs {drop:.1f} points of utility" if drop > 0.05 else "costs no utility"
        parts.append(f"{verb} ({fmt(record['utility'])} vs {fmt(reference)} undefended; chance {fmt(chance)})")
    if record.get("source") == "frontier":
        parts.append("the frontier search records no epsilon, traffic or time for it")
    elif record.get("epsilon") is not None:
        parts.append(f"states epsilon {fmt(record['epsilon'])} over training")
    else:
        parts.append("gives no formal (epsilon) guarantee")
    for key, unit, what in (("traffic_mb", " MB", "traffic"), ("train_s", " s", "training time")):
        if record.get(key) and undefended.get(key):
            parts.append(f"{what} x{record[key] / undefended[key]:.2f} ({record[key]:.1f}{unit})")
    return "It " + ", ".join(parts) + "."


def _leak_data(point: DefensePoint) -> dict:
    (attack, seat), record = point.group, point.record
    metric = record["metric"]
    return {"attack": attack, "seat": seat, "metric": metric, "value": record[metric],
            "chance": record.get(f"{metric}_chance"), "normalized": point.leak,
            "threat_model": threat_words(attack, seat) if attack != "none" else None}


def _defense_data(point: DefensePoint, within_budget: bool) -> dict:
    return {"defense": point.defense, "worst_leak": point.leak, "within_budget": within_budget,
            "attack": point.group[0], "seat": point.group[1],
            **{k: point.record.get(k) for k in ("utility", "epsilon", "traffic_mb", "train_s")}}


def _verb(attack: str) -> str:
    model = _threat_model(attack)
    return TARGET_VERBS.get(model.target, "attacks") if model else "attacks"


def threat_words(attack: str, seat: str | None) -> str:
    """The attack's threat model in words, seated where it ran: "an honest-but-curious server that knows ..."."""
    model = _threat_model(attack)
    if model is None:
        return f"attacker at the {seat} seat" if seat else "threat model unknown"
    implied = {"client-architecture"} if "client-weights" in model.knows else set()  # weights include the layers
    knows = [KNOWS_WORDS.get(k, f"knows {k}") for k in model.knows if k not in implied] or ["sees only what it receives"]
    listed = knows[0] if len(knows) == 1 else ", ".join(knows[:-1]) + " and " + knows[-1]
    return f"an {model.behaviour} {seat or model.attacker} that {listed}"


def _threat_model(attack: str):
    from secsplit.attacks import ATTACKS
    from secsplit.specs import parse_spec

    name = parse_spec(attack)[0]
    return ATTACKS.lookup(name).threat_model if name in ATTACKS else None

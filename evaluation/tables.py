"""Privacy-utility tables from audit rows, grouped by attack and seat: Markdown, CSV and LaTeX.

One record per configuration x defense (seeds averaged). Every leakage number stands beside its
chance level (:mod:`secsplit.evaluation.leaks`), the headline metric also as a normalized leak
(0 = chance, 1 = full), and each defended record gets the DCS trade-off score
(:func:`secsplit.evaluation.metrics.dcs_score`) against the same configuration's undefended model.
Rows that did not produce a result (not applicable, failed) are listed apart, one line per reason.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from dataclasses import dataclass

from secsplit.evaluation.leaks import METRIC_NAMES, PRIMARY, data_facts, primary_leak, row_leaks
from secsplit.evaluation.results import latest_rows

#: statuses listed apart from the tables, one line per distinct reason
SET_APART = ("not_applicable", "failed")
#: fields that identify a record's configuration (a finding is made per configuration)
CONFIG_FIELDS = ("dataset", "model", "topology", "cuts")


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "num"  # "num" (sorts by value) or "text"
    digits: int = 3    # decimals shown (values under 0.001 or from 1000 up in 3 significant digits)


def topology_label(row: dict) -> str:
    """The topology that trained (a defense may stand for one) with the options it ran with (``vertical:k=4``)."""
    described = row["training"]["topology"]
    name, _, options = described.partition(":")
    return row.get("topology", name) + (f":{options}" if options else "")


def group_title(group: tuple[str, str | None]) -> str:
    attack, seat = group
    if attack == "none":
        return "No attack: utility and the dCor probe"
    return f"{attack} from the {seat} seat" if seat else attack


def table_records(rows: list[dict]) -> dict[tuple[str, str | None], list[dict]]:
    """(attack, seat) -> records, one per configuration x defense (seeds averaged), with scores."""
    from secsplit.evaluation.metrics import chance_margin, dcs_score

    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for row in latest_rows(rows):
        if row["status"] in SET_APART:
            continue
        grouped[(row["attack"], row.get("seat"), *configuration(row), row["training"]["defense"])].append(row)
    records: dict[tuple, list[dict]] = defaultdict(list)
    for (attack, seat, *config, defense), group in grouped.items():
        record = dict(zip(CONFIG_FIELDS, config), defense=defense, seat=seat, seeds=len(group))
        record.update(_mean_numbers([_numbers(row) for row in group]))
        record["status"] = ", ".join(sorted({r["status"] for r in group}))
        record["tuning"] = _tuning(group[0].get("tuning"))
        record["labels_sent"] = group[0].get("labels_sent") or []
        metric = next((m for m in PRIMARY if m in record), None)
        if metric:
            record.update(metric=metric, leak=record.get(f"{metric}_norm"), leak_sd=record.get(f"{metric}_norm_sd"))
        records[(attack, seat)].append(record)
    for recs in records.values():
        undefended = {record_configuration(r): r.get("utility") for r in recs if r["defense"] == "none"}
        for r in recs:
            reference = undefended.get(record_configuration(r))
            if None not in (reference, r.get("utility"), r.get("utility_chance"), r.get("leak")):
                margin = chance_margin(r["utility_chance"], int(r.get("test_size") or 0))
                r["score"] = dcs_score(r["utility"], r["leak"], utility_ref=reference, utility_chance=r["utility_chance"],
                                       chance_margin=margin)
        recs.sort(key=lambda r: (*record_configuration(r), r["defense"] != "none", r["defense"]))
    return dict(sorted(records.items(), key=lambda item: (item[0][0] == "none", item[0][0], item[0][1] or "")))


def set_apart(rows: list[dict]) -> dict[str, list[dict]]:
    """status -> one entry per distinct reason: {reason, count, attacks, configurations}."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in latest_rows(rows):
        if row["status"] not in SET_APART:
            continue
        reason = row.get("reason") or row.get("error") or "(no reason recorded)"
        entry = out[row["status"]].setdefault(reason, {"reason": reason, "count": 0, "attacks": set(), "configurations": set()})
        entry["count"] += 1
        entry["attacks"].add(row["attack"] + (f" @ {row['seat']}" if row.get("seat") else ""))
        entry["configurations"].add(" ".join(str(v) for v in configuration(row)))
    return {status: sorted(({**e, "attacks": sorted(e["attacks"]), "configurations": sorted(e["configurations"])}
                            for e in entries.values()), key=lambda e: -e["count"])
            for status, entries in out.items()}


def columns(group: tuple[str, str | None], records: list[dict]) -> list[Column]:
    """The columns a group's table shows: only those some record fills."""
    metric = next((r["metric"] for r in records if r.get("metric")), None)
    candidates = [Column("dataset", "data", "text"), Column("topology", "topology", "text"), Column("cuts", "cuts", "text"),
                  Column("defense", "defense", "text"), Column("tuning", "tuned settings", "text")]
    if any(r.get("seeds", 1) > 1 for r in records):
        candidates.append(Column("seeds", "seeds", digits=0))
    candidates.append(Column("utility", "utility (chance)"))
    if metric and metric != "dcor_unbiased":
        candidates.append(Column(metric, f"{METRIC_NAMES[metric]} (chance)"))
        candidates += [Column("psnr", "PSNR dB (chance)", digits=1), Column("mse", "MSE (chance)")] if metric == "ssim" else []
    sizes = {int(r["dcor_n"]) for r in records if r.get("dcor_n")}
    n = f"n={sizes.pop()}, " if len(sizes) == 1 else ""
    candidates += [Column("leak", "leak 0-1", digits=2), Column("dcor_unbiased", f"dCor\u00b2 ({n}chance 0)"),
                   Column("dcor", "dCor"), Column("epsilon", "\u03b5"), Column("traffic_mb", "traffic MB", digits=1),
                   Column("train_s", "train s", digits=1), Column("score", "DCS"), Column("note", "note", "text")]
    return [c for c in candidates if any(r.get(c.key) not in (None, "") for r in records)]


#: columns shown as mean ± sd over seeds (costs and probes are shown as means)
SPREAD_SHOWN = {"utility", "ssim", "psnr", "mse", "leak_auc", "label_accuracy", "leak"}


def cell(record: dict, column: Column) -> str:
    """A record's value in a column as text, with its chance level beside it where it has one."""
    text = fmt(record.get(column.key), column.digits)
    spread = record.get(f"{column.key}_sd") if column.key in SPREAD_SHOWN else None
    if text and spread is not None:  # to the mean's decimals: "1.000 ± 0.000", not "1.000 ± 7.14e-8"
        fixed = "e" not in text
        text += f" \u00b1 {f'{spread:.{column.digits}f}' if fixed else fmt(spread, column.digits)}"
    chance = record.get(f"{column.key}_chance")
    if text and chance is not None and column.key != "dcor_unbiased":
        text += f" ({fmt(chance, column.digits)})"
    return text


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if 1e-3 <= abs(value) < 1000 or value == 0:
            return f"{value:.{digits}f}"
        mantissa, _, exponent = f"{value:.3g}".partition("e")
        return f"{mantissa}e{int(exponent)}" if exponent else mantissa
    return str(value)


def to_markdown(records_by_group: dict, apart: dict[str, list[dict]] | None = None) -> str:
    out = []
    for group, records in records_by_group.items():
        cols = columns(group, records)
        out.append(f"### {group_title(group)}\n")
        out.append("| " + " | ".join(c.header for c in cols) + " |")
        out.append("|" + "".join("---|" if c.kind == "text" else "--:|" for c in cols))
        for r in records:
            out.append("| " + " | ".join(cell(r, c).replace("|", "/") for c in cols) + " |")
        out.append("")
    out.append(LEGEND + "\n")
    for status, entries in (apart or {}).items():
        out.append(f"### {STATUS_TITLES.get(status, status)} ({sum(e['count'] for e in entries)} rows)\n")
        out += [f"- {e['count']} x {e['reason']} ({', '.join(e['attacks'])})" for e in entries]
        out.append("")
    return "\n".join(out)


def to_csv(records_by_group: dict) -> str:
    fields = ["attack", "seat", *CONFIG_FIELDS, "defense", "tuning", "status", "seeds", "utility", "utility_chance",
              "utility_sd", "metric", "leak", "leak_sd",
              *(f for m in ("ssim", "psnr", "mse", "leak_auc", "label_accuracy") for f in (m, f"{m}_sd", f"{m}_chance")),
              "dcor", "dcor_unbiased", "dcor_n", "epsilon", "traffic_mb", "train_s", "score", "note"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(fields)
    for (attack, seat), records in records_by_group.items():
        for r in records:
            writer.writerow([fmt(v) for v in (attack, seat, *(r.get(f) for f in fields[2:]))])
    return buffer.getvalue()


def to_latex(records_by_group: dict) -> str:
    escape = lambda text: str(text).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")  # noqa: E731
    out = []
    for group, records in records_by_group.items():
        cols = columns(group, records)
        out.append(r"\begin{table}[ht]\centering\small")
        out.append(rf"\caption{{{escape(group_title(group))}}}")
        out.append(r"\begin{tabular}{" + "".join("l" if c.kind == "text" else "r" for c in cols) + "}")
        out.append(r"\toprule")
        out.append(" & ".join(escape(c.header) for c in cols) + r" \\")
        out.append(r"\midrule")
        out += [" & ".join(escape(cell(r, c)) for c in cols) + r" \\" for r in records]
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}")
        out.append(r"\end{table}" + "\n")
    return "\n".join(out)


STATUS_TITLES = {"not_applicable": "Not applicable", "failed": "Failed"}
LEGEND = ("Each value is followed by its chance level in parentheses (what an attacker or model that "
          "learned nothing reaches); over several seeds, utility and leakage are mean \u00b1 sample sd. leak 0-1: the headline metric normalized, 0 = chance, 1 = full leak. "
          "dCor\u00b2: bias-corrected distance correlation between test inputs and what the client releases "
          "for them (0 = independent); dCor: the biased V-statistic NoPeek optimizes (no fixed chance level). "
          "DCS: VFLAIR's defense capability score on normalized axes, 1 / (1 + sqrt((1 - b)(1 - u)^2 + b l^2)) "
          "with b = 0.5, u = utility normalized from chance (0) to the undefended model's (1), l = leak 0-1; "
          "0 when utility is within two standard errors of chance. traffic: bytes sent by all parties during training.")


def configuration(row: dict) -> tuple:
    """A row's configuration: (dataset, model, topology with its options, cuts); findings are made per one."""
    t = row["training"]
    return (t["dataset"], t.get("model") or "", topology_label(row), " ".join(row.get("cuts") or t.get("cuts") or []))


def record_configuration(record: dict) -> tuple:
    """A table record's configuration, as :func:`configuration` gives a row's."""
    return tuple(record[f] for f in CONFIG_FIELDS)


def configuration_title(config: tuple) -> str:
    """``mnist · lenet · vanilla · cut relu1``."""
    dataset, model, topology, cuts = config
    return " \u00b7 ".join(v for v in (dataset, model, topology, f"cut {cuts}" if cuts else "") if v)


def _numbers(row: dict) -> dict:
    """The numbers a record averages over seeds: utility, each leak with its chance, costs."""
    facts = data_facts(row)
    numbers = {"utility": row.get("utility"), "utility_chance": facts.utility, "test_size": facts.test_size,
               "dcor_n": row.get("dcor_n"),
               "epsilon": epsilon_of(row), "train_s": row.get("train_wall_time_s")}
    if isinstance(row.get("bytes"), dict):
        numbers["traffic_mb"] = sum(p.get("bytes_sent", 0) for p in row["bytes"].values()) / 1e6
    leaks = row_leaks(row, facts)
    for metric, leak in leaks.items():
        numbers.update({metric: leak.value, f"{metric}_chance": leak.chance, f"{metric}_norm": leak.normalized})
    if row["status"] != "ok":
        numbers["note"] = row["status"] + (f": {row['reason']}" if row.get("reason") else "")
    headline = primary_leak(leaks)
    numbers["headline"] = headline.metric if headline else None
    return numbers


def _mean_numbers(items: list[dict]) -> dict:
    """Seeds' numbers averaged; ``KEY_sd`` is the sample standard deviation where two or more seeds gave one."""
    out = {}
    for key in dict.fromkeys(k for item in items for k in item):
        values = [item.get(key) for item in items if item.get(key) is not None]
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = sum(values) / len(values)
            if len(values) > 1:
                out[f"{key}_sd"] = statistics.stdev(values)
        elif values:
            out[key] = values[0]
    out.pop("headline", None)
    return out


def _tuning(tuning) -> str:
    if not isinstance(tuning, dict):
        return ""
    if tuning.get("skipped"):
        return "not tuned: " + str(tuning["skipped"])
    params = ", ".join(f"{k}={fmt(v)}" for k, v in (tuning.get("best_params") or {}).items())
    return f"{params} (best of {tuning.get('trials', '?')})" if params else ""


def epsilon_of(row: dict) -> float | None:
    """The headline epsilon of a row's DP statement (composed over training where stated)."""
    eps = row.get("epsilon")
    for statement in eps if isinstance(eps, list) else [eps]:
        if isinstance(statement, dict):
            for key in ("composed", "prv", "epsilon", "per_label"):
                if isinstance(statement.get(key), (int, float)):
                    return float(statement[key])
    return None

"""Privacy-utility tables from audit rows: Markdown, CSV and LaTeX, grouped by attack.

One table row per configuration x defense. Columns: utility, dCor (both estimators, with n), the
attack's leakage metrics, epsilon, and a trade-off score:

    score = 1 / (1 + sqrt((1 - b)(U - U*)^2 + b (L - L*)^2)),  b = 0.5

(VFLAIR's DCS) with U the test accuracy, U* the same configuration's accuracy without defense, L
the attack's primary leakage metric and L* its ideal value (SSIM: 0; leak AUC: the chance level;
label accuracy: 1 / classes); for runs without an attack L is the biased dCor with L* = 0.
Best values per column are marked (highest utility and score; lowest leakage).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from secsplit.evaluation.results import latest_rows

#: primary leakage metric per attack result, with its ideal value (None: computed per row)
PRIMARY = [("ssim", 0.0), ("leak_auc", None), ("label_accuracy", None)]
LOWER_IS_BETTER = {"dcor", "dcor_unbiased", "ssim", "leak_auc", "label_accuracy", "epsilon"}
HIGHER_IS_BETTER = {"utility", "score", "mse"}
COLUMNS = ["dataset", "topology", "cuts", "defense", "status", "utility", "dcor", "dcor_unbiased", "ssim", "psnr", "mse",
           "leak_auc", "chance_auc", "label_accuracy", "epsilon", "score"]


def _epsilon(row: dict) -> float | None:
    eps = row.get("epsilon")
    if not eps:
        return None
    for key in ("composed", "prv", "epsilon", "per_label"):
        if isinstance(eps.get(key), (int, float)):
            return float(eps[key])
    return None


def _primary(leak: dict, num_classes: int | None):
    for name, ideal in PRIMARY:
        if name in leak and isinstance(leak[name], (int, float)):
            if ideal is None:
                ideal = leak.get("chance_auc", 0.5) if name == "leak_auc" else (1 / num_classes if num_classes else 0.0)
            return name, float(leak[name]), float(ideal)
    return None


def topology_label(row: dict) -> str:
    """The topology that trained (a defense may stand for one) with the options it ran with (``vertical:k=4``)."""
    described = row["training"]["topology"]
    name, _, options = described.partition(":")
    return row.get("topology", name) + (f":{options}" if options else "")


def table_records(rows: list[dict]) -> dict[str, list[dict]]:
    """attack -> list of flat records (one per configuration x defense, seeds averaged)."""
    from secsplit.evaluation.metrics import tradeoff_score

    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for row in latest_rows(rows):
        t = row["training"]
        key = (row["attack"], t["dataset"], topology_label(row), " ".join(row.get("cuts") or t["cuts"] or []),
               t["defense"])
        grouped[key].append(row)
    records: dict[str, list[dict]] = defaultdict(list)
    for (attack, dataset, topology, cuts, defense), group in grouped.items():
        ok = [r for r in group if r["status"] == "ok"]
        trained = [r for r in group if r["status"] in ("ok", "not_applicable")]  # both trained the model
        record = {"dataset": dataset, "topology": topology, "cuts": cuts, "defense": defense,
                  "status": group[-1]["status"] if not ok else "ok", "seeds": len(ok)}
        mean = lambda values: sum(values) / len(values) if values else None
        for name in ("utility", "dcor", "dcor_unbiased"):
            record[name] = mean([r[name] for r in trained if isinstance(r.get(name), (int, float))])
        if not ok:
            record["note"] = group[-1].get("reason") or group[-1].get("error", "")
            records[attack].append(record)
            continue
        for name in ("ssim", "psnr", "mse", "leak_auc", "chance_auc", "label_accuracy"):
            record[name] = mean([r["leakage"][name] for r in ok if isinstance(r.get("leakage", {}).get(name), (int, float))])
        record["epsilon"] = mean([e for r in ok if (e := _epsilon(r)) is not None])
        record["dcor_n"] = ok[0].get("dcor_n")
        records[attack].append(record)
    for attack, recs in records.items():
        baselines = {(r["dataset"], r["topology"]): r.get("utility") for r in recs if r["defense"] == "none" and r["status"] == "ok"}
        for r in recs:
            if r["status"] != "ok" or r.get("utility") is None:
                continue
            primary = _primary({k: r[k] for k in ("ssim", "leak_auc", "chance_auc", "label_accuracy") if r.get(k) is not None}, None)
            if primary is None and r.get("dcor") is not None:
                primary = ("dcor", r["dcor"], 0.0)
            reference = baselines.get((r["dataset"], r["topology"]), r["utility"])
            if primary and reference is not None:
                r["score"] = tradeoff_score(r["utility"], primary[1], utility_ref=reference, leakage_ref=primary[2])
        recs.sort(key=lambda r: (r["dataset"], r["topology"], r["cuts"], r["defense"] != "none", r["defense"]))
    return dict(records)


def _best(records: list[dict]) -> dict[str, float]:
    best = {}
    for column in COLUMNS:
        values = [r[column] for r in records if isinstance(r.get(column), (int, float))]
        if len(values) < 2:
            continue
        if column in HIGHER_IS_BETTER:
            best[column] = max(values)
        elif column in LOWER_IS_BETTER:
            best[column] = min(values)
    return best


def _columns(records: list[dict]) -> list[str]:
    return [c for c in COLUMNS if any(r.get(c) not in (None, "") for r in records)]


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.3g}"
    return str(value)


def to_markdown(records_by_attack: dict[str, list[dict]]) -> str:
    out = []
    for attack, records in sorted(records_by_attack.items()):
        columns = _columns(records)
        best = _best(records)
        out.append("### No attack: utility and dCor only\n" if attack == "none" else f"### Attack: {attack}\n")
        out.append("| " + " | ".join(columns) + " |")
        out.append("|" + "---|" * len(columns))
        for r in records:
            cells = []
            for c in columns:
                text = _fmt(r.get(c))
                if c in best and r.get(c) == best[c]:
                    text = f"**{text}**"
                if c == "status" and r["status"] != "ok":
                    text = f"{r['status']}: {r.get('note', '')}".replace("|", "/")
                cells.append(text)
            out.append("| " + " | ".join(cells) + " |")
        n = next((r.get("dcor_n") for r in records if r.get("dcor_n")), None)
        out.append(f"\ndCor: biased V-statistic and bias-corrected dCor^2 between {n} test inputs and what the "
                   "client releases for them. Best values in bold.\n")
    return "\n".join(out)


def to_csv(records_by_attack: dict[str, list[dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["attack", *COLUMNS, "seeds", "note"])
    for attack, records in sorted(records_by_attack.items()):
        for r in records:
            writer.writerow([attack, *(_fmt(r.get(c)) for c in COLUMNS), r.get("seeds", ""), r.get("note", "")])
    return buffer.getvalue()


def to_latex(records_by_attack: dict[str, list[dict]]) -> str:
    escape = lambda text: str(text).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")
    out = []
    for attack, records in sorted(records_by_attack.items()):
        columns = _columns(records)
        best = _best(records)
        out.append(r"\begin{table}[ht]\centering\small")
        out.append(rf"\caption{{Privacy-utility trade-off against {escape(attack)}}}")
        out.append(r"\begin{tabular}{" + "l" * 5 + "r" * (len(columns) - 5) + "}")
        out.append(r"\toprule")
        out.append(" & ".join(escape(c) for c in columns) + r" \\")
        out.append(r"\midrule")
        for r in records:
            cells = []
            for c in columns:
                text = escape(_fmt(r.get(c)))
                if c in best and r.get(c) == best[c]:
                    text = rf"\textbf{{{text}}}"
                cells.append(text)
            out.append(" & ".join(cells) + r" \\")
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}")
        out.append(r"\end{table}" + "\n")
    return "\n".join(out)

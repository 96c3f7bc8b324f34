"""Everything an audit produces from its results file: tables, plots and one self-contained HTML page.

The page is written for someone who has to act on it (say, a hospital's data protection officer):
findings first (what leaks worst, to whom, what stops it and at what price), then how to read the
numbers, the plots, and the full tables grouped by attack and seat, sortable and filterable by a
few lines of inline JavaScript (no network; the tables read the same with scripts off). Rows that
produced no result are summarized, one line per reason, in collapsed sections at the end.
"""

from __future__ import annotations

import base64
import html
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from secsplit.evaluation import findings as findings_module
from secsplit.evaluation import plots, report_page, tables
from secsplit.evaluation.results import latest_rows, load_rows

def write_report(results_path, out_dir, *, config_source: dict | None = None, artifacts_dir=None,
                 utility_budget: float | None = None, frontier=None) -> dict:
    """Write results.md/.csv/.tex, the plots and report.html into ``out_dir``.

    ``utility_budget``: the utility a defense may cost in the findings (default
    :data:`~secsplit.evaluation.findings.UTILITY_BUDGET`). ``frontier``: a ``secsplit frontier``
    frontier.json whose searched settings join the findings (default: frontier.json beside the results,
    if there is one). Returns the written paths by kind, plus ``findings`` (their dicts) and ``counts``
    (rows by status), which ``secsplit audit --json`` prints.
    """
    if utility_budget is None:
        utility_budget = findings_module.UTILITY_BUDGET
    searched = _frontiers(Path(frontier) if frontier else None, Path(results_path).parent)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = latest_rows(load_rows(results_path))
    records = tables.table_records(rows)
    apart = tables.set_apart(rows)
    found = findings_module.findings(records, utility_budget=utility_budget, frontier=searched)
    written: dict = {"markdown": out / "results.md", "csv": out / "results.csv", "latex": out / "results.tex"}
    written["markdown"].write_text(_markdown_findings(found) + tables.to_markdown(records, apart)
                                   + _markdown_frontiers(searched))
    written["csv"].write_text(tables.to_csv(records))
    written["latex"].write_text(tables.to_latex(records))
    figures = {
        "Privacy-utility trade-off per configuration": (
            plots.privacy_utility_scatter(records, out / "privacy_utility.png"),
            "Each defense at its worst leak over every attack and seat (x) and its utility (y). The dashed "
            "line is the Pareto front; dotted lines mark chance: no leak (x = 0) and a model that learned "
            "nothing (chance utility)."),
        "Leakage against defense strength": (
            plots.leakage_vs_strength(records, out / "leakage_vs_strength.png"),
            "One column per defense family, against the parameter that varies; the dashed line in each "
            "series' colour is its undefended level. Bottom row: utility."),
        "Leakage against cut depth (no defense)": (
            plots.leakage_vs_cut_depth(records, out / "leakage_vs_cut.png", _cut_order(rows)),
            "One line per topology: how much a deeper client segment hides."),
    }
    for summary in searched:  # the Pareto plots of the frontier searches (an audit's own, or --frontier's)
        for plot in sorted(Path(summary.get("_folder", "")).glob("pareto-*.png")) if summary.get("_folder") else ():
            figures[f"Defense frontier: {plot.stem[len('pareto-'):]}, {summary.get('configuration', '')}"] = (
                plot, f"Every setting the frontier search tried: utility loss against leakage normalized from chance "
                      f"(0) to undefended (1); the black line is the frontier, the dashed line the budget of "
                      f"{summary.get('budget', 0) * 100:g} point(s). Table: {summary.get('_folder')}/frontier.md.")
    artifacts = Path(artifacts_dir) if artifacts_dir else Path(results_path).parent / "artifacts"
    grids = [(row, artifacts / row["grid"]) for row in rows
             if row.get("status") == "ok" and row.get("grid") and (artifacts / row["grid"]).is_file()]
    written["html"] = out / "report.html"
    written["html"].write_text(render_html(rows, records, apart, found, figures, grids, config_source, utility_budget))
    written.update({name: path for name, (path, _) in zip(("privacy_utility", "strength", "cut_depth"), figures.values())
                    if path})
    written["findings"] = [f.to_dict() for f in found]
    written["counts"] = _status_counts(rows)
    return written


def _frontiers(given: Path | None, folder: Path) -> list[dict]:
    """Frontier summaries for the findings: ``given`` (else frontier.json beside the results, if any) and
    the audit's own searches (frontier/*/frontier.json); each remembers its folder as ``_folder``."""
    from secsplit.errors import DataError

    paths = [given] if given else [folder / "frontier.json"] if (folder / "frontier.json").is_file() else []
    paths += sorted((folder / "frontier").glob("*/frontier.json"))
    out = []
    for path in paths:
        try:
            out.append({**json.loads(path.read_text()), "_folder": str(path.parent)})
        except (OSError, json.JSONDecodeError) as error:
            raise DataError(f"frontier file {path}: {error}") from None
    return out


def _markdown_frontiers(summaries: list[dict]) -> str:
    from secsplit.evaluation.frontier import markdown_table

    parts = []
    for summary in summaries:
        if summary.get("rows"):
            parts.append("#" + markdown_table(summary))  # one level below the report's title
    return "".join("\n" + part for part in parts)


def _status_counts(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return dict(sorted(counts.items()))


def _cut_order(rows: list[dict]):
    """record -> its model's cut points in forward order (built on the meta device: no weights, no time)."""
    representative = {tables.configuration(r): r for r in rows}
    cache: dict = {}

    def order(record: dict) -> list[str] | None:
        row = representative.get(tables.record_configuration(record))
        if row is None or not record["model"]:
            return None
        from secsplit.evaluation.leaks import data_facts

        facts = data_facts(row)
        options = {k: v for k, v in (row.get("run", {}).get("model") or {}).items() if k != "name"}
        key = (record["model"], facts.input_shape, json.dumps(options, sort_keys=True, default=str))
        if key not in cache:
            cache[key] = _cut_points(record["model"], facts, options)
        return cache[key]

    return order


def _cut_points(model: str, facts, options: dict) -> list[str] | None:
    if facts.input_shape is None:
        return None
    import torch

    from secsplit.errors import SecsplitError
    from secsplit.models import create_model

    try:
        with torch.device("meta"):
            return create_model(model, input_shape=facts.input_shape, num_classes=facts.num_classes, **options).cut_points
    except SecsplitError:
        return None


def _markdown_findings(found: list) -> str:
    if not found:
        return ""
    lines = ["## Findings (worst leak first)\n"]
    for f in found:
        lines.append(f"- **{f.title}** ({f.leak:.2f}). " + " ".join(f.to_dict()["sentences"]))
    return "\n".join(lines) + "\n\n## Results by attack and seat\n\n"


# --- HTML ------------------------------------------------------------------------------------------

def render_html(rows, records, apart, found, figures, grids, config_source, utility_budget) -> str:
    body = "".join([_findings_html(found, utility_budget), _reading_html(), _figures_html(figures),
                    _tables_html(records), _grids_html(grids), _apart_html(apart), _config_html(config_source),
                    _environment_html()])
    sections = [_header(rows, records, config_source, body), body]
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>secsplit audit report</title><style>{report_page.CSS}</style></head>"
            f"<body><main>{''.join(s for s in sections if s)}</main><script>{report_page.JS}</script></body></html>")


def _header(rows, records, config_source, body: str) -> str:
    counts = _status_counts(rows)
    name = (config_source or {}).get("audit", {}).get("name", "")
    configs = {tables.record_configuration(r) for recs in records.values() for r in recs}
    pairs = [g for g in records if g[0] != "none"]
    contents = "".join(f"<a href='#{anchor}'>{title}</a>" for anchor, title in (
        ("findings", "Findings"), ("reading", "How to read the numbers"), ("plots", "Plots"),
        ("results", "Results by attack"), ("reconstructions", "Reconstructions"), ("apart", "Rows without a result"),
        ("configuration", "Audit configuration"), ("environment", "Environment")) if f"id='{anchor}'" in body)
    return (f"<header><h1>Split-learning leakage audit{': ' + _e(name) if name else ''}</h1>"
            f"<p class='meta'>{len(configs)} configurations, {len(pairs)} attack and seat combinations, "
            f"{len(rows)} result rows ({', '.join(f'{v} {_e(k)}' for k, v in counts.items())}); generated "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by secsplit.</p><nav>{contents}</nav></header>")


def _findings_html(found: list, budget: float) -> str:
    if not found:
        body = "<p>No configuration was measured without a defense, so there is no leak to rank.</p>"
    else:
        items = "".join(
            f"<li class='finding'><h3>{_e(f.title)} <span class='leak' style='--leak:{f.leak:.3f}' "
            f"title='worst normalized leak'>leak {f.leak:.2f}</span></h3>"
            + "".join(f"<p class='{kind}'>{_e(text)}</p>" for kind, text in
                      (("worst", f.worst), ("exposure", f.exposure), ("defense", f.defense), ("cost", f.cost),
                       ("caution", f.caution)) if text)
            + "</li>"
            for f in found)
        body = f"<ol class='findings'>{items}</ol>"
    return (f"<section id='findings'><h2>Findings</h2><p class='lead'>One entry per configuration, worst leak first. "
            f"A configuration's leak is the largest over every attack and every seat it was attacked from, on a 0-1 "
            f"scale where 0 is chance and 1 a full leak; the best defense is the one leaving the smallest such leak "
            f"while costing at most {budget * 100:.0f} points of utility.</p>{body}</section>")


def _reading_html() -> str:
    chance = "".join(f"<li>{item}</li>" for item in (
        "utility (test accuracy): the share of the commonest class in the test set (always guessing it);",
        "SSIM, PSNR, MSE of reconstructions: the mean training image offered as every reconstruction;",
        "label-leak AUC: random scores on the same labels (the row's <code>chance_auc</code>);",
        "accuracy of inferred labels: the share of the commonest class among the training labels;",
        "bias-corrected dCor&sup2; between inputs and releases: 0 (independent); the biased dCor NoPeek "
        "optimizes has no fixed chance level, so it is shown raw."))
    return (
        "<section id='reading'><h2>How to read the numbers</h2>"
        "<p><strong>Chance level</strong>, in parentheses after every leakage and utility number, is what an "
        f"attacker (or a model) that learned nothing reaches:</p><ul>{chance}</ul>"
        "<p><strong>Normalized leak</strong> (<em>leak 0-1</em>) places the attack's headline metric between "
        "chance and a full leak: l = (value &minus; chance) / (perfect &minus; chance), clipped to [0, 1], where "
        "perfect is SSIM 1, AUC 1, accuracy 1 or dCor&sup2; 1. It makes attacks with different metrics comparable.</p>"
        "<p><strong>DCS</strong>, the defense capability score of VFLAIR (Gu et al., 2024), computed on normalized "
        "axes: DCS = 1 / (1 + &radic;((1 &minus; &beta;)(1 &minus; u)&sup2; + &beta; l&sup2;)), with &beta; = 0.5 "
        "(privacy and utility weigh the same), u = (U &minus; U<sub>chance</sub>) / (U<sub>undefended</sub> &minus; "
        "U<sub>chance</sub>) capped at 1 (U the defended model's utility, U<sub>undefended</sub> the same "
        "configuration's without a defense) and l the normalized leak. The ideal defense (u, l) = (1, 0) scores 1; "
        "a model whose utility cannot be told from chance (at most two standard errors above it on the test set) "
        "scores 0, however little it leaks.</p>"
        "<p><strong>Seat</strong>: the party the attack runs from (the client, the server, an intermediate hop). "
        "<strong>Threat model</strong>: what that party is granted besides what it receives, stated above each table. "
        "<strong>&epsilon;</strong>: the differential-privacy guarantee a DP defense states over the whole training "
        "run (empty: no formal guarantee). <strong>traffic</strong>: megabytes sent by all parties during training.</p>"
        "</section>")


def _figures_html(figures: dict) -> str:
    shown = [(title, path, caption) for title, (path, caption) in figures.items() if path]
    if not shown:
        return ""
    return "<section id='plots'><h2>Plots</h2>" + "".join(
        f"<figure>{_image(path, title)}<figcaption><strong>{_e(title)}.</strong> {_e(caption)}</figcaption></figure>"
        for title, path, caption in shown) + "</section>"


def _tables_html(records: dict) -> str:
    parts = ["<section id='results'><h2>Results by attack and seat</h2>"
             f"<p class='lead'>{_e(tables.LEGEND)} Click a column heading to sort; type in a table's filter box "
             "to show only matching rows.</p>"]
    for group, recs in records.items():
        threat = "" if group[0] == "none" else f"<p class='threat'>Threat model: {_e(findings_module.threat_words(*group))}.</p>"
        parts.append(f"<h3>{_e(tables.group_title(group))}</h3>{threat}{_table(group, recs)}")
    return "".join(parts) + "</section>"


def _table(group, records: list[dict]) -> str:
    columns = tables.columns(group, records)
    head = "".join(f"<th scope='col' class='{c.kind}'>{_e(c.header)}</th>" for c in columns)
    body = []
    for r in records:
        cells = []
        for c in columns:
            value = r.get(c.key)
            sort = "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
            cells.append(f"<td class='{c.kind}' data-sort='{_e(sort)}'>{_breakable(tables.cell(r, c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='results'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _grids_html(grids: list) -> str:
    if not grids:
        return ""
    from secsplit.evaluation.leaks import reconstruction_chance

    def caption(row) -> str:
        ssim = row.get("leakage", {}).get("ssim")
        chance = reconstruction_chance(row).get("ssim")
        level = f", SSIM {ssim:.3f}" + (f" (chance {chance:.3f})" if chance is not None else "") if ssim is not None else ""
        config = tables.configuration_title(tables.configuration(row))
        seat = f" @ {row['seat']}" if row.get("seat") else ""
        return f"{row['attack']}{seat} on {config}, defense {row['training']['defense']}{level}"

    grids = sorted(grids, key=lambda g: (tables.configuration(g[0]), g[0]["attack"], g[0]["training"]["defense"] != "none",
                                         g[0]["training"]["defense"]))
    figures = "".join(f"<figure>{_image(path, caption(row))}<figcaption>{_e(caption(row))}</figcaption></figure>"
                      for row, path in grids)
    return (f"<section id='reconstructions'><h2>Reconstructions</h2><details><summary>{len(grids)} reconstruction "
            f"grids: originals above, the attack's reconstructions below</summary><div class='grids'>{figures}</div>"
            f"</details></section>")


def _apart_html(apart: dict) -> str:
    if not apart:
        return ""
    parts = ["<section id='apart'><h2>Rows without a result</h2>"]
    for status, entries in apart.items():
        total = sum(e["count"] for e in entries)
        items = "".join(f"<li><strong>{e['count']} &times;</strong> {_e(e['reason'])} <span class='who'>"
                        f"({_e(', '.join(e['attacks']))}; {_e(', '.join(e['configurations']))})</span></li>"
                        for e in entries)
        title = tables.STATUS_TITLES.get(status, status)
        parts.append(f"<details class='{_e(status)}'{' open' if status == 'failed' else ''}><summary>{_e(title)}: "
                     f"{total} rows, {len(entries)} distinct reason{'s' if len(entries) != 1 else ''}</summary>"
                     f"<ul>{items}</ul></details>")
    return "".join(parts) + "</section>"


def _config_html(config_source) -> str:
    if not config_source:
        return ""
    return (f"<section id='configuration'><h2>Audit configuration</h2><details><summary>The audit file as run "
            f"(JSON)</summary><pre>{_e(json.dumps(config_source, indent=2))}</pre></details></section>")


def _environment_html() -> str:
    import torch

    import secsplit

    env = {"secsplit": secsplit.__version__, "torch": torch.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    return f"<section id='environment'><h2>Environment</h2><pre>{_e(json.dumps(env, indent=2))}</pre></section>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img src='data:image/png;base64,{data}' alt='{_e(alt)}'>"


def _breakable(text: str) -> str:
    """Escaped text that may wrap after the punctuation of a spec (``noise:mech=gaussian,clip=30``)."""
    return "".join(_e(ch) + ("<wbr>" if ch in ",:+" else "") for ch in text)


def _e(text) -> str:
    return html.escape(str(text), quote=True)

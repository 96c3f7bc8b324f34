"""Everything an audit produces from its results file: tables, plots and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from secsplit.evaluation import plots, tables
from secsplit.evaluation.results import latest_rows, load_rows


def write_report(results_path, out_dir, *, config_source: dict | None = None, artifacts_dir=None) -> dict[str, Path]:
    """Write results.md/.csv/.tex, the plots and report.html into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = latest_rows(load_rows(results_path))
    records = tables.table_records(rows)
    written = {
        "markdown": out / "results.md", "csv": out / "results.csv", "latex": out / "results.tex",
    }
    written["markdown"].write_text(tables.to_markdown(records))
    written["csv"].write_text(tables.to_csv(records))
    written["latex"].write_text(tables.to_latex(records))
    figures = {
        "Privacy-utility trade-off (Pareto front per attack)": plots.privacy_utility_scatter(records, out / "privacy_utility.png"),
        "Leakage vs defense strength": plots.leakage_vs_strength(records, out / "leakage_vs_strength.png"),
        "SSIM vs cut depth (no defense)": plots.ssim_vs_cut_depth(rows, out / "ssim_vs_cut.png"),
    }
    artifacts = Path(artifacts_dir) if artifacts_dir else Path(results_path).parent / "artifacts"
    grids = [(row, artifacts / row["grid"]) for row in rows if row.get("grid") and (artifacts / row["grid"]).is_file()]
    written["html"] = out / "report.html"
    written["html"].write_text(_html(rows, records, figures, grids, config_source))
    written.update({name: path for name, path in figures.items() if path})
    return written


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def _html_table(records: list[dict]) -> str:
    columns = tables._columns(records)
    best = tables._best(records)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in records:
        cells = []
        for c in columns:
            text = html.escape(tables._fmt(r.get(c)))
            if c == "status" and r["status"] != "ok":
                text = html.escape(f"{r['status']}: {r.get('note', '')}")
            cls = ' class="best"' if c in best and r.get(c) == best[c] else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html(rows, records, figures, grids, config_source) -> str:
    import torch

    import secsplit

    statuses = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    sections = [f"<h1>secsplit audit report</h1><p>{len(rows)} result rows ({', '.join(f'{v} {k}' for k, v in sorted(statuses.items()))}); "
                f"generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.</p>"]
    sections.append("<h2>Results by attack</h2><p>Utility is test accuracy; dCor is measured between test inputs and "
                    "what the client releases for them (biased V-statistic, and the bias-corrected dCor&sup2;); "
                    "best value per column highlighted; <em>score</em> is the DCS trade-off score "
                    "1/(1+sqrt(0.5(U-U*)&sup2;+0.5(L-L*)&sup2;)).</p>")
    for attack, recs in sorted(records.items()):
        title = "No attack: utility and dCor only" if attack == "none" else f"Attack: {attack}"
        sections.append(f"<h3>{html.escape(title)}</h3>{_html_table(recs)}")
    figure_html = "".join(f"<figure>{_image(path)}<figcaption>{html.escape(title)}</figcaption></figure>"
                          for title, path in figures.items() if path)
    if figure_html:
        sections.append(f"<h2>Plots</h2>{figure_html}")
    if grids:
        sections.append("<h2>Reconstructions</h2><p>Originals above, the attack's reconstructions below.</p>" + "".join(
            f"<figure>{_image(path)}<figcaption>{html.escape(row['attack'])}: {html.escape(row['training']['dataset'])} "
            f"{html.escape(row.get('topology', ''))}, defense {html.escape(row['training']['defense'])}, "
            f"SSIM {row['leakage'].get('ssim', float('nan')):.3f}</figcaption></figure>" for row, path in grids))
    failed = [row for row in rows if row["status"] == "failed"]
    if failed:
        sections.append("<h2>Failed runs</h2><ul>" + "".join(
            f"<li>{html.escape(r['attack'])} on {html.escape(json.dumps(r['training']))}: {html.escape(r.get('error', ''))}</li>"
            for r in failed) + "</ul>")
    if config_source:
        sections.append(f"<h2>Audit configuration</h2><pre>{html.escape(json.dumps(config_source, indent=2))}</pre>")
    env = {"secsplit": secsplit.__version__, "torch": torch.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    sections.append(f"<h2>Environment</h2><pre>{html.escape(json.dumps(env, indent=2))}</pre>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f0f0f0}td:nth-child(-n+5),th:nth-child(-n+5){text-align:left}td.best{font-weight:bold;background:#e6f4e6}"
             "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:12px;color:#555}pre{background:#f7f7f7;padding:1em;overflow:auto}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>secsplit audit report</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")

"""One Markdown table from several frontier runs (the table in docs/defenses.md and the README).

    python benchmarks/frontier_table.py OUT1/frontier.json OUT2/frontier.json ...

Per (configuration, attack, defense family): the best setting within the budget (or "none within
budget" and the closest point tried), its utility loss in accuracy points, the leakage with its
standard deviation over the seeds, the undefended leakage, chance, the normalized leakage (0 = chance,
1 = undefended) and whether it is within 0.05 of chance.
"""

from __future__ import annotations

import json
import sys


def fmt(value, sd=None, digits=3) -> str:
    if value is None:
        return ""
    text = f"{value:.{digits}f}"
    if sd:
        text += f" ± {sd:.{digits}f}"
    return text


def searched(row) -> str:
    """The search attack's leakage beside the confirm attack's, when the frontier confirmed with another."""
    if row.get("confirm_attack") and row.get("search_leakage") is not None:
        return f" (search attack, seed {row['seeds'][0]}: {row['search_leakage']:.3f})"
    return ""


def stalled(row) -> str:
    """Seeds whose attack stalled (no gradient reached the input) are left out of the leakage mean."""
    n = row.get("stalled_seeds") or 0
    return f" ({n} seed{'s' if n > 1 else ''} stalled, left out)" if n else ""


def main(paths: list[str]) -> None:
    print("| configuration | attack (metric) | family | best setting within 1 pt | utility loss (pts) | leakage | "
          "undefended | chance | normalized | within 0.05 of chance | seeds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        with open(path) as handle:
            summary = json.load(handle)
        for row in summary["rows"]:
            setting = row["setting"] or ""
            setting = setting.split(":", 1)[1] if ":" in setting else setting
            if not row["within_budget"]:
                setting = f"none within budget; closest: {setting}"
            loss = row["utility_loss"]
            seeds = row.get("seeds") or summary["seeds"]
            print(f"| {row['configuration']} | {row['attack'].split(':')[0]} ({row['metric']}) | {row['defense']} | "
                  f"{setting} | {fmt(None if loss is None else 100 * loss, None, 1)} | "
                  f"{fmt(row['leakage'], row.get('leakage_sd'))}{stalled(row)}{searched(row)} | {fmt(row['undefended_leakage'])} | "
                  f"{fmt(row['chance'])} | {fmt(row['normalized_leakage'], None, 2)} | "
                  f"{'yes' if row['reaches_chance'] else 'no'} | {len(seeds)} |")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Audit plots (matplotlib, Agg backend), drawn to be read at full page width.

Each figure is built by a ``*_figure`` function (tests check its layout: no overlapping labels, no
clipped titles) and saved by the matching function with a path. All of them plot the normalized
leak (0 = chance, 1 = full; :mod:`secsplit.evaluation.leaks`), so attacks with different metrics share
one axis, in the Okabe-Ito colour-blind-safe palette with a distinct marker per series.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from secsplit.evaluation.tables import configuration_title, record_configuration  # noqa: E402
from secsplit.specs import parse_spec  # noqa: E402

#: Okabe & Ito's colour-blind-safe palette (black first, for the undefended model)
PALETTE = ["#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
WIDTH_IN = 12.0   # figures fill a 1200-px column at DPI
DPI = 100
LEAK_LABEL = "normalized leak (0 = chance, 1 = full)"


def style(index: int) -> dict:
    """Colour and marker of the index-th series: 8 colours x 10 markers before anything repeats."""
    return {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)]}


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with lower-or-equal leakage and higher-or-equal utility."""
    front, best_utility = [], float("-inf")
    for leak, utility in sorted(points, key=lambda p: (p[0], -p[1])):
        if utility > best_utility:
            front.append((leak, utility))
            best_utility = utility
    return front


def _grid(n: int, *, columns: int = 3, height: float = 3.6, extra: float = 0.0):
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, height * rows + extra), squeeze=False,
                             layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_below(fig, handles, labels, *, columns: int = 3) -> None:
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(columns, len(handles)), fontsize=9,
                   frameon=False)


def _wrap(text: str, width: int = 48) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def save(fig, path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


# --- privacy-utility scatter ---------------------------------------------------------------------

def privacy_utility_figure(records_by_group: dict):
    """Per configuration: each defense at (worst leak over every attack and seat, utility), the Pareto
    front, and the chance levels of both axes."""
    from secsplit.evaluation.findings import defense_points

    points = {c: p for c, p in defense_points(records_by_group).items() if len(p) >= 2}
    if not points:
        return None
    defenses = sorted({d for p in points.values() for d in p}, key=lambda d: (d != "none", d))
    styles = {d: style(i) for i, d in enumerate(defenses)}
    fig, axes = _grid(len(points), height=3.4, extra=0.4 * math.ceil(len(defenses) / 3))
    for ax, (config, by_defense) in zip(axes, sorted(points.items())):
        xy = []
        for defense, point in by_defense.items():
            utility = point.record.get("utility")
            if utility is None:
                continue
            xy.append((point.leak, utility))
            ax.scatter(point.leak, utility, s=60 if defense == "none" else 40, label=defense, zorder=3,
                       edgecolors="white", linewidths=0.5, **styles[defense])
        front = pareto_front(xy)
        ax.plot([p[0] for p in front], [p[1] for p in front], color="grey", linestyle="--", linewidth=1, zorder=2)
        chance = next((p.record.get("utility_chance") for p in by_defense.values()), None)
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle=":", linewidth=1)
            ax.annotate("chance utility", (1.0, chance), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                        fontsize=8, color="grey")
        ax.axvline(0.0, color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(-0.05, 1.05)
        top = max(u for _, u in xy)
        ax.set_ylim(min([u for _, u in xy] + ([chance] if chance is not None else [])) - 0.05, min(1.0, top + 0.05) + 0.02)
        ax.set_title(_wrap(configuration_title(config)), fontsize=10)
        ax.set_xlabel("worst " + LEAK_LABEL, fontsize=9)
        ax.set_ylabel("utility (test accuracy)", fontsize=9)
        ax.tick_params(labelsize=8)
    handles = [plt.Line2D([], [], linestyle="", markersize=7, **styles[d]) for d in defenses]
    handles.append(plt.Line2D([], [], color="grey", linestyle="--"))
    _legend_below(fig, handles, [*defenses, "Pareto front (less leak, more utility)"])
    return fig


def privacy_utility_scatter(records_by_group: dict, path) -> Path | None:
    fig = privacy_utility_figure(records_by_group)
    return save(fig, path) if fig else None


# --- leakage vs defense strength -----------------------------------------------------------------

def varying_parameter(specs: list[str]) -> str | None:
    """The numeric parameter that takes the most distinct values across one defense's specs."""
    values = defaultdict(set)
    for spec in specs:
        for key, value in parse_spec(spec)[1].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[key].add(value)
    varying = [(len(v), k) for k, v in values.items() if len(v) >= 2]
    return max(varying)[1] if varying else None


def strength_figure(records_by_group: dict):
    """One panel per defense family: the normalized leak of each attack (and seat) on each configuration
    against the parameter that varies, the undefended level dashed; utility below it."""
    families = defaultdict(list)  # family -> [(group, record)]
    undefended = {}
    for group, records in records_by_group.items():
        if group[0] == "none":
            continue
        for r in records:
            if r["defense"] == "none":
                undefended[(group, record_configuration(r))] = r
            elif "+" not in r["defense"] and r.get("leak") is not None:
                families[parse_spec(r["defense"])[0]].append((group, r))
    panels = []
    for family, items in sorted(families.items()):
        key = varying_parameter([r["defense"] for _, r in items])
        if key is not None:
            panels.append((family, key, items))
    if not panels:
        return None
    series_names = sorted({(g, record_configuration(r)) for _, _, items in panels for g, r in items})
    styles = {s: style(i + 1) for i, s in enumerate(series_names)}
    fig, axes = plt.subplots(2, len(panels), figsize=(WIDTH_IN, 6.2 + 0.3 * len(series_names)), squeeze=False,
                             layout="constrained", height_ratios=[3, 2], sharex="col", sharey="row")
    for column, (family, key, items) in enumerate(panels):
        leak_ax, utility_ax = axes[0][column], axes[1][column]
        by_series = defaultdict(list)
        for group, r in items:
            value = parse_spec(r["defense"])[1].get(key)
            if isinstance(value, (int, float)):
                by_series[(group, record_configuration(r))].append((value, r["leak"], r.get("utility")))
        for series, values in sorted(by_series.items()):
            values.sort()
            xs = [v[0] for v in values]
            leak_ax.plot(xs, [v[1] for v in values], linewidth=1.5, **styles[series])
            utility_ax.plot(xs, [v[2] for v in values], linewidth=1.2, **styles[series])
            base = undefended.get(series)
            if base is not None and base.get("leak") is not None:
                leak_ax.axhline(base["leak"], color=styles[series]["color"], linestyle="--", linewidth=0.9, alpha=0.8)
                utility_ax.axhline(base["utility"], color=styles[series]["color"], linestyle="--", linewidth=0.9, alpha=0.8)
        xs = [x for values in by_series.values() for x, _, _ in values]
        if min(xs) > 0 and max(xs) / min(xs) >= 10:
            leak_ax.set_xscale("log")
        leak_ax.set_ylim(-0.05, 1.05)
        utility_ax.set_ylim(0.0, 1.02)
        leak_ax.set_title(f"{family}: {key} varies", fontsize=10)
        leak_ax.set_ylabel(LEAK_LABEL if column == 0 else "", fontsize=9)
        utility_ax.set_ylabel("utility" if column == 0 else "", fontsize=9)
        utility_ax.set_xlabel(f"{family} {key}" + (" (log scale)" if leak_ax.get_xscale() == "log" else ""), fontsize=9)
        for ax in (leak_ax, utility_ax):
            ax.tick_params(labelsize=8)
    handles = [plt.Line2D([], [], **styles[s]) for s in series_names]
    labels = [_wrap(f"{_attack_label(g)} | {configuration_title(c)}", 70) for g, c in series_names]
    handles.append(plt.Line2D([], [], color="grey", linestyle="--"))
    _legend_below(fig, handles, [*labels, "undefended level (same colour)"], columns=2)
    return fig


def leakage_vs_strength(records_by_group: dict, path) -> Path | None:
    fig = strength_figure(records_by_group)
    return save(fig, path) if fig else None


# --- leakage vs cut depth ------------------------------------------------------------------------

def cut_depth_figure(records_by_group: dict, cut_order):
    """Per attack and seat: the undefended normalized leak against the client's cut depth, one line per
    topology (and data set). ``cut_order(record)`` gives the model's cut points in forward order."""
    panels = {}
    for group, records in records_by_group.items():
        if group[0] == "none":
            continue
        lines = defaultdict(dict)
        for r in records:
            if r["defense"] == "none" and r.get("leak") is not None and r["cuts"]:
                order = cut_order(r)
                first = r["cuts"].split()[0]
                if order and first in order:
                    lines[(r["dataset"], r["model"], r["topology"])][order.index(first)] = (first, r["leak"])
        if any(len(points) >= 2 for points in lines.values()):
            panels[group] = lines
    if not panels:
        return None
    line_names = sorted({name for lines in panels.values() for name in lines})
    styles = {name: style(i + 1) for i, name in enumerate(line_names)}
    fig, axes = _grid(len(panels), height=3.4, extra=0.3 * math.ceil(len(line_names) / 3))
    for ax, (group, lines) in zip(axes, sorted(panels.items(), key=lambda item: (item[0][0], item[0][1] or ""))):
        ticks = {}
        for name, points in sorted(lines.items()):
            depths = sorted(points)
            ax.plot(depths, [points[d][1] for d in depths], linewidth=1.5, **styles[name])
            ticks.update({d: points[d][0] for d in depths})
        ax.set_xticks(sorted(ticks), [ticks[d] for d in sorted(ticks)], fontsize=8, rotation=30)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(_wrap(_attack_label(group)), fontsize=10)
        ax.set_xlabel("client's cut (deeper to the right)", fontsize=9)
        ax.set_ylabel(LEAK_LABEL, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    handles = [plt.Line2D([], [], **styles[n]) for n in line_names]
    _legend_below(fig, handles, [" \u00b7 ".join(n) for n in line_names])
    return fig


def leakage_vs_cut_depth(records_by_group: dict, path, cut_order) -> Path | None:
    fig = cut_depth_figure(records_by_group, cut_order)
    return save(fig, path) if fig else None


# --- reconstructions -----------------------------------------------------------------------------

def reconstruction_grid(originals, reconstructions, path, *, title: str = "", max_images: int = 8) -> Path:
    """Originals (top row) above their reconstructions (bottom row)."""
    n = min(max_images, len(originals))
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.8), squeeze=False)
    for i in range(n):
        for row, images in enumerate((originals, reconstructions)):
            image = images[i].detach().float().clamp(0, 1).cpu()
            ax = axes[row][i]
            if image.shape[0] == 1:
                ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image.permute(1, 2, 0).numpy())
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# --- layout check --------------------------------------------------------------------------------

def layout_problems(fig) -> list[str]:
    """Text that overlaps other text or falls outside the figure: titles, axis labels, drawn tick labels,
    annotations and legend entries. Empty when the figure reads cleanly."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bounds = fig.bbox
    boxes = [(t, t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
    problems = [f"clipped: {t.get_text()!r}" for t, box in boxes
                if box.x0 < bounds.x0 - 1 or box.x1 > bounds.x1 + 1 or box.y0 < bounds.y0 - 1 or box.y1 > bounds.y1 + 1]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if _overlap_area(box_a, box_b) > 4:
                problems.append(f"overlap: {a.get_text()!r} and {b.get_text()!r}")
    return problems


def _drawn_texts(fig) -> list:
    texts = list(fig.texts) + [t for legend in fig.legends for t in legend.get_texts()]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        texts += ax.get_legend().get_texts() if ax.get_legend() else []
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            texts += [label for location, label in zip(axis.get_ticklocs(), axis.get_ticklabels())
                      if label.get_visible() and low - span <= location <= high + span]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _overlap_area(a, b) -> float:
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _attack_label(group: tuple) -> str:
    """The attack's name (its settings are in the tables) and seat: ``whitebox-inversion @ server``."""
    attack, seat = group
    name = parse_spec(attack)[0]
    return f"{name} @ {seat}" if seat else name

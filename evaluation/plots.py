"""Audit plots (matplotlib, Agg backend): privacy-utility scatter with Pareto fronts, leakage vs
defense strength, SSIM vs cut depth, reconstruction grids."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from secsplit.specs import parse_spec  # noqa: E402

LEAKAGE_ORDER = ("ssim", "leak_auc", "label_accuracy", "dcor")


def attack_metric(records: list[dict]) -> str | None:
    """The one leakage metric an attack's rows are plotted by: its own (SSIM, leak AUC, label
    accuracy) when any row has it, else dCor. Rows are never plotted on a mixed axis."""
    for name in LEAKAGE_ORDER:
        if any(isinstance(r.get(name), (int, float)) for r in records):
            return name
    return None


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with lower-or-equal leakage and higher-or-equal utility."""
    front, best_utility = [], float("-inf")
    for leak, utility in sorted(points, key=lambda p: (p[0], -p[1])):
        if utility > best_utility:
            front.append((leak, utility))
            best_utility = utility
    return front


def privacy_utility_scatter(records_by_attack: dict[str, list[dict]], path) -> Path | None:
    attacks = [a for a, recs in sorted(records_by_attack.items()) if attack_metric(recs)]
    if not attacks:
        return None
    fig, axes = plt.subplots(1, len(attacks), figsize=(5 * len(attacks), 4), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        points, metric = [], attack_metric(records_by_attack[attack])
        for r in records_by_attack[attack]:
            leak = r.get(metric)
            if not isinstance(leak, (int, float)) or r.get("utility") is None:
                continue
            points.append((leak, r["utility"]))
            ax.scatter(leak, r["utility"], s=30)
            ax.annotate(f"{r['topology']}/{r['defense']}", (leak, r["utility"]), fontsize=6, alpha=0.8)
        front = pareto_front(points)
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", linewidth=1, label="Pareto front")
        ax.set_xlabel(f"{metric} (lower = more private)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"attack: {attack}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def leakage_vs_strength(records_by_attack: dict[str, list[dict]], path) -> Path | None:
    """For each defense swept over a numeric parameter: leakage (and utility) against that parameter."""
    series = defaultdict(list)
    for attack, records in records_by_attack.items():
        metric = attack_metric(records)
        for r in records:
            if r["defense"] == "none":
                continue
            name, params = parse_spec(r["defense"])
            numeric = [(k, v) for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            leak = r.get(metric)
            if not numeric or not isinstance(leak, (int, float)):
                continue
            key, value = numeric[0]
            series[(attack, name, key, metric, r["dataset"], r["topology"])].append((value, leak, r.get("utility")))
    series = {k: sorted(v) for k, v in series.items() if len(v) >= 2}
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.6), squeeze=False)
    for ax, ((attack, defense, key, metric, dataset, topology), values) in zip(axes[0], series.items()):
        xs = [v[0] for v in values]
        ax.plot(xs, [v[1] for v in values], "o-", label=metric)
        ax.plot(xs, [v[2] for v in values], "s--", label="test accuracy")
        ax.set_xlabel(f"{defense} {key}")
        ax.set_title(f"{attack} on {dataset}/{topology}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def ssim_vs_cut_depth(rows: list[dict], path) -> Path | None:
    """SSIM of each reconstruction attack against how deep the client's cut is."""
    from secsplit.models import create_model

    series = defaultdict(dict)
    for row in rows:
        ssim = row.get("leakage", {}).get("ssim") if row.get("status") == "ok" else None
        if ssim is None or not row.get("cuts") or row["training"]["defense"] != "none":
            continue
        t = row["training"]
        series[(row["attack"], t["dataset"], t["model"])].setdefault(row["cuts"][0], []).append(ssim)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for (attack, dataset, model_name), by_cut in series.items():
        shape = (1, 28, 28) if dataset == "mnist" else (1, 8, 8)
        order = create_model(model_name, input_shape=shape, num_classes=10).cut_points
        cuts = sorted(by_cut, key=order.index)
        ax.plot(cuts, [sum(by_cut[c]) / len(by_cut[c]) for c in cuts], "o-", label=f"{attack} ({dataset})")
    ax.set_xlabel("cut point (deeper to the right)")
    ax.set_ylabel("SSIM of reconstructions")
    ax.set_ylim(0, 1)
    ax.axhline(0.3, color="grey", linewidth=0.8, linestyle=":")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


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

"""The seed's efficiency table on the paper's own architectures, each secsplit cell beside the paper's.

Vepakomma et al. 2018 ("Split learning for health", tables 1 and 2) give per-client totals of a
whole training run at 100 and 500 clients: client TFLOPs for VGG on CIFAR-10 and client GB for
ResNet-50 on CIFAR-100. The paper does not say how long it trained, where it cut or how FedAvg and
large-batch SGD were set up, so :func:`implied_settings` solves the cost formulas of
:mod:`secsplit.efficiency` (on FLOPs counted on the meta device for ``vgg16`` and ``resnet50``) for
the settings the paper's numbers imply, and :func:`paper_report` evaluates every cell under one
stated set of them (:class:`Assumptions`).

Over a run of E epochs, per client: split learning and large-batch SGD cost E times their per-epoch
cost (large-batch SGD with a fixed global batch B: ceil(p/B) steps per epoch, each 2·N·4 bytes);
FedAvg runs R rounds of E/R local epochs, the same E passes over the data (the paper's equal FedAvg
and large-batch FLOPs imply it), so E·(p/K)·full FLOPs and R·2·N·4 bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from secsplit.efficiency import (
    METHOD_LABELS, METHODS, ModelCosts, crossover_clients, measure_cut_costs, per_client_costs,
)
from secsplit.errors import ConfigError

CLIENTS = (100, 500)
TOLERANCE = 0.10  # the target: every cell within 10% of the paper's

#: Vepakomma et al. 2018: table 1 (client TFLOPs, VGG, CIFAR-10) and table 2 (client GB, ResNet-50, CIFAR-100).
PAPER_CELLS: dict[str, dict[int, dict[str, float]]] = {
    "tflops": {100: {"large_batch_sgd": 29.4, "fedavg": 29.4, "split": 0.1548},
               500: {"large_batch_sgd": 5.89, "fedavg": 5.89, "split": 0.03}},
    "gb": {100: {"large_batch_sgd": 13.0, "fedavg": 3.0, "split": 6.0},
           500: {"large_batch_sgd": 14.0, "fedavg": 2.4, "split": 1.2}},
}


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's two tables: which model and data it measured, and which quantity."""

    key: str
    model: str
    dataset: str
    num_classes: int
    samples: int
    quantity: str
    row_key: str


TABLES = (
    PaperTable("tflops", "vgg16", "CIFAR-10", 10, 50_000, "client TFLOPs", "client_tflops"),
    PaperTable("gb", "resnet50", "CIFAR-100", 100, 50_000, "client GB", "client_gb"),
)


@dataclass(frozen=True)
class Assumptions:
    """One set of training settings for every cell; the defaults are what :func:`implied_settings` solves for.

    Attributes:
        vgg_epochs: E of the VGG-16 / CIFAR-10 run (table 1).
        resnet_epochs: E of the ResNet-50 / CIFAR-100 run (table 2).
        cut: the client's segment ends after this block in both models (the first conv's ReLU).
        client_input_grad: count the gradient of the client's raw input, as a "backward = 2x forward"
            rule applied to every layer does (split training itself skips it).
        weights_passed: the split client hands its segment's weights on once per epoch (relay).
        fedavg_rounds: R; each round is E/R local epochs.
        global_batch: large-batch SGD's fixed global batch B; ceil(p/B) steps per epoch.
    """

    vgg_epochs: int = 30
    resnet_epochs: int = 23
    cut: str = "relu1"
    client_input_grad: bool = True
    weights_passed: bool = True
    fedavg_rounds: int = 14
    global_batch: int = 20_000

    def epochs(self, table: str) -> int:
        return self.vgg_epochs if table == "tflops" else self.resnet_epochs


def parse_assumptions(pairs: Sequence[str]) -> Assumptions:
    """``["fedavg_rounds=16", "client_input_grad=false"]`` -> :class:`Assumptions` (defaults elsewhere)."""
    fields = {f.name: f for f in dataclasses.fields(Assumptions)}
    values: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name.strip() not in fields:
            raise ConfigError(f"bad assumption {pair!r}: expected NAME=VALUE with NAME one of {', '.join(fields)}")
        name, text = name.strip(), text.strip()
        kind = fields[name].type
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ConfigError(f"assumption {name} must be true or false, got {text!r}")
            values[name] = text.lower() in ("true", "1", "yes")
        elif kind == "int":
            if not text.isdigit() or int(text) < 1:
                raise ConfigError(f"assumption {name} must be a positive integer, got {text!r}")
            values[name] = int(text)
        else:
            values[name] = text
    return Assumptions(**values)


def candidate_cuts(model) -> list[str]:
    """Where a client's segment could end: after the first two ReLUs, and at every stage end (a
    pool, or a stage's last residual block). Deeper cuts hand the client most of the model."""
    points = model.cut_points
    chosen = []
    for cut, after in zip(points, [*points[1:], ""]):
        max_pool = cut.startswith("pool") and cut != "pool"  # vgg's pool{j}; resnet's "pool" is the global one
        stage_end = cut.startswith("layer") and after.split("_")[0] != cut.split("_")[0]
        if cut in ("relu1", "relu2") or max_pool or stage_end:
            chosen.append(cut)
    return chosen


def measure_paper_models(seed: int = 0) -> dict[str, list[ModelCosts]]:
    """Per-sample costs of each table's model at every candidate cut, counted on the meta device
    (shapes only: no weights initialized, no activation memory); cached, as counting takes seconds."""
    return {key: list(costs) for key, costs in _measure_paper_models(seed)}


@functools.lru_cache(maxsize=4)
def _measure_paper_models(seed: int) -> tuple[tuple[str, tuple[ModelCosts, ...]], ...]:
    from secsplit.models import create_model

    measured = []
    for table in TABLES:
        with torch.device("meta"):
            model = create_model(table.model, input_shape=(3, 32, 32), num_classes=table.num_classes, seed=seed)
        costs = measure_cut_costs(model, candidate_cuts(model), name=table.model, device="meta")
        measured.append((table.key, tuple(costs)))
    return tuple(measured)


def client_costs(costs: ModelCosts, assumptions: Assumptions) -> ModelCosts:
    """``costs`` with the client's FLOPs as the assumptions count them (input gradient or not)."""
    if not assumptions.client_input_grad:
        return costs
    return dataclasses.replace(costs, client_flops_per_sample=costs.client_flops_per_sample
                               + costs.client_input_grad_flops_per_sample)


def run_costs(costs: ModelCosts, *, samples: int, clients: int, epochs: int, rounds: int, global_batch: int,
              weights_passed: bool = True) -> list[dict]:
    """Per-client totals of a training run, one row per method (formulas: module docstring)."""
    if rounds < 1 or epochs < 1:
        raise ConfigError(f"epochs and rounds must be >= 1, got {epochs}, {rounds}")
    rows = per_client_costs(costs, samples=samples, clients=clients, global_batch=global_batch,
                            weights_passed=weights_passed)
    for row in rows:
        row["client_flops"] *= epochs
        row["client_bytes"] *= rounds if row["method"] == "fedavg" else epochs
        row.update(client_tflops=row["client_flops"] / 1e12, client_gb=row["client_bytes"] / 1e9, epochs=epochs)
        if row["method"] == "fedavg":
            row.update(rounds=rounds, local_epochs=epochs / rounds)
    return rows


def _at(measured: list[ModelCosts], cut: str) -> ModelCosts:
    for costs in measured:
        if costs.cut == cut:
            return costs
    raise ConfigError(f"cut {cut!r} is not a candidate cut of {measured[0].model}; valid: "
                      f"{', '.join(c.cut for c in measured)}")


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def implied_settings(measured: dict[str, list[ModelCosts]], cut: str = "relu1") -> dict:
    """Solve the cost formulas for what each of the paper's cells implies.

    Table 1 (TFLOPs): the epochs E each FedAvg / large-batch cell implies; the client share of a
    sample's FLOPs the split cells need, against each cut's (strict, and with the input gradient);
    the epochs each split cell implies at ``cut``. Table 2 (GB): per cut, the epochs each split
    cell implies and whether weight passing keeps the paper's 100 -> 500 drop of 5x; the FedAvg
    rounds each cell implies and the best single R; the large-batch steps per epoch.
    """
    vgg, res = measured["tflops"], measured["gb"]
    at, at_res = _at(vgg, cut), _at(res, cut)
    p1, p2 = TABLES[0].samples, TABLES[1].samples
    t1, t2 = PAPER_CELLS["tflops"], PAPER_CELLS["gb"]
    full = vgg[0].full_flops_per_sample
    epochs_fl = {k: t1[k]["fedavg"] * 1e12 / (p1 / k * full) for k in CLIENTS}
    wanted_share = {k: t1[k]["split"] / t1[k]["fedavg"] for k in CLIENTS}
    shares = [{"cut": c.cut, "strict": c.client_flops_per_sample / full,
               "with_input_grad": (c.client_flops_per_sample + c.client_input_grad_flops_per_sample) / full}
              for c in vgg]
    with_grad = at.client_flops_per_sample + at.client_input_grad_flops_per_sample
    epochs_split = {k: t1[k]["split"] * 1e12 / (p1 / k * with_grad) for k in CLIENTS}
    epochs_split_strict = {k: t1[k]["split"] * 1e12 / (p1 / k * at.client_flops_per_sample) for k in CLIENTS}

    per_cut = []
    for c in res:
        activations = {k: 2 * p2 / k * c.cut_size * 4 for k in CLIENTS}
        weights = 2 * c.client_parameters * 4
        e100 = t2[100]["split"] * 1e9 / (activations[100] + weights)
        per_cut.append({"cut": c.cut, "cut_size": c.cut_size, "client_parameters": c.client_parameters,
                        "epochs_from_k100": e100,
                        "epochs_from_k500": t2[500]["split"] * 1e9 / (activations[500] + weights),
                        "drop_100_to_500": (activations[100] + weights) / (activations[500] + weights),
                        "drop_100_to_500_no_weights": activations[100] / activations[500]})
    model_bytes = 2 * res[0].parameters * 4
    rounds = {k: t2[k]["fedavg"] * 1e9 / model_bytes for k in CLIENTS}
    best_rounds = 2 * rounds[100] * rounds[500] / (rounds[100] + rounds[500])  # equal relative miss both ways
    e_res = _geomean([row[f"epochs_from_k{k}"] for row in per_cut if row["cut"] == at_res.cut for k in CLIENTS])
    steps = {k: t2[k]["large_batch_sgd"] * 1e9 / (e_res * model_bytes) for k in CLIENTS}
    e_vgg = _geomean([*epochs_fl.values(), *epochs_fl.values(), *epochs_split.values()])  # log least squares, 6 cells
    return {
        "tflops": {"full_flops_per_sample": full, "epochs_from_fedavg_and_large_batch": epochs_fl,
                   "split_share_wanted": wanted_share, "client_share_by_cut": shares, "cut": cut,
                   "epochs_from_split": epochs_split, "epochs_from_split_strict": epochs_split_strict,
                   "epochs_least_squares": e_vgg},
        "gb": {"parameters": res[0].parameters, "model_bytes": model_bytes, "split_by_cut": per_cut,
               "epochs": e_res, "fedavg_rounds": rounds, "fedavg_best_single_rounds": best_rounds,
               "fedavg_best_single_miss": best_rounds / rounds[500] - 1,
               "large_batch_steps_per_epoch": steps},
        "epochs_ratio_between_tables": e_vgg / e_res,
    }


def paper_cells(measured: dict[str, list[ModelCosts]], assumptions: Assumptions) -> list[dict]:
    """Every cell of the paper's two tables: secsplit's value under ``assumptions``, the paper's, their ratio."""
    cells = []
    for table in TABLES:
        costs = client_costs(_at(measured[table.key], assumptions.cut), assumptions)
        for k in CLIENTS:
            rows = run_costs(costs, samples=table.samples, clients=k, epochs=assumptions.epochs(table.key),
                             rounds=assumptions.fedavg_rounds, global_batch=assumptions.global_batch,
                             weights_passed=assumptions.weights_passed)
            for row in rows:
                paper = PAPER_CELLS[table.key][k][row["method"]]
                ours = row[table.row_key]
                cells.append({"table": table.key, "model": table.model, "dataset": table.dataset,
                              "quantity": table.quantity, "clients": k, "method": row["method"], "secsplit": ours,
                              "paper": paper, "ratio": ours / paper, "within": abs(ours / paper - 1) <= TOLERANCE,
                              "detail": row})
    return cells


def crossover(measured: dict[str, list[ModelCosts]], assumptions: Assumptions) -> dict:
    """Where split learning's client bytes fall below FedAvg's, on table 2's setting and the paper's cells."""
    costs = _at(measured["gb"], assumptions.cut)
    p, e, r = TABLES[1].samples, assumptions.resnet_epochs, assumptions.fedavg_rounds
    k_star = crossover_clients(costs, samples=p, local_epochs=e / r, weights_passed=assumptions.weights_passed)
    t2 = PAPER_CELLS["gb"]
    split_k = _geomean([t2[k]["split"] * k for k in CLIENTS])  # the paper's split GB x K (600 at both K)
    held = costs.client_parameters if assumptions.weights_passed else 0
    size = {k: e * (p / k * costs.cut_size + held) / r for k in CLIENTS}  # N at which FedAvg's bytes equal split's
    return {"model": costs.model, "cut": costs.cut, "clients": k_star, "samples": p, "epochs": e, "rounds": r,
            "paper_clients_range": (split_k / t2[100]["fedavg"], split_k / t2[500]["fedavg"]),
            "parameters": costs.parameters, "parameters_at_crossover": size}


def paper_report(assumptions: Assumptions | None = None, *, seed: int = 0) -> dict:
    """Measure the paper's models, solve for the implied settings, evaluate every cell; JSON-ready."""
    assumptions = assumptions or Assumptions()
    measured = measure_paper_models(seed)
    implied = implied_settings(measured, assumptions.cut)
    cells = paper_cells(measured, assumptions)
    return {"assumptions": dataclasses.asdict(assumptions), "implied": implied, "cells": cells,
            "crossover": crossover(measured, assumptions), "unmatched": derivations(cells, implied, assumptions),
            "models": {t.key: dataclasses.asdict(_at(measured[t.key], assumptions.cut)) for t in TABLES}}


def derivations(cells: Sequence[dict], implied: dict, assumptions: Assumptions) -> list[str]:
    """For each kind of cell outside the tolerance, why the formulas cannot put it inside."""
    missed = {(c["table"], c["method"]) for c in cells if not c["within"]}
    notes = []
    if ("gb", "fedavg") in missed:
        r, best = implied["gb"]["fedavg_rounds"], implied["gb"]["fedavg_best_single_rounds"]
        notes.append(
            f"FedAvg GB: a client downloads and uploads the model once per round, R·2·N·4 bytes whatever K is, "
            f"but the paper's cells drop from {PAPER_CELLS['gb'][100]['fedavg']:g} to {PAPER_CELLS['gb'][500]['fedavg']:g} "
            f"GB (R = {r[100]:.1f} rounds at K = 100, {r[500]:.1f} at K = 500). One value is within 10% of both only if "
            f"their ratio is at most 1.1/0.9 = 1.22; it is {r[100] / r[500]:.2f}, so the best single R "
            f"({best:.2f}) misses both by {implied['gb']['fedavg_best_single_miss']:.1%}. The paper's FedAvg ran "
            f"{1 - r[500] / r[100]:.0%} fewer rounds with 500 clients (e.g. trained to a target accuracy).")
    if ("tflops", "split") in missed:
        shares = implied["tflops"]["client_share_by_cut"]
        wanted = implied["tflops"]["split_share_wanted"][100]
        counted = "with" if assumptions.client_input_grad else "without"
        listed = ", ".join(f"{s['cut']} {s['with_input_grad' if assumptions.client_input_grad else 'strict']:.4f}"
                           for s in shares[:3])
        notes.append(
            f"Split TFLOPs: with FedAvg's cells fixing E, the split cells need the client's share of a sample's "
            f"FLOPs to be {wanted:.4f}; counted {counted} the input gradient the first cuts give {listed}. "
            f"No cut matches unless the count includes the input gradient (client_input_grad=true).")
    for table, method in sorted(missed - {("gb", "fedavg"), ("tflops", "split")}):
        worst = max((c for c in cells if (c["table"], c["method"]) == (table, method)), key=lambda c: abs(c["ratio"] - 1))
        notes.append(f"{worst['quantity']} {METHOD_LABELS[method]}: ratio {worst['ratio']:.2f} at K = {worst['clients']} "
                     f"under these assumptions; see `implied` for the value each cell asks for.")
    return notes


def paper_markdown(report: dict) -> str:
    """The cells beside the paper's, the assumptions, what the cells imply, the crossover; Markdown."""
    lines = ["| table | clients | method | secsplit | paper | secsplit / paper |", "|---|---|---|---|---|---|"]
    for c in report["cells"]:
        flag = "" if c["within"] else " (outside 10%)"
        lines.append(f"| {c['quantity']}, {c['model']} {c['dataset']} | {c['clients']} | {METHOD_LABELS[c['method']]} "
                     f"| {c['secsplit']:.4g} | {c['paper']:g} | {c['ratio']:.3f}{flag} |")
    lines += ["", "Assumptions (one set for every cell):", ""] + [f"- {line}" for line in _assumption_lines(report)]
    lines += ["", "What each cell implies (solving the formulas):", ""] + [f"- {line}" for line in _implied_lines(report)]
    if report["unmatched"]:
        lines += ["", "Cells the formulas cannot match:", ""] + [f"- {note}" for note in report["unmatched"]]
    x = report["crossover"]
    lo, hi = x["paper_clients_range"]
    by_size = ", ".join(f"N = {v / 1e6:.1f}M parameters at K = {k}" for k, v in x["parameters_at_crossover"].items())
    lines += ["", f"Crossover (table 2's setting): split learning's client bytes fall below FedAvg's above "
              f"K* = p·q / (N·R/E - eta·N) = {x['clients']:.0f} clients ({x['model']}, cut {x['cut']}, E = {x['epochs']}, "
              f"R = {x['rounds']}); the paper's own cells put it between {lo:.0f} and {hi:.0f}. By model size: above "
              f"{by_size} (ResNet-50: {x['parameters'] / 1e6:.1f}M)."]
    return "\n".join(lines) + "\n"


def _assumption_lines(report: dict) -> list[str]:
    a, m1, m2 = report["assumptions"], report["models"]["tflops"], report["models"]["gb"]
    grad = m1["client_input_grad_flops_per_sample"] if a["client_input_grad"] else 0
    return [
        f"VGG-16 / CIFAR-10 trained {a['vgg_epochs']} epochs, ResNet-50 / CIFAR-100 {a['resnet_epochs']} epochs, "
        "p = 50,000 samples spread evenly over the K clients.",
        f"Cut after {a['cut']} (the first conv layer and its BN/ReLU) in both: q = {m1['cut_size']:,} (VGG-16), "
        f"{m2['cut_size']:,} (ResNet-50) floats per sample; client segment {m1['client_parameters']:,} / "
        f"{m2['client_parameters']:,} of {m1['parameters']:,} / {m2['parameters']:,} parameters.",
        f"Client FLOPs {'include' if a['client_input_grad'] else 'exclude'} the gradient of the raw input "
        f"({(m1['client_flops_per_sample'] + grad) / 1e6:.2f} MFLOPs per VGG-16 sample; whole model "
        f"{m1['full_flops_per_sample'] / 1e9:.3f} GFLOPs).",
        f"Split learning {'passes' if a['weights_passed'] else 'does not pass'} the client segment's weights from "
        "client to client once per epoch.",
        f"FedAvg: {a['fedavg_rounds']} rounds of E/{a['fedavg_rounds']} local epochs (the same E passes over the "
        "data); model down and up each round (2·N·4 bytes).",
        f"Large-batch SGD: global batch {a['global_batch']:,} ({math.ceil(50_000 / a['global_batch'])} steps per "
        "epoch), gradient up and weights down each step.",
    ]


def _implied_lines(report: dict) -> list[str]:
    imp = report["implied"]
    t1, t2 = imp["tflops"], imp["gb"]

    def per_k(values: dict, fmt: str = ".2f") -> str:
        return ", ".join(f"K = {k}: {v:{fmt}}" for k, v in values.items())

    shares = ", ".join(f"{s['cut']} {s['strict']:.4f} / {s['with_input_grad']:.4f}" for s in t1["client_share_by_cut"][:4])
    cuts = "; ".join(f"{r['cut']} q = {r['cut_size']:,}: {r['epochs_from_k100']:.1f} / {r['epochs_from_k500']:.1f}, "
                     f"{r['drop_100_to_500']:.2f}" for r in t2["split_by_cut"])
    ratio = imp["epochs_ratio_between_tables"]
    lines = [
        f"Table 1, epochs from FedAvg / large-batch cells: {per_k(t1['epochs_from_fedavg_and_large_batch'])}; from split "
        f"cells at {t1['cut']}: {per_k(t1['epochs_from_split'])} (with the input gradient), "
        f"{per_k(t1['epochs_from_split_strict'])} (without); log least squares over the six cells: "
        f"{t1['epochs_least_squares']:.2f}.",
        f"Table 1, client share of a sample's FLOPs the split cells need: {per_k(t1['split_share_wanted'], '.4f')}; "
        f"by cut (without / with input gradient): {shares}.",
        f"Table 2, split cells by cut (epochs from K = 100 / K = 500; drop from 100 to 500 clients with weights "
        f"passed, paper 5.00): {cuts}.",
        f"Table 2, FedAvg rounds: {per_k(t2['fedavg_rounds'])}; best single R {t2['fedavg_best_single_rounds']:.2f}. "
        f"Large-batch steps per epoch at E = {t2['epochs']:.2f}: {per_k(t2['large_batch_steps_per_epoch'])}.",
        f"Epochs implied by table 1 over those of table 2: {ratio:.2f}",
    ]
    if ratio > 1.1 / 0.9:
        lines[-1] += (" (> 1.1/0.9 = 1.22: one E for both tables would miss one of them by more than 10%, so each "
                      "table has its own E).")
    return lines


def plot_paper(report: dict, path) -> Path:
    """Log-scale bars, secsplit solid beside the paper hatched, for both tables; and table 2's bytes against K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    width = 0.8 / (2 * len(METHODS))
    for ax, table in zip(axes[:2], TABLES):
        cells = {(c["clients"], c["method"]): c for c in report["cells"] if c["table"] == table.key}
        for i, method in enumerate(METHODS):
            for j, source in enumerate(("secsplit", "paper")):
                offset = (2 * i + j - (2 * len(METHODS) - 1) / 2) * width
                ax.bar([g + offset for g in range(len(CLIENTS))], [cells[(k, method)][source] for k in CLIENTS], width,
                       color=colors[method], alpha=1.0 if j == 0 else 0.45, hatch=None if j == 0 else "//",
                       edgecolor="black", linewidth=0.4,
                       label=f"{METHOD_LABELS[method]}, {source}" if table.key == "tflops" else None)
        ax.set_xticks(range(len(CLIENTS)), [f"K = {k}" for k in CLIENTS])
        ax.set_yscale("log")
        ax.set_ylim(bottom=min(min(c["secsplit"], c["paper"]) for c in cells.values()) / 2)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel(f"{table.quantity} per client, whole run")
        ax.set_title(f"{table.model}, {table.dataset}", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    _plot_crossover(axes[2], report)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Vepakomma et al. 2018 tables 1-2: secsplit (solid) beside the paper (hatched)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_crossover(ax, report: dict) -> None:
    a, costs, x = report["assumptions"], report["models"]["gb"], report["crossover"]
    costs = ModelCosts(**costs)
    ks = sorted({round(10 ** (1 + i / 20)) for i in range(61)})
    series = {m: [] for m in METHODS}
    for k in ks:
        for row in run_costs(costs, samples=x["samples"], clients=k, epochs=a["resnet_epochs"], rounds=a["fedavg_rounds"],
                             global_batch=a["global_batch"], weights_passed=a["weights_passed"]):
            series[row["method"]].append(row["client_gb"])
    for i, method in enumerate(METHODS):
        ax.plot(ks, series[method], color=f"C{i}", label=METHOD_LABELS[method])
        ax.scatter(CLIENTS, [PAPER_CELLS["gb"][k][method] for k in CLIENTS], color=f"C{i}", marker="x", zorder=3)
    ax.axvline(x["clients"], color="grey", linestyle="--", linewidth=0.8)
    ax.text(x["clients"] * 1.1, 0.03, f"K* = {x['clients']:.0f}", transform=ax.get_xaxis_transform(), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clients K")
    ax.set_ylabel("client GB, whole run")
    ax.set_title("resnet50, CIFAR-100: crossover (x = paper)", fontsize=10)
    ax.grid(alpha=0.3, which="both")


__all__ = ["CLIENTS", "PAPER_CELLS", "TABLES", "Assumptions", "candidate_cuts", "crossover", "derivations",
           "implied_settings", "measure_paper_models", "paper_cells", "paper_markdown", "paper_report",
           "parse_assumptions", "plot_paper", "run_costs"]

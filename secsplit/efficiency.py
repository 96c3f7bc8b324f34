"""Per-client cost of an epoch: split learning vs FedAvg vs large-batch SGD (Vepakomma et al. 2018).

The cost model of "Split learning for health: distributed deep learning without sharing raw patient
data" (Vepakomma, Gupta, Swedish, Raskar 2018, table 1), evaluated on *measured* quantities: the
FLOPs of one forward and backward pass per sample, counted with ``torch.utils.flop_counter``
(matrix products and convolutions, as :mod:`secsplit.accounting` counts them), of the client's
segment and of the whole model, and the models' parameter counts and cut sizes. Per client and
epoch, with p training samples over K clients, cut size q (floats per sample), N parameters of
which the client's segment holds a share eta, float32 values (4 bytes):

* split learning (sequential relay, the client segment's weights passed from client to client):
  FLOPs = (p/K) · client-segment fwd+bwd per sample;
  bytes = 2·(p/K)·q·4 (activations up, gradients down) + 2·eta·N·4 (weights received and passed on).
* FedAvg (one round of ``local_epochs`` local epochs): FLOPs = (p/K) · full fwd+bwd per sample ·
  local_epochs; bytes = 2·N·4 (model down and up).
* large-batch synchronous SGD (global batch B = K·b, or a fixed B): FLOPs = (p/K) · full fwd+bwd
  per sample; bytes = 2·N·4 per step (gradient up, weights down) · ceil(p / B) steps.

Costs do not depend on pixel values, so the inputs are synthetic. Labels, which vanilla split
learning also sends (8 bytes per sample), are left out, as in the paper. Split learning's bytes fall
as 1/K while FedAvg's do not, so it sends less above K* = p·q / (N/local_epochs - eta·N)
(:func:`crossover_clients`). :mod:`secsplit.efficiency_paper` evaluates all this on the paper's own
architectures and solves the paper's numbers for the training settings they imply.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from secsplit.errors import ConfigError

METHODS = ("split", "fedavg", "large_batch_sgd")
METHOD_LABELS = {"split": "split learning", "fedavg": "federated learning (FedAvg)",
                 "large_batch_sgd": "large-batch sync. SGD"}

#: Vepakomma et al. 2018, table 1: client TFLOPs per epoch for VGG on CIFAR-10 (p = 50,000).
PAPER_CLIENT_TFLOPS = {
    100: {"large_batch_sgd": 29.4, "fedavg": 29.4, "split": 0.1548},
    500: {"large_batch_sgd": 5.89, "fedavg": 5.89, "split": 0.03},
}

SCALE_NOTE = ("secsplit's models are much smaller than the paper's VGG (resnet is ResNet-8, vgg is VGG-11 at a "
              "quarter of the width), so compare shapes and ratios (split/FL, 100 vs 500 clients), not absolute "
              "values; `secsplit efficiency --paper` sets the paper's VGG-16 and ResNet-50 beside its cells.")


@dataclass(frozen=True)
class ModelCosts:
    """The measured quantities the cost model needs for one model and cut.

    Attributes:
        model: a name for the table.
        cut: the cut point after which the client's segment ends.
        cut_size: q, floats per sample crossing the cut.
        parameters: N, the whole model's parameters.
        client_parameters: eta·N, the parameters of the client's segment.
        client_flops_per_sample: FLOPs of the client segment's forward and backward per sample
            (no gradient for the raw input, as in split training).
        full_flops_per_sample: FLOPs of the whole model's forward, loss and backward per sample.
        client_input_grad_flops_per_sample: FLOPs a client would add by also computing the gradient
            of its raw input; split training skips it, but a "backward = 2x forward" rule of thumb
            for every layer counts it (the paper's numbers imply that rule, see
            :mod:`secsplit.efficiency_paper`).
    """

    model: str
    cut: str
    cut_size: int
    parameters: int
    client_parameters: int
    client_flops_per_sample: float
    full_flops_per_sample: float
    client_input_grad_flops_per_sample: float = 0.0

    @property
    def eta(self) -> float:
        """The client's share of the model's parameters."""
        return self.client_parameters / self.parameters


def measure_model_costs(model, *, cut: str | None = None, name: str | None = None, batch_size: int = 2,
                        seed: int = 0, device: str | None = None) -> ModelCosts:
    """Measure per-sample FLOPs and parameter counts of a :class:`secsplit.models.CuttableModel`.

    Runs one training-mode forward and backward pass of a synthetic batch of ``batch_size``
    (>= 2, so BatchNorm works) on a copy of the model, once for the client's segment (the blocks
    up to ``cut``, default the model's shallow cut) and once for the whole model with a
    cross-entropy loss; ``model`` itself is not touched. ``device="meta"`` counts on the meta
    device: shapes only, so a full-size model costs no activation memory and almost no time.

    Raises:
        UnknownNameError: ``cut`` is not a cut point of the model.
        ConfigError: ``model`` is not cuttable, or ``batch_size`` < 2.
    """
    return measure_cut_costs(model, [cut] if cut else None, name=name, batch_size=batch_size, seed=seed,
                             device=device)[0]


def measure_cut_costs(model, cuts: Sequence[str] | None = None, *, name: str | None = None, batch_size: int = 2,
                      seed: int = 0, device: str | None = None) -> list[ModelCosts]:
    """:func:`measure_model_costs` for several cuts of one model, measuring the whole model once."""
    from secsplit.models import CuttableModel
    from secsplit.split import split

    if not isinstance(model, CuttableModel):
        raise ConfigError(f"measure_model_costs needs a CuttableModel, got {type(model).__name__}")
    if batch_size < 2:
        raise ConfigError(f"batch_size must be >= 2 (BatchNorm needs two samples), got {batch_size}")
    work = copy.deepcopy(model).train()
    if device is not None:
        work = work.to(device)
    cuts = list(cuts) if cuts else [work.suggested_cuts(1)[0]]
    reference = next(work.parameters())
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, *work.input_shape, generator=generator).to(reference)
    y = (torch.arange(batch_size) % work.num_classes).to(reference.device)
    with FlopCounterMode(display=False) as mode:
        F.cross_entropy(work(x), y).backward()
    full_flops = mode.get_total_flops() / batch_size
    parameters = sum(p.numel() for p in work.parameters())
    results = []
    for cut in cuts:
        client = split(work, [cut])[0]
        flops = []
        for needs_input_grad in (False, True):
            work.zero_grad(set_to_none=True)
            inputs = x.detach().requires_grad_(needs_input_grad)
            with FlopCounterMode(display=False) as mode:
                out = client(inputs)
                out.backward(torch.ones_like(out))
            flops.append(mode.get_total_flops() / batch_size)
        results.append(ModelCosts(
            model=name or type(model).__name__, cut=cut, cut_size=int(out[0].numel()), parameters=parameters,
            client_parameters=sum(p.numel() for p in client.parameters()),
            client_flops_per_sample=float(flops[0]), full_flops_per_sample=float(full_flops),
            client_input_grad_flops_per_sample=float(flops[1] - flops[0]),
        ))
    return results


def per_client_costs(costs: ModelCosts, *, samples: int, clients: int, local_epochs: int = 1,
                     per_client_batch: int = 10, global_batch: int | None = None,
                     weights_passed: bool = True) -> list[dict]:
    """One row per method: a client's FLOPs and bytes for one epoch over ``samples`` training
    samples shared by ``clients`` clients (the module docstring gives the formulas).

    ``global_batch`` fixes large-batch SGD's global batch B (steps = ceil(p / B), each client
    computing B/K samples) instead of K·``per_client_batch``; ``weights_passed=False`` drops split
    learning's client-to-client weight transfer (e.g. one client, or weights not counted).
    """
    for label, value in (("samples", samples), ("clients", clients), ("local_epochs", local_epochs),
                         ("per_client_batch", per_client_batch),
                         *((("global_batch", global_batch),) if global_batch is not None else ())):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    if clients > samples:
        raise ConfigError(f"cannot spread {samples} samples over {clients} clients")
    share = samples / clients
    n_bytes = 4 * costs.parameters
    batch = clients * per_client_batch if global_batch is None else global_batch
    steps = math.ceil(samples / batch)
    values = {
        "split": (share * costs.client_flops_per_sample,
                  2 * share * costs.cut_size * 4 + (2 * costs.client_parameters * 4 if weights_passed else 0)),
        "fedavg": (share * costs.full_flops_per_sample * local_epochs, 2 * n_bytes),
        "large_batch_sgd": (share * costs.full_flops_per_sample, 2 * n_bytes * steps),
    }
    base = {"model": costs.model, "clients": clients, "samples": samples, "samples_per_client": share,
            "cut": costs.cut, "cut_size": costs.cut_size, "parameters": costs.parameters,
            "client_parameters": costs.client_parameters}
    return [{**base, "method": method, "client_flops": flops, "client_tflops": flops / 1e12,
             "client_bytes": n, "client_gb": n / 1e9,
             **({"steps": steps, "global_batch": batch} if method == "large_batch_sgd" else {}),
             **({"local_epochs": local_epochs} if method == "fedavg" else {})}
            for method, (flops, n) in values.items()]


def crossover_clients(costs: ModelCosts, *, samples: int, local_epochs: float = 1.0,
                      weights_passed: bool = True) -> float:
    """K* at which split learning's client bytes per epoch equal FedAvg's; split sends less above it.

    Split: 8·(p/K)·q + 8·eta·N (if weights are passed); FedAvg with ``local_epochs`` per round:
    8·N / local_epochs per epoch. So K* = p·q / (N/local_epochs - eta·N); ``math.inf`` when
    split learning never sends less (its weight transfer alone matches FedAvg's).
    """
    if samples < 1 or local_epochs <= 0:
        raise ConfigError(f"need samples >= 1 and local_epochs > 0, got {samples}, {local_epochs}")
    room = costs.parameters / local_epochs - (costs.client_parameters if weights_passed else 0)
    return samples * costs.cut_size / room if room > 0 else math.inf


def efficiency_table(models: Sequence[str] = ("resnet", "vgg"), clients: Sequence[int] = (100, 500), *,
                     samples: int = 50_000, cut: str | None = None, input_shape: Sequence[int] = (3, 32, 32),
                     num_classes: int = 10, local_epochs: int = 1, per_client_batch: int = 10,
                     model_options: dict[str, dict] | None = None, seed: int = 0) -> list[dict]:
    """Client cost per epoch of the three methods for each model and client count (CIFAR-10 size
    by default: 3x32x32 inputs, 10 classes, 50,000 training samples)."""
    from secsplit.models import create_model

    if not models or not clients:
        raise ConfigError("need at least one model and one client count")
    rows = []
    for name in models:
        model = create_model(name, input_shape=input_shape, num_classes=num_classes, seed=seed,
                             **(model_options or {}).get(name, {}))
        costs = measure_model_costs(model, cut=cut, name=name, seed=seed)
        for k in clients:
            rows.extend(per_client_costs(costs, samples=samples, clients=k, local_epochs=local_epochs,
                                         per_client_batch=per_client_batch))
    return rows


def split_ratios(rows: Sequence[dict]) -> list[dict]:
    """Per model and client count: split learning's cost over FedAvg's and large-batch SGD's,
    with the paper's FLOP ratio for the same client count where it has one (VGG)."""
    grouped: dict[tuple, dict] = {}
    for row in rows:
        grouped.setdefault((row["model"], row["clients"]), {})[row["method"]] = row
    out = []
    for (model, k), by in grouped.items():
        if not set(METHODS) <= set(by):
            continue
        paper = PAPER_CLIENT_TFLOPS.get(k)
        out.append({
            "model": model, "clients": k,
            "flops_split_over_fedavg": by["split"]["client_flops"] / by["fedavg"]["client_flops"],
            "bytes_split_over_fedavg": by["split"]["client_bytes"] / by["fedavg"]["client_bytes"],
            "bytes_split_over_large_batch": by["split"]["client_bytes"] / by["large_batch_sgd"]["client_bytes"],
            "paper_flops_split_over_fl": paper["split"] / paper["fedavg"] if paper else None,
        })
    return out


def markdown_report(rows: Sequence[dict]) -> str:
    """The table, the split/FL ratios next to the paper's, and the note on scale, as Markdown."""
    lines = ["| model | clients | method | client TFLOPs / epoch | client GB / epoch | paper TFLOPs (VGG) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        paper = PAPER_CLIENT_TFLOPS.get(row["clients"], {}).get(row["method"])
        lines.append(f"| {row['model']} | {row['clients']} | {METHOD_LABELS[row['method']]} | "
                     f"{row['client_tflops']:.4g} | {row['client_gb']:.4g} | {'' if paper is None else paper} |")
    lines += ["", "| model | clients | split/FL TFLOPs | paper split/FL TFLOPs | split/FL GB | split/large-batch GB |",
              "|---|---|---|---|---|---|"]
    for r in split_ratios(rows):
        paper = "" if r["paper_flops_split_over_fl"] is None else f"{r['paper_flops_split_over_fl']:.4f}"
        lines.append(f"| {r['model']} | {r['clients']} | {r['flops_split_over_fedavg']:.4f} | {paper} | "
                     f"{r['bytes_split_over_fedavg']:.3g} | {r['bytes_split_over_large_batch']:.3g} |")
    models: dict[str, dict] = {}
    for row in rows:
        models.setdefault(row["model"], row)
    lines += ["", "| model | parameters N | cut | cut size q | client share eta |", "|---|---|---|---|---|"]
    for name, row in models.items():
        lines.append(f"| {name} | {row['parameters']:,} | {row['cut']} | {row['cut_size']:,} | "
                     f"{row['client_parameters'] / row['parameters']:.4f} |")
    p = rows[0]["samples"] if rows else 0
    lines += ["", f"Per client, one epoch over p = {p:,} training samples; FLOPs measured with "
              "torch's FlopCounterMode (matmuls and convolutions, forward + backward); FedAvg is one round of "
              "its local epochs; bytes are float32 values. Paper: Vepakomma et al. 2018, \"Split learning for "
              "health\", table 1 (VGG on CIFAR-10). " + SCALE_NOTE]
    return "\n".join(lines) + "\n"


def plot_efficiency(rows: Sequence[dict], path) -> Path:
    """Grouped bars (log scale): client TFLOPs and GB per epoch for each model and client count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((r["model"], r["clients"]) for r in rows))
    value = {(r["model"], r["clients"], r["method"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 2.4 * len(groups)), 4))
    width = 0.8 / len(METHODS)
    for ax, key, label in ((axes[0], "client_tflops", "client TFLOPs per epoch"),
                           (axes[1], "client_gb", "client GB per epoch")):
        for i, method in enumerate(METHODS):
            xs = [g + (i - (len(METHODS) - 1) / 2) * width for g in range(len(groups))]
            ys = [value[(m, k, method)][key] for m, k in groups]
            ax.bar(xs, ys, width, label=METHOD_LABELS[method])
        ax.set_xticks(range(len(groups)), [f"{m}\nK={k}" for m, k in groups])
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(METHODS), fontsize=8, frameon=False)
    fig.suptitle("Per-client cost per epoch (measured FLOPs, Vepakomma et al. 2018 cost model)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["METHODS", "PAPER_CLIENT_TFLOPS", "SCALE_NOTE", "ModelCosts", "crossover_clients", "efficiency_table",
           "markdown_report", "measure_cut_costs", "measure_model_costs", "per_client_costs", "plot_efficiency",
           "split_ratios"]

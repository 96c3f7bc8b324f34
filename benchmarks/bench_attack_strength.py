"""Attack strength on trained models: each attack against its published number and the chance level.

Label attacks (``label``): the norm attack (Li et al.'s norm score and the label-free spectral score)
and the cosine attack (one known label per class in all, and one per batch) on
breast-cancer-imbalanced under the audit's default training (mlp, vanilla, labels at the server,
Adam lr 1e-3, batch 32), per-epoch pooled leak AUC over ``--seeds`` seeds; ``clustering`` and
``completion``: gradient clustering and model completion on digits (40 known labels) at two cuts.
Reconstruction (``whitebox``, ``inverse``): MNIST LeNet trained to >= 0.95 test accuracy, per cut,
32 held-out test images, SSIM mean +- sd over seeds (each seed its own trained model).

``fsha``: the feature-space hijack on MNIST LeNet relu1 within ``--minutes`` CPU-minutes, with the
decoder's error on the pilot's features of the same targets (what a perfect hijack would give).

Run: ``python benchmarks/bench_attack_strength.py label|clustering|completion|whitebox|inverse|fsha [--seeds N]``.
One torch thread; every number in benchmarks/README.md's "Attack strength" section comes from it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from secsplit.attacks import create_attack
from secsplit.data import load_dataset
from secsplit.models import create_model
from secsplit.optim import OptimizerSpec
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def ms(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


# -- label attacks -----------------------------------------------------------------------------------
def label(args) -> None:
    data = load_dataset("breast-cancer-imbalanced")
    specs = {"norm (Li et al.)": ("norm-attack", {}), "norm, spectral score": ("norm-attack", {"score": "spectral"}),
             "cosine, 1 known label per class": ("cosine-attack", {}),
             "cosine, 1 known positive per batch": ("cosine-attack", {"known_per_batch": True})}
    curves = {k: [] for k in specs}
    chance, known = [], {k: [] for k in specs}
    for seed in range(args.seeds):
        net = create_model("mlp", input_shape=data.input_shape, num_classes=2, seed=seed)
        topology = build_topology("vanilla", net, optimizer=OptimizerSpec(), label_source="label_owner")
        attacks = {k: create_attack(n, dataset=data, seed=seed, **kw) for k, (n, kw) in specs.items()}
        Trainer(topology, epochs=args.epochs, batch_size=32, seed=seed, callbacks=list(attacks.values()),
                progress=False).fit(data)
        for k, attack in attacks.items():
            result = attack.result()
            curves[k].append([r["pooled_auc"] for r in result.per_epoch])
            known[k].append(result.info.get("distinct_known_samples", 0))
        chance.append(pooled_chance(data.y_train.numpy(), seed))
    print(f"breast-cancer-imbalanced, mlp, vanilla, Adam 1e-3, batch 32, {args.seeds} seeds; "
          f"pooled leak AUC per epoch (mean over seeds); pooled chance {ms(chance)}\n")
    print("| attack | " + " | ".join(f"ep {e + 1}" for e in range(args.epochs)) + " | best epoch: mean ± sd | distinct known labels |")
    print("|---|" + "---|" * (args.epochs + 2))
    for k, rows in curves.items():
        rows = np.asarray(rows)
        best = int(rows.mean(0).argmax())
        print(f"| {k} | " + " | ".join(f"{v:.3f}" for v in rows.mean(0)) +
              f" | {ms(rows[:, best])} (epoch {best + 1}) | {int(np.mean(known[k]))} |")


def pooled_chance(y: np.ndarray, seed: int, rounds: int = 200) -> float:
    """Symmetric pooled AUC that random scores reach on these labels (max(AUC, 1 - AUC))."""
    from secsplit.attacks.label_base import auc_rows

    rng = np.random.default_rng(seed)
    auc = auc_rows(rng.random((rounds, len(y))), np.broadcast_to(y.astype(bool), (rounds, len(y))))
    return float(np.maximum(auc, 1 - auc).mean())


def clustering(args) -> None:
    data = load_dataset("digits")
    for cut in ("relu1", "relu2"):
        accuracy = []
        for seed in range(args.seeds):
            net = create_model("mlp", input_shape=data.input_shape, num_classes=10, seed=seed)
            topology = build_topology("vanilla", net, optimizer=OptimizerSpec(), label_source="label_owner", cuts=[cut])
            attack = create_attack("gradient-clustering", dataset=data, seed=seed)
            Trainer(topology, epochs=args.epochs, batch_size=32, seed=seed, callbacks=[attack], progress=False).fit(data)
            accuracy.append(max(r["accuracy"] for r in attack.per_epoch))
        print(f"| gradient-clustering | digits mlp {cut} | {ms(accuracy)} | chance 0.10 |")


def completion(args) -> None:
    data = load_dataset("digits")
    keys = ("accuracy", "scratch_accuracy", "logistic_accuracy", "spreading_accuracy", "random_bottom_accuracy", "gain")
    print("| cut | head | " + " | ".join(keys) + " |\n|---|---|" + "---|" * len(keys))
    for cut in ("relu1", "relu2"):
        for head, semi in (("logistic", True), ("logistic", False), ("mlp", False)):
            rows = {k: [] for k in keys}
            for seed in range(args.seeds):
                net = create_model("mlp", input_shape=data.input_shape, num_classes=10, seed=seed)
                topology = build_topology("vanilla", net, optimizer=OptimizerSpec(), label_source="label_owner", cuts=[cut])
                attack = create_attack("model-completion", dataset=data, seed=seed, head=head, semi_supervised=semi)
                Trainer(topology, epochs=args.epochs, batch_size=32, seed=seed, callbacks=[attack], progress=False).fit(data)
                last = attack.per_epoch[-1]
                for k in keys:
                    rows[k].append(last.get(k, np.nan))
            name = f"{head}{' + label spreading' if semi else ''}"
            print(f"| {cut} | {name} | " + " | ".join(ms(rows[k]) if not np.isnan(rows[k]).all() else "-" for k in keys) + " |",
                  flush=True)


# -- reconstruction ------------------------------------------------------------------------------------
CACHE = os.path.join(os.path.dirname(__file__), "..", "results", "bench_attack_strength")


def trained_lenet(data, seed: int, epochs: int = 8):
    """LeNet trained on the MNIST sample (vanilla, Adam 1e-3, batch 64), cached under results/."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"lenet-seed{seed}-epochs{epochs}.pt")
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=seed)
    if os.path.exists(path):
        saved = torch.load(path)
        model.load_state_dict(saved["state"])
        return model, saved["accuracy"]
    report = Trainer(build_topology("vanilla", model, cuts=["relu1"]), epochs=epochs, batch_size=64, seed=seed,
                     progress=False).fit(data)
    accuracy = report.summary["test_accuracy"]
    torch.save({"state": model.state_dict(), "accuracy": accuracy}, path)
    return model, accuracy


def reconstruction(args, attack_name: str) -> None:
    from secsplit.evaluation.metrics import ssim

    data = load_dataset("mnist", seed=0)
    targets = data.x_test[-args.targets:]
    mean_image = data.x_train.mean(0, keepdim=True).expand_as(targets)
    print(f"mean-image SSIM {ssim(mean_image, targets, data_range=1.0):.3f}")
    params = json.loads(args.params) if args.params else {}
    for cut in args.cuts:
        scores, seconds, cpu_seconds, accuracies, extra = [], [], [], [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            model, accuracy = trained_lenet(data, seed)
            topology = build_topology("vanilla", model, cuts=[cut])
            attack = create_attack(attack_name, targets=targets, seed=seed, **params)
            attack.check_applicable(topology, data)
            attack.attach(topology)
            start, cpu = time.perf_counter(), time.process_time()
            result = attack.result()
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu)
            scores.append(ssim(result.reconstructions, result.originals, data_range=1.0))
            accuracies.append(accuracy)
            extra.append({k: result.info[k] for k in ("stalled", "starts_kept", "best_epoch") if k in result.info})
            print(f"  {cut} seed {seed}: SSIM {scores[-1]:.3f}, {seconds[-1]:.0f} s wall, {cpu_seconds[-1]:.0f} s CPU, "
                  f"{extra[-1]}", flush=True)
        print(f"| {attack_name} | {cut} | {ms(accuracies)} | {ms(scores)} | {np.mean(seconds):.0f} s wall, "
              f"{np.mean(cpu_seconds):.0f} s CPU | {params} |", flush=True)


def fsha(args) -> None:
    """FSHA on MNIST LeNet relu1 within a CPU-time budget, and what bounds its error: the decoder applied to
    the pilot's features of the same targets (a perfect hijack) against the client's features (the attack)."""
    from secsplit.callbacks import Callback
    from secsplit.errors import TrainingStopped
    from secsplit.evaluation.metrics import mse, ssim

    data = load_dataset("mnist", seed=0)
    targets = data.x_test[-args.targets:]
    params = json.loads(args.params) if args.params else {}

    class Budget(Callback):
        def __init__(self):
            self.start = time.process_time()

        def on_step_end(self, *, step, loss):
            if time.process_time() - self.start > 60 * args.minutes:
                raise TrainingStopped("CPU budget spent")

    def measure(attack, label):
        attack._observed_targets = None  # the client runs inference on the targets with its current weights
        result = attack.result()
        with torch.no_grad():
            attack.decoder.eval()
            pilot = attack.decoder(attack._pilot_features(targets))
            aux = attack.auxiliary[:256]
            aux_rec = attack.decoder(attack._pilot_features(aux))
            attack.decoder.train()
        print(f"| {label} | {len(attack.history)} | {mse(result.reconstructions, targets):.4f} | "
              f"{ssim(result.reconstructions, targets, data_range=1.0):.3f} | {mse(pilot, targets):.4f} | "
              f"{mse(aux_rec, aux):.4f} | {attack.history[-1]['critic_distance']:.3f} |", flush=True)

    for seed in range(args.seeds):
        model = create_model("lenet", input_shape=(1, 28, 28), num_classes=10, seed=seed)
        topology = build_topology("vanilla", model, cuts=["relu1"])
        attack = create_attack("fsha", targets=targets, seed=seed, **params)
        attack.check_applicable(topology, data)
        print(f"seed {seed}, {params}\n| when | hijacked steps | MSE (attack) | SSIM | MSE decoder(pilot(targets)) | "
              f"MSE decoder on aux | critic distance |\n|---|---|---|---|---|---|---|")
        budget = Budget()

        class Every(Callback):
            def on_epoch_end(self, *, epoch, metrics):
                if epoch % 2 == 0:
                    measure(attack, f"epoch {epoch}, {(time.process_time() - budget.start) / 60:.1f} CPU-min")

        Trainer(topology, epochs=args.epochs, batch_size=64, seed=seed, callbacks=[attack, budget, Every()],
                progress=False).fit(data)
        measure(attack, f"end, {(time.process_time() - budget.start) / 60:.1f} CPU-min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("part", choices=["label", "clustering", "completion", "whitebox", "inverse", "fsha"])
    parser.add_argument("--minutes", type=float, default=20.0, help="CPU-minute budget (fsha)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--cuts", nargs="+", default=None)
    parser.add_argument("--targets", type=int, default=32)
    parser.add_argument("--params", default="", help="JSON of attack parameters (reconstruction parts)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    defaults = {"label": (5, 10), "clustering": (3, 5), "completion": (3, 5), "whitebox": (3, 0), "inverse": (3, 0),
                "fsha": (1, 100)}
    args.seeds = args.seeds or defaults[args.part][0]
    args.epochs = args.epochs or defaults[args.part][1]
    if args.part == "whitebox":
        args.cuts = args.cuts or ["relu1", "relu2", "pool2"]
        reconstruction(args, "whitebox-inversion")
    elif args.part == "inverse":
        args.cuts = args.cuts or ["relu1", "pool1", "pool2", "relu3"]
        reconstruction(args, "inverse-network")
    else:
        {"label": label, "clustering": clustering, "completion": completion, "fsha": fsha}[args.part](args)


if __name__ == "__main__":
    main()

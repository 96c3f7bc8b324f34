"""The one training loop every topology shares."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from secsplit.callbacks import Callback, CallbackList
from secsplit.errors import ConfigError, TrainingStopped
from secsplit.topologies.base import Topology


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; asking for CUDA without one is a clear error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device auto or cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


SAMPLINGS = ("shuffle", "poisson")


@dataclass
class TrainingReport:
    """Per-epoch history plus the final summary (JSON-ready)."""

    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


class Trainer:
    """Runs epochs of a topology's training step over a data set, then evaluates by split inference.

    Args:
        topology: the configuration to train.
        batch_size: samples per step.
        epochs: passes over the training data.
        seed: seeds the data order (the model's initialization is seeded where it is built).
        device: "auto", "cpu" or "cuda".
        callbacks: defenses/attacks plugged into the topology (see :class:`Callback`).
        progress: show a progress bar; default: only when stderr is a terminal.
        sampling: "shuffle" (a seeded permutation cut into batches) or "poisson" (each sample joins
            each batch independently with probability batch_size / n, as DP-SGD's accounting
            assumes; a defense may switch it on in ``on_setup``).
    """

    def __init__(
        self,
        topology: Topology,
        *,
        batch_size: int = 64,
        epochs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        callbacks: Iterable[Callback] = (),
        progress: bool | None = None,
        eval_batch_size: int = 1024,
        sampling: str = "shuffle",
    ) -> None:
        if batch_size < 1 or epochs < 0 or eval_batch_size < 1:
            raise ConfigError(f"batch_size and eval_batch_size must be >= 1 and epochs >= 0, got {batch_size}, {eval_batch_size}, {epochs}")
        self.topology = topology
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.device = resolve_device(device)
        self.eval_batch_size = eval_batch_size
        if sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}")
        self.sampling = sampling
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.callbacks = CallbackList(callbacks)
        self.global_step = 0
        topology.to(self.device)
        topology.callbacks = self.callbacks
        self.callbacks.on_setup(self)

    @property
    def channel(self):
        return self.topology.channel

    def batches(self, n: int, epoch: int) -> list[torch.Tensor]:
        """The index batches of one epoch, seeded by (seed, epoch) so runs are repeatable.

        Poisson batches can be empty; :meth:`fit` skips those (no party has anything to send).
        """
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.sampling == "poisson":
            rate = min(1.0, self.batch_size / n)
            steps = max(1, round(n / self.batch_size))
            return [torch.nonzero(torch.rand(n, generator=generator) < rate).flatten() for _ in range(steps)]
        order = torch.randperm(n, generator=generator)
        return list(order.split(self.batch_size))

    def fit(self, dataset) -> TrainingReport:
        """Train for ``epochs`` and evaluate on the test split after each epoch."""
        x_train, y_train = dataset.x_train.to(self.device), dataset.y_train.to(self.device)
        report = TrainingReport()
        self.callbacks.on_fit_start(num_samples=len(x_train), epochs=self.epochs, batch_size=self.batch_size)
        start = time.perf_counter()
        stopped = None
        try:
            self._run_epochs(x_train, y_train, dataset, report, start)
        except TrainingStopped as reason:
            stopped = str(reason)
        if report.history:
            final = report.history[-1]
        elif stopped:  # stopped before the first epoch ended: nothing more is sent, not even for evaluation
            final = {"test_accuracy": None, "test_loss": None}
        else:
            final = {f"test_{k}": v for k, v in self.evaluate(dataset.x_test, dataset.y_test).items()}
        traffic = self.topology.channel.traffic
        clients = getattr(self.topology, "data_owners", [self.topology.data_owner])
        report.summary = {
            **self.topology.describe(),
            "dataset": dataset.name,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "device": str(self.device),
            "test_accuracy": final["test_accuracy"],
            "test_loss": final["test_loss"],
            "wall_time_s": time.perf_counter() - start,
            "stopped": stopped,
            "traffic": traffic.summary(),
            "flops": self.topology.flops.summary(),
            "client_train_flops": sum(self.topology.flops.totals["train"][c] for c in clients),
            # all data owners together (vertical splits have several)
            "client_bytes_sent": sum(traffic.total(src=c, phase="train") for c in clients),
            "client_bytes_received": sum(traffic.total(dst=c, phase="train") for c in clients),
        }
        return report

    def _run_epochs(self, x_train, y_train, dataset, report: TrainingReport, start: float) -> None:
        for epoch in range(1, self.epochs + 1):
            self.topology.train()
            loss_sum, correct, count = 0.0, 0, 0
            batches = self.batches(len(x_train), epoch)
            bar = tqdm(batches, desc=f"epoch {epoch}/{self.epochs}", disable=not self.progress, leave=False, unit="batch")
            for index in bar:
                if len(index) == 0:
                    self.callbacks.on_step_end(step=self.global_step, loss=float("nan"))
                    self.global_step += 1
                    continue
                result = self.topology.train_step(x_train[index], y_train[index], step=self.global_step)
                self.callbacks.on_step_end(step=self.global_step, loss=result.loss)
                self.global_step += 1
                loss_sum += result.loss * result.count
                correct += result.correct
                count += result.count
                bar.set_postfix(loss=f"{loss_sum / count:.4f}")
            row = {"epoch": epoch, "train_loss": loss_sum / max(count, 1), "train_accuracy": correct / max(count, 1)}
            row.update({f"test_{k}": v for k, v in self.evaluate(dataset.x_test, dataset.y_test).items()})
            row["wall_time_s"] = time.perf_counter() - start
            report.history.append(row)
            self.callbacks.on_epoch_end(epoch=epoch, metrics=row)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Accuracy and loss of split inference on (x, y); the topology's predict routes the traffic."""
        self.topology.eval()
        x, y = x.to(self.device), y.to(self.device)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(x), self.eval_batch_size):
            xb, yb = x[start : start + self.eval_batch_size], y[start : start + self.eval_batch_size]
            logits = self.topology.predict(xb, step=self.global_step)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
        self.topology.train()
        n = max(len(x), 1)
        return {"accuracy": correct / n, "loss": loss_sum / n}

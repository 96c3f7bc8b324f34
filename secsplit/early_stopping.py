"""Early stopping on a validation split carved from the training data (never the test split)."""

from __future__ import annotations

from dataclasses import replace

import torch

from secsplit.callbacks import Callback
from secsplit.data import Dataset
from secsplit.errors import ConfigError, TrainingStopped


def carve_validation(dataset: Dataset, fraction: float, *, seed: int) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """``dataset`` minus a seeded ``fraction`` of its training samples, and those samples (x, y).

    The validation samples leave the training split, so the stopping decision is made on data the
    model never trained on and the test split stays untouched until the final report.
    """
    n = len(dataset.x_train)
    n_val = int(round(n * fraction))
    if n_val < 1 or n - n_val < 1:
        raise ConfigError(f"early_stopping.validation_fraction {fraction} of {n} training samples leaves an empty "
                          f"validation or training split")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    keep, held = order[n_val:].sort().values, order[:n_val].sort().values
    smaller = replace(dataset, x_train=dataset.x_train[keep], y_train=dataset.y_train[keep],
                      ids_train=dataset.ids_train[keep])
    return smaller, dataset.x_train[held], dataset.y_train[held]


class EarlyStoppingCallback(Callback):
    """After each epoch, score split inference on held-out training samples; stop after ``patience``
    epochs without an improvement of more than ``min_delta`` in validation accuracy."""

    name = "early-stopping"

    def __init__(self, x_val: torch.Tensor, y_val: torch.Tensor, *, patience: int, min_delta: float = 0.0) -> None:
        self.x_val, self.y_val = x_val, y_val
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.best_epoch = 0
        self.trainer = None

    def on_setup(self, trainer) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.best_epoch = int(state["best_epoch"])

    def on_epoch_end(self, *, epoch: int, metrics: dict) -> None:
        accuracy = self.trainer.evaluate(self.x_val, self.y_val)["accuracy"]
        metrics["validation_accuracy"] = accuracy
        if accuracy is None:  # this process is not told the predictions (a vertical client without labels)
            return
        if self.best is None or accuracy > self.best + self.min_delta:
            self.best, self.best_epoch = accuracy, epoch
        elif epoch - self.best_epoch >= self.patience:
            raise TrainingStopped(f"early stopping: validation accuracy {self.best:.4f} at epoch {self.best_epoch} "
                                  f"did not improve for {self.patience} epoch(s)")

"""Centralized training: one party holds all the data and the whole model (the upper bound)."""

from __future__ import annotations

import time

from torch import nn

from secsplit.baselines.common import (
    BaselineReport, FlopCache, check_optimizer, check_positive, epoch_batches, evaluate, num_parameters, sgd_step,
)


def train_centralized(model: nn.Module, dataset, *, epochs: int, batch_size: int, optimizer=None,
                      seed: int = 0) -> BaselineReport:
    """Train ``model`` in place on all of ``dataset``'s training split; evaluate after each epoch.

    The batches are the ones ``secsplit train`` draws for the same seed and batch size, so this
    is the unsplit equivalent of a split run. The single data holder counts as one client (its
    FLOPs are the whole model's; it sends nothing).

    Args:
        model: any ``nn.Module`` mapping a batch of ``dataset`` samples to class logits.
        dataset: a :class:`secsplit.data.Dataset`.
        epochs, batch_size: passes over the training data and samples per step.
        optimizer: an :class:`secsplit.optim.OptimizerSpec` (default: Adam, lr 1e-3).
        seed: seeds the data order.
    """
    check_positive(epochs=epochs, batch_size=batch_size)
    spec = check_optimizer(optimizer)
    opt = spec.build(model.parameters())
    flops, total_flops = FlopCache(), 0
    report = BaselineReport("centralized")
    start = time.perf_counter()
    model.train()
    for epoch in range(1, epochs + 1):
        loss_sum, count = 0.0, 0
        for index in epoch_batches(len(dataset.x_train), batch_size, seed=seed, epoch=epoch):
            loss, step_flops = sgd_step(model, opt, dataset.x_train[index], dataset.y_train[index], flops, "train")
            total_flops += step_flops
            loss_sum += loss * len(index)
            count += len(index)
        row = {"epoch": epoch, "train_loss": loss_sum / max(count, 1)}
        row.update(evaluate(model, dataset.x_test, dataset.y_test))
        row["wall_time_s"] = time.perf_counter() - start
        report.history.append(row)
    report.client_flops = [total_flops]
    report.client_bytes_sent = [0]
    report.client_bytes_received = [0]
    report.summary = {"dataset": dataset.name, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                      "optimizer": spec.to_dict(), "parameters": num_parameters(model),
                      "test_accuracy": report.test_accuracy, "wall_time_s": time.perf_counter() - start}
    return report

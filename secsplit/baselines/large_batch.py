"""Large-batch synchronous SGD: data-parallel training, one averaged gradient per step."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from secsplit.baselines.common import (
    BaselineReport, FlopCache, check_optimizer, check_positive, epoch_batches, evaluate, gradient_bytes,
    num_parameters, state_bytes,
)


def train_large_batch_sgd(model: nn.Module, dataset, *, num_clients: int, epochs: int, per_client_batch: int,
                          optimizer=None, seed: int = 0) -> BaselineReport:
    """Synchronous data-parallel SGD over ``num_clients`` clients with global batch K·b.

    Each step draws a global batch (the seeded order of :func:`train_centralized` with batch size
    K·b) and deals it out in K near-equal shares; every client computes the gradient of its share,
    the gradients are averaged weighted by share size (which is the gradient of the mean loss over
    the global batch) and one update is applied. So, for a model without BatchNorm, this gives
    the same parameters as centralized training with batch size K·b. With BatchNorm each client
    normalizes with its own share's statistics, as real data-parallel training does, and the
    running statistics are averaged like the gradients.

    Memory does not grow with K: one model and its gradient, which accumulates the running sum.

    Accounting per client and step: its gradient (and buffers, if any) up and the weights (full
    state) down, 2·N·4 bytes for N float32 parameters without buffers, whether or not its share
    is empty (a synchronous all-reduce waits for every client); FLOPs of its share's forward and
    backward.

    Args:
        model: trained in place.
        dataset: a :class:`secsplit.data.Dataset`.
        num_clients: K.
        epochs: passes over the training data.
        per_client_batch: b, each client's share of a global batch.
        optimizer: :class:`secsplit.optim.OptimizerSpec` applied to the averaged gradient (default Adam, 1e-3).
        seed: seeds the data order.
    """
    check_positive(num_clients=num_clients, epochs=epochs, per_client_batch=per_client_batch)
    spec = check_optimizer(optimizer)
    opt = spec.build(model.parameters())
    global_batch = num_clients * per_client_batch
    buffers = [b for b in model.buffers()]
    down = state_bytes(model)
    up = gradient_bytes(model) + sum(b.numel() * b.element_size() for b in buffers)
    report = BaselineReport.for_clients("large_batch_sgd", num_clients)
    flops = FlopCache()
    start = time.perf_counter()
    steps = 0
    model.train()
    for epoch in range(1, epochs + 1):
        loss_sum, count = 0.0, 0
        for index in epoch_batches(len(dataset.x_train), global_batch, seed=seed, epoch=epoch):
            opt.zero_grad(set_to_none=True)
            initial = [b.detach().clone() for b in buffers]
            averaged = [torch.zeros_like(b, dtype=torch.float64) for b in buffers]
            for k, share in enumerate(torch.tensor_split(index, num_clients)):
                report.client_bytes_received[k] += down
                report.client_bytes_sent[k] += up
                if len(share) == 0:
                    continue
                with torch.no_grad():
                    for b, b0 in zip(buffers, initial):
                        b.copy_(b0)
                x, y = dataset.x_train[share], dataset.y_train[share]

                def forward_backward(x=x, y=y):
                    # this share's part of the mean loss over the global batch: .grad sums the parts
                    loss = F.cross_entropy(model(x), y, reduction="sum") / len(index)
                    loss.backward()
                    return loss.detach()

                loss, step_flops = flops.run(("train", tuple(x.shape)), forward_backward)
                report.client_flops[k] += step_flops
                loss_sum += float(loss) * len(index)
                with torch.no_grad():
                    for acc, b in zip(averaged, buffers):
                        acc.add_(b.to(torch.float64), alpha=len(share) / len(index))
            with torch.no_grad():
                for b, acc in zip(buffers, averaged):
                    b.copy_(acc if b.dtype.is_floating_point else acc.round())
            opt.step()
            steps += 1
            count += len(index)
        row = {"epoch": epoch, "steps": steps, "train_loss": loss_sum / max(count, 1)}
        row.update(evaluate(model, dataset.x_test, dataset.y_test))
        row["wall_time_s"] = time.perf_counter() - start
        report.history.append(row)
    report.summary = {"dataset": dataset.name, "num_clients": num_clients, "epochs": epochs,
                      "per_client_batch": per_client_batch, "global_batch": global_batch, "steps": steps,
                      "seed": seed, "optimizer": spec.to_dict(), "parameters": num_parameters(model),
                      "state_bytes": down, "gradient_bytes": up, "test_accuracy": report.test_accuracy,
                      "wall_time_s": time.perf_counter() - start}
    return report

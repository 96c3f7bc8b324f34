"""Federated averaging (McMahan et al. 2017) simulated for many clients in constant memory."""

from __future__ import annotations

import time

import torch
from torch import nn

from secsplit.averaging import WeightedAverage
from secsplit.baselines.common import (
    BaselineReport, FlopCache, check_optimizer, check_positive, evaluate, num_parameters, sgd_step, state_bytes,
)
from secsplit.errors import ConfigError


def client_partition(dataset, num_clients: int, partition, *, seed: int) -> list[torch.Tensor]:
    """Training-sample indices per client: ``"iid"`` or ``("dirichlet", alpha)`` (non-iid labels)."""
    from secsplit.data import partition_dirichlet, partition_iid

    if partition == "iid":
        return partition_iid(len(dataset.x_train), num_clients, seed=seed)
    if isinstance(partition, (tuple, list)) and len(partition) == 2 and partition[0] == "dirichlet":
        return partition_dirichlet(dataset.y_train.numpy(), num_clients, alpha=float(partition[1]), seed=seed)
    raise ConfigError(f"partition must be 'iid' or ('dirichlet', alpha), got {partition!r}")


def train_fedavg(model: nn.Module, dataset, *, num_clients: int, rounds: int, local_epochs: int = 1,
                 batch_size: int = 32, client_fraction: float = 1.0, partition="iid", optimizer=None,
                 seed: int = 0) -> BaselineReport:
    """FedAvg: each round a seeded sample of clients trains the global model locally; the server
    replaces it by the average of their models, weighted by their sample counts.

    Memory does not grow with ``num_clients``: the simulation holds the global state, one working
    model (``model`` itself, trained in place by each client in turn) and a running weighted sum
    of the clients' results; a client's optimizer lives only while it trains, so every client
    starts each round from fresh optimizer state. Buffers (BatchNorm statistics) are averaged
    like weights. After training ``model`` holds the final global model.

    Accounting per selected client and round: the model state down and up (``state_bytes``,
    exactly 2·N·4 bytes for N float32 parameters and no buffers) and the FLOPs of its local steps.

    Args:
        model: the model to train (its weights are the initial global model).
        dataset: a :class:`secsplit.data.Dataset`; the training split is spread over the clients.
        num_clients: K simulated clients.
        rounds: communication rounds; the global model is evaluated after each.
        local_epochs: passes each selected client makes over its own data per round.
        batch_size: local samples per step.
        client_fraction: share C of the clients selected each round (at least one).
        partition: ``"iid"`` or ``("dirichlet", alpha)``.
        optimizer: :class:`secsplit.optim.OptimizerSpec` of the local training (default Adam, 1e-3).
        seed: seeds the partition, the client selection and the local data order.
    """
    check_positive(num_clients=num_clients, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size)
    if not 0 < client_fraction <= 1:
        raise ConfigError(f"client_fraction must be in (0, 1], got {client_fraction}")
    spec = check_optimizer(optimizer)
    parts = client_partition(dataset, num_clients, partition, seed=seed)
    per_round = max(1, round(client_fraction * num_clients))
    exchange = state_bytes(model)
    report = BaselineReport.for_clients("fedavg", num_clients)
    flops = FlopCache()
    start = time.perf_counter()
    global_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    model.train()
    for rnd in range(1, rounds + 1):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + rnd)
        chosen = sorted(torch.randperm(num_clients, generator=generator)[:per_round].tolist())
        running = WeightedAverage(global_state)
        loss_sum, steps_seen = 0.0, 0
        for k in chosen:
            model.load_state_dict(global_state)  # weights down
            report.client_bytes_received[k] += exchange
            opt = spec.build(model.parameters())
            own = parts[k]
            for _ in range(local_epochs):
                order = own[torch.randperm(len(own), generator=generator)]
                for index in order.split(batch_size):
                    loss, step_flops = sgd_step(model, opt, dataset.x_train[index], dataset.y_train[index], flops, "train")
                    report.client_flops[k] += step_flops
                    loss_sum += loss * len(index)
                    steps_seen += len(index)
            del opt
            running.add(model.state_dict(), len(own))  # weights up, folded into the running weighted sum
            report.client_bytes_sent[k] += exchange
        global_state = running.result()
        del running
        model.load_state_dict(global_state)
        row = {"round": rnd, "clients": len(chosen), "train_loss": loss_sum / max(steps_seen, 1)}
        row.update(evaluate(model, dataset.x_test, dataset.y_test))
        row["wall_time_s"] = time.perf_counter() - start
        report.history.append(row)
    report.summary = {"dataset": dataset.name, "num_clients": num_clients, "rounds": rounds,
                      "local_epochs": local_epochs, "batch_size": batch_size, "client_fraction": client_fraction,
                      "partition": partition if isinstance(partition, str) else list(partition), "seed": seed,
                      "optimizer": spec.to_dict(), "parameters": num_parameters(model),
                      "state_bytes": exchange, "test_accuracy": report.test_accuracy,
                      "wall_time_s": time.perf_counter() - start}
    return report

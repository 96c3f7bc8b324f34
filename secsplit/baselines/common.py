"""What the baselines share: the report, FLOP measurement per batch shape, batching and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from secsplit.errors import ConfigError


@dataclass
class BaselineReport:
    """History per round (FedAvg) or epoch (centralized, large-batch SGD) plus per-client accounting.

    Attributes:
        method: "centralized", "fedavg" or "large_batch_sgd".
        history: one dict per round/epoch with at least ``test_accuracy`` and ``test_loss``.
        client_flops: training FLOPs of each client (matrix products and convolutions, forward
            and backward), measured with ``FlopCounterMode`` on the first step of each batch shape.
        client_bytes_sent, client_bytes_received: bytes each client sent / received in training
            (model state in FedAvg, gradients and weights in large-batch SGD, none centralized).
        summary: final accuracy, parameter counts, settings (JSON-ready).
    """

    method: str
    history: list[dict] = field(default_factory=list)
    client_flops: list[int] = field(default_factory=list)
    client_bytes_sent: list[int] = field(default_factory=list)
    client_bytes_received: list[int] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @classmethod
    def for_clients(cls, method: str, num_clients: int) -> BaselineReport:
        """An empty report with zeroed per-client counters."""
        return cls(method, client_flops=[0] * num_clients, client_bytes_sent=[0] * num_clients,
                   client_bytes_received=[0] * num_clients)

    @property
    def test_accuracy(self) -> float | None:
        return self.history[-1]["test_accuracy"] if self.history else None

    def to_dict(self) -> dict:
        """JSON-ready, with per-client lists summarized as totals, means and maxima."""
        k = max(len(self.client_flops), 1)
        return {
            "method": self.method, **self.summary, "history": self.history,
            "num_clients": len(self.client_flops),
            "client_flops_mean": sum(self.client_flops) / k, "client_flops_max": max(self.client_flops, default=0),
            "client_bytes_sent_mean": sum(self.client_bytes_sent) / k,
            "client_bytes_received_mean": sum(self.client_bytes_received) / k,
        }


class FlopCache:
    """FLOPs of one step per key (phase, batch shape): the first step of a shape runs under
    ``FlopCounterMode``, later ones reuse its count (exact for the zoo's models, whose FLOPs
    depend on the batch shape only; see :mod:`secsplit.accounting`)."""

    def __init__(self) -> None:
        self._counts: dict[tuple, int] = {}

    def run(self, key: tuple, fn: Callable[[], object]):
        """Run ``fn()``; returns (its result, the FLOPs of a step with this key)."""
        if key in self._counts:
            return fn(), self._counts[key]
        with FlopCounterMode(display=False) as mode:
            result = fn()
        self._counts[key] = int(mode.get_total_flops())
        return result, self._counts[key]


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model's full state (parameters and buffers) as it is sent: float32 weights are
    4 bytes each, so a model without buffers costs exactly 4·N bytes for N parameters."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def gradient_bytes(model: nn.Module) -> int:
    """Bytes of one gradient of the trainable parameters."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def epoch_batches(n: int, batch_size: int, *, seed: int, epoch: int) -> list[torch.Tensor]:
    """Index batches of one epoch, the same seeded order as :meth:`secsplit.training.Trainer.batches`
    (shuffle sampling), so a centralized run sees the batches ``secsplit train`` would."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return list(torch.randperm(n, generator=generator).split(batch_size))


def sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             flops: FlopCache, phase: str) -> tuple[float, int]:
    """One ordinary training step; returns (loss, its measured FLOPs)."""

    def forward_backward():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach()

    loss, count = flops.run((phase, tuple(x.shape)), forward_backward)
    optimizer.step()
    return float(loss), count


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> dict:
    """Test accuracy and mean cross-entropy of ``model`` in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size])
            yb = y[start:start + batch_size]
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    n = max(len(x), 1)
    return {"test_accuracy": correct / n, "test_loss": loss_sum / n}


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def check_optimizer(optimizer):
    from secsplit.optim import OptimizerSpec

    if optimizer is None:
        return OptimizerSpec()  # the library default (Adam, lr 1e-3), as `secsplit train` uses
    if not isinstance(optimizer, OptimizerSpec):
        raise ConfigError(f"optimizer must be an OptimizerSpec, got {type(optimizer).__name__}")
    return optimizer

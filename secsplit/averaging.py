"""Sample-weighted averaging of model states in constant memory (FedAvg, SplitFed).

One float64 running sum per tensor, whatever the number of clients: each client's state is folded
in as it arrives, weighted by the samples it trained on, then discarded.
"""

from __future__ import annotations

import torch


class WeightedAverage:
    """Running ``sum_k w_k * state_k / sum_k w_k`` over states shaped like ``like``."""

    def __init__(self, like: dict[str, torch.Tensor]) -> None:
        self.dtypes = {name: t.dtype for name, t in like.items()}
        self.sums = {name: torch.zeros_like(t, dtype=torch.float64) for name, t in like.items()}
        self.weight = 0

    @torch.no_grad()
    def add(self, state: dict[str, torch.Tensor], weight: int) -> None:
        for name, t in state.items():
            self.sums[name].add_(t.to(torch.float64), alpha=weight)
        self.weight += weight

    @torch.no_grad()
    def result(self) -> dict[str, torch.Tensor]:
        """The average, cast back to each tensor's dtype (integer buffers rounded)."""
        return {name: _cast(s / self.weight, self.dtypes[name]) for name, s in self.sums.items()}


def _cast(mean: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return mean.to(dtype) if dtype.is_floating_point else mean.round().to(dtype)

"""Baselines split learning is compared against: centralized training, FedAvg, large-batch SGD.

Each returns a :class:`BaselineReport` with the test accuracy per round/epoch and per-client
training FLOPs (measured with ``FlopCounterMode``) and bytes; see :mod:`secsplit.efficiency` for
the per-epoch cost model of Vepakomma et al. (2018) built on the same measurements.
"""

from secsplit.baselines.centralized import train_centralized
from secsplit.baselines.common import BaselineReport, FlopCache, evaluate, state_bytes
from secsplit.baselines.fedavg import client_partition, train_fedavg
from secsplit.baselines.large_batch import train_large_batch_sgd

__all__ = ["BaselineReport", "FlopCache", "client_partition", "evaluate", "state_bytes", "train_centralized",
           "train_fedavg", "train_large_batch_sgd"]

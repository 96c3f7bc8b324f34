"""Trained-model cache for audits: one safetensors file per training configuration.

A run whose attacks only need the trained model (not the training traffic) loads the weights
trained earlier for the same training configuration instead of training again. The cache key is
the training configuration's hash, so a defense that changes training changes the key.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save

from secsplit.atomic import atomic_write


class ModelCache:
    def __init__(self, directory) -> None:
        self.directory = Path(directory)

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.directory / f"{key}.safetensors", self.directory / f"{key}.json"

    def save(self, key: str, topology, info: dict) -> None:
        """Store every party's weights and ``info`` (training summary, defense reports) atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"{party}/{name}": value.detach().cpu().contiguous()
                   for party, p in topology.parties.items() for name, value in p.segments.state_dict().items()}
        weights, meta = self._paths(key)
        atomic_write(weights, save(tensors))
        atomic_write(meta, json.dumps(info, default=str).encode())

    def load(self, key: str, topology) -> dict | None:
        """Load cached weights into ``topology`` and return the stored info, or None if not cached."""
        weights, meta = self._paths(key)
        if not (weights.is_file() and meta.is_file()):
            return None
        tensors = load_file(weights)
        for party, p in topology.parties.items():
            prefix = f"{party}/"
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            p.segments.load_state_dict(state)
        return json.loads(meta.read_text())

"""A party's training state as safetensors + JSON: weights, optimizer state, step. No pickle.

Training checkpoints (resume after a crash) need more than the weights a split-inference
checkpoint holds: the optimizer's moments and step counters, and where training stood. Tensors go
to one safetensors file, everything else (hyper-parameters, counters) to one JSON file; both are
written atomically (temporary file + rename), the JSON last, so a JSON on disk always points at a
complete tensor file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from secsplit.atomic import atomic_write
from secsplit.errors import SecsplitError


class StateError(SecsplitError):
    """A training-state checkpoint is missing, corrupted or does not fit the party it is loaded into."""


def _split_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for index, entries in state_dict["state"].items():
        plain["state"][str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                plain["state"][str(index)][key] = value
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(entries) for i, entries in plain["state"].items()}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": plain["param_groups"]}


def save_party_state(directory: str | Path, name: str, party, *, info: dict) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (``info`` + optimizer settings) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"segments.{k}": v.detach().cpu().contiguous().clone() for k, v in party.segments.state_dict().items()}
    plain_optimizer = None
    if party.optimizer is not None:
        optimizer_tensors, plain_optimizer = _split_optimizer(party.optimizer.state_dict())
        tensors.update(optimizer_tensors)
    blob = st_save(tensors)
    atomic_write(directory / f"{name}.safetensors", blob)
    meta = {"info": info, "optimizer": plain_optimizer, "sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write(directory / f"{name}.json", json.dumps(meta, indent=1, sort_keys=True).encode())
    return directory / f"{name}.json"


def load_party_state(directory: str | Path, name: str, party) -> dict:
    """Load ``name``'s files into ``party`` (weights and optimizer); returns the saved ``info``."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / f"{name}.json").read_text())
        blob = (directory / f"{name}.safetensors").read_bytes()
    except FileNotFoundError as error:
        raise StateError(f"no training state {name!r} in {directory}: {Path(error.filename).name} is missing") from None
    except (ValueError, OSError) as error:
        raise StateError(f"training state {directory / (name + '.json')} is unreadable: {error}") from None
    if not isinstance(meta, dict) or "sha256" not in meta:
        raise StateError(f"{directory / (name + '.json')} is not a secsplit training state")
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise StateError(f"{directory / (name + '.safetensors')} does not match its checksum (truncated or modified)")
    try:
        tensors = st_load(blob)
    except SafetensorError as error:
        raise StateError(f"{directory / (name + '.safetensors')} is not a safetensors file: {error}") from None
    weights = {k[len("segments."):]: v for k, v in tensors.items() if k.startswith("segments.")}
    try:
        party.segments.load_state_dict(weights, strict=True)
        if party.optimizer is not None and meta["optimizer"] is not None:
            party.optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    except (RuntimeError, ValueError, KeyError) as error:
        raise StateError(f"training state {name!r} in {directory} does not fit party {party.name!r}: "
                         f"{str(error).splitlines()[0]}") from None
    return meta["info"]

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


def write_state_files(directory: str | Path, name: str, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``<name>.safetensors``, then ``<name>.json`` (``meta`` plus the tensor file's SHA-256)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = st_save(tensors)
    atomic_write(directory / f"{name}.safetensors", blob)
    meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write(directory / f"{name}.json", json.dumps(meta, indent=1, sort_keys=True).encode())
    return directory / f"{name}.json"


def read_state_files(directory: str | Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """``<name>.json``'s object and ``<name>.safetensors``' tensors, after checking the tensor file against
    its checksum; a missing, unreadable or altered file is a :class:`StateError` naming it."""
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
        return meta, st_load(blob)
    except SafetensorError as error:
        raise StateError(f"{directory / (name + '.safetensors')} is not a safetensors file: {error}") from None


def save_party_state(directory: str | Path, name: str, party, *, info: dict) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (``info`` + optimizer settings) in ``directory``."""
    tensors = {f"segments.{k}": v.detach().cpu().contiguous().clone() for k, v in party.segments.state_dict().items()}
    plain_optimizer = None
    if party.optimizer is not None:
        optimizer_tensors, plain_optimizer = _split_optimizer(party.optimizer.state_dict())
        tensors.update(optimizer_tensors)
    return write_state_files(directory, name, tensors, {"info": info, "optimizer": plain_optimizer})


def _check_optimizer(path: Path, saved, current: dict) -> None:
    """Refuse a saved optimizer whose kind or settings differ from this run's (edited, or a changed --lr)."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(saved.get("state"), dict) \
            or not all(isinstance(g, dict) for g in groups):
        raise StateError(f"{path}: field optimizer is not an optimizer state (param_groups and state)")
    mine = current["param_groups"]
    if len(groups) != len(mine):
        raise StateError(f"{path}: field optimizer.param_groups has {len(groups)} group(s), this run's optimizer "
                         f"{len(mine)}: the party or its optimizer changed")
    for i, (theirs, ours) in enumerate(zip(groups, mine)):
        keys = set(ours) - {"params"}
        if set(theirs) - {"params"} != keys:
            raise StateError(f"{path}: field optimizer.param_groups[{i}] holds another kind of optimizer's settings "
                             f"({', '.join(sorted(set(theirs) ^ set(ours)))[:120]}): resume with the optimizer the "
                             f"run was trained with")
        for key in sorted(keys):
            if theirs[key] != ours[key] and not (isinstance(ours[key], tuple) and list(ours[key]) == theirs[key]):
                raise StateError(f"{path}: field optimizer.param_groups[{i}].{key} is {str(theirs[key])[:40]}, this run "
                                 f"has {str(ours[key])[:40]}: resume with the run's own settings (a changed "
                                 f"--{key.replace('_', '-')} is refused, not ignored) or start a new run")


def load_party_state(directory: str | Path, name: str, party) -> dict:
    """Load ``name``'s files into ``party`` (weights and optimizer); returns the saved ``info``."""
    directory = Path(directory)
    meta, tensors = read_state_files(directory, name)
    weights = {k[len("segments."):]: v for k, v in tensors.items() if k.startswith("segments.")}
    mine = party.segments.state_dict()
    for key in sorted(set(mine) | set(weights)):
        if key not in weights or key not in mine or tuple(weights[key].shape) != tuple(mine[key].shape):
            saved = tuple(weights[key].shape) if key in weights else "nothing"
            ours = tuple(mine[key].shape) if key in mine else "nothing"
            raise StateError(f"{directory / (name + '.safetensors')}: field segments.{key[:80]} holds {saved}, party "
                             f"{party.name!r} of this run has {ours} there: the state of another model or split")
    if party.optimizer is not None and meta.get("optimizer") is not None:
        _check_optimizer(directory / f"{name}.json", meta["optimizer"], party.optimizer.state_dict())
    try:
        party.segments.load_state_dict(weights, strict=True)
        if party.optimizer is not None and meta["optimizer"] is not None:
            party.optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    except (RuntimeError, ValueError, KeyError) as error:
        raise StateError(f"training state {name!r} in {directory} does not fit party {party.name!r}: "
                         f"{str(error).splitlines()[0]}") from None
    return meta["info"]

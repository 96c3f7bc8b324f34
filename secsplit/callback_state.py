"""Callbacks' own training state in a checkpoint: safetensors for tensors, JSON for the rest. No pickle.

A resumed run must continue as the uninterrupted one would: a noise defense's generator must go on
drawing fresh noise (a replayed draw added to two different releases reveals their difference),
privacy accounting must go on counting (a restarted count under-states epsilon), and a decoder
trained against the client must keep its weights. Each callback says what that state is
(:meth:`~secsplit.callbacks.Callback.state_dict`); this module stores it beside the parties'
states of the same step.

A state is a JSON object whose leaves may be tensors (a generator's state is a uint8 tensor). The
tensors go to ``callbacks-step<N>.safetensors`` under their path in the object; the JSON file holds
the rest, each tensor replaced by a ``{"tensor": key}`` marker, and the tensor file's SHA-256 (the
same two files as a party's state: :func:`secsplit.party_state.write_state_files`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from secsplit.errors import ConfigError
from secsplit.party_state import StateError, read_state_files, write_state_files

_MARKER = "tensor"


def callbacks_state_name(step: int) -> str:
    """The callbacks' state saved at ``step`` (pruned with the parties' states of that step)."""
    return f"callbacks-step{step:09d}"


def split_state(state, path: str = "") -> tuple[object, dict[str, torch.Tensor]]:
    """``state`` with each tensor leaf replaced by a marker naming its key, and the tensors by key."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value, at: str):
        if isinstance(value, torch.Tensor):
            tensors[at] = value.detach().cpu().contiguous().clone()
            return {_MARKER: at}
        if isinstance(value, dict):
            if _MARKER in value and len(value) == 1:
                raise ValueError(f"callback state at {at!r} uses the reserved key {_MARKER!r}")
            return {str(k): walk(v, f"{at}.{k}" if at else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{at}.{i}" if at else str(i)) for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"callback state at {at!r} holds a {type(value).__name__}; only tensors and JSON values are "
                        f"saved")

    return walk(state, path), tensors


def join_state(plain, tensors: dict[str, torch.Tensor], *, where: str):
    """Inverse of :func:`split_state`; a marker without its tensor is a :class:`ConfigError` naming ``where``."""
    def walk(value):
        if isinstance(value, dict):
            if set(value) == {_MARKER}:
                key = value[_MARKER]
                if not isinstance(key, str) or key not in tensors:
                    raise ConfigError(f"cannot resume: {where}: tensor {str(key)[:60]!r} is missing")
                return tensors[key]
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(plain)


def _stateful(callbacks) -> list:
    """The callbacks that keep state of their own (they override ``state_dict``), in order."""
    from secsplit.callbacks import Callback

    return [cb for cb in callbacks if type(cb).state_dict is not Callback.state_dict]


def save_callbacks_state(directory, step: int, callbacks) -> None:
    """Write the state of every callback that keeps one, for ``step`` (no file when none does)."""
    entries = [{"callback": type(cb).__name__, "state": cb.state_dict()} for cb in _stateful(callbacks)]
    if not entries:
        return
    plain, tensors = split_state(entries)
    write_state_files(directory, callbacks_state_name(step), tensors, {"callbacks": plain})


def load_callbacks_state(directory, step: int, callbacks) -> None:
    """Give each callback back the state saved at ``step``; a missing, altered or mismatched file is one
    :class:`ConfigError` naming the file and what is wrong."""
    callbacks = _stateful(callbacks)
    mine = [type(cb).__name__ for cb in callbacks]
    name = callbacks_state_name(step)
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        if callbacks:
            raise ConfigError(f"cannot resume: {path} is missing, and {', '.join(mine)} need(s) their saved "
                              f"state to continue as the uninterrupted run (noise, accounting, trained decoders)")
        return
    try:
        meta, tensors = read_state_files(directory, name)
    except StateError as error:
        raise ConfigError(f"cannot resume: {error}") from None
    if not isinstance(meta.get("callbacks"), list):
        raise ConfigError(f"cannot resume: {path} is not a secsplit callbacks state")
    entries = join_state(meta["callbacks"], tensors, where=str(path))
    saved = [e.get("callback") if isinstance(e, dict) else None for e in entries]
    if saved != mine:
        raise ConfigError(f"cannot resume: {path}: field callbacks holds {saved}, this run has {mine}: resume with "
                          f"the run's own defenses")
    for cb, entry in zip(callbacks, entries):
        state = entry.get("state")
        if not isinstance(state, dict):
            raise ConfigError(f"cannot resume: {path}: field callbacks.{type(cb).__name__}.state is not an object")
        try:
            cb.load_state_dict(state)
        except ConfigError as error:
            raise ConfigError(f"cannot resume: {path}: {type(cb).__name__}: {error}") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ConfigError(f"cannot resume: {path}: field callbacks.{type(cb).__name__}.state does not fit this "
                              f"run's {type(cb).__name__} ({type(error).__name__}: {str(error)[:120]})") from None

"""Save and load a trained split model, one safetensors file per party.

A checkpoint is a directory::

    manifest.json          what to rebuild (model, topology, cuts, owners) and each file's sha256
    client.safetensors     the client's segments, keys "<segment name>.<parameter or buffer>"
    server.safetensors     the server's segments
    ...                    one file per further party (hops)

Each party's weights live in their own file, so a deployment hands every party only its own file:
a client can rebuild the topology and load just ``client.safetensors``. Files hold raw tensors in the
safetensors format, which cannot execute code when read; no Python object serialization is used
anywhere. Every file is written to a temporary name and moved into place with ``os.replace``, and
the manifest is written last, so a crash never leaves a manifest that points at half-written files.

Loading checks, in order: the directory and manifest exist, the manifest is valid JSON of a known
format version, each requested file exists and its sha256 matches the manifest (catches truncation
and bit flips), it parses as safetensors, and its tensor names, shapes and dtypes match the rebuilt
model exactly. Every failure is a :class:`CheckpointError` naming the file or tensor.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _safetensors_load
from safetensors.torch import save as _safetensors_save

import secsplit
from secsplit.atomic import atomic_write
from secsplit.errors import ConfigError, SecsplitError

#: Bump when the layout changes; loaders refuse versions they do not know.
FORMAT_VERSION = 1
FORMAT_NAME = "secsplit-split-model"
MANIFEST = "manifest.json"
SUFFIX = ".safetensors"


class CheckpointError(SecsplitError):
    """A checkpoint is missing, corrupted, of an unknown format or does not fit the model it names."""


@dataclass
class CheckpointInfo:
    """Attached to a loaded topology as ``topology.checkpoint``.

    Attributes:
        directory: where the checkpoint was read from.
        manifest: the parsed manifest.
        loaded: parties whose weights came from the checkpoint.
        unloaded: parties left with freshly initialised (untrained) weights; their ``Party.loaded``
            is False too. Split inference over them gives meaningless results.
    """

    directory: Path
    manifest: dict
    loaded: tuple[str, ...]
    unloaded: tuple[str, ...] = field(default_factory=tuple)


# -- saving --------------------------------------------------------------------------------------

def party_state(topology, party: str) -> dict[str, torch.Tensor]:
    """``party``'s segments' tensors, keyed "<segment name>.<state_dict key>", on CPU and contiguous."""
    state: dict[str, torch.Tensor] = {}
    for name, segment in _party_segments(topology, party).items():
        for key, tensor in segment.state_dict().items():
            # clone: safetensors refuses tensors sharing storage, and views must not alias the model
            state[f"{name}.{key}"] = tensor.detach().to("cpu").contiguous().clone()
    return state


def save_split_model(
    topology,
    directory: str | os.PathLike,
    *,
    model_name: str,
    model_options: Mapping | None = None,
    dataset_name: str | None = None,
    input_shape: Sequence[int],
    num_classes: int,
    dataset_seed: int | None = None,
    model_seed: int | None = None,
    metadata: Mapping | None = None,
) -> Path:
    """Write ``topology``'s weights per party plus ``manifest.json`` into ``directory``.

    Args:
        topology: a trained ChainTopology (vanilla, ushape, multihop, ...).
        directory: created if missing; existing checkpoint files in it are replaced.
        model_name, model_options: what ``create_model`` needs to rebuild the architecture.
        dataset_name, dataset_seed: the data set (and split seed) the model was trained on, so
            ``secsplit predict`` can rebuild the same test split.
        input_shape, num_classes: the model's per-sample input shape and output width.
        model_seed: the seed of the initial weights (parties not loaded get these).
        metadata: extra JSON-ready facts to record (e.g. final test accuracy, defenses used).

    Returns:
        the checkpoint directory.

    Raises:
        CheckpointError: the directory cannot be created or written, or a value is not JSON-ready.
    """
    check_savable(topology)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"cannot save checkpoint: {str(directory)!r} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot create checkpoint directory {str(directory)!r}: {error.strerror or error}") from None

    owners = list(topology.owners)
    parties: dict[str, dict] = {}
    for party in dict.fromkeys(owners):  # first-appearance order
        state = party_state(topology, party)
        file_meta = {"format": FORMAT_NAME, "party": party}
        try:
            data = _safetensors_save(state, metadata=file_meta)
        except Exception as error:  # safetensors raises plain exceptions for unsupported tensors
            raise CheckpointError(f"cannot serialize party {party!r}: {error}") from None
        filename = f"{party}{SUFFIX}"
        _atomic_write(directory / filename, data)
        parties[party] = {
            "file": filename,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "segments": list(_party_segments(topology, party)),
            "tensors": len(state),
        }

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "secsplit_version": secsplit.__version__,
        "torch_version": torch.__version__,
        "model": {"name": model_name, "options": dict(model_options or {}), "seed": model_seed},
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
        "dataset": {"name": dataset_name, "seed": dataset_seed},
        "topology": {
            "name": topology.name,
            "cuts": list(topology.cuts),
            "owners": owners,
            "label_source": topology.label_source,
        },
        "parties": parties,
        "metadata": dict(metadata or {}),
    }
    try:
        text = json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"cannot write manifest: model options or metadata are not JSON-ready ({error})") from None
    _atomic_write(directory / MANIFEST, text.encode("utf-8"))
    return directory


def check_savable(topology) -> None:
    """Raise CheckpointError unless ``topology`` declares itself :attr:`~secsplit.topologies.Topology.exportable`
    (the chains: vanilla, ushape, multihop, multihop-ushape), the configurations this format stores."""
    if not topology.exportable:
        raise CheckpointError(f"checkpoints store chain topologies (vanilla, ushape, multihop, multihop-ushape); "
                              f"{topology.name!r} is not one")


def _party_segments(topology, party: str) -> dict[str, torch.nn.Module]:
    """Segment name -> module for ``party``, named "segment<i>" as ChainTopology's parties name them."""
    return {f"segment{i}": topology.segments[i] for i, owner in enumerate(topology.owners) if owner == party}


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data)
    except OSError as error:
        raise CheckpointError(f"cannot write {str(path)!r}: {error.strerror or error}") from None


# -- loading -------------------------------------------------------------------------------------

def read_manifest(directory: str | os.PathLike) -> dict:
    """Parse and validate ``directory/manifest.json``; raises CheckpointError on any problem."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"checkpoint directory {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {str(directory)!r} is not a directory")
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{str(directory)!r} is not a secsplit checkpoint: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{str(path)!r} is not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    _validate_manifest(manifest, path)
    return manifest


def _validate_manifest(m, path: Path) -> None:
    where = str(path)
    if not isinstance(m, dict):
        raise CheckpointError(f"{where!r}: manifest must be a JSON object, got {type(m).__name__}")
    if m.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{where!r}: not a secsplit split-model manifest (format {m.get('format')!r})")
    version = m.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{where!r}: unknown checkpoint format version {version!r}; "
                              f"this secsplit ({secsplit.__version__}) reads version {FORMAT_VERSION}")

    def need(obj, key, kind, context):
        if not isinstance(obj, dict) or key not in obj:
            raise CheckpointError(f"{where!r}: manifest is missing {context}{key!r}")
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise CheckpointError(f"{where!r}: manifest field {context}{key!r} has the wrong type ({type(value).__name__})")
        return value

    model = need(m, "model", dict, "")
    need(model, "name", str, "model.")
    need(model, "options", dict, "model.")
    shape = need(m, "input_shape", list, "")
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise CheckpointError(f"{where!r}: manifest input_shape must be positive integers, got {shape!r}")
    need(m, "num_classes", int, "")
    topology = need(m, "topology", dict, "")
    need(topology, "name", str, "topology.")
    cuts = need(topology, "cuts", list, "topology.")
    owners = need(topology, "owners", list, "topology.")
    if not all(isinstance(c, str) for c in cuts) or not all(isinstance(o, str) for o in owners):
        raise CheckpointError(f"{where!r}: manifest topology cuts and owners must be strings")
    parties = need(m, "parties", dict, "")
    if set(parties) != set(owners):
        raise CheckpointError(f"{where!r}: manifest parties {sorted(parties)} do not match the segment owners {sorted(set(owners))}")
    for party, entry in parties.items():
        filename = need(entry, "file", str, f"parties.{party}.")
        digest = need(entry, "sha256", str, f"parties.{party}.")
        # a manifest must not make the loader read outside its directory
        if Path(filename).name != filename or filename in ("", ".", "..") or not filename.endswith(SUFFIX):
            raise CheckpointError(f"{where!r}: party {party!r} file {filename!r} must be a plain *{SUFFIX} name inside the checkpoint")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise CheckpointError(f"{where!r}: party {party!r} sha256 {digest!r} is not a hex digest")
    dataset = m.get("dataset", {})
    if not isinstance(dataset, dict):
        raise CheckpointError(f"{where!r}: manifest field 'dataset' must be an object")


def load_split_model(directory: str | os.PathLike, *, parties: str | Iterable[str] | None = None, channel=None,
                     optimizer=None):
    """Rebuild the saved topology and load the weights of ``parties`` (default: all of them).

    The architecture is rebuilt with ``create_model`` (seeded as when saved) and ``build_topology``
    with the saved cuts. Only the requested parties' files are read, so a client can load its own
    file alone; the other parties keep their fresh initial weights and are flagged:
    ``topology.parties[name].loaded`` is False and ``topology.checkpoint.unloaded`` lists them.

    Args:
        directory: a directory written by :func:`save_split_model`.
        parties: a party name or names to load; None loads every party.
        channel, optimizer: passed to ``build_topology`` (default: a new in-process channel).

    Returns:
        the ChainTopology, in eval mode, with ``topology.checkpoint`` a :class:`CheckpointInfo`.

    Raises:
        CheckpointError: see the module docstring.
    """
    from secsplit.models import create_model
    from secsplit.topologies import build_topology

    directory = Path(directory)
    manifest = read_manifest(directory)
    saved = manifest["parties"]
    if parties is None:
        wanted = list(saved)
    else:
        wanted = [parties] if isinstance(parties, str) else list(dict.fromkeys(parties))
        unknown = [p for p in wanted if p not in saved]
        if unknown:
            raise CheckpointError(f"checkpoint {str(directory)!r} has no party {unknown[0]!r}; parties: {', '.join(saved)}")

    # read and verify every requested file before building anything
    states = {party: _read_party_file(directory, party, saved[party]) for party in wanted}

    model_info, topo_info = manifest["model"], manifest["topology"]
    seed = model_info.get("seed")
    try:
        model = create_model(model_info["name"], input_shape=manifest["input_shape"], num_classes=manifest["num_classes"],
                             seed=seed if isinstance(seed, int) else 0, **model_info["options"])
        kwargs = {"cuts": topo_info["cuts"], "channel": channel, "optimizer": optimizer}
        if "label_source" in topo_info:
            kwargs["label_source"] = topo_info["label_source"]
        topology = build_topology(topo_info["name"], model, **kwargs)
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {str(directory)!r} describes a model this secsplit cannot build: {error}") from None
    if list(topology.owners) != topo_info["owners"]:
        raise CheckpointError(f"checkpoint {str(directory)!r}: rebuilt topology has owners {topology.owners}, "
                              f"manifest says {topo_info['owners']}")

    for party, state in states.items():
        _load_party(topology, party, state, saved[party]["file"])
    for name, party in topology.parties.items():
        party.loaded = name in states
    topology.checkpoint = CheckpointInfo(
        directory=directory, manifest=manifest, loaded=tuple(p for p in topology.parties if p in states),
        unloaded=tuple(p for p in topology.parties if p not in states),
    )
    topology.eval()
    return topology


def _read_party_file(directory: Path, party: str, entry: dict) -> dict[str, torch.Tensor]:
    """Read one party's file, check its sha256 and parse it (from the very bytes that were hashed)."""
    path = directory / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} is missing {entry['file']!r} (party {party!r})")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(f"{str(path)!r} is corrupted or was modified: sha256 {digest[:16]}... "
                              f"does not match the manifest's {entry['sha256'][:16]}... (party {party!r})")
    try:
        state = _safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {error}") from None
    return state


def _load_party(topology, party: str, state: dict[str, torch.Tensor], filename: str) -> None:
    """Copy ``state`` into ``party``'s segments after checking names, shapes and dtypes exactly."""
    segments = _party_segments(topology, party)
    expected = {f"{name}.{key}": tensor for name, segment in segments.items() for key, tensor in segment.state_dict().items()}
    missing = [k for k in expected if k not in state]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"{filename!r} (party {party!r}) is missing tensor(s) {shown}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        shown = ", ".join(unexpected[:5]) + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
        raise CheckpointError(f"{filename!r} (party {party!r}) has tensor(s) the model does not: {shown}")
    for key, target in expected.items():
        tensor = state[key]
        if tuple(tensor.shape) != tuple(target.shape):
            raise CheckpointError(f"{filename!r} (party {party!r}): tensor {key!r} has shape {tuple(tensor.shape)}, "
                                  f"the model expects {tuple(target.shape)}")
        if tensor.dtype != target.dtype:
            raise CheckpointError(f"{filename!r} (party {party!r}): tensor {key!r} has dtype {tensor.dtype}, "
                                  f"the model expects {target.dtype}")
    for name, segment in segments.items():
        prefix = f"{name}."
        segment.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)


__all__ = ["CheckpointError", "CheckpointInfo", "FORMAT_VERSION", "check_savable", "load_split_model", "party_state", "read_manifest",
           "save_split_model"]

"""Audit descriptions: a TOML file (or a preset) that expands into a grid of runs.

```toml
[audit]
name = "quick"
seeds = [0]
epochs = 3
batch_size = 64

[[experiment]]
dataset = "mnist"
model = "lenet"                      # optional: the data set's default model
topologies = ["vanilla", "ushape"]
cuts = { vanilla = ["pool1"] }       # optional, per topology: the model's suggested cuts otherwise
defenses = ["none", "noise:mech=laplace,clip=10,scale=2", "nopeek:alpha=1"]
attacks = ["whitebox-inversion", "norm-attack"]
```

Every name is checked here, before any training starts; errors name the key at fault.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from secsplit.errors import ConfigError, SecsplitError
from secsplit.specs import parse_spec

DEFAULT_MODEL = {"mnist": "lenet", "digits": "mlp", "breast-cancer": "mlp", "breast-cancer-imbalanced": "mlp"}
AUDIT_KEYS = {"name", "seeds", "epochs", "batch_size", "lr", "probe_samples"}
EXPERIMENT_KEYS = {"dataset", "model", "topologies", "cuts", "defenses", "attacks", "epochs", "batch_size", "label_source"}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that determines one training run (and so its cache key)."""

    dataset: str
    model: str
    topology: str
    cuts: tuple[str, ...] | None
    defense: str
    seed: int
    epochs: int
    batch_size: int
    lr: float
    label_source: str

    def key(self) -> str:
        return _hash(asdict(self))


@dataclass(frozen=True)
class RunSpec:
    """One training configuration and the attacks that watch it (one result row per attack)."""

    training: TrainingConfig
    attacks: tuple[str, ...]
    probe_samples: int

    def row_keys(self) -> dict[str, str]:
        """attack -> config hash of its result row."""
        return {a: _hash({"training": asdict(self.training), "attack": a, "probe": self.probe_samples}) for a in self.attacks}


@dataclass
class AuditConfig:
    name: str
    runs: list[RunSpec] = field(default_factory=list)
    source: dict = field(default_factory=dict)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def load_audit_config(path) -> AuditConfig:
    """Parse and validate a TOML audit file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"audit config not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: bad TOML: {error}") from None
    return build_audit_config(raw, origin=str(path))


def build_audit_config(raw: dict, *, origin: str = "config") -> AuditConfig:
    """Validate a parsed audit description and expand its grid."""
    from secsplit.attacks import ATTACKS
    from secsplit.data import DATASETS
    from secsplit.defenses import defense_from_spec
    from secsplit.models import MODELS
    from secsplit.topologies import TOPOLOGIES

    audit = raw.get("audit", {})
    _check_keys(audit, AUDIT_KEYS, f"{origin}: [audit]")
    seeds = audit.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{origin}: [audit].seeds must be a non-empty list of integers, got {seeds!r}")
    experiments = raw.get("experiment")
    if not isinstance(experiments, list) or not experiments:
        raise ConfigError(f"{origin}: needs at least one [[experiment]] table")
    config = AuditConfig(name=str(audit.get("name", Path(origin).stem)), source=raw)
    for number, exp in enumerate(experiments, start=1):
        where = f"{origin}: experiment {number}"
        _check_keys(exp, EXPERIMENT_KEYS, where)
        dataset = _required(exp, "dataset", where)
        _known(DATASETS, dataset, f"{where}.dataset")
        model = exp.get("model", DEFAULT_MODEL.get(dataset, "mlp"))
        _known(MODELS, model, f"{where}.model")
        topologies = _string_list(exp.get("topologies", ["vanilla"]), f"{where}.topologies")
        for t in topologies:
            _known(TOPOLOGIES, t, f"{where}.topologies")
        cuts = exp.get("cuts", {})
        if not isinstance(cuts, dict) or set(cuts) - set(topologies):
            raise ConfigError(f"{where}.cuts must map some of the topologies {topologies} to cut lists, got {cuts!r}")
        defenses = _string_list(exp.get("defenses", ["none"]), f"{where}.defenses")
        for spec in defenses:
            if spec != "none":
                try:
                    defense_from_spec(spec)  # builds it once: names and parameters checked now
                except SecsplitError as error:
                    raise ConfigError(f"{where}.defenses: {error}") from None
        attacks = _string_list(exp.get("attacks", []), f"{where}.attacks")
        for spec in attacks:
            if spec != "none":
                _known(ATTACKS, parse_spec(spec)[0], f"{where}.attacks")
        epochs = _positive(exp.get("epochs", audit.get("epochs", 3)), f"{where}.epochs")
        batch_size = _positive(exp.get("batch_size", audit.get("batch_size", 64)), f"{where}.batch_size")
        lr = float(audit.get("lr", 1e-3))
        probe = _positive(audit.get("probe_samples", 256), f"{origin}: [audit].probe_samples")
        label_source = exp.get("label_source", "data_owner")
        if label_source not in ("data_owner", "label_owner"):
            raise ConfigError(f"{where}.label_source must be 'data_owner' or 'label_owner', got {label_source!r}")
        for topology in topologies:
            topo_cuts = tuple(cuts[topology]) if topology in cuts else None
            for defense in defenses:
                for seed in seeds:
                    training = TrainingConfig(dataset, model, topology, topo_cuts, defense, seed, epochs, batch_size, lr,
                                              label_source)
                    config.runs.append(RunSpec(training, tuple(attacks) or ("none",), probe))
    return config


def _check_keys(table: dict, allowed: set, where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid keys: {', '.join(sorted(allowed))}")


def _required(table: dict, key: str, where: str):
    if key not in table:
        raise ConfigError(f"{where}: missing key {key!r}")
    return table[key]


def _known(registry, name: str, where: str) -> None:
    if name not in registry:
        raise ConfigError(f"{where}: unknown {registry.kind} {name!r}; valid names: {', '.join(registry.names())}")


def _string_list(value, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return value


def _positive(value, where: str) -> int:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return value

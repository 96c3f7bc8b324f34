"""One run description: everything that determines a run, as frozen data that round-trips through JSON/TOML.

Every entry point (``train``, ``attack``, ``audit``, ``serve``/``--connect``, ``predict``) fills one
:class:`RunDescription` and hands it to one builder (:func:`secsplit.evaluation.build.build_run`).
The canonical form is nested tables::

    seed = 0
    epochs = 10
    batch_size = 32
    cuts = ["relu1"]                 # optional: the model's suggested cuts otherwise
    defenses = ["nopeek:alpha=0.5"]  # applied together
    attacks = ["norm-attack"]        # each watches the same training run

    [data]                           # or: data = "mnist"
    source = "patients.csv"          # a built-in name or a file (csv, tsv, npz, MNIST idx, CIFAR-10 binary)
    label = "outcome"                # further keys: the source's options

    [model]                          # or: model = "mlp"
    name = "mlp"
    hidden = [64, 32]

    [topology]                       # or: topology = "vanilla"
    name = "vertical"
    label_source = "label_owner"     # who holds the labels (vanilla, multi-hop)
    views = [["age", "bmi"], ["glucose", "insulin"]]

    [optimizer]                      # or: optimizer = "adam"
    name = "adam"
    lr = 1e-3

    [early_stopping]                 # optional
    patience = 3

Only names and plain values live here (nothing is built), so the description is cheap to hash,
store beside every result row and compare. Core names (data, model, topology, optimizer) are
checked here; defense and attack names are checked by the builder, which knows their registries.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from secsplit.errors import ConfigError

#: what a description's top level may hold; the tables' own keys are their components' options
TOP_LEVEL_KEYS = ("data", "model", "topology", "cuts", "defenses", "attacks", "optimizer", "epochs", "batch_size",
                  "seed", "device", "early_stopping", "probe_samples", "tune")
#: shorthands accepted when reading (the canonical form never writes them)
ALIASES = {"dataset": "data", "lr": ("optimizer", "lr"), "label_source": ("topology", "label_source"),
           "model_options": ("model", None), "topology_options": ("topology", None)}
LABEL_SOURCES = ("data_owner", "label_owner")
DEVICES = ("auto", "cpu", "cuda")
EARLY_STOPPING_KEYS = {"patience": 3, "min_delta": 0.0, "validation_fraction": 0.1}


@dataclass(frozen=True)
class Component:
    """A named component and its options: ``{"name": "nopeek", "alpha": 0.5}`` in a file."""

    name: str | None
    options: dict = field(default_factory=dict)

    def to_dict(self, name_key: str = "name") -> dict:
        return {name_key: self.name, **self.options}

    @classmethod
    def parse(cls, value, *, where: str, name_key: str = "name", default: str | None = None) -> Component:
        """A string (the name) or a table (``name_key`` plus options)."""
        if value is None:
            return cls(default)
        if isinstance(value, Component):
            return value
        if isinstance(value, str):
            if not value.strip():
                raise ConfigError(f"{where} must not be empty")
            return cls(value.strip())
        if isinstance(value, dict):
            options = {k.replace("-", "_"): v for k, v in value.items()}
            name = options.pop(name_key, None)
            if name_key != "name" and "name" in options and name is None:
                name = options.pop("name")
            if name is not None and (not isinstance(name, str) or not name.strip()):
                raise ConfigError(f"{where}.{name_key} must be a name, got {name!r}")
            return cls(name.strip() if name else default, _plain(options, where))
        raise ConfigError(f"{where} must be a name or a table, got {value!r}")


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when validation accuracy has not improved by ``min_delta`` for ``patience`` epochs.

    The validation samples are the last ``validation_fraction`` of the (shuffled) training split:
    the test split is never looked at while deciding when to stop.
    """

    patience: int = 3
    min_delta: float = 0.0
    validation_fraction: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ConfigError(f"early_stopping.patience must be a positive integer, got {self.patience!r}")
        if not isinstance(self.min_delta, (int, float)) or self.min_delta < 0:
            raise ConfigError(f"early_stopping.min_delta must be a number >= 0, got {self.min_delta!r}")
        if not isinstance(self.validation_fraction, (int, float)) or not 0 < self.validation_fraction < 1:
            raise ConfigError(f"early_stopping.validation_fraction must lie in (0, 1), got {self.validation_fraction!r}")


@dataclass(frozen=True)
class RunDescription:
    """Everything that determines one run. Build it with :meth:`from_dict`, :func:`load_run_file` or directly.

    Attributes:
        data: the data source (``name`` is a built-in data set or a file path) and its options.
        model: model name (None: the data's default) and options.
        topology: topology name and options (``label_source``, ``clients``, ``k``, ``views``, ...).
        cuts: cut points (None: the model's suggestion for the topology).
        defenses: defense specs (``name:key=value,...``), applied together.
        attacks: attack specs; each watches the same training run.
        optimizer: optimizer name and options (lr, momentum, weight_decay).
        epochs, batch_size, seed, device: training settings; the seed reaches every seeded part.
        early_stopping: stop on a validation plateau (None: train every epoch).
        probe_samples: test samples for the distance-correlation probe of what the client releases.
        tune: search each attack's hyperparameters for its strongest result (see
            :mod:`secsplit.evaluation.tuning`); trials score on held-back validation data, never the targets.
    """

    data: Component = field(default_factory=lambda: Component("mnist"))
    model: Component = field(default_factory=lambda: Component(None))
    topology: Component = field(default_factory=lambda: Component("vanilla"))
    cuts: tuple[str, ...] | None = None
    defenses: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    optimizer: Component = field(default_factory=lambda: Component("adam", {"lr": 1e-3}))
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    early_stopping: EarlyStopping | None = None
    probe_samples: int = 256
    tune: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "probe_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
                raise ConfigError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} integer, "
                                  f"got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}; valid: {', '.join(DEVICES)}")
        if self.label_source not in LABEL_SOURCES:
            raise ConfigError(f"topology.label_source must be one of {', '.join(LABEL_SOURCES)}, got {self.label_source!r}")
        if self.data.name is None:
            raise ConfigError("data needs a source: a built-in data set name or a file path")
        if not isinstance(self.tune, bool):
            raise ConfigError(f"tune must be true or false, got {self.tune!r}")

    # -- derived views ---------------------------------------------------------------------------
    @property
    def label_source(self) -> str:
        return self.topology.options.get("label_source", "data_owner")

    @property
    def topology_options(self) -> dict:
        """The topology's own options (everything but ``label_source``)."""
        return {k: v for k, v in self.topology.options.items() if k != "label_source"}

    @property
    def active_defenses(self) -> tuple[str, ...]:
        return tuple(d for d in self.defenses if d != "none")

    def training_part(self) -> RunDescription:
        """What determines the trained weights (the model cache's key): this description without its
        passive attacks. An active attack (FSHA's hijacking server) changes what its party sends, so the
        weights it leaves are not the honest run's and it stays in the key."""
        return replace(self, attacks=tuple(a for a in self.attacks if is_active_attack(a)), probe_samples=1,
                       tune=False)

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The canonical nested form (JSON/TOML-ready); :meth:`from_dict` reads it back to an equal object."""
        out = {
            "data": self.data.to_dict("source"),
            "model": self.model.to_dict(),
            "topology": self.topology.to_dict(),
            "cuts": list(self.cuts) if self.cuts is not None else None,
            "defenses": list(self.defenses),
            "attacks": list(self.attacks),
            "optimizer": self.optimizer.to_dict(),
            "epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed, "device": self.device,
            "early_stopping": None if self.early_stopping is None else {
                "patience": self.early_stopping.patience, "min_delta": self.early_stopping.min_delta,
                "validation_fraction": self.early_stopping.validation_fraction},
            "probe_samples": self.probe_samples,
        }
        if self.tune:  # written only when on, so descriptions (and row keys) from before it existed stay equal
            out["tune"] = True
        return out

    def key(self) -> str:
        """A stable hash of the whole description (16 hex digits)."""
        return stable_hash(self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict, *, where: str = "run") -> RunDescription:
        """Validate and read a description (canonical form, shorthands or aliases); errors name the key."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table, got {raw!r}")
        raw = normalize(raw, where=where)
        unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
        kwargs: dict[str, Any] = {}
        kwargs["data"] = Component.parse(raw.get("data", "mnist"), where=f"{where}.data", name_key="source")
        kwargs["model"] = Component.parse(raw.get("model"), where=f"{where}.model")
        kwargs["topology"] = Component.parse(raw.get("topology"), where=f"{where}.topology", default="vanilla")
        optimizer = Component.parse(raw.get("optimizer"), where=f"{where}.optimizer", default="adam")
        kwargs["optimizer"] = Component(optimizer.name, {"lr": 1e-3, **optimizer.options})
        if raw.get("cuts") is not None:
            kwargs["cuts"] = tuple(_strings(raw["cuts"], f"{where}.cuts"))
        for key in ("defenses", "attacks"):
            if key in raw:
                kwargs[key] = tuple(_strings(raw[key], f"{where}.{key}"))
        for key in ("epochs", "batch_size", "seed", "probe_samples"):
            if key in raw:
                kwargs[key] = _integer(raw[key], f"{where}.{key}")
        if "device" in raw:
            kwargs["device"] = str(raw["device"])
        if "tune" in raw:
            kwargs["tune"] = raw["tune"]
        stopping = raw.get("early_stopping")
        if stopping is not None and stopping is not False:
            if isinstance(stopping, bool):
                stopping = {}
            elif isinstance(stopping, int):
                stopping = {"patience": stopping}
            if not isinstance(stopping, dict):
                raise ConfigError(f"{where}.early_stopping must be a table (patience, min_delta, validation_fraction), "
                                  f"got {stopping!r}")
            bad = sorted(set(stopping) - set(EARLY_STOPPING_KEYS))
            if bad:
                raise ConfigError(f"{where}.early_stopping: unknown key(s) {', '.join(bad)}; valid keys: "
                                  f"{', '.join(EARLY_STOPPING_KEYS)}")
            kwargs["early_stopping"] = EarlyStopping(**stopping)
        description = cls(**kwargs)
        description.check_names(where=where)
        return description

    def check_names(self, *, where: str = "run") -> None:
        """Core names exist: the data source, model, topology and optimizer (defenses/attacks: the builder)."""
        from secsplit.data import DATASETS
        from secsplit.models import MODELS
        from secsplit.topologies import TOPOLOGIES

        source = self.data.name
        if source not in DATASETS and not _looks_like_file(source):
            raise ConfigError(f"{where}.data: unknown data set {source!r}: not a built-in name "
                              f"({', '.join(DATASETS.names())}) and no such file")
        if self.model.name is not None and self.model.name not in MODELS:
            raise ConfigError(f"{where}.model: unknown model {self.model.name!r}; valid names: {', '.join(MODELS.names())}")
        if self.topology.name not in TOPOLOGIES:
            raise ConfigError(f"{where}.topology: unknown topology {self.topology.name!r}; valid names: "
                              f"{', '.join(TOPOLOGIES.names())}")
        self.optimizer_spec(where=where)

    def optimizer_spec(self, *, where: str = "run"):
        from secsplit.optim import OptimizerSpec

        valid = ("lr", "momentum", "weight_decay")
        bad = sorted(set(self.optimizer.options) - set(valid))
        if bad:
            raise ConfigError(f"{where}.optimizer: unknown option(s) {', '.join(bad)}; valid: {', '.join(valid)}")
        values = {}
        for key, value in self.optimizer.options.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.optimizer.{key} must be a number, got {value!r}")
            values[key] = float(value)
        return OptimizerSpec(self.optimizer.name, **values)


def _looks_like_file(source: str) -> bool:
    prefix, sep, rest = source.partition(":")
    path = rest if sep and prefix in FILE_PREFIXES else source
    return Path(path).exists()


#: ``kind:PATH`` prefixes naming a file's format explicitly
FILE_PREFIXES = ("csv", "tsv", "npz", "mnist-idx", "cifar10", "file")


def normalize(raw: dict, *, where: str) -> dict:
    """Fold shorthands and aliases (``dataset``, ``lr``, ``label_source``, ``model_options``,
    ``topology_options``) into the canonical nested keys, refusing a value given twice."""
    raw = {k.replace("-", "_"): v for k, v in raw.items()}
    out = {k: v for k, v in raw.items() if k not in ALIASES}
    for alias, target in ALIASES.items():
        if alias not in raw:
            continue
        value = raw[alias]
        if isinstance(target, str):
            if target in raw:
                raise ConfigError(f"{where}: give {target!r} or {alias!r}, not both")
            out[target] = value
            continue
        table, key = target
        current = out.get(table)
        if isinstance(current, list):  # an audit's grid of components: the shorthand applies to each
            out[table] = [_fold(item, alias, key, value, table, where) for item in current]
        else:
            out[table] = _fold(current, alias, key, value, table, where)
    return out


def _fold(current, alias: str, key: str | None, value, table: str, where: str) -> dict:
    """Fold one shorthand (``lr = 0.01``) or options table into a component given as a name or table."""
    current = {} if current is None else ({"name": current} if isinstance(current, str) else dict(current))
    if key is None:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}.{alias} must be a table, got {value!r}")
        clash = sorted(set(value) & set(current))
        if clash:
            raise ConfigError(f"{where}: {', '.join(clash)} given both in {alias} and in [{table}]")
        return {**current, **value}
    if key in current:
        raise ConfigError(f"{where}: {key} given both as {alias} and in [{table}]")
    return {**current, key: value}


def load_run_file(path) -> RunDescription:
    """A run description from a ``.toml`` or ``.json`` file."""
    return RunDescription.from_dict(read_table_file(path), where=str(path))


def read_table_file(path) -> dict:
    """Parse a TOML or JSON file into a dict; one-line errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: bad {'JSON' if path.suffix == '.json' else 'TOML'}: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table at the top level")
    return raw


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _plain(options: dict, where: str) -> dict:
    """Options as JSON-ready values (tuples become lists) so a description round-trips unchanged."""
    def plain(value, key):
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v, key) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v, f"{key}.{k}") for k, v in value.items()}
        raise ConfigError(f"{where}.{key} must be a plain value (text, number, list or table), got {value!r}")

    return {k: plain(v, k) for k, v in options.items()}


def _strings(value, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a list of names, got {value!r}")
    return [v.strip() for v in value]


def _integer(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    return value


def is_active_attack(spec: str) -> bool:
    """Whether the attack ``spec`` names deviates from the protocol (its threat model's behaviour)."""
    from secsplit.attacks import ATTACKS
    from secsplit.attacks.base import canonical_name
    from secsplit.specs import parse_spec

    if spec == "none":
        return False
    name = canonical_name(parse_spec(spec)[0])
    return name in ATTACKS and ATTACKS.lookup(name).threat_model.behaviour == "active"

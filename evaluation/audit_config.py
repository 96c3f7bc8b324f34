"""Audit files: the run-description schema with lists where a grid varies, expanded into runs.

```toml
[audit]
name = "mine"
seeds = [0, 1, 2]                    # a grid over the seed (same as seed = [0, 1, 2])
epochs = 10                          # any run key here is a default for every experiment
                                     # (neither epochs nor early_stopping: train to convergence,
                                     #  early stopping with patience 5, at most 40 epochs)

[[experiment]]
data = { source = "patients.csv", label = "outcome" }
model = "mlp"
topology = ["vanilla", { name = "splitfed", clients = [10, 100] }]
cuts = { vanilla = ["relu1"] }       # per topology; or one list; or a list of lists (a grid)
defenses = ["none", "nopeek:alpha=0.5", ["noise:scale=0.5,clip=1", "nopeek:alpha=0.5"]]
attacks = ["norm-attack", "cosine-attack"]
```

Grid rules (``secsplit audit --print-config FILE`` shows the expansion):

- a list under a key that takes one value (``topology``, ``model``, ``data``, ``epochs``, ``seed``, an
  option such as ``clients``) is a grid axis over its items;
- a key that takes a list (``cuts``, ``features``, ``views``, ``image_shape``, ``hidden``, ``tasks``,
  or any option whose default is a list) is one value when given a list, and a grid axis when
  given a list of lists;
- ``defenses`` lists alternatives: each item is a spec, ``"none"``, or a list of specs applied together;
- ``attacks`` all watch every run (one result row each).

Every name is checked here, before any training starts; errors name the experiment and key at fault.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from secsplit.description import TOP_LEVEL_KEYS, RunDescription, normalize, read_table_file, stable_hash
from secsplit.errors import ConfigError
from secsplit.evaluation.party import PARTIES_KEY  # a deployment's addresses: an audit simulates every party here

if TYPE_CHECKING:
    from secsplit.evaluation.verdict import DefenseSearch

#: keys of [audit] that are not run defaults
AUDIT_ONLY_KEYS = ("name", "seeds", "frontier")
#: legacy spellings still read
LEGACY = {"topologies": "topology"}
#: options whose value is itself a list (a grid over them is a list of lists)
LIST_VALUED = {"cuts", "features", "views", "image_shape", "hidden", "tasks", "task_weights", "channels", "widths",
               "labels", "region", "regions"}
COMPONENT_KEYS = ("data", "model", "topology", "optimizer", "early_stopping")
#: an experiment that sets neither ``epochs`` nor ``early_stopping`` trains to convergence: an attack on an
#: under-trained model under-reports (or over-reports) what a deployed one leaks
CONVERGENCE_DEFAULTS = {"epochs": 40, "early_stopping": {"patience": 5}}


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: its description (the attacks watching it included); one row per attack."""

    description: RunDescription

    @property
    def attacks(self) -> tuple[str, ...]:
        return self.description.attacks or ("none",)

    def training_key(self) -> str:
        """Hash of what determines the trained weights (the model cache's key)."""
        return self.description.training_part().key()

    def row_keys(self) -> dict[str, str]:
        """attack -> config hash of its result row."""
        training = self.description.training_part().to_dict()
        tuned = {"tune": True} if self.description.tune else {}
        return {a: stable_hash({"run": training, "attack": a, "probe": self.description.probe_samples, **tuned})
                for a in self.attacks}

    def slot_key(self, attack: str, seat: str, default_seat: str) -> str:
        """The config hash of one seat's row: the attack's own key at its default seat."""
        key = self.row_keys()[attack]
        return key if seat == default_seat else stable_hash({"attack_key": key, "seat": seat})


@dataclass
class AuditConfig:
    name: str
    runs: list[RunSpec] = field(default_factory=list)
    source: dict = field(default_factory=dict)
    #: frontier searches run after the grid (``frontier = {...}``), one per experiment configuration
    frontiers: list = field(default_factory=list)
    #: a run file's audit: the defense search against its worst attacks (:mod:`secsplit.evaluation.verdict`)
    defense_search: DefenseSearch | None = None


def load_audit_config(path) -> AuditConfig:
    """Parse, validate and expand an audit file (TOML or JSON)."""
    return build_audit_config(read_table_file(path), origin=str(path))


def build_audit_config(raw: dict, *, origin: str = "config") -> AuditConfig:
    """Validate a parsed audit description and expand its grid into runs."""
    from secsplit.evaluation.build import check_components
    from secsplit.evaluation.every_attack import expand_all

    if is_run_file(raw):
        return run_file_audit(raw, origin=origin)
    audit = dict(raw.get("audit", {}))
    unknown = sorted(set(raw) - {"audit", "experiment"})
    if unknown:
        raise ConfigError(f"{origin}: unknown table(s) {', '.join(unknown)}; an audit has [audit] and [[experiment]]")
    name = str(audit.pop("name", Path(origin).stem))
    seeds = audit.pop("seeds", None)
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"{origin}: [audit].seeds must be a non-empty list of integers, got {seeds!r}")
        if "seed" in audit:
            raise ConfigError(f"{origin}: [audit] gives both seeds and seed")
        audit["seed"] = seeds
    frontier = audit.pop("frontier", None)
    _check_run_keys(audit, f"{origin}: [audit]")
    experiments = raw.get("experiment")
    if not isinstance(experiments, list) or not experiments or not all(isinstance(e, dict) for e in experiments):
        raise ConfigError(f"{origin}: needs at least one [[experiment]] table")
    config = AuditConfig(name=name, source=raw)
    active_memo: dict = {}
    for number, experiment in enumerate(experiments, start=1):
        where = f"{origin}: experiment {number}"
        experiment = {LEGACY.get(k, k): v for k, v in experiment.items()}
        wanted = _frontier_table(frontier, experiment.pop("frontier", None), where)
        _check_run_keys(experiment, where)
        merged = _merge_defaults(audit, experiment, where)
        if "epochs" not in merged and "early_stopping" not in merged:
            merged.update(CONVERGENCE_DEFAULTS)
        descriptions = []  # the experiment's own runs (an active attack's run of its own aside)
        for description in expand_experiment(merged, where=where):
            check_components(description, where=where)
            own, *apart = expand_all(description, memo=active_memo)
            descriptions.append(own)
            config.runs.extend(RunSpec(d) for d in (own, *apart))
        if wanted is not None:
            config.frontiers.extend(_experiment_frontiers(descriptions, wanted, f"{name}-e{number}", where))
    if not config.runs:
        raise ConfigError(f"{origin}: the grid is empty")
    _check_data_sources(config, origin)
    return config


def is_run_file(raw: dict) -> bool:
    """Whether a parsed file is a run file (audited as it is) rather than an audit file."""
    return "audit" not in raw and "experiment" not in raw


def run_file_audit(raw: dict, *, origin: str = "run") -> AuditConfig:
    """The worst-case audit of one run file, the same file ``secsplit train`` or ``launch`` / ``serve`` take.

    The run is audited as written (its data, model, topology, cuts, defenses, training), and without
    its defenses when it has some (what they buy and cost), with every party simulated in this
    process (``[parties]`` is set aside: scoring an attack needs the ground truth its victim holds).
    Unless the file says otherwise: every attack (``attacks = ["all"]``), each from every seat;
    attacks tuned (``tune = true``); training to convergence when it gives
    neither ``epochs`` nor ``early_stopping``; and after the attacks, a search of each defense family
    against each target's worst attack (:mod:`secsplit.evaluation.verdict`), set by a ``[frontier]``
    table (the keys ``secsplit frontier`` takes) or turned off by ``frontier = false``.
    """
    from secsplit.evaluation.build import check_components
    from secsplit.evaluation.every_attack import ALL, expand_all

    run = normalize({k: v for k, v in raw.items() if k != PARTIES_KEY}, where=origin)
    frontier = run.pop("frontier", None)
    unknown = sorted(set(run) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(unknown)}: neither an audit file ([audit] and "
                          f"[[experiment]] tables) nor a run file (keys {', '.join(TOP_LEVEL_KEYS)}, [parties], "
                          f"[frontier])")
    if not run.get("attacks"):
        run["attacks"] = [ALL]
    run.setdefault("tune", True)
    if "epochs" not in run and "early_stopping" not in run:
        run.update(CONVERGENCE_DEFAULTS)
    description = RunDescription.from_dict(run, where=origin)
    check_components(description, where=origin)
    name = Path(origin).stem
    config = AuditConfig(name=name, source=raw)
    memo: dict = {}
    # with defenses, the same run undefended too: what the defenses buy, and what they cost in utility
    variants = [description, replace(description, defenses=())] if description.active_defenses else [description]
    for variant in variants:
        runs = expand_all(variant, memo=memo)
        config.runs.extend(RunSpec(d) for d in runs)
    undefended = runs[0]  # the last variant is undefended; its first run carries the passive attacks
    if frontier is not False:
        from secsplit.evaluation.frontier import check_frontier_keys
        from secsplit.evaluation.verdict import DefenseSearch

        table = {} if frontier in (None, True) else frontier
        check_frontier_keys(table, f"{origin}: frontier")
        config.defense_search = DefenseSearch(undefended, dict(table), name=f"{name}-defenses")
    _check_data_sources(config, origin)
    return config


def _frontier_table(audit_table, experiment_table, where: str) -> dict | None:
    """The experiment's frontier settings: [audit].frontier under its own ``frontier`` (``false`` turns it
    off, ``true`` takes the defaults); None when no frontier is asked for."""
    tables = []
    for table in (audit_table, experiment_table):
        if table is None or table is True:
            tables.append({} if table else None)
        elif table is False:
            return None
        elif isinstance(table, dict):
            tables.append(table)
        else:
            raise ConfigError(f"{where}: frontier must be a table (e.g. {{ budget = 0.01 }}), true or false; got {table!r}")
    if tables == [None, None]:
        return None
    return {**(tables[0] or {}), **(tables[1] or {})}


def _experiment_frontiers(descriptions, table: dict, prefix: str, where: str) -> list:
    """One frontier per configuration of the experiment's grid (its defenses and seeds aside): it searches on
    the configuration's first seed and confirms on the others, unless ``table`` says otherwise."""
    from secsplit.evaluation.frontier import configuration_label, frontier_config

    groups: dict[str, list[RunDescription]] = {}
    for description in descriptions:
        groups.setdefault(replace(description, defenses=(), seed=0).key(), []).append(description)
    out = []
    for number, members in enumerate(groups.values(), start=1):
        seeds = list(dict.fromkeys(d.seed for d in members))
        own = {"seeds": seeds[:1], "confirm_seeds": seeds[1:], **table}
        label = configuration_label(members[0])
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
        own["name"] = f"{table.get('name', prefix)}-{number}-{slug}" if len(groups) > 1 or "name" not in table \
            else table["name"]
        out.append(frontier_config(replace(members[0], seed=seeds[0]), own, origin=f"{where}.frontier"))
    return out


def _check_data_sources(config: AuditConfig, origin: str) -> None:
    """Load every distinct data source once, so a bad file or option stops the audit before it trains
    anything (not as a failed row per run, hours later)."""
    from secsplit.data import load_data
    from secsplit.errors import SecsplitError

    seen = set()
    for spec in config.runs:
        data = spec.description.data
        key = stable_hash(data.to_dict("source"))
        if key in seen:
            continue
        seen.add(key)
        try:
            load_data(data.name, seed=spec.description.seed, **data.options)
        except SecsplitError as error:
            raise type(error)(f"{origin}: data {data.name!r}: {error}") from None


def _merge_defaults(audit: dict, experiment: dict, where: str) -> dict:
    """[audit] run keys under the experiment's own; tables merge key by key."""
    audit = normalize(audit, where=where)
    experiment = normalize(experiment, where=where)
    merged = dict(audit)
    for key, value in experiment.items():
        base = merged.get(key)
        if key in COMPONENT_KEYS and isinstance(base, (str, dict)) and isinstance(value, dict):
            base = {"source" if key == "data" else "name": base} if isinstance(base, str) else base
            named = {"source", "name"} & set(value)
            merged[key] = value if named and {"source", "name"} & set(base) and base != value and \
                _name(base) != _name(value) else {**base, **value}
        else:
            merged[key] = value
    return merged


def _name(table: dict):
    return table.get("source", table.get("name"))


def _check_run_keys(table: dict, where: str) -> None:
    allowed = set(TOP_LEVEL_KEYS) | {"dataset", "lr", "label_source", "model_options", "topology_options"} | set(LEGACY)
    unknown = sorted(set(k.replace("-", "_") for k in table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(allowed - set(LEGACY)))}")


def expand_experiment(experiment: dict, *, where: str) -> list[RunDescription]:
    """Every run description an experiment's grid spans, in a stable order."""
    experiment = dict(experiment)
    defenses = _defense_alternatives(experiment.pop("defenses", ["none"]), f"{where}.defenses")
    attacks = experiment.pop("attacks", [])
    if isinstance(attacks, str):
        attacks = [attacks]
    cuts = experiment.pop("cuts", None)
    axes = {key: _alternatives(key, value, where=f"{where}.{key}") for key, value in experiment.items()}
    topologies = {_topology_name(t) for t in axes.get("topology", ["vanilla"])}
    cut_axis = _cut_alternatives(cuts, topologies, f"{where}.cuts")
    runs = []
    keys = list(axes)
    for combination in itertools.product(*(axes[k] for k in keys)):
        raw = dict(zip(keys, combination))
        for run_cuts in cut_axis(_topology_name(raw.get("topology", "vanilla"))):
            for defense in defenses:
                description = RunDescription.from_dict(
                    {**raw, "cuts": run_cuts, "defenses": defense, "attacks": attacks}, where=where)
                runs.append(description)
    return runs


def _topology_name(topology) -> str:
    """The name of one grid point's topology, given as a name or a table."""
    return topology if isinstance(topology, str) else (topology or {}).get("name", "vanilla")


def _alternatives(key: str, value, *, where: str, list_valued: bool = False) -> list:
    """The values one key takes across the grid."""
    if key in COMPONENT_KEYS:
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            if isinstance(item, dict):
                out.extend(_expand_table(item, where=where))
            else:
                out.append(item)
        return out
    if list_valued or key in LIST_VALUED:
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return value
        return [value]
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: an empty list leaves nothing to run")
        return value
    return [value]


def _expand_table(table: dict, *, where: str) -> list[dict]:
    """A component table with grid axes among its options -> one table per combination."""
    keys = list(table)
    axes = [_alternatives(k, table[k], where=f"{where}.{k}", list_valued=_list_option(table, k)) for k in keys]
    return [dict(zip(keys, combination)) for combination in itertools.product(*axes)]


def _list_option(table: dict, key: str) -> bool:
    """Whether option ``key`` of this component takes a list (its default is a list or tuple)."""
    if key in LIST_VALUED:
        return True
    name = table.get("name")
    if not isinstance(name, str):
        return False
    import inspect

    from secsplit.models import MODELS
    from secsplit.topologies import TOPOLOGIES

    for registry in (MODELS, TOPOLOGIES):
        if name in registry:
            parameter = inspect.signature(registry.lookup(name)).parameters.get(key)
            if parameter is not None and isinstance(parameter.default, (list, tuple)):
                return True
    return False


def _defense_alternatives(value, where: str) -> list[list[str]]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{where}: an empty list leaves nothing to run (use [\"none\"] for no defense)")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append([] if item == "none" else [item])
        elif isinstance(item, list) and all(isinstance(s, str) for s in item):
            out.append([s for s in item if s != "none"])
        else:
            raise ConfigError(f"{where}: each item must be a defense spec or a list of specs, got {item!r}")
    return out


def _cut_alternatives(cuts, topologies: set[str], where: str):
    """cuts -> a function from a topology name to the cut lists to run it with."""
    if cuts is None:
        return lambda topology: [None]
    if isinstance(cuts, dict):
        unknown = sorted(set(cuts) - topologies)
        if unknown:
            raise ConfigError(f"{where} names topologies not in the grid: {', '.join(unknown)} "
                              f"(grid: {', '.join(sorted(topologies))})")
        per = {t: _alternatives("cuts", c, where=f"{where}.{t}") for t, c in cuts.items()}
        return lambda topology: per.get(topology, [None])
    alternatives = _alternatives("cuts", cuts, where=where)
    return lambda topology: alternatives


def describe_grid(config: AuditConfig) -> list[dict]:
    """The expanded grid, one canonical run description per run (``secsplit audit --print-config``)."""
    return [spec.description.to_dict() for spec in config.runs]

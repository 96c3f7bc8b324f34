"""The one builder: a :class:`~secsplit.description.RunDescription` in, everything a run needs out.

``train``, ``attack``, the audit runner, ``serve``/``--connect`` and ``predict`` all come through
:func:`build_run`, so a setting means the same thing everywhere and no caller decides what a topology
needs by testing its name: every topology takes the same common keywords (cuts, optimizer,
label_source, seed, model_name, model_options) and uses those that apply to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from secsplit.description import RunDescription
from secsplit.errors import ConfigError
from secsplit.specs import parse_spec

#: the model a built-in data set gets when the description names none
DEFAULT_MODEL = {"mnist": "lenet", "digits": "mlp", "breast-cancer": "mlp", "breast-cancer-imbalanced": "mlp"}


def default_model(dataset) -> str:
    """The data set's default model: its own entry, else LeNet for images and an MLP for tables."""
    return DEFAULT_MODEL.get(dataset.name, "lenet" if dataset.kind == "image" else "mlp")


@dataclass
class BuiltRun:
    """What :func:`build_run` makes: call :meth:`fit` to train with the defenses and attacks attached."""

    description: RunDescription
    dataset: object
    model_name: str
    model: object
    topology: object
    defenses: list = field(default_factory=list)
    attacks: dict = field(default_factory=dict)
    not_applicable: dict = field(default_factory=dict)
    #: tuned audits: each variant spec of an attack that watches training -> the spec it varies
    variants: dict = field(default_factory=dict)
    trainer: object = None

    def fit(self):
        return self.trainer.fit(self.dataset)


def check_components(description: RunDescription, *, where: str = "run") -> None:
    """Defense and attack specs name registered components with valid parameters (nothing is built)."""
    from secsplit.attacks import ATTACKS
    from secsplit.defenses import DEFENSES
    from secsplit.evaluation.every_attack import ALL

    for key, registry, specs in (("defenses", DEFENSES, description.active_defenses),
                                 ("attacks", ATTACKS, [a for a in description.attacks if a not in ("none", ALL)])):
        for spec in specs:
            name, params = parse_spec(spec)
            if key == "attacks":
                from secsplit.attacks.base import canonical_name

                name = canonical_name(name)  # short names ("norm") as Python's attacks.get takes them
            if name not in registry:
                raise ConfigError(f"{where}.{key}: unknown {registry.kind} {name!r}; valid names: "
                                  f"{', '.join(registry.names())}")
            aliases = getattr(registry.lookup(name), "aliases", {})
            registry.check(name, {aliases.get(k, k): v for k, v in params.items()})


def create_defenses(description: RunDescription) -> list:
    """The description's defenses, each seeded by the run's seed unless its spec sets one."""
    from secsplit.defenses import defense_from_spec

    return [defense_from_spec(spec, seed=description.seed) for spec in description.active_defenses]


def create_attack_from_spec(spec: str, *, seed: int = 0, **overrides):
    """An attack from ``name:key=value,...``, seeded by the run's seed unless its spec sets one."""
    from secsplit.attacks import ATTACKS, create_attack
    from secsplit.attacks.base import canonical_name

    name, params = parse_spec(spec)
    name = canonical_name(name)
    params.update(overrides)
    if "seed" in ATTACKS.parameters(name):
        params.setdefault("seed", seed)
    return create_attack(name, **params)


def attack_slots(spec: str, topology, dataset, *, seed: int, all_seats: bool = True) -> dict:
    """(spec, seat) -> the attack seated there, or the reason it does not apply there.

    A spec that names its seat (``norm-attack:attacker=server``) keeps it. Otherwise every candidate
    seat the topology offers is tried; seats where the attack does not apply are dropped when another
    seat applies, so a row says "not applicable" only when no party could run the attack.
    """
    from secsplit.attacks import NotApplicable

    probe = create_attack_from_spec(spec, seed=seed)
    option = probe.seat_option
    _, given = parse_spec(spec)
    seats = [probe.seat] if option is None or option in given or not all_seats else list(
        dict.fromkeys(probe.candidate_seats(topology)))
    slots, reasons = {}, {}
    for seat in seats:
        attack = probe if seat == probe.seat else create_attack_from_spec(spec, seed=seed, **{option: seat})
        try:
            attack.check_applicable(topology, dataset)
        except NotApplicable as reason:
            reasons[(spec, seat)] = str(reason)
            continue
        slots[(spec, seat)] = attack
    if not slots:  # report the attack's own seat's reason (or the first candidate's)
        key = (spec, probe.seat) if (spec, probe.seat) in reasons else next(iter(reasons))
        return {key: reasons[key]}
    return slots


def watching_variants(spec: str, *, seed: int) -> list[str]:
    """For a tuned audit: the other settings of a passive attack that must watch training (label attacks).

    Such an attack cannot be re-run on the trained model per trial, but watching costs nothing, so each
    point of its (small, all-choices) search space watches the same training as its own row. No
    setting is picked by reading the truth: every variant is reported, and the findings take the
    worst leak over rows, as they do over attacks and seats. Active attacks (which change what their
    party sends) and spaces larger than the attack's ``tuning_trials`` get no variants.
    """
    import inspect

    from secsplit.attacks import ATTACKS
    from secsplit.attacks.base import canonical_name
    from secsplit.evaluation.tuning import grid_points, spec_with

    name, fixed = parse_spec(spec)
    name = canonical_name(name)
    probe = create_attack_from_spec(spec, seed=seed)
    if not probe.observes_training or probe.threat_model.behaviour == "active":
        return []
    space = {k: v for k, v in type(probe).search_space.items() if k not in fixed}
    points = grid_points(space) if space else None
    if not points or len(points) > type(probe).tuning_trials:
        return []
    defaults = {k: p.default for k, p in inspect.signature(ATTACKS.lookup(name)).parameters.items()}
    return [spec_with(spec, **point) for point in points if any(defaults.get(k) != v for k, v in point.items())]


def topology_name_for(description: RunDescription, defenses) -> str:
    """A defense that stands for a configuration (the ``ushape`` label defense) decides the topology."""
    wanted = {d.topology for d in defenses if d.topology}
    if len(wanted) > 1:
        raise ConfigError(f"defenses ask for different topologies: {', '.join(sorted(wanted))}")
    return wanted.pop() if wanted else description.topology.name


def load_run_data(description: RunDescription):
    """The description's data set (built-in or file), seeded by the run's seed."""
    from secsplit.data import load_data

    return load_data(description.data.name, seed=description.seed, **description.data.options)


def build_run(description: RunDescription, *, progress: bool | None = False, checkpointing=None,
              remote: Callable | None = None, dataset=None, attach_attacks: bool = True,
              all_seats: bool = True) -> BuiltRun:
    """Build data, model, topology, defenses, attacks and the Trainer from one description.

    Args:
        description: the run.
        progress: the Trainer's progress bar (None: only on a terminal).
        checkpointing: training checkpoints (:class:`secsplit.training.Checkpointing`).
        remote: builds the topology across machines instead of in process:
            ``remote(description, dataset, model_name, optimizer) -> Topology``.
        dataset: an already loaded data set for this description (the audit reuses one).
        attach_attacks: build the attacks and attach them to the Trainer; an attack whose threat
            model does not apply is recorded in ``not_applicable`` with the reason.
        all_seats: attack from every party the topology declares as receiving what the attack reads
            (``Attack.candidate_seats``), one slot per seat; else from the attack's own seat only.
            ``attacks`` and ``not_applicable`` are keyed by ``(attack spec, seat)``.

    Raises:
        ConfigError / DataError: a bad name, value or file, before anything trains.
    """
    from secsplit.attacks.reconstruction_base import ReconstructionAttack
    from secsplit.early_stopping import EarlyStoppingCallback, carve_validation
    from secsplit.models import MODELS, create_model
    from secsplit.topologies import build_topology
    from secsplit.training import Trainer

    d = description
    check_components(d)
    dataset = load_run_data(d) if dataset is None else dataset
    stopping = []
    if d.early_stopping is not None:
        dataset, x_val, y_val = carve_validation(dataset, d.early_stopping.validation_fraction, seed=d.seed)
        stopping = [EarlyStoppingCallback(x_val, y_val, patience=d.early_stopping.patience,
                                          min_delta=d.early_stopping.min_delta)]
    model_name = d.model.name or default_model(dataset)
    model_options = MODELS.check(model_name, d.model.options, partial=True)
    model = create_model(model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=d.seed,
                         **model_options)
    defenses = create_defenses(d)
    name = topology_name_for(d, defenses)
    optimizer = d.optimizer_spec()
    if remote is not None:
        topology = remote(d, dataset, model_name, optimizer)
    else:
        options = dict(d.topology_options)
        if options.get("views") is not None:
            from secsplit.data import resolve_views

            options["views"] = resolve_views(dataset, options["views"])
        cuts = list(d.cuts) if d.cuts and name == d.topology.name else None
        topology = build_topology(name, model, cuts=cuts, optimizer=optimizer, label_source=d.label_source,
                                  seed=d.seed, model_name=model_name, model_options=model_options, **options)
    attacks, not_applicable, variants, slots = {}, {}, {}, {}
    from secsplit.evaluation.every_attack import has_all

    if attach_attacks and has_all(d):
        raise ConfigError("attacks = [\"all\"] is for audits (`secsplit audit --config FILE`, which gives each "
                          "active attack a run of its own); here name the attacks (`secsplit list` shows them)")
    if attach_attacks:
        for base in d.attacks:
            if base == "none":
                continue
            for spec in [base, *(watching_variants(base, seed=d.seed) if d.tune else [])]:
                if spec != base:
                    variants[spec] = base
                slots.update(attack_slots(spec, topology, dataset, seed=d.seed, all_seats=all_seats))
            for (slot_spec, seat), attack in slots.items():
                if isinstance(attack, str):
                    not_applicable[(slot_spec, seat)] = attack
                    continue
                if isinstance(attack, ReconstructionAttack) and attack.targets is None:
                    # the client runs split inference on held-out test images (the last ones, disjoint from
                    # the dCor probe at the start); they are also the ground truth
                    attack.targets = dataset.x_test[-attack.max_targets:]
                attacks[(slot_spec, seat)] = attack
            slots.clear()
    trainer = Trainer(topology, epochs=d.epochs, batch_size=d.batch_size, seed=d.seed, device=d.device,
                      callbacks=[*defenses, *attacks.values(), *stopping], progress=progress,
                      checkpointing=checkpointing)
    return BuiltRun(description=d, dataset=dataset, model_name=model_name, model=model, topology=topology,
                    defenses=defenses, attacks=attacks, not_applicable=not_applicable, variants=variants,
                    trainer=trainer)

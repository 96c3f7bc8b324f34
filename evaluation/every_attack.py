"""``attacks = "all"``: every registered attack on one configuration, the worst case an auditor needs.

An auditor who lists attacks by hand can leave out the one that leaks; ``"all"`` takes every attack
secsplit has, each from every seat it can sit at (the runner's ``all_seats``). Passive attacks watch
the run together (they only read what their party receives). An active attack changes what its
party sends, so it would bias every other attack watching the same run: each active attack that
applies to the configuration gets a run of its own; one that does not apply costs no training.
"""

from __future__ import annotations

from dataclasses import replace

from secsplit.description import RunDescription, is_active_attack

#: the attack list entry that stands for every registered attack
ALL = "all"


def has_all(description: RunDescription) -> bool:
    return ALL in description.attacks


def expand_all(description: RunDescription, *, memo: dict | None = None) -> list[RunDescription]:
    """``description`` with ``"all"`` replaced by every attack not already named: the passive ones watch
    its run; each applicable active attack is a run of its own (same training settings).

    ``memo``: which active attacks apply, per configuration (its seed aside), shared across a grid so
    each configuration is built once.
    """
    if not has_all(description):
        return [description]
    from secsplit.attacks import ATTACKS
    from secsplit.attacks.base import canonical_name
    from secsplit.evaluation.build import attack_slots, build_run
    from secsplit.specs import parse_spec

    named = [a for a in description.attacks if a != ALL]
    given = {canonical_name(parse_spec(a)[0]) for a in named if a != "none"}
    passive, active = [], []
    memo = {} if memo is None else memo
    configuration = replace(description, attacks=(), seed=0).key()
    built = None
    for name in ATTACKS.names():
        if name in given:
            continue
        if not is_active_attack(name):
            passive.append(name)
            continue
        if (configuration, name) not in memo:
            if built is None:  # the configuration without attacks: enough to ask each attack whether it applies
                built = build_run(replace(description, attacks=()), attach_attacks=False)
            slots = attack_slots(name, built.topology, built.dataset, seed=description.seed)
            memo[(configuration, name)] = any(not isinstance(slot, str) for slot in slots.values())
        if memo[(configuration, name)]:
            active.append(name)
    runs = [replace(description, attacks=tuple([*named, *passive]))]
    runs += [replace(description, attacks=(name,)) for name in active]
    return runs

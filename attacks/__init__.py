"""Attacks: plug-ins that watch from one party's seat and guess inputs or labels."""

from secsplit.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    NotApplicable,
    ThreatModel,
    create_attack,
    list_attacks,
)

__all__ = ["ATTACKS", "Attack", "AttackResult", "NotApplicable", "ThreatModel", "create_attack", "list_attacks"]

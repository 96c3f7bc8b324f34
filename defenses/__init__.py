"""Defenses: plug-ins that attach to any topology through the Trainer's callbacks."""

from secsplit.defenses.base import DEFENSES, Defense, create_defense, list_defenses
from secsplit.defenses.noise import ActivationNoise

__all__ = ["ActivationNoise", "DEFENSES", "Defense", "create_defense", "list_defenses"]

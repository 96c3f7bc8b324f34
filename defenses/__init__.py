"""Defenses: plug-ins that attach to any topology through the Trainer's callbacks."""

from secsplit.defenses.base import DEFENSES, Defense, create_defense, defense_from_spec, list_defenses
from secsplit.defenses.dpsgd import ClientDPSGD
from secsplit.defenses.hijack import HijackDetection
from secsplit.defenses.label_dp import LabelDP
from secsplit.defenses.label_gradient import GradientNoise, GradientSparsification, MaxNormAlignment
from secsplit.defenses.label_marvell import Marvell
from secsplit.defenses.label_ushape import UShapeLabels
from secsplit.defenses.noise import ActivationNoise
from secsplit.defenses.nopeek import NoPeek

__all__ = ["ActivationNoise", "ClientDPSGD", "DEFENSES", "Defense", "GradientNoise", "GradientSparsification", "HijackDetection", "LabelDP", "Marvell", "MaxNormAlignment", "NoPeek", "UShapeLabels", "create_defense", "defense_from_spec", "list_defenses"]

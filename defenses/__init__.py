"""Defenses: plug-ins that attach to any topology through the Trainer's callbacks."""

from secsplit.defenses.base import DEFENSES, Defense, create_defense, defense_from_spec, list_defenses
from secsplit.defenses.attacker_aware import AttackerAwareTraining
from secsplit.defenses.cae import CAE, DCAE
from secsplit.defenses.dpsgd import ClientDPSGD
from secsplit.defenses.hijack import HijackDetection
from secsplit.defenses.label_dp import LabelDP
from secsplit.defenses.label_gradient import GradientNoise, GradientSparsification, MaxNormAlignment
from secsplit.defenses.label_marvell import Marvell
from secsplit.defenses.label_ushape import UShapeLabels
from secsplit.defenses.mid import MID
from secsplit.defenses.noise import ActivationNoise
from secsplit.defenses.nopeek import NoPeek
from secsplit.defenses.splitout import SplitOut

__all__ = ["ActivationNoise", "AttackerAwareTraining", "CAE", "ClientDPSGD", "DCAE", "DEFENSES", "Defense", "GradientNoise", "GradientSparsification", "HijackDetection", "LabelDP", "Marvell", "MID", "MaxNormAlignment", "NoPeek", "SplitOut", "UShapeLabels", "create_defense", "defense_from_spec", "list_defenses"]

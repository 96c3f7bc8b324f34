"""Attacks: plug-ins that watch from one party's seat and guess inputs or labels."""

from secsplit.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    NotApplicable,
    ThreatModel,
    create_attack,
    get,
    list_attacks,
)
from secsplit.attacks.feature_grn import GenerativeRegressionNetwork
from secsplit.attacks.label_clustering import GradientClustering
from secsplit.attacks.label_completion import ModelCompletion
from secsplit.attacks.label_direct import DirectLabelScoring
from secsplit.attacks.label_exploit import ExPLoit
from secsplit.attacks.label_gradient import CosineAttack, NormAttack
from secsplit.attacks.reconstruction_fora import FORA
from secsplit.attacks.reconstruction_fsha import FeatureSpaceHijacking
from secsplit.attacks.reconstruction_inverse import InverseNetwork
from secsplit.attacks.reconstruction_sdar import SDAR
from secsplit.attacks.reconstruction_unsplit import UnSplit
from secsplit.attacks.reconstruction_whitebox import WhiteBoxInversion

__all__ = ["ATTACKS", "Attack", "AttackResult", "CosineAttack", "DirectLabelScoring", "ExPLoit", "FORA", "FeatureSpaceHijacking", "GenerativeRegressionNetwork", "GradientClustering", "InverseNetwork", "ModelCompletion", "NormAttack", "NotApplicable", "SDAR", "ThreatModel", "UnSplit", "WhiteBoxInversion", "create_attack", "get", "list_attacks"]

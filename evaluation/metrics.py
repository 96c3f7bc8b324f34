"""Leakage and utility metrics: see :mod:`secsplit.metrics` (they live in the core, so attacks can
score their own results); re-exported here for the evaluation layer."""

from secsplit.metrics import *  # noqa: F401,F403
from secsplit.metrics import __all__  # noqa: F401
